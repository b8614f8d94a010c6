//! Port-I/O bus and legacy PC device models for btvisor.
//!
//! * [`bus`]: the [`PioDevice`] trait and the [`PioBus`] port map.
//! * [`uart`]: COM1, a 16550A on `vm-superio`.
//! * [`pic`]: the cascaded i8259A pair with ELCR.
//! * [`pit`]: the i8254 timer and port 0x61.
//! * [`debug_exit`]: QEMU's isa-debug-exit.
//! * [`pc`]: [`PcDevices`], all of the above wired together — the interface
//!   the VMM core uses.
//! * [`clock`]: the time source devices sample on guest port reads.

pub mod bus;
pub mod clock;
pub mod debug_exit;
pub mod pc;
pub mod pic;
pub mod pit;
pub mod uart;

pub use bus::{BusError, IoOutcome, PioBus, PioDevice, SharedPioDevice};
pub use clock::{Clock, ManualClock, SystemClock};
pub use debug_exit::{DebugExit, DEBUG_EXIT_PORT};
pub use pc::{PcDevices, PostCode, PIT_IRQ, POST_PORT};
pub use pic::Pic;
pub use pit::{Pit, PIT_FREQUENCY_HZ};
pub use uart::{IrqRequest, Uart, COM1_BASE, COM1_IRQ};
