//! Command-line arguments and the trace subscriber they configure.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "btvisor",
    version,
    about = "Run unmodified x86 guests by binary translation, without VT-x/AMD-V"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Boot a guest kernel; its serial console is this terminal.
    Run(RunArgs),
    /// Benchmark: guest workloads under each engine against native, and nanobenchmarks; a
    /// markdown table (or --json) on stdout, progress on stderr.
    Bench(crate::bench::BenchArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Guest kernel: a multiboot ELF32 image.
    #[arg(long)]
    pub kernel: PathBuf,
    /// Kernel command line.
    #[arg(long)]
    pub append: Option<String>,
    /// Initial ramdisk (Linux boot protocol; not implemented yet).
    #[arg(long)]
    pub initrd: Option<PathBuf>,
    /// Guest RAM, e.g. 256M or 1G.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    pub mem: u64,
    /// Trace categories, comma-separated: blocks, callouts, traps, mmu, native.
    #[arg(long, value_delimiter = ',', value_parser = ["blocks", "callouts", "traps", "mmu", "native"])]
    pub trace: Vec<String>,
    /// Write traces to this file instead of stderr.
    #[arg(long)]
    pub trace_file: Option<PathBuf>,
    /// Print statistics on stderr when the VM stops.
    #[arg(long)]
    pub stats: bool,
    /// What runs the vCPU: bt (binary translation) or kvm (a KVM vCPU through /dev/kvm, with
    /// the same memory, devices and loaders).
    #[arg(long, default_value = "bt", value_parser = ["bt", "kvm"])]
    pub accel: String,
    /// Under --accel bt, what runs guest user code: native (at the host CPU's speed, in a
    /// sandboxed child process per guest address space), translate (the translator, like
    /// kernel code) or adaptive (native, except address spaces that trap more often than a
    /// world switch pays for, which run translated for a while).
    #[arg(long, default_value = "adaptive", value_parser = ["adaptive", "native", "translate"])]
    pub engine: String,
}

/// "256M", "1G", "65536K" or a byte count.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (examples: 256M, 1G)"))?;
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))?;
    if bytes < 2 << 20 || bytes % 4096 != 0 || bytes > 3 << 30 {
        return Err(format!(
            "guest memory must be a multiple of 4 KiB between 2M and 3G, not '{s}'"
        ));
    }
    Ok(bytes)
}

/// Keeps the trace file writer alive until exit.
pub struct TraceGuard;

pub fn init_tracing(a: &RunArgs) -> anyhow::Result<TraceGuard> {
    let mut filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    for cat in &a.trace {
        filter.push_str(&format!(",btvisor::{cat}=trace"));
    }
    let env = EnvFilter::try_new(&filter).context("bad RUST_LOG filter")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_target(true)
        .without_time()
        .with_ansi(false);
    match &a.trace_file {
        Some(p) => {
            let f = std::fs::File::create(p)
                .with_context(|| format!("cannot create trace file {}", p.display()))?;
            builder.with_writer(std::sync::Mutex::new(f)).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(TraceGuard)
}
