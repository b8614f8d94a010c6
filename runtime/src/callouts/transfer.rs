//! Control transfers that change CS or privilege: far JMP/CALL/RET, INT n/INT3/INTO/INT1,
//! IRET, SYSCALL/SYSRET and SYSENTER/SYSEXIT (SDM Vol. 2 instruction pages, Vol. 3 chapter 5).
//! Every check that can fault runs before any register changes.

use super::{operand, require_cpl0, Outcome};
use crate::interrupts::{deliver_once, EventKind};
use crate::segments::{
    check_far_target, install_cs, null_inaccessible_segments, read_descriptor, sel_err, Descriptor,
};
use crate::vm::Machine;
use btvisor_translator::classify::CalloutKind;
use btvisor_translator::cpu::{cr, rflags::*, CpuState, Seg, Segment};
use btvisor_translator::env::{CalloutResult, StopReason};
use btvisor_translator::exception::{vector, Exception};
use iced_x86::{Instruction, Mnemonic, OpKind};

pub fn run(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction, kind: CalloutKind) -> Outcome {
    if cpu.cr0 & cr::CR0_PE == 0 {
        return Ok(CalloutResult::Stop(StopReason::Unsupported(
            "far transfer or interrupt in real mode",
        )));
    }
    let was_user = cpu.cpl() == 3;
    let r = match kind {
        CalloutKind::FarTransfer => far(m, cpu, insn),
        CalloutKind::SoftwareInterrupt => software_interrupt(m, cpu, insn),
        CalloutKind::Iret => iret(m, cpu, insn),
        _ => fast_system_call(cpu, insn),
    };
    // Back to user mode with the native engine on: leave the translated batch so the run
    // loop hands the vCPU to the native engine.
    if m.native_tlb && !was_user && cpu.cpl() == 3 {
        cpu.exit_request |= btvisor_translator::cpu::EXIT_TO_USER;
    }
    r
}

/// Write `vals` below the stack pointer (first value highest) and only then move RSP, so a
/// fault in the middle leaves RSP unchanged.
fn push_all(m: &Machine, cpu: &mut CpuState, vals: &[u64], size: u8) -> Result<(), Exception> {
    let mask = cpu.stack_pointer_mask();
    let mut sp = cpu.gpr[4];
    let user = cpu.cpl() == 3;
    for &v in vals {
        sp = sp.wrapping_sub(size as u64) & mask;
        let lin = operand::stack_linear(cpu, sp);
        m.mem.write(cpu, lin, size, v, user).map_err(|e| {
            if e.vector == vector::GP {
                Exception::ss(0)
            } else {
                e
            }
        })?;
    }
    cpu.gpr[4] = (cpu.gpr[4] & !mask) | sp;
    Ok(())
}

fn mask_offset(cpu: &CpuState, d: &Descriptor, off: u64) -> u64 {
    if cpu.long_mode_active() && d.long() {
        off
    } else {
        off & 0xffff_ffff
    }
}

fn far(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction) -> Outcome {
    let mn = insn.mnemonic();
    if mn == Mnemonic::Retf {
        return far_return(m, cpu, insn);
    }
    let (sel, off, size) = match insn.op0_kind() {
        OpKind::FarBranch16 => (insn.far_branch_selector(), insn.far_branch16() as u64, 2u8),
        OpKind::FarBranch32 => (insn.far_branch_selector(), insn.far_branch32() as u64, 4u8),
        _ => {
            let total = insn.memory_size().size() as u8;
            let osz = total - 2;
            let lin = operand::linear(cpu, insn);
            let user = cpu.cpl() == 3;
            let off = m.mem.read(cpu, lin, osz, user)?;
            let sel = m.mem.read(cpu, lin.wrapping_add(osz as u64), 2, user)? as u16;
            (sel, off, osz)
        }
    };
    if sel & !3 == 0 {
        return Err(Exception::gp(0));
    }
    let d = read_descriptor(cpu, &m.mem, sel)?;
    if !d.is_code_data() {
        // Call gates, task gates and TSS targets.
        return Ok(CalloutResult::Stop(StopReason::Unsupported(
            "far transfer through a gate or TSS",
        )));
    }
    check_far_target(cpu, &d, sel)?;
    let cpl = cpu.cpl();
    if mn == Mnemonic::Call {
        let push_size = if cpu.code_bits() == 64 && size == 8 {
            8
        } else {
            size.min(4)
        };
        let cs = cpu.seg[Seg::Cs as usize].selector as u64;
        push_all(m, cpu, &[cs, insn.next_ip()], push_size)?;
    }
    crate::segments::set_accessed(cpu, &m.mem, &d)?;
    install_cs(cpu, &d, sel, cpl);
    cpu.rip = mask_offset(cpu, &d, off);
    Ok(CalloutResult::Jump)
}

fn far_return(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction) -> Outcome {
    let size: u8 = match insn.code() {
        iced_x86::Code::Retfq | iced_x86::Code::Retfq_imm16 => 8,
        iced_x86::Code::Retfw | iced_x86::Code::Retfw_imm16 => 2,
        _ => 4,
    };
    let imm = if insn.op_count() == 1 {
        insn.immediate16() as u64
    } else {
        0
    };
    let off = operand::peek(cpu, &m.mem, 0, size)?;
    let sel = operand::peek(cpu, &m.mem, size as u64, 2)? as u16;
    let cpl = cpu.cpl();
    let rpl = (sel & 3) as u8;
    let d = return_code_segment(m, cpu, sel)?;
    if rpl == cpl {
        operand::add_sp(cpu, 2 * size as u64 + imm);
        install_cs(cpu, &d, sel, cpl);
        cpu.rip = mask_offset(cpu, &d, off);
        return Ok(CalloutResult::Jump);
    }
    // Return to an outer level: SS:RSP follow (after the immediate).
    let new_sp = operand::peek(cpu, &m.mem, 2 * size as u64 + imm, size)?;
    let ss_sel = operand::peek(cpu, &m.mem, 3 * size as u64 + imm, 2)? as u16;
    let ss = outer_stack_segment(m, cpu, ss_sel, rpl, d.long())?;
    install_cs(cpu, &d, sel, rpl);
    cpu.seg[Seg::Ss as usize] = ss;
    cpu.gpr[4] = new_sp.wrapping_add(imm);
    cpu.rip = mask_offset(cpu, &d, off);
    null_inaccessible_segments(cpu);
    Ok(CalloutResult::Jump)
}

/// The CS a far RET or IRET returns to: RPL >= CPL, a present code segment whose DPL equals
/// the RPL (conforming: DPL <= RPL) (SDM Vol. 2, RET and IRET "Operation").
fn return_code_segment(m: &Machine, cpu: &mut CpuState, sel: u16) -> Result<Descriptor, Exception> {
    let rpl = (sel & 3) as u8;
    if sel & !3 == 0 || rpl < cpu.cpl() {
        return Err(Exception::gp(sel_err(sel)));
    }
    let d = read_descriptor(cpu, &m.mem, sel)?;
    let dpl_ok = if d.conforming() {
        d.dpl() <= rpl
    } else {
        d.dpl() == rpl
    };
    if !d.is_code() || !dpl_ok {
        return Err(Exception::gp(sel_err(sel)));
    }
    if !d.present() {
        return Err(Exception::np(sel_err(sel)));
    }
    Ok(d)
}

/// The SS to load when returning to privilege `rpl` (SDM Vol. 2, RET/IRET checks).
fn outer_stack_segment(
    m: &Machine,
    cpu: &mut CpuState,
    ss_sel: u16,
    rpl: u8,
    to_64: bool,
) -> Result<Segment, Exception> {
    if ss_sel & !3 == 0 {
        if cpu.long_mode_active() && to_64 && rpl != 3 {
            return Ok(Segment {
                selector: ss_sel,
                attrs: (rpl as u16) << 5 | Segment::ATTR_DB,
                limit: 0,
                base: 0,
            });
        }
        return Err(Exception::gp(0));
    }
    let sd = read_descriptor(cpu, &m.mem, ss_sel)?;
    if (ss_sel & 3) as u8 != rpl || sd.dpl() != rpl || !sd.writable_data() {
        return Err(Exception::gp(sel_err(ss_sel)));
    }
    if !sd.present() {
        return Err(Exception::ss(sel_err(ss_sel)));
    }
    crate::segments::set_accessed(cpu, &m.mem, &sd)?;
    Ok(sd.segment(ss_sel))
}

fn software_interrupt(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction) -> Outcome {
    let (vec, kind) = match insn.mnemonic() {
        Mnemonic::Int => (insn.immediate8(), EventKind::Software),
        Mnemonic::Int3 => (vector::BP, EventKind::Software),
        Mnemonic::Into => {
            if cpu.rflags() & OF == 0 {
                return Ok(CalloutResult::Next);
            }
            (vector::OF, EventKind::Software)
        }
        // INT1 (ICEBP) is delivered like a hardware #DB: no gate DPL check.
        _ => (vector::DB, EventKind::Exception),
    };
    m.stats.note_interrupt(vec, true);
    tracing::trace!(target: "btvisor::traps", "int {vec:#x} at rip={:#x} cpl={}", insn.ip(), cpu.cpl());
    cpu.rip = insn.next_ip();
    match deliver_once(cpu, &m.mem, vec, None, kind) {
        Ok(()) => Ok(CalloutResult::Jump),
        Err(e) => {
            cpu.rip = insn.ip();
            Err(e)
        }
    }
}

fn iret(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction) -> Outcome {
    let size: u8 = match insn.mnemonic() {
        Mnemonic::Iretq => 8,
        Mnemonic::Iretd => 4,
        _ => 2,
    };
    if cpu.rflags & NT != 0 && !cpu.long_mode_active() {
        return Ok(CalloutResult::Stop(StopReason::Unsupported(
            "IRET with NT set (task return)",
        )));
    }
    let new_ip = operand::peek(cpu, &m.mem, 0, size)?;
    let sel = operand::peek(cpu, &m.mem, size as u64, 2)? as u16;
    let popped_flags = operand::peek(cpu, &m.mem, 2 * size as u64, size)?;
    if !cpu.long_mode_active() && popped_flags & VM != 0 && cpu.cpl() == 0 && size == 4 {
        return Ok(CalloutResult::Stop(StopReason::Unsupported(
            "IRET to virtual-8086 mode",
        )));
    }
    let cpl = cpu.cpl();
    let rpl = (sel & 3) as u8;
    let d = return_code_segment(m, cpu, sel)?;
    if cpu.long_mode_active() && d.long() && d.raw & (1 << 54) != 0 {
        return Err(Exception::gp(sel_err(sel)));
    }
    // In 64-bit mode IRET always pops SS:RSP; elsewhere only on a privilege change.
    let pops_stack = cpu.code_bits() == 64 || rpl > cpl;
    let new_stack = if pops_stack {
        let sp = operand::peek(cpu, &m.mem, 3 * size as u64, size)?;
        let ss_sel = operand::peek(cpu, &m.mem, 4 * size as u64, 2)? as u16;
        let ss = if rpl == cpl && ss_sel & !3 == 0 && cpu.long_mode_active() && d.long() && rpl != 3
        {
            Segment {
                selector: ss_sel,
                attrs: (rpl as u16) << 5 | Segment::ATTR_DB,
                limit: 0,
                base: 0,
            }
        } else {
            outer_stack_segment(m, cpu, ss_sel, rpl, d.long())?
        };
        Some((sp, ss))
    } else {
        None
    };
    // RFLAGS: IOPL changes only at CPL 0, IF only when CPL <= IOPL (SDM Vol. 2, IRET).
    let old = cpu.rflags();
    let iopl = ((old >> 12) & 3) as u8;
    let mut changeable = CF | PF | AF | ZF | SF | TF | DF | OF | NT | RF | AC | ID | VIF | VIP;
    if cpl == 0 {
        changeable |= IOPL;
    }
    if cpl <= iopl {
        changeable |= IF;
    }
    if size == 2 {
        changeable &= 0xffff;
    }
    let new_flags = (old & !changeable) | (popped_flags & changeable);
    install_cs(cpu, &d, sel, rpl);
    cpu.rip = mask_offset(cpu, &d, new_ip);
    match new_stack {
        Some((sp, ss)) => {
            cpu.seg[Seg::Ss as usize] = ss;
            cpu.gpr[4] = if cpu.code_bits() == 64 {
                sp
            } else {
                sp & 0xffff_ffff
            };
        }
        None => operand::add_sp(cpu, 3 * size as u64),
    }
    cpu.set_rflags(new_flags);
    if new_flags & IF != 0 && old & IF == 0 {
        cpu.exit_request |= btvisor_translator::cpu::EXIT_INTERRUPT_WINDOW;
    }
    if rpl > cpl {
        null_inaccessible_segments(cpu);
    }
    tracing::trace!(target: "btvisor::traps", "iret to rip={:#x} cpl={}", cpu.rip, cpu.cpl());
    Ok(CalloutResult::Jump)
}

/// Flat segments that SYSCALL/SYSENTER/SYSRET/SYSEXIT load without reading the GDT
/// (SDM Vol. 2, SYSCALL "Operation").
fn flat_code(sel: u16, dpl: u8, long: bool) -> Segment {
    let mut s = Segment::flat(sel, 0xb, dpl, !long);
    if long {
        s.attrs |= Segment::ATTR_L;
    }
    s
}

fn flat_stack(sel: u16, dpl: u8) -> Segment {
    Segment::flat(sel, 0x3, dpl, true)
}

/// SYSCALL (SDM Vol. 2, SYSCALL "Operation"): `next` is the address after the instruction.
/// Also how the native engine delivers a guest user SYSCALL that its child trapped.
pub fn syscall_entry(cpu: &mut CpuState, next: u64) -> Result<(), Exception> {
    if cpu.efer & cr::EFER_SCE == 0 {
        return Err(Exception::ud());
    }
    let long = cpu.long_mode_active();
    let sel = ((cpu.msr.star >> 32) & 0xfffc) as u16;
    let flags = cpu.rflags();
    if long {
        cpu.gpr[1] = next;
        cpu.gpr[11] = flags & !RF;
        cpu.rip = if cpu.code_bits() == 64 {
            cpu.msr.lstar
        } else {
            cpu.msr.cstar
        };
        cpu.set_rflags(flags & !cpu.msr.fmask & !RF);
        cpu.seg[Seg::Cs as usize] = flat_code(sel, 0, true);
    } else {
        cpu.gpr[1] = next & 0xffff_ffff;
        cpu.rip = cpu.msr.star & 0xffff_ffff;
        cpu.set_rflags(flags & !(VM | IF | RF));
        cpu.seg[Seg::Cs as usize] = flat_code(sel, 0, false);
    }
    cpu.seg[Seg::Ss as usize] = flat_stack(sel + 8, 0);
    Ok(())
}

fn fast_system_call(cpu: &mut CpuState, insn: &Instruction) -> Outcome {
    let long = cpu.long_mode_active();
    let next = insn.next_ip();
    match insn.mnemonic() {
        Mnemonic::Syscall => syscall_entry(cpu, next)?,
        Mnemonic::Sysret | Mnemonic::Sysretq => {
            if cpu.efer & cr::EFER_SCE == 0 {
                return Err(Exception::ud());
            }
            require_cpl0(cpu)?;
            let base = ((cpu.msr.star >> 48) & 0xffff) as u16;
            let to64 = insn.mnemonic() == Mnemonic::Sysretq;
            if to64 && !crate::mmu::is_canonical(cpu.gpr[1]) {
                return Err(Exception::gp(0));
            }
            if long {
                let f = (cpu.gpr[11] & 0x3c_7fd7) | FIXED1;
                cpu.set_rflags(f);
            } else {
                cpu.rflags |= IF;
            }
            if to64 {
                cpu.seg[Seg::Cs as usize] = flat_code((base + 16) | 3, 3, true);
                cpu.rip = cpu.gpr[1];
            } else {
                cpu.seg[Seg::Cs as usize] = flat_code(base | 3, 3, false);
                cpu.rip = cpu.gpr[1] & 0xffff_ffff;
            }
            cpu.seg[Seg::Ss as usize] = flat_stack((base + 8) | 3, 3);
        }
        Mnemonic::Sysenter => {
            let cs = (cpu.msr.sysenter_cs & 0xfffc) as u16;
            if cs == 0 {
                return Err(Exception::gp(0));
            }
            let f = cpu.rflags() & !(VM | IF | RF);
            cpu.set_rflags(f);
            cpu.seg[Seg::Cs as usize] = flat_code(cs, 0, long);
            cpu.seg[Seg::Ss as usize] = flat_stack(cs + 8, 0);
            cpu.rip = if long {
                cpu.msr.sysenter_eip
            } else {
                cpu.msr.sysenter_eip & 0xffff_ffff
            };
            cpu.gpr[4] = if long {
                cpu.msr.sysenter_esp
            } else {
                cpu.msr.sysenter_esp & 0xffff_ffff
            };
        }
        _ => {
            // SYSEXIT / SYSEXITQ
            let cs = (cpu.msr.sysenter_cs & 0xfffc) as u16;
            if cs == 0 {
                return Err(Exception::gp(0));
            }
            require_cpl0(cpu)?;
            if insn.mnemonic() == Mnemonic::Sysexitq {
                cpu.seg[Seg::Cs as usize] = flat_code((cs + 32) | 3, 3, true);
                cpu.seg[Seg::Ss as usize] = flat_stack((cs + 40) | 3, 3);
                cpu.rip = cpu.gpr[2];
                cpu.gpr[4] = cpu.gpr[1];
            } else {
                cpu.seg[Seg::Cs as usize] = flat_code((cs + 16) | 3, 3, false);
                cpu.seg[Seg::Ss as usize] = flat_stack((cs + 24) | 3, 3);
                cpu.rip = cpu.gpr[2] & 0xffff_ffff;
                cpu.gpr[4] = cpu.gpr[1] & 0xffff_ffff;
            }
        }
    }
    Ok(CalloutResult::Jump)
}
