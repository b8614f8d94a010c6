//! MOV to/from segment registers, PUSH/POP of segment registers and LDS/LES/LFS/LGS/LSS.
//! Loads go through the protected-mode checks in segments.rs; reads return the guest's own
//! selector (the monitor never exposes its own, unlike native execution on the host).

use super::{operand, Outcome};
use crate::segments::load_data_segment;
use crate::vm::Machine;
use btvisor_translator::cpu::{CpuState, Seg};
use btvisor_translator::env::{CalloutResult, StopReason};
use btvisor_translator::exception::Exception;
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

pub fn run(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction) -> Outcome {
    if cpu.cr0 & btvisor_translator::cpu::cr::CR0_PE == 0 {
        return Ok(CalloutResult::Stop(StopReason::Unsupported(
            "segment load in real mode",
        )));
    }
    match insn.mnemonic() {
        Mnemonic::Mov => {
            if insn.op0_kind() == OpKind::Register && insn.op0_register().is_segment_register() {
                let seg = operand::seg_of(insn.op0_register()).ok_or(Exception::ud())?;
                if seg == Seg::Cs {
                    return Err(Exception::ud());
                }
                let sel = operand::read(cpu, &m.mem, insn, 1, 2)? as u16;
                load_data_segment(cpu, &m.mem, seg, sel)?;
                if seg == Seg::Ss {
                    cpu.interrupt_shadow = true;
                }
            } else {
                let seg = operand::seg_of(insn.op1_register()).ok_or(Exception::ud())?;
                let sel = cpu.seg[seg as usize].selector as u64;
                // To a register: zero-extended to the operand size; to memory: 16 bits.
                let size = if insn.op0_kind() == OpKind::Register {
                    insn.op0_register().size() as u8
                } else {
                    2
                };
                operand::write(cpu, &m.mem, insn, 0, size, sel)?;
            }
        }
        Mnemonic::Push => {
            let seg = operand::seg_of(insn.op0_register()).ok_or(Exception::ud())?;
            let size = operand::op_size(insn);
            operand::push(cpu, &m.mem, cpu.seg[seg as usize].selector as u64, size)?;
        }
        Mnemonic::Pop => {
            let seg = operand::seg_of(insn.op0_register()).ok_or(Exception::ud())?;
            let size = operand::op_size(insn);
            let sel = operand::peek(cpu, &m.mem, 0, size)? as u16;
            load_data_segment(cpu, &m.mem, seg, sel)?;
            operand::add_sp(cpu, size as u64);
            if seg == Seg::Ss {
                cpu.interrupt_shadow = true;
            }
        }
        Mnemonic::Lds | Mnemonic::Les | Mnemonic::Lfs | Mnemonic::Lgs | Mnemonic::Lss => {
            let seg = match insn.mnemonic() {
                Mnemonic::Lds => Seg::Ds,
                Mnemonic::Les => Seg::Es,
                Mnemonic::Lfs => Seg::Fs,
                Mnemonic::Lgs => Seg::Gs,
                _ => Seg::Ss,
            };
            let size = insn.op0_register().size() as u8;
            let lin = operand::linear(cpu, insn);
            let user = cpu.cpl() == 3;
            let off = m.mem.read(cpu, lin, size, user)?;
            let sel = m.mem.read(cpu, lin.wrapping_add(size as u64), 2, user)? as u16;
            load_data_segment(cpu, &m.mem, seg, sel)?;
            let r: Register = insn.op0_register();
            operand::reg_write(cpu, r, off);
        }
        _ => return Err(Exception::ud()),
    }
    Ok(CalloutResult::Next)
}
