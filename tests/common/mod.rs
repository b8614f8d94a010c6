//! Shared plumbing for integration tests: building guest kernels and running btvisor.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// Guest runs are serialized: the machine has two cores and timing-sensitive guests (PIT
/// interrupts) must not compete with each other.
pub static GUEST_LOCK: Mutex<()> = Mutex::new(());

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn guests_dir() -> PathBuf {
    repo().join("tests/guests")
}

fn out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guests");
    std::fs::create_dir_all(&d).expect("create the guest build directory");
    d
}

/// Assemble tests/guests/NAME.S with the system assembler (tests/guests/build.sh).
pub fn build_guest(name: &str) -> PathBuf {
    let src = guests_dir().join(format!("{name}.S"));
    let out = out_dir().join(format!("{name}.elf"));
    let st = Command::new("bash")
        .arg(guests_dir().join("build.sh"))
        .arg(&src)
        .arg(&out)
        .status()
        .expect("run tests/guests/build.sh (needs binutils: as, ld, objcopy)");
    assert!(st.success(), "building guest kernel {name} failed");
    out
}

/// `# expect-exit: N` from the kernel source.
pub fn expected_exit(name: &str) -> i32 {
    let src =
        std::fs::read_to_string(guests_dir().join(format!("{name}.S"))).expect("read guest source");
    src.lines()
        .take(10)
        .find_map(|l| {
            l.strip_prefix("# expect-exit:")
                .map(|v| v.trim().parse().expect("numeric expect-exit"))
        })
        .unwrap_or_else(|| panic!("{name}.S has no '# expect-exit: N' line"))
}

/// Run `btvisor` with arguments, killing it after `timeout`.
pub fn btvisor(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_btvisor"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start btvisor");
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().expect("wait for btvisor").is_some() {
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect btvisor output")
}

pub fn run_kernel(path: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--kernel", path.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    btvisor(&args, Duration::from_secs(60))
}
