//! Wall time from start to the shell prompt of Debian's cloud kernel with the busybox
//! initramfs, under btvisor and, in the same run, under QEMU's TCG (qemu-system-x86_64 -accel
//! tcg, when installed): medians of several boots, and their ratio.
//!
//!   cargo bench --bench linux_boot [-- RUNS]
//!
//! Each boot ends with `poweroff -f` at the prompt. Prints a markdown table for BENCHMARKS.md and
//! btvisor's `--stats` of the last boot.

#[path = "../tests/common/console.rs"]
#[allow(dead_code)] // the boot test uses more of it
mod console;

use console::*;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// Boot, wait for the prompt, power off; the time to the prompt and the VM's stderr.
fn boot_to_prompt(mut vm: Console) -> (Duration, String) {
    let start = Instant::now();
    let at = vm.wait_for(0, INIT_BANNER, BOOT_TIMEOUT);
    vm.wait_for(at, PROMPT, BOOT_TIMEOUT);
    let t = start.elapsed();
    writeln!(vm.stdin, "poweroff -f").expect("write to the console");
    let status = vm.wait_exit(COMMAND_TIMEOUT);
    assert!(status.success(), "{}", vm.failure("poweroff failed"));
    (t, vm.stderr())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn qemu_installed() -> bool {
    Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let (kernel, initrd) = fetch_guest();
    let qemu = qemu_installed();
    if !qemu {
        eprintln!(
            "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86): btvisor only"
        );
    }
    let mut bt = Vec::new();
    let mut tcg = Vec::new();
    let mut last_stats = String::new();
    for i in 0..runs {
        let (t, stderr) = boot_to_prompt(Console::btvisor(&kernel, &initrd));
        eprintln!("run {}/{runs}: btvisor {:.2} s", i + 1, t.as_secs_f64());
        bt.push(t);
        last_stats = stderr;
        if qemu {
            let mut cmd = Command::new("qemu-system-x86_64");
            cmd.args([
                "-accel",
                "tcg",
                "-m",
                "512M",
                "-nographic",
                "-no-reboot",
                "-kernel",
                &kernel,
                "-initrd",
                &initrd,
                "-append",
                "console=ttyS0",
            ]);
            let (t, _) = boot_to_prompt(Console::spawn(cmd));
            eprintln!("run {}/{runs}: qemu-tcg {:.2} s", i + 1, t.as_secs_f64());
            tcg.push(t);
        }
    }
    let bt = median(bt);
    println!("| engine | start to shell prompt (median of {runs}) | ratio to QEMU TCG |");
    println!("|---|---|---|");
    if qemu {
        let tcg = median(tcg);
        println!(
            "| btvisor | {:.2} s | {:.2}x |",
            bt.as_secs_f64(),
            bt.as_secs_f64() / tcg.as_secs_f64()
        );
        println!("| QEMU TCG | {:.2} s | 1 |", tcg.as_secs_f64());
    } else {
        println!(
            "| btvisor | {:.2} s | (QEMU not installed) |",
            bt.as_secs_f64()
        );
    }
    println!(
        "\n--stats of the last btvisor boot:\n```\n{}```",
        stats_part(&last_stats)
    );
}

/// The `--stats` block of btvisor's stderr.
fn stats_part(stderr: &str) -> &str {
    stderr
        .find("--- btvisor statistics ---")
        .map_or(stderr, |i| &stderr[i..])
}
