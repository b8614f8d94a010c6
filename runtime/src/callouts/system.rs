//! Descriptor-table registers and descriptor queries: SGDT/SIDT/SLDT/STR/SMSW,
//! LGDT/LIDT/LLDT/LTR/LMSW/CLTS, LAR/LSL/VERR/VERW (SDM Vol. 2; Vol. 3, 2.4 and 3.5).

use super::{operand, require_cpl0, Outcome};
use crate::segments::{read_descriptor, read_descriptor_high, sel_err, Descriptor};
use crate::vm::Machine;
use btvisor_translator::classify::CalloutKind;
use btvisor_translator::cpu::{cr, rflags::ZF, CpuState, Segment};
use btvisor_translator::env::CalloutResult;
use btvisor_translator::exception::Exception;
use btvisor_translator::helpers::{arith, set_arith};
use iced_x86::{Instruction, Mnemonic, OpKind};

pub fn run(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction, kind: CalloutKind) -> Outcome {
    match kind {
        CalloutKind::StoreSystemReg => store(m, cpu, insn),
        CalloutKind::LoadSystemReg => load(m, cpu, insn),
        _ => query(m, cpu, insn),
    }?;
    Ok(CalloutResult::Next)
}

/// Destination width of SLDT/STR/SMSW: registers take the operand size (zero-extended),
/// memory always 16 bits.
fn store16(m: &Machine, cpu: &mut CpuState, insn: &Instruction, v: u64) -> Result<(), Exception> {
    if insn.op0_kind() == OpKind::Register {
        let r = insn.op0_register();
        operand::reg_write(cpu, r, v & if r.size() == 2 { 0xffff } else { u64::MAX });
        Ok(())
    } else {
        operand::write(cpu, &m.mem, insn, 0, 2, v & 0xffff)
    }
}

fn store(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction) -> Result<(), Exception> {
    if cpu.cr4 & cr::CR4_UMIP != 0 && cpu.cpl() > 0 {
        return Err(Exception::gp(0));
    }
    match insn.mnemonic() {
        Mnemonic::Sgdt | Mnemonic::Sidt => {
            let t = if insn.mnemonic() == Mnemonic::Sgdt {
                cpu.gdtr
            } else {
                cpu.idtr
            };
            let lin = operand::linear(cpu, insn);
            let user = cpu.cpl() == 3;
            m.mem.write(cpu, lin, 2, t.limit as u64, user)?;
            if cpu.code_bits() == 64 {
                m.mem.write(cpu, lin.wrapping_add(2), 8, t.base, user)?;
            } else {
                m.mem.write(
                    cpu,
                    lin.wrapping_add(2) & 0xffff_ffff,
                    4,
                    t.base & 0xffff_ffff,
                    user,
                )?;
            }
            Ok(())
        }
        Mnemonic::Sldt => store16(m, cpu, insn, cpu.ldtr.selector as u64),
        Mnemonic::Str => store16(m, cpu, insn, cpu.tr.selector as u64),
        // SMSW to a register stores CR0's low bits up to the operand size.
        _ => {
            if insn.op0_kind() == OpKind::Register {
                operand::reg_write(cpu, insn.op0_register(), cpu.cr0);
                Ok(())
            } else {
                operand::write(cpu, &m.mem, insn, 0, 2, cpu.cr0 & 0xffff)
            }
        }
    }
}

fn load(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction) -> Result<(), Exception> {
    require_cpl0(cpu)?;
    match insn.mnemonic() {
        Mnemonic::Lgdt | Mnemonic::Lidt => {
            let lin = operand::linear(cpu, insn);
            let limit = m.mem.read(cpu, lin, 2, false)? as u16;
            let base = if cpu.code_bits() == 64 {
                m.mem.read(cpu, lin.wrapping_add(2), 8, false)?
            } else {
                let b = m
                    .mem
                    .read(cpu, lin.wrapping_add(2) & 0xffff_ffff, 4, false)?;
                // A 16-bit operand size loads a 24-bit base.
                if format!("{:?}", insn.code()).ends_with("_16") {
                    b & 0xff_ffff
                } else {
                    b
                }
            };
            let t = btvisor_translator::cpu::TableReg { base, limit };
            if insn.mnemonic() == Mnemonic::Lgdt {
                cpu.gdtr = t;
            } else {
                cpu.idtr = t;
            }
        }
        Mnemonic::Lldt => {
            let sel = operand::read(cpu, &m.mem, insn, 0, 2)? as u16;
            if sel & !3 == 0 {
                cpu.ldtr = Segment {
                    selector: sel,
                    ..Segment::default()
                };
                return Ok(());
            }
            if sel & 4 != 0 {
                return Err(Exception::gp(sel_err(sel)));
            }
            let d = read_descriptor(cpu, &m.mem, sel)?;
            if d.is_code_data() || d.typ() != 2 {
                return Err(Exception::gp(sel_err(sel)));
            }
            if !d.present() {
                return Err(Exception::np(sel_err(sel)));
            }
            cpu.ldtr = system_segment(cpu, m, &d, sel)?;
        }
        Mnemonic::Ltr => {
            let sel = operand::read(cpu, &m.mem, insn, 0, 2)? as u16;
            if sel & !3 == 0 || sel & 4 != 0 {
                return Err(Exception::gp(sel_err(sel)));
            }
            let d = read_descriptor(cpu, &m.mem, sel)?;
            let ok_type = if cpu.long_mode_active() {
                d.typ() == 9
            } else {
                matches!(d.typ(), 1 | 9)
            };
            if d.is_code_data() || !ok_type {
                return Err(Exception::gp(sel_err(sel)));
            }
            if !d.present() {
                return Err(Exception::np(sel_err(sel)));
            }
            let seg = system_segment(cpu, m, &d, sel)?;
            // Mark the TSS busy in the GDT (type 1->3, 9->11).
            let b5 = ((d.raw >> 40) as u8) | 2;
            m.mem.write(cpu, d.addr + 5, 1, b5 as u64, false)?;
            cpu.tr = seg;
            cpu.tr.attrs |= 2;
        }
        Mnemonic::Lmsw => {
            // Only PE, MP, EM and TS; PE can be set but not cleared.
            let v = operand::read(cpu, &m.mem, insn, 0, 2)?;
            let new = (cpu.cr0 & !0xe) | (v & 0xf) | (cpu.cr0 & 1);
            super::control::write_cr0(m, cpu, new)?;
        }
        _ => {
            // CLTS
            cpu.cr0 &= !cr::CR0_TS;
        }
    }
    Ok(())
}

/// LDT and TSS descriptors are 16 bytes in long mode: the upper half holds base bits 63..32.
fn system_segment(
    cpu: &mut CpuState,
    m: &Machine,
    d: &Descriptor,
    sel: u16,
) -> Result<Segment, Exception> {
    let mut s = d.segment(sel);
    if cpu.long_mode_active() {
        let hi = read_descriptor_high(cpu, &m.mem, sel)?;
        s.base |= (hi & 0xffff_ffff) << 32;
    }
    Ok(s)
}

/// LAR/LSL/VERR/VERW: set ZF when the descriptor is valid and visible at CPL/RPL; no fault for
/// bad selectors (SDM Vol. 2, LAR "Operation").
fn query(m: &mut Machine, cpu: &mut CpuState, insn: &Instruction) -> Result<(), Exception> {
    let mn = insn.mnemonic();
    let src_idx = if matches!(mn, Mnemonic::Lar | Mnemonic::Lsl) {
        1
    } else {
        0
    };
    let sel = operand::read(cpu, &m.mem, insn, src_idx, 2)? as u16;
    let long = cpu.long_mode_active();
    let d = if sel & !3 == 0 {
        None
    } else {
        match read_descriptor(cpu, &m.mem, sel) {
            Ok(d) => Some(d),
            Err(e)
                if e.vector == btvisor_translator::exception::vector::GP
                    && e.error_code == Some(sel_err(sel)) =>
            {
                None
            }
            Err(e) => return Err(e),
        }
    };
    let visible =
        |d: &Descriptor| d.conforming() || (d.dpl() >= cpu.cpl() && d.dpl() >= (sel & 3) as u8);
    let ok = d.filter(|d| match mn {
        Mnemonic::Lar | Mnemonic::Lsl => {
            let type_ok = d.is_code_data()
                || match (mn, long) {
                    (Mnemonic::Lar, false) => matches!(d.typ(), 1 | 2 | 3 | 4 | 5 | 9 | 0xb | 0xc),
                    (Mnemonic::Lar, true) => matches!(d.typ(), 2 | 9 | 0xb | 0xc),
                    (_, false) => matches!(d.typ(), 1 | 2 | 3 | 9 | 0xb),
                    (_, true) => matches!(d.typ(), 2 | 9 | 0xb),
                };
            type_ok && visible(d)
        }
        Mnemonic::Verr => d.is_code_data() && d.readable() && visible(d),
        _ => d.writable_data() && d.dpl() >= cpu.cpl() && d.dpl() >= (sel & 3) as u8,
    });
    let f = arith(cpu);
    set_arith(cpu, if ok.is_some() { f | ZF } else { f & !ZF });
    if let Some(d) = ok {
        let size = insn.op0_register().size();
        let v = match mn {
            Mnemonic::Lar => (d.raw >> 32) & if size == 2 { 0xff00 } else { 0x00f0_ff00 },
            Mnemonic::Lsl => {
                d.segment(sel).limit as u64 & if size == 2 { 0xffff } else { u64::MAX }
            }
            _ => return Ok(()),
        };
        operand::reg_write(cpu, insn.op0_register(), v);
    }
    Ok(())
}
