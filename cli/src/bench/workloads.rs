//! The guest workloads (benches/guest-workloads/*.c): what each measures, how many operations
//! a run does, how they are built (gcc -O2 -static, on the host) and run natively, and their
//! result line.

use anyhow::{bail, Context};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One workload: benches/guest-workloads/<name>.c, run as `/bench/<name> OPS`.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub name: &'static str,
    /// Operations per run at `--scale 1`: chosen so that a run under the translator (which
    /// translates guest user code too, for now) takes a few seconds per workload.
    pub ops: u64,
    pub what: &'static str,
    /// Takes a directory (argv[2]): tmpfs, /tmp in the guest and /dev/shm on the host.
    pub wants_tmpfs: bool,
}

pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "getpid",
        ops: 100_000,
        what: "getpid through syscall(2): a system call round trip",
        wants_tmpfs: false,
    },
    Workload {
        name: "fork-exit-wait",
        ops: 300,
        what: "fork; the child _exit(0)s at once; waitpid",
        wants_tmpfs: false,
    },
    Workload {
        name: "fork-exec",
        ops: 100,
        what: "fork; the child execs a static binary that exits at once; waitpid",
        wants_tmpfs: false,
    },
    Workload {
        name: "page-fault",
        ops: 20_000,
        what: "first write to a fresh anonymous 4 KiB page (mmap, touch each page, munmap, 4 MiB at a time)",
        wants_tmpfs: false,
    },
    Workload {
        name: "pipe-pingpong",
        ops: 5_000,
        what: "one byte there and back between two processes over two pipes",
        wants_tmpfs: false,
    },
    Workload {
        name: "compute",
        ops: 500,
        what: "CPU-bound user code, no system calls: a sieve of Eratosthenes to 65536 and a hash of it",
        wants_tmpfs: false,
    },
    Workload {
        name: "tmpfs-file",
        ops: 1_000,
        what: "create, write 4 KiB, close, open, read, close and unlink a file in tmpfs",
        wants_tmpfs: true,
    },
];

/// The workloads named in `names` (all of them when empty), in table order.
pub fn select(names: &[String]) -> anyhow::Result<Vec<Workload>> {
    for n in names {
        if !WORKLOADS.iter().any(|w| w.name == n) {
            let all: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
            bail!("unknown workload '{n}' (workloads: {})", all.join(", "));
        }
    }
    Ok(WORKLOADS
        .iter()
        .filter(|w| names.is_empty() || names.iter().any(|n| n == w.name))
        .copied()
        .collect())
}

/// Operations for a run: the default scaled, at least 1.
pub fn scaled_ops(w: &Workload, scale: f64) -> u64 {
    ((w.ops as f64 * scale).round() as u64).max(1)
}

/// A workload's result line: `bench <name> <ops> <nanoseconds>`, or `bench <name> FAIL <what>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Operations and the nanoseconds they took.
    Done {
        ops: u64,
        ns: u64,
    },
    Failed(String),
}

impl Outcome {
    /// Microseconds per operation, or why there is none.
    pub fn us_per_op(&self) -> Result<f64, String> {
        match self {
            Outcome::Done { ops, ns } if *ops > 0 => Ok(*ns as f64 / 1000.0 / *ops as f64),
            Outcome::Done { .. } => Err("no operations".into()),
            Outcome::Failed(why) => Err(format!("workload failed: {why}")),
        }
    }
}

/// The result line for workload `name` in a program's output (console text in a guest: lines
/// end in "\r\n" and the shell's echo of the command is there too).
pub fn parse_result(output: &str, name: &str) -> Option<Outcome> {
    for line in output.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("bench ") else {
            continue;
        };
        let mut f = rest.splitn(3, ' ');
        if f.next() != Some(name) {
            continue;
        }
        let (a, b) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
        if a == "FAIL" {
            return Some(Outcome::Failed(b.to_string()));
        }
        if let (Ok(ops), Ok(ns)) = (a.parse(), b.parse()) {
            return Some(Outcome::Done { ops, ns });
        }
    }
    None
}

/// Compile every workload with gcc -O2 -static into `out_dir`; the binaries, by name.
pub fn build(
    src_dir: &Path,
    out_dir: &Path,
    which: &[Workload],
) -> anyhow::Result<Vec<(Workload, PathBuf)>> {
    let gcc_ok = Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !gcc_ok {
        bail!("gcc not found: the workloads are built on the host with gcc -O2 -static (apt-get install gcc libc6-dev)");
    }
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut built = Vec::new();
    for w in which {
        let src = src_dir.join(format!("{}.c", w.name));
        let bin = out_dir.join(w.name);
        let out = Command::new("gcc")
            .args(["-O2", "-static", "-s", "-Wall", "-Wextra", "-o"])
            .arg(&bin)
            .arg(&src)
            .output()
            .context("cannot run gcc")?;
        if !out.status.success() {
            bail!(
                "gcc -O2 -static {} failed (is libc6-dev installed? static glibc is needed):\n{}",
                src.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        built.push((*w, bin));
    }
    Ok(built)
}

/// A tmpfs directory on the host for the file-system workload: /dev/shm when it is one.
pub fn host_tmpfs() -> (PathBuf, bool) {
    let shm = PathBuf::from("/dev/shm");
    let is_tmpfs = std::fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && f[1] == "/dev/shm" && f[2] == "tmpfs"
        })
    });
    if is_tmpfs {
        (shm, true)
    } else {
        (std::env::temp_dir(), false)
    }
}

/// A CPU set holding the first CPU this process may run on. Native runs are pinned to it: the
/// guests have one vCPU, so their processes (the pipe ping-pong's two, a fork's parent and
/// child) share one CPU, and so do the native ones.
fn one_cpu() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data (all-zero is the empty set); sched_getaffinity writes at
    // most the size it is given into it, and the CPU_* macros index within CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        let cpu = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set))?;
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        Some(one)
    }
}

/// Run a workload natively on the host: microseconds per operation, or why not.
pub fn run_native(
    bin: &Path,
    w: &Workload,
    ops: u64,
    tmpfs: &Path,
    timeout: Duration,
) -> Result<f64, String> {
    let mut cmd = Command::new(bin);
    cmd.arg(ops.to_string());
    if w.wants_tmpfs {
        cmd.arg(tmpfs);
    }
    if let Some(set) = one_cpu() {
        // SAFETY: the closure runs in the child between fork and exec and makes one system
        // call (async-signal-safe) on a cpu_set_t copied into it; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let vm = super::guest::GuestVm::spawn(cmd)?;
    let (status, out, err) = vm.finish(timeout);
    let status = status?;
    match parse_result(&out, w.name) {
        Some(o) => o.us_per_op(),
        None => Err(format!(
            "no result line ({status}){}",
            err.lines()
                .next()
                .map(|l| format!(": {l}"))
                .unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_parse_from_console_text() {
        let console = "btvisor# /bench/getpid 100; echo @@END$((40+2))@@\r\n\
                       bench getpid 100 250000\r\n@@END42@@\r\n";
        assert_eq!(
            parse_result(console, "getpid"),
            Some(Outcome::Done {
                ops: 100,
                ns: 250000
            })
        );
        assert_eq!(
            parse_result(console, "getpid").unwrap().us_per_op(),
            Ok(2.5)
        );
        assert_eq!(parse_result(console, "compute"), None);
        let failed = "bench tmpfs-file FAIL open for writing: No space left on device\n";
        assert_eq!(
            parse_result(failed, "tmpfs-file"),
            Some(Outcome::Failed(
                "open for writing: No space left on device".into()
            ))
        );
        assert_eq!(parse_result("bench getpid x y\n", "getpid"), None);
    }

    #[test]
    fn every_workload_has_a_source_and_a_distinct_name() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/guest-workloads");
        for (i, w) in WORKLOADS.iter().enumerate() {
            let src = std::fs::read_to_string(dir.join(format!("{}.c", w.name)))
                .unwrap_or_else(|e| panic!("{}.c: {e}", w.name));
            assert!(
                src.contains(&format!("\"{}\"", w.name)),
                "{}.c reports under another name",
                w.name
            );
            assert!(WORKLOADS[..i].iter().all(|o| o.name != w.name));
        }
        assert!(select(&["nope".into()]).is_err());
        assert_eq!(select(&["compute".into()]).unwrap().len(), 1);
        assert_eq!(scaled_ops(&WORKLOADS[0], 0.0), 1);
    }
}
