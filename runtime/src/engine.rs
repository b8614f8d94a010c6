//! The engine seam (design.md 3.4): what runs the vCPU. One machine (guest RAM, devices,
//! loaders, time) and two engines behind one trait, so binary translation and KVM run the
//! same guest against the same devices:
//!
//! - [`Translated`]: the translator and the runtime's callouts, exception and interrupt
//!   delivery (`Vm::run_translated`). Port I/O and MMIO are callouts and memory slow paths that
//!   reach the devices directly, without leaving the engine.
//! - [`crate::kvm::KvmEngine`]: a KVM vCPU (kvm-ioctls) over the same guest RAM. KVM runs the
//!   guest until an exit (port I/O, MMIO, HLT, an interrupt window, a shutdown); the engine
//!   serves each exit from the machine's devices and injects their interrupts.
//!
//! Both start from the architectural state the loaders left in `Vm::cpu`, and leave the state
//! they stopped in there too (register dumps, tests).

use crate::memory::GuestRam;
use crate::vm::{Vm, VmError, VmExit};
use std::fmt;
use std::str::FromStr;

/// Which engine runs the vCPU: `btvisor run --accel bt|kvm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// Binary translation (the default; needs nothing from the host kernel).
    #[default]
    Bt,
    /// A KVM vCPU through /dev/kvm.
    Kvm,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Bt => "bt",
            Accel::Kvm => "kvm",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bt" => Ok(Accel::Bt),
            "kvm" => Ok(Accel::Kvm),
            _ => Err(format!("unknown accelerator '{s}' (bt or kvm)")),
        }
    }
}

/// A vCPU engine: runs the guest on `vm`'s machine until the VM stops.
///
/// `vm.cpu` holds the architectural state on entry (as the loaders set it) and on return
/// (as the guest left it). `vm.deadline` and `vm.input` are honoured as the translator honours
/// them: the deadline ends the run with [`VmExit::Timeout`], console input is polled while the
/// guest runs and while it halts.
pub trait Engine {
    fn accel(&self) -> Accel;
    /// Run until the VM stops.
    fn run(&mut self, vm: &mut Vm) -> VmExit;
    /// Engine-specific statistics for `--stats` (the translator's live in `Vm::translator`).
    fn stats(&self) -> Option<String> {
        None
    }
}

/// The binary-translation engine: the translator and the runtime's run loop.
#[derive(Debug, Default)]
pub struct Translated;

impl Engine for Translated {
    fn accel(&self) -> Accel {
        Accel::Bt
    }
    fn run(&mut self, vm: &mut Vm) -> VmExit {
        vm.run_translated()
    }
}

/// The engine for `accel` over the machine's guest RAM.
pub fn create(accel: Accel, ram: &GuestRam) -> Result<Box<dyn Engine>, VmError> {
    Ok(match accel {
        Accel::Bt => Box::new(Translated),
        Accel::Kvm => Box::new(crate::kvm::KvmEngine::new(ram)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accel_names_round_trip() {
        for a in [Accel::Bt, Accel::Kvm] {
            assert_eq!(a.name().parse::<Accel>(), Ok(a));
        }
        assert!("tcg".parse::<Accel>().is_err());
        assert_eq!(Accel::default(), Accel::Bt);
    }
}
