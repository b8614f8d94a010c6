//! Every guest test kernel in tests/guests under `--accel kvm` (slow: one btvisor run per
//! kernel, in sequence), with a results table: kernel, result, KVM's exit reason.
//!
//! What must pass depends on what /dev/kvm is:
//! - KVM on VT-x or AMD-V (kvm_intel / kvm_amd loaded): every kernel passes, with the same
//!   serial output and exit status as under the translator.
//! - KVM-PVM (kvm_pvm loaded, no hardware virtualisation): PVM runs a guest that is not
//!   PVM-aware by emulating its kernel instruction by instruction, and KVM's emulator does not
//!   know every instruction (IRET and INT3 in protected mode, DAA, LAR, ENTER, LDMXCSR,
//!   CMPXCHG16B...) nor non-long-mode paging. The kernels listed in [`PASS_ON_PVM`] must pass;
//!   every other one must stop cleanly: a KVM exit reason from btvisor or the guest's own
//!   report, never a crash of the monitor or a hang.
//! - No /dev/kvm: the test says so loudly and checks that `--accel kvm` fails with a clear
//!   message; with BTVISOR_REQUIRE_KVM=1 it fails instead.
//!
//! The table is printed (run with --nocapture to see it) and written to
//! `$CARGO_TARGET_TMPDIR/kvm_guest_kernels.md`.

mod common;

use common::*;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// Kernels KVM-PVM runs correctly on the project's machine kind (2-core AMD EPYC, Linux 6.18).
const PASS_ON_PVM: &[&str] = &["hello", "paging64", "smc32", "smc64"];

const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// KVM backed by VT-x or AMD-V.
    Hardware,
    /// KVM-PVM: no hardware virtualisation.
    Pvm,
    /// /dev/kvm cannot be opened.
    NoKvm(String),
}

fn host() -> Host {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Host::NoKvm(e.to_string());
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        Host::Pvm
    } else {
        // kvm_intel / kvm_amd, or KVM built into the kernel: hardware virtualisation.
        Host::Hardware
    }
}

struct Outcome {
    kernel: String,
    pass: bool,
    /// Why it failed: KVM's exit reason from btvisor's report, or what the guest said.
    reason: String,
    /// Did it stop cleanly (an exit status, within the timeout, no monitor panic)?
    clean: bool,
    secs: f64,
}

fn run_under_kvm(name: &str) -> Outcome {
    let elf = build_guest(name);
    let start = Instant::now();
    let out = btvisor(
        &[
            "run",
            "--kernel",
            elf.to_str().expect("utf-8 path"),
            "--accel",
            "kvm",
        ],
        TIMEOUT,
    );
    let secs = start.elapsed().as_secs_f64();
    let expected = std::fs::read_to_string(guests_dir().join(format!("{name}.expected")))
        .expect("read NAME.expected");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    let pass = stdout == expected && code == Some(expected_exit(name));
    let timed_out = start.elapsed() >= TIMEOUT;
    let panicked = stderr.contains("panicked at");
    let clean = code.is_some() && !timed_out && !panicked;
    let reason = if pass {
        String::new()
    } else if timed_out {
        format!("hung: killed after {} s", TIMEOUT.as_secs())
    } else if panicked || code.is_none() {
        format!("btvisor crashed ({:?}): {}", out.status, stderr.trim())
    } else if let Some(line) = stderr.lines().find(|l| l.contains("KVM_")) {
        // btvisor stopped the VM: KVM's exit reason, and the instruction KVM stopped at.
        let code_line = stderr
            .lines()
            .find(|l| l.trim_start().starts_with("code:"))
            .map(|l| format!("; {}", l.trim()))
            .unwrap_or_default();
        format!("{}{code_line} (status {})", line.trim(), code.unwrap_or(-1))
    } else {
        // The guest ran to its own end but saw something else than on hardware.
        let got: Vec<&str> = stdout.lines().collect();
        let first_diff = expected
            .lines()
            .enumerate()
            .find(|(i, l)| got.get(*i) != Some(l))
            .map(|(i, l)| {
                format!(
                    "serial line {}: got {:?}, expected {:?}",
                    i + 1,
                    got.get(i).copied().unwrap_or("<nothing>"),
                    l
                )
            })
            .unwrap_or_else(|| "serial output matches".into());
        let first_err = stderr.lines().next().unwrap_or("").trim();
        format!(
            "guest exit status {} (expected {}); {first_diff}{}",
            code.unwrap_or(-1),
            expected_exit(name),
            if first_err.is_empty() {
                String::new()
            } else {
                format!("; btvisor: {first_err}")
            }
        )
    };
    Outcome {
        kernel: name.to_string(),
        pass,
        reason,
        clean,
        secs,
    }
}

fn all_kernels() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(guests_dir())
        .expect("list tests/guests")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "S"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

fn table(host: &Host, results: &[Outcome]) -> String {
    let mut s = format!("KVM guest kernels on {host:?} (`btvisor run --accel kvm`)\n\n");
    s.push_str("| kernel | result | time | KVM exit reason / what the guest saw |\n");
    s.push_str("|---|---|---|---|\n");
    for r in results {
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} s | {} |",
            r.kernel,
            if r.pass { "pass" } else { "FAIL" },
            r.secs,
            r.reason.replace('|', "\\|")
        );
    }
    let passed = results.iter().filter(|r| r.pass).count();
    let _ = writeln!(s, "\n{passed} of {} pass", results.len());
    s
}

/// The slow test: every kernel under `--accel kvm`, the results table, and what this host
/// must pass.
#[test]
fn kvm_slow_all_guest_kernels() {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let host = host();
    if let Host::NoKvm(why) = &host {
        let msg = format!("kvm_slow_all_guest_kernels: NOT RUN: /dev/kvm: {why}");
        assert!(
            std::env::var("BTVISOR_REQUIRE_KVM").as_deref() != Ok("1"),
            "{msg} (BTVISOR_REQUIRE_KVM=1)"
        );
        eprintln!("{msg}\n  (set BTVISOR_REQUIRE_KVM=1 to make a missing /dev/kvm a failure)");
        // Still check what a user without KVM sees.
        let out = btvisor(
            &[
                "run",
                "--kernel",
                build_guest("hello").to_str().unwrap(),
                "--accel",
                "kvm",
            ],
            TIMEOUT,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
        assert!(
            stderr.contains("--accel kvm: /dev/kvm: "),
            "stderr: {stderr}"
        );
        return;
    }
    let expect = match host {
        Host::Hardware => "KVM on VT-x/AMD-V: every kernel must pass".to_string(),
        Host::Pvm => format!(
            "KVM-PVM: {} must pass, the others must stop cleanly with KVM's reason",
            PASS_ON_PVM.join(", ")
        ),
        Host::NoKvm(_) => unreachable!(),
    };
    eprintln!("kvm_slow_all_guest_kernels: host {host:?}; {expect}");
    let results: Vec<Outcome> = all_kernels().iter().map(|k| run_under_kvm(k)).collect();
    let report = table(&host, &results);
    eprintln!("{report}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kvm_guest_kernels.md");
    std::fs::write(&path, &report).expect("write the results table");
    eprintln!("(table written to {})", path.display());

    for r in &results {
        assert!(
            r.clean,
            "{}: did not stop cleanly: {}\n{report}",
            r.kernel, r.reason
        );
    }
    match host {
        Host::Hardware => {
            let failed: Vec<&str> = results
                .iter()
                .filter(|r| !r.pass)
                .map(|r| r.kernel.as_str())
                .collect();
            assert!(
                failed.is_empty(),
                "fail under KVM on VT-x/AMD-V: {failed:?}\n{report}"
            );
        }
        Host::Pvm => {
            for k in PASS_ON_PVM {
                let r = results
                    .iter()
                    .find(|r| r.kernel == *k)
                    .unwrap_or_else(|| panic!("{k} is in PASS_ON_PVM but not in tests/guests"));
                assert!(
                    r.pass,
                    "{k} must pass under KVM-PVM: {}\n{report}",
                    r.reason
                );
            }
            for r in results.iter().filter(|r| !r.pass) {
                assert!(
                    !r.reason.is_empty(),
                    "{}: failure without a reason",
                    r.kernel
                );
            }
            let extra: Vec<&str> = results
                .iter()
                .filter(|r| r.pass && !PASS_ON_PVM.contains(&r.kernel.as_str()))
                .map(|r| r.kernel.as_str())
                .collect();
            if !extra.is_empty() {
                eprintln!("note: KVM-PVM now also passes {extra:?}: add them to PASS_ON_PVM");
            }
        }
        Host::NoKvm(_) => unreachable!(),
    }
}

/// A host without usable KVM gets one clear line, not a backtrace (the device path is
/// overridden so this runs on every host).
#[test]
fn kvm_missing_device_is_a_clear_error() {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let elf = build_guest("hello");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_btvisor"))
        .args(["run", "--kernel", elf.to_str().unwrap(), "--accel", "kvm"])
        .env("BTVISOR_KVM_DEVICE", "/nonexistent/kvm")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run btvisor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(
        stderr.trim(),
        "btvisor: --accel kvm: /nonexistent/kvm: No such file or directory (os error 2)"
    );
    assert!(out.stdout.is_empty());
}
