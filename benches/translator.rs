//! Translator benchmark: the same kernel-style integer code run natively on the host and
//! translated (tier 0 interpreter; tier 1 when compiled), as a ratio against native measured in
//! the same run; and translation throughput on real compiled code (this binary's own .text).
//!
//!     cargo bench --bench translator            # prints a markdown table
//!
//! Medians of several runs; the machines are noisy, so only ratios taken in the same run count.

use btvisor_translator::block::BlockKey;
use btvisor_translator::classify::CalloutKind;
use btvisor_translator::cpu::{cr, CpuState, Seg, Segment};
use btvisor_translator::engine::TierPolicy;
use btvisor_translator::env::{CalloutResult, Env, Fetched, StopReason};
use btvisor_translator::exception::Exception;
use btvisor_translator::scan::scan_block;
use btvisor_translator::{RunExit, Translator};
use iced_x86::Instruction;
use std::process::Command;
use std::time::{Duration, Instant};

const CODE: u64 = 0x1000;
const HALT: u64 = 0x900;
const BUF: u64 = 0x10000;
const STACK_TOP: u64 = 0x80000;
const MEM: usize = 1 << 20;

/// Flat guest memory: linear = physical = offset in `mem`; fills the soft TLB so translated
/// code takes the inline fast path, as it does in a real guest after warm-up.
struct FlatEnv {
    mem: Vec<u8>,
}

impl FlatEnv {
    fn check(&self, lin: u64, size: u8) -> Result<usize, Exception> {
        let end = lin.checked_add(size as u64).ok_or(Exception::gp(0))?;
        if end as usize > self.mem.len() {
            return Err(Exception::gp(0));
        }
        Ok(lin as usize)
    }
    fn fill(&mut self, cpu: &mut CpuState, lin: u64, user: bool) {
        let page = lin & !0xfff;
        if (page as usize) < self.mem.len() {
            let host = unsafe { self.mem.as_mut_ptr().add(page as usize) };
            let code = cpu_code_page(page);
            cpu.tlb.fill(lin, user, host, page, !code);
        }
    }
}

fn cpu_code_page(page: u64) -> bool {
    page == CODE || page == HALT & !0xfff
}

impl Env for FlatEnv {
    fn read_slow(
        &mut self,
        cpu: &mut CpuState,
        lin: u64,
        size: u8,
        user: bool,
    ) -> Result<u64, Exception> {
        let i = self.check(lin, size)?;
        self.fill(cpu, lin, user);
        let mut b = [0u8; 8];
        b[..size as usize].copy_from_slice(&self.mem[i..i + size as usize]);
        Ok(u64::from_le_bytes(b))
    }
    fn write_slow(
        &mut self,
        cpu: &mut CpuState,
        lin: u64,
        size: u8,
        value: u64,
        user: bool,
    ) -> Result<(), Exception> {
        let i = self.check(lin, size)?;
        self.fill(cpu, lin, user);
        self.mem[i..i + size as usize].copy_from_slice(&value.to_le_bytes()[..size as usize]);
        Ok(())
    }
    fn fetch(
        &mut self,
        _cpu: &mut CpuState,
        lin: u64,
        buf: &mut [u8],
    ) -> Result<Fetched, Exception> {
        let i = self.check(lin, 1)?;
        let n = buf.len().min(self.mem.len() - i);
        buf[..n].copy_from_slice(&self.mem[i..i + n]);
        Ok(Fetched {
            phys: lin,
            len: n,
            next_page: Some((lin | 0xfff) + 1),
            next_fault: None,
        })
    }
    fn callout(
        &mut self,
        _cpu: &mut CpuState,
        _insn: &Instruction,
        kind: CalloutKind,
    ) -> CalloutResult {
        match kind {
            CalloutKind::Hlt => CalloutResult::Halt,
            _ => CalloutResult::Stop(StopReason::Unsupported("callout in benchmark")),
        }
    }
}

fn long_mode_cpu() -> Box<CpuState> {
    let mut cpu = Box::new(CpuState::new());
    cpu.cr0 = cr::CR0_PE | cr::CR0_PG | cr::CR0_ET;
    cpu.cr4 = cr::CR4_PAE;
    cpu.efer = cr::EFER_LME | cr::EFER_LMA;
    cpu.seg[Seg::Cs as usize] = Segment {
        selector: 8,
        attrs: 0xa09b,
        limit: 0xffff_ffff,
        base: 0,
    };
    for s in [Seg::Ds, Seg::Es, Seg::Ss, Seg::Fs, Seg::Gs] {
        cpu.seg[s as usize] = Segment {
            selector: 0x10,
            attrs: 0xc093,
            limit: 0xffff_ffff,
            base: 0,
        };
    }
    cpu
}

/// Assemble a workload and return its .text bytes.
fn assemble(src: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("btvisor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let obj = dir.join("w.o");
    let bin = dir.join("w.bin");
    let ok = Command::new("as")
        .args(["--64", "-o"])
        .arg(&obj)
        .arg(src)
        .status()
        .map(|s| s.success());
    assert_eq!(ok.ok(), Some(true), "assembling {src} needs binutils");
    let ok = Command::new("objcopy")
        .args(["-O", "binary", "-j", ".text"])
        .arg(&obj)
        .arg(&bin)
        .status();
    assert!(ok.map(|s| s.success()).unwrap_or(false), "objcopy failed");
    let bytes = std::fs::read(&bin).expect("read workload");
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

/// Run `code` natively: intmix(buf, iters) -> (time, rax).
fn native(code: &[u8], iters: u64) -> (Duration, u64) {
    // SAFETY: a private RWX mapping holding the workload, called with the System V ABI it was
    // written for; the buffer is ours and 4 KiB long as the workload expects.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            1 << 16,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        std::ptr::copy_nonoverlapping(code.as_ptr(), p as *mut u8, code.len());
        let f: extern "C" fn(*mut u64, u64) -> u64 = std::mem::transmute(p);
        let mut buf = vec![0u64; 512];
        for (i, v) in buf.iter_mut().enumerate() {
            *v = i as u64 * 0x9e37_79b9;
        }
        let t = Instant::now();
        let r = f(buf.as_mut_ptr(), iters);
        let d = t.elapsed();
        libc::munmap(p, 1 << 16);
        (d, r)
    }
}

/// Run the same bytes translated; returns (time, rax).
fn translated(code: &[u8], iters: u64, tr: &mut Translator) -> (Duration, u64) {
    let mut env = FlatEnv {
        mem: vec![0u8; MEM],
    };
    env.mem[CODE as usize..CODE as usize + code.len()].copy_from_slice(code);
    env.mem[HALT as usize] = 0xf4; // hlt
    for i in 0..512u64 {
        let o = BUF as usize + i as usize * 8;
        env.mem[o..o + 8].copy_from_slice(&(i * 0x9e37_79b9).to_le_bytes());
    }
    let mut cpu = long_mode_cpu();
    cpu.rip = CODE;
    cpu.gpr[7] = BUF; // rdi
    cpu.gpr[6] = iters; // rsi
    cpu.gpr[4] = STACK_TOP - 8;
    env.mem[(STACK_TOP - 8) as usize..STACK_TOP as usize].copy_from_slice(&HALT.to_le_bytes());
    let t = Instant::now();
    loop {
        match tr.run(&mut cpu, &mut env, u64::MAX) {
            RunExit::Halt => break,
            RunExit::Yield => continue,
            other => panic!("workload stopped: {other:?} at rip {:#x}", cpu.rip),
        }
    }
    (t.elapsed(), cpu.gpr[0])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Lift and compile throughput on real compiled code: consecutive blocks of this binary's
/// .text. Returns (lifted insns/s, insns lifted, compiled insns/s, insns compiled, blocks
/// compiled, mean compile time per block).
fn translation_throughput() -> (f64, u64, f64, u64, u64, f64) {
    let exe = std::fs::read("/proc/self/exe").expect("read own executable");
    let elf = goblin::elf::Elf::parse(&exe).expect("parse own executable");
    let text = elf
        .section_headers
        .iter()
        .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".text"))
        .expect(".text");
    let bytes = &exe[text.sh_offset as usize..(text.sh_offset + text.sh_size) as usize];
    let cpu = long_mode_cpu();
    let mode = cpu.mode();
    let mut insns = 0u64;
    let mut off = 0usize;
    let t = Instant::now();
    while insns < 300_000 && off + 16 < bytes.len() {
        let end = (off + 1024 + 15).min(bytes.len());
        let chunk = &bytes[off..end];
        let rip = text.sh_addr + off as u64;
        let key = BlockKey {
            rip,
            cs_base: 0,
            phys: rip,
            mode,
        };
        let fetched = Fetched {
            phys: rip,
            len: chunk.len(),
            next_page: None,
            next_fault: None,
        };
        let mut buf = vec![0u8; chunk.len()];
        buf.copy_from_slice(chunk);
        let b = scan_block(key, fetched, &buf);
        insns += b.insns.len() as u64;
        off += (b.guest_bytes as usize).max(1);
    }
    let lift_secs = t.elapsed().as_secs_f64();
    // Compile a sample of the same blocks (Cranelift costs ~100x more than lifting).
    let mut jit = btvisor_translator::jit::Jit::new();
    let (mut cinsns, mut cblocks, mut ctime) = (0u64, 0u64, 0f64);
    let mut off = 0usize;
    while cblocks < 2000 && off + 16 < bytes.len() {
        let end = (off + 1024 + 15).min(bytes.len());
        let rip = text.sh_addr + off as u64;
        let key = BlockKey {
            rip,
            cs_base: 0,
            phys: rip,
            mode,
        };
        let fetched = Fetched {
            phys: rip,
            len: end - off,
            next_page: None,
            next_fault: None,
        };
        let b = scan_block(key, fetched, &bytes[off..end]);
        off += (b.guest_bytes as usize).max(1);
        if b.counts.lifted == 0 {
            continue;
        }
        let t = Instant::now();
        if jit.compile(&b).is_ok() {
            ctime += t.elapsed().as_secs_f64();
            cinsns += b.insns.len() as u64;
            cblocks += 1;
        }
        if jit.code_bytes() > 32 << 20 {
            jit.reset();
        }
    }
    (
        insns as f64 / lift_secs,
        insns,
        cinsns as f64 / ctime,
        cinsns,
        cblocks,
        ctime / cblocks.max(1) as f64,
    )
}

fn main() {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/workloads/intmix64.S");
    let code = assemble(src);
    let iters = 2000;
    let guest_insns = (512.0 * 14.0 + 12.0) * iters as f64;
    let runs = 5;
    let tiers = [
        ("tier 0 (interpreter only)", TierPolicy::InterpretOnly),
        (
            "tier 1 (every block compiled first)",
            TierPolicy::CompileAll,
        ),
        (
            "default (compile after N runs)",
            TierPolicy::Threshold(btvisor_translator::engine::JIT_THRESHOLD),
        ),
    ];
    let mut nat = Vec::new();
    let mut per_tier: Vec<Vec<f64>> = vec![Vec::new(); tiers.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); tiers.len()];
    for _ in 0..runs {
        let (n, want) = native(&code, iters);
        nat.push(n.as_secs_f64());
        for (i, (_, policy)) in tiers.iter().enumerate() {
            let mut tr = Translator::new();
            tr.set_tier_policy(*policy);
            let (d, got) = translated(&code, iters, &mut tr);
            assert_eq!(got, want, "translated result differs from native");
            per_tier[i].push(d.as_secs_f64());
            ratios[i].push(n.as_secs_f64() / d.as_secs_f64());
        }
    }
    let nat_t = median(nat);
    println!("intmix64: {iters} outer iterations, {guest_insns:.0} guest instructions, medians of {runs} runs\n");
    println!("| engine | time | ns per guest insn | speed as a ratio to native |");
    println!("|---|---|---|---|");
    println!(
        "| native (host CPU) | {:.2} ms | {:.3} | 1 |",
        nat_t * 1e3,
        nat_t * 1e9 / guest_insns
    );
    for (i, (name, _)) in tiers.iter().enumerate() {
        let t = median(per_tier[i].clone());
        let r = median(ratios[i].clone());
        println!(
            "| {name} | {:.2} ms | {:.3} | {:.4} ({:.1}x slower) |",
            t * 1e3,
            t * 1e9 / guest_insns,
            r,
            1.0 / r
        );
    }
    let (lift_rate, lifted, comp_rate, compiled, cblocks, per_block) = translation_throughput();
    let insns_per_block = compiled as f64 / cblocks.max(1) as f64;
    let interp_ns = median(per_tier[0].clone()) * 1e9 / guest_insns;
    println!("\n| translation cost (real code: this binary's .text) | value |");
    println!("|---|---|");
    println!("| lift (scan + classify + lift to micro-ops) | {:.2} M guest insns/s = {:.3} us/insn ({} insns) |",
        lift_rate / 1e6, 1e6 / lift_rate, lifted);
    println!("| compile (Cranelift, opt none) | {:.3} M guest insns/s = {:.2} us/insn; {:.0} us per block of {:.1} insns ({} blocks) |",
        comp_rate / 1e6, 1e6 / comp_rate, per_block * 1e6, insns_per_block, cblocks);
    let cold_interp = insns_per_block * (1e6 / lift_rate + interp_ns / 1e3);
    println!(
        "| cold block run once: lift + interpret | {:.2} us per block |",
        cold_interp
    );
    println!("| cold block run once: lift + compile + run | {:.2} us per block ({:.0}x the interpreter path) |",
        insns_per_block * 1e6 / lift_rate + per_block * 1e6, (insns_per_block * 1e6 / lift_rate + per_block * 1e6) / cold_interp);
}
