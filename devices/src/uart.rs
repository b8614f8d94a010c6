//! The COM1 8250/16550A UART, built on rust-vmm's `vm-superio` serial model.
//!
//! `vm_superio::Serial` implements the register file (8250/16550 datasheet:
//! RBR/THR, IER, IIR, LCR, MCR, LSR, MSR, SCR and the DLAB divisor latch) as
//! a transmitter that is always ready: LSR reports THR empty (bit 5) and
//! transmitter idle (bit 6) at all times, so guest polling loops terminate
//! and bytes go straight to the output writer.
//!
//! # Interrupts
//!
//! `Serial` signals an interrupt through the [`Trigger`] trait whenever it
//! raises an interrupt condition (THR empty, received data) that the guest
//! enabled in IER. [`IrqRequest`] only records that request; the platform
//! collects it with [`Uart::take_interrupt_request`] and pulses IRQ 4 on the
//! PIC, as an edge on the ISA bus. The request is dropped when MCR OUT2 is
//! clear, because on PC serial cards OUT2 gates the UART's INTRPT pin onto
//! the bus (8250 datasheet: OUT2 is a general-purpose output; PC/AT
//! technical reference: it enables the interrupt driver). Linux sets OUT2
//! when it opens the port with an IRQ.
//!
//! # Input
//!
//! The receive FIFO holds 64 bytes. [`Uart::enqueue_input`] accepts any
//! amount and keeps the excess in a host-side queue (bounded by
//! [`MAX_PENDING_INPUT`]) that refills the FIFO as the guest drains it, so a
//! pasted line is not truncated.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tracing::{debug, warn};
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};

use crate::bus::{read_bytewise, write_bytewise, IoOutcome, PioDevice};

/// COM1's base port.
pub const COM1_BASE: u16 = 0x3f8;
/// COM1's ISA IRQ.
pub const COM1_IRQ: u8 = 4;
/// The UART decodes eight consecutive ports.
pub const UART_PORT_COUNT: u16 = 8;
/// Host-side input waiting for room in the receive FIFO is capped here;
/// anything beyond is dropped (with a warning).
pub const MAX_PENDING_INPUT: usize = 64 * 1024;

/// Receive FIFO depth of the 16550A (and of `vm-superio`'s model).
const RX_FIFO_SIZE: usize = 64;
/// Register offsets used here (the rest are `vm-superio`'s business).
const RBR_OFFSET: u8 = 0;
const MCR_OFFSET: u8 = 4;
/// MCR bit 3.
const MCR_OUT2: u8 = 0x08;

/// A [`Trigger`] that records that the UART wants to interrupt.
#[derive(Debug, Clone, Default)]
pub struct IrqRequest(Arc<AtomicBool>);

impl IrqRequest {
    /// Whether an interrupt was requested since the last call; clears it.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

impl Trigger for IrqRequest {
    type E = Infallible;

    fn trigger(&self) -> Result<(), Infallible> {
        self.0.store(true, Ordering::Release);
        Ok(())
    }
}

type SerialDevice = Serial<IrqRequest, NoEvents, Box<dyn Write + Send>>;

/// A 16550A UART at a fixed base port.
pub struct Uart {
    base: u16,
    serial: SerialDevice,
    irq: IrqRequest,
    pending_input: VecDeque<u8>,
}

impl std::fmt::Debug for Uart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uart")
            .field("base", &format_args!("{:#x}", self.base))
            .field("state", &self.serial.state())
            .field("pending_input", &self.pending_input.len())
            .finish()
    }
}

impl Uart {
    /// A UART decoding `base..base + 8` that transmits to `out`.
    pub fn new(base: u16, out: Box<dyn Write + Send>) -> Self {
        let irq = IrqRequest::default();
        Self {
            base,
            serial: Serial::new(irq.clone(), out),
            irq,
            pending_input: VecDeque::new(),
        }
    }

    /// The first port the UART decodes.
    pub fn base(&self) -> u16 {
        self.base
    }

    /// Reads register `offset` (0-7); other offsets read 0xFF.
    pub fn read_register(&mut self, offset: u8) -> u8 {
        if u16::from(offset) >= UART_PORT_COUNT {
            return 0xff;
        }
        let value = self.serial.read(offset);
        if offset == RBR_OFFSET {
            // The guest may have made room in the receive FIFO.
            self.refill();
        }
        value
    }

    /// Writes register `offset` (0-7); other offsets are ignored.
    pub fn write_register(&mut self, offset: u8, value: u8) {
        if u16::from(offset) >= UART_PORT_COUNT {
            return;
        }
        if let Err(e) = self.serial.write(offset, value) {
            // Only the output writer can fail; the guest must not notice.
            debug!(error = ?e, "uart: output write failed");
        }
    }

    /// Queues `bytes` as received data (console input). Raises the
    /// received-data interrupt if the guest enabled it.
    pub fn enqueue_input(&mut self, bytes: &[u8]) {
        let room = MAX_PENDING_INPUT.saturating_sub(self.pending_input.len());
        if bytes.len() > room {
            warn!(
                dropped = bytes.len() - room,
                "uart: input queue full, dropping input"
            );
        }
        self.pending_input.extend(bytes.iter().take(room));
        self.refill();
    }

    /// Moves queued input into the receive FIFO as far as it has room.
    fn refill(&mut self) {
        while !self.pending_input.is_empty() && self.serial.fifo_capacity() > 0 {
            let chunk = self.pending_input.make_contiguous();
            match self.serial.enqueue_raw_bytes(chunk) {
                // Loopback mode accepts nothing from outside; keep the input.
                Ok(0) => break,
                Ok(n) => {
                    self.pending_input.drain(..n);
                }
                Err(e) => {
                    debug!(error = ?e, "uart: receive FIFO refused input");
                    break;
                }
            }
        }
    }

    /// Bytes of input not yet read by the guest (FIFO and host queue).
    pub fn pending_input_len(&self) -> usize {
        let fifo = RX_FIFO_SIZE.saturating_sub(self.serial.fifo_capacity());
        fifo + self.pending_input.len()
    }

    /// Whether the UART asserted its interrupt since the last call, with
    /// OUT2 gating applied (see the module documentation). Also feeds the
    /// FIFO from the host queue.
    pub fn take_interrupt_request(&mut self) -> bool {
        self.refill();
        if !self.irq.take() {
            return false;
        }
        // MCR reads have no side effects.
        let out2 = self.serial.read(MCR_OFFSET) & MCR_OUT2 != 0;
        if !out2 {
            debug!("uart: interrupt suppressed, MCR OUT2 clear");
        }
        out2
    }

    fn offset(&self, port: u16) -> Option<u8> {
        port.checked_sub(self.base)
            .filter(|&o| o < UART_PORT_COUNT)
            .and_then(|o| u8::try_from(o).ok())
    }
}

impl PioDevice for Uart {
    fn read(&mut self, port: u16, data: &mut [u8]) {
        read_bytewise(port, data, |p| match self.offset(p) {
            Some(offset) => self.read_register(offset),
            None => 0xff,
        });
    }

    fn write(&mut self, port: u16, data: &[u8]) -> IoOutcome {
        write_bytewise(port, data, |p, v| {
            if let Some(offset) = self.offset(p) {
                self.write_register(offset, v);
            }
        });
        IoOutcome::Continue
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A writer tests can inspect after handing it to a device.
    #[derive(Clone, Default)]
    pub(crate) struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

    impl SharedBuf {
        pub(crate) fn contents(&self) -> Vec<u8> {
            self.0.lock().map(|v| v.clone()).unwrap_or_default()
        }
    }

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const THR: u16 = COM1_BASE;
    const IER: u16 = COM1_BASE + 1;
    const IIR: u16 = COM1_BASE + 2;
    const LCR: u16 = COM1_BASE + 3;
    const MCR: u16 = COM1_BASE + 4;
    const LSR: u16 = COM1_BASE + 5;

    fn uart() -> (Uart, SharedBuf) {
        let buf = SharedBuf::default();
        (Uart::new(COM1_BASE, Box::new(buf.clone())), buf)
    }

    fn inb(u: &mut Uart, port: u16) -> u8 {
        let mut b = [0];
        u.read(port, &mut b);
        b[0]
    }

    #[test]
    fn transmits_and_reports_thr_empty() {
        let (mut u, buf) = uart();
        assert_eq!(u.write(THR, b"h"), IoOutcome::Continue);
        u.write(THR, b"i");
        assert_eq!(buf.contents(), b"hi");
        assert_eq!(inb(&mut u, LSR) & 0x60, 0x60);
        // No IER bits: no interrupt.
        assert!(!u.take_interrupt_request());
    }

    #[test]
    fn divisor_latch_does_not_transmit() {
        let (mut u, buf) = uart();
        u.write(LCR, &[0x83]);
        u.write(THR, &[0x01]);
        u.write(IER, &[0x00]);
        assert_eq!(inb(&mut u, THR), 0x01);
        u.write(LCR, &[0x03]);
        assert_eq!(inb(&mut u, LCR), 0x03);
        assert!(buf.contents().is_empty());
    }

    #[test]
    fn thr_empty_interrupt_needs_ier_and_out2() {
        let (mut u, _buf) = uart();
        u.write(MCR, &[0x0b]); // DTR | RTS | OUT2
        u.write(IER, &[0x02]);
        assert!(u.take_interrupt_request());
        assert_eq!(inb(&mut u, IIR) & 0x0f, 0x02);
        assert!(!u.take_interrupt_request());
        u.write(THR, b"x");
        assert!(u.take_interrupt_request());
        // OUT2 clear: the request never reaches the bus.
        inb(&mut u, IIR);
        u.write(MCR, &[0x03]);
        u.write(THR, b"y");
        assert!(!u.take_interrupt_request());
    }

    #[test]
    fn input_beyond_fifo_is_queued_and_refilled() {
        let (mut u, _buf) = uart();
        u.write(IER, &[0x01]);
        let input: Vec<u8> = (0..100u8).collect();
        u.enqueue_input(&input);
        assert!(u.take_interrupt_request());
        assert_eq!(u.pending_input_len(), 100);
        let mut got = vec![];
        while inb(&mut u, LSR) & 0x01 != 0 {
            got.push(inb(&mut u, THR));
        }
        assert_eq!(got, input);
        assert_eq!(u.pending_input_len(), 0);
    }

    #[test]
    fn wide_and_foreign_accesses() {
        let (mut u, buf) = uart();
        // A 16-bit write at THR also writes IER.
        u.write(THR, &[b'z', 0x00]);
        assert_eq!(buf.contents(), b"z");
        let mut w = [0u8; 4];
        u.read(COM1_BASE + 6, &mut w);
        assert_eq!(&w[2..], &[0xff, 0xff]);
        assert_eq!(u.read_register(9), 0xff);
        u.write_register(200, 1);
        assert_eq!(inb(&mut u, 0x2f8), 0xff);
    }
}
