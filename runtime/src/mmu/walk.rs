//! The page walker: linear to physical translation for every x86 paging mode (SDM Vol. 3,
//! chapter 4): none, 32-bit (4 KiB and 4 MiB pages), PAE (4 KiB, 2 MiB) and 4-level (4 KiB,
//! 2 MiB, 1 GiB), with U/S, R/W, NX, CR0.WP and CR4.SMEP checks and Accessed/Dirty updates.

use crate::memory::GuestRam;
use btvisor_translator::cpu::{cr, CpuState};
use btvisor_translator::exception::{pf, Exception};

/// Physical-address width this virtual CPU reports (CPUID 0x80000008).
pub const MAXPHYADDR: u32 = 40;
// The local APIC checks IA32_APIC_BASE against the same width.
const _: () = assert!(MAXPHYADDR == btvisor_devices::pc::APIC_MAXPHYADDR);

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AccessKind {
    Read,
    Write,
    Fetch,
}

/// The checked access.
#[derive(Copy, Clone, Debug)]
pub struct Access {
    pub kind: AccessKind,
    /// A CPL-3 access (implicit supervisor accesses such as descriptor-table reads pass false).
    pub user: bool,
}

/// A successful translation.
#[derive(Copy, Clone, Debug)]
pub struct Translation {
    pub phys: u64,
    /// Writes are allowed for this privilege class and the leaf is already dirty: a TLB write
    /// entry may be filled.
    pub write_ok: bool,
}

const P: u64 = 1;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;

fn phys_mask() -> u64 {
    ((1u64 << MAXPHYADDR) - 1) & !0xfff
}

pub fn translate(
    cpu: &CpuState,
    ram: &GuestRam,
    lin: u64,
    acc: Access,
) -> Result<Translation, Exception> {
    if cpu.cr0 & cr::CR0_PG == 0 {
        return Ok(Translation {
            phys: lin & 0xffff_ffff,
            write_ok: true,
        });
    }
    let write = acc.kind == AccessKind::Write;
    let nxe = cpu.efer & cr::EFER_NXE != 0;
    let fault = |present: bool, rsvd: bool| {
        let mut code = 0;
        if present {
            code |= pf::P;
        }
        if write {
            code |= pf::W;
        }
        if acc.user {
            code |= pf::U;
        }
        if rsvd {
            code |= pf::RSVD | pf::P;
        }
        if acc.kind == AccessKind::Fetch && (nxe || cpu.cr4 & cr::CR4_SMEP != 0) {
            code |= pf::I;
        }
        Exception::pf(lin, code)
    };

    // Each level: (entry address, entry value). Collected so A/D bits are set only after the
    // whole walk succeeded.
    let mut path: [(u64, u64, bool); 4] = [(0, 0, false); 4];
    let mut depth = 0;
    let (leaf_base, offset_mask);
    if cpu.cr4 & cr::CR4_PAE == 0 {
        // 32-bit paging: 4-byte entries, 10+10+12 bits.
        let lin = lin & 0xffff_ffff;
        let pde_addr = (cpu.cr3 & 0xffff_f000) + ((lin >> 22) << 2);
        let pde = ram.read_u32(pde_addr).unwrap_or(0) as u64;
        if pde & P == 0 {
            return Err(fault(false, false));
        }
        path[0] = (pde_addr, pde, false);
        depth = 1;
        if pde & PS != 0 && cpu.cr4 & cr::CR4_PSE != 0 {
            // 4 MiB page; PSE-36 high bits (13..20) give physical bits 32..39.
            leaf_base = (pde & 0xffc0_0000) | ((pde >> 13) & 0xff) << 32;
            offset_mask = 0x3f_ffff;
        } else {
            let pte_addr = (pde & 0xffff_f000) + (((lin >> 12) & 0x3ff) << 2);
            let pte = ram.read_u32(pte_addr).unwrap_or(0) as u64;
            if pte & P == 0 {
                return Err(fault(false, false));
            }
            path[1] = (pte_addr, pte, false);
            depth = 2;
            leaf_base = pte & 0xffff_f000;
            offset_mask = 0xfff;
        }
    } else {
        // PAE and 4-level paging: 8-byte entries.
        let rsvd_nx = if nxe { 0 } else { NX };
        let rsvd_hi = !((1u64 << MAXPHYADDR) - 1) & !NX & ((1u64 << 52) - 1);
        let (mut table, first_shift) = if cpu.efer & cr::EFER_LMA != 0 {
            (cpu.cr3 & phys_mask(), 39)
        } else {
            // PAE: the PDPTE is read at walk time rather than cached at CR3 load (a difference
            // only visible to guests that modify PDPTEs without reloading CR3).
            let pdpte_addr = (cpu.cr3 & 0xffff_ffe0) + (((lin >> 30) & 3) << 3);
            let pdpte = ram.read_u64(pdpte_addr).unwrap_or(0);
            if pdpte & P == 0 {
                return Err(fault(false, false));
            }
            if pdpte & (rsvd_hi | 0x1e6) != 0 {
                return Err(fault(true, true));
            }
            (pdpte & phys_mask(), 21)
        };
        let mut shift = first_shift;
        loop {
            let idx = (lin >> shift) & 0x1ff;
            let addr = table + idx * 8;
            let e = ram.read_u64(addr).unwrap_or(0);
            if e & P == 0 {
                return Err(fault(false, false));
            }
            if e & (rsvd_hi | rsvd_nx) != 0 || (shift == 39 && e & PS != 0) {
                return Err(fault(true, true));
            }
            path[depth] = (addr, e, true);
            depth += 1;
            if shift == 12 || (e & PS != 0 && (shift == 21 || shift == 30)) {
                let size_mask = (1u64 << shift) - 1;
                if shift > 12 && e & (size_mask & !0x1fff) != 0 {
                    // Reserved bits in a large-page entry's address field (bit 12 is PAT).
                    return Err(fault(true, true));
                }
                leaf_base = e & phys_mask() & !size_mask;
                offset_mask = size_mask;
                break;
            }
            table = e & phys_mask();
            shift -= 9;
        }
    }

    // Combine permissions across levels (SDM Vol. 3, 4.6).
    let entries = &path[..depth];
    let all_rw = entries.iter().all(|&(_, e, _)| e & RW != 0);
    let all_us = entries.iter().all(|&(_, e, _)| e & US != 0);
    let any_nx = nxe && entries.iter().any(|&(_, e, wide)| wide && e & NX != 0);
    let wp = cpu.cr0 & cr::CR0_WP != 0;
    let allowed = match acc.kind {
        AccessKind::Read => !acc.user || all_us,
        AccessKind::Write => {
            if acc.user {
                all_us && all_rw
            } else {
                all_rw || !wp
            }
        }
        AccessKind::Fetch => {
            !any_nx
                && if acc.user {
                    all_us
                } else {
                    !(all_us && cpu.cr4 & cr::CR4_SMEP != 0)
                }
        }
    };
    if !allowed {
        return Err(fault(true, false));
    }
    // Set Accessed on every level and Dirty on the leaf for writes.
    let leaf = entries[depth - 1].1;
    for (i, &(addr, e, wide)) in entries.iter().enumerate() {
        let mut ne = e | A;
        if i == depth - 1 && write {
            ne |= D;
        }
        if ne != e {
            if wide {
                ram.write_u64(addr, ne);
            } else {
                ram.write_u32(addr, ne as u32);
            }
        }
    }
    let dirty = leaf & D != 0 || write;
    let can_write = if acc.user {
        all_us && all_rw
    } else {
        all_rw || !wp
    };
    Ok(Translation {
        phys: leaf_base | (lin & offset_mask),
        write_ok: dirty && can_write,
    })
}
