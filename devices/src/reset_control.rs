//! The chipset's Reset Control Register at port 0xCF9.
//!
//! Intel's PIIX3/PIIX4 and ICH southbridges decode an 8-bit access to port
//! 0xCF9 as the Reset Control Register (e.g. Intel I/O Controller Hub 9
//! datasheet, 13.7.5 "RST_CNT"): bit 1 SYS_RST selects a hard reset, bit 2
//! RST_CPU starts the reset, bit 3 FULL_RST also cycles power. The FADT's
//! `RESET_REG` points here with `RESET_VALUE` 0x06, which is how Linux's
//! default `reboot=acpi` path resets the machine; its `reboot=pci` path
//! writes 0x02 and then 0x06 or 0x0E.
//!
//! Any write with RST_CPU set ends the VM with [`IoOutcome::Reset`]; the
//! VMM does not distinguish hard, soft or full resets. Reads return the
//! last value written.
//!
//! Port 0xCF9 lies inside the 32-bit PCI `CONFIG_ADDRESS` register at
//! 0xCF8-0xCFB. The bus routes an access by its first port, so a PCI host
//! bridge added later must register 0xCF8 alone (plus 0xCFA-0xCFB if it
//! wants byte accesses there) rather than the whole 0xCF8-0xCFF range.

use tracing::debug;

use crate::bus::{read_bytewise, write_bytewise_outcome, IoOutcome, PioDevice};

/// The Reset Control Register's port.
pub const RESET_CONTROL_PORT: u16 = 0xcf9;
/// Bit 1: hard (rather than soft) reset.
pub const RST_CNT_SYS_RST: u8 = 0x02;
/// Bit 2: a write with this bit set resets the CPU.
pub const RST_CNT_RST_CPU: u8 = 0x04;
/// Bit 3: full reset (power cycle).
pub const RST_CNT_FULL_RST: u8 = 0x08;

/// Port 0xCF9.
#[derive(Debug, Default, Clone, Copy)]
pub struct ResetControl {
    value: u8,
}

impl ResetControl {
    /// The register after power-up: 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads port `port`; only 0xCF9 is decoded, anything else reads 0xFF.
    pub fn read_port(&self, port: u16) -> u8 {
        if port == RESET_CONTROL_PORT {
            self.value
        } else {
            0xff
        }
    }

    /// Writes port `port`; returns [`IoOutcome::Reset`] when RST_CPU is set.
    pub fn write_port(&mut self, port: u16, value: u8) -> IoOutcome {
        if port != RESET_CONTROL_PORT {
            return IoOutcome::Continue;
        }
        self.value = value;
        if value & RST_CNT_RST_CPU != 0 {
            debug!(value, "reset control: CPU reset");
            IoOutcome::Reset
        } else {
            IoOutcome::Continue
        }
    }
}

impl PioDevice for ResetControl {
    fn read(&mut self, port: u16, data: &mut [u8]) {
        read_bytewise(port, data, |p| self.read_port(p));
    }

    fn write(&mut self, port: u16, data: &[u8]) -> IoOutcome {
        write_bytewise_outcome(port, data, |p, v| self.write_port(p, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acpi_reset_value_resets() {
        let mut rc = ResetControl::new();
        assert_eq!(rc.write(RESET_CONTROL_PORT, &[0x06]), IoOutcome::Reset);
        assert_eq!(rc.read_port(RESET_CONTROL_PORT), 0x06);
        assert_eq!(rc.write(RESET_CONTROL_PORT, &[0x0e]), IoOutcome::Reset);
    }

    /// Linux's `reboot=pci`: read, write SYS_RST alone, then 0x06.
    #[test]
    fn linux_cf9_sequence() {
        let mut rc = ResetControl::new();
        let mut b = [0u8];
        rc.read(RESET_CONTROL_PORT, &mut b);
        assert_eq!(b[0], 0);
        let cf9 = b[0] & !0x06;
        assert_eq!(
            rc.write(RESET_CONTROL_PORT, &[cf9 | 2]),
            IoOutcome::Continue
        );
        rc.read(RESET_CONTROL_PORT, &mut b);
        assert_eq!(b[0], 0x02);
        assert_eq!(
            rc.write(RESET_CONTROL_PORT, &[cf9 | 0x06]),
            IoOutcome::Reset
        );
    }

    #[test]
    fn wide_and_stray_accesses() {
        let mut rc = ResetControl::new();
        let mut buf = [0u8; 4];
        rc.read(RESET_CONTROL_PORT, &mut buf);
        assert_eq!(buf, [0, 0xff, 0xff, 0xff]);
        assert_eq!(
            rc.write(RESET_CONTROL_PORT, &[0x02, 0x04, 0x04, 0x04]),
            IoOutcome::Continue
        );
        assert_eq!(rc.write(0xcf8, &[0x04]), IoOutcome::Continue);
        assert_eq!(rc.write(RESET_CONTROL_PORT, &[]), IoOutcome::Continue);
    }
}
