//! Debian's own x86-64 cloud kernel boots under btvisor to a busybox shell on the serial
//! console; commands typed there run (fork, exec, mmap, pipes), `poweroff -f` ends btvisor with
//! status 0, and the kernel log has no warning the platform caused.
//!
//! The kernel and initramfs come from `scripts/fetch-guest.sh` (Debian packages cached in
//! ~/.cache/btvisor). Missing prerequisites fail the test with the script's message.

mod common;

use common::*;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The prompt /etc/profile sets in the initramfs.
const PROMPT: &str = "btvisor# ";
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The guest's kernel and initramfs paths, from the fetch script's two output lines.
fn fetch_guest() -> (String, String) {
    let out = Command::new(repo().join("scripts/fetch-guest.sh"))
        .output()
        .expect("run scripts/fetch-guest.sh");
    assert!(
        out.status.success(),
        "scripts/fetch-guest.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("fetch-guest.sh printed no {key} line:\n{stdout}"))
            .to_string()
    };
    (field("kernel="), field("initrd="))
}

/// A running VM with its console: everything the guest printed so far, and its input.
struct Console {
    child: Child,
    stdin: ChildStdin,
    output: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut s = into.lock().unwrap_or_else(|e| e.into_inner());
            s.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

impl Console {
    fn boot(kernel: &str, initrd: &str) -> Console {
        let mut child = Command::new(env!("CARGO_BIN_EXE_btvisor"))
            .args([
                "run",
                "--kernel",
                kernel,
                "--initrd",
                initrd,
                "--append",
                "console=ttyS0",
                "--mem",
                "512M",
                "--stats",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start btvisor");
        let output = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().expect("stdout"), output.clone());
        collect(child.stderr.take().expect("stderr"), stderr.clone());
        let stdin = child.stdin.take().expect("stdin");
        Console {
            child,
            stdin,
            output,
            stderr,
        }
    }

    fn text(&self) -> String {
        self.output.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn failure(&self, what: &str) -> String {
        format!(
            "{what}\n--- console ---\n{}\n--- stderr ---\n{}",
            self.text(),
            self.stderr.lock().unwrap_or_else(|e| e.into_inner())
        )
    }

    /// Wait until the console output from byte `from` on contains `needle`; the end of the
    /// match.
    fn wait_for(&mut self, from: usize, needle: &str, timeout: Duration) -> usize {
        let start = Instant::now();
        loop {
            let text = self.text();
            if let Some(i) = text.get(from..).and_then(|t| t.find(needle)) {
                return from + i + needle.len();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{}",
                    self.failure(&format!("btvisor exited ({status}) waiting for {needle:?}"))
                );
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "{}",
                    self.failure(&format!("no {needle:?} within {timeout:?}"))
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Type `command` at the prompt and return what it printed. The end marker is computed by
    /// the shell, so the echo of the typed line never matches it.
    fn run(&mut self, command: &str) -> String {
        let from = self.text().len();
        writeln!(self.stdin, "{command}; echo @@END$((40+2))@@").expect("write to the console");
        self.stdin.flush().expect("flush the console");
        let end = self.wait_for(from, "@@END42@@", COMMAND_TIMEOUT);
        let text = self.text();
        let out = text[from..end].to_string();
        // Wait for the next prompt so commands never interleave.
        self.wait_for(end, PROMPT, COMMAND_TIMEOUT);
        out
    }
}

#[test]
fn debian_kernel_boots_to_a_shell_and_powers_off() {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (kernel, initrd) = fetch_guest();
    let started = Instant::now();
    let mut vm = Console::boot(&kernel, &initrd);
    let at = vm.wait_for(0, "btvisor guest: init started", BOOT_TIMEOUT);
    vm.wait_for(at, PROMPT, BOOT_TIMEOUT);
    eprintln!("shell prompt after {:?}", started.elapsed());

    let uname = vm.run("uname -a");
    assert!(
        uname.contains("Linux btvisor 6.") && uname.contains("x86_64 GNU/Linux"),
        "{}",
        vm.failure(&format!("uname -a printed {uname:?}"))
    );
    let cpuinfo = vm.run("cat /proc/cpuinfo");
    for field in ["vendor_id", "model name", "flags", " apic ", " sse2 ", "bogomips"] {
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
    let start = Instant::now();
    let status = loop {
        if let Some(s) = vm.child.try_wait().expect("wait for btvisor") {
            break s;
        }
        if start.elapsed() > COMMAND_TIMEOUT {
            let _ = vm.child.kill();
            panic!("{}", vm.failure("btvisor still running after poweroff -f"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let the reader threads drain the pipes.
    std::thread::sleep(Duration::from_millis(200));
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
    let stderr = vm.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        stderr.contains("--- btvisor statistics ---"),
        "--stats printed nothing: {stderr}"
    );
    eprintln!("{stderr}");
}
