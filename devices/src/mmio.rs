//! Memory-mapped device registers.
//!
//! A load or store to guest-physical memory that no RAM backs is an MMIO
//! access: it carries an address, a width of 1, 2, 4 or 8 bytes and, for a
//! store, the little-endian bytes written. The platform finds the device
//! whose window contains the address and hands it the access with the
//! offset from the window's base, the same split rust-vmm's `vm-device`
//! uses (`BusDevice::read(base, offset, data)`).
//!
//! Devices here have 32-bit registers (the local APIC and the IOAPIC). The
//! helpers [`read_reg32`] and [`merge_reg32`] place the bytes of an access of
//! any width and alignment onto such a register, so every device answers a
//! misaligned or partial access the same predictable way.

/// A device reachable through memory-mapped I/O.
///
/// `offset` is relative to the base of the device's window and `data` is
/// the access, little-endian, normally 1, 2, 4 or 8 bytes long. Both come
/// straight from the guest: implementations must accept any offset (also
/// past the window or near `u64::MAX`) and any length, including zero,
/// without panicking.
pub trait MmioDevice: Send {
    /// Services a load: fill `data` with the bytes the guest reads.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Services a store of `data`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Byte `i` of an access at `offset`, as an offset into the 32-bit register
/// at `reg`, if it falls inside that register.
fn byte_in_reg(reg: u64, offset: u64, i: usize) -> Option<usize> {
    let addr = offset.checked_add(u64::try_from(i).ok()?)?;
    let rel = addr.checked_sub(reg)?;
    (rel < 4).then_some(rel as usize)
}

/// Whether an access of `len` bytes at `offset` touches any byte of the
/// 32-bit register at `reg`.
pub fn touches_reg32(reg: u64, offset: u64, len: usize) -> bool {
    (0..len).any(|i| byte_in_reg(reg, offset, i).is_some())
}

/// Copies into `data` (a load at `offset`) the bytes of `value`, the 32-bit
/// register at `reg`, that the load covers. Bytes of `data` outside the
/// register are left alone. Returns whether any byte was copied.
pub fn read_reg32(reg: u64, value: u32, offset: u64, data: &mut [u8]) -> bool {
    let bytes = value.to_le_bytes();
    let mut hit = false;
    for (i, b) in data.iter_mut().enumerate() {
        if let Some(j) = byte_in_reg(reg, offset, i) {
            *b = bytes[j];
            hit = true;
        }
    }
    hit
}

/// The value of the 32-bit register at `reg` after a store of `data` at
/// `offset` replaced the bytes it covers in `current`; `None` when the store
/// does not touch the register.
pub fn merge_reg32(reg: u64, current: u32, offset: u64, data: &[u8]) -> Option<u32> {
    let mut bytes = current.to_le_bytes();
    let mut hit = false;
    for (i, &b) in data.iter().enumerate() {
        if let Some(j) = byte_in_reg(reg, offset, i) {
            bytes[j] = b;
            hit = true;
        }
    }
    hit.then(|| u32::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_places_register_bytes_at_any_alignment() {
        let mut buf = [0xaa; 8];
        assert!(read_reg32(0x10, 0x4433_2211, 0x10, &mut buf));
        assert_eq!(buf, [0x11, 0x22, 0x33, 0x44, 0xaa, 0xaa, 0xaa, 0xaa]);
        let mut buf = [0xaa; 2];
        assert!(read_reg32(0x10, 0x4433_2211, 0x13, &mut buf));
        assert_eq!(buf, [0x44, 0xaa]);
        let mut buf = [0xaa; 4];
        assert!(read_reg32(0x10, 0x4433_2211, 0x0e, &mut buf));
        assert_eq!(buf, [0xaa, 0xaa, 0x11, 0x22]);
        let mut buf = [0xaa; 4];
        assert!(!read_reg32(0x10, 0x4433_2211, 0x14, &mut buf));
        assert!(!read_reg32(0, 1, u64::MAX, &mut buf));
        assert_eq!(buf, [0xaa; 4]);
    }

    #[test]
    fn merge_replaces_only_covered_bytes() {
        assert_eq!(
            merge_reg32(0x10, 0x4433_2211, 0x11, &[0xbb, 0xcc]),
            Some(0x44cc_bb11)
        );
        assert_eq!(
            merge_reg32(0x10, 0x4433_2211, 0x0c, &[1, 2, 3, 4, 5, 6, 7, 8]),
            Some(0x0807_0605)
        );
        assert_eq!(merge_reg32(0x10, 0x4433_2211, 0x14, &[1]), None);
        assert_eq!(merge_reg32(0x10, 0x4433_2211, 0x10, &[]), None);
        assert_eq!(merge_reg32(0, 0, u64::MAX - 1, &[1, 2, 3, 4]), None);
        assert!(touches_reg32(0x10, 0x0d, 4));
        assert!(!touches_reg32(0x10, 0x0c, 4));
    }
}
