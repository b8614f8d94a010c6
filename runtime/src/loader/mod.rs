//! Boot loaders: put a guest image into RAM and the vCPU into the state its boot protocol
//! promises.

pub mod linux;
pub mod multiboot;

use crate::memory::GuestRam;
use btvisor_translator::cpu::{CpuState, Seg, Segment, TableReg};

/// Boot segment state shared by the loaders: a GDT of `[null, null, code, data]` written at
/// `gdt_addr` (so a kernel that reloads segment registers before its own LGDT still finds
/// them), CS = 0x10 and every data segment register = 0x18 loaded with the hidden parts those
/// descriptors give (`code_attrs`, `data_attrs`: the descriptors' attribute bits), and TR/LDTR
/// in their reset state (SDM Vol. 3, 9.1.1).
pub(crate) fn load_boot_segments(
    ram: &GuestRam,
    cpu: &mut CpuState,
    gdt_addr: u64,
    gdt: &[u64; 4],
    code_attrs: u16,
    data_attrs: u16,
) {
    let bytes: Vec<u8> = gdt.iter().flat_map(|d| d.to_le_bytes()).collect();
    ram.write(gdt_addr, &bytes);
    cpu.gdtr = TableReg {
        base: gdt_addr,
        limit: (gdt.len() * 8 - 1) as u16,
    };
    cpu.seg[Seg::Cs as usize] = Segment {
        attrs: code_attrs,
        ..Segment::flat(0x10, 0xb, 0, true)
    };
    let data = Segment {
        attrs: data_attrs,
        ..Segment::flat(0x18, 0x3, 0, true)
    };
    for s in [Seg::Ds, Seg::Es, Seg::Fs, Seg::Gs, Seg::Ss] {
        cpu.seg[s as usize] = data;
    }
    cpu.tr = Segment {
        selector: 0,
        attrs: 0x8b,
        limit: 0xffff,
        base: 0,
    };
    cpu.ldtr = Segment {
        selector: 0,
        attrs: 0x82,
        limit: 0xffff,
        base: 0,
    };
}
