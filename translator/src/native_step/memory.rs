//! The memory operand of a native step: its address (SDM Vol. 1, 3.7.5), and the copies between
//! guest memory and the bounce buffer through the soft TLB and `Env` slow paths, so that every
//! guest #PF/#GP is raised by the monitor before or instead of the native run and the host never
//! touches guest memory directly.

use crate::cpu::{CpuState, Seg};
use crate::env::Env;
use crate::exception::{vector, Exception};
use crate::interp::{linear, read_mem, write_mem};
use crate::ir::{mem, NO_SEG};
use iced_x86::{Instruction, Register};

/// Where the operand is: linear address, offset (for FDP) and the segment selector (for FDS).
pub struct Operand {
    pub lin: u64,
    pub offset: u64,
    pub selector: u16,
    /// Linear addresses wrap at 4 GiB outside 64-bit mode.
    pub wrap32: bool,
}

fn seg_of(r: Register) -> Seg {
    match r {
        Register::ES => Seg::Es,
        Register::CS => Seg::Cs,
        Register::SS => Seg::Ss,
        Register::FS => Seg::Fs,
        Register::GS => Seg::Gs,
        _ => Seg::Ds,
    }
}

fn gpr(cpu: &CpuState, r: Register) -> u64 {
    let i = (r.full_register() as u32 - Register::RAX as u32) as usize;
    cpu.gpr.get(i).copied().unwrap_or(0)
}

/// Effective and linear address of the explicit memory operand.
pub fn operand(cpu: &CpuState, insn: &Instruction, code_bits: u8) -> Result<Operand, Exception> {
    let base = insn.memory_base();
    let index = insn.memory_index();
    let mut ea = insn.memory_displacement64();
    // Address size: the size of the base or index register, else the mode's.
    let mut asz = match code_bits {
        64 => 8,
        32 => 4,
        _ => 2,
    };
    if base == Register::RIP {
        asz = 8;
    } else if base == Register::EIP {
        asz = 4;
    } else if base != Register::None {
        ea = ea.wrapping_add(gpr(cpu, base));
        asz = base.size();
    }
    if index != Register::None {
        ea = ea.wrapping_add(gpr(cpu, index).wrapping_mul(insn.memory_index_scale() as u64));
        asz = index.size();
    }
    let ea = match asz {
        2 => ea & 0xffff,
        4 => ea & 0xffff_ffff,
        _ => ea,
    };
    let seg = seg_of(insn.memory_segment());
    let idx = if code_bits == 64 && !matches!(seg, Seg::Fs | Seg::Gs) {
        NO_SEG
    } else {
        seg as u8
    };
    let wrap32 = code_bits != 64;
    let lin = linear(cpu, idx, ea, if wrap32 { mem::WRAP32 } else { 0 }).map_err(|e| {
        // Faults through SS are #SS (SDM Vol. 3, 6.15 "Interrupt 12").
        if seg == Seg::Ss && e.vector == vector::GP {
            Exception::ss(0)
        } else {
            e
        }
    })?;
    Ok(Operand {
        lin,
        offset: ea,
        selector: cpu.seg[seg as usize].selector,
        wrap32,
    })
}

fn at(op: &Operand, i: usize) -> u64 {
    let l = op.lin.wrapping_add(i as u64);
    if op.wrap32 {
        l & 0xffff_ffff
    } else {
        l
    }
}

/// Copy `buf.len()` bytes of guest memory at the operand into `buf`.
pub fn read(
    cpu: &mut CpuState,
    env: &mut dyn Env,
    op: &Operand,
    buf: &mut [u8],
    user: bool,
) -> Result<(), Exception> {
    let mut i = 0;
    while i < buf.len() {
        let n = chunk(buf.len() - i);
        let v = read_mem(cpu, env, at(op, i), n as u8, user)?;
        buf[i..i + n].copy_from_slice(&v.to_le_bytes()[..n]);
        i += n;
    }
    Ok(())
}

/// Write `buf` to guest memory at the operand. A write that spans two pages first checks that
/// the first page is writable (by rewriting one byte with its own value), then writes the second
/// page, then the first: a fault leaves memory unchanged, as the CPU does.
pub fn write(
    cpu: &mut CpuState,
    env: &mut dyn Env,
    op: &Operand,
    buf: &[u8],
    user: bool,
) -> Result<(), Exception> {
    let first = ((0x1000 - (op.lin & 0xfff)) as usize).min(buf.len());
    if first < buf.len() {
        let b = read_mem(cpu, env, op.lin, 1, user)?;
        write_mem(cpu, env, op.lin, 1, b, user)?;
        write_range(cpu, env, op, buf, first, buf.len(), user)?;
    }
    write_range(cpu, env, op, buf, 0, first, user)
}

fn write_range(
    cpu: &mut CpuState,
    env: &mut dyn Env,
    op: &Operand,
    buf: &[u8],
    from: usize,
    to: usize,
    user: bool,
) -> Result<(), Exception> {
    let mut i = from;
    while i < to {
        let n = chunk(to - i);
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(&buf[i..i + n]);
        write_mem(cpu, env, at(op, i), n as u8, u64::from_le_bytes(v), user)?;
        i += n;
    }
    Ok(())
}

fn chunk(left: usize) -> usize {
    match left {
        8.. => 8,
        4..=7 => 4,
        2..=3 => 2,
        _ => 1,
    }
}
