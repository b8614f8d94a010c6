//! The native engine's sandbox holds against hostile guest user code (issue: native user
//! execution, "security tests"). tests/guests/sandbox64.S issues the host's own system calls
//! (write, open with O_CREAT, execve, exit) through SYSCALL, INT 0x80 and SYSENTER in 64-bit and
//! compatibility mode, reads where a host process keeps its memory, jumps into the stub's
//! `syscall` instructions with mmap/mprotect/munmap/write/getpid/futex requests, and maps its
//! own page where the stub lives. Its serial output (equal to QEMU's, checked by
//! tests/guest_kernels.rs under both engines) shows every call reached the guest kernel and no
//! attack gained access; this test adds what only the host can see: no host side effect, and
//! the monitor's validator refused the stub-jump requests (so they really ran natively).

mod common;

use common::*;

const CANARY: &str = "/tmp/btvisor-sandbox-canary";

#[test]
fn hostile_user_code_gains_nothing_and_touches_nothing_on_the_host() {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let _ = std::fs::remove_file(CANARY);
    let elf = build_guest("sandbox64");
    let out = run_kernel(&elf, &["--engine", "native", "--stats"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = std::fs::read_to_string(guests_dir().join("sandbox64.expected"))
        .expect("read sandbox64.expected");
    assert_eq!(stdout, expected, "serial output; stderr:\n{stderr}");
    assert_eq!(
        out.status.code(),
        Some(expected_exit("sandbox64")),
        "stderr:\n{stderr}"
    );
    assert!(
        !std::path::Path::new(CANARY).exists(),
        "the guest's open(O_CREAT) reached the host: {CANARY} exists"
    );
    assert!(!stdout.contains("PWNED") && !stderr.contains("PWNED"));
    assert!(!stdout.contains("SECRET LEAKED"));
    // "validated (live pool)   N allowed, M denied": the stub-jump attacks ran natively and
    // every address-space call they made was refused.
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("validated"))
        .unwrap_or_else(|| panic!("no validator line in --stats:\n{stderr}"));
    let denied: u64 = line
        .split(',')
        .nth(1)
        .and_then(|d| d.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse {line:?}"));
    assert!(
        denied >= 8,
        "expected the validator to refuse the stub-jump requests, got: {line}"
    );
    // The address space that maps the stub's window ran translated, yet the guest saw its page.
    assert!(stdout.contains("attack address still unmapped"));
}
