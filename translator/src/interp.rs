//! Tier 0: the micro-op interpreter. Cold blocks run here; lifting once and interpreting costs
//! far less than compiling code that runs a handful of times (design.md 3.1).

use crate::block::Block;
use crate::cpu::{CpuState, Seg};
use crate::env::{CalloutResult, Env, StopReason};
use crate::exception::Exception;
use crate::flags::{self, LazyFlags};
use crate::ir::{mem, BinOp, HelperArgs, Op, NO_SEG, REG_AH, TEMPS};

/// How a block run ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BlockExit {
    /// Continue at `cpu.rip`; `slot` names the static successor taken (for chaining).
    Next {
        slot: Option<u8>,
    },
    /// Deliver an exception; `cpu.rip` is the faulting instruction.
    Raise(Exception),
    /// HLT retired; `cpu.rip` is the next instruction.
    Halt,
    Stop(StopReason),
}

#[inline(always)]
pub fn get_reg(cpu: &CpuState, r: u8, sz: u8) -> u64 {
    if r >= REG_AH {
        return (cpu.gpr[(r - REG_AH) as usize] >> 8) & 0xff;
    }
    let v = cpu.gpr[r as usize];
    match sz {
        1 => v & 0xff,
        2 => v & 0xffff,
        4 => v & 0xffff_ffff,
        _ => v,
    }
}

#[inline(always)]
pub fn set_reg(cpu: &mut CpuState, r: u8, sz: u8, v: u64) {
    if r >= REG_AH {
        let g = &mut cpu.gpr[(r - REG_AH) as usize];
        *g = (*g & !0xff00) | ((v & 0xff) << 8);
        return;
    }
    let g = &mut cpu.gpr[r as usize];
    *g = match sz {
        1 => (*g & !0xff) | (v & 0xff),
        2 => (*g & !0xffff) | (v & 0xffff),
        4 => v & 0xffff_ffff,
        _ => v,
    };
}

/// Linear address of a segment-relative offset (SDM Vol. 3, 3.4). An access through a null
/// (unusable) segment register faults, except in 64-bit mode (no `WRAP32`), where the processor
/// does no runtime check of null selectors and FS/GS bases come from their MSRs (SDM Vol. 3,
/// 3.4.4 and 5.4.1.1). Limit checks are separate (`check_segment`).
#[inline(always)]
pub fn linear(cpu: &CpuState, seg: u8, off: u64, flags: u8) -> Result<u64, Exception> {
    if seg == NO_SEG {
        return Ok(off);
    }
    let s = &cpu.seg[seg as usize];
    if flags & mem::WRAP32 != 0 && s.attrs & crate::cpu::Segment::ATTR_P == 0 {
        return Err(Exception::gp(0));
    }
    let lin = off.wrapping_add(s.base);
    Ok(if flags & mem::WRAP32 != 0 {
        lin & 0xffff_ffff
    } else {
        lin
    })
}

/// Limit and type checks of a data access through a segment (SDM Vol. 3, 5.3 and 5.5): writes
/// need a writable data segment, reads a data or readable code segment; the whole access must
/// lie within the limit (above it for expand-down segments). Stack-segment violations are #SS.
#[cold]
pub fn check_segment(
    cpu: &CpuState,
    seg: u8,
    off: u64,
    sz: u8,
    write: bool,
    flags: u8,
) -> Result<(), Exception> {
    let s = &cpu.seg[seg as usize];
    let typ = s.typ();
    let code = typ & 8 != 0;
    if (write && (code || typ & 2 == 0)) || (!write && code && typ & 2 == 0) {
        return Err(Exception::gp(0));
    }
    let limit_fault = if flags & mem::STACK != 0 || seg == Seg::Ss as u8 {
        Exception::ss(0)
    } else {
        Exception::gp(0)
    };
    let last = off + sz as u64 - 1;
    let ok = if !code && typ & 4 != 0 {
        let upper = if s.big() { 0xffff_ffff } else { 0xffff };
        off > s.limit as u64 && last <= upper
    } else {
        last <= s.limit as u64
    };
    if ok {
        Ok(())
    } else {
        Err(limit_fault)
    }
}

/// Read guest memory: soft-TLB fast path, else the runtime's slow path.
#[inline(always)]
pub fn read_mem(
    cpu: &mut CpuState,
    env: &mut dyn Env,
    lin: u64,
    sz: u8,
    user: bool,
) -> Result<u64, Exception> {
    if (lin & 0xfff) + sz as u64 <= 0x1000 {
        if let Some(h) = cpu.tlb.lookup_read(lin, user) {
            // SAFETY: the MMU fills TLB entries only with pointers into the guest-RAM mapping,
            // which outlives every vCPU, and the access does not cross the page.
            unsafe {
                return Ok(match sz {
                    1 => *(h as *const u8) as u64,
                    2 => (h as *const u16).read_unaligned() as u64,
                    4 => (h as *const u32).read_unaligned() as u64,
                    _ => (h as *const u64).read_unaligned(),
                });
            }
        }
    }
    env.read_slow(cpu, lin, sz, user)
}

#[inline(always)]
pub fn write_mem(
    cpu: &mut CpuState,
    env: &mut dyn Env,
    lin: u64,
    sz: u8,
    v: u64,
    user: bool,
) -> Result<(), Exception> {
    if (lin & 0xfff) + sz as u64 <= 0x1000 {
        if let Some(h) = cpu.tlb.lookup_write(lin, user) {
            // SAFETY: as in `read_mem`; write entries exist only for writable, dirty RAM pages
            // that hold no translations.
            unsafe {
                match sz {
                    1 => *(h as *mut u8) = v as u8,
                    2 => (h as *mut u16).write_unaligned(v as u16),
                    4 => (h as *mut u32).write_unaligned(v as u32),
                    _ => (h as *mut u64).write_unaligned(v),
                }
            }
            return Ok(());
        }
    }
    env.write_slow(cpu, lin, sz, v, user)
}

#[inline(always)]
fn bin(op: BinOp, a: u64, b: u64) -> u64 {
    match op {
        BinOp::Add => a.wrapping_add(b),
        BinOp::Sub => a.wrapping_sub(b),
        BinOp::And => a & b,
        BinOp::Or => a | b,
        BinOp::Xor => a ^ b,
        BinOp::Shl => a.wrapping_shl(b as u32),
        BinOp::Shr => a.wrapping_shr(b as u32),
        BinOp::Sar => ((a as i64).wrapping_shr(b as u32)) as u64,
        BinOp::Mul => a.wrapping_mul(b),
        BinOp::MulHiS => ((a as i64 as i128 * b as i64 as i128) >> 64) as u64,
    }
}

#[inline(always)]
fn sext(v: u64, from: u8) -> u64 {
    match from {
        1 => v as u8 as i8 as i64 as u64,
        2 => v as u16 as i16 as i64 as u64,
        4 => v as u32 as i32 as i64 as u64,
        _ => v,
    }
}

/// Run one block. Guest state is committed at every instruction boundary, so an exception
/// leaves `cpu` exactly as the CPU would (with `cpu.rip` at the faulting instruction).
pub fn run_block(cpu: &mut CpuState, env: &mut dyn Env, blk: &Block) -> BlockExit {
    let mut t = [0u64; TEMPS];
    let user = blk.key.mode.cpl == 3;
    let mut idx = 0usize;
    let mut rip = blk.key.rip;
    macro_rules! fault {
        ($e:expr) => {{
            cpu.rip = rip;
            return BlockExit::Raise($e);
        }};
    }
    for op in blk.ops.iter() {
        match *op {
            Op::Insn { idx: i, rip: r } => {
                if cpu.code_modified {
                    // The previous instruction wrote to a page holding translations: this block
                    // may be stale from here on, so leave and re-translate.
                    cpu.rip = r;
                    return BlockExit::Next { slot: None };
                }
                idx = i as usize;
                rip = r;
            }
            Op::Const { d, v } => t[d as usize] = v,
            Op::Get { d, r, sz } => t[d as usize] = get_reg(cpu, r, sz),
            Op::Set { r, sz, s } => set_reg(cpu, r, sz, t[s as usize]),
            Op::Bin { op, d, a, b } => t[d as usize] = bin(op, t[a as usize], t[b as usize]),
            Op::Sext { d, s, from } => t[d as usize] = sext(t[s as usize], from),
            Op::Zext { d, s, from } => {
                t[d as usize] = t[s as usize] & flags::size_mask(from as u32)
            }
            Op::Flags {
                op,
                sz,
                a,
                b,
                r,
                aux,
            } => {
                cpu.cc = LazyFlags {
                    op: op as u32,
                    size: sz as u32,
                    src1: t[a as usize],
                    src2: t[b as usize],
                    res: t[r as usize],
                    aux: t[aux as usize],
                }
            }
            Op::Carry { d } => t[d as usize] = flags::carry_flag(&cpu.cc) & 1,
            Op::Cond { d, cc } => t[d as usize] = flags::eval_cond_lazy(cc, &cpu.cc) as u64,
            Op::Select { d, c, a, b } => {
                t[d as usize] = if t[c as usize] != 0 {
                    t[a as usize]
                } else {
                    t[b as usize]
                }
            }
            Op::Load {
                d,
                seg,
                a,
                sz,
                flags,
            } => {
                if flags & mem::CHECK != 0 {
                    if let Err(e) = check_segment(cpu, seg, t[a as usize], sz, false, flags) {
                        fault!(e);
                    }
                }
                let lin = match linear(cpu, seg, t[a as usize], flags) {
                    Ok(l) => l,
                    Err(e) => fault!(stack_fault(e, flags)),
                };
                match read_mem(cpu, env, lin, sz, user) {
                    Ok(v) => t[d as usize] = v,
                    Err(e) => fault!(stack_fault(e, flags)),
                }
            }
            Op::Store {
                seg,
                a,
                s,
                sz,
                flags,
            } => {
                if flags & mem::CHECK != 0 {
                    if let Err(e) = check_segment(cpu, seg, t[a as usize], sz, true, flags) {
                        fault!(e);
                    }
                }
                let lin = match linear(cpu, seg, t[a as usize], flags) {
                    Ok(l) => l,
                    Err(e) => fault!(stack_fault(e, flags)),
                };
                if let Err(e) = write_mem(cpu, env, lin, sz, t[s as usize], user) {
                    fault!(stack_fault(e, flags));
                }
            }
            Op::Rflags { and, or } => cpu.rflags = (cpu.rflags & and) | or,
            Op::Call { h, sz, d, a, b, c } => {
                cpu.rip = rip;
                let args = HelperArgs {
                    sz,
                    a: t[a as usize],
                    b: t[b as usize],
                    c: t[c as usize],
                    insn: &blk.insns[idx],
                };
                match (h.f)(cpu, env, &args) {
                    Ok(v) => t[d as usize] = v,
                    Err(e) => {
                        cpu.rip = rip;
                        return helper_exit(cpu, e);
                    }
                }
            }
            Op::Jmp { target } => {
                cpu.rip = target;
                return BlockExit::Next { slot: Some(0) };
            }
            Op::JmpInd { t: x } => {
                cpu.rip = t[x as usize];
                return BlockExit::Next { slot: None };
            }
            Op::Branch {
                c,
                taken,
                not_taken,
            } => {
                let take = t[c as usize] != 0;
                cpu.rip = if take { taken } else { not_taken };
                return BlockExit::Next {
                    slot: Some(if take { 0 } else { 1 }),
                };
            }
            Op::Callout { kind } => {
                cpu.rip = rip;
                let insn = blk.insns[idx];
                return match env.callout(cpu, &insn, kind) {
                    CalloutResult::Next => {
                        cpu.rip = insn.next_ip();
                        BlockExit::Next { slot: None }
                    }
                    CalloutResult::Jump => BlockExit::Next { slot: None },
                    CalloutResult::Raise(e) => BlockExit::Raise(e),
                    CalloutResult::Halt => {
                        cpu.rip = insn.next_ip();
                        BlockExit::Halt
                    }
                    CalloutResult::Stop(r) => BlockExit::Stop(r),
                };
            }
            Op::Raise { e } => fault!(e),
            Op::Unsupported { what } => {
                cpu.rip = rip;
                return BlockExit::Stop(StopReason::Unsupported(what));
            }
        }
    }
    // Blocks always end in a terminator; reaching here means the lifter broke that rule.
    cpu.rip = rip;
    BlockExit::Stop(StopReason::Unsupported("block without terminator"))
}

/// How a block ends when a helper failed: a guest exception, or a stop when the helper could not
/// run the instruction (`Exception::stop()`, reason in `cpu.stop_what`).
pub fn helper_exit(cpu: &CpuState, e: Exception) -> BlockExit {
    if e.vector == crate::exception::vector::STOP {
        BlockExit::Stop(StopReason::Unsupported(cpu.stop_what))
    } else {
        BlockExit::Raise(e)
    }
}

/// Segment-limit and canonical faults on stack accesses are #SS, not #GP (SDM Vol. 3, 6.15).
pub(crate) fn stack_fault(e: Exception, flags: u8) -> Exception {
    if flags & mem::STACK != 0 && e.vector == crate::exception::vector::GP {
        Exception::ss(0)
    } else {
        e
    }
}
