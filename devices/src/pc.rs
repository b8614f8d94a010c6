//! The legacy PC I/O platform the VMM core talks to.
//!
//! Port map (everything else reads as all-ones and ignores writes):
//!
//! | ports          | device                                  |
//! |----------------|-----------------------------------------|
//! | 0x20-0x21      | master 8259A                            |
//! | 0x40-0x43      | 8254 PIT                                |
//! | 0x61           | port B: PIT channel 2 gate / output     |
//! | 0x80           | POST diagnostic port (ignored)          |
//! | 0xA0-0xA1      | slave 8259A                             |
//! | 0xF4           | isa-debug-exit                          |
//! | 0x3F8-0x3FF    | COM1 16550A UART, IRQ 4                 |
//! | 0x4D0-0x4D1    | ELCR (edge/level control for the PICs)  |
//!
//! Device-to-PIC wiring is done here rather than inside the devices:
//! after every port access and every [`PcDevices::update`], pending PIT
//! channel 0 edges are pulsed on IRQ 0 and UART interrupt requests on IRQ 4.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::debug;

use crate::bus::{lock, BusError, IoOutcome, PioBus, PioDevice, SharedPioDevice};
use crate::clock::{Clock, SystemClock};
use crate::debug_exit::{DebugExit, DEBUG_EXIT_PORT};
use crate::pic::{Pic, ELCR_MASTER, PIC_MASTER_CMD, PIC_SLAVE_CMD};
use crate::pit::{Pit, PIT_CHANNEL0, PORT_B};
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

/// The legacy PC devices: PIC pair, PIT, COM1, isa-debug-exit, port 0x61 and
/// port 0x80, on one port-I/O bus.
pub struct PcDevices {
    bus: PioBus,
    pic: Arc<Mutex<Pic>>,
    pit: Arc<Mutex<Pit>>,
    uart: Arc<Mutex<Uart>>,
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

    /// The platform with an explicit time source for the PIT's port reads
    /// (tests use [`crate::ManualClock`]). Instants passed to
    /// [`PcDevices::update`] should come from the same clock.
    pub fn with_clock(serial_out: Box<dyn Write + Send>, clock: Arc<dyn Clock>) -> Self {
        let pic = Arc::new(Mutex::new(Pic::new()));
        let pit = Arc::new(Mutex::new(Pit::new(clock)));
        let uart = Arc::new(Mutex::new(Uart::new(COM1_BASE, serial_out)));
        let mut platform = Self {
            bus: PioBus::new(),
            pic,
            pit,
            uart,
        };
        let pic: SharedPioDevice = platform.pic.clone();
        let pit: SharedPioDevice = platform.pit.clone();
        let uart: SharedPioDevice = platform.uart.clone();
        let map: [(u16, u16, SharedPioDevice); 8] = [
            (PIC_MASTER_CMD, 2, pic.clone()),
            (PIC_SLAVE_CMD, 2, pic.clone()),
            (ELCR_MASTER, 2, pic),
            (PIT_CHANNEL0, 4, pit.clone()),
            (PORT_B, 1, pit),
            (POST_PORT, 1, Arc::new(Mutex::new(PostCode::default()))),
            (DEBUG_EXIT_PORT, 1, Arc::new(Mutex::new(DebugExit))),
            (COM1_BASE, UART_PORT_COUNT, uart),
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

    /// Advances the PIT to `now` and forwards device interrupt requests to
    /// the PIC. Call it periodically and when [`PcDevices::next_deadline`]
    /// passes.
    pub fn update(&mut self, now: Instant) {
        lock(&self.pit).update(now);
        self.route_interrupts();
    }

    /// Pulses the PIC inputs of devices that signalled since the last call.
    fn route_interrupts(&mut self) {
        let timer = lock(&self.pit).take_irq0_edge();
        let serial = lock(&self.uart).take_interrupt_request();
        if timer || serial {
            let mut pic = lock(&self.pic);
            if timer {
                pic.pulse_irq(PIT_IRQ);
            }
            if serial {
                pic.pulse_irq(COM1_IRQ);
            }
        }
    }

    /// The PIC's INTR output: an interrupt is waiting for the CPU.
    pub fn interrupt_pending(&self) -> bool {
        lock(&self.pic).has_interrupt()
    }

    /// The INTA cycle: the vector to deliver, or `None` if INTR is low.
    pub fn acknowledge_interrupt(&mut self) -> Option<u8> {
        lock(&self.pic).acknowledge()
    }

    /// The earliest instant at which a timer will request an interrupt, for
    /// sleeping in HLT. May be in the past: call [`PcDevices::update`].
    pub fn next_deadline(&self) -> Option<Instant> {
        lock(&self.pit).next_deadline()
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
        assert_eq!(pc.io_in(0x70, 1), 0xff);
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
        assert!(pc.register_device(0x70, 2, dev).is_ok());
        assert_eq!(pc.io_in(0x70, 1), 0xff);
    }

    #[test]
    fn platform_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<PcDevices>();
    }
}
