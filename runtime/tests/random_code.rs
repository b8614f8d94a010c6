//! Hostile guests never crash the monitor: random bytes executed as guest kernel code (32-bit
//! protected mode, the multiboot entry state) end in a guest exception, a triple fault, an
//! "unsupported" stop or the time limit, never in a Rust panic or a host signal.

use btvisor_runtime::loader::multiboot;
use btvisor_runtime::{Vm, VmConfig, VmExit};
use std::time::{Duration, Instant};

/// xorshift64*: deterministic, so a failure names its seed.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn random_code_never_crashes_the_monitor() {
    let mut outcomes = std::collections::BTreeMap::<&str, u32>::new();
    for seed in 0..300u64 {
        let config = VmConfig {
            mem_bytes: 4 << 20,
            cmdline: String::new(),
            accel: Default::default(),
            user: Default::default(),
        };
        let mut vm = Vm::new(&config, Box::new(std::io::sink())).expect("create VM");
        let mut next = rng(seed);
        let code: Vec<u8> = (0..4096).map(|_| next() as u8).collect();
        vm.machine.mem.ram.write(0x10_0000, &code);
        // Random data elsewhere too, so wild loads and stores see garbage rather than zeros.
        let junk: Vec<u8> = (0..8192).map(|_| next() as u8).collect();
        vm.machine.mem.ram.write(0x20_0000, &junk);
        multiboot::setup_cpu(&vm.machine.mem.ram, &mut vm.cpu, 0x10_0000);
        vm.deadline = Some(Instant::now() + Duration::from_millis(50));
        let exit = vm.run();
        let kind = match exit {
            VmExit::ExitCode(_) => "exit",
            VmExit::TripleFault(_) => "triple fault",
            VmExit::Unsupported(ref m) => {
                if std::env::var("SHOW_UNSUPPORTED").is_ok() {
                    eprintln!("seed {seed}: {}", m.lines().next().unwrap_or(""));
                }
                "unsupported"
            }
            VmExit::HaltedForever(_) => "halted",
            VmExit::PowerOff | VmExit::Reset => "shutdown",
            VmExit::GuestPanic(_) => "panic",
            VmExit::Quit => "quit",
            VmExit::Timeout => "timeout",
        };
        *outcomes.entry(kind).or_default() += 1;
    }
    // Reaching here means no panic in 300 hostile guests; most must end by a guest-visible
    // cause rather than the timeout (random code faults quickly).
    let timeouts = outcomes.get("timeout").copied().unwrap_or(0);
    assert!(
        timeouts < 150,
        "too many random guests ran to the time limit: {outcomes:?}"
    );
    eprintln!("outcomes: {outcomes:?}");
}
