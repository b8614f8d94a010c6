//! The nanobenchmark kernel (benches/nanobench/nanobench64.S): built with tests/guests/build.sh,
//! run under each engine, its `nano <name> <cycles>` lines parsed. An engine that stops on one
//! operation (KVM-PVM's instruction emulator does not know every instruction) gets a new VM
//! for the operations after it, selected with the kernel's `nano=NAME,...` command line.

use super::guest::{shorten, GuestVm};
use super::BenchEngine;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The operations, in the kernel's order, with what each measures.
pub const OPERATIONS: &[(&str, &str)] = &[
    (
        "empty-loop",
        "the measuring loop alone (dec; jnz): included in every other figure",
    ),
    ("call-ret", "call to a function that returns at once"),
    (
        "syscall",
        "from ring 3: SYSCALL to a handler that returns at once with SYSRETQ",
    ),
    (
        "in",
        "IN from an emulated device port (the UART's line status register)",
    ),
    ("cr8-write", "MOV to CR8 (task priority), value 0"),
    (
        "page-fault",
        "load from a not-present page in ring 0; the #PF handler reads CR2 and skips it",
    ),
    (
        "divide-fault",
        "DIV by zero in ring 0; the #DE handler skips it",
    ),
    (
        "pte-write",
        "store to a live page-table entry (an ignored bit), no INVLPG",
    ),
    (
        "user-page-fault",
        "load from a not-present page in ring 3; the #PF handler checks CR2, skips it, IRETQ",
    ),
    (
        "user-touch-mapped",
        "syscall whose handler INVLPGs a mapped user page, then a load from it: subtract syscall",
    ),
    (
        "as-switch",
        "syscall whose handler loads CR3 with the other of two address spaces; SYSRETQ there",
    ),
    (
        "user-compute",
        "ring 3: 16 dependent register add/imul/xor per operation, no traps",
    ),
];

/// Assemble the kernel into `out_dir`.
pub fn build(repo: &Path, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let elf = out_dir.join("nanobench64.elf");
    let out = Command::new("bash")
        .arg(repo.join("tests/guests/build.sh"))
        .arg(repo.join("benches/nanobench/nanobench64.S"))
        .arg(&elf)
        .output()
        .context("cannot run tests/guests/build.sh")?;
    if !out.status.success() {
        bail!(
            "building benches/nanobench/nanobench64.S failed (needs binutils: as, ld, objcopy):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(elf)
}

/// `nano <name> <cycles>` lines, in order.
pub fn parse(output: &str) -> Vec<(String, f64)> {
    output
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split(' ');
            if f.next() != Some("nano") {
                return None;
            }
            let name = f.next()?;
            let cycles: f64 = f.next()?.parse().ok()?;
            (f.next().is_none() && cycles.is_finite()).then(|| (name.to_string(), cycles))
        })
        .collect()
}

/// The command that runs the kernel with the operations in `only` under `engine`.
fn command(engine: BenchEngine, elf: &Path, only: &[&str]) -> Command {
    let append = format!("nano={}", only.join(","));
    match engine {
        BenchEngine::QemuTcg => {
            let mut c = Command::new("qemu-system-x86_64");
            c.args([
                "-accel", "tcg", "-m", "128M", "-display", "none", "-serial", "stdio",
            ])
            .args([
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
                "-no-reboot",
            ])
            .arg("-kernel")
            .arg(elf)
            .args(["-append", &append]);
            c
        }
        BenchEngine::Bt | BenchEngine::BtNative | BenchEngine::BtTranslate | BenchEngine::Kvm => {
            let mut c = Command::new(super::self_exe());
            c.arg("run")
                .arg("--kernel")
                .arg(elf)
                .args(["--append", &append])
                .args(engine.btvisor_args());
            c
        }
    }
}

/// Symbol+offset for an address in the kernel (`nm -n`), to name where a guest fault hit.
fn symbolize(elf: &Path, addr: u64) -> Option<String> {
    let out = Command::new("nm").arg("-n").arg(elf).output().ok()?;
    let mut best: Option<(u64, String)> = None;
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() != 3 || !matches!(f[1], "t" | "T") {
            continue;
        }
        if let Ok(a) = u64::from_str_radix(f[0], 16) {
            if a <= addr {
                best = Some((a, f[2].to_string()));
            }
        }
    }
    best.map(|(a, s)| format!("{s}+{:#x}", addr - a))
}

/// The instruction at `addr` in the kernel (`objdump -d`; the image is an ELF32 container of
/// 64-bit code, hence -M x86-64).
fn disassemble(elf: &Path, addr: u64) -> Option<String> {
    let out = Command::new("objdump")
        .args(["-d", "-M", "x86-64,att"])
        .arg(format!("--start-address={addr:#x}"))
        .arg(format!("--stop-address={:#x}", addr + 15))
        .arg(elf)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{addr:x}:")))?;
    // "  1015d0:\t48 0f 07             \tsysretq"
    let insn = line.split('\t').nth(2)?.trim();
    (!insn.is_empty()).then(|| insn.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The guest's own report of an unexpected exception ("exc #GP err=... rip=..."), with the
/// faulting address named.
fn guest_fault(elf: &Path, console: &str) -> Option<String> {
    let line = console
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("exc "))?;
    let rip = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rip="))
        .and_then(|h| u64::from_str_radix(h, 16).ok());
    let at = rip
        .and_then(|r| {
            let sym = symbolize(elf, r)?;
            Some(match disassemble(elf, r) {
                Some(insn) => format!(" (`{insn}` at {sym})"),
                None => format!(" ({sym})"),
            })
        })
        .unwrap_or_default();
    Some(format!("guest: {line}{at}"))
}

/// Cycles per operation for each operation under `engine` (one VM, plus one more after each
/// operation it stops on), or why not.
pub fn run_once(
    engine: BenchEngine,
    elf: &Path,
    only: &[&str],
    timeout: Duration,
) -> Vec<(String, Result<f64, String>)> {
    let mut results = Vec::new();
    let mut left: Vec<&str> = only.to_vec();
    while !left.is_empty() {
        let vm = match GuestVm::spawn(command(engine, elf, &left)) {
            Ok(vm) => vm,
            Err(why) => {
                for name in left.drain(..) {
                    results.push((name.to_string(), Err(why.clone())));
                }
                break;
            }
        };
        let started = std::time::Instant::now();
        let (status, console, stderr) = vm.finish(timeout);
        for (name, cycles) in parse(&console) {
            if let Some(i) = left.iter().position(|n| *n == name) {
                left.remove(i);
                results.push((name, Ok(cycles)));
            }
        }
        let finished = status
            .as_ref()
            .is_ok_and(|s| s.code() == Some(1) && console.contains("nanobench done"));
        if finished {
            for name in left.drain(..) {
                results.push((name.to_string(), Err("not reported by the kernel".into())));
            }
            break;
        }
        // The VM stopped (or hung) on the next operation: say why, and go on with the rest.
        if left.is_empty() {
            break;
        }
        let stuck = left.remove(0);
        let why = match status {
            Err(timed_out) => timed_out,
            Ok(s) => guest_fault(elf, &console)
                .map(|g| format!("{g} ({})", status_text(s.code())))
                .unwrap_or_else(|| {
                    super::guest::stop_reason(s.code(), started.elapsed(), &stderr, &console)
                }),
        };
        results.push((stuck.to_string(), Err(shorten(&why, 300))));
    }
    results
}

fn status_text(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_lines_parse() {
        let out = "nanobench: rdtsc cycles per operation, median of 11 batches of 1000\r\n\
                   nano empty-loop 44.8\r\nnano syscall 356.9\r\nnano bad x\r\nexc #GP\r\n";
        assert_eq!(
            parse(out),
            vec![
                ("empty-loop".to_string(), 44.8),
                ("syscall".to_string(), 356.9)
            ]
        );
    }

    #[test]
    fn every_operation_is_in_the_kernel() {
        let src = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/nanobench/nanobench64.S"),
        )
        .expect("read nanobench64.S");
        let items: Vec<&str> = src
            .lines()
            .filter_map(|l| l.trim().strip_prefix("ITEM \""))
            .filter_map(|l| l.split('"').next())
            .collect();
        let ours: Vec<&str> = OPERATIONS.iter().map(|o| o.0).collect();
        assert_eq!(items, ours);
    }
}
