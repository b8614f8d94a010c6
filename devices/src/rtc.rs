//! The Motorola MC146818A real-time clock and CMOS RAM at ports 0x70/0x71.
//!
//! Port 0x70 selects one of 128 CMOS bytes (bit 7 is the PC's NMI-disable
//! gate, remembered but not acted on: this platform raises no NMIs) and port
//! 0x71 reads or writes it. Bytes 0x00-0x0D are the MC146818A's clock,
//! alarm and control registers, the rest is battery-backed RAM; by the PC/AT
//! convention (and the ACPI FADT `CENTURY` field) byte 0x32 holds the
//! century, so it is treated as a clock register too.
//!
//! References are to the Motorola MC146818A datasheet: "Address Map"
//! (fig. 3), "Time, Calendar and Alarm Data Modes" (table 3), "Register A"
//! (UIP, DV2-DV0, RS3-RS0; table 4 for the periodic rates), "Register B"
//! (SET, PIE, AIE, UIE, SQWE, DM, 24/12, DSE), "Register C" (IRQF, PF, AF,
//! UF) and "Register D" (VRT), and "Update Cycle" (fig. 13).
//!
//! rust-vmm's `vm-superio` offers `rtc_pl031`, which is the ARM PrimeCell
//! PL031 (an MMIO counter with a completely different register model), so
//! it does not fit a PC.
//!
//! # Time model
//!
//! Nothing is ticked. Guest time is the host's UTC wall clock
//! ([`SystemTime`], sampled once at construction) advanced by the device's
//! monotonic [`Clock`], plus whatever offset the guest's own clock setting
//! introduced. The clock registers are computed from it on every read,
//! honouring register B's DM (binary or BCD) and 24/12 bits. Tests inject
//! both the wall time ([`Rtc::with_wall_time`]) and a [`crate::ManualClock`].
//!
//! Setting the clock works as the datasheet describes and Linux's
//! `mc146818_set_time` expects: while register B's SET bit is set, or
//! register A's divider is held in reset (DV2-DV0 = 11x), the update cycle is
//! inhibited, the clock registers hold a snapshot the guest may overwrite,
//! and releasing them restarts the clock from the written values. Releasing a
//! divider reset starts the first update half a second later, as on the chip.
//! A clock register written while the clock runs moves the time likewise
//! (QEMU's behaviour), keeping the sub-second phase. The day of week is
//! always derived from the date; writes to it are not kept.
//!
//! # Update-in-progress
//!
//! UIP reads as 1 during the last 244 us before each second boundary, when
//! the chip's update cycle is about to start, and the registers change
//! atomically at the boundary. Linux's `mc146818_avoid_UIP` waits 1 ms
//! whenever it sees UIP and re-reads the seconds, so it always terminates.
//!
//! # Interrupts (IRQ 8)
//!
//! Register C's flags are set on time: PF at every periodic-rate boundary
//! (whether or not PIE is set, as on the chip), UF at every second boundary
//! and AF when the clock at a second boundary matches the alarm registers
//! (an alarm byte with its two high bits set matches anything). IRQF, and
//! with it the chip's active-low IRQ pin, is set while any flag is set whose
//! enable bit in register B is set; reading register C clears all flags.
//! IRQ 8 is edge-triggered on the PC, so [`Rtc::take_irq`] reports each
//! *rising* edge of IRQF once, and nothing new can be signalled until the
//! guest reads register C, exactly as on real hardware.
//!
//! Events are accounted lazily, on register accesses and [`Rtc::update`];
//! several periods that passed between two calls coalesce into one (see the
//! PIT's module documentation for why that is the right choice for a VMM).
//! Only the most recent second boundary is compared with the alarm, so an
//! alarm for an exact time needs an `update` during that second:
//! [`Rtc::next_deadline`] asks for one every second while AIE or UIE is set.
//! While updates are inhibited (SET or divider reset) no flags are set.
//!
//! The square-wave output (SQWE), daylight-saving (DSE) and the equipment
//! and memory-size CMOS bytes (0x10, 0x14-0x18, 0x30-0x31, 0x34-0x35) are not
//! modelled: the bits are stored, the bytes read as 0.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::debug;

use crate::bus::{read_bytewise, write_bytewise, IoOutcome, PioDevice};
use crate::clock::Clock;

/// Index (address) port; bit 7 of a write gates NMI.
pub const RTC_INDEX_PORT: u16 = 0x70;
/// Data port for the selected CMOS byte.
pub const RTC_DATA_PORT: u16 = 0x71;
/// The RTC decodes two ports.
pub const RTC_PORT_COUNT: u16 = 2;
/// The RTC's ISA IRQ (slave 8259A input 0).
pub const RTC_IRQ: u8 = 8;
/// Bytes of CMOS RAM, clock registers included.
pub const CMOS_SIZE: usize = 128;

/// Clock register: seconds.
pub const REG_SECONDS: u8 = 0x00;
/// Alarm register: seconds.
pub const REG_SECONDS_ALARM: u8 = 0x01;
/// Clock register: minutes.
pub const REG_MINUTES: u8 = 0x02;
/// Alarm register: minutes.
pub const REG_MINUTES_ALARM: u8 = 0x03;
/// Clock register: hours (bit 7 = PM in 12-hour mode).
pub const REG_HOURS: u8 = 0x04;
/// Alarm register: hours.
pub const REG_HOURS_ALARM: u8 = 0x05;
/// Clock register: day of week, 1 = Sunday.
pub const REG_DAY_OF_WEEK: u8 = 0x06;
/// Clock register: day of month.
pub const REG_DAY_OF_MONTH: u8 = 0x07;
/// Clock register: month.
pub const REG_MONTH: u8 = 0x08;
/// Clock register: year within the century.
pub const REG_YEAR: u8 = 0x09;
/// Register A: UIP, divider and periodic rate.
pub const REG_A: u8 = 0x0a;
/// Register B: control.
pub const REG_B: u8 = 0x0b;
/// Register C: interrupt flags (read-only, cleared by reading).
pub const REG_C: u8 = 0x0c;
/// Register D: valid RAM and time (read-only).
pub const REG_D: u8 = 0x0d;
/// The century byte (PC/AT convention; the FADT's `CENTURY` field).
pub const REG_CENTURY: u8 = 0x32;

/// Register A bit 7: update in progress (read-only).
pub const REG_A_UIP: u8 = 0x80;
/// Register A bits 6-4: divider (010 = 32.768 kHz time base, running).
pub const REG_A_DV_MASK: u8 = 0x70;
/// Register A bits 3-0: periodic interrupt rate select.
pub const REG_A_RS_MASK: u8 = 0x0f;
/// Register A after power-up as a PC BIOS leaves it: 32.768 kHz, 1024 Hz.
pub const REG_A_DEFAULT: u8 = 0x26;
/// Register B bit 7: inhibit updates so the clock can be set.
pub const REG_B_SET: u8 = 0x80;
/// Register B bit 6: periodic interrupt enable.
pub const REG_B_PIE: u8 = 0x40;
/// Register B bit 5: alarm interrupt enable.
pub const REG_B_AIE: u8 = 0x20;
/// Register B bit 4: update-ended interrupt enable.
pub const REG_B_UIE: u8 = 0x10;
/// Register B bit 2: data mode, 1 = binary, 0 = BCD.
pub const REG_B_DM_BINARY: u8 = 0x04;
/// Register B bit 1: 1 = 24-hour mode, 0 = 12-hour mode.
pub const REG_B_24H: u8 = 0x02;
/// Register B after power-up as a PC BIOS leaves it: 24-hour, BCD.
pub const REG_B_DEFAULT: u8 = REG_B_24H;
/// Register C bit 7: an enabled flag is set (the IRQ pin is asserted).
pub const REG_C_IRQF: u8 = 0x80;
/// Register C bit 6: periodic interrupt flag.
pub const REG_C_PF: u8 = 0x40;
/// Register C bit 5: alarm flag.
pub const REG_C_AF: u8 = 0x20;
/// Register C bit 4: update-ended flag.
pub const REG_C_UF: u8 = 0x10;
/// Register D bit 7: valid RAM and time (the battery is good).
pub const REG_D_VRT: u8 = 0x80;

/// The flag bits of register C, which line up with their enables in B.
const FLAG_MASK: u8 = REG_C_PF | REG_C_AF | REG_C_UF;
/// An alarm byte with both high bits set matches any value.
const ALARM_DONT_CARE: u8 = 0xc0;
/// Hours register bit 7 in 12-hour mode.
const HOURS_PM: u8 = 0x80;
/// UIP rises this long before the update cycle at each second boundary.
const UIP_LEAD_NS: i128 = 244_000;
/// The time base: a 32.768 kHz crystal divided down to 1 Hz.
const TIME_BASE_HZ: i128 = 32_768;
const NANOS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// Calendar fields of an instant, in the binary form the registers encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    year: i64,
    /// 1-12.
    month: u8,
    /// 1-31.
    day: u8,
    /// 1-7, 1 = Sunday (the MC146818A convention PC BIOSes use).
    weekday: u8,
    /// 0-23.
    hour: u8,
    minute: u8,
    second: u8,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let (m, d) = (i64::from(month.clamp(1, 12)), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // In range by construction: day 1-31, month 1-12.
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl DateTime {
    /// The calendar fields of `secs` seconds since the Unix epoch (UTC).
    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(SECS_PER_DAY);
        let sod = secs.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        // 1970-01-01 was a Thursday, weekday 5 when Sunday is 1.
        let weekday = ((days + 4).rem_euclid(7) + 1) as u8;
        Self {
            year,
            month,
            day,
            weekday,
            hour: (sod / 3600) as u8,
            minute: (sod / 60 % 60) as u8,
            second: (sod % 60) as u8,
        }
    }
}

fn to_bcd(v: u8) -> u8 {
    let v = v % 100;
    ((v / 10) << 4) | (v % 10)
}

/// Decodes a BCD byte without validating it: 0xFF decodes as 165, which the
/// date arithmetic tolerates like any other out-of-range field.
fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0x0f)
}

/// Whether a clock update must not happen with these register values:
/// SET is set or the divider is held in reset. Like QEMU, DV values 000 and
/// 001 (the 4.19 MHz and 1.05 MHz time bases) count as running.
fn inhibited(reg_a: u8, reg_b: u8) -> bool {
    reg_b & REG_B_SET != 0 || (reg_a & REG_A_DV_MASK) > 0x20
}

/// The periodic interrupt period in 32.768 kHz ticks for rate select `rs`
/// (datasheet table 4; rates 1 and 2 repeat rates 8 and 9), or `None` for 0.
fn period_ticks(rs: u8) -> Option<i128> {
    match rs & REG_A_RS_MASK {
        0 => None,
        1 => Some(1 << 7),
        2 => Some(1 << 8),
        r => Some(1 << (r - 1)),
    }
}

/// Whole 32.768 kHz ticks in `ns` nanoseconds since the epoch.
fn base_ticks(ns: i128) -> i128 {
    (ns * TIME_BASE_HZ).div_euclid(NANOS_PER_SEC)
}

/// Signed nanoseconds since the Unix epoch.
fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The MC146818A with its 128 bytes of CMOS RAM.
pub struct Rtc {
    /// Clock bytes hold a snapshot only while updates are inhibited;
    /// otherwise they are computed on read. Registers A and B live here.
    cmos: [u8; CMOS_SIZE],
    /// Selected byte (bits 6-0 of the last index write).
    index: u8,
    /// Bit 7 of the last index write.
    nmi_disabled: bool,
    /// Register C flags (PF, AF, UF).
    flags: u8,
    clock: Arc<dyn Clock>,
    /// Guest time (ns since the Unix epoch) at `anchor_at`.
    anchor_ns: i128,
    anchor_at: Instant,
    /// Guest time at which updates were inhibited, while they are.
    halted_at: Option<i128>,
    /// Guest time up to which flags have been accounted.
    synced_ns: i128,
    /// IRQF: the IRQ pin is asserted.
    irq_line: bool,
    /// A rising edge of IRQF not yet collected by [`Rtc::take_irq`].
    irq_edge: bool,
}

impl std::fmt::Debug for Rtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtc")
            .field("index", &self.index)
            .field("reg_a", &self.cmos[usize::from(REG_A)])
            .field("reg_b", &self.cmos[usize::from(REG_B)])
            .field("flags", &self.flags)
            .field("halted", &self.halted_at.is_some())
            .finish_non_exhaustive()
    }
}

impl Rtc {
    /// An RTC showing the host's current UTC time, timed by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with_wall_time(clock, SystemTime::now())
    }

    /// An RTC whose time is `wall` at the instant `clock.now()` (for
    /// deterministic tests).
    pub fn with_wall_time(clock: Arc<dyn Clock>, wall: SystemTime) -> Self {
        let now = clock.now();
        let anchor_ns = unix_nanos(wall);
        let mut cmos = [0u8; CMOS_SIZE];
        cmos[usize::from(REG_A)] = REG_A_DEFAULT;
        cmos[usize::from(REG_B)] = REG_B_DEFAULT;
        cmos[usize::from(REG_D)] = REG_D_VRT;
        Self {
            cmos,
            index: 0,
            nmi_disabled: false,
            flags: 0,
            clock,
            anchor_ns,
            anchor_at: now,
            halted_at: None,
            synced_ns: anchor_ns,
            irq_line: false,
            irq_edge: false,
        }
    }

    /// Whether the guest's last index write had bit 7 (NMI disable) set.
    pub fn nmi_disabled(&self) -> bool {
        self.nmi_disabled
    }

    fn reg_a(&self) -> u8 {
        self.cmos[usize::from(REG_A)]
    }

    fn reg_b(&self) -> u8 {
        self.cmos[usize::from(REG_B)]
    }

    /// Guest time in ns since the Unix epoch at host instant `now`.
    fn guest_ns(&self, now: Instant) -> i128 {
        match self.halted_at {
            Some(t) => t,
            None => {
                self.anchor_ns + now.saturating_duration_since(self.anchor_at).as_nanos() as i128
            }
        }
    }

    fn is_clock_register(index: u8) -> bool {
        matches!(
            index,
            REG_SECONDS
                | REG_MINUTES
                | REG_HOURS
                | REG_DAY_OF_WEEK
                | REG_DAY_OF_MONTH
                | REG_MONTH
                | REG_YEAR
                | REG_CENTURY
        )
    }

    /// A binary value as the data mode (DM) presents it.
    fn encode(&self, v: u8) -> u8 {
        if self.reg_b() & REG_B_DM_BINARY != 0 {
            v
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.reg_b() & REG_B_DM_BINARY != 0 {
            v
        } else {
            from_bcd(v)
        }
    }

    /// Clock register `index` for time `t` in the current data mode.
    fn encode_register(&self, index: u8, t: &DateTime) -> u8 {
        match index {
            REG_SECONDS => self.encode(t.second),
            REG_MINUTES => self.encode(t.minute),
            REG_HOURS if self.reg_b() & REG_B_24H != 0 => self.encode(t.hour),
            REG_HOURS => {
                let h12 = match t.hour % 12 {
                    0 => 12,
                    h => h,
                };
                self.encode(h12) | if t.hour >= 12 { HOURS_PM } else { 0 }
            }
            REG_DAY_OF_WEEK => self.encode(t.weekday),
            REG_DAY_OF_MONTH => self.encode(t.day),
            REG_MONTH => self.encode(t.month),
            // In range 0..100 by the Euclidean remainder.
            REG_YEAR => self.encode(t.year.rem_euclid(100) as u8),
            REG_CENTURY => self.encode(t.year.div_euclid(100).rem_euclid(100) as u8),
            _ => self.cmos[usize::from(index & 0x7f)],
        }
    }

    /// Copies the clock at guest time `ns` into the clock bytes.
    fn snapshot(&mut self, ns: i128) {
        let t = DateTime::from_unix(Self::whole_seconds(ns));
        for index in [
            REG_SECONDS,
            REG_MINUTES,
            REG_HOURS,
            REG_DAY_OF_WEEK,
            REG_DAY_OF_MONTH,
            REG_MONTH,
            REG_YEAR,
            REG_CENTURY,
        ] {
            self.cmos[usize::from(index)] = self.encode_register(index, &t);
        }
    }

    fn whole_seconds(ns: i128) -> i64 {
        i64::try_from(ns.div_euclid(NANOS_PER_SEC)).unwrap_or(i64::MAX)
    }

    /// The time the clock bytes describe, in seconds since the Unix epoch.
    /// Out-of-range fields are not rejected; they just add up.
    fn registers_to_unix(&self) -> i64 {
        let byte = |index: u8| self.cmos[usize::from(index)];
        let hours = byte(REG_HOURS);
        let hour = if self.reg_b() & REG_B_24H != 0 {
            self.decode(hours)
        } else {
            self.decode(hours & !HOURS_PM) % 12 + if hours & HOURS_PM != 0 { 12 } else { 0 }
        };
        let year = i64::from(self.decode(byte(REG_CENTURY))) * 100
            + i64::from(self.decode(byte(REG_YEAR)));
        let days = days_from_civil(
            year,
            self.decode(byte(REG_MONTH)),
            self.decode(byte(REG_DAY_OF_MONTH)),
        );
        days * SECS_PER_DAY
            + i64::from(hour) * 3600
            + i64::from(self.decode(byte(REG_MINUTES))) * 60
            + i64::from(self.decode(byte(REG_SECONDS)))
    }

    /// Restarts the clock: guest time is `ns` at `now`.
    fn anchor(&mut self, ns: i128, now: Instant) {
        self.anchor_ns = ns;
        self.anchor_at = now;
        self.synced_ns = ns;
    }

    /// Accounts for the periodic, update and alarm events up to `now`.
    fn sync(&mut self, now: Instant) {
        if self.halted_at.is_some() {
            return;
        }
        let cur = self.guest_ns(now);
        let prev = self.synced_ns;
        if cur <= prev {
            return;
        }
        self.synced_ns = cur;
        if cur.div_euclid(NANOS_PER_SEC) > prev.div_euclid(NANOS_PER_SEC) {
            self.flags |= REG_C_UF;
            let t = DateTime::from_unix(Self::whole_seconds(cur));
            let matches = [
                (REG_SECONDS_ALARM, REG_SECONDS),
                (REG_MINUTES_ALARM, REG_MINUTES),
                (REG_HOURS_ALARM, REG_HOURS),
            ]
            .iter()
            .all(|&(alarm, reg)| {
                let a = self.cmos[usize::from(alarm)];
                a & ALARM_DONT_CARE == ALARM_DONT_CARE || a == self.encode_register(reg, &t)
            });
            if matches {
                self.flags |= REG_C_AF;
            }
        }
        if let Some(p) = period_ticks(self.reg_a()) {
            if base_ticks(cur).div_euclid(p) > base_ticks(prev).div_euclid(p) {
                self.flags |= REG_C_PF;
            }
        }
        self.update_line();
    }

    /// Recomputes IRQF and records a rising edge.
    fn update_line(&mut self) {
        let line = self.flags & self.reg_b() & FLAG_MASK != 0;
        if line && !self.irq_line {
            self.irq_edge = true;
        }
        self.irq_line = line;
    }

    /// Applies a change of registers A/B at `now`: stops or restarts the
    /// clock. `divider_was_stopped` says whether register A held the divider
    /// in reset before the change.
    fn retime(&mut self, now: Instant, divider_was_stopped: bool) {
        let inhibit = inhibited(self.reg_a(), self.reg_b());
        match (self.halted_at, inhibit) {
            (None, true) => {
                let t = self.guest_ns(now);
                self.snapshot(t);
                self.halted_at = Some(t);
            }
            (Some(t), false) => {
                // "The first update cycle begins one-half second later"
                // after the divider leaves reset; a SET release keeps the
                // divider's phase.
                let subsec = if divider_was_stopped {
                    NANOS_PER_SEC / 2
                } else {
                    t.rem_euclid(NANOS_PER_SEC)
                };
                let secs = i128::from(self.registers_to_unix());
                self.halted_at = None;
                self.anchor(secs * NANOS_PER_SEC + subsec, now);
            }
            _ => {}
        }
    }

    fn uip(&self, now: Instant) -> bool {
        self.halted_at.is_none()
            && self.guest_ns(now).rem_euclid(NANOS_PER_SEC) >= NANOS_PER_SEC - UIP_LEAD_NS
    }

    /// Reads CMOS byte `index` (bit 7 ignored) as of `now`.
    pub fn read_register_at(&mut self, index: u8, now: Instant) -> u8 {
        let index = index & 0x7f;
        match index {
            _ if Self::is_clock_register(index) && self.halted_at.is_none() => {
                let t = DateTime::from_unix(Self::whole_seconds(self.guest_ns(now)));
                self.encode_register(index, &t)
            }
            REG_A => (self.reg_a() & !REG_A_UIP) | if self.uip(now) { REG_A_UIP } else { 0 },
            REG_C => {
                self.sync(now);
                let value = self.flags | if self.irq_line { REG_C_IRQF } else { 0 };
                self.flags = 0;
                self.irq_line = false;
                value
            }
            REG_D => REG_D_VRT,
            _ => self.cmos[usize::from(index)],
        }
    }

    /// Writes CMOS byte `index` (bit 7 ignored) as of `now`.
    pub fn write_register_at(&mut self, index: u8, value: u8, now: Instant) {
        let index = index & 0x7f;
        match index {
            _ if Self::is_clock_register(index) => {
                if self.halted_at.is_some() {
                    self.cmos[usize::from(index)] = value;
                } else {
                    self.sync(now);
                    let t = self.guest_ns(now);
                    self.snapshot(t);
                    self.cmos[usize::from(index)] = value;
                    let secs = i128::from(self.registers_to_unix());
                    self.anchor(secs * NANOS_PER_SEC + t.rem_euclid(NANOS_PER_SEC), now);
                }
            }
            REG_A => {
                self.sync(now);
                let was_stopped = (self.reg_a() & REG_A_DV_MASK) > 0x20;
                self.cmos[usize::from(REG_A)] = value & !REG_A_UIP;
                self.retime(now, was_stopped);
            }
            REG_B => {
                self.sync(now);
                let was_stopped = (self.reg_a() & REG_A_DV_MASK) > 0x20;
                // "UIE is cleared to 0 when the SET bit goes high."
                let value = if value & REG_B_SET != 0 {
                    value & !REG_B_UIE
                } else {
                    value
                };
                self.cmos[usize::from(REG_B)] = value;
                self.retime(now, was_stopped);
                self.update_line();
            }
            REG_C | REG_D => debug!(
                index,
                value, "mc146818: write to read-only register ignored"
            ),
            _ => self.cmos[usize::from(index)] = value,
        }
    }

    /// Reads the 8-bit port `port` as of `now`; unknown ports read 0xFF.
    pub fn read_port_at(&mut self, port: u16, now: Instant) -> u8 {
        match port {
            RTC_DATA_PORT => self.read_register_at(self.index, now),
            // The index register is write-only; QEMU also floats the bus.
            _ => 0xff,
        }
    }

    /// Writes the 8-bit port `port` as of `now`; unknown ports are ignored.
    pub fn write_port_at(&mut self, port: u16, value: u8, now: Instant) {
        match port {
            RTC_INDEX_PORT => {
                self.index = value & 0x7f;
                self.nmi_disabled = value & 0x80 != 0;
            }
            RTC_DATA_PORT => self.write_register_at(self.index, value, now),
            _ => debug!(
                port = format_args!("{port:#x}"),
                value, "mc146818: write to unknown port ignored"
            ),
        }
    }

    /// Accounts for the clock's events up to `now`.
    pub fn update(&mut self, now: Instant) {
        self.sync(now);
    }

    /// Whether IRQF rose since the last call, i.e. whether IRQ 8 should be
    /// pulsed. Consumes the edge.
    pub fn take_irq(&mut self) -> bool {
        std::mem::take(&mut self.irq_edge)
    }

    /// When the next enabled event (periodic, update-ended or alarm check)
    /// is due, for sleeping in HLT. `None` when no interrupt is enabled, the
    /// clock is stopped, or IRQF is still set (nothing new can be signalled
    /// until the guest reads register C). May lie in the past if
    /// [`Rtc::update`] has not been called lately.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.halted_at.is_some() || self.irq_line {
            return None;
        }
        let b = self.reg_b();
        let periodic = (b & REG_B_PIE != 0)
            .then(|| period_ticks(self.reg_a()))
            .flatten()
            .map(|p| {
                let tick = (base_ticks(self.synced_ns).div_euclid(p) + 1) * p;
                // Round up so that base_ticks(deadline) reaches `tick`.
                (tick * NANOS_PER_SEC + TIME_BASE_HZ - 1).div_euclid(TIME_BASE_HZ)
            });
        let second = (b & (REG_B_UIE | REG_B_AIE) != 0)
            .then(|| (self.synced_ns.div_euclid(NANOS_PER_SEC) + 1) * NANOS_PER_SEC);
        let due = match (periodic, second) {
            (Some(p), Some(s)) => p.min(s),
            (p, s) => p.or(s)?,
        };
        let after = u64::try_from(due - self.anchor_ns).ok()?;
        self.anchor_at.checked_add(Duration::from_nanos(after))
    }
}

impl PioDevice for Rtc {
    fn read(&mut self, port: u16, data: &mut [u8]) {
        let now = self.clock.now();
        read_bytewise(port, data, |p| self.read_port_at(p, now));
    }

    fn write(&mut self, port: u16, data: &[u8]) -> IoOutcome {
        let now = self.clock.now();
        write_bytewise(port, data, |p, v| self.write_port_at(p, v, now));
        IoOutcome::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// 2024-02-29 23:59:58 UTC, a Thursday.
    const LEAP_EVE: u64 = 1_709_251_198;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// An RTC whose time is `secs` + `sub` at the clock's start.
    fn rtc_at(secs: u64, sub: Duration) -> (Rtc, Arc<ManualClock>, Instant) {
        let t0 = Instant::now();
        let clock = Arc::new(ManualClock::new(t0));
        let wall = UNIX_EPOCH + Duration::from_secs(secs) + sub;
        (Rtc::with_wall_time(clock.clone(), wall), clock, t0)
    }

    /// `CMOS_READ`: index then data, through the port interface.
    fn cmos_read(rtc: &mut Rtc, index: u8) -> u8 {
        rtc.write(RTC_INDEX_PORT, &[index]);
        let mut b = [0u8];
        rtc.read(RTC_DATA_PORT, &mut b);
        b[0]
    }

    fn cmos_write(rtc: &mut Rtc, index: u8, value: u8) {
        rtc.write(RTC_INDEX_PORT, &[index]);
        rtc.write(RTC_DATA_PORT, &[value]);
    }

    /// Linux's `mc146818_avoid_UIP` + `mc146818_get_time_callback`
    /// (drivers/rtc/rtc-mc146818-lib.c): the raw bytes sec, min, hour, mday,
    /// mon, year, century and the control register, or `None` after ten
    /// failed attempts. `mdelay(1)` advances the clock by 1 ms.
    fn linux_get_time(rtc: &mut Rtc, clock: &ManualClock) -> Option<[u8; 8]> {
        for _ in 0..10 {
            let seconds = cmos_read(rtc, REG_SECONDS);
            if cmos_read(rtc, REG_A) & REG_A_UIP != 0 {
                clock.advance(ms(1));
                continue;
            }
            if seconds != cmos_read(rtc, REG_SECONDS) {
                continue;
            }
            let v = [
                seconds,
                cmos_read(rtc, REG_MINUTES),
                cmos_read(rtc, REG_HOURS),
                cmos_read(rtc, REG_DAY_OF_MONTH),
                cmos_read(rtc, REG_MONTH),
                cmos_read(rtc, REG_YEAR),
                cmos_read(rtc, REG_CENTURY),
                cmos_read(rtc, REG_B),
            ];
            if cmos_read(rtc, REG_A) & REG_A_UIP != 0 {
                clock.advance(ms(1));
                continue;
            }
            if seconds != cmos_read(rtc, REG_SECONDS) {
                continue;
            }
            return Some(v);
        }
        None
    }

    #[test]
    fn calendar_conversions() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for d in [-800_000, -1, 0, 59, 19_782, 2_932_896] {
            let (y, m, day) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, day), d);
        }
        let t = DateTime::from_unix(LEAP_EVE as i64);
        assert_eq!(
            t,
            DateTime {
                year: 2024,
                month: 2,
                day: 29,
                weekday: 5,
                hour: 23,
                minute: 59,
                second: 58
            }
        );
        assert_eq!(to_bcd(59), 0x59);
        assert_eq!(from_bcd(0x59), 59);
    }

    #[test]
    fn power_up_registers() {
        let (mut rtc, _clock, _t0) = rtc_at(LEAP_EVE, ms(100));
        assert_eq!(cmos_read(&mut rtc, REG_A), 0x26);
        assert_eq!(cmos_read(&mut rtc, REG_B), 0x02);
        assert_eq!(cmos_read(&mut rtc, REG_C), 0x00);
        assert_eq!(cmos_read(&mut rtc, REG_D), 0x80);
        // rtc-cmos's "not accessible" check: bit 6 of register D is 0.
        assert_eq!(cmos_read(&mut rtc, REG_D) & 0x40, 0);
        assert_eq!(cmos_read(&mut rtc, 0x10), 0);
    }

    #[test]
    fn linux_get_time_bcd_24h() {
        let (mut rtc, clock, _t0) = rtc_at(LEAP_EVE, ms(100));
        assert_eq!(
            linux_get_time(&mut rtc, &clock),
            Some([0x58, 0x59, 0x23, 0x29, 0x02, 0x24, 0x20, 0x02])
        );
        assert_eq!(cmos_read(&mut rtc, REG_DAY_OF_WEEK), 5);
        // Two seconds later it is March 1st, a Friday.
        clock.advance(ms(2000));
        assert_eq!(
            linux_get_time(&mut rtc, &clock),
            Some([0x00, 0x00, 0x00, 0x01, 0x03, 0x24, 0x20, 0x02])
        );
        assert_eq!(cmos_read(&mut rtc, REG_DAY_OF_WEEK), 6);
    }

    #[test]
    fn linux_get_time_binary_and_12h() {
        let (mut rtc, clock, _t0) = rtc_at(LEAP_EVE, ms(100));
        cmos_write(&mut rtc, REG_B, REG_B_24H | REG_B_DM_BINARY);
        assert_eq!(
            linux_get_time(&mut rtc, &clock),
            Some([58, 59, 23, 29, 2, 24, 20, 0x06])
        );
        // 12-hour binary: 11 PM.
        cmos_write(&mut rtc, REG_B, REG_B_DM_BINARY);
        assert_eq!(cmos_read(&mut rtc, REG_HOURS), 0x80 | 11);
        // 12-hour BCD: 11 PM, then 12 AM after midnight.
        cmos_write(&mut rtc, REG_B, 0);
        assert_eq!(cmos_read(&mut rtc, REG_HOURS), 0x91);
        clock.advance(ms(2000));
        assert_eq!(cmos_read(&mut rtc, REG_HOURS), 0x12);
    }

    #[test]
    fn uip_is_set_only_just_before_the_update() {
        // 2 s minus 100 us: inside the 244 us window.
        let (mut rtc, clock, _t0) =
            rtc_at(LEAP_EVE, ms(1000) - Duration::from_micros(100) + ms(1000));
        assert_eq!(cmos_read(&mut rtc, REG_A), 0xa6);
        assert_eq!(cmos_read(&mut rtc, REG_SECONDS), 0x59);
        // Linux waits 1 ms and reads the new second.
        assert_eq!(
            linux_get_time(&mut rtc, &clock),
            Some([0x00, 0x00, 0x00, 0x01, 0x03, 0x24, 0x20, 0x02])
        );
        assert_eq!(cmos_read(&mut rtc, REG_A), 0x26);
        clock.advance(ms(998) + Duration::from_micros(855));
        assert_eq!(cmos_read(&mut rtc, REG_A), 0x26);
        clock.advance(Duration::from_micros(2));
        assert_eq!(cmos_read(&mut rtc, REG_A), 0xa6);
    }

    #[test]
    fn register_a_divider_and_rate_are_writable() {
        let (mut rtc, _clock, _t0) = rtc_at(LEAP_EVE, ms(100));
        cmos_write(&mut rtc, REG_A, 0x2f);
        assert_eq!(cmos_read(&mut rtc, REG_A), 0x2f);
        // UIP is read-only; a divider in reset never shows UIP.
        cmos_write(&mut rtc, REG_A, 0xff);
        assert_eq!(cmos_read(&mut rtc, REG_A), 0x7f);
        cmos_write(&mut rtc, REG_A, 0x26);
        assert_eq!(cmos_read(&mut rtc, REG_A), 0x26);
    }

    /// Linux's `mc146818_set_time` on Intel (SET, then divider reset, then
    /// the clock bytes, then both released).
    #[test]
    fn linux_set_time_freezes_and_restarts_the_clock() {
        let (mut rtc, clock, _t0) = rtc_at(LEAP_EVE, ms(100));
        cmos_write(&mut rtc, REG_B, REG_B_24H | REG_B_UIE);
        let control = cmos_read(&mut rtc, REG_B);
        cmos_write(&mut rtc, REG_B, control | REG_B_SET);
        // SET clears UIE.
        assert_eq!(cmos_read(&mut rtc, REG_B), 0x82);
        let freq = cmos_read(&mut rtc, REG_A);
        cmos_write(&mut rtc, REG_A, freq | 0x60);
        // 2030-06-15 12:34:56.
        for (reg, v) in [
            (REG_YEAR, 0x30),
            (REG_MONTH, 0x06),
            (REG_DAY_OF_MONTH, 0x15),
            (REG_HOURS, 0x12),
            (REG_MINUTES, 0x34),
            (REG_SECONDS, 0x56),
            (REG_CENTURY, 0x20),
        ] {
            cmos_write(&mut rtc, reg, v);
        }
        // Frozen while inhibited.
        clock.advance(ms(3000));
        assert_eq!(cmos_read(&mut rtc, REG_SECONDS), 0x56);
        assert_eq!(cmos_read(&mut rtc, REG_A) & REG_A_UIP, 0);
        cmos_write(&mut rtc, REG_B, control);
        assert_eq!(cmos_read(&mut rtc, REG_B), control);
        clock.advance(ms(3000));
        assert_eq!(cmos_read(&mut rtc, REG_SECONDS), 0x56);
        cmos_write(&mut rtc, REG_A, freq);
        // The first update comes half a second after the divider restarts.
        clock.advance(ms(499));
        assert_eq!(
            linux_get_time(&mut rtc, &clock),
            Some([0x56, 0x34, 0x12, 0x15, 0x06, 0x30, 0x20, control])
        );
        clock.advance(ms(2));
        assert_eq!(cmos_read(&mut rtc, REG_SECONDS), 0x57);
        // 2030-06-15 was a Saturday.
        assert_eq!(cmos_read(&mut rtc, REG_DAY_OF_WEEK), 7);
    }

    #[test]
    fn clock_register_write_while_running_moves_the_time() {
        let (mut rtc, clock, _t0) = rtc_at(LEAP_EVE, ms(100));
        cmos_write(&mut rtc, REG_MINUTES, 0x10);
        assert_eq!(cmos_read(&mut rtc, REG_MINUTES), 0x10);
        assert_eq!(cmos_read(&mut rtc, REG_SECONDS), 0x58);
        assert_eq!(cmos_read(&mut rtc, REG_HOURS), 0x23);
        // The sub-second phase is kept: the next second is 900 ms away.
        clock.advance(ms(899));
        assert_eq!(cmos_read(&mut rtc, REG_SECONDS), 0x58);
        clock.advance(ms(1));
        assert_eq!(cmos_read(&mut rtc, REG_SECONDS), 0x59);
        // Writes to the weekday are not kept: it follows the date.
        cmos_write(&mut rtc, REG_DAY_OF_WEEK, 1);
        assert_eq!(cmos_read(&mut rtc, REG_DAY_OF_WEEK), 5);
    }

    #[test]
    fn periodic_interrupt_at_1024_hz() {
        let (mut rtc, clock, t0) = rtc_at(LEAP_EVE, Duration::ZERO);
        cmos_write(&mut rtc, REG_A, 0x26);
        cmos_write(&mut rtc, REG_B, REG_B_24H | REG_B_PIE);
        assert!(!rtc.take_irq());
        // 1024 Hz: a period is 976562.5 ns, rounded up.
        let first = t0 + Duration::from_nanos(976_563);
        assert_eq!(rtc.next_deadline(), Some(first));
        rtc.update(first - Duration::from_nanos(1));
        assert!(!rtc.take_irq());
        rtc.update(first);
        assert!(rtc.take_irq());
        assert!(!rtc.take_irq());
        // IRQF stays set until register C is read: no deadline, no edge.
        assert_eq!(rtc.next_deadline(), None);
        rtc.update(t0 + ms(5));
        assert!(!rtc.take_irq());
        clock.set(t0 + ms(5));
        assert_eq!(cmos_read(&mut rtc, REG_C), REG_C_IRQF | REG_C_PF);
        assert_eq!(cmos_read(&mut rtc, REG_C), 0);
        // 5 ms = 163.84 ticks of 32 kHz; the next boundary is tick 192.
        assert_eq!(
            rtc.next_deadline(),
            Some(t0 + Duration::from_nanos(5_859_375))
        );
        rtc.update(t0 + ms(6));
        assert!(rtc.take_irq());
    }

    #[test]
    fn periodic_flag_without_pie_and_late_enable() {
        let (mut rtc, clock, t0) = rtc_at(LEAP_EVE, Duration::ZERO);
        // Rate 15 = 2 Hz. PF is set without PIE, but no IRQ.
        cmos_write(&mut rtc, REG_A, 0x2f);
        assert_eq!(rtc.next_deadline(), None);
        rtc.update(t0 + ms(600));
        assert!(!rtc.take_irq());
        // Enabling PIE with PF pending raises IRQF at once.
        clock.set(t0 + ms(600));
        cmos_write(&mut rtc, REG_B, REG_B_24H | REG_B_PIE);
        assert!(rtc.take_irq());
        assert_eq!(cmos_read(&mut rtc, REG_C), REG_C_IRQF | REG_C_PF);
        assert_eq!(rtc.next_deadline(), Some(t0 + ms(1000)));
        // Rate 0 disables the periodic interrupt.
        cmos_write(&mut rtc, REG_A, 0x20);
        assert_eq!(rtc.next_deadline(), None);
        rtc.update(t0 + ms(5000));
        assert!(!rtc.take_irq());
    }

    #[test]
    fn update_ended_interrupt_every_second() {
        // 23:58:18.25: the all-zero alarm (00:00:00) stays out of the way.
        let (mut rtc, clock, t0) = rtc_at(LEAP_EVE - 100, ms(250));
        // No periodic rate, so PF stays clear.
        cmos_write(&mut rtc, REG_A, 0x20);
        // UF is set every second even without UIE.
        clock.set(t0 + ms(800));
        assert_eq!(cmos_read(&mut rtc, REG_C), REG_C_UF);
        cmos_write(&mut rtc, REG_B, REG_B_24H | REG_B_UIE);
        assert_eq!(rtc.next_deadline(), Some(t0 + ms(1750)));
        rtc.update(t0 + ms(1749));
        assert!(!rtc.take_irq());
        rtc.update(t0 + ms(1750));
        assert!(rtc.take_irq());
        clock.set(t0 + ms(1750));
        assert_eq!(cmos_read(&mut rtc, REG_C), REG_C_IRQF | REG_C_UF);
        assert_eq!(rtc.next_deadline(), Some(t0 + ms(2750)));
    }

    #[test]
    fn alarm_interrupt_with_dont_care_bytes() {
        // 23:59:58.5; alarm at second 0 of any minute of any hour.
        let (mut rtc, clock, t0) = rtc_at(LEAP_EVE, ms(500));
        cmos_write(&mut rtc, REG_A, 0x20);
        cmos_write(&mut rtc, REG_SECONDS_ALARM, 0x00);
        cmos_write(&mut rtc, REG_MINUTES_ALARM, 0xff);
        cmos_write(&mut rtc, REG_HOURS_ALARM, 0xc0);
        cmos_write(&mut rtc, REG_B, REG_B_24H | REG_B_AIE);
        assert_eq!(cmos_read(&mut rtc, REG_SECONDS_ALARM), 0x00);
        assert_eq!(rtc.next_deadline(), Some(t0 + ms(500)));
        rtc.update(t0 + ms(500));
        assert!(!rtc.take_irq());
        rtc.update(t0 + ms(1500));
        assert!(rtc.take_irq());
        clock.set(t0 + ms(1500));
        assert_eq!(cmos_read(&mut rtc, REG_C), REG_C_IRQF | REG_C_AF | REG_C_UF);
        rtc.update(t0 + ms(2500));
        assert!(!rtc.take_irq());
    }

    #[test]
    fn cmos_ram_index_and_nmi_bit() {
        let (mut rtc, _clock, _t0) = rtc_at(LEAP_EVE, ms(100));
        for i in 0x0e..0x80u8 {
            if i != REG_CENTURY {
                cmos_write(&mut rtc, i, i ^ 0xa5);
            }
        }
        for i in 0x0e..0x80u8 {
            if i != REG_CENTURY {
                assert_eq!(cmos_read(&mut rtc, i), i ^ 0xa5);
            }
        }
        // Bit 7 of the index gates NMI and does not select a byte.
        rtc.write(RTC_INDEX_PORT, &[0x80 | 0x0e]);
        assert!(rtc.nmi_disabled());
        let mut b = [0u8];
        rtc.read(RTC_DATA_PORT, &mut b);
        assert_eq!(b[0], 0x0e ^ 0xa5);
        rtc.read(RTC_INDEX_PORT, &mut b);
        assert_eq!(b[0], 0xff);
        // Registers C and D are read-only.
        cmos_write(&mut rtc, REG_D, 0);
        assert_eq!(cmos_read(&mut rtc, REG_D), 0x80);
        cmos_write(&mut rtc, REG_C, 0xff);
        assert_eq!(cmos_read(&mut rtc, REG_C), 0);
    }

    #[test]
    fn wild_accesses_do_not_panic() {
        let (mut rtc, clock, t0) = rtc_at(0, Duration::ZERO);
        for v in 0..=255u8 {
            for index in 0..=255u8 {
                cmos_write(&mut rtc, index, v);
                let _ = cmos_read(&mut rtc, index);
            }
            clock.advance(Duration::from_micros(u64::from(v) * 997));
            rtc.update(clock.now());
            let _ = rtc.take_irq();
            let _ = rtc.next_deadline();
        }
        rtc.update(t0);
        // Times far from the epoch in both directions.
        let far = Rtc::with_wall_time(clock.clone(), UNIX_EPOCH - Duration::from_secs(1 << 40));
        drop(far);
        let mut far = Rtc::with_wall_time(clock.clone(), UNIX_EPOCH + Duration::from_secs(1 << 40));
        let _ = far.read_register_at(REG_CENTURY, clock.now());
        let mut buf = [0u8; 4];
        far.read(RTC_INDEX_PORT, &mut buf);
        far.write(0x72, &buf);
    }
}
