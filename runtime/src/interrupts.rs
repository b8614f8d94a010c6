//! Exception and interrupt delivery through the IDT, as the CPU does it (SDM Vol. 3, 6.12 for
//! protected mode, 6.14 for IA-32e mode): gate checks, stack switch through the TSS, IST,
//! frame layout, IF/TF clearing, and the double-fault/triple-fault escalation of 6.15 Table 6-5.

use crate::mmu::Memory;
use crate::segments::{install_cs, read_descriptor, sel_err};
use btvisor_translator::cpu::{rflags, CpuState, Seg, Segment};
use btvisor_translator::exception::{vector, Exception};

/// What kind of event is being delivered; it decides the privilege check on the gate and the
/// error-code bit EXT.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A processor exception (fault or trap).
    Exception,
    /// INT n / INT3 / INTO: the gate's DPL must be >= CPL.
    Software,
    /// An external interrupt from the PIC/APIC.
    External,
}

/// A triple fault: the CPU would shut down.
#[derive(Copy, Clone, Debug)]
pub struct TripleFault {
    pub last: Exception,
}

fn class(v: u8) -> u8 {
    match v {
        vector::DE | vector::TS | vector::NP | vector::SS | vector::GP => 1, // contributory
        vector::PF => 2,
        vector::DF => 3,
        _ => 0, // benign
    }
}

/// Deliver an event, escalating to #DF and then to a triple fault when delivery itself faults.
pub fn deliver(
    cpu: &mut CpuState,
    mem: &Memory,
    vec: u8,
    error: Option<u32>,
    kind: EventKind,
    cr2: Option<u64>,
) -> Result<(), TripleFault> {
    let mut cur = (vec, error, kind, cr2);
    loop {
        let (v, e, k, c) = cur;
        if let Some(addr) = c {
            cpu.cr2 = addr;
        }
        match deliver_once(cpu, mem, v, e, k) {
            Ok(()) => return Ok(()),
            Err(second) => {
                let (c1, c2) = (class(v), class(second.vector));
                if c1 == 3 && (c2 == 1 || c2 == 2) {
                    return Err(TripleFault { last: second });
                }
                let df = (c1 == 1 && c2 == 1) || (c1 == 2 && (c2 == 1 || c2 == 2));
                cur = if df {
                    (vector::DF, Some(0), EventKind::Exception, None)
                } else {
                    (
                        second.vector,
                        second.error_code,
                        EventKind::Exception,
                        second.fault_addr,
                    )
                };
            }
        }
    }
}

fn ext_bit(kind: EventKind) -> u32 {
    if kind == EventKind::External {
        1
    } else {
        0
    }
}

/// One delivery attempt. Guest registers change only after the last step that can fault, so on
/// an error the state is as before (only stack memory may have been written, as on hardware).
pub fn deliver_once(
    cpu: &mut CpuState,
    mem: &Memory,
    vec: u8,
    error: Option<u32>,
    kind: EventKind,
) -> Result<(), Exception> {
    let long = cpu.long_mode_active();
    let entry_size = if long { 16 } else { 8 };
    let idt_err = (vec as u32) * 8 + 2 + ext_bit(kind);
    if (vec as u64) * entry_size + entry_size - 1 > cpu.idtr.limit as u64 {
        return Err(Exception::gp(idt_err));
    }
    let gate_addr = cpu.idtr.base.wrapping_add(vec as u64 * entry_size);
    let lo = mem.read(cpu, gate_addr, 8, false)?;
    let hi = if long {
        mem.read(cpu, gate_addr + 8, 8, false)?
    } else {
        0
    };
    let gtype = ((lo >> 40) & 0xf) as u8;
    let gdpl = ((lo >> 45) & 3) as u8;
    let present = lo & (1 << 47) != 0;
    let valid = if long {
        matches!(gtype, 0xe | 0xf)
    } else {
        matches!(gtype, 0x6 | 0x7 | 0xe | 0xf)
    };
    if !valid {
        if !long && gtype == 0x5 {
            tracing::error!(target: "btvisor::traps", "task gate in IDT vector {vec}: task switches are not supported");
        }
        return Err(Exception::gp(idt_err));
    }
    if kind == EventKind::Software && gdpl < cpu.cpl() {
        return Err(Exception::gp(idt_err));
    }
    if !present {
        return Err(Exception::np(idt_err));
    }
    let sel = (lo >> 16) as u16;
    let offset = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | (hi << 32);
    let is_trap_gate = gtype & 1 == 1;
    let gate32 = gtype & 8 != 0;

    // The target code segment.
    if sel & !3 == 0 {
        return Err(Exception::gp(ext_bit(kind)));
    }
    let d = read_descriptor(cpu, mem, sel)?;
    if !d.is_code() || d.dpl() > cpu.cpl() {
        return Err(Exception::gp(sel_err(sel) | ext_bit(kind)));
    }
    if !d.present() {
        return Err(Exception::np(sel_err(sel) | ext_bit(kind)));
    }
    if long && !d.long() {
        return Err(Exception::gp(sel_err(sel) | ext_bit(kind)));
    }
    let old_cpl = cpu.cpl();
    let new_cpl = if d.conforming() { old_cpl } else { d.dpl() };
    let old_rflags = cpu.rflags();
    let old_cs = cpu.seg[Seg::Cs as usize].selector as u64;
    let old_ss = cpu.seg[Seg::Ss as usize].selector as u64;
    let old_rsp = cpu.gpr[4];
    let rip = cpu.rip;

    if long {
        let ist = (hi_ist(lo)) as u64;
        let mut rsp = if ist != 0 {
            tss_read(cpu, mem, 36 + (ist - 1) * 8, 8)?
        } else if new_cpl < old_cpl {
            tss_read(cpu, mem, 4 + new_cpl as u64 * 8, 8)?
        } else {
            old_rsp
        };
        rsp &= !0xf;
        // The frame, pushed in this order; no heap allocation on the interrupt path.
        let full = [
            old_ss,
            old_rsp,
            old_rflags,
            old_cs,
            rip,
            error.unwrap_or(0) as u64,
        ];
        let frame = &full[..if error.is_some() { 6 } else { 5 }];
        for &v in frame {
            rsp = rsp.wrapping_sub(8);
            if !crate::mmu::is_canonical(rsp) {
                return Err(Exception::ss(0));
            }
            mem.write(cpu, rsp, 8, v, false).map_err(|e| {
                if e.vector == vector::GP {
                    Exception::ss(0)
                } else {
                    e
                }
            })?;
        }
        if new_cpl < old_cpl {
            cpu.seg[Seg::Ss as usize] = Segment {
                selector: new_cpl as u16,
                attrs: (new_cpl as u16) << 5 | Segment::ATTR_DB,
                limit: 0,
                base: 0,
            };
        }
        cpu.gpr[4] = rsp;
        install_cs(cpu, &d, sel, new_cpl);
        cpu.rip = offset;
    } else {
        let width: u64 = if gate32 { 4 } else { 2 };
        let (mut rsp, ss_seg) = if new_cpl < old_cpl {
            // 32-bit TSS: ESPn at 4 + 8n, SSn at 8 + 8n (SDM Vol. 3, 7.2.1).
            let esp = tss_read(cpu, mem, 4 + new_cpl as u64 * 8, 4)?;
            let ss = tss_read(cpu, mem, 8 + new_cpl as u64 * 8, 2)? as u16;
            let sd = read_descriptor(cpu, mem, ss).map_err(|_| Exception::ts(sel_err(ss)))?;
            if (ss & 3) as u8 != new_cpl || sd.dpl() != new_cpl || !sd.writable_data() {
                return Err(Exception::ts(sel_err(ss)));
            }
            if !sd.present() {
                return Err(Exception::ss(sel_err(ss)));
            }
            (esp, Some(sd.segment(ss)))
        } else {
            (old_rsp, None)
        };
        let ss_now = ss_seg.unwrap_or(cpu.seg[Seg::Ss as usize]);
        let mask = if ss_now.big() { 0xffff_ffff } else { 0xffff };
        // SS:ESP only on a privilege change; the error code only for some vectors.
        let full = [
            old_ss,
            old_rsp,
            old_rflags,
            old_cs,
            rip,
            error.unwrap_or(0) as u64,
        ];
        let first = if new_cpl < old_cpl { 0 } else { 2 };
        let last = if error.is_some() { 6 } else { 5 };
        for &v in &full[first..last] {
            rsp = rsp.wrapping_sub(width) & mask;
            let lin = ss_now.base.wrapping_add(rsp) & 0xffff_ffff;
            mem.write(cpu, lin, width as u8, v, false)?;
        }
        if let Some(s) = ss_seg {
            cpu.seg[Seg::Ss as usize] = s;
        }
        cpu.gpr[4] = (cpu.gpr[4] & !mask) | (rsp & mask);
        install_cs(cpu, &d, sel, new_cpl);
        cpu.rip = if gate32 {
            offset & 0xffff_ffff
        } else {
            offset & 0xffff
        };
    }
    let mut f = old_rflags & !(rflags::TF | rflags::NT | rflags::RF | rflags::VM);
    if !is_trap_gate {
        f &= !rflags::IF;
    }
    cpu.set_rflags(f);
    Ok(())
}

fn hi_ist(lo: u64) -> u8 {
    ((lo >> 32) & 7) as u8
}

/// Read a field of the current TSS (SDM Vol. 3, 7.2.1 and 7.7).
pub fn tss_read(cpu: &mut CpuState, mem: &Memory, off: u64, size: u8) -> Result<u64, Exception> {
    let tr = cpu.tr;
    if !tr.present() || off + size as u64 - 1 > tr.limit as u64 {
        return Err(Exception::ts(sel_err(tr.selector)));
    }
    mem.read(cpu, tr.base.wrapping_add(off), size, false)
}
