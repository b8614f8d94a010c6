//! Port-I/O bus and legacy PC device models for btvisor.
//!
//! * [`bus`]: the [`PioDevice`] trait and the [`PioBus`] port map.
//! * [`uart`]: COM1, a 16550A on `vm-superio`.
//! * [`pic`]: the cascaded i8259A pair with ELCR.
//! * [`pit`]: the i8254 timer and port 0x61.
//! * [`debug_exit`]: QEMU's isa-debug-exit.
//! * [`rtc`]: the MC146818A real-time clock and CMOS RAM.
//! * [`i8042`]: the keyboard controller with a PS/2 keyboard.
//! * [`acpi_pm`]: ACPI fixed hardware (PM1 event/control blocks, PM timer).
//! * [`reset_control`]: the chipset's reset register at port 0xCF9.
//! * [`pc`]: [`PcDevices`], all of the above wired together — the interface
//!   the VMM core uses.
//! * [`clock`]: the time source devices sample on guest port reads.
//! * [`mmio`]: the [`MmioDevice`] trait for memory-mapped registers.
//! * [`lapic`]: the local APIC (xAPIC MMIO and x2APIC MSRs, timer).
//! * [`ioapic`]: the 24-pin I/O APIC.

pub mod acpi_pm;
pub mod apics;
pub mod bus;
pub mod clock;
pub mod debug_exit;
pub mod i8042;
pub mod ioapic;
pub mod lapic;
pub mod mmio;
pub mod pc;
pub mod pic;
pub mod pit;
pub mod pvpanic;
pub mod reset_control;
pub mod rtc;
pub mod uart;

pub use acpi_pm::{
    AcpiPm, ACPI_PM_PORT_COUNT, PM1A_CNT_BLK, PM1A_EVT_BLK, PM_TIMER_FREQUENCY_HZ, PM_TMR_BLK,
    SLP_TYP_S5,
};
pub use apics::{Apics, PhysMmio};
pub use bus::{BusError, IoOutcome, PioBus, PioDevice, SharedPioDevice};
pub use clock::{Clock, ManualClock, SystemClock};
pub use debug_exit::{DebugExit, DEBUG_EXIT_PORT};
pub use i8042::{AUX_IRQ, I8042, I8042_COMMAND_PORT, I8042_DATA_PORT, KBD_IRQ};
pub use ioapic::{
    IoApic, IoApicMessage, IOAPIC_DEFAULT_BASE, IOAPIC_MMIO_SIZE, IOAPIC_NUM_PINS, IOAPIC_VERSION,
};
pub use lapic::{
    ApicFault, ApicMode, LocalApic, APIC_BUS_FREQUENCY_HZ, APIC_DEFAULT_BASE, APIC_MMIO_SIZE,
    APIC_VERSION, MSR_IA32_APIC_BASE, X2APIC_MSR_FIRST, X2APIC_MSR_LAST,
};
pub use mmio::MmioDevice;
pub use pc::{PcDevices, PostCode, PIT_IRQ, POST_PORT};
pub use pic::Pic;
pub use pit::{Pit, PIT_FREQUENCY_HZ};
pub use reset_control::{ResetControl, RESET_CONTROL_PORT};
pub use rtc::{Rtc, RTC_IRQ};
pub use uart::{IrqRequest, Uart, COM1_BASE, COM1_IRQ};
