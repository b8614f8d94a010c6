//! The x87 instruction and operand pointers (FIP/FCS, FDP/FDS, FOP) in the memory images that
//! FNSTENV/FNSAVE/FXSAVE write and FLDENV/FRSTOR/FXRSTOR read. The host CPU records its own
//! addresses (the stub, the bounce buffer) in them, so the engine tracks the guest's values in
//! `CpuState::x87_ptr` and patches every stored image (no host address ever reaches the guest).
//!
//! Layouts: SDM Vol. 1, Figures 8-9 and 8-10 (32-bit protected-mode environment), 8-11 and 8-12
//! (16-bit), Tables 10-2 and 10-3 (FXSAVE non-64-bit and 64-bit formats). Real-mode layouts are
//! not needed: the monitor runs guests in protected and long mode only.

use crate::cpu::X87Pointers;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PtrFormat {
    /// FXSAVE/FXRSTOR without REX.W: 32-bit FIP/FDP with FCS/FDS.
    Fx32,
    /// FXSAVE64/FXRSTOR64: 64-bit FIP/FDP.
    Fx64,
    /// 14-byte environment (16-bit operand size).
    Env16,
    /// 28-byte environment (32-bit operand size).
    Env32,
}

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(d) = buf.get_mut(off..off + bytes.len()) {
        d.copy_from_slice(bytes);
    }
}

fn get(buf: &[u8], off: usize, n: usize) -> u64 {
    let mut v = 0u64;
    for i in 0..n {
        v |= (*buf.get(off + i).unwrap_or(&0) as u64) << (8 * i);
    }
    v
}

/// Write `p` into an image of format `f`.
pub fn store(f: PtrFormat, buf: &mut [u8], p: &X87Pointers) {
    match f {
        PtrFormat::Fx64 => {
            put(buf, 6, &p.fop.to_le_bytes());
            put(buf, 8, &p.fip.to_le_bytes());
            put(buf, 16, &p.fdp.to_le_bytes());
        }
        PtrFormat::Fx32 => {
            put(buf, 6, &p.fop.to_le_bytes());
            put(buf, 8, &(p.fip as u32).to_le_bytes());
            put(buf, 12, &(p.fcs as u32).to_le_bytes());
            put(buf, 16, &(p.fdp as u32).to_le_bytes());
            put(buf, 20, &(p.fds as u32).to_le_bytes());
        }
        PtrFormat::Env32 => {
            put(buf, 12, &(p.fip as u32).to_le_bytes());
            let cs_op = p.fcs as u32 | ((p.fop as u32 & 0x7ff) << 16);
            put(buf, 16, &cs_op.to_le_bytes());
            put(buf, 20, &(p.fdp as u32).to_le_bytes());
            // FDS in bits 15:0, bits 31:16 reserved (stored as written by the host: 0 or FFFF).
            put(buf, 24, &p.fds.to_le_bytes());
        }
        PtrFormat::Env16 => {
            put(buf, 6, &(p.fip as u16).to_le_bytes());
            put(buf, 8, &p.fcs.to_le_bytes());
            put(buf, 10, &(p.fdp as u16).to_le_bytes());
            put(buf, 12, &p.fds.to_le_bytes());
        }
    }
}

/// Read the pointers from an image of format `f`.
pub fn load(f: PtrFormat, buf: &[u8]) -> X87Pointers {
    match f {
        PtrFormat::Fx64 => X87Pointers {
            fop: get(buf, 6, 2) as u16 & 0x7ff,
            fip: get(buf, 8, 8),
            fdp: get(buf, 16, 8),
            fcs: 0,
            fds: 0,
        },
        PtrFormat::Fx32 => X87Pointers {
            fop: get(buf, 6, 2) as u16 & 0x7ff,
            fip: get(buf, 8, 4),
            fcs: get(buf, 12, 2) as u16,
            fdp: get(buf, 16, 4),
            fds: get(buf, 20, 2) as u16,
        },
        PtrFormat::Env32 => X87Pointers {
            fip: get(buf, 12, 4),
            fcs: get(buf, 16, 2) as u16,
            fop: get(buf, 18, 2) as u16 & 0x7ff,
            fdp: get(buf, 20, 4),
            fds: get(buf, 24, 2) as u16,
        },
        PtrFormat::Env16 => X87Pointers {
            fip: get(buf, 6, 2),
            fcs: get(buf, 8, 2) as u16,
            fdp: get(buf, 10, 2),
            fds: get(buf, 12, 2) as u16,
            fop: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_format() {
        let p = X87Pointers {
            fip: 0x1234_5678,
            fdp: 0x9abc_def0,
            fcs: 0x23,
            fds: 0x2b,
            fop: 0x5e8,
        };
        for f in [PtrFormat::Fx32, PtrFormat::Fx64, PtrFormat::Env32] {
            let mut b = [0u8; 512];
            store(f, &mut b, &p);
            let q = load(f, &b);
            assert_eq!(q.fip, p.fip, "{f:?}");
            assert_eq!(q.fdp, p.fdp, "{f:?}");
            assert_eq!(q.fop, p.fop, "{f:?}");
        }
        let mut b = [0u8; 14];
        store(PtrFormat::Env16, &mut b, &p);
        let q = load(PtrFormat::Env16, &b);
        assert_eq!((q.fip, q.fdp, q.fcs, q.fds), (0x5678, 0xdef0, 0x23, 0x2b));
    }
}
