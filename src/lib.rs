//! btvisor: a virtual machine monitor that runs unmodified x86 guests by binary translation.
//!
//! This facade re-exports the workspace crates; see ARCHITECTURE.md for the map.
pub use btvisor_devices as devices;
pub use btvisor_runtime as runtime;
pub use btvisor_translator as translator;
