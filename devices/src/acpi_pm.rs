//! ACPI fixed hardware: the PM1a event and control blocks and the PM timer,
//! at the ports the FADT advertises.
//!
//! | ports       | register (ACPI 6.5, section 4.8.3)                      |
//! |-------------|---------------------------------------------------------|
//! | 0x600-0x601 | PM1_STS (4.8.3.1.1), write 1 to clear                   |
//! | 0x602-0x603 | PM1_EN (4.8.3.1.2)                                      |
//! | 0x604-0x605 | PM1_CNT (4.8.3.2.1)                                     |
//! | 0x608-0x60B | PM_TMR (4.8.3.3), 32-bit counter at 3.579545 MHz        |
//!
//! The FADT describes them with PM1_EVT_LEN = 4, PM1_CNT_LEN = 2,
//! PM_TMR_LEN = 4 and `TMR_VAL_EXT` set (a 32-bit timer). Every register is
//! modelled byte by byte, so accesses of any width at any offset work, as
//! ACPICA's generic-address accessors and Linux's `inl` of the timer need.
//!
//! # Sleep states
//!
//! Writing SLP_EN with SLP_TYP = [`SLP_TYP_S5`] (the value the DSDT's `_S5`
//! object gives) is soft-off: the write returns [`IoOutcome::PowerOff`].
//! Other sleep types cannot be entered; the write sets WAK_STS at once, as
//! if a wake event had arrived immediately, so that ACPICA's wait for
//! WAK_STS after S1-S4 (`acpi_hw_legacy_sleep`) terminates.
//!
//! # SCI
//!
//! SCI_EN always reads as 1: the FADT has no SMI command port, so the
//! platform is permanently in ACPI mode (ACPI 6.5, "Legacy/ACPI Select and
//! the SCI Interrupt"; SMI_CMD = 0 in the FADT table). No SCI
//! is ever raised: the only status this model can set are TMR_STS (the
//! timer's bit 31 toggled, every 600 s) and WAK_STS, and Linux does not
//! enable the timer event. There is no power or sleep button.

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, warn};

use crate::bus::{read_bytewise, write_bytewise_outcome, IoOutcome, PioDevice};
use crate::clock::Clock;

/// PM1a event block: PM1_STS then PM1_EN.
pub const PM1A_EVT_BLK: u16 = 0x600;
/// PM1 status register.
pub const PM1_STS: u16 = PM1A_EVT_BLK;
/// PM1 enable register.
pub const PM1_EN: u16 = PM1A_EVT_BLK + 2;
/// PM1a control block.
pub const PM1A_CNT_BLK: u16 = 0x604;
/// PM timer block.
pub const PM_TMR_BLK: u16 = 0x608;
/// Ports decoded from [`PM1A_EVT_BLK`]: 0x600-0x60B (0x606-0x607 are
/// unused and read as all-ones).
pub const ACPI_PM_PORT_COUNT: u16 = 12;
/// The PM timer frequency (ACPI 6.5, 4.8.3.3).
pub const PM_TIMER_FREQUENCY_HZ: u64 = 3_579_545;

/// PM1_STS bit 0: the timer's MSB toggled.
pub const PM1_STS_TMR: u16 = 1 << 0;
/// PM1_STS bit 15: the system woke up.
pub const PM1_STS_WAK: u16 = 1 << 15;
/// PM1_EN bits that exist: TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN, RTC_EN and
/// PCIEXP_WAKE_DIS.
pub const PM1_EN_MASK: u16 = 0x4721;
/// PM1_CNT bit 0: SCI_EN.
pub const PM1_CNT_SCI_EN: u16 = 1 << 0;
/// PM1_CNT bit 1: BM_RLD.
pub const PM1_CNT_BM_RLD: u16 = 1 << 1;
/// PM1_CNT bits 10-12: SLP_TYP.
pub const PM1_CNT_SLP_TYP_MASK: u16 = 7 << 10;
/// PM1_CNT bit 13: SLP_EN (write-only).
pub const PM1_CNT_SLP_EN: u16 = 1 << 13;
/// The SLP_TYP value meaning S5 (soft off), as the DSDT's `_S5` says.
pub const SLP_TYP_S5: u16 = 5;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The PM1a event/control blocks and the PM timer.
pub struct AcpiPm {
    sts: u16,
    en: u16,
    /// BM_RLD and SLP_TYP as last written.
    cnt: u16,
    clock: Arc<dyn Clock>,
    /// The timer counts from 0 at this instant.
    epoch: Instant,
    /// Timer bit-31 toggles already reflected in TMR_STS.
    carries_seen: u64,
}

impl std::fmt::Debug for AcpiPm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcpiPm")
            .field("sts", &self.sts)
            .field("en", &self.en)
            .field("cnt", &self.cnt)
            .finish_non_exhaustive()
    }
}

impl AcpiPm {
    /// The registers after reset, with the timer starting at 0 now.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let epoch = clock.now();
        Self {
            sts: 0,
            en: 0,
            cnt: 0,
            clock,
            epoch,
            carries_seen: 0,
        }
    }

    /// PM timer clocks since reset, not truncated.
    fn ticks(&self, now: Instant) -> u64 {
        let ns = now.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(ns * u128::from(PM_TIMER_FREQUENCY_HZ) / NANOS_PER_SEC).unwrap_or(u64::MAX)
    }

    /// The 32-bit PM timer value at `now`.
    pub fn timer_at(&self, now: Instant) -> u32 {
        // Truncation is the counter wrapping.
        self.ticks(now) as u32
    }

    /// Sets TMR_STS if the timer's bit 31 toggled since it was last seen.
    fn sync(&mut self, now: Instant) {
        let carries = self.ticks(now) >> 31;
        if carries != self.carries_seen {
            self.carries_seen = carries;
            self.sts |= PM1_STS_TMR;
        }
    }

    /// Reads the byte at `port` as of `now`; ports outside the blocks read
    /// 0xFF.
    pub fn read_port_at(&mut self, port: u16, now: Instant) -> u8 {
        let [lo, hi] = match port {
            0x600..=0x601 => {
                self.sync(now);
                self.sts.to_le_bytes()
            }
            0x602..=0x603 => self.en.to_le_bytes(),
            0x604..=0x605 => (self.cnt | PM1_CNT_SCI_EN).to_le_bytes(),
            0x608..=0x60b => {
                let shift = 8 * u32::from(port - PM_TMR_BLK);
                return (self.timer_at(now) >> shift) as u8;
            }
            _ => return 0xff,
        };
        if port & 1 == 0 {
            lo
        } else {
            hi
        }
    }

    /// Writes the byte at `port` as of `now`. Returns
    /// [`IoOutcome::PowerOff`] when the write enters S5.
    pub fn write_port_at(&mut self, port: u16, value: u8, now: Instant) -> IoOutcome {
        let shift = if port & 1 == 0 { 0 } else { 8 };
        let bits = u16::from(value) << shift;
        let lane = 0xffu16 << shift;
        match port {
            0x600..=0x601 => {
                self.sync(now);
                self.sts &= !bits;
            }
            0x602..=0x603 => self.en = ((self.en & !lane) | bits) & PM1_EN_MASK,
            0x604..=0x605 => {
                let kept = PM1_CNT_BM_RLD | PM1_CNT_SLP_TYP_MASK;
                self.cnt = ((self.cnt & !lane) | bits) & kept;
                if bits & PM1_CNT_SLP_EN != 0 {
                    return self.sleep();
                }
            }
            _ => debug!(
                port = format_args!("{port:#x}"),
                value, "acpi pm: write to read-only or unused port ignored"
            ),
        }
        IoOutcome::Continue
    }

    /// SLP_EN was written with the current SLP_TYP.
    fn sleep(&mut self) -> IoOutcome {
        let slp_typ = (self.cnt & PM1_CNT_SLP_TYP_MASK) >> 10;
        if slp_typ == SLP_TYP_S5 {
            debug!("acpi pm: S5, powering off");
            return IoOutcome::PowerOff;
        }
        warn!(slp_typ, "acpi pm: sleep type not supported; waking at once");
        self.sts |= PM1_STS_WAK;
        IoOutcome::Continue
    }
}

impl PioDevice for AcpiPm {
    fn read(&mut self, port: u16, data: &mut [u8]) {
        // One sample for the whole access, so a 32-bit timer read is
        // consistent.
        let now = self.clock.now();
        read_bytewise(port, data, |p| self.read_port_at(p, now));
    }

    fn write(&mut self, port: u16, data: &[u8]) -> IoOutcome {
        let now = self.clock.now();
        write_bytewise_outcome(port, data, |p, v| self.write_port_at(p, v, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    fn pm() -> (AcpiPm, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Instant::now()));
        (AcpiPm::new(clock.clone()), clock)
    }

    fn read(pm: &mut AcpiPm, port: u16, len: usize) -> u32 {
        let mut buf = [0u8; 4];
        pm.read(port, &mut buf[..len]);
        u32::from_le_bytes(buf)
    }

    #[test]
    fn pm_timer_counts_3579545_per_second() {
        let (mut pm, clock) = pm();
        assert_eq!(read(&mut pm, PM_TMR_BLK, 4), 0);
        clock.advance(Duration::from_secs(1));
        assert_eq!(read(&mut pm, PM_TMR_BLK, 4), 3_579_545);
        clock.advance(Duration::from_secs(1));
        assert_eq!(read(&mut pm, PM_TMR_BLK, 4), 7_159_090);
        // 7159090 = 0x006d_3d32: every width and offset.
        assert_eq!(read(&mut pm, PM_TMR_BLK, 2), 0x3d32);
        assert_eq!(read(&mut pm, PM_TMR_BLK + 2, 2), 0x006d);
        assert_eq!(read(&mut pm, PM_TMR_BLK + 1, 1), 0x3d);
        assert_eq!(read(&mut pm, PM_TMR_BLK + 2, 1), 0x6d);
        assert_eq!(read(&mut pm, PM_TMR_BLK + 3, 1), 0x00);
        // 1 us is 3.58 clocks.
        clock.advance(Duration::from_micros(1));
        assert_eq!(read(&mut pm, PM_TMR_BLK, 4), 7_159_093);
        // Writes are ignored.
        assert_eq!(pm.write(PM_TMR_BLK, &[0; 4]), IoOutcome::Continue);
        assert_eq!(read(&mut pm, PM_TMR_BLK, 4), 7_159_093);
    }

    #[test]
    fn pm_timer_wraps_at_32_bits_and_sets_tmr_sts() {
        let (mut pm, clock) = pm();
        clock.advance(Duration::from_secs(599));
        assert_eq!(read(&mut pm, PM1_STS, 2), 0);
        // Bit 31 rises after 2^31 clocks (599.9 s).
        clock.advance(Duration::from_secs(1));
        assert_eq!(read(&mut pm, PM1_STS, 2), u32::from(PM1_STS_TMR));
        pm.write(PM1_STS, &[0x01, 0x00]);
        assert_eq!(read(&mut pm, PM1_STS, 2), 0);
        // 1200 s = 4295454000 clocks, past 2^32.
        clock.advance(Duration::from_secs(600));
        assert_eq!(read(&mut pm, PM_TMR_BLK, 4), 4_295_454_000u64 as u32);
        assert_eq!(read(&mut pm, PM1_STS, 2), u32::from(PM1_STS_TMR));
    }

    /// ACPICA's `acpi_hw_legacy_sleep(ACPI_STATE_S5)`: clear WAK_STS, read
    /// PM1_CNT, write SLP_TYP, then SLP_TYP | SLP_EN.
    #[test]
    fn s5_powers_off() {
        let (mut pm, _clock) = pm();
        assert_eq!(pm.write(PM1_STS, &[0x00, 0x80]), IoOutcome::Continue);
        let cnt = read(&mut pm, PM1A_CNT_BLK, 2) as u16;
        assert_eq!(cnt, PM1_CNT_SCI_EN);
        let typ = (cnt & !(PM1_CNT_SLP_TYP_MASK | PM1_CNT_SLP_EN)) | (SLP_TYP_S5 << 10);
        assert_eq!(
            pm.write(PM1A_CNT_BLK, &typ.to_le_bytes()),
            IoOutcome::Continue
        );
        assert_eq!(read(&mut pm, PM1A_CNT_BLK, 2), 0x1401);
        assert_eq!(
            pm.write(PM1A_CNT_BLK, &(typ | PM1_CNT_SLP_EN).to_le_bytes()),
            IoOutcome::PowerOff
        );
        // As a 32-bit write too, and as the single high byte.
        assert_eq!(
            pm.write(PM1A_CNT_BLK, &[0x01, 0x34, 0, 0]),
            IoOutcome::PowerOff
        );
        assert_eq!(pm.write(PM1A_CNT_BLK + 1, &[0x34]), IoOutcome::PowerOff);
        // SLP_EN reads as 0.
        assert_eq!(read(&mut pm, PM1A_CNT_BLK, 2), 0x1401);
    }

    #[test]
    fn other_sleep_types_wake_at_once() {
        let (mut pm, _clock) = pm();
        // SLP_TYP 1 (S1) | SLP_EN.
        assert_eq!(pm.write(PM1A_CNT_BLK, &[0x00, 0x24]), IoOutcome::Continue);
        assert_eq!(read(&mut pm, PM1_STS, 2), u32::from(PM1_STS_WAK));
        pm.write(PM1_STS, &[0x00, 0x80]);
        assert_eq!(read(&mut pm, PM1_STS, 2), 0);
    }

    #[test]
    fn enable_and_control_bits() {
        let (mut pm, _clock) = pm();
        pm.write(PM1_EN, &[0x21, 0x07]);
        assert_eq!(read(&mut pm, PM1_EN, 2), 0x0721);
        pm.write(PM1_EN, &[0xff, 0xff]);
        assert_eq!(read(&mut pm, PM1_EN, 2), u32::from(PM1_EN_MASK));
        pm.write(PM1_EN + 1, &[0x00]);
        assert_eq!(read(&mut pm, PM1_EN, 2), 0x0021);
        // SCI_EN cannot be cleared; GBL_RLS and reserved bits do not stick.
        pm.write(PM1A_CNT_BLK, &[0x00, 0x00]);
        assert_eq!(read(&mut pm, PM1A_CNT_BLK, 2), 0x0001);
        pm.write(PM1A_CNT_BLK, &[0xfe, 0xc3]);
        assert_eq!(read(&mut pm, PM1A_CNT_BLK, 2), 0x0003);
        // PM1_EVT_BLK as one 32-bit read: STS in the low half.
        assert_eq!(read(&mut pm, PM1A_EVT_BLK, 4), 0x0021_0000);
        assert_eq!(read(&mut pm, 0x606, 2), 0xffff);
    }

    #[test]
    fn wild_accesses_do_not_panic() {
        let (mut pm, clock) = pm();
        for port in 0x5f0..0x620u16 {
            for len in 1..=4 {
                for v in [0u8, 0x34, 0xff] {
                    let _ = pm.write(port, &vec![v; len]);
                    let mut buf = vec![0u8; len];
                    pm.read(port, &mut buf);
                }
            }
            clock.advance(Duration::from_secs(97));
        }
        // Time going backwards saturates.
        clock.set(pm.epoch);
        if let Some(before) = pm.epoch.checked_sub(Duration::from_secs(1)) {
            assert_eq!(pm.timer_at(before), 0);
        }
        assert_eq!(read(&mut pm, PM_TMR_BLK, 4), 0);
    }
}
