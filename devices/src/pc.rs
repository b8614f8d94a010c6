//! The legacy PC I/O platform the VMM core talks to.
//!
//! Port map (everything else reads as all-ones and ignores writes):
//!
//! | ports          | device                                  |
//! |----------------|-----------------------------------------|
//! | 0x20-0x21      | master 8259A                            |
//! | 0x40-0x43      | 8254 PIT, IRQ 0                         |
//! | 0x60           | i8042 data (keyboard IRQ 1, aux IRQ 12) |
//! | 0x61           | port B: PIT channel 2 gate / output     |
//! | 0x64           | i8042 status / command                  |
//! | 0x70-0x71      | MC146818A RTC and CMOS RAM, IRQ 8       |
//! | 0x80           | POST diagnostic port (ignored)          |
//! | 0xA0-0xA1      | slave 8259A                             |
//! | 0xF4           | isa-debug-exit                          |
//! | 0x3F8-0x3FF    | COM1 16550A UART, IRQ 4                 |
//! | 0x4D0-0x4D1    | ELCR (edge/level control for the PICs)  |
//! | 0x600-0x603    | ACPI PM1a event block (PM1_STS, PM1_EN) |
//! | 0x604-0x605    | ACPI PM1a control block (PM1_CNT)       |
//! | 0x608-0x60B    | ACPI PM timer (32-bit, 3.579545 MHz)    |
//! | 0x505          | pvpanic (guest kernel panic reports)    |
//! | 0xCF9          | reset control register                  |
//!
//! Device-to-PIC wiring is done here rather than inside the devices:
//! after every port access and every [`PcDevices::update`], pending PIT
//! channel 0 edges are pulsed on IRQ 0, i8042 output-buffer edges on IRQ 1
//! (keyboard) and IRQ 12 (aux), UART interrupt requests on IRQ 4 and RTC
//! IRQF edges on IRQ 8.
//!
//! Writes can end the VM: isa-debug-exit returns [`IoOutcome::Exit`], ACPI
//! S5 [`IoOutcome::PowerOff`], and an i8042 reset pulse or port 0xCF9
//! [`IoOutcome::Reset`].

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tracing::debug;

use crate::acpi_pm::{AcpiPm, ACPI_PM_PORT_COUNT, PM1A_EVT_BLK};
use crate::apics::Apics;
use crate::bus::{lock, BusError, IoOutcome, PioBus, PioDevice, SharedPioDevice};
use crate::clock::{Clock, SystemClock};
use crate::debug_exit::{DebugExit, DEBUG_EXIT_PORT};
use crate::i8042::{AUX_IRQ, I8042, I8042_COMMAND_PORT, I8042_DATA_PORT, KBD_IRQ};
use crate::pic::{Pic, ELCR_MASTER, PIC_MASTER_CMD, PIC_SLAVE_CMD};
use crate::pit::{Pit, PIT_CHANNEL0, PORT_B};
use crate::pvpanic::{PvPanic, PVPANIC_PORT};
use crate::reset_control::{ResetControl, RESET_CONTROL_PORT};
use crate::rtc::{Rtc, RTC_INDEX_PORT, RTC_IRQ, RTC_PORT_COUNT};
use crate::uart::{Uart, COM1_BASE, COM1_IRQ, UART_PORT_COUNT};

/// The POST code port. BIOSes and some kernels (Linux's `outb_p`/`io_delay`)
/// write it as a short delay; nothing listens.
pub const POST_PORT: u16 = 0x80;
/// The PIT's IRQ.
pub const PIT_IRQ: u8 = 0;

/// Port 0x80: swallows writes, remembering the last code for debugging.
#[derive(Debug, Default)]
pub struct PostCode {
    last: Option<u8>,
}

impl PostCode {
    /// The last byte written, if any.
    pub fn last(&self) -> Option<u8> {
        self.last
    }
}

impl PioDevice for PostCode {
    fn read(&mut self, _port: u16, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _port: u16, data: &[u8]) -> IoOutcome {
        if let Some(&code) = data.first() {
            if self.last != Some(code) {
                debug!(code = format_args!("{code:#04x}"), "POST code");
            }
            self.last = Some(code);
        }
        IoOutcome::Continue
    }
}

/// The legacy PC devices: PIC pair, PIT, COM1, RTC, i8042, ACPI PM
/// registers, reset control, isa-debug-exit, port 0x61 and port 0x80, on
/// one port-I/O bus.
pub struct PcDevices {
    bus: PioBus,
    pic: Arc<Mutex<Pic>>,
    pit: Arc<Mutex<Pit>>,
    uart: Arc<Mutex<Uart>>,
    rtc: Arc<Mutex<Rtc>>,
    i8042: Arc<Mutex<I8042>>,
    apics: Arc<Mutex<Apics>>,
}

/// Physical-address width the local APIC checks IA32_APIC_BASE against; the runtime's CPUID
/// model reports the same (runtime `mmu::walk::MAXPHYADDR`).
pub const APIC_MAXPHYADDR: u32 = 40;

/// The I/O APIC input of an ISA IRQ: the identity, but for the PIT's IRQ 0, which is wired to
/// pin 2 as on every PC (the MADT's interrupt source override says so).
fn isa_irq_to_gsi(irq: u8) -> u8 {
    if irq == PIT_IRQ {
        2
    } else {
        irq
    }
}

impl std::fmt::Debug for PcDevices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcDevices")
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

/// Valid `in`/`out` widths.
fn valid_size(size: u8) -> bool {
    matches!(size, 1 | 2 | 4)
}

/// All-ones for an access of `size` bytes.
fn all_ones(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

impl PcDevices {
    /// The platform with COM1 transmitting to `serial_out`, timed by the
    /// host's monotonic clock.
    pub fn new(serial_out: Box<dyn Write + Send>) -> Self {
        Self::with_clock(serial_out, Arc::new(SystemClock))
    }

    /// The platform with an explicit time source for the PIT's, RTC's and
    /// PM timer's port reads (tests use [`crate::ManualClock`]). Instants
    /// passed to [`PcDevices::update`] should come from the same clock. The
    /// RTC starts at the host's current UTC time.
    pub fn with_clock(serial_out: Box<dyn Write + Send>, clock: Arc<dyn Clock>) -> Self {
        Self::with_time(serial_out, clock, SystemTime::now())
    }

    /// [`PcDevices::with_clock`] with the RTC showing `wall` at
    /// `clock.now()`, for deterministic tests.
    pub fn with_time(
        serial_out: Box<dyn Write + Send>,
        clock: Arc<dyn Clock>,
        wall: SystemTime,
    ) -> Self {
        let pic = Arc::new(Mutex::new(Pic::new()));
        let pit = Arc::new(Mutex::new(Pit::new(clock.clone())));
        let uart = Arc::new(Mutex::new(Uart::new(COM1_BASE, serial_out)));
        let rtc = Arc::new(Mutex::new(Rtc::with_wall_time(clock.clone(), wall)));
        let i8042 = Arc::new(Mutex::new(I8042::new()));
        let apics = Arc::new(Mutex::new(Apics::new(clock.clone(), APIC_MAXPHYADDR)));
        let acpi_pm: SharedPioDevice = Arc::new(Mutex::new(AcpiPm::new(clock)));
        let mut platform = Self {
            bus: PioBus::new(),
            pic,
            pit,
            uart,
            rtc,
            i8042,
            apics,
        };
        let pic: SharedPioDevice = platform.pic.clone();
        let pit: SharedPioDevice = platform.pit.clone();
        let uart: SharedPioDevice = platform.uart.clone();
        let rtc: SharedPioDevice = platform.rtc.clone();
        let i8042: SharedPioDevice = platform.i8042.clone();
        let map: [(u16, u16, SharedPioDevice); 14] = [
            (PIC_MASTER_CMD, 2, pic.clone()),
            (PIC_SLAVE_CMD, 2, pic.clone()),
            (ELCR_MASTER, 2, pic),
            (PIT_CHANNEL0, 4, pit.clone()),
            (PORT_B, 1, pit),
            (I8042_DATA_PORT, 1, i8042.clone()),
            (I8042_COMMAND_PORT, 1, i8042),
            (RTC_INDEX_PORT, RTC_PORT_COUNT, rtc),
            (POST_PORT, 1, Arc::new(Mutex::new(PostCode::default()))),
            (DEBUG_EXIT_PORT, 1, Arc::new(Mutex::new(DebugExit))),
            (COM1_BASE, UART_PORT_COUNT, uart),
            (PM1A_EVT_BLK, ACPI_PM_PORT_COUNT, acpi_pm),
            (PVPANIC_PORT, 1, Arc::new(Mutex::new(PvPanic))),
            (
                RESET_CONTROL_PORT,
                1,
                Arc::new(Mutex::new(ResetControl::new())),
            ),
        ];
        for (base, len, device) in map {
            // The map above is fixed and disjoint; a failure is a bug in this
            // file, caught by every test that builds a `PcDevices`.
            platform
                .bus
                .register(base, len, device)
                .expect("static PC port map must not overlap");
        }
        platform
    }

    /// Maps an additional device, e.g. one the VMM models itself.
    pub fn register_device(
        &mut self,
        base: u16,
        len: u16,
        device: SharedPioDevice,
    ) -> Result<(), BusError> {
        self.bus.register(base, len, device)
    }

    /// An `in` of `size` bytes (1, 2 or 4) from `port`. Unclaimed ports and
    /// invalid sizes read as all-ones.
    pub fn io_in(&mut self, port: u16, size: u8) -> u32 {
        if !valid_size(size) {
            debug!(
                port = format_args!("{port:#x}"),
                size, "in with invalid size"
            );
            return all_ones(size);
        }
        let mut buf = [0xff; 4];
        self.bus.read(port, &mut buf[..usize::from(size)]);
        // Reads can change interrupt state (UART RBR refills the FIFO, PIC
        // poll acknowledges).
        self.route_interrupts();
        u32::from_le_bytes(buf) & all_ones(size)
    }

    /// An `out` of the low `size` bytes (1, 2 or 4) of `value` to `port`.
    /// Invalid sizes are ignored.
    pub fn io_out(&mut self, port: u16, size: u8, value: u32) -> IoOutcome {
        if !valid_size(size) {
            debug!(
                port = format_args!("{port:#x}"),
                size, value, "out with invalid size ignored"
            );
            return IoOutcome::Continue;
        }
        let bytes = value.to_le_bytes();
        let outcome = self.bus.write(port, &bytes[..usize::from(size)]);
        self.route_interrupts();
        outcome
    }

    /// Advances the PIT and the RTC to `now` and forwards device interrupt
    /// requests to the PIC. Call it periodically and when
    /// [`PcDevices::next_deadline`] passes.
    pub fn update(&mut self, now: Instant) {
        lock(&self.pit).update(now);
        lock(&self.rtc).update(now);
        lock(&self.apics).lapic.update(now);
        self.route_interrupts();
    }

    /// Pulses the PIC inputs of devices that signalled since the last call.
    fn route_interrupts(&mut self) {
        let (kbd, aux) = {
            let mut i8042 = lock(&self.i8042);
            (i8042.take_kbd_irq(), i8042.take_aux_irq())
        };
        let requests = [
            (PIT_IRQ, lock(&self.pit).take_irq0_edge()),
            (KBD_IRQ, kbd),
            (COM1_IRQ, lock(&self.uart).take_interrupt_request()),
            (RTC_IRQ, lock(&self.rtc).take_irq()),
            (AUX_IRQ, aux),
        ];
        // Every ISA line reaches both the 8259 pair and the I/O APIC, as on a PC; which one
        // the guest listens to is its choice (masks, LINT0, redirection entries).
        if requests.iter().any(|&(_, raised)| raised) {
            let mut pic = lock(&self.pic);
            let mut apics = lock(&self.apics);
            for (irq, raised) in requests {
                if raised {
                    pic.pulse_irq(irq);
                    apics.pulse(isa_irq_to_gsi(irq));
                }
            }
        }
    }

    /// An interrupt is waiting for the CPU: a local APIC vector above the processor priority,
    /// or the PIC's INTR through LINT0 in virtual-wire (ExtINT) mode or with the local APIC
    /// disabled (SDM Vol. 3, 10.4.3 and the MP spec's virtual wire mode).
    pub fn interrupt_pending(&self) -> bool {
        let apics = lock(&self.apics);
        apics.lapic.pending_vector().is_some()
            || (apics.lapic.lint0_extint_enabled() && lock(&self.pic).has_interrupt())
    }

    /// The INTA cycle: the vector to deliver, or `None` if nothing is pending any more.
    pub fn acknowledge_interrupt(&mut self) -> Option<u8> {
        let mut apics = lock(&self.apics);
        if apics.lapic.pending_vector().is_some() {
            return apics.lapic.acknowledge();
        }
        if apics.lapic.lint0_extint_enabled() {
            return lock(&self.pic).acknowledge();
        }
        None
    }

    /// The local APIC and I/O APIC, for the CPU's MMIO, MSR and CR8 paths.
    pub fn apics(&self) -> &Arc<Mutex<Apics>> {
        &self.apics
    }

    /// The earliest instant at which a timer (PIT or RTC) will request an
    /// interrupt, for sleeping in HLT. May be in the past: call
    /// [`PcDevices::update`].
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            lock(&self.pit).next_deadline(),
            lock(&self.rtc).next_deadline(),
            lock(&self.apics).lapic.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Feeds console input to COM1's receiver.
    pub fn enqueue_serial_input(&mut self, bytes: &[u8]) {
        lock(&self.uart).enqueue_input(bytes);
        self.route_interrupts();
    }

    /// Direct access to the PIC, e.g. for devices modelled by the VMM itself.
    pub fn pic(&self) -> &Arc<Mutex<Pic>> {
        &self.pic
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::uart::tests::SharedBuf;
    use std::time::Duration;

    fn platform() -> (PcDevices, SharedBuf, Arc<ManualClock>, Instant) {
        let t0 = Instant::now();
        let clock = Arc::new(ManualClock::new(t0));
        let buf = SharedBuf::default();
        let pc = PcDevices::with_clock(Box::new(buf.clone()), clock.clone());
        (pc, buf, clock, t0)
    }

    /// Linux's `init_8259A`, then the master IMR set to `master_imr`.
    fn init_pic_like_linux(pc: &mut PcDevices, master_imr: u8) {
        for (port, value) in [
            (0x21, 0xff),
            (0xa1, 0xff),
            (0x20, 0x11),
            (0x21, 0x20),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11),
            (0xa1, 0x28),
            (0xa1, 0x02),
            (0xa1, 0x01),
            (0x21, master_imr),
        ] {
            assert_eq!(pc.io_out(port, 1, value.into()), IoOutcome::Continue);
        }
    }

    #[test]
    fn linux_style_timer_interrupt() {
        let (mut pc, _buf, _clock, t0) = platform();
        init_pic_like_linux(&mut pc, 0xfe);
        // PIT channel 0, LSB/MSB, mode 2, 11932 clocks = 100 Hz.
        pc.io_out(0x43, 1, 0x34);
        pc.io_out(0x40, 1, 11932 & 0xff);
        pc.io_out(0x40, 1, 11932 >> 8);
        assert!(!pc.interrupt_pending());

        pc.update(t0 + Duration::from_millis(25));
        assert!(pc.interrupt_pending());
        assert_eq!(pc.acknowledge_interrupt(), Some(0x20));
        assert!(!pc.interrupt_pending());
        assert_eq!(pc.io_out(0x20, 1, 0x20), IoOutcome::Continue);
        // Two periods elapsed, but only one tick is delivered.
        assert!(!pc.interrupt_pending());
        assert_eq!(pc.acknowledge_interrupt(), None);
        pc.update(t0 + Duration::from_millis(29));
        assert!(!pc.interrupt_pending());
        let deadline = pc.next_deadline().expect("periodic timer has a deadline");
        assert!(deadline > t0 + Duration::from_millis(30));
        assert!(deadline < t0 + Duration::from_micros(30_010));
        pc.update(deadline);
        assert!(pc.interrupt_pending());
        assert_eq!(pc.acknowledge_interrupt(), Some(0x20));
    }

    #[test]
    fn masked_timer_does_not_interrupt() {
        let (mut pc, _buf, _clock, t0) = platform();
        init_pic_like_linux(&mut pc, 0xff);
        pc.io_out(0x43, 1, 0x34);
        pc.io_out(0x40, 1, 0x9c);
        pc.io_out(0x40, 1, 0x2e);
        pc.update(t0 + Duration::from_millis(25));
        assert!(!pc.interrupt_pending());
        // The request waits in the IRR.
        pc.io_out(0x20, 1, 0x0a);
        assert_eq!(pc.io_in(0x20, 1), 0x01);
        pc.io_out(0x21, 1, 0xfe);
        assert_eq!(pc.acknowledge_interrupt(), Some(0x20));
    }

    #[test]
    fn pit_counter_reads_follow_the_clock() {
        let (mut pc, _buf, clock, _t0) = platform();
        pc.io_out(0x43, 1, 0x34);
        pc.io_out(0x40, 1, 0x00);
        pc.io_out(0x40, 1, 0x10); // 4096
        clock.advance(Duration::from_millis(1)); // 1193 clocks
        pc.io_out(0x43, 1, 0x00); // latch
        let lo = pc.io_in(0x40, 1);
        let hi = pc.io_in(0x40, 1);
        assert_eq!(lo | (hi << 8), 4096 - 1193);
    }

    #[test]
    fn serial_output_and_line_status() {
        let (mut pc, buf, _clock, _t0) = platform();
        assert_eq!(pc.io_out(0x3f8, 1, u32::from(b'h')), IoOutcome::Continue);
        assert_eq!(pc.io_out(0x3f8, 1, u32::from(b'i')), IoOutcome::Continue);
        assert_eq!(buf.contents(), b"hi");
        assert_eq!(pc.io_in(0x3fd, 1) & 0x20, 0x20);
        // Scratch register round-trips: a UART is present.
        pc.io_out(0x3ff, 1, 0x5a);
        assert_eq!(pc.io_in(0x3ff, 1), 0x5a);
    }

    #[test]
    fn serial_interrupt_reaches_irq4() {
        let (mut pc, _buf, _clock, _t0) = platform();
        init_pic_like_linux(&mut pc, 0xef);
        pc.io_out(0x3fc, 1, 0x0b); // MCR: DTR | RTS | OUT2
        pc.io_out(0x3f9, 1, 0x01); // IER: received data
        assert!(!pc.interrupt_pending());
        pc.enqueue_serial_input(b"ok");
        assert!(pc.interrupt_pending());
        assert_eq!(pc.acknowledge_interrupt(), Some(0x24));
        assert_eq!(pc.io_in(0x3fa, 1) & 0x0f, 0x04); // IIR: received data
        assert_eq!(pc.io_in(0x3f8, 1), u32::from(b'o'));
        assert_eq!(pc.io_in(0x3f8, 1), u32::from(b'k'));
        assert_eq!(pc.io_in(0x3fd, 1) & 0x01, 0);
        pc.io_out(0x20, 1, 0x20);
        assert!(!pc.interrupt_pending());
    }

    #[test]
    fn debug_exit_status() {
        let (mut pc, _buf, _clock, _t0) = platform();
        assert_eq!(pc.io_out(0xf4, 1, 0x10), IoOutcome::Exit(0x21));
        assert_eq!(pc.io_out(0xf4, 2, 0xabcd_0001), IoOutcome::Exit(3));
        assert_eq!(pc.io_out(0xf4, 4, 0), IoOutcome::Exit(1));
        assert_eq!(pc.io_in(0xf4, 1), 0xff);
    }

    #[test]
    fn unknown_ports_and_bad_sizes() {
        let (mut pc, _buf, _clock, _t0) = platform();
        assert_eq!(pc.io_in(0x2f8, 1), 0xff);
        assert_eq!(pc.io_in(0xcf8, 2), 0xffff);
        assert_eq!(pc.io_in(0xcfc, 4), 0xffff_ffff);
        assert_eq!(pc.io_out(0xcf8, 4, 0x8000_0000), IoOutcome::Continue);
        assert_eq!(pc.io_in(0x80, 1), 0xff);
        assert_eq!(pc.io_out(0x80, 1, 0x42), IoOutcome::Continue);
        assert_eq!(pc.io_in(0x3f8, 3), 0xffff_ffff);
        assert_eq!(pc.io_in(0x3f8, 0), 0xffff_ffff);
        assert_eq!(pc.io_out(0xf4, 3, 1), IoOutcome::Continue);
        assert_eq!(pc.io_out(0xf4, 8, 1), IoOutcome::Continue);
    }

    #[test]
    fn port_61_gates_channel_2() {
        let (mut pc, _buf, clock, _t0) = platform();
        pc.io_out(0x61, 1, 0x01);
        pc.io_out(0x43, 1, 0xb0);
        pc.io_out(0x42, 1, 100);
        pc.io_out(0x42, 1, 0);
        assert_eq!(pc.io_in(0x61, 1) & 0x21, 0x01);
        clock.advance(Duration::from_micros(100)); // 119 clocks
        assert_eq!(pc.io_in(0x61, 1) & 0x21, 0x21);
    }

    #[test]
    fn extra_devices_cannot_overlap() {
        let (mut pc, _buf, _clock, _t0) = platform();
        let dev: SharedPioDevice = Arc::new(Mutex::new(PostCode::default()));
        assert!(pc.register_device(0x3fc, 4, dev.clone()).is_err());
        assert!(pc.register_device(0x70, 1, dev.clone()).is_err());
        assert!(pc.register_device(0x2f8, 8, dev).is_ok());
        assert_eq!(pc.io_in(0x2f8, 1), 0xff);
    }

    /// 2024-02-29 23:59:58 UTC.
    const WALL_SECS: u64 = 1_709_251_198;

    fn platform_at_wall_time() -> (PcDevices, Arc<ManualClock>, Instant) {
        let t0 = Instant::now();
        let clock = Arc::new(ManualClock::new(t0));
        let wall = std::time::UNIX_EPOCH + Duration::from_secs(WALL_SECS);
        let pc = PcDevices::with_time(Box::new(SharedBuf::default()), clock.clone(), wall);
        (pc, clock, t0)
    }

    fn cmos_read(pc: &mut PcDevices, index: u8) -> u32 {
        pc.io_out(0x70, 1, index.into());
        pc.io_in(0x71, 1)
    }

    fn cmos_write(pc: &mut PcDevices, index: u8, value: u8) {
        pc.io_out(0x70, 1, index.into());
        pc.io_out(0x71, 1, value.into());
    }

    #[test]
    fn rtc_reads_wall_time() {
        let (mut pc, _clock, _t0) = platform_at_wall_time();
        assert_eq!(cmos_read(&mut pc, 0x00), 0x58);
        assert_eq!(cmos_read(&mut pc, 0x04), 0x23);
        assert_eq!(cmos_read(&mut pc, 0x09), 0x24);
        assert_eq!(cmos_read(&mut pc, 0x32), 0x20);
        assert_eq!(cmos_read(&mut pc, 0x0a), 0x26);
        assert_eq!(cmos_read(&mut pc, 0x0b), 0x02);
        assert_eq!(cmos_read(&mut pc, 0x0d), 0x80);
    }

    /// rtc-cmos's periodic interrupt at 1024 Hz arrives as IRQ 8 through
    /// the slave PIC (vector base 0x28 after Linux's `init_8259A`).
    #[test]
    fn rtc_periodic_interrupt_reaches_slave_pic() {
        let (mut pc, clock, t0) = platform_at_wall_time();
        // Master: everything masked but the cascade; slave: only IRQ 8.
        init_pic_like_linux(&mut pc, 0xfb);
        pc.io_out(0xa1, 1, 0xfe);
        cmos_write(&mut pc, 0x0a, 0x26);
        assert_eq!(cmos_read(&mut pc, 0x0c), 0x00);
        cmos_write(&mut pc, 0x0b, 0x42);
        assert!(!pc.interrupt_pending());
        // The PIT (18.2 Hz after reset) is later than the RTC's 976.6 us.
        let first = t0 + Duration::from_nanos(976_563);
        assert_eq!(pc.next_deadline(), Some(first));
        pc.update(first);
        assert!(pc.interrupt_pending());
        assert_eq!(pc.acknowledge_interrupt(), Some(0x28));
        // The handler reads register C, then EOIs slave and master.
        clock.set(first);
        assert_eq!(cmos_read(&mut pc, 0x0c), 0xc0);
        pc.io_out(0xa0, 1, 0x20);
        pc.io_out(0x20, 1, 0x20);
        assert!(!pc.interrupt_pending());
        let second = pc.next_deadline().expect("periodic RTC deadline");
        assert_eq!(second, t0 + Duration::from_nanos(1_953_125));
        pc.update(second);
        assert_eq!(pc.acknowledge_interrupt(), Some(0x28));
        // Without reading register C, IRQF stays high: no further edges.
        pc.io_out(0xa0, 1, 0x20);
        pc.io_out(0x20, 1, 0x20);
        pc.update(t0 + Duration::from_millis(10));
        assert_eq!(pc.acknowledge_interrupt(), None);
    }

    /// atkbd's GETID answered over IRQ 1 (vector 0x21), and the i8042 AUX
    /// IRQ test over IRQ 12 (vector 0x2c).
    #[test]
    fn keyboard_and_aux_interrupts() {
        let (mut pc, _clock, _t0) = platform_at_wall_time();
        init_pic_like_linux(&mut pc, 0xf9);
        pc.io_out(0xa1, 1, 0xef);
        // CTR: translate, SYS, both interrupts, both ports enabled.
        pc.io_out(0x64, 1, 0x60);
        pc.io_out(0x60, 1, 0x47);
        pc.io_out(0x60, 1, 0xf2);
        let mut id = vec![];
        while pc.interrupt_pending() {
            assert_eq!(pc.acknowledge_interrupt(), Some(0x21));
            assert_eq!(pc.io_in(0x64, 1) & 0x21, 0x01);
            id.push(pc.io_in(0x60, 1));
            pc.io_out(0x20, 1, 0x20);
        }
        assert_eq!(id, [0xfa, 0xab, 0x41]);
        pc.io_out(0x64, 1, 0xd3);
        pc.io_out(0x60, 1, 0xa5);
        assert_eq!(pc.acknowledge_interrupt(), Some(0x2c));
        assert_eq!(pc.io_in(0x64, 1) & 0x21, 0x21);
        assert_eq!(pc.io_in(0x60, 1), 0xa5);
    }

    #[test]
    fn power_off_and_reset_outcomes() {
        let (mut pc, clock, _t0) = platform_at_wall_time();
        // ACPI S5: SLP_TYP = 5, then SLP_TYP | SLP_EN.
        assert_eq!(pc.io_in(0x604, 2), 0x0001);
        assert_eq!(pc.io_out(0x604, 2, 0x1401), IoOutcome::Continue);
        assert_eq!(pc.io_out(0x604, 2, 0x3401), IoOutcome::PowerOff);
        // The ACPI reset register and the keyboard controller's pulse.
        assert_eq!(pc.io_out(0xcf9, 1, 0x02), IoOutcome::Continue);
        assert_eq!(pc.io_out(0xcf9, 1, 0x06), IoOutcome::Reset);
        assert_eq!(pc.io_in(0xcf9, 1), 0x06);
        assert_eq!(pc.io_out(0x64, 1, 0xfe), IoOutcome::Reset);
        // The PM timer through the bus.
        clock.advance(Duration::from_secs(1));
        assert_eq!(pc.io_in(0x608, 4), 3_579_545);
    }

    #[test]
    fn guest_cannot_panic_the_platform() {
        let (mut pc, clock, t0) = platform_at_wall_time();
        let ports = (0x00..0x100u16)
            .chain(0x600..0x610)
            .chain([0xcf8, 0xcf9, 0xcfa]);
        let mut n = 0u32;
        for port in ports {
            for size in 0..=8u8 {
                for value in [0u32, 0xff, 0x5a5a_5a5a, 0xfefe_fefe, 0xffff_ffff, n] {
                    let _ = pc.io_out(port, size, value);
                    let _ = pc.io_in(port, size);
                    n = n.wrapping_mul(0x9e37_79b9).wrapping_add(port.into());
                }
            }
            clock.advance(Duration::from_micros(u64::from(port) * 7));
            pc.update(clock.now());
            while pc.acknowledge_interrupt().is_some() {}
            let _ = pc.next_deadline();
        }
        pc.update(t0);
    }

    #[test]
    fn platform_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<PcDevices>();
    }
}
