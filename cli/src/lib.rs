//! The `btvisor` command line.

mod args;
mod bench;
pub mod console;
mod stats;

use anyhow::Context;
use args::{Cli, Command, RunArgs};
use btvisor_runtime::loader::linux;
use btvisor_runtime::{HostInput, Vm, VmConfig, VmExit};
use clap::Parser;
use std::io::Write;

/// Exit status for bad images and options.
pub const EXIT_USAGE: i32 = 2;
/// Exit status after a triple fault.
pub const EXIT_TRIPLE_FAULT: i32 = 3;
/// Exit status when the guest needs something btvisor does not run yet.
pub const EXIT_UNSUPPORTED: i32 = 4;
/// Exit status when the guest halted with interrupts disabled (it can never continue).
pub const EXIT_HALTED: i32 = 5;
/// Exit status when the guest kernel reported a panic (pvpanic).
pub const EXIT_GUEST_PANIC: i32 = 6;

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            if !e.use_stderr() {
                // --help and --version
                let _ = e.print();
                return 0;
            }
            // One line, as for every other bad input: clap's first line without its prefix.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!(
                "btvisor: {} (try 'btvisor --help')",
                first.trim_start_matches("error: ")
            );
            return EXIT_USAGE;
        }
    };
    match cli.command {
        Command::Run(a) => match run(&a) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("btvisor: {e:#}");
                EXIT_USAGE
            }
        },
        Command::Bench(a) => match bench::main(&a) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("btvisor bench: {e:#}");
                1
            }
        },
    }
}

/// Serial output: straight to stdout, flushed per write so an interactive console keeps up.
struct Console;

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = std::io::stdout().lock();
        out.write_all(buf)?;
        out.flush()?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

fn run(a: &RunArgs) -> anyhow::Result<i32> {
    let _guard = args::init_tracing(a)?;
    let image = std::fs::read(&a.kernel)
        .with_context(|| format!("cannot read kernel {}", a.kernel.display()))?;
    let config = VmConfig {
        mem_bytes: a.mem,
        cmdline: a.append.clone().unwrap_or_default(),
        accel: a.accel.parse().map_err(anyhow::Error::msg)?,
        user: a.engine.parse().map_err(anyhow::Error::msg)?,
    };
    let mut vm = Vm::new(&config, Box::new(Console))?;
    let name = a.kernel.display().to_string();
    let initrd = match &a.initrd {
        Some(p) => Some((
            p.display().to_string(),
            std::fs::read(p).with_context(|| format!("cannot read initrd {}", p.display()))?,
        )),
        None => None,
    };
    if linux::is_bzimage(&image) || linux::is_elf64(&image) {
        vm.load_linux(&linux::LinuxBoot {
            name: &name,
            kernel: &image,
            initrd: initrd.as_ref().map(|(n, d)| (n.as_str(), d.as_slice())),
            cmdline: &config.cmdline,
            acpi_rsdp: None,
        })?;
    } else {
        if initrd.is_some() {
            anyhow::bail!("{name}: --initrd needs a Linux kernel (bzImage or ELF vmlinux); this is a multiboot image");
        }
        vm.load_multiboot(&name, &image, &config.cmdline)?;
    }
    // Console input: the terminal in raw mode (restored on every exit path), or a pipe.
    let console = console::Console::open().context("cannot set up the console on stdin")?;
    let mut input_open = true;
    vm.input = Some(Box::new(move || {
        if !input_open {
            return HostInput::Nothing;
        }
        match console.try_recv() {
            Some(console::ConsoleEvent::Input(b)) => HostInput::Bytes(b),
            Some(console::ConsoleEvent::Quit) => HostInput::Quit,
            Some(console::ConsoleEvent::Eof) => {
                input_open = false;
                HostInput::Nothing
            }
            None => HostInput::Nothing,
        }
    }));
    let exit = vm.run();
    vm.input = None; // drops the console: the terminal leaves raw mode
    let _ = std::io::stdout().flush();
    if a.stats {
        match vm.engine_stats() {
            Some(s) => eprint!("--- btvisor statistics (--accel {}) ---\n{s}", vm.accel()),
            None => eprint!("{}", stats::render(&vm)),
        }
        if let Some(n) = &vm.native {
            eprint!("{}", n.render_stats());
        }
    }
    Ok(match exit {
        VmExit::ExitCode(c) => c,
        VmExit::PowerOff | VmExit::Reset | VmExit::Timeout => 0,
        VmExit::GuestPanic(dump) => {
            eprintln!("btvisor: the guest kernel panicked; VM stopped\n{dump}");
            EXIT_GUEST_PANIC
        }
        VmExit::Quit => {
            eprintln!("btvisor: quit from the console");
            0
        }
        VmExit::TripleFault(dump) => {
            eprintln!("btvisor: guest triple fault; VM stopped\n{dump}");
            EXIT_TRIPLE_FAULT
        }
        VmExit::Unsupported(dump) => {
            eprintln!("btvisor: unsupported guest operation; VM stopped\n{dump}");
            EXIT_UNSUPPORTED
        }
        VmExit::HaltedForever(dump) => {
            eprintln!("btvisor: guest halted with interrupts disabled; VM stopped\n{dump}");
            EXIT_HALTED
        }
    })
}
