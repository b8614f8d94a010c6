//! `CpuState` to KVM's register structures and back. Segment attributes map one to one:
//! `Segment::attrs` holds descriptor bits 40..55 (type, S, DPL, P, AVL, L, D/B, G), the layout
//! of VMX access rights that `struct kvm_segment` spells out field by field (KVM API,
//! KVM_SET_SREGS). Limits are byte-granular in both.

use btvisor_translator::cpu::{CpuState, Seg, Segment, TableReg};
use kvm_bindings::{kvm_dtable, kvm_regs, kvm_segment, kvm_sregs};
use std::fmt::Write as _;

/// IA32_APIC_BASE at reset: the default base, the xAPIC enabled, this is the BSP (SDM Vol. 3,
/// 10.4.4).
pub const APIC_BASE_RESET: u64 = 0xfee0_0000 | (1 << 11) | (1 << 8);

/// One segment register in KVM's layout. A segment that is not present is "unusable" to VMX
/// (a null selector loaded into a data segment register).
pub fn segment_to_kvm(s: &Segment) -> kvm_segment {
    let bit = |n: u32| ((s.attrs >> n) & 1) as u8;
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: (s.attrs & 0xf) as u8,
        s: bit(4),
        dpl: ((s.attrs >> 5) & 3) as u8,
        present: bit(7),
        avl: bit(12),
        l: bit(13),
        db: bit(14),
        g: bit(15),
        unusable: u8::from(!s.present()),
        padding: 0,
    }
}

/// The inverse of [`segment_to_kvm`]; an unusable segment reads as not present.
pub fn segment_from_kvm(k: &kvm_segment) -> Segment {
    let present = k.present != 0 && k.unusable == 0;
    let attrs = u16::from(k.type_ & 0xf)
        | (u16::from(k.s & 1) << 4)
        | (u16::from(k.dpl & 3) << 5)
        | (u16::from(present) << 7)
        | (u16::from(k.avl & 1) << 12)
        | (u16::from(k.l & 1) << 13)
        | (u16::from(k.db & 1) << 14)
        | (u16::from(k.g & 1) << 15);
    Segment {
        selector: k.selector,
        attrs,
        limit: k.limit,
        base: k.base,
    }
}

fn table_to_kvm(t: &TableReg) -> kvm_dtable {
    kvm_dtable {
        base: t.base,
        limit: t.limit,
        padding: [0; 3],
    }
}

fn table_from_kvm(t: &kvm_dtable) -> TableReg {
    TableReg {
        base: t.base,
        limit: t.limit,
    }
}

/// KVM's order of the segment registers in `kvm_sregs`, against ours.
fn sregs_segments(s: &mut kvm_sregs) -> [(Seg, &mut kvm_segment); 6] {
    [
        (Seg::Es, &mut s.es),
        (Seg::Cs, &mut s.cs),
        (Seg::Ss, &mut s.ss),
        (Seg::Ds, &mut s.ds),
        (Seg::Fs, &mut s.fs),
        (Seg::Gs, &mut s.gs),
    ]
}

/// GPRs, RIP and RFLAGS (with the lazily kept arithmetic flags materialised).
pub fn regs_to_kvm(cpu: &CpuState) -> kvm_regs {
    let g = &cpu.gpr;
    kvm_regs {
        rax: g[0],
        rcx: g[1],
        rdx: g[2],
        rbx: g[3],
        rsp: g[4],
        rbp: g[5],
        rsi: g[6],
        rdi: g[7],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
        rip: cpu.rip,
        rflags: cpu.rflags(),
    }
}

pub fn regs_from_kvm(r: &kvm_regs, cpu: &mut CpuState) {
    cpu.gpr = [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15,
    ];
    cpu.rip = r.rip;
    cpu.set_rflags(r.rflags);
}

/// Segments, descriptor tables and control registers over the state KVM reported (which keeps
/// what we do not model, such as the interrupt bitmap, as it was).
pub fn sregs_to_kvm(cpu: &CpuState, base: &kvm_sregs) -> kvm_sregs {
    let mut s = *base;
    for (seg, k) in sregs_segments(&mut s) {
        *k = segment_to_kvm(&cpu.seg[seg as usize]);
    }
    s.tr = segment_to_kvm(&cpu.tr);
    s.ldt = segment_to_kvm(&cpu.ldtr);
    s.gdt = table_to_kvm(&cpu.gdtr);
    s.idt = table_to_kvm(&cpu.idtr);
    s.cr0 = cpu.cr0;
    s.cr2 = cpu.cr2;
    s.cr3 = cpu.cr3;
    s.cr4 = cpu.cr4;
    s.cr8 = cpu.cr8;
    s.efer = cpu.efer;
    s.apic_base = APIC_BASE_RESET;
    s
}

pub fn sregs_from_kvm(s: &kvm_sregs, cpu: &mut CpuState) {
    let mut s = *s;
    for (seg, k) in sregs_segments(&mut s) {
        cpu.seg[seg as usize] = segment_from_kvm(k);
    }
    cpu.tr = segment_from_kvm(&s.tr);
    cpu.ldtr = segment_from_kvm(&s.ldt);
    cpu.gdtr = table_from_kvm(&s.gdt);
    cpu.idtr = table_from_kvm(&s.idt);
    cpu.cr0 = s.cr0;
    cpu.cr2 = s.cr2;
    cpu.cr3 = s.cr3;
    cpu.cr4 = s.cr4;
    cpu.cr8 = s.cr8;
    cpu.efer = s.efer;
}

/// A register dump in KVM's own terms (the layout of `Vm::dump`).
pub fn dump(why: &str, r: &kvm_regs, s: &kvm_sregs) -> String {
    let mut out = format!("{why}\n");
    let gpr = [
        ("rax", r.rax),
        ("rcx", r.rcx),
        ("rdx", r.rdx),
        ("rbx", r.rbx),
        ("rsp", r.rsp),
        ("rbp", r.rbp),
        ("rsi", r.rsi),
        ("rdi", r.rdi),
        ("r8", r.r8),
        ("r9", r.r9),
        ("r10", r.r10),
        ("r11", r.r11),
        ("r12", r.r12),
        ("r13", r.r13),
        ("r14", r.r14),
        ("r15", r.r15),
    ];
    for (i, (n, v)) in gpr.iter().enumerate() {
        let _ = write!(
            out,
            "{n:>4}={v:016x}{}",
            if i % 4 == 3 { "\n" } else { " " }
        );
    }
    let cpl = s.ss.dpl;
    let bits = if s.cr0 & 1 == 0 {
        16
    } else if s.efer & (1 << 10) != 0 && s.cs.l != 0 {
        64
    } else if s.cs.db != 0 {
        32
    } else {
        16
    };
    let _ = writeln!(
        out,
        " rip={:016x} rflags={:08x} cpl={cpl} mode={bits}-bit",
        r.rip, r.rflags
    );
    let mut s2 = *s;
    for (seg, k) in sregs_segments(&mut s2) {
        let g = segment_from_kvm(k);
        let _ = writeln!(
            out,
            "  {}={:04x} base={:016x} limit={:08x} attrs={:04x}",
            seg.name(),
            g.selector,
            g.base,
            g.limit,
            g.attrs
        );
    }
    let _ = writeln!(
        out,
        " cr0={:08x} cr2={:016x} cr3={:016x} cr4={:08x} efer={:x}\n gdtr={:x}/{:x} idtr={:x}/{:x} tr={:04x} ldtr={:04x}",
        s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit, s.tr.selector, s.ldt.selector
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_through_kvm_layout() {
        let flat_code = Segment {
            attrs: 0xc09b,
            ..Segment::flat(0x10, 0xb, 0, true)
        };
        let k = segment_to_kvm(&flat_code);
        assert_eq!(
            (k.type_, k.s, k.dpl, k.present, k.db, k.g, k.l, k.unusable),
            (0xb, 1, 0, 1, 1, 1, 0, 0)
        );
        assert_eq!(segment_from_kvm(&k), flat_code);
        let long_user = Segment {
            selector: 0x33,
            attrs: 0xa0fb,
            limit: 0xffff_ffff,
            base: 0,
        };
        assert_eq!(segment_from_kvm(&segment_to_kvm(&long_user)), long_user);
        let null = Segment::default();
        assert_eq!(segment_to_kvm(&null).unusable, 1);
    }

    #[test]
    fn registers_round_trip() {
        let mut cpu = CpuState::new();
        for (i, g) in cpu.gpr.iter_mut().enumerate() {
            *g = 0x1111 * (i as u64 + 1);
        }
        cpu.rip = 0x10_0000;
        cpu.set_rflags(0x246);
        cpu.cr0 = 0x8000_0011;
        cpu.cr3 = 0x1000;
        cpu.efer = 0x500;
        cpu.gdtr = TableReg {
            base: 0x800,
            limit: 0x1f,
        };
        cpu.seg[Seg::Cs as usize] = Segment::flat(0x10, 0xb, 0, true);
        let r = regs_to_kvm(&cpu);
        assert_eq!(
            (r.rax, r.rdi, r.r15, r.rflags),
            (0x1111, 0x8888, 0x11110, 0x246)
        );
        let s = sregs_to_kvm(&cpu, &kvm_sregs::default());
        assert_eq!(
            (s.cs.selector, s.gdt.limit, s.apic_base),
            (0x10, 0x1f, APIC_BASE_RESET)
        );
        let mut back = CpuState::new();
        regs_from_kvm(&r, &mut back);
        sregs_from_kvm(&s, &mut back);
        assert_eq!(back.gpr, cpu.gpr);
        assert_eq!(back.rflags(), 0x246);
        assert_eq!(back.seg[Seg::Cs as usize], cpu.seg[Seg::Cs as usize]);
        assert_eq!(
            (back.cr0, back.cr3, back.efer),
            (cpu.cr0, cpu.cr3, cpu.efer)
        );
    }
}
