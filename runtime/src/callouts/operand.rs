//! Operand access for callouts: the decoded instruction's register, immediate and memory
//! operands evaluated against the current state (the callout-side twin of lift::Lifter's
//! operand plumbing, without IR).

use crate::mmu::Memory;
use btvisor_translator::cpu::{CpuState, Seg};
use btvisor_translator::exception::Exception;
use btvisor_translator::interp::{get_reg, set_reg};
use btvisor_translator::lift::Lifter;
use iced_x86::{Instruction, OpKind, Register};

pub fn seg_of(r: Register) -> Option<Seg> {
    Some(match r {
        Register::ES => Seg::Es,
        Register::CS => Seg::Cs,
        Register::SS => Seg::Ss,
        Register::DS => Seg::Ds,
        Register::FS => Seg::Fs,
        Register::GS => Seg::Gs,
        _ => return None,
    })
}

pub fn reg_read(cpu: &CpuState, r: Register) -> Option<u64> {
    let (n, sz) = Lifter::reg_loc(r).ok()?;
    Some(get_reg(cpu, n, sz))
}

pub fn reg_write(cpu: &mut CpuState, r: Register, v: u64) -> bool {
    match Lifter::reg_loc(r) {
        Ok((n, sz)) => {
            set_reg(cpu, n, sz, v);
            true
        }
        Err(_) => false,
    }
}

/// Linear address of the memory operand.
pub fn linear(cpu: &CpuState, insn: &Instruction) -> u64 {
    let mut ea = insn.memory_displacement64();
    let base = insn.memory_base();
    let mut asz = match cpu.code_bits() {
        64 => 8,
        32 => 4,
        _ => 2,
    };
    if base != Register::None && base != Register::RIP && base != Register::EIP {
        ea = ea.wrapping_add(reg_read(cpu, base).unwrap_or(0));
        asz = base.size();
    }
    let index = insn.memory_index();
    if index != Register::None {
        ea = ea.wrapping_add(
            reg_read(cpu, index)
                .unwrap_or(0)
                .wrapping_mul(insn.memory_index_scale() as u64),
        );
        asz = index.size();
    }
    ea &= match asz {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    };
    let seg = seg_of(insn.memory_segment()).unwrap_or(Seg::Ds);
    let base = if cpu.code_bits() == 64 && !matches!(seg, Seg::Fs | Seg::Gs) {
        0
    } else {
        cpu.seg[seg as usize].base
    };
    let lin = ea.wrapping_add(base);
    if cpu.code_bits() == 64 {
        lin
    } else {
        lin & 0xffff_ffff
    }
}

fn user(cpu: &CpuState) -> bool {
    cpu.cpl() == 3
}

/// Read operand `i` of `size` bytes.
pub fn read(
    cpu: &mut CpuState,
    mem: &Memory,
    insn: &Instruction,
    i: u32,
    size: u8,
) -> Result<u64, Exception> {
    match insn.op_kind(i) {
        OpKind::Register => Ok(reg_read(cpu, insn.op_register(i)).unwrap_or(0)),
        OpKind::Memory => {
            let lin = linear(cpu, insn);
            let u = user(cpu);
            mem.read(cpu, lin, size, u)
        }
        _ => Ok(insn.immediate(i)),
    }
}

/// Write operand `i` of `size` bytes.
pub fn write(
    cpu: &mut CpuState,
    mem: &Memory,
    insn: &Instruction,
    i: u32,
    size: u8,
    v: u64,
) -> Result<(), Exception> {
    match insn.op_kind(i) {
        OpKind::Register => {
            reg_write(cpu, insn.op_register(i), v);
            Ok(())
        }
        OpKind::Memory => {
            let lin = linear(cpu, insn);
            let u = user(cpu);
            mem.write(cpu, lin, size, v, u)
        }
        _ => Ok(()),
    }
}

/// Stack helpers for callouts (push/pop with the current SS size).
pub fn push(cpu: &mut CpuState, mem: &Memory, v: u64, size: u8) -> Result<(), Exception> {
    let mask = cpu.stack_pointer_mask();
    let sp = cpu.gpr[4].wrapping_sub(size as u64) & mask;
    let lin = stack_linear(cpu, sp);
    let u = user(cpu);
    mem.write(cpu, lin, size, v, u).map_err(stack_fault)?;
    cpu.gpr[4] = (cpu.gpr[4] & !mask) | sp;
    Ok(())
}

/// Read the value `off` bytes above the stack pointer, without popping.
pub fn peek(cpu: &mut CpuState, mem: &Memory, off: u64, size: u8) -> Result<u64, Exception> {
    let mask = cpu.stack_pointer_mask();
    let sp = cpu.gpr[4].wrapping_add(off) & mask;
    let lin = stack_linear(cpu, sp);
    let u = user(cpu);
    mem.read(cpu, lin, size, u).map_err(stack_fault)
}

pub fn stack_linear(cpu: &CpuState, sp: u64) -> u64 {
    if cpu.code_bits() == 64 {
        sp
    } else {
        sp.wrapping_add(cpu.seg[Seg::Ss as usize].base) & 0xffff_ffff
    }
}

pub fn add_sp(cpu: &mut CpuState, n: u64) {
    let mask = cpu.stack_pointer_mask();
    let sp = cpu.gpr[4].wrapping_add(n) & mask;
    cpu.gpr[4] = (cpu.gpr[4] & !mask) | sp;
}

fn stack_fault(e: Exception) -> Exception {
    if e.vector == btvisor_translator::exception::vector::GP {
        Exception::ss(0)
    } else {
        e
    }
}

/// Operand size in bytes of an instruction whose size comes from its first operand or, for
/// stack forms, from the stack-pointer increment.
pub fn op_size(insn: &Instruction) -> u8 {
    match insn.stack_pointer_increment().unsigned_abs() {
        2 => 2,
        4 => 4,
        8 => 8,
        _ => Lifter::op_size(insn, 0),
    }
}
