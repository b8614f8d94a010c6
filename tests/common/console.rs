//! Drives a VM (btvisor or QEMU) through its serial console on stdin/stdout: used by the Linux
//! boot test and the boot benchmark. Also fetches the Debian guest with scripts/fetch-guest.sh.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The prompt /etc/profile sets in the initramfs.
pub const PROMPT: &str = "btvisor# ";
/// The initramfs's /init prints this once the kernel has booted.
pub const INIT_BANNER: &str = "btvisor guest: init started";
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The guest's kernel and initramfs paths, from the fetch script's two output lines.
pub fn fetch_guest() -> (String, String) {
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
pub struct Console {
    pub child: Child,
    pub stdin: ChildStdin,
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
    /// btvisor booting the Debian guest with `--stats`.
    pub fn btvisor(kernel: &str, initrd: &str) -> Console {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_btvisor"));
        cmd.args([
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
        ]);
        Console::spawn(cmd)
    }

    /// Any VM whose serial console is its stdin/stdout.
    pub fn spawn(mut cmd: Command) -> Console {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the VM");
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

    pub fn text(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn failure(&self, what: &str) -> String {
        format!(
            "{what}\n--- console ---\n{}\n--- stderr ---\n{}",
            self.text(),
            self.stderr.lock().unwrap_or_else(|e| e.into_inner())
        )
    }

    /// Wait until the console output from byte `from` on contains `needle`; the end of the
    /// match.
    pub fn wait_for(&mut self, from: usize, needle: &str, timeout: Duration) -> usize {
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
    pub fn run(&mut self, command: &str) -> String {
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

    /// Wait for the VM to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for the VM") {
                break s;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("{}", self.failure("the VM is still running"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Let the reader threads drain the pipes.
        std::thread::sleep(Duration::from_millis(200));
        status
    }
}
