//! The port-I/O bus: maps x86 I/O port ranges to device models.
//!
//! An `in`/`out` instruction names a 16-bit port and a width of 1, 2 or 4
//! bytes. The bus routes the whole access to the device whose range contains
//! the *first* port, the same convention KVM-based VMMs (rust-vmm
//! `vm-device`, Firecracker, crosvm) use: the device sees the access exactly
//! as the guest issued it and decides what a wide access means. Devices with
//! 8-bit registers use [`read_bytewise`]/[`write_bytewise`], which model the
//! ISA bus splitting a wide cycle into 8-bit cycles at consecutive ports.
//!
//! Nothing on the bus is mapped by default: an access to an unclaimed port
//! reads as all-ones (an undriven ISA data bus floats high) and writes are
//! dropped, both traced at debug level, so a guest probing for hardware that
//! is not there never brings the VMM down.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use thiserror::Error;
use tracing::debug;

/// What the VMM should do after a port write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOutcome {
    /// Resume the guest.
    Continue,
    /// Stop the VM and exit the VMM with this status (isa-debug-exit).
    Exit(i32),
    /// The guest entered ACPI S5 (soft off) through PM1_CNT.
    PowerOff,
    /// The guest reset the machine: an i8042 reset pulse or a write to the
    /// Reset Control Register at 0xCF9.
    Reset,
    /// The guest kernel reported a panic through pvpanic.
    GuestPanic,
}

/// A device reachable through port I/O.
///
/// `port` is the absolute port of the access and `data` is 1, 2 or 4 bytes
/// long, little-endian, as the x86 `in`/`out` instructions transfer it.
/// Implementations must tolerate any port and any length without panicking,
/// because both come straight from the guest.
pub trait PioDevice: Send {
    /// Services an `in`: fill `data` with the value the guest reads.
    fn read(&mut self, port: u16, data: &mut [u8]);
    /// Services an `out` of `data`.
    fn write(&mut self, port: u16, data: &[u8]) -> IoOutcome;
}

/// A device shared between the bus and the platform code that also needs to
/// call its non-I/O methods (raising IRQs, advancing time).
pub type SharedPioDevice = Arc<Mutex<dyn PioDevice>>;

/// Errors from building a [`PioBus`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BusError {
    /// A range of zero ports cannot be mapped.
    #[error("cannot register an empty port range at {base:#x}")]
    EmptyRange {
        /// First port of the rejected range.
        base: u16,
    },
    /// The range runs past port 0xFFFF.
    #[error("port range {base:#x}+{len:#x} runs past port 0xffff")]
    RangeOverflow {
        /// First port of the rejected range.
        base: u16,
        /// Length of the rejected range.
        len: u16,
    },
    /// The range overlaps one that is already registered.
    #[error("port range {base:#x}..={last:#x} overlaps registered range {existing_base:#x}..={existing_last:#x}")]
    Overlap {
        /// First port of the rejected range.
        base: u16,
        /// Last port of the rejected range.
        last: u16,
        /// First port of the conflicting registered range.
        existing_base: u16,
        /// Last port of the conflicting registered range.
        existing_last: u16,
    },
}

struct Mapping {
    /// Last port of the range, inclusive (so a range may end at 0xFFFF).
    last: u16,
    device: SharedPioDevice,
}

/// Port ranges to devices. Ranges never overlap.
#[derive(Default)]
pub struct PioBus {
    /// Keyed by the first port of each range.
    ranges: BTreeMap<u16, Mapping>,
}

impl std::fmt::Debug for PioBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.ranges
                    .iter()
                    .map(|(base, m)| format!("{base:#x}..={:#x}", m.last)),
            )
            .finish()
    }
}

/// Locks a device mutex, recovering from poisoning: a panic in another thread
/// while holding the lock leaves plain register state behind, which is still
/// better to serve than taking the whole VM down.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PioBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps ports `base..base+len` to `device`. The same device may be
    /// registered for several disjoint ranges (the PIC owns 0x20, 0xA0 and
    /// 0x4D0).
    pub fn register(
        &mut self,
        base: u16,
        len: u16,
        device: SharedPioDevice,
    ) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::EmptyRange { base });
        }
        let last = base
            .checked_add(len - 1)
            .ok_or(BusError::RangeOverflow { base, len })?;
        // Ranges are disjoint and sorted, so the only candidate for an overlap
        // is the registered range with the greatest base <= `last`.
        if let Some((&existing_base, m)) = self.ranges.range(..=last).next_back() {
            if m.last >= base {
                return Err(BusError::Overlap {
                    base,
                    last,
                    existing_base,
                    existing_last: m.last,
                });
            }
        }
        self.ranges.insert(base, Mapping { last, device });
        Ok(())
    }

    fn find(&self, port: u16) -> Option<&SharedPioDevice> {
        self.ranges
            .range(..=port)
            .next_back()
            .filter(|(_, m)| m.last >= port)
            .map(|(_, m)| &m.device)
    }

    /// Whether some device claims `port`.
    pub fn is_mapped(&self, port: u16) -> bool {
        self.find(port).is_some()
    }

    /// Dispatches an `in`. Returns `false` (and fills `data` with all-ones)
    /// when no device claims `port`.
    pub fn read(&self, port: u16, data: &mut [u8]) -> bool {
        match self.find(port) {
            Some(dev) => {
                lock(dev).read(port, data);
                true
            }
            None => {
                debug!(
                    port = format_args!("{port:#x}"),
                    len = data.len(),
                    "in from unmapped port"
                );
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatches an `out`. Writes to unclaimed ports are dropped.
    pub fn write(&self, port: u16, data: &[u8]) -> IoOutcome {
        match self.find(port) {
            Some(dev) => lock(dev).write(port, data),
            None => {
                debug!(
                    port = format_args!("{port:#x}"),
                    ?data,
                    "out to unmapped port"
                );
                IoOutcome::Continue
            }
        }
    }
}

/// Serves a possibly-wide read from a device with 8-bit registers: byte `i`
/// of `data` is read from port `port + i`, as the ISA bus does when a 16-bit
/// cycle targets an 8-bit device. `read_byte` must return 0xFF for ports the
/// device does not decode.
pub fn read_bytewise(port: u16, data: &mut [u8], mut read_byte: impl FnMut(u16) -> u8) {
    let mut p = port;
    for b in data.iter_mut() {
        *b = read_byte(p);
        p = p.wrapping_add(1);
    }
}

/// [`write_bytewise`] for devices whose byte writes can end the VM: the
/// first outcome other than [`IoOutcome::Continue`] is the access's outcome
/// (the remaining bytes are still written, as the bus cycles still happen).
pub fn write_bytewise_outcome(
    port: u16,
    data: &[u8],
    mut write_byte: impl FnMut(u16, u8) -> IoOutcome,
) -> IoOutcome {
    let mut outcome = IoOutcome::Continue;
    write_bytewise(port, data, |p, v| {
        let o = write_byte(p, v);
        if outcome == IoOutcome::Continue {
            outcome = o;
        }
    });
    outcome
}

/// The write counterpart of [`read_bytewise`]: byte `i` of `data` is written
/// to port `port + i`.
pub fn write_bytewise(port: u16, data: &[u8], mut write_byte: impl FnMut(u16, u8)) {
    let mut p = port;
    for &b in data {
        write_byte(p, b);
        p = p.wrapping_add(1);
    }
}

/// Assembles the little-endian value of a 1-, 2- or 4-byte `out`. Longer
/// slices keep their first four bytes.
pub fn le_value(data: &[u8]) -> u32 {
    data.iter()
        .take(4)
        .enumerate()
        .fold(0, |acc, (i, &b)| acc | (u32::from(b) << (8 * i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Remembers the last write and answers reads with its port's low byte.
    struct Echo {
        last: Option<(u16, Vec<u8>)>,
    }

    impl PioDevice for Echo {
        fn read(&mut self, port: u16, data: &mut [u8]) {
            data.fill(port as u8);
        }
        fn write(&mut self, port: u16, data: &[u8]) -> IoOutcome {
            self.last = Some((port, data.to_vec()));
            IoOutcome::Continue
        }
    }

    fn echo() -> Arc<Mutex<Echo>> {
        Arc::new(Mutex::new(Echo { last: None }))
    }

    #[test]
    fn routes_by_range_and_passes_absolute_port() {
        let mut bus = PioBus::new();
        let a = echo();
        bus.register(0x40, 4, a.clone()).unwrap();
        let mut buf = [0u8; 2];
        assert!(bus.read(0x43, &mut buf));
        assert_eq!(buf, [0x43, 0x43]);
        assert_eq!(bus.write(0x41, &[1, 2, 3, 4]), IoOutcome::Continue);
        assert_eq!(lock(&a).last, Some((0x41, vec![1, 2, 3, 4])));
    }

    #[test]
    fn unmapped_reads_all_ones_and_drops_writes() {
        let mut bus = PioBus::new();
        let a = echo();
        bus.register(0x40, 4, a.clone()).unwrap();
        let mut buf = [0u8; 4];
        assert!(!bus.read(0x44, &mut buf));
        assert_eq!(buf, [0xff; 4]);
        assert!(!bus.read(0x3f, &mut buf[..1]));
        assert_eq!(bus.write(0x3f, &[0]), IoOutcome::Continue);
        assert_eq!(lock(&a).last, None);
    }

    #[test]
    fn rejects_overlaps_and_bad_ranges() {
        let mut bus = PioBus::new();
        bus.register(0x20, 2, echo()).unwrap();
        bus.register(0xa0, 2, echo()).unwrap();
        // Touching ranges are fine.
        bus.register(0x22, 1, echo()).unwrap();
        bus.register(0x1f, 1, echo()).unwrap();
        assert_eq!(
            bus.register(0x21, 1, echo()),
            Err(BusError::Overlap {
                base: 0x21,
                last: 0x21,
                existing_base: 0x20,
                existing_last: 0x21
            })
        );
        // A range swallowing an existing one entirely.
        assert!(matches!(
            bus.register(0x90, 0x20, echo()),
            Err(BusError::Overlap {
                existing_base: 0xa0,
                ..
            })
        ));
        assert_eq!(
            bus.register(0x10, 0, echo()),
            Err(BusError::EmptyRange { base: 0x10 })
        );
        assert_eq!(
            bus.register(0xfff0, 0x11, echo()),
            Err(BusError::RangeOverflow {
                base: 0xfff0,
                len: 0x11
            })
        );
        // The very last port is reachable.
        bus.register(0xfff0, 0x10, echo()).unwrap();
        assert!(bus.is_mapped(0xffff));
        assert!(!bus.is_mapped(0xa2));
    }

    #[test]
    fn bytewise_helpers_and_le_value() {
        let mut buf = [0u8; 4];
        read_bytewise(0xfffe, &mut buf, |p| p as u8);
        assert_eq!(buf, [0xfe, 0xff, 0x00, 0x01]);
        let mut seen = vec![];
        write_bytewise(0x20, &[0x11, 0x22], |p, v| seen.push((p, v)));
        assert_eq!(seen, vec![(0x20, 0x11), (0x21, 0x22)]);
        assert_eq!(le_value(&[0x34, 0x12]), 0x1234);
        assert_eq!(le_value(&[1, 2, 3, 4, 5]), 0x0403_0201);
        assert_eq!(le_value(&[]), 0);
    }
}
