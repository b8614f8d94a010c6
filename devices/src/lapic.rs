//! The local APIC of the (single) virtual CPU, in xAPIC and x2APIC mode.
//!
//! References are to the Intel SDM Vol. 3A, chapter 11 "Advanced
//! Programmable Interrupt Controller (APIC)" (chapter 10 in editions before
//! 2016, chapter 12 in editions after 2023; section numbers follow chapter
//! 11). Section names are given alongside so they can be found in any edition.
//!
//! One register file is reachable two ways: through the 4 KiB xAPIC page at
//! the physical address in IA32_APIC_BASE ([`MmioDevice`]) and, in x2APIC
//! mode, through MSRs 0x800-0x8FF ([`LocalApic::msr_read`],
//! [`LocalApic::msr_write`]). The platform owns the wiring: it calls
//! [`LocalApic::accept_interrupt`] for IOAPIC messages,
//! [`LocalApic::update`] when [`LocalApic::next_deadline`] passes, samples
//! [`LocalApic::pending_vector`] when the CPU can take an interrupt, and
//! performs the INTA with [`LocalApic::acknowledge`]. EOIs of level-triggered
//! vectors come out of [`LocalApic::take_level_eoi`] for the IOAPIC.
//!
//! # What the model is
//!
//! * Version 0x14 (an integrated APIC) with six LVT entries (timer, thermal,
//!   performance counters, LINT0, LINT1, error; max LVT entry 5), the value
//!   QEMU reports. There is no CMCI entry and no EOI-broadcast suppression
//!   (version bit 24 clear); their registers are reserved.
//! * The timer runs at [`APIC_BUS_FREQUENCY_HZ`] before the divider (1 GHz,
//!   as in QEMU and KVM), in one-shot or periodic mode. TSC-deadline mode is
//!   **not** supported: the CPUID must not advertise it
//!   (CPUID.01H:ECX bit 24 clear), which per SDM §11.5.4.1 makes bit 18 of the LVT
//!   timer register reserved.
//! * Uniprocessor: IPIs reach this APIC only when it is among their
//!   destinations; INIT, SIPI, SMI and IPIs to other CPUs are dropped with a
//!   `debug!` trace. Lowest-priority IPIs are refused with the "redirectable
//!   IPI" error, as processors since the Pentium 4 do (SDM §11.5.3, "Error
//!   Handling").
//! * The APIC ID is 0 (x2APIC ID 0, xAPIC ID register 0 << 24).
//! * Fixed interrupts are not accepted while the APIC is software-disabled
//!   (SDM §11.4.7.2 lists only NMI, SMI, INIT and SIPI as still received;
//!   KVM drops fixed interrupts the same way).
//!
//! # State at creation
//!
//! IA32_APIC_BASE = 0xFEE0_0900 (enabled, xAPIC mode, BSP) and every register
//! at its power-up value (SDM §11.4.7.1), except LINT0 = ExtINT and LINT1 =
//! NMI, both unmasked: the "virtual wire" set-up firmware leaves behind on a
//! PC (MultiProcessor Specification 1.4, §3.6.2.2 "Virtual Wire Mode";
//! SeaBIOS does this, and KVM-based VMMs without firmware such as Firecracker
//! program the same LINT values). It lets the 8259A's INTR reach the CPU
//! through LINT0 until the kernel reprograms the APIC; see
//! [`LocalApic::lint0_extint_enabled`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{debug, trace};

use crate::clock::Clock;
use crate::mmio::{read_reg32, touches_reg32, MmioDevice};

/// Default physical address of the xAPIC page (SDM §11.4.4).
pub const APIC_DEFAULT_BASE: u64 = 0xfee0_0000;
/// Size of the xAPIC register page.
pub const APIC_MMIO_SIZE: u64 = 0x1000;
/// The IA32_APIC_BASE MSR.
pub const MSR_IA32_APIC_BASE: u32 = 0x1b;
/// First x2APIC register MSR (SDM §11.12.1.2, Table 11-6).
pub const X2APIC_MSR_FIRST: u32 = 0x800;
/// Last MSR of the range architecturally reserved for the x2APIC.
pub const X2APIC_MSR_LAST: u32 = 0x8ff;
/// Frequency of the clock feeding the timer's divider. Linux measures it
/// against the PIT at boot (`calibrate_APIC_clock`), so any value works; 1 GHz
/// is what QEMU and KVM use.
pub const APIC_BUS_FREQUENCY_HZ: u64 = 1_000_000_000;
/// The version register: version 0x14, max LVT entry 5 (SDM §11.4.8).
pub const APIC_VERSION: u32 = 0x0005_0014;
/// IA32_APIC_BASE bit 8: this processor is the bootstrap processor.
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE bit 10: x2APIC mode.
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE bit 11: APIC global enable.
pub const APIC_BASE_EN: u64 = 1 << 11;

/// The initial (x2)APIC ID of the only CPU.
const X2APIC_ID: u32 = 0;
/// IA32_APIC_BASE bits 0-7 and 9 are reserved (SDM §11.4.4, Figure 11-5).
const APIC_BASE_RESERVED_LOW: u64 = 0x2ff;

const NANOS_PER_SEC: u128 = 1_000_000_000;

// Register indexes: the xAPIC offset divided by 16, and the x2APIC MSR minus
// 0x800 (SDM Table 11-1 and Table 11-6).
const REG_ID: u32 = 0x02;
const REG_VERSION: u32 = 0x03;
const REG_TPR: u32 = 0x08;
const REG_APR: u32 = 0x09;
const REG_PPR: u32 = 0x0a;
const REG_EOI: u32 = 0x0b;
const REG_RRD: u32 = 0x0c;
const REG_LDR: u32 = 0x0d;
const REG_DFR: u32 = 0x0e;
const REG_SVR: u32 = 0x0f;
const REG_ISR: u32 = 0x10;
const REG_ISR_LAST: u32 = 0x17;
const REG_TMR: u32 = 0x18;
const REG_TMR_LAST: u32 = 0x1f;
const REG_IRR: u32 = 0x20;
const REG_IRR_LAST: u32 = 0x27;
const REG_ESR: u32 = 0x28;
const REG_ICR_LOW: u32 = 0x30;
const REG_ICR_HIGH: u32 = 0x31;
const REG_LVT_TIMER: u32 = 0x32;
const REG_LVT_ERROR: u32 = 0x37;
const REG_TIMER_INITIAL: u32 = 0x38;
const REG_TIMER_CURRENT: u32 = 0x39;
const REG_TIMER_DIVIDE: u32 = 0x3e;
const REG_SELF_IPI: u32 = 0x3f;

// LVT entries, in register order.
const LVT_TIMER: usize = 0;
const LVT_LINT0: usize = 3;
const LVT_LINT1: usize = 4;
const LVT_ERROR: usize = 5;
const LVT_COUNT: usize = 6;

/// LVT bit 16 (SDM §11.5.1, Figure 11-8).
const LVT_MASKED: u32 = 1 << 16;
/// LVT timer bit 17: periodic (clear: one-shot).
const LVT_TIMER_PERIODIC: u32 = 1 << 17;
/// Bits software can change in each LVT entry; delivery status (12) and
/// remote IRR (14) are read-only and always read 0 here, since delivery is
/// instantaneous and LINT inputs are not level-modelled.
const LVT_WRITABLE: [u32; LVT_COUNT] = [
    0x0003_00ff, // timer: vector, mask, mode bit 17
    0x0001_07ff, // thermal: vector, delivery mode, mask
    0x0001_07ff, // performance counters
    0x0001_a7ff, // LINT0: + polarity, trigger mode
    0x0001_a7ff, // LINT1
    0x0001_00ff, // error: vector, mask
];
/// Defined bits (writable plus read-only) of each LVT entry; in x2APIC mode a
/// WRMSR setting any other bit faults (SDM §11.12.1.3).
const LVT_DEFINED: [u32; LVT_COUNT] = [
    0x0003_10ff,
    0x0001_17ff,
    0x0001_17ff,
    0x0001_f7ff,
    0x0001_f7ff,
    0x0001_10ff,
];

// Delivery modes (ICR and LVT bits 8-10).
const DM_FIXED: u32 = 0;
const DM_LOWEST: u32 = 1;
const DM_NMI: u32 = 4;
const DM_EXTINT: u32 = 7;

/// SVR bit 8: APIC software enable (SDM §11.9, Figure 11-23).
const SVR_ENABLE: u32 = 1 << 8;
/// SVR: vector, software enable, focus processor checking. Bit 12
/// (EOI-broadcast suppression) is not supported and so reserved.
const SVR_WRITABLE: u32 = 0x3ff;
/// Divide configuration register: bits 0, 1 and 3 (SDM §11.5.4, Figure 11-10).
const DCR_WRITABLE: u32 = 0xb;

/// ICR low bits software can set: vector, delivery mode, destination mode,
/// level, trigger mode, shorthand (SDM §11.6.1, Figure 11-12). Delivery status
/// (bit 12) reads 0: an IPI is delivered before the write returns.
const ICR_LOW_WRITABLE: u32 = 0x000c_cfff;
/// ICR bit 11: logical destination mode.
const ICR_DEST_LOGICAL: u32 = 1 << 11;
/// Reserved bits of the 64-bit x2APIC ICR (bit 12 has no meaning there).
const ICR_X2APIC_RESERVED: u64 = 0xfff3_3000;
// Destination shorthands (ICR bits 18-19).
const SHORTHAND_NONE: u32 = 0;
const SHORTHAND_SELF: u32 = 1;
const SHORTHAND_ALL: u32 = 2;

// Error status register bits (SDM §11.5.3, Figure 11-9).
const ESR_REDIRECTABLE_IPI: u32 = 1 << 4;
const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;

/// Vectors 0-15 are reserved for exceptions; the APIC flags them as illegal
/// and does not deliver them (SDM §11.5.2, "Valid Interrupt Vectors").
const FIRST_VALID_VECTOR: u8 = 16;

/// The operating mode selected by IA32_APIC_BASE EN and EXTD (SDM §11.12.1,
/// Table 11-5 "x2APIC Operating Mode Configurations").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicMode {
    /// EN = 0: the APIC is globally disabled; the CPU's INTR pin is driven
    /// by the 8259A directly.
    Disabled,
    /// EN = 1, EXTD = 0: registers in the MMIO page.
    XApic,
    /// EN = 1, EXTD = 1: registers in MSRs 0x800-0x8FF.
    X2Apic,
}

/// A register access the CPU answers with #GP(0).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ApicFault {
    /// The MSR is not an implemented x2APIC register (SDM Table 11-6).
    #[error("MSR {msr:#x} is not an implemented x2APIC register")]
    ReservedMsr {
        /// The MSR of the access.
        msr: u32,
    },
    /// x2APIC MSRs fault unless the APIC is in x2APIC mode (SDM §11.12.1.2).
    #[error("x2APIC MSR {msr:#x} accessed while the local APIC is not in x2APIC mode")]
    NotX2Apic {
        /// The MSR of the access.
        msr: u32,
    },
    /// RDMSR of EOI or SELF IPI.
    #[error("RDMSR of write-only x2APIC register {msr:#x}")]
    WriteOnly {
        /// The MSR of the access.
        msr: u32,
    },
    /// WRMSR to a read-only register.
    #[error("WRMSR to read-only x2APIC register {msr:#x}")]
    ReadOnly {
        /// The MSR of the access.
        msr: u32,
    },
    /// WRMSR with a reserved bit set (SDM §11.12.1.3 for x2APIC registers,
    /// §11.4.4 for IA32_APIC_BASE).
    #[error("WRMSR of {value:#x} to MSR {msr:#x} sets reserved bits")]
    ReservedBits {
        /// The MSR of the access.
        msr: u32,
        /// The value written.
        value: u64,
    },
    /// An IA32_APIC_BASE write to the invalid state (EN = 0, EXTD = 1) or an
    /// illegal transition: x2APIC to xAPIC, or disabled to x2APIC (SDM
    /// §11.12.5, Figure 11-27 "Local x2APIC State Transitions").
    #[error("IA32_APIC_BASE write of {value:#x} is an illegal transition from {from:?} mode")]
    IllegalTransition {
        /// The mode before the write.
        from: ApicMode,
        /// The value written.
        value: u64,
    },
}

/// How an x2APIC register MSR may be accessed (SDM Table 11-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadOnly,
    WriteOnly,
    ReadWrite,
}

/// The x2APIC access rights of register `index`; `None` for a reserved MSR.
/// APR, RRD, DFR and the ICR's high half do not exist in x2APIC mode; CMCI is
/// not implemented.
fn x2apic_access(index: u32) -> Option<Access> {
    Some(match index {
        REG_ID | REG_VERSION | REG_PPR | REG_LDR | REG_TIMER_CURRENT => Access::ReadOnly,
        REG_ISR..=REG_IRR_LAST => Access::ReadOnly,
        REG_EOI | REG_SELF_IPI => Access::WriteOnly,
        REG_TPR | REG_SVR | REG_ESR | REG_ICR_LOW | REG_TIMER_INITIAL | REG_TIMER_DIVIDE => {
            Access::ReadWrite
        }
        REG_LVT_TIMER..=REG_LVT_ERROR => Access::ReadWrite,
        _ => return None,
    })
}

/// Bits of a WRMSR to x2APIC register `index` that must be zero (SDM
/// §11.12.1.3 "Reserved Bit Checking"): bits 63:32 of every register but the
/// ICR, plus each register's undefined bits. EOI and ESR accept only zero.
fn x2apic_reserved_bits(index: u32) -> u64 {
    let low: u32 = match index {
        REG_ICR_LOW => return ICR_X2APIC_RESERVED,
        REG_TPR | REG_SELF_IPI => !0xff,
        REG_EOI | REG_ESR => !0,
        REG_SVR => !SVR_WRITABLE,
        REG_TIMER_DIVIDE => !DCR_WRITABLE,
        REG_LVT_TIMER..=REG_LVT_ERROR => !LVT_DEFINED[(index - REG_LVT_TIMER) as usize],
        _ => 0,
    };
    0xffff_ffff_0000_0000 | u64::from(low)
}

/// The logical x2APIC ID the hardware derives from the x2APIC ID: cluster
/// in bits 31:16, one bit of 16 in bits 15:0 (SDM §11.12.10.2).
fn x2apic_ldr(id: u32) -> u32 {
    ((id >> 4) << 16) | (1 << (id & 0xf))
}

/// A 256-bit vector register (IRR, ISR, TMR): eight 32-bit words, vector
/// `v` in bit `v % 32` of word `v / 32` (SDM §11.8.4, Figure 11-20).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct VectorSet([u32; 8]);

impl VectorSet {
    fn set(&mut self, v: u8) {
        self.0[usize::from(v >> 5)] |= 1 << (v & 31);
    }

    fn clear(&mut self, v: u8) {
        self.0[usize::from(v >> 5)] &= !(1 << (v & 31));
    }

    fn assign(&mut self, v: u8, on: bool) {
        if on {
            self.set(v);
        } else {
            self.clear(v);
        }
    }

    fn contains(&self, v: u8) -> bool {
        self.0[usize::from(v >> 5)] & (1 << (v & 31)) != 0
    }

    fn highest(&self) -> Option<u8> {
        self.0
            .iter()
            .enumerate()
            .rev()
            .find(|(_, &w)| w != 0)
            .map(|(i, w)| (i as u8) * 32 + (31 - w.leading_zeros()) as u8)
    }

    /// Word `i` (0-7) as the register at offset base + 16 * i reads it.
    fn word(&self, i: u32) -> u32 {
        self.0.get(i as usize).copied().unwrap_or(0)
    }
}

/// The divisor selected by the divide configuration register: bits 3, 1, 0
/// give 2, 4, ..., 128, and 111b gives 1 (SDM §11.5.4, Figure 11-10).
fn divisor(dcr: u32) -> u64 {
    match (dcr & 3) | ((dcr >> 1) & 4) {
        7 => 1,
        v => 2 << v,
    }
}

/// Whole timer ticks in `d` with divisor `div` (rounded down).
fn ticks_in(d: Duration, div: u64) -> u64 {
    let t = d.as_nanos() * u128::from(APIC_BUS_FREQUENCY_HZ) / (NANOS_PER_SEC * u128::from(div));
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// The shortest duration holding `ticks` whole timer ticks (rounded up, so
/// `ticks_in(duration_of(t, d), d) >= t`).
fn duration_of(ticks: u64, div: u64) -> Duration {
    let nanos = (u128::from(ticks) * u128::from(div) * NANOS_PER_SEC)
        .div_ceil(u128::from(APIC_BUS_FREQUENCY_HZ));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The APIC timer (SDM §11.5.4) in closed form: nothing ticks. While it
/// counts, the current count at any instant follows from the instant the
/// current period was anchored and the ticks that had already elapsed then.
#[derive(Debug, Clone, Copy, Default)]
struct Timer {
    /// Initial-count register.
    initial: u32,
    /// Divide configuration register (bits 0, 1, 3).
    dcr: u32,
    /// While counting: `(since, base)`, the current period had run `base`
    /// ticks at `since`. `None`: stopped, the current count reads 0.
    running: Option<(Instant, u64)>,
}

impl Timer {
    fn elapsed(&self, since: Instant, base: u64, now: Instant) -> u64 {
        base.saturating_add(ticks_in(
            now.saturating_duration_since(since),
            divisor(self.dcr),
        ))
    }

    /// The current-count register at `now`. In periodic mode the count is
    /// reloaded when it reaches zero, so it never reads 0 while running.
    fn current(&self, now: Instant, periodic: bool) -> u32 {
        let Some((since, base)) = self.running else {
            return 0;
        };
        let n = u64::from(self.initial);
        let e = self.elapsed(since, base, now);
        let left = if e < n {
            n - e
        } else if periodic && n != 0 {
            n - e % n
        } else {
            0
        };
        // `left <= n`, which came from a u32.
        u32::try_from(left).unwrap_or(u32::MAX)
    }

    /// When the count reaches zero next.
    fn expiry(&self) -> Option<Instant> {
        let (since, base) = self.running?;
        let left = u64::from(self.initial).saturating_sub(base);
        since.checked_add(duration_of(left, divisor(self.dcr)))
    }

    /// Accounts for the count reaching zero up to `now`; returns whether it
    /// did. A periodic timer re-anchors at the last period boundary not after
    /// `now` (so the schedule never drifts); periods missed entirely because
    /// the platform was late are coalesced into this one expiry, as the IRR
    /// holds a single bit per vector anyway.
    fn sync(&mut self, now: Instant, periodic: bool) -> bool {
        let Some(expiry) = self.expiry() else {
            return false;
        };
        if now < expiry {
            return false;
        }
        self.running = if periodic && self.initial != 0 {
            let period = duration_of(u64::from(self.initial), divisor(self.dcr)).as_nanos();
            let late = now.duration_since(expiry).as_nanos();
            let skip = late - late % period.max(1);
            let skip = Duration::from_nanos(u64::try_from(skip).unwrap_or(u64::MAX));
            Some((expiry.checked_add(skip).unwrap_or(now), 0))
        } else {
            None
        };
        true
    }

    /// A write of the initial-count register: counting restarts from the new
    /// value; 0 stops the timer (SDM §11.5.4).
    fn start(&mut self, initial: u32, now: Instant) {
        self.initial = initial;
        self.running = (initial != 0).then_some((now, 0));
    }

    /// A write of the divide configuration: the count keeps its value and
    /// continues at the new rate. Expiries up to `now` must be synced first.
    fn set_divide(&mut self, dcr: u32, now: Instant) {
        if let Some((since, base)) = self.running {
            self.running = Some((now, self.elapsed(since, base, now)));
        }
        self.dcr = dcr & DCR_WRITABLE;
    }
}

/// The local APIC. See the module documentation.
pub struct LocalApic {
    clock: Arc<dyn Clock>,
    /// IA32_APIC_BASE.
    base: u64,
    /// Physical-address width (CPUID 0x80000008 EAX bits 7:0); IA32_APIC_BASE
    /// bits from here up are reserved.
    maxphyaddr: u32,
    /// The xAPIC ID register's bits 31:24 (read/write in xAPIC mode, as on
    /// Pentium 4 and later, SDM §11.4.6).
    xapic_id: u8,
    tpr: u8,
    /// Logical destination register (xAPIC; bits 31:24).
    ldr: u32,
    /// Destination format register (bits 31:28 model, 27:0 read as ones).
    dfr: u32,
    svr: u32,
    isr: VectorSet,
    tmr: VectorSet,
    irr: VectorSet,
    /// The ESR as software reads it: errors latched by the last ESR write.
    esr: u32,
    /// Errors detected since the last ESR write (SDM §11.5.3).
    esr_pending: u32,
    icr_low: u32,
    /// xAPIC: destination in bits 31:24. x2APIC: the 32-bit destination.
    icr_high: u32,
    lvt: [u32; LVT_COUNT],
    timer: Timer,
    /// Vectors whose EOI must be broadcast to the IOAPIC, oldest first.
    level_eois: Vec<u8>,
    nmi_pending: bool,
    timer_fires: u64,
}

impl std::fmt::Debug for LocalApic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalApic")
            .field("base", &format_args!("{:#x}", self.base))
            .field("tpr", &self.tpr)
            .field("svr", &format_args!("{:#x}", self.svr))
            .field("isr", &self.isr)
            .field("irr", &self.irr)
            .field("lvt", &self.lvt)
            .field("timer", &self.timer)
            .finish_non_exhaustive()
    }
}

impl LocalApic {
    /// The BSP's local APIC as firmware hands it over (see the module
    /// documentation), timed by `clock`. `maxphyaddr` is the physical-address
    /// width the CPUID reports (clamped to 12..=52); IA32_APIC_BASE bits at
    /// and above it are reserved.
    pub fn new(clock: Arc<dyn Clock>, maxphyaddr: u32) -> Self {
        let mut apic = Self {
            clock,
            base: APIC_DEFAULT_BASE | APIC_BASE_EN | APIC_BASE_BSP,
            maxphyaddr: maxphyaddr.clamp(12, 52),
            xapic_id: X2APIC_ID as u8,
            tpr: 0,
            ldr: 0,
            dfr: u32::MAX,
            svr: 0xff,
            isr: VectorSet::default(),
            tmr: VectorSet::default(),
            irr: VectorSet::default(),
            esr: 0,
            esr_pending: 0,
            icr_low: 0,
            icr_high: 0,
            lvt: [LVT_MASKED; LVT_COUNT],
            timer: Timer::default(),
            level_eois: Vec::new(),
            nmi_pending: false,
            timer_fires: 0,
        };
        apic.reset_registers();
        apic.lvt[LVT_LINT0] = DM_EXTINT << 8;
        apic.lvt[LVT_LINT1] = DM_NMI << 8;
        apic
    }

    /// Power-up values of everything but the APIC ID (SDM §11.4.7.1 and
    /// §11.12.5.1 "x2APIC States": IRR, ISR, TMR, ICR, LDR, TPR, DCR and the
    /// timer counts zero; LVT entries masked; SVR 0xFF; DFR all ones).
    /// Level EOIs not yet collected by the IOAPIC are kept.
    fn reset_registers(&mut self) {
        self.tpr = 0;
        self.ldr = 0;
        self.dfr = u32::MAX;
        self.svr = 0xff;
        self.isr = VectorSet::default();
        self.tmr = VectorSet::default();
        self.irr = VectorSet::default();
        self.esr = 0;
        self.esr_pending = 0;
        self.icr_low = 0;
        self.icr_high = 0;
        self.lvt = [LVT_MASKED; LVT_COUNT];
        self.timer = Timer::default();
        self.nmi_pending = false;
    }

    fn phys_reserved(&self) -> u64 {
        !0u64 << self.maxphyaddr
    }

    /// The IA32_APIC_BASE MSR.
    pub fn base_msr(&self) -> u64 {
        self.base
    }

    /// WRMSR to IA32_APIC_BASE (SDM §11.4.4 and §11.12.5). The BSP bit is
    /// read-only and ignored. Disabling the APIC (EN = 0) resets every
    /// register but the APIC ID to its power-up value, since "all the APIC
    /// register states ... are not preserved across mode transitions" through
    /// the disabled state (§11.12.5.1). A new base address moves the MMIO page:
    /// the platform must follow [`LocalApic::mmio_base`].
    pub fn set_base_msr(&mut self, value: u64) -> Result<(), ApicFault> {
        if value & (APIC_BASE_RESERVED_LOW | self.phys_reserved()) != 0 {
            return Err(ApicFault::ReservedBits {
                msr: MSR_IA32_APIC_BASE,
                value,
            });
        }
        let from = self.mode();
        let to = match (value & APIC_BASE_EN != 0, value & APIC_BASE_EXTD != 0) {
            (false, false) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
            (false, true) => return Err(ApicFault::IllegalTransition { from, value }),
        };
        if matches!(
            (from, to),
            (ApicMode::X2Apic, ApicMode::XApic) | (ApicMode::Disabled, ApicMode::X2Apic)
        ) {
            return Err(ApicFault::IllegalTransition { from, value });
        }
        self.base = (value & !APIC_BASE_BSP) | (self.base & APIC_BASE_BSP);
        if from != to {
            debug!(?from, ?to, "local APIC mode change");
            match to {
                ApicMode::Disabled => self.reset_registers(),
                // The x2APIC ID replaces a rewritten xAPIC ID; the logical
                // x2APIC ID is derived from it (§11.12.5.1).
                ApicMode::X2Apic => self.xapic_id = X2APIC_ID as u8,
                ApicMode::XApic => {}
            }
        }
        Ok(())
    }

    /// The mode IA32_APIC_BASE selects.
    pub fn mode(&self) -> ApicMode {
        match (
            self.base & APIC_BASE_EN != 0,
            self.base & APIC_BASE_EXTD != 0,
        ) {
            (false, _) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
        }
    }

    /// Physical address of the xAPIC register page.
    pub fn mmio_base(&self) -> u64 {
        self.base & !(APIC_MMIO_SIZE - 1) & !self.phys_reserved()
    }

    /// Whether the xAPIC page decodes accesses (xAPIC mode). In x2APIC mode
    /// and when disabled, the page "behaves like a legacy xAPIC in globally
    /// disabled state" (SDM §11.12.1.2): the platform may route it to memory;
    /// if it keeps calling the [`MmioDevice`] methods, reads return all ones
    /// and writes are dropped.
    pub fn mmio_enabled(&self) -> bool {
        self.mode() == ApicMode::XApic
    }

    fn hw_enabled(&self) -> bool {
        self.base & APIC_BASE_EN != 0
    }

    fn sw_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    /// Hardware-enabled (IA32_APIC_BASE.EN) and software-enabled (SVR bit 8):
    /// the APIC delivers fixed interrupts.
    pub fn is_enabled(&self) -> bool {
        self.hw_enabled() && self.sw_enabled()
    }

    /// Whether the 8259A's INTR output reaches the CPU: with the APIC
    /// globally disabled the PIC drives the CPU's INTR pin directly (SDM
    /// §11.4.3), otherwise it arrives on LINT0 and passes only when LVT LINT0
    /// is unmasked with delivery mode ExtINT, the "virtual wire" of the
    /// MultiProcessor Specification §3.6.2.2; the vector then comes from the
    /// PIC's INTA, not from the APIC (SDM §11.5.1, ExtINT). KVM's
    /// `kvm_apic_accept_pic_intr` applies the same rule.
    pub fn lint0_extint_enabled(&self) -> bool {
        let lint0 = self.lvt[LVT_LINT0];
        !self.hw_enabled() || (lint0 & LVT_MASKED == 0 && (lint0 >> 8) & 7 == DM_EXTINT)
    }

    /// Processor priority (SDM §11.8.3.1): the task priority, or the class of
    /// the highest in-service vector if that is higher.
    fn ppr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xf0
        }
    }

    /// The task priority as MOV from CR8 reads it: TPR bits 7:4 (SDM §11.8.6).
    pub fn cr8(&self) -> u64 {
        u64::from(self.tpr >> 4)
    }

    /// MOV to CR8: sets TPR bits 7:4 and clears bits 3:0 (SDM §11.8.6). Bits
    /// 63:4 of CR8 are reserved; the caller raises #GP for them.
    pub fn set_cr8(&mut self, value: u64) {
        self.tpr = ((value & 0xf) as u8) << 4;
    }

    /// The interrupt the APIC is presenting to the CPU: the highest vector
    /// in the IRR whose priority class is above the processor priority class
    /// (SDM §11.8.4), if the APIC is hardware- and software-enabled.
    pub fn pending_vector(&self) -> Option<u8> {
        if !self.is_enabled() {
            return None;
        }
        let v = self.irr.highest()?;
        (v >> 4 > self.ppr() >> 4).then_some(v)
    }

    /// The CPU's interrupt acknowledge: moves the pending vector from IRR to
    /// ISR and returns it. If nothing qualifies any more (the TPR was raised
    /// between the sample and the INTA), returns the spurious vector without
    /// touching the ISR; its handler must not EOI (SDM §11.9). `None` when the
    /// APIC is globally disabled.
    pub fn acknowledge(&mut self) -> Option<u8> {
        if !self.hw_enabled() {
            return None;
        }
        match self.pending_vector() {
            Some(v) => {
                self.irr.clear(v);
                self.isr.set(v);
                trace!(vector = v, "local APIC: INTA");
                Some(v)
            }
            None => {
                debug!("local APIC: spurious interrupt");
                Some(self.svr as u8)
            }
        }
    }

    /// Accepts a fixed interrupt from the IOAPIC (or a LINT pin): sets its
    /// IRR bit and records the trigger mode in the TMR (SDM §11.8.4). Returns
    /// whether it was accepted: not when the APIC is hardware- or
    /// software-disabled, nor for vectors 0-15, which set "receive illegal
    /// vector" in the ESR instead (§11.5.2).
    pub fn accept_interrupt(&mut self, vector: u8, level_triggered: bool) -> bool {
        if !self.hw_enabled() {
            debug!(vector, "local APIC disabled: interrupt dropped");
            return false;
        }
        if vector < FIRST_VALID_VECTOR {
            self.error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return false;
        }
        if !self.sw_enabled() {
            debug!(vector, "local APIC software-disabled: interrupt dropped");
            return false;
        }
        self.irr.set(vector);
        self.tmr.assign(vector, level_triggered);
        true
    }

    /// The next vector whose EOI the IOAPIC must see: a vector accepted as
    /// level-triggered (TMR bit set) that software EOI'd (SDM §11.8.5). The
    /// platform passes it to `IoApic::end_of_interrupt` after every register
    /// write.
    pub fn take_level_eoi(&mut self) -> Option<u8> {
        if self.level_eois.is_empty() {
            None
        } else {
            Some(self.level_eois.remove(0))
        }
    }

    /// Whether an NMI was sent to this CPU (an NMI IPI to self) since the
    /// last call. Consumes it.
    pub fn take_nmi(&mut self) -> bool {
        std::mem::take(&mut self.nmi_pending)
    }

    /// How many timer interrupts the APIC has raised.
    pub fn timer_fires(&self) -> u64 {
        self.timer_fires
    }

    fn timer_periodic(&self) -> bool {
        self.lvt[LVT_TIMER] & LVT_TIMER_PERIODIC != 0
    }

    /// Accounts for the timer up to `now`: if the count reached zero, the LVT
    /// timer vector is raised (unless masked) and a periodic timer reloads.
    /// Register accesses call this with the clock's time; the platform calls
    /// it when [`LocalApic::next_deadline`] has passed.
    pub fn update(&mut self, now: Instant) {
        if self.timer.sync(now, self.timer_periodic()) {
            let lvt = self.lvt[LVT_TIMER];
            if lvt & LVT_MASKED == 0 && self.accept_interrupt(lvt as u8, false) {
                self.timer_fires += 1;
            }
        }
    }

    /// When the timer will next raise an interrupt, for sleeping in HLT.
    /// `None` when it is stopped, masked, or the APIC is disabled. May lie in
    /// the past if [`LocalApic::update`] has not been called since.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.hw_enabled() || self.lvt[LVT_TIMER] & LVT_MASKED != 0 {
            return None;
        }
        self.timer.expiry()
    }

    /// Records errors in the ESR and raises the error interrupt if its LVT
    /// entry is unmasked (SDM §11.5.3). An illegal error vector is not
    /// reported again, which would loop.
    fn error(&mut self, bits: u32) {
        debug!(esr = format_args!("{bits:#x}"), "local APIC error");
        self.esr_pending |= bits;
        let lvt = self.lvt[LVT_ERROR];
        let vector = lvt as u8;
        if lvt & LVT_MASKED == 0 && vector >= FIRST_VALID_VECTOR && self.is_enabled() {
            self.irr.set(vector);
            self.tmr.clear(vector);
        }
    }

    /// EOI: retires the highest-priority in-service vector (SDM §11.8.5).
    fn eoi(&mut self) {
        let Some(v) = self.isr.highest() else {
            return;
        };
        self.isr.clear(v);
        if self.tmr.contains(v) && !self.level_eois.contains(&v) {
            self.level_eois.push(v);
        }
    }

    /// Whether this APIC is among the destinations of an IPI (SDM §11.6.2,
    /// "Determining IPI Destination"; §11.12.9 for x2APIC). `dest` is ICR
    /// high: bits 31:24 in xAPIC mode, all 32 bits in x2APIC mode.
    fn is_destination(&self, dest: u32, logical: bool) -> bool {
        if self.mode() == ApicMode::X2Apic {
            if dest == u32::MAX {
                return true;
            }
            if logical {
                let ldr = x2apic_ldr(X2APIC_ID);
                dest >> 16 == ldr >> 16 && dest & ldr & 0xffff != 0
            } else {
                dest == X2APIC_ID
            }
        } else {
            let d = (dest >> 24) as u8;
            if d == 0xff {
                return true;
            }
            if !logical {
                return d == self.xapic_id;
            }
            let id = (self.ldr >> 24) as u8;
            if self.dfr >> 28 == 0xf {
                // Flat model: one bit per APIC.
                d & id != 0
            } else {
                // Cluster model: cluster in bits 7:4, member bits in 3:0.
                d >> 4 == id >> 4 && d & id & 0xf != 0
            }
        }
    }

    /// Sends the IPI the ICR describes (SDM §11.6.1).
    fn send_ipi(&mut self, low: u32, dest: u32) {
        let vector = low as u8;
        let mode = (low >> 8) & 7;
        let shorthand = (low >> 18) & 3;
        if mode == DM_LOWEST {
            // Not supported for IPIs since the Pentium 4 (SDM §11.5.3).
            self.error(ESR_REDIRECTABLE_IPI);
            return;
        }
        if mode == DM_FIXED && vector < FIRST_VALID_VECTOR {
            self.error(ESR_SEND_ILLEGAL_VECTOR);
            return;
        }
        let to_self = match shorthand {
            SHORTHAND_NONE => self.is_destination(dest, low & ICR_DEST_LOGICAL != 0),
            SHORTHAND_SELF | SHORTHAND_ALL => true,
            _ => false,
        };
        if shorthand >= SHORTHAND_ALL || !to_self {
            debug!(
                icr = format_args!("{low:#x}"),
                dest = format_args!("{dest:#x}"),
                "local APIC: IPI to other CPUs dropped (uniprocessor)"
            );
        }
        if !to_self {
            return;
        }
        match mode {
            DM_FIXED => {
                self.accept_interrupt(vector, false);
            }
            DM_NMI => self.nmi_pending = true,
            _ => debug!(
                icr = format_args!("{low:#x}"),
                "local APIC: IPI to self with delivery mode {mode} ignored"
            ),
        }
    }

    fn write_svr(&mut self, value: u32) {
        self.svr = value & SVR_WRITABLE;
        if !self.sw_enabled() {
            // "The mask bits for all the LVT entries are set" (§11.4.7.2).
            for lvt in &mut self.lvt {
                *lvt |= LVT_MASKED;
            }
        }
    }

    fn write_lvt(&mut self, i: usize, value: u32) {
        let mut v = value & LVT_WRITABLE[i];
        if !self.sw_enabled() {
            // "Attempts to reset these bits will be ignored" (§11.4.7.2).
            v |= LVT_MASKED;
        }
        if i == LVT_TIMER && (v ^ self.lvt[i]) & LVT_TIMER_PERIODIC != 0 {
            // "A write to the LVT Timer Register that changes the timer mode
            // disarms the local APIC timer" (§11.5.4.1).
            self.timer.running = None;
        }
        self.lvt[i] = v;
    }

    /// The value of register `index`, or `None` for a reserved register.
    /// Write-only registers (EOI) read 0.
    fn register(&self, index: u32, now: Instant) -> Option<u32> {
        let x2 = self.mode() == ApicMode::X2Apic;
        Some(match index {
            REG_ID if x2 => X2APIC_ID,
            REG_ID => u32::from(self.xapic_id) << 24,
            REG_VERSION => APIC_VERSION,
            REG_TPR => u32::from(self.tpr),
            // Arbitration priority: meaningless for a lone APIC.
            REG_APR | REG_EOI | REG_RRD => 0,
            REG_PPR => u32::from(self.ppr()),
            REG_LDR if x2 => x2apic_ldr(X2APIC_ID),
            REG_LDR => self.ldr,
            REG_DFR => self.dfr,
            REG_SVR => self.svr,
            REG_ISR..=REG_ISR_LAST => self.isr.word(index - REG_ISR),
            REG_TMR..=REG_TMR_LAST => self.tmr.word(index - REG_TMR),
            REG_IRR..=REG_IRR_LAST => self.irr.word(index - REG_IRR),
            REG_ESR => self.esr,
            REG_ICR_LOW => self.icr_low,
            REG_ICR_HIGH => self.icr_high,
            REG_LVT_TIMER..=REG_LVT_ERROR => self.lvt[(index - REG_LVT_TIMER) as usize],
            REG_TIMER_INITIAL => self.timer.initial,
            REG_TIMER_CURRENT => self.timer.current(now, self.timer_periodic()),
            REG_TIMER_DIVIDE => self.timer.dcr,
            _ => return None,
        })
    }

    /// Writes register `index`; returns `false` for a reserved register.
    /// Writes to read-only registers are ignored (xAPIC); the x2APIC path
    /// rejects them before calling this. The ICR here is the xAPIC pair.
    fn write_register(&mut self, index: u32, value: u32, now: Instant) -> bool {
        let x2 = self.mode() == ApicMode::X2Apic;
        match index {
            REG_ID => {
                if !x2 {
                    self.xapic_id = (value >> 24) as u8;
                }
            }
            REG_VERSION | REG_APR | REG_PPR | REG_RRD | REG_TIMER_CURRENT => {}
            REG_ISR..=REG_IRR_LAST => {}
            REG_TPR => self.tpr = value as u8,
            REG_EOI => self.eoi(),
            REG_LDR => {
                if !x2 {
                    self.ldr = value & 0xff00_0000;
                }
            }
            REG_DFR => self.dfr = value | 0x0fff_ffff,
            REG_SVR => self.write_svr(value),
            // "This write clears any previously logged errors and updates
            // the ESR with any errors detected since the last write"
            // (§11.5.3).
            REG_ESR => self.esr = std::mem::take(&mut self.esr_pending),
            REG_ICR_LOW => {
                self.icr_low = value & ICR_LOW_WRITABLE;
                self.send_ipi(self.icr_low, self.icr_high);
            }
            REG_ICR_HIGH => self.icr_high = value & 0xff00_0000,
            REG_LVT_TIMER..=REG_LVT_ERROR => {
                self.write_lvt((index - REG_LVT_TIMER) as usize, value)
            }
            REG_TIMER_INITIAL => self.timer.start(value, now),
            REG_TIMER_DIVIDE => self.timer.set_divide(value, now),
            // SELF IPI: fixed, edge-triggered, to this APIC (§11.12.11).
            REG_SELF_IPI if x2 => {
                let vector = value as u8;
                if vector < FIRST_VALID_VECTOR {
                    self.error(ESR_SEND_ILLEGAL_VECTOR);
                } else {
                    self.accept_interrupt(vector, false);
                }
            }
            _ => return false,
        }
        true
    }

    /// Validates an x2APIC MSR number and returns its register index.
    fn x2apic_index(&self, msr: u32) -> Result<u32, ApicFault> {
        if !(X2APIC_MSR_FIRST..=X2APIC_MSR_LAST).contains(&msr) {
            return Err(ApicFault::ReservedMsr { msr });
        }
        if self.mode() != ApicMode::X2Apic {
            return Err(ApicFault::NotX2Apic { msr });
        }
        Ok(msr - X2APIC_MSR_FIRST)
    }

    /// RDMSR of x2APIC register `msr` (0x800-0x8FF). The ICR (0x830) reads
    /// as one 64-bit value; other registers return their 32 bits in the low
    /// half.
    pub fn msr_read(&mut self, msr: u32) -> Result<u64, ApicFault> {
        let index = self.x2apic_index(msr)?;
        match x2apic_access(index) {
            None => return Err(ApicFault::ReservedMsr { msr }),
            Some(Access::WriteOnly) => return Err(ApicFault::WriteOnly { msr }),
            Some(_) => {}
        }
        let now = self.clock.now();
        self.update(now);
        if index == REG_ICR_LOW {
            return Ok(u64::from(self.icr_high) << 32 | u64::from(self.icr_low));
        }
        self.register(index, now)
            .map(u64::from)
            .ok_or(ApicFault::ReservedMsr { msr })
    }

    /// WRMSR of x2APIC register `msr` (0x800-0x8FF). A write to the ICR
    /// (0x830) or SELF IPI (0x83F) sends the IPI.
    pub fn msr_write(&mut self, msr: u32, value: u64) -> Result<(), ApicFault> {
        let index = self.x2apic_index(msr)?;
        match x2apic_access(index) {
            None => return Err(ApicFault::ReservedMsr { msr }),
            Some(Access::ReadOnly) => return Err(ApicFault::ReadOnly { msr }),
            Some(_) => {}
        }
        if value & x2apic_reserved_bits(index) != 0 {
            return Err(ApicFault::ReservedBits { msr, value });
        }
        let now = self.clock.now();
        self.update(now);
        if index == REG_ICR_LOW {
            self.icr_low = value as u32;
            self.icr_high = (value >> 32) as u32;
            self.send_ipi(self.icr_low, self.icr_high);
        } else {
            self.write_register(index, value as u32, now);
        }
        Ok(())
    }
}

/// The xAPIC page. "All registers must be accessed using 128-bit aligned
/// 32-bit loads or stores"; other accesses are model-specific (SDM §11.4.1).
/// Here a load of any width and alignment returns the bytes it covers, with
/// bytes 4-15 of each 16-byte line reading 0, while a store acts only if it
/// starts a line and is at least 4 bytes wide (its first 4 bytes are the
/// value); other stores are dropped, as KVM and QEMU do. Touching a
/// reserved register sets "illegal register address" in the ESR.
impl MmioDevice for LocalApic {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if !self.mmio_enabled() {
            debug!(
                offset = format_args!("{offset:#x}"),
                "local APIC page read while not in xAPIC mode"
            );
            data.fill(0xff);
            return;
        }
        data.fill(0);
        let Some(last_byte) = (data.len() as u64).checked_sub(1) else {
            return;
        };
        let now = self.clock.now();
        self.update(now);
        let last_line = offset.saturating_add(last_byte) & !0xf;
        let mut line = offset & !0xf;
        let mut illegal = false;
        loop {
            if line < APIC_MMIO_SIZE && touches_reg32(line, offset, data.len()) {
                match self.register((line >> 4) as u32, now) {
                    Some(value) => {
                        read_reg32(line, value, offset, data);
                    }
                    None => illegal = true,
                }
            }
            if line >= last_line || line >= APIC_MMIO_SIZE {
                break;
            }
            line += 16;
        }
        if illegal {
            self.error(ESR_ILLEGAL_REGISTER);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if !self.mmio_enabled() {
            debug!(
                offset = format_args!("{offset:#x}"),
                "local APIC page write while not in xAPIC mode dropped"
            );
            return;
        }
        let value = match data.get(..4) {
            Some(&[a, b, c, d]) if offset < APIC_MMIO_SIZE && offset & 0xf == 0 => {
                u32::from_le_bytes([a, b, c, d])
            }
            _ => {
                debug!(
                    offset = format_args!("{offset:#x}"),
                    len = data.len(),
                    "misaligned or narrow local APIC write dropped"
                );
                return;
            }
        };
        let now = self.clock.now();
        self.update(now);
        if !self.write_register((offset >> 4) as u32, value, now) {
            self.error(ESR_ILLEGAL_REGISTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const SPURIOUS: u32 = 0xff;

    fn ns(n: u64) -> Duration {
        Duration::from_nanos(n)
    }

    fn apic() -> (LocalApic, Arc<ManualClock>, Instant) {
        let t0 = Instant::now();
        let clock = Arc::new(ManualClock::new(t0));
        (LocalApic::new(clock.clone(), 40), clock, t0)
    }

    fn rd(apic: &mut LocalApic, offset: u64) -> u32 {
        let mut buf = [0u8; 4];
        apic.read(offset, &mut buf);
        u32::from_le_bytes(buf)
    }

    fn wr(apic: &mut LocalApic, offset: u64, value: u32) {
        apic.write(offset, &value.to_le_bytes());
    }

    /// An APIC software-enabled the way Linux's `setup_local_APIC` does it.
    fn enabled() -> (LocalApic, Arc<ManualClock>, Instant) {
        let (mut a, c, t0) = apic();
        wr(&mut a, 0xf0, 0x100 | SPURIOUS);
        (a, c, t0)
    }

    fn to_x2apic(a: &mut LocalApic) {
        a.set_base_msr(APIC_DEFAULT_BASE | APIC_BASE_EN | APIC_BASE_EXTD)
            .unwrap();
    }

    /// The ESR as Linux reads it: write, then read.
    fn esr(a: &mut LocalApic) -> u32 {
        wr(a, 0x280, 0);
        rd(a, 0x280)
    }

    #[test]
    fn conversions_and_divisor() {
        assert_eq!(divisor(0x0), 2);
        assert_eq!(divisor(0x3), 16);
        assert_eq!(divisor(0x8), 32);
        assert_eq!(divisor(0xa), 128);
        assert_eq!(divisor(0xb), 1);
        assert_eq!(ticks_in(Duration::from_secs(1), 16), 62_500_000);
        assert_eq!(duration_of(1000, 16), ns(16_000));
        let mut v = VectorSet::default();
        assert_eq!(v.highest(), None);
        v.set(0x31);
        v.set(0xfe);
        assert_eq!(v.highest(), Some(0xfe));
        assert_eq!(v.word(1), 1 << 17);
        v.clear(0xfe);
        assert_eq!(v.highest(), Some(0x31));
        assert_eq!(x2apic_ldr(0), 1);
        assert_eq!(x2apic_ldr(0x23), 0x0002_0008);
    }

    #[test]
    fn reset_state_is_firmware_virtual_wire() {
        let (mut a, _, _) = apic();
        assert_eq!(a.base_msr(), 0xfee0_0900);
        assert_eq!(a.mode(), ApicMode::XApic);
        assert_eq!(a.mmio_base(), 0xfee0_0000);
        assert!(a.mmio_enabled());
        assert!(!a.is_enabled());
        assert_eq!(rd(&mut a, 0x20), 0);
        assert_eq!(rd(&mut a, 0x30), 0x0005_0014);
        assert_eq!(rd(&mut a, 0xe0), 0xffff_ffff);
        assert_eq!(rd(&mut a, 0xf0), 0xff);
        assert_eq!(rd(&mut a, 0x320), 0x0001_0000);
        assert_eq!(rd(&mut a, 0x350), 0x700);
        assert_eq!(rd(&mut a, 0x360), 0x400);
        assert_eq!(rd(&mut a, 0x370), 0x0001_0000);
        assert!(a.lint0_extint_enabled());
        assert_eq!(a.pending_vector(), None);
        assert_eq!(a.next_deadline(), None);
    }

    /// Linux's xAPIC probe and `setup_local_APIC`: version, TPR, SVR, LVT0
    /// ExtINT (or masked once the IOAPIC takes over), LVT1 NMI, ESR set-up.
    #[test]
    fn xapic_linux_probe_sequence() {
        let (mut a, _, _) = apic();
        let version = rd(&mut a, 0x30);
        assert_eq!(version & 0xff, 0x14);
        assert_eq!((version >> 16) & 0xff, 5);
        // LDR/DFR before enabling ("Intel recommends...").
        wr(&mut a, 0xe0, 0xffff_ffff);
        wr(&mut a, 0xd0, 0x0100_0000);
        assert_eq!(rd(&mut a, 0xd0), 0x0100_0000);
        wr(&mut a, 0x80, 0);
        assert_eq!(rd(&mut a, 0x80), 0);
        let svr = rd(&mut a, 0xf0);
        wr(&mut a, 0xf0, (svr & !0xff) | 0x100 | 0xff);
        assert_eq!(rd(&mut a, 0xf0), 0x1ff);
        assert!(a.is_enabled());
        // LVT0 was unmasked, so Linux keeps it as ExtINT on the BSP.
        assert_eq!(rd(&mut a, 0x350) & LVT_MASKED, 0);
        wr(&mut a, 0x350, 0x700);
        assert_eq!(rd(&mut a, 0x350), 0x700);
        assert!(a.lint0_extint_enabled());
        wr(&mut a, 0x360, 0x400);
        assert_eq!(rd(&mut a, 0x360), 0x400);
        // lapic_setup_esr: write ESR, program LVTERR, write and read ESR.
        wr(&mut a, 0x280, 0);
        wr(&mut a, 0x370, 0xfe);
        assert_eq!(esr(&mut a), 0);
        assert_eq!(rd(&mut a, 0x370), 0xfe);
        // check_timer: LVT0 masked while the IOAPIC delivers IRQ 0.
        wr(&mut a, 0x350, LVT_MASKED | 0x700);
        assert!(!a.lint0_extint_enabled());
        assert_eq!(rd(&mut a, 0xa0), 0);
        assert_eq!(rd(&mut a, 0x90), 0);
    }

    #[test]
    fn lvt_writes_while_software_disabled_stay_masked() {
        let (mut a, _, _) = apic();
        wr(&mut a, 0x320, 0x2_0030);
        assert_eq!(rd(&mut a, 0x320), 0x3_0030);
        wr(&mut a, 0x350, 0x700);
        assert_eq!(rd(&mut a, 0x350), 0x1_0700);
        assert!(!a.lint0_extint_enabled());
        // Enabling then disabling by SVR masks every entry.
        wr(&mut a, 0xf0, 0x1ff);
        wr(&mut a, 0x350, 0x700);
        wr(&mut a, 0x370, 0xfe);
        wr(&mut a, 0xf0, 0x0ff);
        assert_eq!(rd(&mut a, 0x350), 0x1_0700);
        assert_eq!(rd(&mut a, 0x370), 0x1_00fe);
        // Read-only and reserved LVT bits stay clear.
        wr(&mut a, 0xf0, 0x1ff);
        wr(&mut a, 0x320, 0xffff_ffff);
        assert_eq!(rd(&mut a, 0x320), 0x0003_00ff);
        wr(&mut a, 0x360, 0xffff_ffff);
        assert_eq!(rd(&mut a, 0x360), 0x0001_a7ff);
    }

    #[test]
    fn narrow_and_misaligned_mmio_accesses() {
        let (mut a, _, _) = enabled();
        let mut b = [0u8; 1];
        a.read(0x32, &mut b);
        assert_eq!(b, [0x05]);
        let mut q = [0xaau8; 8];
        a.read(0x30, &mut q);
        assert_eq!(q, [0x14, 0, 0x05, 0, 0, 0, 0, 0]);
        // Crossing from the tail of one line into the next register.
        let mut q = [0xaau8; 8];
        a.read(0x2c, &mut q);
        assert_eq!(q, [0, 0, 0, 0, 0x14, 0, 0x05, 0]);
        // Narrow or misaligned stores are dropped.
        a.write(0x80, &[0x40]);
        a.write(0x84, &0x50u32.to_le_bytes());
        assert_eq!(rd(&mut a, 0x80), 0);
        // A 64-bit store writes the register from its low half.
        a.write(0x80, &0xffff_ffff_0000_0030u64.to_le_bytes());
        assert_eq!(rd(&mut a, 0x80), 0x30);
        // Reserved registers read 0 and flag an illegal register address.
        assert_eq!(rd(&mut a, 0x40), 0);
        assert_eq!(esr(&mut a), ESR_ILLEGAL_REGISTER);
        wr(&mut a, 0x3f0, 0x40);
        assert_eq!(esr(&mut a), ESR_ILLEGAL_REGISTER);
        assert_eq!(esr(&mut a), 0);
        assert_eq!(a.pending_vector(), None);
    }

    #[test]
    fn x2apic_enable_and_msr_reads() {
        let (mut a, _, _) = enabled();
        assert_eq!(a.msr_read(0x802), Err(ApicFault::NotX2Apic { msr: 0x802 }));
        assert_eq!(
            a.msr_write(0x808, 0),
            Err(ApicFault::NotX2Apic { msr: 0x808 })
        );
        // Linux's x2apic_enable: rdmsr, set EXTD, wrmsr.
        let base = a.base_msr();
        a.set_base_msr(base | APIC_BASE_EXTD).unwrap();
        assert_eq!(a.base_msr(), 0xfee0_0d00);
        assert_eq!(a.mode(), ApicMode::X2Apic);
        assert_eq!(a.msr_read(0x802), Ok(0));
        assert_eq!(a.msr_read(0x803), Ok(0x0005_0014));
        assert_eq!(a.msr_read(0x80d), Ok(1));
        assert_eq!(a.msr_read(0x80f), Ok(0x1ff));
        assert_eq!(a.msr_read(0x808), Ok(0));
        assert_eq!(a.msr_read(0x80a), Ok(0));
        assert_eq!(a.msr_read(0x835), Ok(0x700));
        a.msr_write(0x808, 0x20).unwrap();
        assert_eq!(a.msr_read(0x808), Ok(0x20));
        a.msr_write(0x80b, 0).unwrap();
        a.msr_write(0x828, 0).unwrap();
        assert_eq!(a.msr_read(0x828), Ok(0));
        // The MMIO page no longer decodes.
        assert_eq!(rd(&mut a, 0x30), 0xffff_ffff);
        wr(&mut a, 0x80, 0x90);
        assert_eq!(a.msr_read(0x808), Ok(0x20));
        assert!(!a.mmio_enabled());
    }

    #[test]
    fn illegal_base_transitions_fault() {
        let (mut a, _, _) = enabled();
        let base = APIC_DEFAULT_BASE;
        // EXTD without EN.
        assert_eq!(
            a.set_base_msr(base | APIC_BASE_EXTD),
            Err(ApicFault::IllegalTransition {
                from: ApicMode::XApic,
                value: base | APIC_BASE_EXTD
            })
        );
        // Reserved bits: 0-7, 9, at and above MAXPHYADDR.
        for bad in [1u64, 1 << 9, 1 << 40, 1 << 63] {
            assert_eq!(
                a.set_base_msr(base | APIC_BASE_EN | bad),
                Err(ApicFault::ReservedBits {
                    msr: MSR_IA32_APIC_BASE,
                    value: base | APIC_BASE_EN | bad
                })
            );
        }
        to_x2apic(&mut a);
        // x2APIC -> xAPIC directly.
        assert!(matches!(
            a.set_base_msr(base | APIC_BASE_EN),
            Err(ApicFault::IllegalTransition {
                from: ApicMode::X2Apic,
                ..
            })
        ));
        assert_eq!(a.mode(), ApicMode::X2Apic);
        a.msr_write(0x808, 0x40).unwrap();
        // x2APIC -> disabled resets the registers.
        a.set_base_msr(base).unwrap();
        assert_eq!(a.mode(), ApicMode::Disabled);
        assert_eq!(a.base_msr(), 0xfee0_0100);
        assert!(a.lint0_extint_enabled());
        assert_eq!(a.acknowledge(), None);
        assert!(!a.accept_interrupt(0x40, false));
        assert_eq!(rd(&mut a, 0x80), 0xffff_ffff);
        // Disabled -> x2APIC directly.
        assert!(matches!(
            a.set_base_msr(base | APIC_BASE_EN | APIC_BASE_EXTD),
            Err(ApicFault::IllegalTransition {
                from: ApicMode::Disabled,
                ..
            })
        ));
        // Disabled -> xAPIC: power-up register values, LINT0 masked.
        a.set_base_msr(base | APIC_BASE_EN).unwrap();
        assert_eq!(rd(&mut a, 0x80), 0);
        assert_eq!(rd(&mut a, 0xf0), 0xff);
        assert_eq!(rd(&mut a, 0x350), 0x1_0000);
        assert!(!a.lint0_extint_enabled());
        // Relocation.
        a.set_base_msr(0xfed0_0000 | APIC_BASE_EN).unwrap();
        assert_eq!(a.mmio_base(), 0xfed0_0000);
        assert_eq!(a.base_msr(), 0xfed0_0900);
    }

    #[test]
    fn x2apic_msr_faults() {
        let (mut a, _, _) = enabled();
        to_x2apic(&mut a);
        for msr in [
            0x800, 0x801, 0x804, 0x809, 0x80c, 0x80e, 0x829, 0x82f, 0x831, 0x83a, 0x83d, 0x840,
            0x8ff,
        ] {
            assert_eq!(a.msr_read(msr), Err(ApicFault::ReservedMsr { msr }));
            assert_eq!(a.msr_write(msr, 0), Err(ApicFault::ReservedMsr { msr }));
        }
        for msr in [0x7ff, 0x900, 0x1b] {
            assert_eq!(a.msr_read(msr), Err(ApicFault::ReservedMsr { msr }));
        }
        for msr in [
            0x802, 0x803, 0x80a, 0x80d, 0x810, 0x817, 0x818, 0x827, 0x839,
        ] {
            assert_eq!(a.msr_write(msr, 0), Err(ApicFault::ReadOnly { msr }));
            assert!(a.msr_read(msr).is_ok());
        }
        for msr in [0x80b, 0x83f] {
            assert_eq!(a.msr_read(msr), Err(ApicFault::WriteOnly { msr }));
        }
        for (msr, value) in [
            (0x808, 0x100),
            (0x80b, 1),
            (0x828, 1),
            (0x80f, 0x1000),
            (0x83e, 0x4),
            (0x832, 1 << 18),
            (0x832, 0x700),
            (0x837, 0x400),
            (0x83f, 0x100),
            (0x838, 1 << 32),
            (0x830, 1 << 12),
            (0x830, 1 << 20),
        ] {
            assert_eq!(
                a.msr_write(msr, value),
                Err(ApicFault::ReservedBits { msr, value }),
                "msr {msr:#x} value {value:#x}"
            );
        }
        // Nothing took effect.
        assert_eq!(a.msr_read(0x808), Ok(0));
        assert_eq!(a.msr_read(0x832), Ok(0x1_0000));
        assert_eq!(a.msr_read(0x830), Ok(0));
        assert_eq!(a.pending_vector(), None);
        // Defined-but-read-only bits are accepted and ignored.
        a.msr_write(0x835, 0x1_1700).unwrap();
        assert_eq!(a.msr_read(0x835), Ok(0x1_0700));
    }

    #[test]
    fn timer_one_shot_counts_down_and_fires_once() {
        let (mut a, clock, t0) = enabled();
        wr(&mut a, 0x3e0, 0x3); // divide by 16
        wr(&mut a, 0x320, 0x30); // one-shot, vector 0x30
        wr(&mut a, 0x380, 1000);
        assert_eq!(rd(&mut a, 0x380), 1000);
        assert_eq!(rd(&mut a, 0x390), 1000);
        assert_eq!(a.next_deadline(), Some(t0 + ns(16_000)));
        clock.set(t0 + ns(1_600));
        assert_eq!(rd(&mut a, 0x390), 900);
        clock.set(t0 + ns(15_999));
        assert_eq!(rd(&mut a, 0x390), 1);
        a.update(t0 + ns(15_999));
        assert_eq!(a.pending_vector(), None);
        a.update(t0 + ns(16_000));
        assert_eq!(a.pending_vector(), Some(0x30));
        assert_eq!(a.timer_fires(), 1);
        assert_eq!(a.next_deadline(), None);
        clock.set(t0 + ns(50_000));
        assert_eq!(rd(&mut a, 0x390), 0);
        a.update(t0 + ns(1_000_000));
        assert_eq!(a.timer_fires(), 1);
        assert_eq!(a.acknowledge(), Some(0x30));
        wr(&mut a, 0xb0, 0);
        assert_eq!(a.pending_vector(), None);
        assert_eq!(a.take_level_eoi(), None);
        // Rearm, then stop it with a zero initial count.
        clock.set(t0 + ns(1_000_000));
        wr(&mut a, 0x380, 10);
        clock.set(t0 + ns(1_000_080));
        assert_eq!(rd(&mut a, 0x390), 5);
        wr(&mut a, 0x380, 0);
        assert_eq!(rd(&mut a, 0x390), 0);
        a.update(t0 + ns(2_000_000));
        assert_eq!(a.timer_fires(), 1);
    }

    #[test]
    fn timer_periodic_fires_on_schedule_without_drift() {
        let (mut a, clock, t0) = enabled();
        wr(&mut a, 0x3e0, 0xb); // divide by 1
        wr(&mut a, 0x320, 0x2_0031);
        wr(&mut a, 0x380, 100);
        assert_eq!(a.next_deadline(), Some(t0 + ns(100)));
        a.update(t0 + ns(100));
        assert_eq!(a.timer_fires(), 1);
        assert_eq!(a.acknowledge(), Some(0x31));
        wr(&mut a, 0xb0, 0);
        assert_eq!(a.next_deadline(), Some(t0 + ns(200)));
        // Late by one and a half periods: one interrupt, schedule kept.
        a.update(t0 + ns(350));
        assert_eq!(a.timer_fires(), 2);
        assert_eq!(a.next_deadline(), Some(t0 + ns(400)));
        clock.set(t0 + ns(350));
        assert_eq!(rd(&mut a, 0x390), 50);
        // The count reloads rather than reading 0, even between updates.
        clock.set(t0 + ns(430));
        assert_eq!(rd(&mut a, 0x390), 70);
        assert_eq!(a.timer_fires(), 3);
        // Masked: keeps counting, no interrupts, no deadline.
        wr(&mut a, 0x320, 0x3_0031);
        assert_eq!(a.next_deadline(), None);
        a.update(t0 + ns(1_000));
        assert_eq!(a.timer_fires(), 3);
        // Divide change keeps the count and slows it: 0 ns into a period
        // at t=1000, now 4 ns per tick.
        clock.set(t0 + ns(1_000));
        assert_eq!(rd(&mut a, 0x390), 100);
        wr(&mut a, 0x3e0, 0x1);
        wr(&mut a, 0x320, 0x2_0031);
        clock.set(t0 + ns(1_040));
        assert_eq!(rd(&mut a, 0x390), 90);
        assert_eq!(a.next_deadline(), Some(t0 + ns(1_400)));
        // Changing the mode disarms the timer (SDM 11.5.4.1).
        wr(&mut a, 0x320, 0x31);
        assert_eq!(rd(&mut a, 0x390), 0);
        assert_eq!(rd(&mut a, 0x380), 100);
        assert_eq!(a.next_deadline(), None);
    }

    /// Linux's calibration: periodic, masked, divide 16, initial 0xFFFFFFFF,
    /// current count sampled on PIT ticks.
    #[test]
    fn timer_calibration_sequence() {
        let (mut a, clock, t0) = enabled();
        wr(&mut a, 0x320, 0x3_00ec);
        let dcr = rd(&mut a, 0x3e0);
        wr(&mut a, 0x3e0, (dcr & !0xb) | 0x3);
        wr(&mut a, 0x380, 0xffff_ffff);
        clock.set(t0 + Duration::from_millis(100));
        let delta = 0xffff_ffff - rd(&mut a, 0x390);
        assert_eq!(delta, 6_250_000);
        assert_eq!(a.pending_vector(), None);
    }

    #[test]
    fn tpr_masks_lower_or_equal_classes() {
        let (mut a, _, _) = enabled();
        wr(&mut a, 0x80, 0x50);
        assert!(a.accept_interrupt(0x55, false));
        assert!(a.accept_interrupt(0x5f, false));
        assert_eq!(a.pending_vector(), None);
        assert_eq!(rd(&mut a, 0xa0), 0x50);
        assert!(a.accept_interrupt(0x61, false));
        assert_eq!(a.pending_vector(), Some(0x61));
        wr(&mut a, 0x80, 0x60);
        assert_eq!(a.pending_vector(), None);
        // CR8 is TPR[7:4].
        assert_eq!(a.cr8(), 6);
        a.set_cr8(0);
        assert_eq!(rd(&mut a, 0x80), 0);
        assert_eq!(a.pending_vector(), Some(0x61));
        assert_eq!(a.acknowledge(), Some(0x61));
        // 0x61 in service: class 5 no longer beats the PPR.
        assert_eq!(rd(&mut a, 0xa0), 0x60);
        assert_eq!(a.pending_vector(), None);
        wr(&mut a, 0xb0, 0);
        assert_eq!(a.pending_vector(), Some(0x5f));
        // Software-disabled: nothing is presented or accepted.
        wr(&mut a, 0xf0, 0xff);
        assert_eq!(a.pending_vector(), None);
        assert!(!a.accept_interrupt(0x70, false));
        assert_eq!(rd(&mut a, 0x230) & (1 << 16), 0);
    }

    #[test]
    fn isr_nesting_and_eoi_order() {
        let (mut a, _, _) = enabled();
        a.accept_interrupt(0x40, false);
        assert_eq!(a.acknowledge(), Some(0x40));
        assert_eq!(rd(&mut a, 0xa0), 0x40);
        // Same class: waits.
        a.accept_interrupt(0x45, false);
        assert_eq!(a.pending_vector(), None);
        // Higher class: nests.
        a.accept_interrupt(0x52, false);
        assert_eq!(a.acknowledge(), Some(0x52));
        assert_eq!(rd(&mut a, 0x120), (1 << 0) | (1 << 18));
        assert_eq!(rd(&mut a, 0x220), 1 << 5);
        assert_eq!(rd(&mut a, 0xa0), 0x50);
        assert_eq!(a.pending_vector(), None);
        // EOI retires the highest in-service vector first.
        wr(&mut a, 0xb0, 0);
        assert_eq!(rd(&mut a, 0x120), 1);
        assert_eq!(a.pending_vector(), None);
        wr(&mut a, 0xb0, 0);
        assert_eq!(rd(&mut a, 0x120), 0);
        assert_eq!(a.pending_vector(), Some(0x45));
        // EOI with nothing in service is harmless.
        assert_eq!(a.acknowledge(), Some(0x45));
        wr(&mut a, 0xb0, 0);
        wr(&mut a, 0xb0, 0);
        assert_eq!(rd(&mut a, 0x100), 0);
    }

    #[test]
    fn acknowledge_without_qualifying_vector_is_spurious() {
        let (mut a, _, _) = enabled();
        assert_eq!(a.acknowledge(), Some(0xff));
        a.accept_interrupt(0x30, false);
        wr(&mut a, 0x80, 0xf0);
        assert_eq!(a.acknowledge(), Some(0xff));
        assert_eq!(rd(&mut a, 0x110), 0);
        assert_eq!(rd(&mut a, 0x210), 1 << 16);
    }

    #[test]
    fn level_triggered_eoi_is_reported() {
        let (mut a, _, _) = enabled();
        a.accept_interrupt(0x60, false);
        assert_eq!(a.acknowledge(), Some(0x60));
        a.accept_interrupt(0x70, true);
        assert_eq!(rd(&mut a, 0x1b0), 1 << 16);
        assert_eq!(rd(&mut a, 0x180), 0);
        assert_eq!(a.acknowledge(), Some(0x70));
        wr(&mut a, 0xb0, 0);
        assert_eq!(a.take_level_eoi(), Some(0x70));
        assert_eq!(a.take_level_eoi(), None);
        wr(&mut a, 0xb0, 0);
        assert_eq!(a.take_level_eoi(), None);
        // Re-accepting as edge clears the TMR bit.
        a.accept_interrupt(0x70, false);
        assert_eq!(rd(&mut a, 0x1b0), 0);
    }

    #[test]
    fn illegal_vectors_are_refused() {
        let (mut a, _, _) = enabled();
        assert!(!a.accept_interrupt(0x0f, false));
        assert_eq!(esr(&mut a), ESR_RECEIVE_ILLEGAL_VECTOR);
        // With LVT error unmasked the error raises its vector.
        wr(&mut a, 0x370, 0xfe);
        wr(&mut a, 0x300, 0x4_0005);
        assert_eq!(a.pending_vector(), Some(0xfe));
        assert_eq!(esr(&mut a), ESR_SEND_ILLEGAL_VECTOR);
        assert_eq!(rd(&mut a, 0x200), 0);
    }

    #[test]
    fn self_ipi_via_xapic_icr() {
        let (mut a, _, _) = enabled();
        // Shorthand self.
        wr(&mut a, 0x300, 0x4_0040);
        assert_eq!(rd(&mut a, 0x300), 0x4_0040);
        assert_eq!(a.pending_vector(), Some(0x40));
        // Physical destination 0 (our ID).
        wr(&mut a, 0x310, 0);
        wr(&mut a, 0x300, 0x0050);
        assert_eq!(a.pending_vector(), Some(0x50));
        // All including self.
        wr(&mut a, 0x300, 0x8_0060);
        assert_eq!(a.pending_vector(), Some(0x60));
        // Another CPU, all-but-self, INIT, SIPI: dropped.
        wr(&mut a, 0x310, 0x0100_0000);
        wr(&mut a, 0x300, 0x0070);
        wr(&mut a, 0x300, 0xc_0080);
        wr(&mut a, 0x310, 0);
        wr(&mut a, 0x300, 0x4500);
        wr(&mut a, 0x300, 0x0698);
        assert_eq!(a.pending_vector(), Some(0x60));
        // Logical flat destination matching the LDR.
        wr(&mut a, 0xd0, 0x0200_0000);
        wr(&mut a, 0x310, 0x0300_0000);
        wr(&mut a, 0x300, 0x0890);
        assert_eq!(a.pending_vector(), Some(0x90));
        // Lowest priority is refused; NMI to self is latched.
        wr(&mut a, 0x300, 0x4_01a0);
        assert_eq!(a.pending_vector(), Some(0x90));
        assert_eq!(esr(&mut a), ESR_REDIRECTABLE_IPI);
        wr(&mut a, 0x300, 0x4_0400);
        assert!(a.take_nmi());
        assert!(!a.take_nmi());
        assert_eq!(rd(&mut a, 0x200), 0);
        assert_eq!(rd(&mut a, 0x220), (1 << 0) | (1 << 16));
        assert_eq!(rd(&mut a, 0x230), 1);
        assert_eq!(rd(&mut a, 0x240), 1 << 16);
    }

    #[test]
    fn self_ipi_via_x2apic_icr_and_self_ipi_msr() {
        let (mut a, _, _) = enabled();
        to_x2apic(&mut a);
        a.msr_write(0x830, 0x4_0040).unwrap();
        assert_eq!(a.msr_read(0x830), Ok(0x4_0040));
        assert_eq!(a.pending_vector(), Some(0x40));
        a.msr_write(0x830, 0x0000_0000_0000_0050).unwrap();
        assert_eq!(a.pending_vector(), Some(0x50));
        // Destination 1 is someone else.
        a.msr_write(0x830, 0x0000_0001_0000_0060).unwrap();
        assert_eq!(a.pending_vector(), Some(0x50));
        // Logical: cluster 0, bit 0.
        a.msr_write(0x830, 0x0000_0001_0000_0870).unwrap();
        assert_eq!(a.pending_vector(), Some(0x70));
        a.msr_write(0x83f, 0xe0).unwrap();
        assert_eq!(a.pending_vector(), Some(0xe0));
        assert_eq!(a.msr_read(0x827), Ok(1));
        assert_eq!(a.acknowledge(), Some(0xe0));
        assert_eq!(a.msr_read(0x817), Ok(1));
        a.msr_write(0x80b, 0).unwrap();
        assert_eq!(a.msr_read(0x817), Ok(0));
        // Illegal vector through SELF IPI.
        a.msr_write(0x83f, 0x03).unwrap();
        a.msr_write(0x828, 0).unwrap();
        assert_eq!(a.msr_read(0x828), Ok(u64::from(ESR_SEND_ILLEGAL_VECTOR)));
    }

    #[test]
    fn x2apic_timer_through_msrs() {
        let (mut a, clock, t0) = enabled();
        to_x2apic(&mut a);
        a.msr_write(0x83e, 0xb).unwrap();
        a.msr_write(0x832, 0xec).unwrap();
        a.msr_write(0x838, 500).unwrap();
        clock.set(t0 + ns(200));
        assert_eq!(a.msr_read(0x839), Ok(300));
        clock.set(t0 + ns(500));
        assert_eq!(a.msr_read(0x839), Ok(0));
        assert_eq!(a.pending_vector(), Some(0xec));
        assert_eq!(a.timer_fires(), 1);
    }

    /// Every offset and width of the page and every x2APIC MSR, in every
    /// mode, with awkward values: nothing panics and the APIC stays usable.
    #[test]
    fn hammer_all_offsets_sizes_and_msrs() {
        let (mut a, clock, t0) = enabled();
        let values: [u64; 6] = [0, 1, 0xff, 0x1ff, 0xffff_ffff, u64::MAX];
        for round in 0..3u64 {
            for offset in (0..0x1010u64).chain([u64::MAX - 3, u64::MAX]) {
                for size in [0usize, 1, 2, 3, 4, 8, 16] {
                    let mut buf = vec![0u8; size];
                    a.read(offset, &mut buf);
                    for v in values {
                        a.write(offset, &v.to_le_bytes()[..size.min(8)]);
                    }
                }
                clock.set(t0 + ns(offset * 977 + round));
                a.update(t0 + ns(offset * 1000));
                let _ = a.acknowledge();
            }
            to_x2apic(&mut a);
            for msr in 0x7f0..0x910u32 {
                let _ = a.msr_read(msr);
                for v in values.into_iter().chain([0x4_0040, 0x1_0000_0000]) {
                    let _ = a.msr_write(msr, v);
                }
                let _ = a.pending_vector();
                let _ = a.acknowledge();
            }
            for v in values.into_iter().chain([0xfee0_0c00, 0xfee0_0800, 0x400]) {
                let _ = a.set_base_msr(v);
            }
            // Back to an enabled xAPIC for the next round.
            let _ = a.set_base_msr(APIC_DEFAULT_BASE);
            a.set_base_msr(APIC_DEFAULT_BASE | APIC_BASE_EN).unwrap();
            wr(&mut a, 0xf0, 0x1ff);
        }
        assert_eq!(a.mode(), ApicMode::XApic);
        assert_eq!(rd(&mut a, 0x30), APIC_VERSION);
        a.accept_interrupt(0x80, false);
        assert_eq!(a.pending_vector(), Some(0x80));
    }
}
