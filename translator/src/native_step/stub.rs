//! Host stubs: one generated function per distinct (re-encoded) guest instruction that saves the
//! host's callee-saved FPU state (x87 control word, MXCSR), loads the guest's x87/SSE state
//! (FXRSTOR64) and GPRs, runs the instruction, stores the GPRs (and RFLAGS), saves the guest
//! state (FXSAVE64) and restores the host's (FNINIT, FLDCW, LDMXCSR). No Rust code runs while the
//! guest state is loaded: compiled Rust relies on MXCSR and the x87 control word.
//!
//! Saving only the callee-saved part instead of a whole host FXSAVE image is what the SysV ABI
//! (3.2.1, "Registers") allows: every XMM/x87/MMX register is caller-saved and the x87 stack is
//! empty at a call. It halves the cost of a step (two 512-byte transfers instead of four).
//!
//! Stubs live in executable pages written under W^X (mapped RW, written, then RX), cached by
//! their code bytes.

use crate::cpu::{FxArea, YmmHigh};
use iced_x86::{Code, Encoder, Instruction, MemoryOperand, Register};
use std::collections::HashMap;
use std::mem::offset_of;

pub const GPR64: [Register; 16] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RSP,
    Register::RBP,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

/// What a stub reads and writes (its only argument, in RDI).
#[repr(C, align(16))]
pub struct StubCtx {
    /// The host's x87 control word and MXCSR while the guest's state is loaded.
    pub host_cw: u16,
    pub host_mxcsr: u32,
    /// GPRs in (the base register's slot holds the bounce buffer address) and out.
    pub gpr: [u64; 16],
    pub fx_in: *const FxArea,
    pub fx_out: *mut FxArea,
    /// The upper YMM halves in and out (VEX stubs only).
    pub ymmh_in: *const YmmHigh,
    pub ymmh_out: *mut YmmHigh,
    /// RFLAGS loaded before the instruction (arithmetic flags, IF, bit 1) and stored after.
    pub flags_in: u64,
    pub flags_out: u64,
}

pub type StubFn = unsafe extern "sysv64" fn(*mut StubCtx);

/// Executable memory for stubs, in chunks.
struct Chunk {
    base: *mut u8,
    len: usize,
    used: usize,
}

const CHUNK: usize = 64 << 10;
/// Beyond this many distinct stubs everything is dropped and rebuilt on demand (a guest that
/// generates instructions cannot make the monitor grow without bound).
pub const MAX_STUBS: usize = 16384;

#[derive(Default)]
pub struct Stubs {
    map: HashMap<Vec<u8>, StubFn>,
    chunks: Vec<Chunk>,
}

impl Stubs {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Drop every stub. Callers must hold no `StubFn` from before (plans are dropped too).
    pub fn clear(&mut self) {
        self.map.clear();
        for c in self.chunks.drain(..) {
            // SAFETY: a mapping this struct created; no stub is running (stubs never call back
            // into Rust) and no pointer into it survives the clear.
            unsafe {
                libc::munmap(c.base as *mut libc::c_void, c.len);
            }
        }
    }

    /// The stub for `insn` (already rewritten for the host: memory operand at [base]).
    pub fn get(
        &mut self,
        insn: &Instruction,
        flags_in: bool,
        flags_out: bool,
        vex: bool,
    ) -> Result<StubFn, &'static str> {
        let mut enc = Encoder::new(64);
        enc.encode(insn, 0)
            .map_err(|_| "x87/SSE instruction that cannot be re-encoded for the host")?;
        let mut key = enc.take_buffer();
        key.push(flags_in as u8 | (flags_out as u8) << 1 | (vex as u8) << 2);
        if let Some(f) = self.map.get(&key) {
            return Ok(*f);
        }
        let code = generate(&key[..key.len() - 1], flags_in, flags_out, vex)?;
        let f = self.install(&code)?;
        self.map.insert(key, f);
        Ok(f)
    }

    fn install(&mut self, code: &[u8]) -> Result<StubFn, &'static str> {
        let need = (code.len() + 15) & !15;
        if self.chunks.last().is_none_or(|c| c.used + need > c.len) {
            // SAFETY: a fresh private anonymous mapping; checked for failure below.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    CHUNK,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err("cannot map memory for native-step stubs");
            }
            self.chunks.push(Chunk {
                base: p as *mut u8,
                len: CHUNK,
                used: 0,
            });
        }
        let c = self.chunks.last_mut().ok_or("no stub chunk")?;
        // SAFETY: the chunk is our mapping and [used, used + need) lies inside it; the chunk is
        // writable only while we copy (W^X), and nothing runs its code meanwhile (stubs run on
        // this thread only, never concurrently with this function).
        unsafe {
            let base = c.base as *mut libc::c_void;
            if libc::mprotect(base, c.len, libc::PROT_READ | libc::PROT_WRITE) != 0 {
                return Err("cannot make the native-step stub page writable");
            }
            let dst = c.base.add(c.used);
            std::ptr::copy_nonoverlapping(code.as_ptr(), dst, code.len());
            if libc::mprotect(base, c.len, libc::PROT_READ | libc::PROT_EXEC) != 0 {
                return Err("cannot make the native-step stub page executable");
            }
            c.used += need;
            Ok(std::mem::transmute::<*mut u8, StubFn>(dst))
        }
    }
}

impl Drop for Stubs {
    fn drop(&mut self) {
        self.clear();
    }
}

fn m(off: usize) -> MemoryOperand {
    MemoryOperand::with_base_displ(Register::RDI, off as i64)
}

fn mr(base: Register, off: usize) -> MemoryOperand {
    MemoryOperand::with_base_displ(base, off as i64)
}

/// YMM0-15 as registers, for the upper-half loads and stores of VEX stubs.
const YMM: [Register; 16] = [
    Register::YMM0,
    Register::YMM1,
    Register::YMM2,
    Register::YMM3,
    Register::YMM4,
    Register::YMM5,
    Register::YMM6,
    Register::YMM7,
    Register::YMM8,
    Register::YMM9,
    Register::YMM10,
    Register::YMM11,
    Register::YMM12,
    Register::YMM13,
    Register::YMM14,
    Register::YMM15,
];

/// The stub's code around the guest instruction's host encoding `insn`. A VEX stub also
/// inserts the guest's upper YMM halves after FXRSTOR64 (which leaves them alone), extracts
/// them after FXSAVE64 and clears them with VZEROUPPER before Rust code runs again.
fn generate(
    insn: &[u8],
    flags_in: bool,
    flags_out: bool,
    vex: bool,
) -> Result<Vec<u8>, &'static str> {
    use Register::*;
    let w = |r: Result<Instruction, iced_x86::IcedError>| r.map_err(|_| "stub instruction");
    let gpr = offset_of!(StubCtx, gpr);
    let host_cw = offset_of!(StubCtx, host_cw);
    let host_mxcsr = offset_of!(StubCtx, host_mxcsr);
    let mut pre = vec![];
    for r in [RBX, RBP, R12, R13, R14, R15, RDI] {
        pre.push(w(Instruction::with1(Code::Push_r64, r))?);
    }
    // The host's callee-saved FPU state (SysV ABI 3.2.1: the x87 control word and MXCSR's
    // control bits; the x87 stack is empty at a call and every XMM register caller-saved).
    pre.push(w(Instruction::with1(Code::Fnstcw_m2byte, m(host_cw)))?);
    pre.push(w(Instruction::with1(Code::Stmxcsr_m32, m(host_mxcsr)))?);
    pre.push(w(Instruction::with2(
        Code::Mov_r64_rm64,
        RAX,
        m(offset_of!(StubCtx, fx_in)),
    ))?);
    pre.push(w(Instruction::with1(Code::Fxrstor64_m512byte, mr(RAX, 0)))?);
    if vex {
        pre.push(w(Instruction::with2(
            Code::Mov_r64_rm64,
            RAX,
            m(offset_of!(StubCtx, ymmh_in)),
        ))?);
        for (i, y) in YMM.iter().enumerate() {
            pre.push(w(Instruction::with4(
                Code::VEX_Vinsertf128_ymm_ymm_xmmm128_imm8,
                *y,
                *y,
                mr(RAX, 16 * i),
                1,
            ))?);
        }
    }
    if flags_in {
        pre.push(w(Instruction::with1(
            Code::Push_rm64,
            m(offset_of!(StubCtx, flags_in)),
        ))?);
        pre.push(Instruction::with(Code::Popfq));
    }
    for (i, r) in GPR64.iter().enumerate() {
        if i != 4 && i != 7 {
            pre.push(w(Instruction::with2(
                Code::Mov_r64_rm64,
                *r,
                m(gpr + 8 * i),
            ))?);
        }
    }
    pre.push(w(Instruction::with2(Code::Mov_r64_rm64, RDI, m(gpr + 56)))?);

    let mut post = vec![];
    if flags_out {
        post.push(Instruction::with(Code::Pushfq));
    }
    post.push(w(Instruction::with1(Code::Push_r64, RAX))?);
    // The context pointer pushed last in the prologue, above what we just pushed.
    let ctx_at = if flags_out { 16 } else { 8 };
    post.push(w(Instruction::with2(
        Code::Mov_r64_rm64,
        RAX,
        mr(RSP, ctx_at),
    ))?);
    for (i, r) in GPR64.iter().enumerate() {
        if i != 0 && i != 4 {
            post.push(w(Instruction::with2(
                Code::Mov_rm64_r64,
                mr(RAX, gpr + 8 * i),
                *r,
            ))?);
        }
    }
    post.push(w(Instruction::with1(Code::Pop_r64, RCX))?);
    post.push(w(Instruction::with2(
        Code::Mov_rm64_r64,
        mr(RAX, gpr),
        RCX,
    ))?);
    if flags_out {
        post.push(w(Instruction::with1(Code::Pop_r64, RCX))?);
        post.push(w(Instruction::with2(
            Code::Mov_rm64_r64,
            mr(RAX, offset_of!(StubCtx, flags_out)),
            RCX,
        ))?);
    }
    post.push(w(Instruction::with2(
        Code::Mov_r64_rm64,
        RCX,
        mr(RAX, offset_of!(StubCtx, fx_out)),
    ))?);
    post.push(w(Instruction::with1(Code::Fxsave64_m512byte, mr(RCX, 0)))?);
    if vex {
        post.push(w(Instruction::with2(
            Code::Mov_r64_rm64,
            RCX,
            mr(RAX, offset_of!(StubCtx, ymmh_out)),
        ))?);
        for (i, y) in YMM.iter().enumerate() {
            post.push(w(Instruction::with3(
                Code::VEX_Vextractf128_xmmm128_ymm_imm8,
                mr(RCX, 16 * i),
                *y,
                1,
            ))?);
        }
        post.push(Instruction::with(Code::VEX_Vzeroupper));
    }
    post.push(Instruction::with(Code::Fninit));
    post.push(w(Instruction::with1(Code::Fldcw_m2byte, mr(RAX, host_cw)))?);
    post.push(w(Instruction::with1(
        Code::Ldmxcsr_m32,
        mr(RAX, host_mxcsr),
    ))?);
    for r in [RDI, R15, R14, R13, R12, RBP, RBX] {
        post.push(w(Instruction::with1(Code::Pop_r64, r))?);
    }
    post.push(Instruction::with(Code::Retnq));

    let mut enc = Encoder::new(64);
    for i in &pre {
        enc.encode(i, 0).map_err(|_| "stub prologue")?;
    }
    let mut out = enc.take_buffer();
    out.extend_from_slice(insn);
    let mut enc = Encoder::new(64);
    for i in &post {
        enc.encode(i, 0).map_err(|_| "stub epilogue")?;
    }
    out.extend_from_slice(&enc.take_buffer());
    Ok(out)
}
