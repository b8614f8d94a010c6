//! PUSHF/POPF, CLI/STI, STAC/CLAC: the instructions that read or write IF, IOPL, AC and the
//! other system flags, whose behaviour depends on CPL and IOPL (SDM Vol. 2, POPF "Operation").

use super::{operand, require_cpl0, Outcome};
use crate::vm::Machine;
use btvisor_translator::classify::CalloutKind;
use btvisor_translator::cpu::{rflags::*, CpuState};
use btvisor_translator::env::CalloutResult;
use btvisor_translator::exception::Exception;
use iced_x86::{Instruction, Mnemonic};

fn iopl(cpu: &CpuState) -> u8 {
    ((cpu.rflags >> 12) & 3) as u8
}

pub fn run(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction, kind: CalloutKind) -> Outcome {
    match kind {
        CalloutKind::Pushf => {
            let size = operand::op_size(insn);
            // The pushed image has RF and VM cleared (SDM Vol. 2, PUSHF).
            let v = cpu.rflags() & !(RF | VM);
            operand::push(cpu, &m.mem, v, size)?;
        }
        CalloutKind::Popf => {
            let size = operand::op_size(insn);
            let v = operand::peek(cpu, &m.mem, 0, size)?;
            let cpl = cpu.cpl();
            let old = cpu.rflags();
            let mut changeable = CF | PF | AF | ZF | SF | TF | DF | OF | NT | AC | ID;
            if cpl == 0 {
                changeable |= IOPL | IF;
            } else if cpl <= iopl(cpu) {
                changeable |= IF;
            }
            if size == 2 {
                changeable &= 0xffff;
            }
            let new = (old & !changeable) | (v & changeable);
            operand::add_sp(cpu, size as u64);
            cpu.set_rflags(new);
            if new & IF != 0 && old & IF == 0 {
                // Interrupts become deliverable right after POPF (no shadow, unlike STI).
                cpu.exit_request |= btvisor_translator::cpu::EXIT_INTERRUPT_WINDOW;
            }
        }
        CalloutKind::Cli | CalloutKind::Sti => {
            if cpu.cpl() > iopl(cpu) {
                return Err(Exception::gp(0));
            }
            if insn.mnemonic() == Mnemonic::Sti {
                if cpu.rflags & IF == 0 {
                    // Interrupts stay blocked until after the next instruction (SDM Vol. 2, STI).
                    cpu.interrupt_shadow = true;
                }
                cpu.rflags |= IF;
            } else {
                cpu.rflags &= !IF;
            }
        }
        CalloutKind::AlignmentCheck => {
            require_cpl0(cpu)?;
            if insn.mnemonic() == Mnemonic::Stac {
                cpu.rflags |= AC;
            } else {
                cpu.rflags &= !AC;
            }
        }
        _ => unreachable!("flags callout dispatched for {kind:?}"),
    }
    Ok(CalloutResult::Next)
}
