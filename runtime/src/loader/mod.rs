//! Boot loaders: put a guest image into RAM and the vCPU into the state its boot protocol
//! promises.

pub mod linux;
pub mod multiboot;
