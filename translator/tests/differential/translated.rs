//! The translated side: a flat test `Env` (linear == physical == the native addresses, backed by
//! the env's own copy of the data) and `run_translated`, which scans and runs blocks until RIP
//! reaches one of the exits.
//!
//! Backends: the tier-0 interpreter and the tier-1 Cranelift compiler; another one plugs in as
//! one more `Backend` variant and one more match arm in `Backends::run_block`.

use btvisor_translator::block::{Block, BlockKey};
use btvisor_translator::classify::CalloutKind;
use btvisor_translator::cpu::{cr, Seg, Segment};
use btvisor_translator::env::{CalloutResult, Env, Fetched};
use btvisor_translator::exception::Exception;
use btvisor_translator::interp::{self, BlockExit};
use btvisor_translator::jit::{run_compiled, Jit};
use btvisor_translator::scan::{scan_block, MAX_FETCH};
use btvisor_translator::CpuState;
use iced_x86::Instruction;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Tier 0: `interp::run_block`.
    Interpreter,
    /// Tier 1: every block compiled with Cranelift (`jit::Jit::compile` + `jit::run_compiled`).
    Jit,
}

pub const BACKENDS: &[Backend] = &[Backend::Interpreter, Backend::Jit];

/// Per-thread state of the backends (the JIT's code module).
pub struct Backends {
    jit: Jit,
}

impl Backends {
    pub fn new() -> Backends {
        Backends { jit: Jit::new() }
    }

    fn run_block(
        &mut self,
        backend: Backend,
        cpu: &mut CpuState,
        env: &mut TestEnv,
        blk: &Block,
    ) -> Result<BlockExit, String> {
        match backend {
            Backend::Interpreter => Ok(interp::run_block(cpu, env, blk)),
            Backend::Jit => {
                // Every compiled function takes at least a page: start a new module now and then.
                if self.jit.code_bytes() > 64 << 20 {
                    self.jit.reset();
                }
                let code = self
                    .jit
                    .compile(blk)
                    .map_err(|e| format!("JIT compilation failed: {e}"))?;
                Ok(run_compiled(cpu, env, blk, code))
            }
        }
    }
}

pub struct TestEnv {
    /// Linear address of `code[0]`.
    pub code_base: u64,
    pub code: Vec<u8>,
    pub data_base: u64,
    pub data: Vec<u8>,
    /// Set when the translated code touched memory outside the data area.
    pub stray: Option<u64>,
}

impl TestEnv {
    fn byte(&mut self, lin: u64) -> Result<&mut u8, Exception> {
        if lin.wrapping_sub(self.data_base) < self.data.len() as u64 {
            return Ok(&mut self.data[(lin - self.data_base) as usize]);
        }
        self.stray = Some(lin);
        Err(Exception::pf(lin, 0))
    }
}

impl Env for TestEnv {
    fn read_slow(
        &mut self,
        _cpu: &mut CpuState,
        lin: u64,
        size: u8,
        _user: bool,
    ) -> Result<u64, Exception> {
        let mut v = 0u64;
        for i in 0..size as u64 {
            v |= (*self.byte(lin.wrapping_add(i))? as u64) << (8 * i);
        }
        Ok(v)
    }

    fn write_slow(
        &mut self,
        _cpu: &mut CpuState,
        lin: u64,
        size: u8,
        value: u64,
        _user: bool,
    ) -> Result<(), Exception> {
        // Check the whole access first: a faulting write changes nothing.
        for i in 0..size as u64 {
            self.byte(lin.wrapping_add(i))?;
        }
        for i in 0..size as u64 {
            *self.byte(lin.wrapping_add(i))? = (value >> (8 * i)) as u8;
        }
        Ok(())
    }

    fn fetch(
        &mut self,
        _cpu: &mut CpuState,
        lin: u64,
        buf: &mut [u8],
    ) -> Result<Fetched, Exception> {
        let off = lin.wrapping_sub(self.code_base);
        if off >= self.code.len() as u64 {
            return Err(Exception::pf(lin, 0x10));
        }
        let n = (self.code.len() - off as usize).min(buf.len());
        buf[..n].copy_from_slice(&self.code[off as usize..off as usize + n]);
        Ok(Fetched {
            phys: lin,
            len: n,
            next_page: None,
            next_fault: None,
        })
    }

    fn callout(
        &mut self,
        _cpu: &mut CpuState,
        insn: &Instruction,
        kind: CalloutKind,
    ) -> CalloutResult {
        panic!("unexpected callout {kind:?} for {insn}");
    }
}

/// A flat (base 0, 4 GiB), present, DPL 3 code or data segment of descriptor type `typ`, with
/// the extra attribute bits `size` (L or D/B).
fn flat(selector: u16, typ: u16, size: u16) -> Segment {
    Segment {
        selector,
        attrs: typ | Segment::ATTR_S | Segment::ATTR_P | (3 << 5) | size | Segment::ATTR_G,
        limit: 0xffff_ffff,
        base: 0,
    }
}

/// A paged, CPL 3 vCPU with flat data segments (selector 0x2b) and this code segment.
fn flat_cpu(cs: Segment) -> CpuState {
    let mut cpu = CpuState::new();
    cpu.cr0 = cr::CR0_PE | cr::CR0_ET | cr::CR0_PG;
    for s in [Seg::Ds, Seg::Es, Seg::Ss, Seg::Fs, Seg::Gs] {
        cpu.seg[s as usize] = flat(0x2b, 0x3, Segment::ATTR_DB);
    }
    cpu.seg[Seg::Cs as usize] = cs;
    cpu
}

/// A 64-bit mode, CPL 3 vCPU with flat segments (what a Linux process runs in).
pub fn cpu64() -> CpuState {
    let mut cpu = flat_cpu(flat(0x33, 0xb, Segment::ATTR_L));
    cpu.cr4 = cr::CR4_PAE;
    cpu.efer = cr::EFER_LME | cr::EFER_LMA;
    cpu
}

/// A 32-bit protected mode, CPL 3 vCPU with paging and flat segments (what a Linux i386
/// process runs in; the attributes match runtime/src/loader/multiboot.rs `setup_cpu` with DPL 3):
/// CS has D=1 and L=0, EFER has no LMA, so the translator lifts with `code_bits == 32`.
#[allow(dead_code)]
pub fn cpu32() -> CpuState {
    let mut cpu = flat_cpu(flat(0x23, 0xb, Segment::ATTR_DB));
    cpu.cr4 = 0;
    cpu.efer = 0;
    cpu
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransExit {
    /// RIP reached this stop address.
    Reached(u64),
    Raise(Exception),
    Other(String),
}

/// Run from `cpu.rip` until RIP is one of `stops` (at most a few blocks: the instruction, the
/// jump after it, the taken stub, or a REP string instruction re-running itself).
pub fn run_translated(
    backends: &mut Backends,
    backend: Backend,
    cpu: &mut CpuState,
    env: &mut TestEnv,
    stops: &[u64],
) -> TransExit {
    let mut buf = vec![0u8; MAX_FETCH];
    for _ in 0..256 {
        if stops.contains(&cpu.rip) {
            return TransExit::Reached(cpu.rip);
        }
        let rip = cpu.rip;
        let fetched = match env.fetch(cpu, rip, &mut buf) {
            Ok(f) => f,
            Err(e) => return TransExit::Other(format!("fetch fault at {rip:#x}: {e:?}")),
        };
        let key = BlockKey {
            rip,
            cs_base: 0,
            phys: fetched.phys,
            mode: cpu.mode(),
        };
        let blk = scan_block(key, fetched, &buf);
        match backends.run_block(backend, cpu, env, &blk) {
            Ok(BlockExit::Next { .. }) => {}
            Ok(BlockExit::Raise(e)) => return TransExit::Raise(e),
            Ok(other) => return TransExit::Other(format!("{other:?}")),
            Err(e) => return TransExit::Other(e),
        }
    }
    TransExit::Other("did not reach an exit".into())
}
