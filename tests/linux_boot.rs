//! Debian's own x86-64 cloud kernel boots under btvisor to a busybox shell on the serial
//! console; commands typed there run (fork, exec, mmap, pipes), `poweroff -f` ends btvisor with
//! status 0, and the kernel log has no warning the platform caused.
//!
//! The kernel and initramfs come from `scripts/fetch-guest.sh` (Debian packages cached in
//! ~/.cache/btvisor). Missing prerequisites fail the test with the script's message.

mod common;

#[path = "common/console.rs"]
mod console;

use common::*;
use console::*;
use std::io::Write;
use std::time::{Duration, Instant};

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn debian_kernel_boots_to_a_shell_and_powers_off() {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (kernel, initrd) = fetch_guest();
    let started = Instant::now();
    let mut vm = Console::btvisor(&kernel, &initrd);
    let at = vm.wait_for(0, INIT_BANNER, BOOT_TIMEOUT);
    vm.wait_for(at, PROMPT, BOOT_TIMEOUT);
    eprintln!("shell prompt after {:?}", started.elapsed());

    let uname = vm.run("uname -a");
    assert!(
        uname.contains("Linux btvisor 6.") && uname.contains("x86_64 GNU/Linux"),
        "{}",
        vm.failure(&format!("uname -a printed {uname:?}"))
    );
    let cpuinfo = vm.run("cat /proc/cpuinfo");
    for field in [
        "vendor_id",
        "model name",
        "flags",
        " apic ",
        " sse2 ",
        "bogomips",
    ] {
        assert!(
            cpuinfo.contains(field),
            "{}",
            vm.failure(&format!("/proc/cpuinfo lacks {field:?}: {cpuinfo:?}"))
        );
    }
    let ls = vm.run("ls /");
    for entry in ["bin", "dev", "init", "proc", "sys", "tmp"] {
        assert!(
            ls.split_whitespace().any(|w| w == entry),
            "{}",
            vm.failure(&format!("ls / lacks {entry}: {ls:?}"))
        );
    }
    let pipeline = vm.run("echo hello btvisor | tr a-z A-Z | sed 's/O/0/g'");
    assert!(
        pipeline.contains("HELL0 BTVIS0R"),
        "{}",
        vm.failure(&format!("pipeline printed {pipeline:?}"))
    );
    let forkexec = vm.run("/bin/forkexec");
    assert!(
        forkexec.contains("forkexec: ok"),
        "{}",
        vm.failure(&format!("forkexec printed {forkexec:?}"))
    );
    let interrupts = vm.run("cat /proc/interrupts");
    assert!(
        interrupts.contains("IO-APIC") && interrupts.contains("Local timer interrupts"),
        "{}",
        vm.failure(&format!("/proc/interrupts: {interrupts:?}"))
    );

    writeln!(vm.stdin, "poweroff -f").expect("write to the console");
    let status = vm.wait_exit(COMMAND_TIMEOUT);
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        vm.failure("poweroff -f must end btvisor with status 0")
    );

    let log = vm.text();
    for bad in [
        "BUG",
        "WARNING",
        "Oops",
        "Call Trace",
        "unstable",
        "timer doesn't work",
        "unchecked MSR access",
    ] {
        assert!(
            !log.contains(bad),
            "{}",
            vm.failure(&format!("the kernel log contains {bad:?}"))
        );
    }
    let stderr = vm.stderr();
    assert!(
        stderr.contains("--- btvisor statistics ---"),
        "--stats printed nothing: {stderr}"
    );
    eprintln!("{stderr}");
}
