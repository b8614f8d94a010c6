//! A VM process (btvisor or QEMU) driven through its serial console on stdin/stdout, as a user
//! at the busybox shell would: wait for the prompt, type a command, read what it printed. Every
//! wait has a deadline; a VM that misses it is killed, and one that stops is described by its
//! exit status and its own last words (btvisor's exit message on stderr), so that one engine
//! that cannot run a guest costs a table cell, not the benchmark.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The prompt the initramfs's /etc/profile sets (scripts/fetch-guest.sh).
pub const PROMPT: &str = "btvisor# ";
/// The initramfs's /init prints this once the kernel has booted.
pub const INIT_BANNER: &str = "btvisor guest: init started";

/// A running VM with its console. Killed when dropped.
pub struct GuestVm {
    child: Child,
    started: Instant,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    });
}

impl GuestVm {
    /// Start `cmd` with its stdin, stdout and stderr on pipes.
    pub fn spawn(mut cmd: Command) -> Result<GuestVm, String> {
        let program = cmd.get_program().to_string_lossy().to_string();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(o) = child.stdout.take() {
            collect(o, stdout.clone());
        }
        if let Some(e) = child.stderr.take() {
            collect(e, stderr.clone());
        }
        let stdin = child.stdin.take();
        Ok(GuestVm {
            child,
            started: Instant::now(),
            stdin,
            stdout,
            stderr,
        })
    }

    /// Everything the guest printed so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Why the VM stopped, once it has: its exit status and what it said on stderr.
    fn stopped(&mut self, status: ExitStatus) -> String {
        // Let the reader threads drain the pipes.
        std::thread::sleep(Duration::from_millis(100));
        stop_reason(
            status.code(),
            self.started.elapsed(),
            &self.stderr_text(),
            &self.console(),
        )
    }

    /// Kill the VM after `what` missed its deadline; the reason to report.
    fn timed_out(&mut self, what: &str, timeout: Duration) -> String {
        self.kill();
        let console = self.console();
        let last = last_line(&console);
        let tail = if last.is_empty() {
            "console silent".to_string()
        } else {
            format!("last console line: {last}")
        };
        format!("{what} within {} s (VM killed; {tail})", timeout.as_secs())
    }

    /// Wait until the console output from byte `from` on contains `needle`; the end of the
    /// match. `what` names the wait in the reason for a timeout.
    pub fn wait_for(
        &mut self,
        from: usize,
        needle: &str,
        timeout: Duration,
        what: &str,
    ) -> Result<usize, String> {
        let start = Instant::now();
        loop {
            {
                let out = self.stdout.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(i) = out
                    .get(from..)
                    .and_then(|t| find_bytes(t, needle.as_bytes()))
                {
                    return Ok(from + i + needle.len());
                }
            }
            match self.child.try_wait() {
                Ok(Some(status)) => return Err(self.stopped(status)),
                Ok(None) => {}
                Err(e) => return Err(format!("cannot wait for the VM: {e}")),
            }
            if start.elapsed() > timeout {
                return Err(self.timed_out(what, timeout));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Bytes of console output so far.
    pub fn console_len(&self) -> usize {
        self.stdout.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Type a line at the console.
    pub fn type_line(&mut self, line: &str) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| "the VM's console input is closed".to_string())?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot type at the VM's console: {e}"))
    }

    /// Type `command` at the shell prompt; what it printed, once the next prompt is up. The end
    /// marker is computed by the shell, so the echo of the typed line never matches it.
    pub fn run(&mut self, command: &str, timeout: Duration) -> Result<String, String> {
        let from = self.console_len();
        self.type_line(&format!("{command}; echo @@END$((40+2))@@"))?;
        let what = format!("`{command}` did not finish");
        let end = self.wait_for(from, "@@END42@@", timeout, &what)?;
        self.wait_for(end, PROMPT, timeout, "no shell prompt after the command")?;
        let text = self.console();
        Ok(text.get(from..end).unwrap_or_default().to_string())
    }

    /// Wait for the VM to exit on its own; its status, or the reason it did not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    std::thread::sleep(Duration::from_millis(100));
                    return Ok(status);
                }
                Ok(None) => {}
                Err(e) => return Err(format!("cannot wait for the VM: {e}")),
            }
            if start.elapsed() > timeout {
                return Err(self.timed_out("did not exit", timeout));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `poweroff -f` at the prompt, then wait for the VM to go (killed if it does not).
    pub fn poweroff(&mut self, timeout: Duration) {
        if self.type_line("poweroff -f").is_ok() {
            let _ = self.wait_exit(timeout);
        }
        self.kill();
    }

    /// Wait for a VM that needs no input (a test kernel, a native program) to exit: its status
    /// (or why it did not exit: it is killed after `timeout`), stdout and stderr.
    pub fn finish(mut self, timeout: Duration) -> (Result<ExitStatus, String>, String, String) {
        self.stdin = None;
        let status = self.wait_exit(timeout);
        (status, self.console(), self.stderr_text())
    }

    /// Kill the VM if it still runs, and reap it.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for GuestVm {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The last non-empty line of console text, without control characters.
pub fn last_line(text: &str) -> String {
    let line = text
        .lines()
        .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c.is_control()))
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    let clean: String = line.chars().filter(|c| !c.is_control()).collect();
    shorten(&clean, 120)
}

/// Cut `s` to at most `max` characters, marking the cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push_str("...");
        t
    }
}

/// One line saying why a VM stopped: btvisor's exit message (its first stderr line), the
/// line after it (the first line of its report: for KVM, KVM's exit reason), the instruction
/// it stopped at, and the exit status; for a VMM that said nothing, the guest's last console
/// line.
pub fn stop_reason(code: Option<i32>, after: Duration, stderr: &str, console: &str) -> String {
    let status = match code {
        Some(c) => format!("exit status {c} after {:.1} s", after.as_secs_f64()),
        None => format!("killed by a signal after {:.1} s", after.as_secs_f64()),
    };
    let mut lines = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines
        .by_ref()
        .find(|l| l.starts_with("btvisor:") || l.contains("panicked at") || l.starts_with("qemu"));
    let Some(first) = first else {
        let last = last_line(console);
        return if last.is_empty() {
            status
        } else {
            format!("{status}; last console line: {last}")
        };
    };
    let mut reason = first.trim_start_matches("btvisor:").trim().to_string();
    if let Some(detail) = lines.next() {
        if !detail.starts_with("rax=") && !detail.starts_with("rip=") {
            let detail = detail.split(", instruction bytes").next().unwrap_or(detail);
            reason = format!("{reason}: {}", shorten(detail, 160));
        }
    }
    if let Some(code_line) = stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("code:"))
    {
        if let Some(insn) = code_line.split('`').nth(1) {
            reason = format!("{reason} at `{insn}`");
        }
    }
    format!("{reason} ({status})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_emulation_failure_reason() {
        let stderr = "btvisor: unsupported guest operation; VM stopped\n\
            KVM_EXIT_INTERNAL_ERROR: suberror 1 (KVM_INTERNAL_ERROR_EMULATION), instruction bytes [f0 48], data [0x1000]\n \
            rax=ffff8a3e41041040  rcx=0000000080400040\n \
            code: `lock cmpxchg16b 0x20(%rbp)` (f0 48 0f c7 4d 20) at gpa 0x10b17850\n";
        assert_eq!(
            stop_reason(Some(4), Duration::from_millis(163_040), stderr, ""),
            "unsupported guest operation; VM stopped: KVM_EXIT_INTERNAL_ERROR: suberror 1 \
             (KVM_INTERNAL_ERROR_EMULATION) at `lock cmpxchg16b 0x20(%rbp)` (exit status 4 \
             after 163.0 s)"
        );
    }

    #[test]
    fn silent_vmm_reason_uses_the_console() {
        assert_eq!(
            stop_reason(
                Some(253),
                Duration::ZERO,
                "",
                "nano in 3.0\r\nexc #GP err=0\r\nunexpected\r\n"
            ),
            "exit status 253 after 0.0 s; last console line: unexpected"
        );
        assert_eq!(
            stop_reason(None, Duration::from_secs(2), "", ""),
            "killed by a signal after 2.0 s"
        );
    }

    #[test]
    fn last_line_skips_blank_lines_and_control_characters() {
        assert_eq!(last_line("a\r\nbtvisor# \x1b[6n\r\n\r\n"), "btvisor# [6n");
        assert_eq!(last_line(""), "");
        assert_eq!(shorten("abcdef", 3), "abc...");
    }
}
