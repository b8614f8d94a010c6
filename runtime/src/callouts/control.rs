//! Control and debug registers, TLB and cache control, HLT, SWAPGS, XCR0, FS/GS base
//! instructions and time stamps (SDM Vol. 2 instruction pages; Vol. 3, 2.5 for CR bits).

use super::{operand, require_cpl0, Outcome};
use crate::mmu::Memory;
use crate::native::TlbEvent;
use crate::vm::Machine;
use btvisor_translator::classify::CalloutKind;
use btvisor_translator::cpu::{cr, CpuState, Seg};
use btvisor_translator::env::{CalloutResult, StopReason};
use btvisor_translator::exception::Exception;
use iced_x86::{Instruction, Mnemonic, Register};

pub fn run(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction, kind: CalloutKind) -> Outcome {
    match kind {
        CalloutKind::Hlt => {
            require_cpl0(cpu)?;
            Ok(CalloutResult::Halt)
        }
        CalloutKind::MonitorWait => {
            require_cpl0(cpu)?;
            Ok(if insn.mnemonic() == Mnemonic::Mwait {
                CalloutResult::Halt
            } else {
                CalloutResult::Next
            })
        }
        CalloutKind::MovControl => mov_control(m, cpu, insn),
        CalloutKind::Invlpg => {
            require_cpl0(cpu)?;
            if insn.mnemonic() == Mnemonic::Invlpg {
                let lin = operand::linear(cpu, insn);
                cpu.tlb.flush_page(lin);
                cpu.tlb_generation += 1;
                m.note_tlb(TlbEvent::Invlpg { cr3: cpu.cr3, lin });
            } else {
                Memory::flush_tlb(cpu);
                m.note_tlb(TlbEvent::FlushAll);
            }
            Ok(CalloutResult::Next)
        }
        CalloutKind::CacheControl => {
            require_cpl0(cpu)?;
            Ok(CalloutResult::Next)
        }
        CalloutKind::Swapgs => {
            if cpu.code_bits() != 64 {
                return Err(Exception::ud());
            }
            require_cpl0(cpu)?;
            let gs = cpu.seg[Seg::Gs as usize].base;
            cpu.seg[Seg::Gs as usize].base = cpu.msr.kernel_gs_base;
            cpu.msr.kernel_gs_base = gs;
            Ok(CalloutResult::Next)
        }
        CalloutKind::ExtendedControl => {
            if cpu.cr4 & cr::CR4_OSXSAVE == 0 {
                return Err(Exception::ud());
            }
            let ecx = cpu.gpr[1] as u32;
            if insn.mnemonic() == Mnemonic::Xgetbv {
                if ecx != 0 {
                    return Err(Exception::gp(0));
                }
                cpu.gpr[0] = cpu.xcr0 & 0xffff_ffff;
                cpu.gpr[2] = cpu.xcr0 >> 32;
            } else {
                require_cpl0(cpu)?;
                let v = (cpu.gpr[0] & 0xffff_ffff) | (cpu.gpr[2] << 32);
                // x87 must stay enabled; AVX needs SSE; only what CPUID advertises.
                if ecx != 0
                    || v & 1 == 0
                    || v & !btvisor_translator::native_step::xsave::xcr0_supported() != 0
                    || (v & 4 != 0 && v & 2 == 0)
                {
                    return Err(Exception::gp(0));
                }
                cpu.xcr0 = v;
            }
            Ok(CalloutResult::Next)
        }
        CalloutKind::SegmentBase => {
            if cpu.code_bits() != 64 || cpu.cr4 & cr::CR4_FSGSBASE == 0 {
                return Err(Exception::ud());
            }
            let seg = match insn.mnemonic() {
                Mnemonic::Rdfsbase | Mnemonic::Wrfsbase => Seg::Fs,
                _ => Seg::Gs,
            };
            let r = insn.op0_register();
            match insn.mnemonic() {
                Mnemonic::Rdfsbase | Mnemonic::Rdgsbase => {
                    operand::reg_write(cpu, r, cpu.seg[seg as usize].base);
                }
                _ => {
                    let v = operand::reg_read(cpu, r).unwrap_or(0);
                    if r.size() == 8 && !crate::mmu::is_canonical(v) {
                        return Err(Exception::gp(0));
                    }
                    cpu.seg[seg as usize].base = v;
                }
            }
            Ok(CalloutResult::Next)
        }
        CalloutKind::TimeStamp => {
            // RDPID (RDTSC/RDTSCP are lifted: helpers/timestamp.rs in the translator).
            operand::reg_write(cpu, insn.op0_register(), cpu.msr.tsc_aux);
            Ok(CalloutResult::Next)
        }
        CalloutKind::Undefined => Err(Exception::ud()),
        _ => Ok(CalloutResult::Stop(StopReason::Unsupported(
            "callout routed to the wrong family",
        ))),
    }
}

fn mov_control(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction) -> Outcome {
    require_cpl0(cpu)?;
    let (dst, src) = (insn.op0_register(), insn.op1_register());
    let to_ctl = dst.is_cr() || dst.is_dr();
    let (ctl, gpr) = if to_ctl { (dst, src) } else { (src, dst) };
    if ctl.is_dr() {
        let n = ctl.number();
        let n = match n {
            4 => 6,
            5 => 7,
            n => n,
        };
        if to_ctl {
            let v = operand::reg_read(cpu, gpr).unwrap_or(0);
            // DR6 bits 4..11 and 16..31 read as 1, DR7 bit 10 as 1 (SDM Vol. 3, 18.2).
            cpu.dr[n] = match n {
                6 => (v & 0xe00f) | 0xffff_0ff0,
                7 => (v & 0xffff_27ff) | 0x400,
                _ => v,
            };
        } else {
            operand::reg_write(cpu, gpr, cpu.dr[n]);
        }
        return Ok(CalloutResult::Next);
    }
    // MOV CR always uses the full register width of the mode (32 or 64 bits).
    if to_ctl {
        let v = operand::reg_read(cpu, gpr).unwrap_or(0);
        match ctl {
            Register::CR0 => write_cr0(m, cpu, v)?,
            Register::CR2 => cpu.cr2 = v,
            Register::CR3 => {
                cpu.cr3 = v;
                Memory::flush_tlb(cpu);
                m.note_tlb(TlbEvent::Cr3Load(v));
            }
            Register::CR4 => write_cr4(m, cpu, v)?,
            Register::CR8 => {
                if v & !0xf != 0 {
                    return Err(Exception::gp(0));
                }
                // CR8 is the local APIC's TPR[7:4] (SDM Vol. 3, 10.8.6.1): the APIC owns it.
                m.devices
                    .apics()
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .set_cr8(v);
            }
            _ => return Err(Exception::ud()),
        }
        // Paging or mode changes: the next instruction is fetched in the new mode.
        Ok(CalloutResult::Next)
    } else {
        let v = match ctl {
            Register::CR0 => cpu.cr0,
            Register::CR2 => cpu.cr2,
            Register::CR3 => cpu.cr3,
            Register::CR4 => cpu.cr4,
            Register::CR8 => m
                .devices
                .apics()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .lapic
                .cr8(),
            _ => return Err(Exception::ud()),
        };
        operand::reg_write(cpu, gpr, v);
        Ok(CalloutResult::Next)
    }
}

/// CR0 write with the consistency checks of SDM Vol. 3, 2.5 and the IA-32e activation rule of
/// 9.8.5 (EFER.LMA follows CR0.PG when EFER.LME is set).
pub fn write_cr0(m: &mut Machine, cpu: &mut CpuState, v: u64) -> Result<(), Exception> {
    if v >> 32 != 0 {
        return Err(Exception::gp(0));
    }
    let v = v | cr::CR0_ET;
    if v & cr::CR0_PG != 0 && v & cr::CR0_PE == 0 || v & cr::CR0_NW != 0 && v & cr::CR0_CD == 0 {
        return Err(Exception::gp(0));
    }
    let pg_on = v & cr::CR0_PG != 0 && cpu.cr0 & cr::CR0_PG == 0;
    let pg_off = v & cr::CR0_PG == 0 && cpu.cr0 & cr::CR0_PG != 0;
    if pg_on && cpu.efer & cr::EFER_LME != 0 {
        if cpu.cr4 & cr::CR4_PAE == 0 {
            return Err(Exception::gp(0));
        }
        cpu.efer |= cr::EFER_LMA;
    }
    if pg_off {
        if cpu.code_bits() == 64 {
            return Err(Exception::gp(0));
        }
        cpu.efer &= !cr::EFER_LMA;
    }
    if v & cr::CR0_PE == 0 {
        tracing::warn!(target: "btvisor::callouts", "guest cleared CR0.PE: real mode is not supported yet");
    }
    let changed = (cpu.cr0 ^ v) & (cr::CR0_PG | cr::CR0_WP | cr::CR0_PE) != 0;
    cpu.cr0 = v;
    if changed {
        Memory::flush_tlb(cpu);
        m.note_tlb(TlbEvent::FlushAll);
    }
    Ok(())
}

fn write_cr4(m: &mut Machine, cpu: &mut CpuState, v: u64) -> Result<(), Exception> {
    if v & !super::cpuid::CR4_SUPPORTED != 0 {
        return Err(Exception::gp(0));
    }
    if cpu.long_mode_active() && v & cr::CR4_PAE == 0 {
        return Err(Exception::gp(0));
    }
    let changed = (cpu.cr4 ^ v)
        & (cr::CR4_PAE | cr::CR4_PSE | cr::CR4_PGE | cr::CR4_SMEP | cr::CR4_PCIDE)
        != 0;
    cpu.cr4 = v;
    if changed {
        Memory::flush_tlb(cpu);
        m.note_tlb(TlbEvent::FlushAll);
    }
    Ok(())
}
