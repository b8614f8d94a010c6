//! The I/O APIC: 24 interrupt input pins routed to the local APIC.
//!
//! References are to the Intel 82093AA I/O APIC datasheet (order no.
//! 290566): §3.0 "Register Description" (IOREGSEL, IOWIN, IOAPICID,
//! IOAPICVER, IOAPICARB, IOREDTBL) and §2.3-2.4 on edge- and level-triggered
//! delivery and the remote IRR. The ICH datasheets describe the same unit
//! integrated in the south bridge. This model reports version 0x11 (the
//! 82093AA's), so there is no EOI register: software clears a stuck remote
//! IRR by switching the entry to edge-triggered and back, which Linux does
//! for version 0x11 parts (`__eoi_ioapic_pin`) and which is modelled.
//!
//! # Delivery
//!
//! Pin events and register writes queue messages; the platform hands them
//! to the local APIC with [`IoApic::deliver`] (or [`IoApic::take_messages`])
//! after every call that can produce one: [`IoApic::set_irq`],
//! [`IoApic::pulse_irq`], [`IoApic::end_of_interrupt`] and MMIO writes. With
//! a single CPU every destination (physical or logical) reaches APIC 0, so
//! the destination field is stored but not decoded. Fixed and
//! lowest-priority entries deliver; SMI, NMI, INIT and ExtINT entries are
//! traced at debug level and ignored.
//!
//! # Pins
//!
//! [`IoApic::set_irq`] takes the *logical* state of the pin (`true` =
//! interrupt requested), whatever the polarity bit says, as QEMU and KVM do:
//! device models speak in requests, not voltages, and the polarity the guest
//! programs only has to match the firmware tables. The polarity bit is stored
//! and reads back.

use tracing::{debug, trace};

use crate::lapic::LocalApic;
use crate::mmio::{merge_reg32, read_reg32, MmioDevice};

/// Conventional physical address of the first IOAPIC.
pub const IOAPIC_DEFAULT_BASE: u64 = 0xfec0_0000;
/// Size of the MMIO window the platform should map (the registers use the
/// first 0x14 bytes; the rest reads 0).
pub const IOAPIC_MMIO_SIZE: u64 = 0x1000;
/// Number of interrupt input pins (redirection table entries).
pub const IOAPIC_NUM_PINS: u8 = 24;
/// IOAPICVER: version 0x11, maximum redirection entry 23 (datasheet §3.2.2).
pub const IOAPIC_VERSION: u32 = 0x0017_0011;
/// Offset of the register select (index) register.
pub const IOREGSEL: u64 = 0x00;
/// Offset of the data window onto the selected register.
pub const IOWIN: u64 = 0x10;

const REG_ID: u8 = 0x00;
const REG_VERSION: u8 = 0x01;
const REG_ARBITRATION: u8 = 0x02;
const REG_REDTBL: u8 = 0x10;
const REG_REDTBL_LAST: u8 = REG_REDTBL + 2 * IOAPIC_NUM_PINS - 1;

// Redirection table entry bits (datasheet §3.2.4, IOREDTBL).
const RTE_DELIVERY_MODE_SHIFT: u32 = 8;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_LEVEL: u64 = 1 << 15;
const RTE_MASKED: u64 = 1 << 16;
/// Low-dword bits software writes: vector, delivery mode, destination mode,
/// polarity, trigger mode, mask. Delivery status (12) and remote IRR (14)
/// are read-only; 17-31 are reserved.
const RTE_WRITABLE_LOW: u64 = 0x0001_afff;
/// High-dword bits software writes: the destination, bits 63:56.
const RTE_WRITABLE_HIGH: u64 = 0xff00_0000_0000_0000;
/// IOAPICID bits 27:24 are the ID; the rest is reserved.
const ID_MASK: u32 = 0x0f00_0000;

const DM_FIXED: u64 = 0;
const DM_LOWEST: u64 = 1;

/// An interrupt message for the local APIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApicMessage {
    /// The pin that sent it.
    pub pin: u8,
    /// The vector to raise.
    pub vector: u8,
    /// The entry is level-triggered: the local APIC sets the TMR bit and
    /// reports the EOI back.
    pub level_triggered: bool,
}

/// One 82093AA-style I/O APIC.
#[derive(Debug, Clone)]
pub struct IoApic {
    /// IOAPICID bits 27:24.
    id: u8,
    /// IOREGSEL bits 7:0.
    ioregsel: u8,
    redirection: [u64; IOAPIC_NUM_PINS as usize],
    /// Logical state of each input pin, bit `pin`.
    lines: u32,
    /// Messages sent but not yet handed to the local APIC.
    queue: Vec<IoApicMessage>,
    delivered: u64,
}

impl IoApic {
    /// An I/O APIC in reset state with APIC ID `id` (bits 3:0 kept; it must
    /// match the MADT): every redirection entry masked, edge-triggered, all
    /// fields 0 (datasheet §3.2.4).
    pub fn new(id: u8) -> Self {
        Self {
            id: id & 0xf,
            ioregsel: 0,
            redirection: [RTE_MASKED; IOAPIC_NUM_PINS as usize],
            lines: 0,
            queue: Vec::new(),
            delivered: 0,
        }
    }

    /// The redirection table entry of `pin` (for tests and diagnostics).
    pub fn redirection_entry(&self, pin: u8) -> Option<u64> {
        self.redirection.get(usize::from(pin)).copied()
    }

    /// How many messages [`IoApic::deliver`] has had accepted.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Drives input `pin` (0-23) to logical `level`. Edge-triggered entries
    /// send a message on a rising edge if unmasked; a masked edge is lost.
    /// Level-triggered entries send while the pin is asserted, unmasked and
    /// the remote IRR is clear, then set the remote IRR until the EOI. Pins
    /// past 23 are ignored.
    pub fn set_irq(&mut self, pin: u8, level: bool) {
        if pin >= IOAPIC_NUM_PINS {
            debug!(pin, "IOAPIC: pin out of range ignored");
            return;
        }
        let bit = 1u32 << pin;
        let rising = level && self.lines & bit == 0;
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
        let level_triggered = self.redirection[usize::from(pin)] & RTE_LEVEL != 0;
        if (level_triggered && level) || rising {
            self.send(pin);
        }
    }

    /// An edge on `pin`: raise then lower it. On a level-triggered entry
    /// this still delivers once (and leaves the remote IRR set until EOI).
    pub fn pulse_irq(&mut self, pin: u8) {
        self.set_irq(pin, true);
        self.set_irq(pin, false);
    }

    /// The EOI broadcast of the local APIC for `vector` (the local APIC's
    /// [`LocalApic::take_level_eoi`]): clears the remote IRR of every
    /// level-triggered entry with that vector, and sends again for those
    /// whose pin is still asserted (datasheet §3.2.4, Remote IRR).
    pub fn end_of_interrupt(&mut self, vector: u8) {
        for pin in 0..IOAPIC_NUM_PINS {
            let rte = &mut self.redirection[usize::from(pin)];
            if *rte & RTE_LEVEL != 0 && *rte & RTE_REMOTE_IRR != 0 && *rte as u8 == vector {
                *rte &= !RTE_REMOTE_IRR;
                if self.lines & (1 << pin) != 0 {
                    self.send(pin);
                }
            }
        }
    }

    /// Queues the message of `pin`'s entry if the entry lets it through.
    fn send(&mut self, pin: u8) {
        let rte = &mut self.redirection[usize::from(pin)];
        if *rte & RTE_MASKED != 0 {
            return;
        }
        let level_triggered = *rte & RTE_LEVEL != 0;
        if level_triggered && *rte & RTE_REMOTE_IRR != 0 {
            return;
        }
        let mode = (*rte >> RTE_DELIVERY_MODE_SHIFT) & 7;
        if mode != DM_FIXED && mode != DM_LOWEST {
            debug!(
                pin,
                mode, "IOAPIC: delivery mode other than fixed/lowest-priority ignored"
            );
            return;
        }
        if level_triggered {
            *rte |= RTE_REMOTE_IRR;
        }
        let msg = IoApicMessage {
            pin,
            vector: *rte as u8,
            level_triggered,
        };
        trace!(?msg, "IOAPIC: message");
        // An identical message still queued is the same interrupt request.
        if !self.queue.contains(&msg) {
            self.queue.push(msg);
        }
    }

    /// The messages sent since the last call, oldest first. A caller that
    /// delivers them itself should prefer [`IoApic::deliver`], which also
    /// handles a local APIC refusing a level-triggered message.
    pub fn take_messages(&mut self) -> std::vec::IntoIter<IoApicMessage> {
        std::mem::take(&mut self.queue).into_iter()
    }

    /// Hands the queued messages to `lapic`. A level-triggered message the
    /// local APIC refuses (disabled, or an illegal vector) will never be
    /// EOI'd, so its remote IRR is cleared again rather than blocking the
    /// pin for good.
    pub fn deliver(&mut self, lapic: &mut LocalApic) {
        for msg in self.take_messages() {
            if lapic.accept_interrupt(msg.vector, msg.level_triggered) {
                self.delivered += 1;
            } else if msg.level_triggered {
                if let Some(rte) = self.redirection.get_mut(usize::from(msg.pin)) {
                    if *rte as u8 == msg.vector {
                        *rte &= !RTE_REMOTE_IRR;
                    }
                }
            }
        }
    }

    /// Reads the register IOREGSEL selects. Unimplemented registers read 0.
    fn read_register(&self, index: u8) -> u32 {
        match index {
            REG_ID => u32::from(self.id) << 24,
            REG_VERSION => IOAPIC_VERSION,
            // "This register is loaded when the IOAPIC ID Register is
            // written" (datasheet §3.2.3).
            REG_ARBITRATION => u32::from(self.id) << 24,
            REG_REDTBL..=REG_REDTBL_LAST => {
                let rte = self.redirection[usize::from((index - REG_REDTBL) / 2)];
                if index & 1 == 0 {
                    rte as u32
                } else {
                    (rte >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    fn write_register(&mut self, index: u8, value: u32) {
        match index {
            REG_ID => self.id = ((value & ID_MASK) >> 24) as u8,
            REG_VERSION | REG_ARBITRATION => {}
            REG_REDTBL..=REG_REDTBL_LAST => {
                let pin = (index - REG_REDTBL) / 2;
                let rte = &mut self.redirection[usize::from(pin)];
                let value = u64::from(value);
                if index & 1 == 0 {
                    *rte = (*rte & !RTE_WRITABLE_LOW) | (value & RTE_WRITABLE_LOW);
                } else {
                    *rte = (*rte & !RTE_WRITABLE_HIGH) | ((value << 32) & RTE_WRITABLE_HIGH);
                }
                if *rte & RTE_LEVEL == 0 {
                    // The remote IRR is undefined for edge-triggered entries;
                    // Linux relies on the switch to edge clearing it.
                    *rte &= !RTE_REMOTE_IRR;
                } else if self.lines & (1 << pin) != 0 {
                    // A masked or newly level-triggered entry whose pin is
                    // asserted delivers once it is let through.
                    self.send(pin);
                }
            }
            _ => debug!(
                index,
                value, "IOAPIC: write to unimplemented register ignored"
            ),
        }
    }
}

/// IOREGSEL at 0x00 and IOWIN at 0x10, both 32 bits. The datasheet requires
/// 32-bit accesses; narrower or misaligned ones here read or replace the
/// bytes they cover (a partial IOWIN write merges into the selected
/// register's current value). Every other offset reads 0 and ignores writes.
impl MmioDevice for IoApic {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        read_reg32(IOREGSEL, u32::from(self.ioregsel), offset, data);
        read_reg32(IOWIN, self.read_register(self.ioregsel), offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(v) = merge_reg32(IOREGSEL, u32::from(self.ioregsel), offset, data) {
            self.ioregsel = v as u8;
        }
        let index = self.ioregsel;
        if let Some(v) = merge_reg32(IOWIN, self.read_register(index), offset, data) {
            self.write_register(index, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;
    use std::time::Instant;

    fn read_reg(io: &mut IoApic, index: u32) -> u32 {
        io.write(IOREGSEL, &index.to_le_bytes());
        let mut buf = [0u8; 4];
        io.read(IOWIN, &mut buf);
        u32::from_le_bytes(buf)
    }

    fn write_reg(io: &mut IoApic, index: u32, value: u32) {
        io.write(IOREGSEL, &index.to_le_bytes());
        io.write(IOWIN, &value.to_le_bytes());
    }

    /// Linux's `__ioapic_write_entry`: high dword, then low dword.
    fn write_entry(io: &mut IoApic, pin: u8, entry: u64) {
        let index = 0x10 + 2 * u32::from(pin);
        write_reg(io, index + 1, (entry >> 32) as u32);
        write_reg(io, index, entry as u32);
    }

    fn messages(io: &mut IoApic) -> Vec<(u8, bool)> {
        io.take_messages()
            .map(|m| (m.vector, m.level_triggered))
            .collect()
    }

    fn lapic() -> LocalApic {
        let mut a = LocalApic::new(Arc::new(ManualClock::new(Instant::now())), 40);
        a.write(0xf0, &0x1ffu32.to_le_bytes());
        a
    }

    fn lapic_eoi(a: &mut LocalApic) {
        a.write(0xb0, &0u32.to_le_bytes());
    }

    #[test]
    fn identification_registers_and_reset_state() {
        let mut io = IoApic::new(1);
        assert_eq!(read_reg(&mut io, 0), 0x0100_0000);
        assert_eq!(read_reg(&mut io, 1), 0x0017_0011);
        assert_eq!(read_reg(&mut io, 2), 0x0100_0000);
        for pin in 0..24 {
            assert_eq!(read_reg(&mut io, 0x10 + 2 * pin), 0x0001_0000);
            assert_eq!(read_reg(&mut io, 0x11 + 2 * pin), 0);
        }
        assert_eq!(read_reg(&mut io, 0x40), 0);
        // IOREGSEL reads back its 8 bits.
        io.write(IOREGSEL, &0x1234_5678u32.to_le_bytes());
        let mut buf = [0u8; 4];
        io.read(IOREGSEL, &mut buf);
        assert_eq!(u32::from_le_bytes(buf), 0x78);
        // ID is writable (bits 27:24), version and arbitration follow/ignore.
        write_reg(&mut io, 0, 0xff00_0000);
        assert_eq!(read_reg(&mut io, 0), 0x0f00_0000);
        assert_eq!(read_reg(&mut io, 2), 0x0f00_0000);
        write_reg(&mut io, 1, 0);
        assert_eq!(read_reg(&mut io, 1), IOAPIC_VERSION);
    }

    #[test]
    fn redirection_entry_fields_round_trip() {
        let mut io = IoApic::new(0);
        // Everything writable and more: read-only and reserved bits stay 0.
        write_entry(&mut io, 5, u64::MAX);
        assert_eq!(read_reg(&mut io, 0x1a), 0x0001_afff);
        assert_eq!(read_reg(&mut io, 0x1b), 0xff00_0000);
        assert_eq!(io.redirection_entry(5), Some(0xff00_0000_0001_afff));
        assert_eq!(io.redirection_entry(24), None);
        // Byte-wide IOWIN writes merge into the selected register.
        io.write(IOREGSEL, &[0x1a]);
        io.write(IOWIN + 1, &[0x00]);
        assert_eq!(read_reg(&mut io, 0x1a), 0x0001_00ff);
        let mut b = [0u8; 1];
        io.read(IOWIN + 2, &mut b);
        assert_eq!(b, [0x01]);
        assert!(messages(&mut io).is_empty());
    }

    #[test]
    fn edge_interrupt_delivers_on_rising_edges_only() {
        let mut io = IoApic::new(0);
        // PIT on pin 2, vector 0x30, edge, physical destination 0.
        write_entry(&mut io, 2, 0x30);
        io.pulse_irq(2);
        assert_eq!(messages(&mut io), vec![(0x30, false)]);
        io.set_irq(2, true);
        io.set_irq(2, true);
        assert_eq!(messages(&mut io), vec![(0x30, false)]);
        io.set_irq(2, false);
        assert!(messages(&mut io).is_empty());
        // Two edges before delivery coalesce like an IRR bit would.
        io.pulse_irq(2);
        io.pulse_irq(2);
        assert_eq!(messages(&mut io), vec![(0x30, false)]);
    }

    #[test]
    fn masked_edge_is_lost() {
        let mut io = IoApic::new(0);
        write_entry(&mut io, 4, 0x1_0034);
        io.pulse_irq(4);
        io.set_irq(4, true);
        write_entry(&mut io, 4, 0x34);
        assert!(messages(&mut io).is_empty());
        io.set_irq(4, false);
        io.pulse_irq(4);
        assert_eq!(messages(&mut io), vec![(0x34, false)]);
    }

    #[test]
    fn level_interrupt_through_lapic_eoi_and_redelivery() {
        let mut io = IoApic::new(0);
        let mut a = lapic();
        // Pin 10, vector 0x41, level, active low (as for PCI).
        write_entry(&mut io, 10, 0xa041);
        io.set_irq(10, true);
        io.deliver(&mut a);
        assert_eq!(io.delivered(), 1);
        assert_eq!(read_reg(&mut io, 0x24) & (1 << 14), 1 << 14);
        assert_eq!(a.pending_vector(), Some(0x41));
        // While the remote IRR is set, the asserted line sends nothing more.
        io.set_irq(10, true);
        assert!(io.take_messages().next().is_none());
        assert_eq!(a.acknowledge(), Some(0x41));
        // The handler has not silenced the device yet: EOI redelivers.
        lapic_eoi(&mut a);
        let v = a.take_level_eoi().unwrap();
        assert_eq!(v, 0x41);
        io.end_of_interrupt(v);
        assert_eq!(read_reg(&mut io, 0x24) & (1 << 14), 1 << 14);
        io.deliver(&mut a);
        assert_eq!(a.pending_vector(), Some(0x41));
        assert_eq!(a.acknowledge(), Some(0x41));
        // Now the device drops the line before the EOI.
        io.set_irq(10, false);
        lapic_eoi(&mut a);
        io.end_of_interrupt(a.take_level_eoi().unwrap());
        assert_eq!(read_reg(&mut io, 0x24), 0xa041);
        assert!(io.take_messages().next().is_none());
        assert_eq!(a.pending_vector(), None);
        assert_eq!(io.delivered(), 2);
        // An EOI for an unrelated vector does nothing.
        io.set_irq(10, true);
        io.deliver(&mut a);
        io.end_of_interrupt(0x42);
        assert_eq!(read_reg(&mut io, 0x24) & (1 << 14), 1 << 14);
    }

    #[test]
    fn masked_level_is_delivered_when_unmasked() {
        let mut io = IoApic::new(0);
        write_entry(&mut io, 11, 0x1_8051);
        io.set_irq(11, true);
        assert!(io.take_messages().next().is_none());
        assert_eq!(read_reg(&mut io, 0x26) & (1 << 14), 0);
        write_entry(&mut io, 11, 0x8051);
        assert_eq!(messages(&mut io), vec![(0x51, true)]);
        assert_eq!(read_reg(&mut io, 0x26), 0xc051);
    }

    /// Linux's `__eoi_ioapic_pin` for version 0x11: mask and set edge, then
    /// restore the level entry, which clears a stuck remote IRR.
    #[test]
    fn switching_to_edge_clears_remote_irr() {
        let mut io = IoApic::new(0);
        write_entry(&mut io, 3, 0x8033);
        io.set_irq(3, true);
        assert_eq!(messages(&mut io), vec![(0x33, true)]);
        assert_eq!(read_reg(&mut io, 0x16), 0xc033);
        write_entry(&mut io, 3, 0x1_0033);
        assert_eq!(read_reg(&mut io, 0x16), 0x1_0033);
        // Restored with the line still high: delivered again.
        write_entry(&mut io, 3, 0x8033);
        assert_eq!(messages(&mut io), vec![(0x33, true)]);
    }

    #[test]
    fn other_delivery_modes_are_ignored() {
        let mut io = IoApic::new(0);
        for (pin, mode) in [(0u8, 2u64), (1, 4), (2, 5), (3, 7)] {
            write_entry(&mut io, pin, (mode << 8) | 0x40);
            io.pulse_irq(pin);
        }
        assert!(messages(&mut io).is_empty());
        // Lowest priority and logical destinations reach the only CPU.
        write_entry(&mut io, 5, 0xff00_0000_0000_0945);
        io.pulse_irq(5);
        assert_eq!(messages(&mut io), vec![(0x45, false)]);
    }

    #[test]
    fn refused_level_message_frees_the_pin() {
        let mut io = IoApic::new(0);
        let mut a = LocalApic::new(Arc::new(ManualClock::new(Instant::now())), 40);
        write_entry(&mut io, 9, 0x8049);
        io.set_irq(9, true);
        // The local APIC is still software-disabled.
        io.deliver(&mut a);
        assert_eq!(io.delivered(), 0);
        assert_eq!(read_reg(&mut io, 0x22), 0x8049);
    }

    #[test]
    fn hammer_all_offsets_sizes_and_pins() {
        let mut io = IoApic::new(2);
        let mut a = lapic();
        for sel in 0..=255u32 {
            io.write(IOREGSEL, &sel.to_le_bytes());
            for offset in (0..0x1010u64).chain([u64::MAX - 1, u64::MAX]) {
                for size in [0usize, 1, 2, 3, 4, 8] {
                    let mut buf = vec![0u8; size];
                    io.read(offset, &mut buf);
                    let v = u64::from(sel).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ offset;
                    io.write(offset, &v.to_le_bytes()[..size]);
                }
            }
            io.set_irq(sel as u8, sel & 1 != 0);
            io.pulse_irq(sel as u8);
            io.end_of_interrupt(sel as u8);
            io.deliver(&mut a);
            let _ = a.acknowledge();
        }
        assert_eq!(read_reg(&mut io, 1), IOAPIC_VERSION);
    }
}
