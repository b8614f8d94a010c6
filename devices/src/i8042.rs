//! The Intel 8042 keyboard controller at ports 0x60/0x64, with a PS/2
//! keyboard on its first port and nothing plugged into its auxiliary port.
//!
//! Port 0x60 is the data port: reads take the output buffer, writes go to
//! the keyboard or supply the argument of a controller command. Port 0x64
//! reads the status register and takes controller commands. References are
//! to the IBM PC/AT Technical Reference ("Keyboard Controller": status
//! register, commands, output port), the IBM PS/2 Hardware Interface
//! Technical Reference ("Keyboard/Auxiliary Device Controller": commands
//! 0xA7-0xA9 and 0xD2-0xD4) and the IBM PS/2 keyboard specification
//! ("Commands from the System"). Where documents and chips disagree, the
//! model answers as QEMU's (hw/input/pckbd.c, hw/input/ps2.c) does, because
//! that is what Linux is tested against in virtual machines.
//!
//! rust-vmm's `vm-superio` has an `I8042Device`, but it only implements the
//! 0xFE reset pulse: its status register always reads 0, so Linux's i8042
//! driver would time out on every controller command. It does not fit.
//!
//! # Output buffer and interrupts
//!
//! The controller has a single output buffer. Controller responses go to it
//! first, then keyboard bytes (only while the keyboard interface is enabled,
//! CTR bit 4 clear: a disabled interface holds the clock line low, so the
//! keyboard keeps its bytes). Whenever a byte enters the buffer, IRQ 1 (or
//! IRQ 12 for auxiliary-port data) rises if CTR bit 0 (bit 1) is set, and
//! falls when the guest reads port 0x60, so every byte is one edge on the
//! edge-triggered ISA line; [`I8042::take_kbd_irq`] and
//! [`I8042::take_aux_irq`] hand those edges to the platform. Controller
//! responses are keyboard-port data, as on the real chip.
//!
//! # The auxiliary port
//!
//! The controller has an auxiliary (mouse) interface, so commands 0xA7-0xA9
//! and the loopback 0xD3 behave as on any PS/2 controller (Linux's
//! `i8042_check_aux` passes and it registers the AUX port as with QEMU), but
//! no device is attached: every byte sent with 0xD4 is answered by the
//! controller with 0xFE and the time-out status bit, which is how a PS/2
//! controller reports a missing device. Linux's psmouse probe then fails
//! silently with -ENODEV.
//!
//! # Not modelled
//!
//! * Keystrokes: there is no host keyboard input, so no scan codes are
//!   generated and the set 2 to set 1 translation table (CTR bit 6) is only
//!   applied to the keyboard ID and scan-code-set answers, like QEMU does.
//! * The A20 gate (output port bit 1, commands 0xDD/0xDF) is stored but
//!   never masks address line 20: the VMM boots guests in long mode.
//! * Multiplexed (active PS/2 multiplexing) mode: the loopback answers the
//!   MUX handshake verbatim, which says "no multiplexer".

use std::collections::VecDeque;

use tracing::debug;

use crate::bus::{read_bytewise, write_bytewise_outcome, IoOutcome, PioDevice};

/// Data port.
pub const I8042_DATA_PORT: u16 = 0x60;
/// Status (read) and command (write) port.
pub const I8042_COMMAND_PORT: u16 = 0x64;
/// Keyboard port interrupt.
pub const KBD_IRQ: u8 = 1;
/// Auxiliary (mouse) port interrupt.
pub const AUX_IRQ: u8 = 12;

/// Status bit 0: the output buffer holds a byte for the host.
pub const STATUS_OBF: u8 = 0x01;
/// Status bit 1: the input buffer is full (never: writes are processed at
/// once).
pub const STATUS_IBF: u8 = 0x02;
/// Status bit 2: system flag, set by a passed self-test (mirrors CTR bit 2).
pub const STATUS_SYS: u8 = 0x04;
/// Status bit 3: the last write went to the command port.
pub const STATUS_CMD: u8 = 0x08;
/// Status bit 4: the keyboard is not inhibited by the keylock switch.
pub const STATUS_UNLOCKED: u8 = 0x10;
/// Status bit 5: the output buffer byte came from the auxiliary port.
pub const STATUS_AUX_DATA: u8 = 0x20;
/// Status bit 6: the last transmission timed out (no device).
pub const STATUS_TIMEOUT: u8 = 0x40;

/// CTR bit 0: interrupt on keyboard data (IRQ 1).
pub const CTR_KBD_INT: u8 = 0x01;
/// CTR bit 1: interrupt on auxiliary data (IRQ 12).
pub const CTR_AUX_INT: u8 = 0x02;
/// CTR bit 2: system flag.
pub const CTR_SYS: u8 = 0x04;
/// CTR bit 4: keyboard interface disabled.
pub const CTR_KBD_DISABLE: u8 = 0x10;
/// CTR bit 5: auxiliary interface disabled.
pub const CTR_AUX_DISABLE: u8 = 0x20;
/// CTR bit 6: translate keyboard scan code set 2 to set 1.
pub const CTR_XLATE: u8 = 0x40;
/// The CTR a PC BIOS leaves behind: translation, POST passed, keyboard
/// interrupts on, auxiliary port disabled.
pub const CTR_DEFAULT: u8 = CTR_XLATE | CTR_AUX_DISABLE | CTR_SYS | CTR_KBD_INT;

/// Output port bit 0: system reset line (active low).
pub const OUTPUT_RESET: u8 = 0x01;
/// Output port bit 1: A20 gate.
pub const OUTPUT_A20: u8 = 0x02;
/// Output port bit 4: output buffer full with keyboard data (IRQ 1 pin).
pub const OUTPUT_KBD_OBF: u8 = 0x10;
/// Output port bit 5: output buffer full with auxiliary data (IRQ 12 pin).
pub const OUTPUT_AUX_OBF: u8 = 0x20;

/// Self-test passed (command 0xAA).
const SELF_TEST_OK: u8 = 0x55;
/// Interface test passed (commands 0xA9, 0xAB).
const INTERFACE_OK: u8 = 0x00;
/// Input port: bit 7 = keyboard not inhibited.
const INPUT_PORT: u8 = 0x80;
/// Keyboard replies.
const KBD_ACK: u8 = 0xfa;
const KBD_RESEND: u8 = 0xfe;
const KBD_BAT_OK: u8 = 0xaa;
const KBD_ECHO: u8 = 0xee;
/// MF2 keyboard ID; the second byte reads 0x41 through translation.
const KBD_ID: [u8; 2] = [0xab, 0x83];
const KBD_ID_TRANSLATED: u8 = 0x41;
/// Scan code set numbers 1-3 as they read through translation.
const SET_TRANSLATED: [u8; 3] = [0x43, 0x41, 0x3f];
/// Typematic rate and delay after reset: 10.9 characters/s, 500 ms.
const TYPEMATIC_DEFAULT: u8 = 0x2b;
/// Bytes a PS/2 keyboard or the controller buffers; more are dropped.
const QUEUE_LIMIT: usize = 16;

/// Which interface an output-buffer byte belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Keyboard,
    Aux,
}

#[derive(Debug, Clone, Copy)]
struct OutByte {
    value: u8,
    source: Source,
    timeout: bool,
}

/// A controller command waiting for its data byte on port 0x60.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingData {
    /// 0x60-0x7F: write controller RAM byte (0 is the CTR).
    WriteRam(u8),
    /// 0xD1.
    WriteOutputPort,
    /// 0xD2: the byte appears as keyboard data.
    WriteKbdBuffer,
    /// 0xD3: the byte appears as auxiliary data.
    WriteAuxBuffer,
    /// 0xD4: the byte goes to the auxiliary device.
    WriteAux,
}

/// The PS/2 keyboard's command interpreter.
#[derive(Debug)]
struct Keyboard {
    out: VecDeque<u8>,
    /// A command (0xED, 0xF0, 0xF3) waiting for its argument.
    expecting: Option<u8>,
    scanning: bool,
    scancode_set: u8,
    leds: u8,
    typematic: u8,
    last_sent: u8,
}

impl Keyboard {
    fn new() -> Self {
        Self {
            out: VecDeque::new(),
            expecting: None,
            scanning: true,
            scancode_set: 2,
            leds: 0,
            typematic: TYPEMATIC_DEFAULT,
            last_sent: KBD_ACK,
        }
    }

    fn defaults(&mut self) {
        self.scancode_set = 2;
        self.leds = 0;
        self.typematic = TYPEMATIC_DEFAULT;
        self.expecting = None;
    }

    fn send(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.out.len() < QUEUE_LIMIT {
                self.out.push_back(b);
                self.last_sent = b;
            } else {
                debug!(byte = b, "ps2 keyboard: output queue full, byte dropped");
            }
        }
    }

    /// A byte from the host; `translate` is CTR bit 6 at that moment.
    fn write(&mut self, v: u8, translate: bool) {
        if let Some(cmd) = self.expecting.take() {
            match cmd {
                0xed => {
                    self.leds = v & 0x07;
                    self.send(&[KBD_ACK]);
                }
                0xf3 => {
                    self.typematic = v & 0x7f;
                    self.send(&[KBD_ACK]);
                }
                // 0xF0: select scan code set, 0 = report the current one.
                _ => match v {
                    0 => {
                        let set = if translate {
                            SET_TRANSLATED[usize::from(self.scancode_set - 1)]
                        } else {
                            self.scancode_set
                        };
                        self.send(&[KBD_ACK, set]);
                    }
                    1..=3 => {
                        self.scancode_set = v;
                        self.send(&[KBD_ACK]);
                    }
                    _ => self.send(&[KBD_RESEND]),
                },
            }
            return;
        }
        match v {
            0xed | 0xf0 | 0xf3 => {
                self.expecting = Some(v);
                self.send(&[KBD_ACK]);
            }
            0xee => self.send(&[KBD_ECHO]),
            0xf2 => {
                let id1 = if translate {
                    KBD_ID_TRANSLATED
                } else {
                    KBD_ID[1]
                };
                self.send(&[KBD_ACK, KBD_ID[0], id1]);
            }
            0xf4 => {
                self.scanning = true;
                self.send(&[KBD_ACK]);
            }
            0xf5 => {
                self.defaults();
                self.scanning = false;
                self.send(&[KBD_ACK]);
            }
            0xf6 => {
                self.defaults();
                self.scanning = true;
                self.send(&[KBD_ACK]);
            }
            // Scan code set 3 key-type commands: accepted, no effect.
            0xf7..=0xfd => self.send(&[KBD_ACK]),
            0xfe => {
                let last = self.last_sent;
                self.send(&[last]);
            }
            0xff => {
                self.defaults();
                self.scanning = true;
                self.out.clear();
                self.send(&[KBD_ACK, KBD_BAT_OK]);
            }
            _ => {
                debug!(
                    command = format_args!("{v:#04x}"),
                    "ps2 keyboard: unknown command"
                );
                self.send(&[KBD_RESEND]);
            }
        }
    }
}

/// The 8042 controller with its keyboard.
#[derive(Debug)]
pub struct I8042 {
    /// Controller RAM; byte 0 is the controller configuration byte (CTR).
    ram: [u8; 32],
    sys_flag: bool,
    last_was_command: bool,
    pending: Option<PendingData>,
    output_port: u8,
    /// The output buffer.
    obuf: Option<OutByte>,
    /// What port 0x60 reads when the buffer is empty: the last byte.
    last_out: u8,
    /// Controller-generated bytes waiting for the output buffer.
    ctrl_queue: VecDeque<OutByte>,
    keyboard: Keyboard,
    kbd_line: bool,
    aux_line: bool,
    kbd_edge: bool,
    aux_edge: bool,
}

impl Default for I8042 {
    fn default() -> Self {
        Self::new()
    }
}

impl I8042 {
    /// The controller as a BIOS leaves it: self-test passed, CTR
    /// [`CTR_DEFAULT`], A20 enabled, buffers empty.
    pub fn new() -> Self {
        let mut ram = [0u8; 32];
        ram[0] = CTR_DEFAULT;
        Self {
            ram,
            sys_flag: true,
            last_was_command: false,
            pending: None,
            output_port: OUTPUT_RESET | OUTPUT_A20,
            obuf: None,
            last_out: 0,
            ctrl_queue: VecDeque::new(),
            keyboard: Keyboard::new(),
            kbd_line: false,
            aux_line: false,
            kbd_edge: false,
            aux_edge: false,
        }
    }

    /// The controller configuration byte.
    pub fn ctr(&self) -> u8 {
        self.ram[0]
    }

    /// Output port bit 1. Stored only; see the module documentation.
    pub fn a20_enabled(&self) -> bool {
        self.output_port & OUTPUT_A20 != 0
    }

    /// Whether a byte entered the output buffer as keyboard data with
    /// CTR bit 0 set since the last call (IRQ 1 should be pulsed).
    pub fn take_kbd_irq(&mut self) -> bool {
        std::mem::take(&mut self.kbd_edge)
    }

    /// Whether a byte entered the output buffer as auxiliary data with
    /// CTR bit 1 set since the last call (IRQ 12 should be pulsed).
    pub fn take_aux_irq(&mut self) -> bool {
        std::mem::take(&mut self.aux_edge)
    }

    /// The status register.
    pub fn status(&self) -> u8 {
        let mut s = STATUS_UNLOCKED;
        if self.sys_flag {
            s |= STATUS_SYS;
        }
        if self.last_was_command {
            s |= STATUS_CMD;
        }
        if let Some(b) = self.obuf {
            s |= STATUS_OBF;
            if b.source == Source::Aux {
                s |= STATUS_AUX_DATA;
            }
            if b.timeout {
                s |= STATUS_TIMEOUT;
            }
        }
        s
    }

    fn queue(&mut self, value: u8, source: Source, timeout: bool) {
        if self.ctrl_queue.len() < QUEUE_LIMIT {
            self.ctrl_queue.push_back(OutByte {
                value,
                source,
                timeout,
            });
        } else {
            debug!(value, "i8042: controller queue full, byte dropped");
        }
    }

    /// Moves the next byte into an empty output buffer and updates the
    /// interrupt lines.
    fn refill(&mut self) {
        if self.obuf.is_none() {
            if let Some(b) = self.ctrl_queue.pop_front() {
                self.obuf = Some(b);
            } else if self.ctr() & CTR_KBD_DISABLE == 0 {
                if let Some(value) = self.keyboard.out.pop_front() {
                    self.obuf = Some(OutByte {
                        value,
                        source: Source::Keyboard,
                        timeout: false,
                    });
                }
            }
        }
        let ctr = self.ctr();
        let (kbd, aux) = match self.obuf {
            Some(b) if b.source == Source::Keyboard => (ctr & CTR_KBD_INT != 0, false),
            Some(_) => (false, ctr & CTR_AUX_INT != 0),
            None => (false, false),
        };
        self.kbd_edge |= kbd && !self.kbd_line;
        self.aux_edge |= aux && !self.aux_line;
        self.kbd_line = kbd;
        self.aux_line = aux;
    }

    fn read_data(&mut self) -> u8 {
        if let Some(b) = self.obuf.take() {
            self.last_out = b.value;
            // OBF falls with the read; the next byte is a new edge.
            self.kbd_line = false;
            self.aux_line = false;
            self.refill();
        }
        self.last_out
    }

    /// The output port with the live OBF interrupt bits.
    fn output_port_value(&self) -> u8 {
        let obf = match self.obuf {
            Some(b) if b.source == Source::Keyboard => OUTPUT_KBD_OBF,
            Some(_) => OUTPUT_AUX_OBF,
            None => 0,
        };
        (self.output_port & !(OUTPUT_KBD_OBF | OUTPUT_AUX_OBF)) | obf
    }

    fn write_command(&mut self, cmd: u8) -> IoOutcome {
        self.last_was_command = true;
        // A new command abandons one still waiting for its data byte.
        self.pending = None;
        let mut outcome = IoOutcome::Continue;
        match cmd {
            0x20..=0x3f => self.queue(self.ram[usize::from(cmd & 0x1f)], Source::Keyboard, false),
            0x60..=0x7f => self.pending = Some(PendingData::WriteRam(cmd & 0x1f)),
            0xa7 => self.ram[0] |= CTR_AUX_DISABLE,
            0xa8 => self.ram[0] &= !CTR_AUX_DISABLE,
            0xa9 | 0xab => self.queue(INTERFACE_OK, Source::Keyboard, false),
            0xaa => {
                self.sys_flag = true;
                self.queue(SELF_TEST_OK, Source::Keyboard, false);
            }
            0xad => self.ram[0] |= CTR_KBD_DISABLE,
            0xae => self.ram[0] &= !CTR_KBD_DISABLE,
            0xc0 => self.queue(INPUT_PORT, Source::Keyboard, false),
            0xd0 => self.queue(self.output_port_value(), Source::Keyboard, false),
            0xd1 => self.pending = Some(PendingData::WriteOutputPort),
            0xd2 => self.pending = Some(PendingData::WriteKbdBuffer),
            0xd3 => self.pending = Some(PendingData::WriteAuxBuffer),
            0xd4 => self.pending = Some(PendingData::WriteAux),
            0xdd => self.output_port &= !OUTPUT_A20,
            0xdf => self.output_port |= OUTPUT_A20,
            // Read test inputs: keyboard clock and data low.
            0xe0 => self.queue(0x00, Source::Keyboard, false),
            // Pulse output port bits 0-3 low for those clear in the
            // command; bit 0 is the CPU reset line.
            0xf0..=0xff if cmd & OUTPUT_RESET == 0 => {
                debug!(
                    command = format_args!("{cmd:#04x}"),
                    "i8042: CPU reset pulse"
                );
                outcome = IoOutcome::Reset;
            }
            0xf0..=0xff => {}
            _ => debug!(
                command = format_args!("{cmd:#04x}"),
                "i8042: unknown controller command ignored"
            ),
        }
        self.refill();
        outcome
    }

    fn write_data(&mut self, v: u8) -> IoOutcome {
        self.last_was_command = false;
        let mut outcome = IoOutcome::Continue;
        match self.pending.take() {
            Some(PendingData::WriteRam(i)) => {
                self.ram[usize::from(i)] = v;
                if i == 0 {
                    self.sys_flag = v & CTR_SYS != 0;
                }
            }
            Some(PendingData::WriteOutputPort) => {
                self.output_port = v;
                if v & OUTPUT_RESET == 0 {
                    debug!(value = v, "i8042: output port reset line asserted");
                    outcome = IoOutcome::Reset;
                }
            }
            Some(PendingData::WriteKbdBuffer) => self.queue(v, Source::Keyboard, false),
            Some(PendingData::WriteAuxBuffer) => self.queue(v, Source::Aux, false),
            Some(PendingData::WriteAux) => {
                // Sending to the device enables its interface (QEMU does
                // the same); nobody answers, so the controller times out.
                self.ram[0] &= !CTR_AUX_DISABLE;
                self.queue(KBD_RESEND, Source::Aux, true);
            }
            None => {
                self.ram[0] &= !CTR_KBD_DISABLE;
                let translate = self.ctr() & CTR_XLATE != 0;
                self.keyboard.write(v, translate);
            }
        }
        self.refill();
        outcome
    }

    /// Reads the 8-bit register at `port`; unknown ports read 0xFF.
    pub fn read_port(&mut self, port: u16) -> u8 {
        match port {
            I8042_DATA_PORT => self.read_data(),
            I8042_COMMAND_PORT => self.status(),
            _ => 0xff,
        }
    }

    /// Writes the 8-bit register at `port`; unknown ports are ignored.
    /// Returns [`IoOutcome::Reset`] when the write pulses the CPU reset line.
    pub fn write_port(&mut self, port: u16, value: u8) -> IoOutcome {
        match port {
            I8042_DATA_PORT => self.write_data(value),
            I8042_COMMAND_PORT => self.write_command(value),
            _ => {
                debug!(
                    port = format_args!("{port:#x}"),
                    value, "i8042: write to unknown port ignored"
                );
                IoOutcome::Continue
            }
        }
    }
}

impl PioDevice for I8042 {
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

    /// Linux's `__i8042_command`: the command, its parameter bytes, then
    /// `results` bytes, each only once OBF is set (a missing byte fails the
    /// test instead of timing out).
    fn command(kbc: &mut I8042, cmd: u8, params: &[u8], results: usize) -> Vec<u8> {
        assert_eq!(kbc.read_port(I8042_COMMAND_PORT) & STATUS_IBF, 0);
        assert_eq!(kbc.write_port(I8042_COMMAND_PORT, cmd), IoOutcome::Continue);
        for &p in params {
            assert_eq!(kbc.read_port(I8042_COMMAND_PORT) & STATUS_IBF, 0);
            assert_eq!(kbc.write_port(I8042_DATA_PORT, p), IoOutcome::Continue);
        }
        (0..results)
            .map(|_| {
                assert_ne!(
                    kbc.read_port(I8042_COMMAND_PORT) & STATUS_OBF,
                    0,
                    "result of command {cmd:#x} missing"
                );
                kbc.read_port(I8042_DATA_PORT)
            })
            .collect()
    }

    /// Linux's `i8042_flush`: bytes read until OBF clears.
    fn flush(kbc: &mut I8042) -> Vec<u8> {
        let mut v = vec![];
        while kbc.read_port(I8042_COMMAND_PORT) & STATUS_OBF != 0 {
            v.push(kbc.read_port(I8042_DATA_PORT));
            assert!(v.len() <= QUEUE_LIMIT, "i8042_flush would fail");
        }
        v
    }

    /// A keyboard byte as atkbd receives it: IRQ 1, then status and data.
    fn kbd_irq_byte(kbc: &mut I8042) -> Option<u8> {
        if !kbc.take_kbd_irq() {
            return None;
        }
        let status = kbc.read_port(I8042_COMMAND_PORT);
        assert_eq!(status & (STATUS_OBF | STATUS_AUX_DATA), STATUS_OBF);
        Some(kbc.read_port(I8042_DATA_PORT))
    }

    fn kbd_bytes(kbc: &mut I8042) -> Vec<u8> {
        std::iter::from_fn(|| kbd_irq_byte(kbc)).collect()
    }

    /// `i8042_controller_check`, `i8042_controller_selftest` and
    /// `i8042_controller_init`.
    #[test]
    fn linux_controller_check_selftest_and_init() {
        let mut kbc = I8042::new();
        assert_eq!(kbc.read_port(I8042_COMMAND_PORT), 0x14);
        // `i8042_platform_init` on x86: A20 on through the output port,
        // then the "null command" 0xFF. Neither resets.
        assert_eq!(command(&mut kbc, 0xd1, &[0xdf], 0), []);
        assert_eq!(command(&mut kbc, 0xff, &[], 0), []);
        assert!(kbc.a20_enabled());
        assert!(flush(&mut kbc).is_empty());
        assert_eq!(command(&mut kbc, 0xaa, &[], 1), [0x55]);
        assert_eq!(kbc.read_port(I8042_COMMAND_PORT), 0x1c);
        // A stable CTR read.
        assert_eq!(command(&mut kbc, 0x20, &[], 1), [0x65]);
        assert_eq!(command(&mut kbc, 0x20, &[], 1), [0x65]);
        // Keylock: status bit 4 must be set or Linux warns.
        assert_ne!(kbc.read_port(I8042_COMMAND_PORT) & STATUS_UNLOCKED, 0);
        // Keyboard disabled, its interrupt off, translation kept.
        let ctr = (0x65 | CTR_KBD_DISABLE) & !CTR_KBD_INT;
        assert_eq!(command(&mut kbc, 0x60, &[ctr], 0), []);
        assert_eq!(command(&mut kbc, 0x20, &[], 1), [0x74]);
        assert!(flush(&mut kbc).is_empty());
        assert_eq!(command(&mut kbc, 0xab, &[], 1), [0x00]);
        // Controller responses were keyboard data, but CTR bit 0 was clear
        // after the CTR write; before it, each response was an IRQ 1 edge.
        assert!(kbc.take_kbd_irq());
        assert!(!kbc.take_aux_irq());
    }

    /// `i8042_check_aux`, `i8042_toggle_aux` and the MUX probe
    /// `i8042_set_mux_mode`.
    #[test]
    fn linux_check_aux_and_mux_probe() {
        let mut kbc = I8042::new();
        command(&mut kbc, 0x60, &[0x74], 0);
        let loop_test = |kbc: &mut I8042, v: u8| {
            assert_eq!(
                kbc.write_port(I8042_COMMAND_PORT, 0xd3),
                IoOutcome::Continue
            );
            kbc.write_port(I8042_DATA_PORT, v);
            let status = kbc.read_port(I8042_COMMAND_PORT);
            assert_eq!(
                status,
                STATUS_OBF | STATUS_SYS | STATUS_UNLOCKED | STATUS_AUX_DATA
            );
            kbc.read_port(I8042_DATA_PORT)
        };
        assert_eq!(loop_test(&mut kbc, 0x5a), 0x5a);
        // Bit assignment test.
        command(&mut kbc, 0xa7, &[], 0);
        assert_eq!(
            command(&mut kbc, 0x20, &[], 1)[0] & CTR_AUX_DISABLE,
            CTR_AUX_DISABLE
        );
        command(&mut kbc, 0xa8, &[], 0);
        assert_eq!(command(&mut kbc, 0x20, &[], 1)[0] & CTR_AUX_DISABLE, 0);
        // The AUX IRQ test: enable the port and its interrupt, loop 0xa5.
        let ctr = (0x74 & !CTR_AUX_DISABLE) | CTR_AUX_INT;
        command(&mut kbc, 0x60, &[ctr], 0);
        let _ = kbc.take_aux_irq();
        kbc.write_port(I8042_COMMAND_PORT, 0xd3);
        kbc.write_port(I8042_DATA_PORT, 0xa5);
        assert!(kbc.take_aux_irq());
        assert!(!kbc.take_kbd_irq());
        assert_eq!(
            kbc.read_port(I8042_COMMAND_PORT) & (STATUS_OBF | STATUS_AUX_DATA),
            STATUS_OBF | STATUS_AUX_DATA
        );
        assert_eq!(kbc.read_port(I8042_DATA_PORT), 0xa5);
        // The interface test answers "no error", as QEMU's does.
        assert_eq!(command(&mut kbc, 0xa9, &[], 1), [0x00]);
        // MUX handshake: a verbatim third byte means "not a multiplexer".
        assert_eq!(loop_test(&mut kbc, 0xf0), 0xf0);
        assert_eq!(loop_test(&mut kbc, 0x56), 0x56);
        assert_eq!(loop_test(&mut kbc, 0xa4), 0xa4);
    }

    #[test]
    fn aux_device_is_absent() {
        let mut kbc = I8042::new();
        command(
            &mut kbc,
            0x60,
            &[CTR_XLATE | CTR_SYS | CTR_AUX_INT | CTR_AUX_DISABLE],
            0,
        );
        let _ = kbc.take_aux_irq();
        // psmouse's GETID through 0xD4: the controller times out.
        kbc.write_port(I8042_COMMAND_PORT, 0xd4);
        kbc.write_port(I8042_DATA_PORT, 0xf2);
        assert!(kbc.take_aux_irq());
        assert_eq!(
            kbc.read_port(I8042_COMMAND_PORT),
            STATUS_OBF | STATUS_SYS | STATUS_UNLOCKED | STATUS_AUX_DATA | STATUS_TIMEOUT
        );
        assert_eq!(kbc.read_port(I8042_DATA_PORT), 0xfe);
        assert_eq!(
            kbc.read_port(I8042_COMMAND_PORT),
            STATUS_SYS | STATUS_UNLOCKED
        );
        // Writing to the device enabled the interface.
        assert_eq!(kbc.ctr() & CTR_AUX_DISABLE, 0);
    }

    /// atkbd's probe and setup on a translating controller: GETID,
    /// deactivate, LEDs, typematic rate, activate.
    #[test]
    fn linux_atkbd_probe_translated() {
        let mut kbc = I8042::new();
        // i8042_enable_kbd_port.
        command(
            &mut kbc,
            0x60,
            &[CTR_XLATE | CTR_SYS | CTR_AUX_DISABLE | CTR_KBD_INT],
            0,
        );
        flush(&mut kbc);
        let _ = kbc.take_kbd_irq();
        let send = |kbc: &mut I8042, b: u8| {
            assert_eq!(kbc.write_port(I8042_DATA_PORT, b), IoOutcome::Continue);
            kbd_bytes(kbc)
        };
        assert_eq!(send(&mut kbc, 0xf2), [0xfa, 0xab, 0x41]);
        assert_eq!(send(&mut kbc, 0xf5), [0xfa]);
        assert_eq!(send(&mut kbc, 0xed), [0xfa]);
        assert_eq!(send(&mut kbc, 0x00), [0xfa]);
        assert_eq!(send(&mut kbc, 0xf3), [0xfa]);
        assert_eq!(send(&mut kbc, 0x00), [0xfa]);
        assert_eq!(send(&mut kbc, 0xf4), [0xfa]);
        assert!(kbc.keyboard.scanning);
        assert_eq!(kbc.keyboard.typematic, 0);
        assert_eq!(send(&mut kbc, 0xee), [0xee]);
        assert_eq!(send(&mut kbc, 0xf0), [0xfa]);
        assert_eq!(send(&mut kbc, 0x00), [0xfa, 0x41]);
        assert_eq!(send(&mut kbc, 0xff), [0xfa, 0xaa]);
        assert_eq!(send(&mut kbc, 0xf6), [0xfa]);
        assert_eq!(send(&mut kbc, 0x01), [0xfe]);
        // Resend repeats the last byte.
        assert_eq!(send(&mut kbc, 0xfe), [0xfe]);
    }

    #[test]
    fn untranslated_ids_and_scan_code_sets() {
        let mut kbc = I8042::new();
        command(&mut kbc, 0x60, &[CTR_SYS | CTR_KBD_INT], 0);
        flush(&mut kbc);
        let _ = kbc.take_kbd_irq();
        kbc.write_port(I8042_DATA_PORT, 0xf2);
        assert_eq!(kbd_bytes(&mut kbc), [0xfa, 0xab, 0x83]);
        kbc.write_port(I8042_DATA_PORT, 0xf0);
        kbc.write_port(I8042_DATA_PORT, 0x03);
        kbc.write_port(I8042_DATA_PORT, 0xf0);
        kbc.write_port(I8042_DATA_PORT, 0x00);
        assert_eq!(kbd_bytes(&mut kbc), [0xfa, 0xfa, 0xfa, 0xfa, 0x03]);
        kbc.write_port(I8042_DATA_PORT, 0xf0);
        kbc.write_port(I8042_DATA_PORT, 0x07);
        assert_eq!(kbd_bytes(&mut kbc), [0xfa, 0xfe]);
        // Reset restores set 2.
        kbc.write_port(I8042_DATA_PORT, 0xff);
        kbc.write_port(I8042_DATA_PORT, 0xf0);
        kbc.write_port(I8042_DATA_PORT, 0x00);
        assert_eq!(kbd_bytes(&mut kbc), [0xfa, 0xaa, 0xfa, 0xfa, 0x02]);
    }

    #[test]
    fn disabled_keyboard_interface_holds_bytes() {
        let mut kbc = I8042::new();
        command(&mut kbc, 0x60, &[CTR_SYS | CTR_KBD_INT], 0);
        let _ = kbc.take_kbd_irq();
        kbc.write_port(I8042_DATA_PORT, 0xf2);
        // 0xAD while the ACK sits in the buffer: the rest of the ID waits
        // in the keyboard.
        kbc.write_port(I8042_COMMAND_PORT, 0xad);
        assert_eq!(kbd_irq_byte(&mut kbc), Some(0xfa));
        assert_eq!(kbc.read_port(I8042_COMMAND_PORT) & STATUS_OBF, 0);
        assert!(!kbc.take_kbd_irq());
        // An empty buffer reads the last byte again.
        assert_eq!(kbc.read_port(I8042_DATA_PORT), 0xfa);
        kbc.write_port(I8042_COMMAND_PORT, 0xae);
        assert_eq!(kbd_bytes(&mut kbc), [0xab, 0x83]);
        // Without CTR bit 0 bytes arrive but raise no IRQ.
        command(&mut kbc, 0x60, &[CTR_SYS], 0);
        kbc.write_port(I8042_DATA_PORT, 0xee);
        assert!(!kbc.take_kbd_irq());
        assert_eq!(flush(&mut kbc), [0xee]);
        // Enabling the interrupt with a byte waiting raises it.
        kbc.write_port(I8042_DATA_PORT, 0xee);
        command(&mut kbc, 0x60, &[CTR_SYS | CTR_KBD_INT], 0);
        assert_eq!(kbd_bytes(&mut kbc), [0xee]);
    }

    #[test]
    fn output_port_a20_and_write_buffers() {
        let mut kbc = I8042::new();
        assert!(kbc.a20_enabled());
        assert_eq!(command(&mut kbc, 0xd0, &[], 1), [0x03]);
        command(&mut kbc, 0xdd, &[], 0);
        assert!(!kbc.a20_enabled());
        command(&mut kbc, 0xdf, &[], 0);
        assert!(kbc.a20_enabled());
        command(&mut kbc, 0xd1, &[0x01], 0);
        assert!(!kbc.a20_enabled());
        assert_eq!(command(&mut kbc, 0xd0, &[], 1), [0x01]);
        // 0xD2 fakes keyboard data.
        command(&mut kbc, 0xd2, &[0x1c], 0);
        assert_eq!(kbc.read_port(I8042_COMMAND_PORT) & STATUS_AUX_DATA, 0);
        assert_eq!(command(&mut kbc, 0xd0, &[], 0), []);
        assert_eq!(flush(&mut kbc), [0x1c, 0x01 | OUTPUT_KBD_OBF]);
        assert_eq!(command(&mut kbc, 0xc0, &[], 1), [0x80]);
        // Controller RAM beyond the CTR.
        command(&mut kbc, 0x7f, &[0x5a], 0);
        assert_eq!(command(&mut kbc, 0x3f, &[], 1), [0x5a]);
        // Writing the CTR's SYS bit drives the status SYS flag.
        command(&mut kbc, 0x60, &[0x00], 0);
        assert_eq!(kbc.read_port(I8042_COMMAND_PORT) & STATUS_SYS, 0);
    }

    #[test]
    fn reset_pulses() {
        let mut kbc = I8042::new();
        // Linux's BOOT_KBD reboot.
        assert_eq!(kbc.read_port(I8042_COMMAND_PORT) & STATUS_IBF, 0);
        assert_eq!(kbc.write_port(I8042_COMMAND_PORT, 0xfe), IoOutcome::Reset);
        assert_eq!(kbc.write(I8042_COMMAND_PORT, &[0xfe]), IoOutcome::Reset);
        for cmd in 0xf0..=0xffu8 {
            let expect = if cmd & 1 == 0 {
                IoOutcome::Reset
            } else {
                IoOutcome::Continue
            };
            assert_eq!(kbc.write_port(I8042_COMMAND_PORT, cmd), expect);
        }
        kbc.write_port(I8042_COMMAND_PORT, 0xd1);
        assert_eq!(kbc.write_port(I8042_DATA_PORT, 0xfe), IoOutcome::Reset);
        kbc.write_port(I8042_COMMAND_PORT, 0xd1);
        assert_eq!(kbc.write_port(I8042_DATA_PORT, 0xdf), IoOutcome::Continue);
        // A pending command argument is abandoned by a new command.
        kbc.write_port(I8042_COMMAND_PORT, 0xd1);
        kbc.write_port(I8042_COMMAND_PORT, 0xae);
        assert_eq!(kbc.write_port(I8042_DATA_PORT, 0x00), IoOutcome::Continue);
    }

    #[test]
    fn wild_accesses_do_not_panic() {
        let mut kbc = I8042::new();
        for cmd in 0..=255u8 {
            for v in [0x00, 0x5a, 0xa5, 0xf0, 0xf2, 0xff, cmd] {
                let _ = kbc.write_port(I8042_COMMAND_PORT, cmd);
                let _ = kbc.write_port(I8042_DATA_PORT, v);
                for _ in 0..4 {
                    let _ = kbc.read_port(I8042_DATA_PORT);
                }
                let _ = kbc.read_port(I8042_COMMAND_PORT);
            }
            let _ = kbc.take_kbd_irq();
            let _ = kbc.take_aux_irq();
        }
        // Overfilling every queue only drops bytes.
        for _ in 0..100 {
            kbc.write_port(I8042_DATA_PORT, 0xf2);
            kbc.write_port(I8042_COMMAND_PORT, 0xaa);
        }
        let mut buf = [0u8; 4];
        kbc.read(0x61, &mut buf);
        assert_eq!(buf[0], 0xff);
        let _ = kbc.write(0x60, &[0xff; 4]);
    }
}
