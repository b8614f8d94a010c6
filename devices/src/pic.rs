//! The PC/AT pair of Intel 8259A programmable interrupt controllers.
//!
//! The master sits at ports 0x20/0x21 and serves IRQ 0-7; the slave sits at
//! 0xA0/0xA1, serves IRQ 8-15 and drives the master's IR2 input (the
//! cascade). The edge/level control registers (ELCR) at 0x4D0/0x4D1 come
//! from the PIIX/ISA chipsets, not the 8259A itself.
//!
//! References are to the Intel 8259A datasheet (order no. 231468):
//! "Initialization Command Words" (ICW1-ICW4, fig. 6), "Operation Command
//! Words" (OCW1-OCW3, fig. 8), "Interrupt Sequence", "Edge and Level
//! Triggered Modes" and "Poll Command". The model follows the datasheet; the
//! few places where it is simplified are noted where they happen:
//!
//! * Edge-triggered requests stay latched in the IRR when the input drops
//!   before INTA (the datasheet requires the input to stay high until the
//!   first INTA and otherwise answers IR7). Device models here raise and
//!   lower their lines atomically (`pulse_irq`), so latching is what makes
//!   their edges count. Level-triggered inputs do follow the line.
//! * The CPU's interrupt acknowledge is taken to happen at the instant
//!   [`Pic::acknowledge`] is called, so a request cannot vanish between the
//!   INTR sample and INTA on the master; `acknowledge` returns `None` when
//!   INTR is low instead of inventing a spurious IRQ 7. The slave can still
//!   answer spurious IRQ 15: the master latches the slave's edge on IR2, and
//!   a level-triggered slave input may drop before INTA.
//! * ICW3 is recorded but the cascade is wired as on every PC: slave on IR2.
//! * Buffered mode and 8080/8085 (MCS-80) vector formats are ignored.

use tracing::{debug, trace, warn};

use crate::bus::{read_bytewise, write_bytewise, IoOutcome, PioDevice};

/// Master command port (ICW1, OCW2, OCW3; reads IRR/ISR).
pub const PIC_MASTER_CMD: u16 = 0x20;
/// Master data port (ICW2-4, OCW1 = IMR).
pub const PIC_MASTER_DATA: u16 = 0x21;
/// Slave command port.
pub const PIC_SLAVE_CMD: u16 = 0xa0;
/// Slave data port.
pub const PIC_SLAVE_DATA: u16 = 0xa1;
/// Edge/level control register for IRQ 0-7 (bit set = level-triggered).
pub const ELCR_MASTER: u16 = 0x4d0;
/// Edge/level control register for IRQ 8-15.
pub const ELCR_SLAVE: u16 = 0x4d1;

/// The master input the slave's INT output is wired to.
pub const CASCADE_IRQ: u8 = 2;

/// IRQ 0 (timer), 1 (keyboard) and 2 (cascade) are always edge-triggered on
/// PC chipsets; the corresponding ELCR bits are read-only zero.
const ELCR_MASTER_MASK: u8 = 0xf8;
/// IRQ 8 (RTC) and 13 (FPU error) are always edge-triggered.
const ELCR_SLAVE_MASK: u8 = 0xde;

// ICW1 (command port, D4 = 1).
const ICW1_IC4: u8 = 0x01;
const ICW1_SNGL: u8 = 0x02;
const ICW1_LTIM: u8 = 0x08;
const ICW1_SELECT: u8 = 0x10;
// ICW4.
const ICW4_UPM: u8 = 0x01;
const ICW4_AEOI: u8 = 0x02;
const ICW4_SFNM: u8 = 0x10;
// OCW3 (command port, D4 = 0, D3 = 1).
const OCW3_SELECT: u8 = 0x08;
const OCW3_RIS: u8 = 0x01;
const OCW3_RR: u8 = 0x02;
const OCW3_POLL: u8 = 0x04;
const OCW3_SMM: u8 = 0x20;
const OCW3_ESMM: u8 = 0x40;

/// Where a chip is in the ICW1..ICW4 initialization sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InitState {
    /// Initialized: data-port writes are OCW1.
    Ready,
    /// ICW1 seen; the next data-port write is ICW2.
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Debug, Clone)]
struct Chip {
    /// Current level of the IR0-7 inputs, for edge detection.
    lines: u8,
    /// Interrupt request register.
    irr: u8,
    /// In-service register.
    isr: u8,
    /// Interrupt mask register (OCW1).
    imr: u8,
    /// Level-triggered inputs (ELCR).
    elcr: u8,
    elcr_mask: u8,
    /// ICW2 T7-T3: the vector of IR0.
    vector_base: u8,
    /// The IR with the highest priority; rotation moves it.
    priority_base: u8,
    /// OCW3 RR/RIS: the command port reads the ISR instead of the IRR.
    read_isr: bool,
    /// OCW3 P: the next read is a poll (an INTA in disguise).
    poll: bool,
    /// OCW3 SMM: special mask mode.
    special_mask: bool,
    init: InitState,
    /// ICW1 IC4: an ICW4 follows.
    icw4_needed: bool,
    /// ICW1 SNGL: no cascade, no ICW3.
    single: bool,
    /// ICW1 LTIM: all inputs level-triggered regardless of ELCR.
    ltim: bool,
    /// ICW3 as written (slave mask on the master, slave id on the slave).
    icw3: u8,
    /// ICW4 AEOI.
    auto_eoi: bool,
    /// OCW2 "rotate in automatic EOI mode".
    rotate_on_auto_eoi: bool,
    /// ICW4 SFNM.
    special_fully_nested: bool,
    is_master: bool,
}

impl Chip {
    fn new(is_master: bool) -> Self {
        Self {
            lines: 0,
            irr: 0,
            isr: 0,
            // The datasheet leaves the power-up state undefined. Keeping every
            // input masked until the guest's ICW1 (which clears the IMR) means
            // an unprogrammed PIC can never deliver vectors 0-15, which would
            // alias CPU exceptions.
            imr: 0xff,
            elcr: 0,
            elcr_mask: if is_master {
                ELCR_MASTER_MASK
            } else {
                ELCR_SLAVE_MASK
            },
            vector_base: 0,
            priority_base: 0,
            read_isr: false,
            poll: false,
            special_mask: false,
            init: InitState::Ready,
            icw4_needed: false,
            single: false,
            ltim: false,
            icw3: 0,
            auto_eoi: false,
            rotate_on_auto_eoi: false,
            special_fully_nested: false,
            is_master,
        }
    }

    fn is_level(&self, irq: u8) -> bool {
        self.ltim || self.elcr & (1 << irq) != 0
    }

    fn level_mask(&self) -> u8 {
        if self.ltim {
            0xff
        } else {
            self.elcr
        }
    }

    /// Drives input `irq` (0-7) to `level`.
    fn set_input(&mut self, irq: u8, level: bool) {
        let bit = 1u8 << irq;
        if self.is_level(irq) {
            // Level mode: the request is the line itself.
            if level {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if level && self.lines & bit == 0 {
            // Edge mode: a low-to-high transition latches a request.
            self.irr |= bit;
        }
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
    }

    /// Priority rank (0 = highest) of the most urgent bit in `mask`, taking
    /// rotation into account.
    fn best_rank(&self, mask: u8) -> Option<u8> {
        (0..8u8).find(|rank| mask & (1 << ((rank + self.priority_base) & 7)) != 0)
    }

    fn irq_of_rank(&self, rank: u8) -> u8 {
        (rank + self.priority_base) & 7
    }

    /// The IR this chip would put on INT right now: the highest-priority
    /// unmasked request that outranks everything in service ("Interrupt
    /// Sequence" and "Fully Nested Mode").
    fn pending_irq(&self) -> Option<u8> {
        let request_rank = self.best_rank(self.irr & !self.imr)?;
        let mut in_service = self.isr;
        // Special mask mode: a masked level no longer blocks lower ones, even
        // while it is in service (OCW3 SMM).
        if self.special_mask {
            in_service &= !self.imr;
        }
        // Special fully nested mode: the master lets a higher-priority slave
        // request through while the cascade is in service (ICW4 SFNM).
        if self.special_fully_nested && self.is_master {
            in_service &= !(1 << CASCADE_IRQ);
        }
        match self.best_rank(in_service) {
            Some(service_rank) if service_rank <= request_rank => None,
            _ => Some(self.irq_of_rank(request_rank)),
        }
    }

    /// The chip's side of INTA for `irq`: IRR -> ISR (or automatic EOI).
    fn intack(&mut self, irq: u8) {
        let bit = 1u8 << irq;
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.priority_base = (irq + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
        // A level-triggered request stays in the IRR while the line is high;
        // the ISR bit is what keeps it from being delivered twice.
        if !self.is_level(irq) {
            self.irr &= !bit;
        }
    }

    /// ICW1: restart the initialization sequence. Datasheet: "the edge
    /// sense circuit is reset ... the IMR is cleared, IR7 is assigned
    /// priority 7, special mask mode is cleared and status read is set to
    /// IRR; if IC4 = 0 all ICW4 functions are set to zero".
    fn icw1(&mut self, value: u8) {
        self.icw4_needed = value & ICW1_IC4 != 0;
        self.single = value & ICW1_SNGL != 0;
        self.ltim = value & ICW1_LTIM != 0;
        self.imr = 0;
        // The datasheet is silent on the ISR; like QEMU we clear it, since a
        // guest re-initializing the PIC will never EOI the old levels.
        self.isr = 0;
        // Edge sense reset: latched edges are forgotten and an input that is
        // already high must go low and high again; level requests persist.
        self.irr = self.lines & self.level_mask();
        self.priority_base = 0;
        self.read_isr = false;
        self.poll = false;
        self.special_mask = false;
        self.auto_eoi = false;
        self.rotate_on_auto_eoi = false;
        self.special_fully_nested = false;
        self.init = InitState::Icw2;
    }

    fn write_data(&mut self, value: u8) {
        match self.init {
            InitState::Ready => self.imr = value,
            InitState::Icw2 => {
                // x86 mode: T7-T3 come from ICW2, the low three bits are the IR.
                self.vector_base = value & 0xf8;
                self.init = if !self.single {
                    InitState::Icw3
                } else if self.icw4_needed {
                    InitState::Icw4
                } else {
                    InitState::Ready
                };
            }
            InitState::Icw3 => {
                self.icw3 = value;
                let expected = if self.is_master {
                    1 << CASCADE_IRQ
                } else {
                    CASCADE_IRQ
                };
                if value != expected {
                    debug!(
                        icw3 = value,
                        master = self.is_master,
                        "8259A: unusual ICW3; the cascade stays on IR2"
                    );
                }
                self.init = if self.icw4_needed {
                    InitState::Icw4
                } else {
                    InitState::Ready
                };
            }
            InitState::Icw4 => {
                if value & ICW4_UPM == 0 {
                    warn!(
                        icw4 = value,
                        "8259A: MCS-80/85 mode requested; vectors stay in 8086 format"
                    );
                }
                self.auto_eoi = value & ICW4_AEOI != 0;
                self.special_fully_nested = value & ICW4_SFNM != 0;
                self.init = InitState::Ready;
            }
        }
    }

    fn write_command(&mut self, value: u8) {
        if value & ICW1_SELECT != 0 {
            self.icw1(value);
        } else if value & OCW3_SELECT != 0 {
            self.ocw3(value);
        } else {
            self.ocw2(value);
        }
    }

    /// OCW2: EOI and priority rotation (datasheet fig. 8, R SL EOI bits).
    fn ocw2(&mut self, value: u8) {
        let level = value & 7;
        match value >> 5 {
            // Non-specific EOI, optionally rotating: retire the
            // highest-priority in-service level.
            0b001 | 0b101 => {
                if let Some(rank) = self.best_rank(self.isr) {
                    let irq = self.irq_of_rank(rank);
                    self.isr &= !(1 << irq);
                    if value >> 5 == 0b101 {
                        self.priority_base = (irq + 1) & 7;
                    }
                }
            }
            // Specific EOI, optionally rotating.
            0b011 => self.isr &= !(1 << level),
            0b111 => {
                self.isr &= !(1 << level);
                self.priority_base = (level + 1) & 7;
            }
            // Set priority: `level` becomes the lowest priority.
            0b110 => self.priority_base = (level + 1) & 7,
            0b100 => self.rotate_on_auto_eoi = true,
            0b000 => self.rotate_on_auto_eoi = false,
            // 0b010: no operation.
            _ => {}
        }
    }

    /// OCW3: register read select, poll, special mask mode.
    fn ocw3(&mut self, value: u8) {
        if value & OCW3_RR != 0 {
            self.read_isr = value & OCW3_RIS != 0;
        }
        if value & OCW3_POLL != 0 {
            self.poll = true;
        }
        if value & OCW3_ESMM != 0 {
            self.special_mask = value & OCW3_SMM != 0;
        }
    }

    /// Poll command: the read is treated as an INTA and returns
    /// `1000_0www` (I bit and the IR), or 0 when nothing is pending. The
    /// poll is answered by this chip alone; a master poll that finds the
    /// cascade reports IR2, and software then polls the slave, as the
    /// datasheet describes for cascaded systems.
    fn poll_read(&mut self) -> u8 {
        self.poll = false;
        match self.pending_irq() {
            Some(irq) => {
                self.intack(irq);
                0x80 | irq
            }
            None => 0,
        }
    }

    fn read_command(&mut self) -> u8 {
        if self.poll {
            self.poll_read()
        } else if self.read_isr {
            self.isr
        } else {
            self.irr
        }
    }

    fn read_data(&mut self) -> u8 {
        if self.poll {
            self.poll_read()
        } else {
            self.imr
        }
    }

    fn write_elcr(&mut self, value: u8) {
        self.elcr = value & self.elcr_mask;
        // Inputs that just became level-triggered report their current line.
        let level = self.level_mask();
        self.irr = (self.irr & !level) | (self.lines & level);
    }
}

/// The cascaded master/slave 8259A pair of a PC.
#[derive(Debug, Clone)]
pub struct Pic {
    master: Chip,
    slave: Chip,
}

impl Default for Pic {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic {
    /// A pair in power-up state: not initialized, all inputs masked.
    pub fn new() -> Self {
        Self {
            master: Chip::new(true),
            slave: Chip::new(false),
        }
    }

    /// Feeds the slave's INT output into the master's IR2. Called after
    /// anything that may change the slave's output.
    fn update_cascade(&mut self) {
        let slave_int = self.slave.pending_irq().is_some();
        self.master.set_input(CASCADE_IRQ, slave_int);
    }

    /// Drives ISA IRQ line `irq` (0-15) to `level`. IRQ 2 is the cascade
    /// input and cannot be driven by devices (on a PC, the ISA IRQ2 pin is
    /// rerouted to IRQ 9); such calls and out-of-range IRQs are ignored.
    pub fn set_irq_level(&mut self, irq: u8, level: bool) {
        match irq {
            CASCADE_IRQ => {
                debug!("8259A: IRQ 2 is the cascade input; request ignored");
            }
            0..=7 => self.master.set_input(irq, level),
            8..=15 => {
                self.slave.set_input(irq - 8, level);
                self.update_cascade();
            }
            _ => debug!(irq, "8259A: IRQ out of range ignored"),
        }
    }

    /// An edge on an edge-triggered line: raise then lower it. On a
    /// level-triggered line the request disappears with the line.
    pub fn pulse_irq(&mut self, irq: u8) {
        self.set_irq_level(irq, true);
        self.set_irq_level(irq, false);
    }

    /// The master's INT output, i.e. the CPU's INTR pin.
    pub fn has_interrupt(&self) -> bool {
        self.master.pending_irq().is_some()
    }

    /// The INTA cycle: returns the vector the CPU receives and moves the
    /// request from IRR to ISR (unless in auto-EOI mode) on the master and,
    /// through the cascade, on the slave. `None` when INTR is low.
    ///
    /// If the master selects the cascade but the slave no longer has a
    /// request, the slave answers IR7 without setting its ISR (spurious
    /// IRQ 15, datasheet "Interrupt Sequence"); the master's ISR bit 2 is
    /// set all the same, so the guest must still EOI the master.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let irq = self.master.pending_irq()?;
        self.master.intack(irq);
        let vector = if irq == CASCADE_IRQ && !self.master.single {
            match self.slave.pending_irq() {
                Some(slave_irq) => {
                    self.slave.intack(slave_irq);
                    self.slave.vector_base | slave_irq
                }
                None => {
                    debug!("8259A: spurious IRQ 15");
                    self.slave.vector_base | 7
                }
            }
        } else {
            self.master.vector_base | irq
        };
        self.update_cascade();
        trace!(vector, "8259A: INTA");
        Some(vector)
    }

    /// Reads the 8-bit register at `port`; unknown ports read 0xFF.
    pub fn read_port(&mut self, port: u16) -> u8 {
        let value = match port {
            PIC_MASTER_CMD => self.master.read_command(),
            PIC_MASTER_DATA => self.master.read_data(),
            PIC_SLAVE_CMD => self.slave.read_command(),
            PIC_SLAVE_DATA => self.slave.read_data(),
            ELCR_MASTER => self.master.elcr,
            ELCR_SLAVE => self.slave.elcr,
            _ => {
                debug!(
                    port = format_args!("{port:#x}"),
                    "8259A: read from unknown port"
                );
                return 0xff;
            }
        };
        // A poll read acts as an INTA and may change the slave's output.
        self.update_cascade();
        value
    }

    /// Writes the 8-bit register at `port`; unknown ports are ignored.
    pub fn write_port(&mut self, port: u16, value: u8) {
        match port {
            PIC_MASTER_CMD => self.master.write_command(value),
            PIC_MASTER_DATA => self.master.write_data(value),
            PIC_SLAVE_CMD => self.slave.write_command(value),
            PIC_SLAVE_DATA => self.slave.write_data(value),
            ELCR_MASTER => self.master.write_elcr(value),
            ELCR_SLAVE => self.slave.write_elcr(value),
            _ => {
                debug!(
                    port = format_args!("{port:#x}"),
                    value, "8259A: write to unknown port ignored"
                );
                return;
            }
        }
        self.update_cascade();
    }
}

impl PioDevice for Pic {
    fn read(&mut self, port: u16, data: &mut [u8]) {
        read_bytewise(port, data, |p| self.read_port(p));
    }

    fn write(&mut self, port: u16, data: &[u8]) -> IoOutcome {
        write_bytewise(port, data, |p, v| self.write_port(p, v));
        IoOutcome::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence Linux's `init_8259A` uses (arch/x86/kernel/i8259.c).
    fn linux_init(pic: &mut Pic) {
        pic.write_port(PIC_MASTER_DATA, 0xff);
        pic.write_port(PIC_SLAVE_DATA, 0xff);
        pic.write_port(PIC_MASTER_CMD, 0x11);
        pic.write_port(PIC_MASTER_DATA, 0x20);
        pic.write_port(PIC_MASTER_DATA, 1 << 2);
        pic.write_port(PIC_MASTER_DATA, 0x01);
        pic.write_port(PIC_SLAVE_CMD, 0x11);
        pic.write_port(PIC_SLAVE_DATA, 0x28);
        pic.write_port(PIC_SLAVE_DATA, 2);
        pic.write_port(PIC_SLAVE_DATA, 0x01);
        // Unmask everything.
        pic.write_port(PIC_MASTER_DATA, 0x00);
        pic.write_port(PIC_SLAVE_DATA, 0x00);
    }

    fn isr(pic: &mut Pic, cmd: u16) -> u8 {
        pic.write_port(cmd, 0x0b);
        let v = pic.read_port(cmd);
        pic.write_port(cmd, 0x0a);
        v
    }

    fn irr(pic: &mut Pic, cmd: u16) -> u8 {
        pic.write_port(cmd, 0x0a);
        pic.read_port(cmd)
    }

    #[test]
    fn uninitialized_pic_delivers_nothing() {
        let mut pic = Pic::new();
        pic.pulse_irq(0);
        pic.pulse_irq(9);
        assert!(!pic.has_interrupt());
        assert_eq!(pic.acknowledge(), None);
        assert_eq!(pic.read_port(PIC_MASTER_DATA), 0xff);
    }

    #[test]
    fn init_sequence_sets_vectors_and_clears_imr() {
        let mut pic = Pic::new();
        linux_init(&mut pic);
        assert_eq!(pic.read_port(PIC_MASTER_DATA), 0);
        pic.write_port(PIC_MASTER_DATA, 0xfb);
        assert_eq!(pic.read_port(PIC_MASTER_DATA), 0xfb);
        pic.write_port(PIC_MASTER_DATA, 0);
        pic.pulse_irq(1);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), Some(0x21));
        assert!(!pic.has_interrupt());
        // IRQ 1 in service blocks the cascade (IR2) until its EOI.
        pic.pulse_irq(14);
        assert!(!pic.has_interrupt());
        pic.write_port(PIC_MASTER_CMD, 0x20);
        assert_eq!(pic.acknowledge(), Some(0x2e));
    }

    #[test]
    fn icw1_without_icw4_and_single_mode_skip_words() {
        let mut pic = Pic::new();
        // Single, no ICW4: ICW2 is the last word; the next data write is IMR.
        pic.write_port(PIC_MASTER_CMD, 0x12);
        pic.write_port(PIC_MASTER_DATA, 0x40);
        pic.write_port(PIC_MASTER_DATA, 0xfe);
        assert_eq!(pic.read_port(PIC_MASTER_DATA), 0xfe);
        pic.pulse_irq(0);
        assert_eq!(pic.acknowledge(), Some(0x40));
    }

    #[test]
    fn priority_and_in_service_blocking() {
        let mut pic = Pic::new();
        linux_init(&mut pic);
        pic.pulse_irq(4);
        pic.pulse_irq(3);
        assert_eq!(irr(&mut pic, PIC_MASTER_CMD), 0x18);
        assert_eq!(pic.acknowledge(), Some(0x23));
        assert_eq!(isr(&mut pic, PIC_MASTER_CMD), 0x08);
        // IRQ 4 is lower priority than the in-service IRQ 3.
        assert!(!pic.has_interrupt());
        // IRQ 1 outranks it and nests.
        pic.pulse_irq(1);
        assert_eq!(pic.acknowledge(), Some(0x21));
        assert_eq!(isr(&mut pic, PIC_MASTER_CMD), 0x0a);
        // Non-specific EOI retires the highest-priority in-service level (1).
        pic.write_port(PIC_MASTER_CMD, 0x20);
        assert_eq!(isr(&mut pic, PIC_MASTER_CMD), 0x08);
        assert!(!pic.has_interrupt());
        // Specific EOI for IRQ 3.
        pic.write_port(PIC_MASTER_CMD, 0x63);
        assert_eq!(isr(&mut pic, PIC_MASTER_CMD), 0);
        assert_eq!(pic.acknowledge(), Some(0x24));
    }

    #[test]
    fn masked_requests_stay_in_irr() {
        let mut pic = Pic::new();
        linux_init(&mut pic);
        pic.write_port(PIC_MASTER_DATA, 0x01);
        pic.pulse_irq(0);
        assert!(!pic.has_interrupt());
        assert_eq!(irr(&mut pic, PIC_MASTER_CMD), 0x01);
        pic.write_port(PIC_MASTER_DATA, 0x00);
        assert_eq!(pic.acknowledge(), Some(0x20));
    }

    #[test]
    fn edge_requires_a_new_rising_edge() {
        let mut pic = Pic::new();
        linux_init(&mut pic);
        pic.set_irq_level(3, true);
        assert_eq!(pic.acknowledge(), Some(0x23));
        pic.write_port(PIC_MASTER_CMD, 0x20);
        // Line still high: no new edge, no new request.
        pic.set_irq_level(3, true);
        assert!(!pic.has_interrupt());
        pic.set_irq_level(3, false);
        pic.set_irq_level(3, true);
        assert_eq!(pic.acknowledge(), Some(0x23));
    }

    #[test]
    fn level_triggered_via_elcr() {
        let mut pic = Pic::new();
        linux_init(&mut pic);
        // IRQ 0-2 can't be made level-triggered.
        pic.write_port(ELCR_MASTER, 0xff);
        assert_eq!(pic.read_port(ELCR_MASTER), 0xf8);
        pic.write_port(ELCR_SLAVE, 0xff);
        assert_eq!(pic.read_port(ELCR_SLAVE), 0xde);
        let mut wide = [0u8; 2];
        pic.read(ELCR_MASTER, &mut wide);
        assert_eq!(wide, [0xf8, 0xde]);

        pic.set_irq_level(5, true);
        assert_eq!(pic.acknowledge(), Some(0x25));
        // Still asserted after EOI: delivered again.
        pic.write_port(PIC_MASTER_CMD, 0x20);
        assert_eq!(pic.acknowledge(), Some(0x25));
        // Deasserted before EOI: gone.
        pic.set_irq_level(5, false);
        pic.write_port(PIC_MASTER_CMD, 0x20);
        assert!(!pic.has_interrupt());
        // A level request that drops before INTA is withdrawn.
        pic.set_irq_level(5, true);
        assert!(pic.has_interrupt());
        pic.set_irq_level(5, false);
        assert!(!pic.has_interrupt());
        // A pulse on a level line leaves nothing behind.
        pic.pulse_irq(6);
        assert!(!pic.has_interrupt());
    }

    #[test]
    fn slave_cascade_and_eoi_order() {
        let mut pic = Pic::new();
        linux_init(&mut pic);
        pic.pulse_irq(12);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), Some(0x2c));
        assert_eq!(isr(&mut pic, PIC_MASTER_CMD), 0x04);
        assert_eq!(isr(&mut pic, PIC_SLAVE_CMD), 0x10);
        // Another slave IRQ of higher priority: blocked by the master's
        // in-service cascade (no special fully nested mode).
        pic.pulse_irq(8);
        assert!(!pic.has_interrupt());
        // EOI slave then master, as Linux does.
        pic.write_port(PIC_SLAVE_CMD, 0x20);
        assert!(!pic.has_interrupt());
        pic.write_port(PIC_MASTER_CMD, 0x20);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), Some(0x28));
    }

    #[test]
    fn master_irq_outranks_slave() {
        let mut pic = Pic::new();
        linux_init(&mut pic);
        pic.pulse_irq(9);
        pic.pulse_irq(1);
        pic.pulse_irq(3);
        assert_eq!(pic.acknowledge(), Some(0x21));
        pic.write_port(PIC_MASTER_CMD, 0x20);
        assert_eq!(pic.acknowledge(), Some(0x29));
        pic.write_port(PIC_SLAVE_CMD, 0x20);
        pic.write_port(PIC_MASTER_CMD, 0x20);
        assert_eq!(pic.acknowledge(), Some(0x23));
    }

    #[test]
    fn spurious_irq15_when_slave_request_vanishes() {
        let mut pic = Pic::new();
        linux_init(&mut pic);
        pic.write_port(ELCR_SLAVE, 0x08); // IRQ 11 level-triggered.
        pic.set_irq_level(11, true);
        // The master latched the slave's edge on IR2; the slave's request
        // then disappears before INTA.
        pic.set_irq_level(11, false);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), Some(0x2f));
        assert_eq!(isr(&mut pic, PIC_SLAVE_CMD), 0);
        assert_eq!(isr(&mut pic, PIC_MASTER_CMD), 0x04);
        pic.write_port(PIC_MASTER_CMD, 0x20);
        assert!(!pic.has_interrupt());
        assert_eq!(pic.acknowledge(), None);
    }

    #[test]
    fn auto_eoi_leaves_isr_clear() {
        let mut pic = Pic::new();
        pic.write_port(PIC_MASTER_CMD, 0x11);
        pic.write_port(PIC_MASTER_DATA, 0x30);
        pic.write_port(PIC_MASTER_DATA, 0x04);
        pic.write_port(PIC_MASTER_DATA, 0x03); // 8086 mode + AEOI.
        pic.pulse_irq(5);
        assert_eq!(pic.acknowledge(), Some(0x35));
        assert_eq!(isr(&mut pic, PIC_MASTER_CMD), 0);
        // No EOI needed for a lower-priority request to get through.
        pic.pulse_irq(6);
        assert_eq!(pic.acknowledge(), Some(0x36));
    }

    #[test]
    fn rotation_changes_priority() {
        let mut pic = Pic::new();
        linux_init(&mut pic);
        // Rotate on non-specific EOI after serving IRQ 0: IRQ 0 becomes lowest.
        pic.pulse_irq(0);
        assert_eq!(pic.acknowledge(), Some(0x20));
        pic.write_port(PIC_MASTER_CMD, 0xa0);
        pic.pulse_irq(0);
        pic.pulse_irq(7);
        assert_eq!(pic.acknowledge(), Some(0x27));
        pic.write_port(PIC_MASTER_CMD, 0x20);
        assert_eq!(pic.acknowledge(), Some(0x20));
        pic.write_port(PIC_MASTER_CMD, 0x20);
        // Set priority: IRQ 4 lowest, so IRQ 5 is highest.
        pic.write_port(PIC_MASTER_CMD, 0xc4);
        pic.pulse_irq(4);
        pic.pulse_irq(6);
        pic.pulse_irq(5);
        assert_eq!(pic.acknowledge(), Some(0x25));
    }

    #[test]
    fn poll_mode_reads_and_acknowledges() {
        let mut pic = Pic::new();
        linux_init(&mut pic);
        pic.write_port(PIC_MASTER_CMD, 0x0c);
        assert_eq!(pic.read_port(PIC_MASTER_CMD), 0);
        pic.pulse_irq(6);
        pic.write_port(PIC_MASTER_CMD, 0x0c);
        assert_eq!(pic.read_port(PIC_MASTER_CMD), 0x86);
        assert_eq!(isr(&mut pic, PIC_MASTER_CMD), 0x40);
        // Poll is one-shot: the next read is the IRR again.
        assert_eq!(pic.read_port(PIC_MASTER_CMD), 0);
    }

    #[test]
    fn special_mask_mode_lets_lower_levels_through() {
        let mut pic = Pic::new();
        linux_init(&mut pic);
        pic.pulse_irq(3);
        assert_eq!(pic.acknowledge(), Some(0x23));
        pic.pulse_irq(5);
        assert!(!pic.has_interrupt());
        // Mask IRQ 3 and enter special mask mode.
        pic.write_port(PIC_MASTER_DATA, 0x08);
        pic.write_port(PIC_MASTER_CMD, 0x68);
        assert_eq!(pic.acknowledge(), Some(0x25));
        // Leaving special mask mode restores normal nesting.
        pic.write_port(PIC_MASTER_CMD, 0x48);
        pic.pulse_irq(6);
        assert!(!pic.has_interrupt());
    }

    #[test]
    fn wild_accesses_do_not_panic() {
        let mut pic = Pic::new();
        for v in 0..=255u8 {
            for port in [
                PIC_MASTER_CMD,
                PIC_MASTER_DATA,
                PIC_SLAVE_CMD,
                PIC_SLAVE_DATA,
                ELCR_MASTER,
                ELCR_SLAVE,
                0x22,
            ] {
                pic.write_port(port, v);
                let _ = pic.read_port(port);
            }
            pic.set_irq_level(v, v & 1 != 0);
            pic.pulse_irq(v);
            let _ = pic.acknowledge();
        }
        assert_eq!(pic.read_port(0x22), 0xff);
        let mut buf = [0u8; 4];
        pic.read(0x21, &mut buf);
        assert_eq!(&buf[1..], &[0xff; 3]);
    }
}
