//! IN/OUT/INS/OUTS to the port-I/O bus (SDM Vol. 1, 19.5 for the IOPL/CPL check; the TSS I/O
//! permission bitmap is not consulted yet, so CPL > IOPL always faults).

use super::{operand, Outcome};
use crate::vm::Machine;
use btvisor_devices::IoOutcome;
use btvisor_translator::cpu::{reg, rflags, CpuState, Seg};
use btvisor_translator::env::{CalloutResult, StopReason};
use btvisor_translator::exception::Exception;
use btvisor_translator::interp::{get_reg, set_reg};
use btvisor_translator::lift::address_size;
use iced_x86::{Instruction, Mnemonic, OpKind};

pub fn run(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction) -> Outcome {
    let iopl = ((cpu.rflags >> 12) & 3) as u8;
    if cpu.cpl() > iopl {
        return Err(Exception::gp(0));
    }
    let mn = insn.mnemonic();
    let size: u8 = match mn {
        Mnemonic::Insb | Mnemonic::Outsb => 1,
        Mnemonic::Insw | Mnemonic::Outsw => 2,
        Mnemonic::Insd | Mnemonic::Outsd => 4,
        Mnemonic::In => insn.op0_register().size() as u8,
        _ => insn.op1_register().size() as u8,
    };
    let port_of = |cpu: &CpuState, i: u32| -> u16 {
        if insn.op_kind(i) == OpKind::Immediate8 {
            insn.immediate8() as u16
        } else {
            get_reg(cpu, reg::RDX, 2) as u16
        }
    };
    match mn {
        Mnemonic::In => {
            let port = port_of(cpu, 1);
            let v = m.devices.io_in(port, size) as u64;
            set_reg(cpu, reg::RAX, size, v);
        }
        Mnemonic::Out => {
            let port = port_of(cpu, 0);
            let v = get_reg(cpu, reg::RAX, size) as u32;
            if let Some(stop) = stop_reason(m.devices.io_out(port, size, v)) {
                return Ok(CalloutResult::Stop(stop));
            }
        }
        _ => {
            // INS/OUTS: one element per callout; REP re-runs the instruction until RCX is 0.
            let asz = address_size(insn, cpu.mode());
            let amask = btvisor_translator::flags::size_mask(asz as u32);
            let rep = insn.has_rep_prefix() || insn.has_repne_prefix();
            if rep && get_reg(cpu, reg::RCX, asz) == 0 {
                return Ok(CalloutResult::Next);
            }
            let step = if cpu.rflags & rflags::DF != 0 {
                (size as u64).wrapping_neg()
            } else {
                size as u64
            };
            let port = get_reg(cpu, reg::RDX, 2) as u16;
            let user = cpu.cpl() == 3;
            let lin_of = |cpu: &CpuState, seg: Seg, off: u64| {
                let base = if cpu.code_bits() == 64 && !matches!(seg, Seg::Fs | Seg::Gs) {
                    0
                } else {
                    cpu.seg[seg as usize].base
                };
                let l = base.wrapping_add(off);
                if cpu.code_bits() == 64 {
                    l
                } else {
                    l & 0xffff_ffff
                }
            };
            if matches!(mn, Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd) {
                let rdi = get_reg(cpu, reg::RDI, asz);
                let lin = lin_of(cpu, Seg::Es, rdi);
                // Probe the destination before the port read has side effects.
                let old = m.mem.read(cpu, lin, size, user)?;
                m.mem.write(cpu, lin, size, old, user)?;
                let v = m.devices.io_in(port, size) as u64;
                m.mem.write(cpu, lin, size, v, user)?;
                set_reg(cpu, reg::RDI, asz, rdi.wrapping_add(step) & amask);
            } else {
                let rsi = get_reg(cpu, reg::RSI, asz);
                let seg = operand::seg_of(insn.memory_segment()).unwrap_or(Seg::Ds);
                let lin = lin_of(cpu, seg, rsi);
                let v = m.mem.read(cpu, lin, size, user)?;
                set_reg(cpu, reg::RSI, asz, rsi.wrapping_add(step) & amask);
                if let Some(stop) = stop_reason(m.devices.io_out(port, size, v as u32)) {
                    return Ok(CalloutResult::Stop(stop));
                }
            }
            if rep {
                let c = get_reg(cpu, reg::RCX, asz).wrapping_sub(1) & amask;
                set_reg(cpu, reg::RCX, asz, c);
                if c != 0 {
                    cpu.rip = insn.ip();
                    return Ok(CalloutResult::Jump);
                }
            }
        }
    }
    Ok(CalloutResult::Next)
}

/// Whether a port write ends the VM, and why.
fn stop_reason(outcome: IoOutcome) -> Option<StopReason> {
    match outcome {
        IoOutcome::Continue => None,
        IoOutcome::Exit(code) => Some(StopReason::ExitCode(code)),
        IoOutcome::PowerOff => Some(StopReason::PowerOff),
        IoOutcome::Reset => Some(StopReason::Reset),
        IoOutcome::GuestPanic => Some(StopReason::GuestPanic),
    }
}
