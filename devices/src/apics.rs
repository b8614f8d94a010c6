//! The APIC pair of a uniprocessor PC: the local APIC and the I/O APIC behind one lock, with
//! the glue between them that real hardware does on the APIC bus: a level-triggered EOI at the
//! local APIC clears the I/O APIC entry's remote IRR, and I/O APIC messages are delivered to the
//! local APIC as soon as they are raised.
//!
//! The pair is shared by the platform's interrupt routing ([`crate::PcDevices`]) and the CPU's
//! physical-memory slow path (MMIO of the two register pages) and MSR callouts (IA32_APIC_BASE,
//! x2APIC), hence the [`PhysMmio`] view over guest-physical addresses.

use std::sync::Arc;

use crate::clock::Clock;
use crate::ioapic::{IoApic, IOAPIC_DEFAULT_BASE, IOAPIC_MMIO_SIZE};
use crate::lapic::{ApicFault, LocalApic, APIC_MMIO_SIZE};
use crate::mmio::MmioDevice;

/// The I/O APIC's ID, as the MADT describes it (the local APIC has ID 0).
pub const IOAPIC_ID: u8 = 1;

/// MMIO over guest-physical addresses: `true` if a device decoded the access.
pub trait PhysMmio: Send {
    /// A load of `data.len()` bytes at `phys`.
    fn read(&mut self, phys: u64, data: &mut [u8]) -> bool;
    /// A store of `data` at `phys`.
    fn write(&mut self, phys: u64, data: &[u8]) -> bool;
}

/// The local APIC and the I/O APIC.
#[derive(Debug)]
pub struct Apics {
    pub lapic: LocalApic,
    pub ioapic: IoApic,
}

impl Apics {
    /// Both at their default bases; `maxphyaddr` bounds IA32_APIC_BASE.
    pub fn new(clock: Arc<dyn Clock>, maxphyaddr: u32) -> Self {
        Apics {
            lapic: LocalApic::new(clock, maxphyaddr),
            ioapic: IoApic::new(IOAPIC_ID),
        }
    }

    /// After anything that may have changed the local APIC (an EOI, a TPR write, an enable):
    /// forward level-triggered EOIs to the I/O APIC, then deliver what it has.
    pub fn sync(&mut self) {
        while let Some(v) = self.lapic.take_level_eoi() {
            self.ioapic.end_of_interrupt(v);
        }
        self.ioapic.deliver(&mut self.lapic);
    }

    /// An ISA interrupt edge on I/O APIC pin `pin`.
    pub fn pulse(&mut self, pin: u8) {
        self.ioapic.pulse_irq(pin);
        self.ioapic.deliver(&mut self.lapic);
    }

    /// RDMSR of an x2APIC register.
    pub fn msr_read(&mut self, msr: u32) -> Result<u64, ApicFault> {
        self.lapic.msr_read(msr)
    }

    /// WRMSR of an x2APIC register.
    pub fn msr_write(&mut self, msr: u32, value: u64) -> Result<(), ApicFault> {
        let r = self.lapic.msr_write(msr, value);
        self.sync();
        r
    }

    /// WRMSR of IA32_APIC_BASE.
    pub fn set_base_msr(&mut self, value: u64) -> Result<(), ApicFault> {
        let r = self.lapic.set_base_msr(value);
        self.sync();
        r
    }

    /// MOV to CR8: the task priority (SDM Vol. 3, 10.8.6.1).
    pub fn set_cr8(&mut self, value: u64) {
        self.lapic.set_cr8(value);
        self.sync();
    }

    fn lapic_offset(&self, phys: u64, len: usize) -> Option<u64> {
        let base = self.lapic.mmio_base();
        (self.lapic.mmio_enabled()
            && phys >= base
            && phys.saturating_add(len as u64) <= base + APIC_MMIO_SIZE)
            .then(|| phys - base)
    }

    fn ioapic_offset(phys: u64, len: usize) -> Option<u64> {
        (phys >= IOAPIC_DEFAULT_BASE
            && phys.saturating_add(len as u64) <= IOAPIC_DEFAULT_BASE + IOAPIC_MMIO_SIZE)
            .then(|| phys - IOAPIC_DEFAULT_BASE)
    }
}

impl PhysMmio for Apics {
    fn read(&mut self, phys: u64, data: &mut [u8]) -> bool {
        if let Some(off) = self.lapic_offset(phys, data.len()) {
            MmioDevice::read(&mut self.lapic, off, data);
            true
        } else if let Some(off) = Self::ioapic_offset(phys, data.len()) {
            MmioDevice::read(&mut self.ioapic, off, data);
            true
        } else {
            false
        }
    }

    fn write(&mut self, phys: u64, data: &[u8]) -> bool {
        if let Some(off) = self.lapic_offset(phys, data.len()) {
            MmioDevice::write(&mut self.lapic, off, data);
        } else if let Some(off) = Self::ioapic_offset(phys, data.len()) {
            MmioDevice::write(&mut self.ioapic, off, data);
        } else {
            return false;
        }
        self.sync();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::lapic::APIC_DEFAULT_BASE;
    use std::time::Instant;

    fn apics() -> Apics {
        Apics::new(Arc::new(ManualClock::new(Instant::now())), 40)
    }

    fn w32(a: &mut Apics, phys: u64, v: u32) {
        assert!(a.write(phys, &v.to_le_bytes()));
    }

    #[test]
    fn level_interrupt_round_trip_through_mmio() {
        let mut a = apics();
        w32(&mut a, APIC_DEFAULT_BASE + 0xf0, 0x1ff); // SVR: enabled
                                                      // I/O APIC pin 9: vector 0x39, level, active high, unmasked.
        w32(&mut a, IOAPIC_DEFAULT_BASE, 0x10 + 2 * 9);
        w32(&mut a, IOAPIC_DEFAULT_BASE + 0x10, 0x39 | (1 << 15));
        w32(&mut a, IOAPIC_DEFAULT_BASE, 0x10 + 2 * 9 + 1);
        w32(&mut a, IOAPIC_DEFAULT_BASE + 0x10, 0);
        a.ioapic.set_irq(9, true);
        a.sync();
        assert_eq!(a.lapic.pending_vector(), Some(0x39));
        assert_eq!(a.lapic.acknowledge(), Some(0x39));
        // Still asserted: after EOI the entry's remote IRR clears and it is delivered again.
        a.ioapic.set_irq(9, true);
        w32(&mut a, APIC_DEFAULT_BASE + 0xb0, 0);
        assert_eq!(a.lapic.pending_vector(), Some(0x39));
        a.ioapic.set_irq(9, false);
        assert_eq!(a.lapic.acknowledge(), Some(0x39));
        w32(&mut a, APIC_DEFAULT_BASE + 0xb0, 0);
        assert_eq!(a.lapic.pending_vector(), None);
    }

    #[test]
    fn unclaimed_addresses_are_not_decoded() {
        let mut a = apics();
        let mut b = [0u8; 4];
        assert!(!a.read(0xfed0_0000, &mut b));
        assert!(!a.write(APIC_DEFAULT_BASE - 4, &[0; 4]));
        assert!(a.read(APIC_DEFAULT_BASE + 0x30, &mut b)); // version
        assert_eq!(u32::from_le_bytes(b) & 0xff, 0x14);
        // Straddling the end of the page: not decoded.
        assert!(!a.read(APIC_DEFAULT_BASE + 0xffe, &mut b));
    }
}
