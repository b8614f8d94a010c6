//! Descriptor tables and segment loading in protected and long mode (SDM Vol. 3, chapters 3
//! and 5): reading descriptors from the GDT/LDT, the checks of MOV/POP to segment registers,
//! far transfers and gates, and the hidden parts the CPU caches.

use crate::mmu::Memory;
use btvisor_translator::cpu::{CpuState, Seg, Segment};
use btvisor_translator::exception::Exception;

/// A raw 8-byte descriptor and where it lives.
#[derive(Copy, Clone, Debug)]
pub struct Descriptor {
    pub raw: u64,
    /// Linear address of the descriptor (for setting Accessed/Busy bits).
    pub addr: u64,
}

impl Descriptor {
    /// Hidden-part view: base, scaled limit, attribute bits (SDM Vol. 3, 3.4.5).
    pub fn segment(&self, selector: u16) -> Segment {
        let r = self.raw;
        let base = ((r >> 16) & 0xff_ffff) | ((r >> 56) << 24);
        let mut limit = ((r & 0xffff) | ((r >> 32) & 0xf_0000)) as u32;
        let attrs = ((r >> 40) & 0xf0ff) as u16;
        if attrs & Segment::ATTR_G != 0 {
            limit = (limit << 12) | 0xfff;
        }
        Segment {
            selector,
            attrs,
            limit,
            base,
        }
    }
    pub fn present(&self) -> bool {
        self.raw & (1 << 47) != 0
    }
    pub fn dpl(&self) -> u8 {
        ((self.raw >> 45) & 3) as u8
    }
    /// S bit: code/data (true) or system (false).
    pub fn is_code_data(&self) -> bool {
        self.raw & (1 << 44) != 0
    }
    pub fn typ(&self) -> u8 {
        ((self.raw >> 40) & 0xf) as u8
    }
    pub fn is_code(&self) -> bool {
        self.is_code_data() && self.typ() & 8 != 0
    }
    pub fn conforming(&self) -> bool {
        self.is_code() && self.typ() & 4 != 0
    }
    pub fn readable(&self) -> bool {
        !self.is_code() || self.typ() & 2 != 0
    }
    pub fn writable_data(&self) -> bool {
        self.is_code_data() && !self.is_code() && self.typ() & 2 != 0
    }
    pub fn long(&self) -> bool {
        self.raw & (1 << 53) != 0
    }
}

/// Error code of a selector fault (SDM Vol. 3, 6.13): the selector with RPL cleared.
pub fn sel_err(sel: u16) -> u32 {
    (sel & !3) as u32
}

/// Read the descriptor a selector names (GDT or LDT by TI), #GP(sel) outside the table limit.
pub fn read_descriptor(
    cpu: &mut CpuState,
    mem: &Memory,
    sel: u16,
) -> Result<Descriptor, Exception> {
    let (base, limit) = if sel & 4 != 0 {
        if !cpu.ldtr.present() || cpu.ldtr.selector & !3 == 0 {
            return Err(Exception::gp(sel_err(sel)));
        }
        (cpu.ldtr.base, cpu.ldtr.limit)
    } else {
        (cpu.gdtr.base, cpu.gdtr.limit as u32)
    };
    let off = (sel & !7) as u64;
    if off + 7 > limit as u64 {
        return Err(Exception::gp(sel_err(sel)));
    }
    let addr = base.wrapping_add(off);
    let raw = mem.read(cpu, addr, 8, false)?;
    Ok(Descriptor { raw, addr })
}

/// The high half of a 16-byte system descriptor in long mode (TSS, LDT, gates in the GDT).
pub fn read_descriptor_high(cpu: &mut CpuState, mem: &Memory, sel: u16) -> Result<u64, Exception> {
    let off = (sel & !7) as u64 + 8;
    if off + 7 > cpu.gdtr.limit as u64 {
        return Err(Exception::gp(sel_err(sel)));
    }
    mem.read(cpu, cpu.gdtr.base.wrapping_add(off), 8, false)
}

/// Set the Accessed bit of a code/data descriptor, as the CPU does on a load.
pub fn set_accessed(cpu: &mut CpuState, mem: &Memory, d: &Descriptor) -> Result<(), Exception> {
    if d.is_code_data() && d.raw & (1 << 40) == 0 {
        mem.write(cpu, d.addr + 5, 1, ((d.raw >> 40) as u8 | 1) as u64, false)?;
    }
    Ok(())
}

/// A null segment as loaded by a null selector (unusable; SDM Vol. 3, 3.4.2).
pub fn null_segment(sel: u16) -> Segment {
    Segment {
        selector: sel,
        attrs: 0,
        limit: 0,
        base: 0,
    }
}

/// MOV/POP/LxS to DS, ES, FS, GS or SS in protected mode (SDM Vol. 2, MOV "Operation").
pub fn load_data_segment(
    cpu: &mut CpuState,
    mem: &Memory,
    seg: Seg,
    sel: u16,
) -> Result<(), Exception> {
    let cpl = cpu.cpl();
    let rpl = (sel & 3) as u8;
    let long64 = cpu.code_bits() == 64;
    if sel & !3 == 0 {
        if seg == Seg::Ss && !(long64 && cpl != 3 && rpl == cpl) {
            return Err(Exception::gp(0));
        }
        let mut s = null_segment(sel);
        if seg == Seg::Ss {
            // A null SS in 64-bit mode keeps DPL = CPL so CPL stays right.
            s.attrs = ((cpl as u16) << 5) | Segment::ATTR_DB;
        }
        cpu.seg[seg as usize] = s;
        return Ok(());
    }
    let d = read_descriptor(cpu, mem, sel)?;
    if seg == Seg::Ss {
        if rpl != cpl || d.dpl() != cpl || !d.writable_data() {
            return Err(Exception::gp(sel_err(sel)));
        }
        if !d.present() {
            return Err(Exception::ss(sel_err(sel)));
        }
    } else {
        if !d.is_code_data() || !d.readable() {
            return Err(Exception::gp(sel_err(sel)));
        }
        if !d.conforming() && (d.dpl() < cpl || d.dpl() < rpl) {
            return Err(Exception::gp(sel_err(sel)));
        }
        if !d.present() {
            return Err(Exception::np(sel_err(sel)));
        }
    }
    set_accessed(cpu, mem, &d)?;
    cpu.seg[seg as usize] = d.segment(sel);
    Ok(())
}

/// Load CS for a far JMP/CALL/RET or an interrupt at privilege `new_cpl`: the selector's RPL is
/// replaced by the new CPL, as the CPU does.
pub fn install_cs(cpu: &mut CpuState, d: &Descriptor, sel: u16, new_cpl: u8) {
    let sel = (sel & !3) | new_cpl as u16;
    cpu.seg[Seg::Cs as usize] = d.segment(sel);
}

/// Check a code-segment descriptor for a direct far JMP/CALL (SDM Vol. 3, 5.8.1): same
/// privilege only; conforming needs DPL <= CPL, non-conforming RPL <= CPL and DPL == CPL.
pub fn check_far_target(cpu: &CpuState, d: &Descriptor, sel: u16) -> Result<(), Exception> {
    let cpl = cpu.cpl();
    if !d.is_code() {
        return Err(Exception::gp(sel_err(sel)));
    }
    let ok = if d.conforming() {
        d.dpl() <= cpl
    } else {
        (sel & 3) as u8 <= cpl && d.dpl() == cpl
    };
    if !ok {
        return Err(Exception::gp(sel_err(sel)));
    }
    if !d.present() {
        return Err(Exception::np(sel_err(sel)));
    }
    Ok(())
}

/// After a return to an outer privilege level, data segment registers that the new level may
/// not use are nulled (SDM Vol. 2, RET/IRET "Operation").
pub fn null_inaccessible_segments(cpu: &mut CpuState) {
    let cpl = cpu.cpl();
    for s in [Seg::Es, Seg::Ds, Seg::Fs, Seg::Gs] {
        let seg = cpu.seg[s as usize];
        let code_conforming = seg.attrs & 0x1c == 0x1c;
        if seg.present() && seg.dpl() < cpl && !code_conforming {
            cpu.seg[s as usize] = null_segment(0);
        }
    }
}
