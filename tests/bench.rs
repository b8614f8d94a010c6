//! `btvisor bench` without the slow parts: the nanobenchmark kernel under the translator (every
//! operation reported with a positive cycle count, the `nano=` selection), the bench's
//! nanobenchmark table, and the workloads built and run natively. No Linux boot here: the
//! full benchmark is `btvisor bench` (BENCHMARKS.md), never a test.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const OPERATIONS: &[&str] = &[
    "empty-loop",
    "call-ret",
    "syscall",
    "in",
    "cr8-write",
    "page-fault",
    "divide-fault",
    "pte-write",
    "user-page-fault",
    "user-touch-mapped",
    "as-switch",
    "user-compute",
];

const WORKLOADS: &[&str] = &[
    "getpid",
    "fork-exit-wait",
    "fork-exec",
    "page-fault",
    "pipe-pingpong",
    "compute",
    "tmpfs-file",
];

fn build_nanobench() -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nanobench64.elf");
    let st = Command::new("bash")
        .arg(guests_dir().join("build.sh"))
        .arg(repo().join("benches/nanobench/nanobench64.S"))
        .arg(&out)
        .status()
        .expect("run tests/guests/build.sh (needs binutils: as, ld, objcopy)");
    assert!(
        st.success(),
        "building benches/nanobench/nanobench64.S failed"
    );
    out
}

/// The `nano NAME CYCLES` lines, in order.
fn nano_lines(stdout: &str) -> Vec<(String, f64)> {
    stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[0] == "nano").then(|| {
                let v: f64 = f[2]
                    .parse()
                    .unwrap_or_else(|_| panic!("not a number: {l:?}"));
                (f[1].to_string(), v)
            })
        })
        .collect()
}

#[test]
fn nanobench_kernel_reports_every_operation_under_bt() {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let elf = build_nanobench();
    let out = run_kernel(&elf, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    let got = nano_lines(&stdout);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, OPERATIONS, "stdout:\n{stdout}");
    for (name, cycles) in &got {
        assert!(*cycles > 0.0, "{name}: {cycles} cycles\n{stdout}");
    }
    assert!(
        stdout.starts_with("nanobench: rdtsc cycles per operation")
            && stdout.ends_with("nanobench done\n"),
        "stdout:\n{stdout}"
    );
}

#[test]
fn nanobench_kernel_runs_only_the_operations_named() {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let elf = build_nanobench();
    // Other words are ignored (QEMU puts the image's name first); the kernel keeps its order.
    let out = run_kernel(
        &elf,
        &[
            "--append",
            "nanobench64.elf nano=pte-write,in,syscal,syscall",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}");
    let names: Vec<String> = nano_lines(&stdout).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["syscall", "in", "pte-write"], "stdout:\n{stdout}");
}

/// The table rows of `btvisor bench` markdown output whose first cell is `name`.
fn row<'a>(md: &'a str, name: &str) -> Vec<&'a str> {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {name} |")))
        .unwrap_or_else(|| panic!("no row {name}:\n{md}"));
    line.trim_matches('|').split(" | ").map(str::trim).collect()
}

#[test]
fn bench_nanobenchmarks_under_bt() {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = btvisor(
        &["bench", "--quick", "--engines", "bt", "--no-linux"],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stdout.contains("| operation | bt |\n|---|---|\n"),
        "stdout:\n{stdout}"
    );
    for op in OPERATIONS {
        let cells = row(&stdout, op);
        let cycles: f64 = cells[1]
            .parse()
            .unwrap_or_else(|_| panic!("{op}: {:?}\n{stdout}", cells[1]));
        assert!(cycles > 0.0, "{op}: {cycles}");
    }
    assert!(stdout.starts_with("Command: `btvisor bench --quick --engines bt --no-linux`"));
    assert!(!stdout.contains("bench: "), "progress belongs on stderr");
    assert!(stderr.contains("bench: nano bt 1/1"), "stderr:\n{stderr}");
}

#[test]
fn bench_workloads_run_natively() {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // fetch-guest.sh installs gcc and libc6-dev (static glibc) when they are missing.
    let fetch = Command::new(repo().join("scripts/fetch-guest.sh"))
        .output()
        .expect("run scripts/fetch-guest.sh");
    assert!(
        fetch.status.success(),
        "scripts/fetch-guest.sh failed:\n{}",
        String::from_utf8_lossy(&fetch.stderr)
    );
    let out = btvisor(
        &[
            "bench",
            "--quick",
            "--engines",
            "native",
            "--no-nano",
            "--json",
        ],
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    for w in WORKLOADS {
        let at = stdout
            .find(&format!("\"name\": \"{w}\""))
            .unwrap_or_else(|| panic!("no workload {w}:\n{stdout}"));
        let native = &stdout[at..];
        let native = &native[native.find("\"native\"").expect("native results")..];
        let value = native
            .split("\"us_per_op\": ")
            .nth(1)
            .and_then(|v| v.split([',', '\n']).next())
            .unwrap_or("");
        let us: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("{w}: us_per_op {value:?}\n{stdout}\n{stderr}"));
        assert!(us > 0.0, "{w}: {us} us/op");
    }
}
