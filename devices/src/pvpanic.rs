//! QEMU's pvpanic device on port 0x505 (QEMU docs/specs/pvpanic.rst), which Linux's pvpanic
//! driver finds through the ACPI device `QEMU0001` in the DSDT.
//!
//! A read returns the events the device supports; the guest writes an event when it happens:
//! bit 0 "panicked" (the kernel panicked and will not continue) ends the VM with
//! [`IoOutcome::GuestPanic`]; bit 1 "crash loaded" (a kdump kernel takes over) is only logged,
//! because the guest keeps running.

use tracing::{debug, warn};

use crate::bus::{IoOutcome, PioDevice};

/// The pvpanic I/O port.
pub const PVPANIC_PORT: u16 = 0x505;
/// Event bit: the guest kernel panicked.
pub const PVPANIC_PANICKED: u8 = 1 << 0;
/// Event bit: a crash kernel was loaded and is starting.
pub const PVPANIC_CRASH_LOADED: u8 = 1 << 1;

/// Port 0x505.
#[derive(Debug, Default)]
pub struct PvPanic;

impl PioDevice for PvPanic {
    fn read(&mut self, _port: u16, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;
        }
    }

    fn write(&mut self, _port: u16, data: &[u8]) -> IoOutcome {
        let event = data.first().copied().unwrap_or(0);
        if event & PVPANIC_PANICKED != 0 {
            warn!("pvpanic: the guest kernel panicked");
            return IoOutcome::GuestPanic;
        }
        if event & PVPANIC_CRASH_LOADED != 0 {
            debug!("pvpanic: the guest is starting its crash kernel");
        }
        IoOutcome::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_and_events() {
        let mut p = PvPanic;
        let mut b = [0xffu8; 1];
        p.read(PVPANIC_PORT, &mut b);
        assert_eq!(b[0], 3);
        assert_eq!(p.write(PVPANIC_PORT, &[2]), IoOutcome::Continue);
        assert_eq!(p.write(PVPANIC_PORT, &[1]), IoOutcome::GuestPanic);
        assert_eq!(p.write(PVPANIC_PORT, &[]), IoOutcome::Continue);
        let mut wide = [0xffu8; 4];
        p.read(PVPANIC_PORT, &mut wide);
        assert_eq!(wide, [3, 0, 0, 0]);
    }
}
