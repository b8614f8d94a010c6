//! btvisor's runtime: the vCPU run loop, exception and interrupt delivery, the MMU and soft-TLB
//! slow paths, guest memory, callouts for privileged and sensitive instructions, the machine's
//! devices and the boot loaders.

pub mod acpi;
pub mod callouts;
pub mod engine;
pub mod interrupts;
pub mod kvm;
pub mod loader;
pub mod memory;
pub mod mmu;
pub mod native;
pub mod segments;
pub mod stats;
pub mod vm;

pub use engine::Accel;
pub use vm::{HostInput, UserEngine, Vm, VmConfig, VmError, VmExit};
