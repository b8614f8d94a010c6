//! The Intel 8254 programmable interval timer and the PC's port 0x61.
//!
//! Channel 0 drives IRQ 0 (the system tick), channel 1 historically drove
//! DRAM refresh and channel 2 drives the speaker; its gate and output are
//! wired to port 0x61 bits 0 and 5. Linux calibrates the TSC against channel
//! 2 in mode 0 by polling that output bit or the counter's MSB, so those
//! paths must track real time.
//!
//! References are to the Intel 8254 datasheet (order no. 231164): "Control
//! Word Format" (fig. 7), "Counter Latch Command" (fig. 9), "Read-Back
//! Command" (fig. 10-12), "Mode Definitions" (modes 0-5) and table 3
//! ("Gate Pin Operations Summary").
//!
//! # Time model
//!
//! Nothing is ticked. When a count starts, the channel records the
//! [`Instant`]; the counter value, the OUT level and the number of OUT rising
//! edges at any later instant follow in closed form from the elapsed
//! 1.193182 MHz clock ticks. Every method that depends on time takes the
//! instant explicitly (`*_at`, [`Pit::update`]); the [`PioDevice`]
//! implementation samples the [`Clock`] given at construction, because an
//! `in` from the guest has no timestamp of its own.
//!
//! # IRQ 0
//!
//! Channel 0's rising OUT edges are what the PC's edge-triggered IRQ 0 sees.
//! [`Pit::update`] counts the edges since the previous call; if there were
//! any, exactly one edge is reported by [`Pit::take_irq0_edge`], however many
//! periods passed. A VMM that was descheduled or busy translating for several
//! periods thus delivers one tick rather than a burst: the PIC latches only a
//! single request per IRQ line anyway, and Linux recovers lost ticks from its
//! clocksource, whereas a burst of back-to-back ticks would run its timer
//! handlers with no real time having passed. Programming that makes OUT rise
//! (a control word selecting a mode whose OUT starts high) is also an edge.
//!
//! # Simplifications
//!
//! * A count is loaded into the counting element at the moment it is written,
//!   not on the next CLK edge (at most 838 ns early).
//! * In modes 2 and 3 a new count written without a control word restarts
//!   the period immediately; the datasheet loads it at the end of the current
//!   period. Linux always writes a control word first.
//! * Mode 3 with an odd count uses a simple model: OUT is high for
//!   (N+1)/2 clocks and low for (N-1)/2, and the counter reads
//!   `N - (2 * elapsed mod N)`.
//! * The illegal count of 1 in modes 2 and 3 keeps OUT high (no IRQs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::bus::{read_bytewise, write_bytewise, IoOutcome, PioDevice};
use crate::clock::Clock;

/// The PIT input clock: 14.31818 MHz / 12.
pub const PIT_FREQUENCY_HZ: u64 = 1_193_182;

/// Counter 0 data port; counters 1 and 2 follow.
pub const PIT_CHANNEL0: u16 = 0x40;
/// Counter 1 data port.
pub const PIT_CHANNEL1: u16 = 0x41;
/// Counter 2 data port.
pub const PIT_CHANNEL2: u16 = 0x42;
/// Control word register (write-only).
pub const PIT_COMMAND: u16 = 0x43;
/// PC/AT "system control port B": speaker gate and channel 2 status.
pub const PORT_B: u16 = 0x61;

/// Port 0x61 bit 0: channel 2 GATE.
pub const PORT_B_GATE2: u8 = 0x01;
/// Port 0x61 bit 1: speaker data enable (stored, no sound).
pub const PORT_B_SPEAKER: u8 = 0x02;
/// Port 0x61 bit 4: toggles with every DRAM refresh request (15.085 us).
pub const PORT_B_REFRESH: u8 = 0x10;
/// Port 0x61 bit 5: channel 2 OUT.
pub const PORT_B_OUT2: u8 = 0x20;
/// Bits 0-3 of port 0x61 are read/write; 4-7 are status.
const PORT_B_WRITABLE: u8 = 0x0f;
/// DRAM refresh: the BIOS programs channel 1 to 18 clocks (15.085 us).
const REFRESH_TICKS: u64 = 18;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Whole PIT clocks in `d` (rounded down).
fn ticks_in(d: Duration) -> u64 {
    let t = d.as_nanos() * u128::from(PIT_FREQUENCY_HZ) / NANOS_PER_SEC;
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// The shortest duration containing `ticks` whole clocks (rounded up, so
/// `ticks_in(duration_of(t)) >= t`).
fn duration_of(ticks: u64) -> Duration {
    let hz = u128::from(PIT_FREQUENCY_HZ);
    let nanos = (u128::from(ticks) * NANOS_PER_SEC).div_ceil(hz);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn bcd_to_bin(v: u16) -> u32 {
    (0..4).fold(0, |acc, digit| {
        acc * 10 + u32::from((v >> (12 - 4 * digit)) & 0xf)
    })
}

fn bin_to_bcd(v: u16) -> u16 {
    (0..4).fold(0, |acc, digit| {
        acc | (((v / 10u16.pow(digit)) % 10) << (4 * digit))
    })
}

/// Control word RW field: how the counter's 16 bits travel over the 8-bit
/// data port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Least significant byte only.
    Lsb = 1,
    /// Most significant byte only.
    Msb = 2,
    /// LSB then MSB.
    Word = 3,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Not counting: the counter shows `count` (binary) and OUT is `out`.
    /// Covers the time between a control word and the initial count, modes
    /// 1 and 5 waiting for a gate trigger, and modes 2 and 3 with the gate low.
    Stopped { count: u16, out: bool },
    /// Counting down from `n`. The clocks elapsed since the count was loaded
    /// are `base` plus the clocks since `since`, or just `base` while
    /// `paused` (gate low in modes 0 and 4).
    Running {
        n: u32,
        since: Instant,
        base: u64,
        paused: bool,
    },
}

#[derive(Debug, Clone)]
struct Channel {
    /// Effective mode 0-5 (6 and 7 alias 2 and 3).
    mode: u8,
    /// M2-M0 as written, reported by the read-back status.
    mode_bits: u8,
    access: Access,
    bcd: bool,
    gate: bool,
    /// The initial count (in clocks) from the count register, `None` after a
    /// control word until a count is written.
    reload: Option<u32>,
    /// Status bit 6: a count was written but not yet loaded.
    null_count: bool,
    phase: Phase,
    /// The LSB of a two-byte count write, waiting for its MSB.
    write_lsb: Option<u8>,
    /// Read flip-flop of unlatched two-byte reads.
    read_msb_next: bool,
    /// Counter latch: the value and whether the MSB is read next.
    latched_count: Option<(u16, bool)>,
    /// Status latched by a read-back command.
    latched_status: Option<u8>,
    /// OUT rising edges of the current count already accounted for.
    edges_accounted: u64,
    /// A rising edge of OUT is waiting to be delivered.
    edge_pending: bool,
}

impl Channel {
    /// The state QEMU gives a PIT at reset, which is also what a PC BIOS
    /// leaves behind: mode 3, count 65536 (18.2 Hz), LSB/MSB access.
    fn new(gate: bool, now: Instant) -> Self {
        let n = 0x1_0000;
        Self {
            mode: 3,
            mode_bits: 3,
            access: Access::Word,
            bcd: false,
            gate,
            reload: Some(n),
            null_count: false,
            phase: if gate {
                Phase::Running {
                    n,
                    since: now,
                    base: 0,
                    paused: false,
                }
            } else {
                Phase::Stopped {
                    count: 0,
                    out: true,
                }
            },
            write_lsb: None,
            read_msb_next: false,
            latched_count: None,
            latched_status: None,
            edges_accounted: 0,
            edge_pending: false,
        }
    }

    fn modulus(&self) -> i128 {
        if self.bcd {
            10_000
        } else {
            0x1_0000
        }
    }

    fn elapsed(since: Instant, base: u64, paused: bool, now: Instant) -> u64 {
        if paused {
            base
        } else {
            base.saturating_add(ticks_in(now.saturating_duration_since(since)))
        }
    }

    /// Counter value (binary) `e` clocks after loading `n`.
    fn count_at(&self, n: u32, e: u64) -> u16 {
        let (n, e) = (i128::from(n), i128::from(e));
        let v = match self.mode {
            2 => n - e % n,
            3 => n - (2 * e) % n,
            // Modes 0, 1, 4, 5 count down once and then wrap around.
            _ => n - e,
        };
        // In range 0..0x10000 by construction of the modulus.
        v.rem_euclid(self.modulus()) as u16
    }

    /// OUT level `e` clocks after loading `n` ("Mode Definitions").
    fn out_at(&self, n: u32, e: u64) -> bool {
        let n = u64::from(n);
        match self.mode {
            // Low until terminal count, then high until reprogrammed.
            0 | 1 => e >= n,
            // Low for the one clock during which the count is 1.
            2 => n < 2 || e % n != n - 1,
            // High for the first half of each period.
            3 => e % n < n.div_ceil(2),
            // Strobe: low for the one clock at terminal count.
            _ => e != n,
        }
    }

    /// Rising OUT edges within the first `e` clocks after loading `n`.
    fn edges_at(&self, n: u32, e: u64) -> u64 {
        let n = u64::from(n);
        match self.mode {
            0 | 1 => u64::from(e >= n),
            2 | 3 if n < 2 => 0,
            2 | 3 => e / n,
            _ => u64::from(e > n),
        }
    }

    /// The clock (since loading) of the first edge not yet accounted for.
    fn next_edge(&self, n: u32) -> Option<u64> {
        let n = u64::from(n);
        match self.mode {
            0 | 1 => (self.edges_accounted == 0).then_some(n),
            2 | 3 if n < 2 => None,
            2 | 3 => self.edges_accounted.checked_add(1)?.checked_mul(n),
            _ => (self.edges_accounted == 0).then_some(n + 1),
        }
    }

    /// The binary counter value at `now`.
    fn counter(&self, now: Instant) -> u16 {
        match self.phase {
            Phase::Stopped { count, .. } => count,
            Phase::Running {
                n,
                since,
                base,
                paused,
            } => self.count_at(n, Self::elapsed(since, base, paused, now)),
        }
    }

    fn output(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Stopped { out, .. } => out,
            Phase::Running {
                n,
                since,
                base,
                paused,
            } => self.out_at(n, Self::elapsed(since, base, paused, now)),
        }
    }

    /// Accounts for the OUT edges that happened up to `now`.
    fn sync(&mut self, now: Instant) {
        if let Phase::Running {
            n,
            since,
            base,
            paused,
        } = self.phase
        {
            let total = self.edges_at(n, Self::elapsed(since, base, paused, now));
            if total > self.edges_accounted {
                self.edges_accounted = total;
                self.edge_pending = true;
            }
        }
    }

    /// Applies a state change at `now`, keeping edge accounting right: edges
    /// up to `now` belong to the old state, and a change that raises OUT is
    /// itself an edge.
    fn change(&mut self, now: Instant, f: impl FnOnce(&mut Self)) {
        self.sync(now);
        let before = self.output(now);
        f(self);
        if !before && self.output(now) {
            self.edge_pending = true;
        }
    }

    fn start(&mut self, n: u32, now: Instant, paused: bool) {
        self.phase = Phase::Running {
            n,
            since: now,
            base: 0,
            paused,
        };
        self.edges_accounted = 0;
    }

    /// The counter as the data port presents it (BCD if selected).
    fn visible(&self, binary: u16) -> u16 {
        if self.bcd {
            bin_to_bcd(binary)
        } else {
            binary
        }
    }

    fn latch_count(&mut self, now: Instant) {
        // A second latch before the first is read is ignored.
        if self.latched_count.is_none() {
            self.latched_count = Some((self.visible(self.counter(now)), false));
        }
    }

    fn latch_status(&mut self, now: Instant) {
        if self.latched_status.is_none() {
            let status = (u8::from(self.output(now)) << 7)
                | (u8::from(self.null_count) << 6)
                | ((self.access as u8) << 4)
                | (self.mode_bits << 1)
                | u8::from(self.bcd);
            self.latched_status = Some(status);
        }
    }

    /// A control word other than latch or read-back for this counter.
    fn program(&mut self, control: u8, now: Instant) {
        let access = match (control >> 4) & 3 {
            1 => Access::Lsb,
            2 => Access::Msb,
            _ => Access::Word,
        };
        let mode_bits = (control >> 1) & 7;
        self.change(now, |c| {
            let count = c.counter(now);
            c.mode_bits = mode_bits;
            c.mode = if mode_bits >= 6 {
                mode_bits - 4
            } else {
                mode_bits
            };
            c.access = access;
            c.bcd = control & 1 != 0;
            c.reload = None;
            c.null_count = true;
            c.write_lsb = None;
            c.read_msb_next = false;
            c.latched_count = None;
            c.latched_status = None;
            // "When a Control Word is written to a Counter, all Control Logic
            // is immediately reset and OUT goes to a known initial state":
            // low in mode 0, high otherwise. Counting stops until a count.
            c.phase = Phase::Stopped {
                count,
                out: c.mode != 0,
            };
            c.edges_accounted = 0;
        });
    }

    fn write_data(&mut self, value: u8, now: Instant) {
        match self.access {
            Access::Lsb => self.load(u16::from(value), now),
            Access::Msb => self.load(u16::from(value) << 8, now),
            Access::Word => match self.write_lsb.take() {
                Some(lsb) => self.load(u16::from(lsb) | (u16::from(value) << 8), now),
                None => {
                    self.write_lsb = Some(value);
                    self.null_count = true;
                    if self.mode == 0 {
                        // Mode 0: "Writing the first byte disables counting.
                        // OUT is set low immediately".
                        self.change(now, |c| {
                            c.phase = Phase::Stopped {
                                count: c.counter(now),
                                out: false,
                            };
                        });
                    }
                }
            },
        }
    }

    /// A complete count was written.
    fn load(&mut self, raw: u16, now: Instant) {
        let n = match (self.bcd, raw) {
            (true, _) => match bcd_to_bin(raw) {
                0 => 10_000,
                v => v,
            },
            (false, 0) => 0x1_0000,
            (false, v) => u32::from(v),
        };
        self.change(now, |c| {
            c.reload = Some(n);
            c.null_count = false;
            match c.mode {
                // Start counting now; a low gate holds the count (modes 0, 4).
                0 | 4 => c.start(n, now, !c.gate),
                2 | 3 if c.gate => c.start(n, now, false),
                // Loaded, but counting waits for the gate to rise.
                2 | 3 => {
                    c.phase = Phase::Stopped {
                        count: (i128::from(n).rem_euclid(c.modulus())) as u16,
                        out: true,
                    };
                }
                // Modes 1 and 5 start on a gate trigger; a new count does not
                // disturb a one-shot already in progress.
                _ => {}
            }
        });
    }

    /// Table 3, "Gate Pin Operations Summary".
    fn set_gate(&mut self, level: bool, now: Instant) {
        if level == self.gate {
            return;
        }
        self.change(now, |c| {
            c.gate = level;
            match (c.mode, level, c.phase) {
                // Modes 0 and 4: low disables counting, high resumes it.
                (
                    0 | 4,
                    false,
                    Phase::Running {
                        n,
                        since,
                        base,
                        paused: false,
                    },
                ) => {
                    c.phase = Phase::Running {
                        n,
                        since,
                        base: Channel::elapsed(since, base, false, now),
                        paused: true,
                    };
                }
                (
                    0 | 4,
                    true,
                    Phase::Running {
                        n,
                        base,
                        paused: true,
                        ..
                    },
                ) => {
                    c.phase = Phase::Running {
                        n,
                        since: now,
                        base,
                        paused: false,
                    };
                }
                // Modes 2 and 3: low stops counting and forces OUT high.
                (2 | 3, false, Phase::Running { .. }) => {
                    c.phase = Phase::Stopped {
                        count: c.counter(now),
                        out: true,
                    };
                }
                // Modes 1, 2, 3, 5: a rising edge (re)starts the count.
                (1 | 2 | 3 | 5, true, _) => {
                    if let Some(n) = c.reload {
                        c.start(n, now, false);
                    }
                }
                _ => {}
            }
        });
    }

    fn read_data(&mut self, now: Instant) -> u8 {
        if let Some(status) = self.latched_status.take() {
            return status;
        }
        let (value, msb) = match self.latched_count {
            Some((value, msb_next)) => {
                let read_msb = match self.access {
                    Access::Lsb => false,
                    Access::Msb => true,
                    Access::Word => msb_next,
                };
                // The latch is released once every byte has been read.
                self.latched_count = if self.access == Access::Word && !msb_next {
                    Some((value, true))
                } else {
                    None
                };
                (value, read_msb)
            }
            None => {
                let value = self.visible(self.counter(now));
                let read_msb = match self.access {
                    Access::Lsb => false,
                    Access::Msb => true,
                    Access::Word => {
                        let msb = self.read_msb_next;
                        self.read_msb_next = !msb;
                        msb
                    }
                };
                (value, read_msb)
            }
        };
        let [lo, hi] = value.to_le_bytes();
        if msb {
            hi
        } else {
            lo
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running {
                n,
                since,
                base,
                paused: false,
            } => {
                let edge = self.next_edge(n)?;
                since.checked_add(duration_of(edge.saturating_sub(base)))
            }
            _ => None,
        }
    }
}

/// The 8254 with its three counters, plus port 0x61.
pub struct Pit {
    channels: [Channel; 3],
    /// Port 0x61 bits 0-3 as last written.
    port_b: u8,
    clock: Arc<dyn Clock>,
    /// Reference for the port 0x61 refresh toggle.
    epoch: Instant,
}

impl std::fmt::Debug for Pit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pit")
            .field("channels", &self.channels)
            .field("port_b", &self.port_b)
            .finish_non_exhaustive()
    }
}

impl Pit {
    /// A PIT in reset state: every counter in mode 3 with count 65536;
    /// counters 0 and 1 run (their gates are tied high), counter 2 waits for
    /// its gate (port 0x61 bit 0, initially low).
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        Self {
            channels: [
                Channel::new(true, now),
                Channel::new(true, now),
                Channel::new(false, now),
            ],
            port_b: 0,
            clock,
            epoch: now,
        }
    }

    /// Reads the 8-bit register at `port` as of `now`; unknown ports read
    /// 0xFF.
    pub fn read_port_at(&mut self, port: u16, now: Instant) -> u8 {
        match port {
            PIT_CHANNEL0..=PIT_CHANNEL2 => {
                self.channels[usize::from(port - PIT_CHANNEL0)].read_data(now)
            }
            // The control word register is write-only; the datasheet lists
            // A1 A0 = 11 reads as "No-Operation (3-State)": a floating bus.
            PIT_COMMAND => 0xff,
            PORT_B => {
                let refresh =
                    (ticks_in(now.saturating_duration_since(self.epoch)) / REFRESH_TICKS) & 1 != 0;
                let out2 = self.channels[2].output(now);
                (self.port_b & PORT_B_WRITABLE)
                    | if refresh { PORT_B_REFRESH } else { 0 }
                    | if out2 { PORT_B_OUT2 } else { 0 }
            }
            _ => {
                debug!(
                    port = format_args!("{port:#x}"),
                    "8254: read from unknown port"
                );
                0xff
            }
        }
    }

    /// Writes the 8-bit register at `port` as of `now`; unknown ports are
    /// ignored.
    pub fn write_port_at(&mut self, port: u16, value: u8, now: Instant) {
        match port {
            PIT_CHANNEL0..=PIT_CHANNEL2 => {
                self.channels[usize::from(port - PIT_CHANNEL0)].write_data(value, now);
            }
            PIT_COMMAND => self.write_control(value, now),
            PORT_B => {
                self.port_b = value & PORT_B_WRITABLE;
                self.channels[2].set_gate(value & PORT_B_GATE2 != 0, now);
            }
            _ => debug!(
                port = format_args!("{port:#x}"),
                value, "8254: write to unknown port ignored"
            ),
        }
    }

    fn write_control(&mut self, control: u8, now: Instant) {
        let select = control >> 6;
        if select == 3 {
            // Read-back: D5 = !COUNT, D4 = !STATUS, D3-D1 select counters 2-0.
            for (i, ch) in self.channels.iter_mut().enumerate() {
                if control & (2 << i) != 0 {
                    if control & 0x20 == 0 {
                        ch.latch_count(now);
                    }
                    if control & 0x10 == 0 {
                        ch.latch_status(now);
                    }
                }
            }
            return;
        }
        let ch = &mut self.channels[usize::from(select)];
        if (control >> 4) & 3 == 0 {
            ch.latch_count(now);
        } else {
            ch.program(control, now);
        }
    }

    /// Accounts for channel 0's OUT edges up to `now`; see the module
    /// documentation for how several missed periods are coalesced.
    pub fn update(&mut self, now: Instant) {
        self.channels[0].sync(now);
    }

    /// Whether channel 0 produced a rising edge since the last call, i.e.
    /// whether IRQ 0 should be pulsed. Consumes the edge.
    pub fn take_irq0_edge(&mut self) -> bool {
        std::mem::take(&mut self.channels[0].edge_pending)
    }

    /// When channel 0's next rising edge is due, for sleeping in HLT. `None`
    /// when channel 0 will not produce another edge without reprogramming.
    /// May lie in the past if [`Pit::update`] has not been called lately.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.channels[0].deadline()
    }

    /// Channel `channel`'s OUT pin at `now` (`false` for channels past 2).
    pub fn output_at(&self, channel: usize, now: Instant) -> bool {
        self.channels.get(channel).is_some_and(|c| c.output(now))
    }
}

impl PioDevice for Pit {
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

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn pit_at(t0: Instant) -> Pit {
        Pit::new(Arc::new(ManualClock::new(t0)))
    }

    fn read16(pit: &mut Pit, port: u16, now: Instant) -> u16 {
        let lo = pit.read_port_at(port, now);
        let hi = pit.read_port_at(port, now);
        u16::from_le_bytes([lo, hi])
    }

    fn program_word(pit: &mut Pit, control: u8, count: u16, now: Instant) {
        let port = PIT_CHANNEL0 + u16::from(control >> 6);
        pit.write_port_at(PIT_COMMAND, control, now);
        let [lo, hi] = count.to_le_bytes();
        pit.write_port_at(port, lo, now);
        pit.write_port_at(port, hi, now);
    }

    #[test]
    fn tick_conversions_round_trip() {
        assert_eq!(ticks_in(Duration::from_secs(1)), PIT_FREQUENCY_HZ);
        assert_eq!(ticks_in(ms(10)), 11_931);
        for t in [1u64, 2, 11_932, 65_536, 1 << 40] {
            assert!(ticks_in(duration_of(t)) >= t);
            assert!(ticks_in(duration_of(t) - Duration::from_nanos(1)) < t);
        }
        assert_eq!(bcd_to_bin(0x9999), 9999);
        assert_eq!(bin_to_bcd(1234), 0x1234);
    }

    #[test]
    fn periodic_mode2_edges_counter_and_deadline() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        // Linux: 0x34 = channel 0, LSB/MSB, mode 2; 11932 = 100 Hz.
        program_word(&mut pit, 0x34, 11932, t0);
        assert!(!pit.take_irq0_edge());
        // Counter after 1 ms: 1193 clocks elapsed.
        assert_eq!(read16(&mut pit, PIT_CHANNEL0, t0 + ms(1)), 11932 - 1193);
        assert_eq!(pit.next_deadline(), Some(t0 + duration_of(11932)));

        pit.update(t0 + ms(9));
        assert!(!pit.take_irq0_edge());
        // 25 ms: two periods passed, delivered as one edge.
        pit.update(t0 + ms(25));
        assert!(pit.take_irq0_edge());
        assert!(!pit.take_irq0_edge());
        pit.update(t0 + ms(25));
        assert!(!pit.take_irq0_edge());
        assert_eq!(pit.next_deadline(), Some(t0 + duration_of(3 * 11932)));
        pit.update(t0 + ms(29));
        assert!(!pit.take_irq0_edge());
        pit.update(t0 + ms(31));
        assert!(pit.take_irq0_edge());
        // The counter keeps reloading: 31 ms = 36988 clocks, 36988 % 11932 = 1192.
        assert_eq!(read16(&mut pit, PIT_CHANNEL0, t0 + ms(31)), 11932 - 1192);
    }

    #[test]
    fn late_update_coalesces_to_one_edge() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        program_word(&mut pit, 0x34, 11932, t0);
        pit.update(t0 + Duration::from_secs(1));
        assert!(pit.take_irq0_edge());
        pit.update(t0 + Duration::from_secs(1));
        assert!(!pit.take_irq0_edge());
        // 1 s = 1193182 clocks = 99 full periods + 11914 clocks; the next
        // edge is the 100th.
        assert_eq!(pit.next_deadline(), Some(t0 + duration_of(100 * 11932)));
    }

    #[test]
    fn mode3_square_wave_counts_by_two() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        // Channel 2, LSB/MSB, mode 3, gate high.
        pit.write_port_at(PORT_B, PORT_B_GATE2, t0);
        program_word(&mut pit, 0xb6, 1000, t0);
        assert!(pit.output_at(2, t0 + duration_of(499)));
        assert!(!pit.output_at(2, t0 + duration_of(500)));
        assert!(!pit.output_at(2, t0 + duration_of(999)));
        assert!(pit.output_at(2, t0 + duration_of(1000)));
        assert_eq!(read16(&mut pit, PIT_CHANNEL2, t0 + duration_of(100)), 800);
        // Gate low in mode 3 forces OUT high and stops counting.
        let t1 = t0 + duration_of(600);
        pit.write_port_at(PORT_B, 0, t1);
        assert!(pit.output_at(2, t1 + ms(1)));
        assert_eq!(read16(&mut pit, PIT_CHANNEL2, t1 + ms(5)), 1000 - 200);
        // Gate high again reloads the count.
        let t2 = t1 + ms(10);
        pit.write_port_at(PORT_B, PORT_B_GATE2, t2);
        assert_eq!(read16(&mut pit, PIT_CHANNEL2, t2 + duration_of(10)), 980);
    }

    /// Linux's `pit_calibrate_tsc`: channel 2, mode 0, 50 ms, poll port 0x61
    /// bit 5 until OUT goes high.
    #[test]
    fn channel2_mode0_calibration_like_linux() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        let b = pit.read_port_at(PORT_B, t0);
        pit.write_port_at(PORT_B, (b & !PORT_B_SPEAKER) | PORT_B_GATE2, t0);
        let latch = (PIT_FREQUENCY_HZ / 20) as u16; // 59659
        program_word(&mut pit, 0xb0, latch, t0);
        assert_eq!(pit.read_port_at(PORT_B, t0) & PORT_B_OUT2, 0);
        let before = t0 + duration_of(u64::from(latch)) - Duration::from_nanos(1);
        assert_eq!(pit.read_port_at(PORT_B, before) & PORT_B_OUT2, 0);
        assert_eq!(
            pit.read_port_at(PORT_B, t0 + ms(50)) & PORT_B_OUT2,
            PORT_B_OUT2
        );
        assert_eq!(
            pit.read_port_at(PORT_B, t0 + ms(50)) & PORT_B_GATE2,
            PORT_B_GATE2
        );
        // After terminal count the counter wraps and keeps counting.
        let after = t0 + duration_of(u64::from(latch) + 5);
        assert_eq!(read16(&mut pit, PIT_CHANNEL2, after), 0xffff - 4);
        // Channel 2 never raises IRQ 0.
        pit.update(after);
        assert!(!pit.take_irq0_edge());
    }

    /// Linux's `quick_pit_calibrate`: count 0xffff, read LSB then MSB and
    /// watch the MSB step down every 256 clocks.
    #[test]
    fn channel2_msb_steps_with_time_and_gate_pauses_mode0() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        pit.write_port_at(PORT_B, PORT_B_GATE2, t0);
        program_word(&mut pit, 0xb0, 0xffff, t0);
        let msb = |pit: &mut Pit, t| {
            pit.read_port_at(PIT_CHANNEL2, t);
            pit.read_port_at(PIT_CHANNEL2, t)
        };
        assert_eq!(msb(&mut pit, t0), 0xff);
        assert_eq!(msb(&mut pit, t0 + duration_of(255)), 0xff);
        assert_eq!(msb(&mut pit, t0 + duration_of(256)), 0xfe);
        assert_eq!(msb(&mut pit, t0 + duration_of(256 * 10)), 0xf5);
        // Gate low holds the count in mode 0; high resumes it.
        let t1 = t0 + duration_of(1000);
        pit.write_port_at(PORT_B, 0, t1);
        assert_eq!(read16(&mut pit, PIT_CHANNEL2, t1 + ms(100)), 0xffff - 1000);
        let t2 = t1 + ms(200);
        pit.write_port_at(PORT_B, PORT_B_GATE2, t2);
        assert_eq!(
            read16(&mut pit, PIT_CHANNEL2, t2 + duration_of(35)),
            0xffff - 1035
        );
    }

    #[test]
    fn mode0_first_byte_stops_counting_and_lowers_out() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        pit.write_port_at(PORT_B, PORT_B_GATE2, t0);
        program_word(&mut pit, 0xb0, 100, t0);
        let t1 = t0 + ms(1);
        assert!(pit.output_at(2, t1));
        pit.write_port_at(PIT_CHANNEL2, 50, t1);
        assert!(!pit.output_at(2, t1 + ms(1)));
        pit.write_port_at(PIT_CHANNEL2, 0, t1 + ms(1));
        assert!(!pit.output_at(2, t1 + ms(1) + duration_of(49)));
        assert!(pit.output_at(2, t1 + ms(1) + duration_of(50)));
    }

    #[test]
    fn mode4_oneshot_single_edge() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        // Linux's oneshot clockevent: 0x38 = channel 0, LSB/MSB, mode 4.
        program_word(&mut pit, 0x38, 1000, t0);
        assert!(!pit.take_irq0_edge());
        assert_eq!(pit.next_deadline(), Some(t0 + duration_of(1001)));
        assert!(pit.output_at(0, t0 + duration_of(999)));
        assert!(!pit.output_at(0, t0 + duration_of(1000)));
        assert!(pit.output_at(0, t0 + duration_of(1001)));
        pit.update(t0 + duration_of(1000));
        assert!(!pit.take_irq0_edge());
        pit.update(t0 + duration_of(1001));
        assert!(pit.take_irq0_edge());
        assert_eq!(pit.next_deadline(), None);
        pit.update(t0 + Duration::from_secs(1));
        assert!(!pit.take_irq0_edge());
    }

    #[test]
    fn mode0_on_channel0_interrupts_once_at_terminal_count() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        program_word(&mut pit, 0x30, 500, t0);
        assert!(!pit.output_at(0, t0));
        assert!(!pit.take_irq0_edge());
        assert_eq!(pit.next_deadline(), Some(t0 + duration_of(500)));
        pit.update(t0 + ms(100));
        assert!(pit.take_irq0_edge());
        assert_eq!(pit.next_deadline(), None);
        // Reprogramming to mode 2 raises OUT: that is an edge too.
        pit.write_port_at(PIT_COMMAND, 0x30, t0 + ms(101));
        assert!(!pit.output_at(0, t0 + ms(101)));
        pit.write_port_at(PIT_COMMAND, 0x34, t0 + ms(102));
        assert!(pit.take_irq0_edge());
    }

    #[test]
    fn counter_latch_freezes_value_until_read() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        program_word(&mut pit, 0x34, 10000, t0);
        pit.write_port_at(PIT_COMMAND, 0x00, t0 + duration_of(100));
        // A second latch before reading is ignored.
        pit.write_port_at(PIT_COMMAND, 0x00, t0 + duration_of(200));
        assert_eq!(read16(&mut pit, PIT_CHANNEL0, t0 + duration_of(300)), 9900);
        // Released: live value again.
        assert_eq!(read16(&mut pit, PIT_CHANNEL0, t0 + duration_of(300)), 9700);
    }

    #[test]
    fn read_back_status_and_count() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        program_word(&mut pit, 0x34, 10000, t0);
        // Latch count and status of counter 0.
        pit.write_port_at(PIT_COMMAND, 0xc2, t0 + duration_of(10));
        // OUT high, count loaded, LSB/MSB, mode 2, binary.
        assert_eq!(pit.read_port_at(PIT_CHANNEL0, t0 + ms(3)), 0xb4);
        assert_eq!(read16(&mut pit, PIT_CHANNEL0, t0 + ms(3)), 9990);
        // Status only, after a control word: null count set, mode 0 OUT low.
        pit.write_port_at(PIT_COMMAND, 0x70, t0 + ms(4));
        pit.write_port_at(PIT_COMMAND, 0xe4, t0 + ms(4));
        assert_eq!(pit.read_port_at(PIT_CHANNEL1, t0 + ms(4)), 0x70);
        // Reading the command port is a no-op.
        assert_eq!(pit.read_port_at(PIT_COMMAND, t0), 0xff);
    }

    #[test]
    fn lsb_only_msb_only_and_bcd() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        // Channel 1, MSB only, mode 2: count 0x1200.
        pit.write_port_at(PIT_COMMAND, 0x64, t0);
        pit.write_port_at(PIT_CHANNEL1, 0x12, t0);
        assert_eq!(
            pit.read_port_at(PIT_CHANNEL1, t0 + duration_of(0x100)),
            0x11
        );
        // LSB only, mode 2: count 0x80.
        pit.write_port_at(PIT_COMMAND, 0x54, t0);
        pit.write_port_at(PIT_CHANNEL1, 0x80, t0);
        assert_eq!(pit.read_port_at(PIT_CHANNEL1, t0 + duration_of(0x10)), 0x70);
        // BCD, LSB/MSB, mode 2: count "0100" = 100 clocks, reads in BCD.
        program_word(&mut pit, 0x75, 0x0100, t0);
        assert_eq!(read16(&mut pit, PIT_CHANNEL1, t0 + duration_of(1)), 0x0099);
        assert_eq!(
            read16(&mut pit, PIT_CHANNEL1, t0 + duration_of(137)),
            0x0063
        );
        // BCD count 0 means 10000.
        program_word(&mut pit, 0x71, 0, t0);
        assert_eq!(read16(&mut pit, PIT_CHANNEL1, t0 + duration_of(1)), 0x9999);
    }

    #[test]
    fn count_zero_means_65536() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        program_word(&mut pit, 0x34, 0, t0);
        assert_eq!(pit.next_deadline(), Some(t0 + duration_of(65536)));
        assert_eq!(read16(&mut pit, PIT_CHANNEL0, t0 + duration_of(1)), 0xffff);
    }

    #[test]
    fn reset_state_runs_channel0_at_18_hz() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        assert_eq!(pit.next_deadline(), Some(t0 + duration_of(65536)));
        // Channel 2 waits for its gate; its OUT is high (mode 3).
        assert_eq!(
            pit.read_port_at(PORT_B, t0) & (PORT_B_OUT2 | PORT_B_GATE2),
            PORT_B_OUT2
        );
    }

    #[test]
    fn port_b_refresh_bit_toggles() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        let a = pit.read_port_at(PORT_B, t0) & PORT_B_REFRESH;
        let b = pit.read_port_at(PORT_B, t0 + duration_of(REFRESH_TICKS)) & PORT_B_REFRESH;
        assert_ne!(a, b);
        // Status bits are read-only.
        pit.write_port_at(PORT_B, 0xff, t0);
        assert_eq!(pit.read_port_at(PORT_B, t0) & 0xcf, 0x0f);
    }

    #[test]
    fn wild_accesses_do_not_panic() {
        let t0 = Instant::now();
        let mut pit = pit_at(t0);
        let mut t = t0;
        for v in 0..=255u8 {
            for port in [0x40, 0x41, 0x42, 0x43, 0x61, 0x44] {
                pit.write_port_at(port, v, t);
                pit.write_port_at(port, v.wrapping_mul(37), t);
                let _ = pit.read_port_at(port, t);
            }
            t += Duration::from_micros(u64::from(v) * 13);
            pit.update(t);
            let _ = pit.take_irq0_edge();
            let _ = pit.next_deadline();
        }
        // Time going backwards saturates instead of panicking.
        pit.update(t0);
        let _ = pit.read_port_at(0x40, t0);
        assert_eq!(pit.read_port_at(0x44, t0), 0xff);
    }
}
