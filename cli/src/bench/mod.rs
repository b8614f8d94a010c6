//! `btvisor bench`: the same guest workloads under each engine (binary translation, KVM, and
//! QEMU's TCG for reference) against the same static binaries run natively, and
//! nanobenchmarks of single sensitive operations (design.md 3.4; Adams and Agesen, ASPLOS
//! 2006). One table per part, on stdout (markdown, or JSON with --json); progress on stderr.
//!
//! The Linux part boots Debian's kernel with scripts/fetch-guest.sh's busybox initramfs plus a
//! second archive holding /bench/<workload> ([`initrd`]), drives the shell over the serial
//! console ([`guest`]) and reads each program's own timing (clock_gettime around its loop, so
//! boot time is excluded). An engine that cannot boot or dies costs its cells ("failed:
//! <reason>"), never the table: every wait has a deadline and a VM that misses it is killed.

mod guest;
mod initrd;
mod nano;
mod report;
mod workloads;

use anyhow::{bail, Context};
use clap::Args;
use guest::{GuestVm, INIT_BANNER, PROMPT};
use report::{Cell, NanoTable, Report, WorkloadRow, WorkloadTable};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use workloads::Workload;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Engines to compare, comma-separated: bt (the default adaptive engine), bt-native (user
    /// code always native), bt-translate (user code translated), kvm, qemu-tcg. Native always runs, as the baseline ("native" alone: only
    /// that). Default: bt, bt-native, bt-translate, kvm when /dev/kvm opens, qemu-tcg when
    /// qemu-system-x86_64 runs.
    #[arg(long, value_delimiter = ',', value_parser = ["bt", "bt-native", "bt-translate", "kvm", "qemu-tcg", "native"])]
    pub engines: Vec<String>,
    /// Runs per engine (each a fresh boot, or a fresh nanobenchmark VM) and natively; the
    /// tables show medians. Default 3 (1 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub runs: Option<u64>,
    /// A short run: a tenth of the operations, one run unless --runs says otherwise.
    #[arg(long)]
    pub quick: bool,
    /// Multiply every workload's operation count by this (after --quick's tenth).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Only these workloads, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<String>,
    /// Print one JSON document instead of markdown tables.
    #[arg(long)]
    pub json: bool,
    /// Seconds an engine gets from VM start to the shell prompt (Debian's kernel boots in
    /// about 10 s under bt; under KVM-PVM it stops with an emulation failure after 2-3
    /// minutes). An engine that misses it or stops is reported as failed for every workload
    /// and not booted again.
    #[arg(long, default_value_t = 180, value_name = "SECS")]
    pub boot_timeout: u64,
    /// Seconds one workload, or one nanobenchmark VM, may take before the VM is killed.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub command_timeout: u64,
    /// Skip the Linux workloads (nanobenchmarks only).
    #[arg(long)]
    pub no_linux: bool,
    /// Skip the nanobenchmarks.
    #[arg(long)]
    pub no_nano: bool,
    /// Guest kernel instead of scripts/fetch-guest.sh's (with --initrd).
    #[arg(long, requires = "initrd")]
    pub kernel: Option<PathBuf>,
    /// Busybox initramfs whose /init starts a shell with the prompt "btvisor# " (the workloads
    /// are appended to it), instead of scripts/fetch-guest.sh's.
    #[arg(long, requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Guest RAM for the Linux boots.
    #[arg(long, default_value = "512M")]
    pub mem: String,
    /// Build the workloads, the initramfs and the nanobenchmark kernel here and keep them
    /// (default: a temporary directory, removed at the end).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

/// What runs a guest in a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchEngine {
    /// `btvisor run --accel bt`: kernel translated, user code native or translated by the
    /// adaptive policy (the default engine).
    Bt,
    /// `btvisor run --accel bt --engine native`: user code always native.
    BtNative,
    /// `btvisor run --accel bt --engine translate`: user code translated too.
    BtTranslate,
    /// `btvisor run --accel kvm`.
    Kvm,
    /// `qemu-system-x86_64 -accel tcg`: a mature binary translator, for reference.
    QemuTcg,
}

impl BenchEngine {
    pub fn name(self) -> &'static str {
        match self {
            BenchEngine::Bt => "bt",
            BenchEngine::BtNative => "bt-native",
            BenchEngine::BtTranslate => "bt-translate",
            BenchEngine::Kvm => "kvm",
            BenchEngine::QemuTcg => "qemu-tcg",
        }
    }

    /// btvisor's `--accel` and `--engine` options.
    fn btvisor_args(self) -> [&'static str; 4] {
        match self {
            BenchEngine::Kvm => ["--accel", "kvm", "--engine", "native"],
            BenchEngine::BtTranslate => ["--accel", "bt", "--engine", "translate"],
            BenchEngine::BtNative => ["--accel", "bt", "--engine", "native"],
            _ => ["--accel", "bt", "--engine", "adaptive"],
        }
    }

    /// The command that boots Linux with the bench initramfs, its console on stdin/stdout.
    fn linux_command(self, kernel: &Path, initrd: &Path, mem: &str) -> Command {
        const APPEND: &str = "console=ttyS0 panic=-1";
        match self {
            BenchEngine::QemuTcg => {
                let mut c = Command::new("qemu-system-x86_64");
                c.args(["-accel", "tcg", "-m", mem, "-nographic", "-no-reboot"])
                    .arg("-kernel")
                    .arg(kernel)
                    .arg("-initrd")
                    .arg(initrd)
                    .args(["-append", APPEND]);
                c
            }
            BenchEngine::Bt
            | BenchEngine::BtNative
            | BenchEngine::BtTranslate
            | BenchEngine::Kvm => {
                let mut c = Command::new(self_exe());
                c.arg("run")
                    .arg("--kernel")
                    .arg(kernel)
                    .arg("--initrd")
                    .arg(initrd)
                    .args(["--append", APPEND, "--mem", mem])
                    .args(self.btvisor_args());
                c
            }
        }
    }
}

/// This btvisor binary (the engines run as `btvisor run` children).
fn self_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("btvisor"))
}

/// The source tree this binary was built from: scripts/fetch-guest.sh, the workload sources,
/// the nanobenchmark kernel and tests/guests/build.sh come from there.
fn repo() -> anyhow::Result<PathBuf> {
    let r = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if !r.join("benches/guest-workloads").is_dir() || !r.join("tests/guests/build.sh").is_file() {
        bail!(
            "btvisor bench needs the btvisor source tree it was built from ({}): it builds the \
             workloads and the nanobenchmark kernel from there",
            r.display()
        );
    }
    Ok(r.canonicalize().unwrap_or(r))
}

fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

fn kvm_kind() -> String {
    let module = |m: &str| Path::new("/sys/module").join(m).exists();
    let opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    match opens {
        Err(e) => format!("not usable ({e})"),
        Ok(_) if module("kvm_pvm") => {
            "KVM-PVM (kvm_pvm: no VT-x/AMD-V; guests that are not PVM-aware run their kernel \
             through KVM's instruction emulator)"
                .into()
        }
        Ok(_) if module("kvm_amd") => "KVM on AMD-V (kvm_amd)".into(),
        Ok(_) if module("kvm_intel") => "KVM on VT-x (kvm_intel)".into(),
        Ok(_) => "KVM".into(),
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "{cpus} CPUs ({model}), host Linux {kernel}, /dev/kvm: {}",
        kvm_kind()
    )
}

/// Now, as "YYYY-MM-DD HH:MM UTC".
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs as i64)
}

/// Seconds since the epoch as "YYYY-MM-DD HH:MM UTC" (days to civil date: H. Hinnant's
/// algorithm, proleptic Gregorian calendar).
fn format_utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn qemu_installed() -> bool {
    Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The engines to run, and notes on those left out.
fn engines(a: &BenchArgs) -> (Vec<BenchEngine>, Vec<String>) {
    let mut notes = Vec::new();
    if !a.engines.is_empty() {
        let mut v = Vec::new();
        for (name, e) in [
            ("bt", BenchEngine::Bt),
            ("bt-native", BenchEngine::BtNative),
            ("bt-translate", BenchEngine::BtTranslate),
            ("kvm", BenchEngine::Kvm),
            ("qemu-tcg", BenchEngine::QemuTcg),
        ] {
            if a.engines.iter().any(|x| x == name) {
                v.push(e);
            }
        }
        return (v, notes);
    }
    let mut v = vec![
        BenchEngine::Bt,
        BenchEngine::BtNative,
        BenchEngine::BtTranslate,
    ];
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => v.push(BenchEngine::Kvm),
        Err(e) => notes.push(format!("kvm left out: /dev/kvm: {e}")),
    }
    if qemu_installed() {
        v.push(BenchEngine::QemuTcg);
    } else {
        notes.push(
            "qemu-tcg left out: qemu-system-x86_64 is not installed (apt-get install \
             qemu-system-x86)"
                .into(),
        );
    }
    (v, notes)
}

/// The guest kernel and base initramfs: the options, or scripts/fetch-guest.sh's two lines.
fn guest_images(a: &BenchArgs, repo: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let (Some(k), Some(i)) = (&a.kernel, &a.initrd) {
        return Ok((k.clone(), i.clone()));
    }
    progress("scripts/fetch-guest.sh (Debian's kernel and the busybox initramfs)");
    let out = Command::new(repo.join("scripts/fetch-guest.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run scripts/fetch-guest.sh")?;
    if !out.status.success() {
        bail!("scripts/fetch-guest.sh failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(PathBuf::from)
            .with_context(|| format!("scripts/fetch-guest.sh printed no {key} line"))
    };
    Ok((field("kernel=")?, field("initrd=")?))
}

/// The build directory: removed on drop unless the user chose it.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Per engine and run: boot, run every workload still going, power off. Failures go into the
/// engine's cells; an engine that does not boot is not booted again.
struct LinuxRunner<'a> {
    kernel: &'a Path,
    initrd: &'a Path,
    mem: &'a str,
    boot_timeout: Duration,
    command_timeout: Duration,
}

impl LinuxRunner<'_> {
    /// One boot of `engine`: the boot time, or why it did not reach the prompt; the workloads'
    /// results are recorded in `cells` (by workload index).
    fn run(
        &self,
        engine: BenchEngine,
        todo: &[(usize, Workload, u64)],
        cells: &mut [Cell],
        tag: &str,
    ) -> Result<f64, String> {
        let start = Instant::now();
        let mut vm = GuestVm::spawn(engine.linux_command(self.kernel, self.initrd, self.mem))?;
        let at = vm.wait_for(
            0,
            INIT_BANNER,
            self.boot_timeout,
            "did not reach the initramfs's init",
        )?;
        let left = self.boot_timeout.saturating_sub(start.elapsed());
        vm.wait_for(at, PROMPT, left, "no shell prompt")?;
        let boot = start.elapsed().as_secs_f64();
        progress(&format!("{tag}: shell prompt after {boot:.1} s"));
        for (i, (idx, w, ops)) in todo.iter().enumerate() {
            let arg = if w.wants_tmpfs { " /tmp" } else { "" };
            let cmd = format!("/bench/{} {ops}{arg}", w.name);
            match vm.run(&cmd, self.command_timeout) {
                Ok(out) => {
                    let r = match workloads::parse_result(&out, w.name) {
                        Some(o) => o.us_per_op(),
                        None => Err(format!(
                            "no result line; last console line: {}",
                            guest::last_line(&out)
                        )),
                    };
                    match &r {
                        Ok(us) => {
                            progress(&format!("{tag}: {} {} us/op", w.name, report::sig3(*us)))
                        }
                        Err(why) => progress(&format!("{tag}: {} failed: {why}", w.name)),
                    }
                    cells[*idx].record(r);
                }
                Err(why) => {
                    // The VM stopped or was killed: this workload failed; the rest of this run
                    // did not run.
                    progress(&format!("{tag}: {} failed: {why}", w.name));
                    cells[*idx].record(Err(why));
                    for (idx, w, _) in &todo[i + 1..] {
                        progress(&format!("{tag}: {} not run (the VM is gone)", w.name));
                        cells[*idx].attempts += 1;
                    }
                    return Ok(boot);
                }
            }
        }
        vm.poweroff(Duration::from_secs(30));
        Ok(boot)
    }
}

pub fn main(a: &BenchArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let repo = repo()?;
    let runs = a.runs.unwrap_or(if a.quick { 1 } else { 3 }) as usize;
    let scale = a.scale * if a.quick { 0.1 } else { 1.0 };
    if !(scale.is_finite() && scale > 0.0) {
        bail!("--scale must be a positive number");
    }
    let selected = workloads::select(&a.workloads)?;
    let (engines, notes) = engines(a);
    let boot_timeout = Duration::from_secs(a.boot_timeout);
    let command_timeout = Duration::from_secs(a.command_timeout);

    let work = match &a.work_dir {
        Some(d) => WorkDir {
            path: d.clone(),
            keep: true,
        },
        None => WorkDir {
            path: std::env::temp_dir().join(format!("btvisor-bench.{}", std::process::id())),
            keep: false,
        },
    };
    std::fs::create_dir_all(&work.path)
        .with_context(|| format!("cannot create {}", work.path.display()))?;

    let mut report = Report {
        command: std::iter::once("btvisor".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        date: utc_now(),
        machine: machine(),
        guest: None,
        runs,
        workloads: None,
        nano: None,
        notes,
    };

    if !a.no_linux && !selected.is_empty() {
        // Images first: fetch-guest.sh also installs gcc and libc6-dev when missing.
        let guest = if engines.is_empty() {
            None
        } else {
            Some(guest_images(a, &repo)?)
        };
        progress("building the workloads (gcc -O2 -static)");
        let built = workloads::build(
            &repo.join("benches/guest-workloads"),
            &work.path.join("bin"),
            &selected,
        )?;
        let ops: Vec<u64> = selected
            .iter()
            .map(|w| workloads::scaled_ops(w, scale))
            .collect();
        let (tmpfs, is_tmpfs) = workloads::host_tmpfs();
        let mut rows: Vec<WorkloadRow> = selected
            .iter()
            .zip(&ops)
            .map(|(w, n)| WorkloadRow {
                name: w.name.to_string(),
                what: w.what.to_string(),
                ops: *n,
                cells: vec![Cell::default(); engines.len() + 1],
            })
            .collect();
        let mut boot = vec![Cell::default(); engines.len()];

        // Native: the same binaries on the host.
        for run in 1..=runs {
            for (i, (w, bin)) in built.iter().enumerate() {
                let r = workloads::run_native(bin, w, ops[i], &tmpfs, command_timeout);
                match &r {
                    Ok(us) => progress(&format!(
                        "native {run}/{runs}: {} {} us/op",
                        w.name,
                        report::sig3(*us)
                    )),
                    Err(why) => progress(&format!("native {run}/{runs}: {} failed: {why}", w.name)),
                }
                rows[i].cells[0].record(r);
            }
        }

        if let Some((kernel, base_initrd)) = &guest {
            let initrd = work.path.join("initrd-bench.cpio");
            let files: Vec<(String, Vec<u8>)> = built
                .iter()
                .map(|(w, bin)| {
                    std::fs::read(bin)
                        .map(|d| (format!("bench/{}", w.name), d))
                        .with_context(|| format!("cannot read {}", bin.display()))
                })
                .collect::<anyhow::Result<_>>()?;
            let entries: Vec<initrd::Entry> = files
                .iter()
                .map(|(p, d)| initrd::Entry {
                    path: p,
                    data: d,
                    perm: 0o755,
                })
                .collect();
            initrd::concat(base_initrd, &initrd::cpio(&["bench"], &entries), &initrd)
                .with_context(|| format!("cannot write {}", initrd.display()))?;
            progress(&format!(
                "initramfs: {} + /bench ({} workloads) -> {}",
                base_initrd.display(),
                built.len(),
                initrd.display()
            ));
            report.guest = Some(format!(
                "{}, {} RAM, one vCPU, `console=ttyS0 panic=-1`; the busybox initramfs of \
                 scripts/fetch-guest.sh with the workloads appended in /bench",
                kernel.file_name().map_or_else(
                    || kernel.display().to_string(),
                    |n| n.to_string_lossy().to_string()
                ),
                a.mem
            ));
            let runner = LinuxRunner {
                kernel,
                initrd: &initrd,
                mem: &a.mem,
                boot_timeout,
                command_timeout,
            };
            for (e, engine) in engines.iter().enumerate() {
                let mut cells: Vec<Cell> = rows.iter().map(|r| r.cells[e + 1].clone()).collect();
                for run in 1..=runs {
                    // Workloads that failed in an earlier run are not tried again.
                    let todo: Vec<(usize, Workload, u64)> = selected
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !cells[*i].failed())
                        .map(|(i, w)| (i, *w, ops[i]))
                        .collect();
                    if todo.is_empty() {
                        break;
                    }
                    let tag = format!("{} {run}/{runs}", engine.name());
                    progress(&format!("{tag}: booting"));
                    match runner.run(*engine, &todo, &mut cells, &tag) {
                        Ok(secs) => boot[e].record(Ok(secs)),
                        Err(why) => {
                            progress(&format!("{tag}: boot failed: {why}"));
                            boot[e].record(Err(why.clone()));
                            for c in cells.iter_mut() {
                                c.fail(&format!("did not boot: {why}"));
                            }
                            break;
                        }
                    }
                }
                for (r, c) in rows.iter_mut().zip(cells) {
                    r.cells[e + 1] = c;
                }
            }
        }
        report.workloads = Some(WorkloadTable {
            engines: engines.iter().map(|e| e.name().to_string()).collect(),
            rows,
            boot,
            native_tmpfs: if is_tmpfs {
                tmpfs.display().to_string()
            } else {
                format!("{} (not a tmpfs: no tmpfs found)", tmpfs.display())
            },
        });
    }

    if !a.no_nano && !engines.is_empty() {
        progress("building the nanobenchmark kernel");
        let elf = nano::build(&repo, &work.path)?;
        let names: Vec<&str> = nano::OPERATIONS.iter().map(|o| o.0).collect();
        let mut rows: Vec<(String, String, Vec<Cell>)> = nano::OPERATIONS
            .iter()
            .map(|(n, w)| {
                (
                    n.to_string(),
                    w.to_string(),
                    vec![Cell::default(); engines.len()],
                )
            })
            .collect();
        for (e, engine) in engines.iter().enumerate() {
            for run in 1..=runs {
                let todo: Vec<&str> = names
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !rows[*i].2[e].failed())
                    .map(|(_, n)| *n)
                    .collect();
                if todo.is_empty() {
                    break;
                }
                progress(&format!("nano {} {run}/{runs}", engine.name()));
                for (name, r) in nano::run_once(*engine, &elf, &todo, command_timeout) {
                    if let Err(why) = &r {
                        progress(&format!(
                            "nano {} {run}/{runs}: {name} failed: {why}",
                            engine.name()
                        ));
                    }
                    if let Some(i) = names.iter().position(|n| *n == name) {
                        rows[i].2[e].record(r);
                    }
                }
            }
        }
        report.nano = Some(NanoTable {
            engines: engines.iter().map(|e| e.name().to_string()).collect(),
            rows,
        });
    }

    progress(&format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    if a.json {
        print!("{}", report.json());
    } else {
        print!("{}", report.markdown());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(format_utc(4_102_444_799), "2099-12-31 23:59 UTC");
    }
}
