//! btvisor's translator: scan guest code with iced-x86, classify every instruction (lift,
//! callout, native-step), lift into a micro-op IR, run it in the tier-0 interpreter, cache and
//! chain translations, invalidate them when the guest writes to code pages.
//!
//! The translator knows nothing of devices or page tables: the runtime provides memory slow
//! paths and callouts through the `Env` trait.

pub mod block;
pub mod cache;
pub mod classify;
pub mod cpu;
pub mod engine;
pub mod env;
pub mod exception;
pub mod flags;
pub mod helpers;
pub mod interp;
pub mod ir;
pub mod jit;
pub mod lift;
pub mod native_step;
pub mod scan;
pub mod stats;
pub mod tlb;
pub mod trace;

pub use cpu::CpuState;
pub use engine::{RunExit, TierPolicy, Translator};
pub use env::{CalloutResult, Env, Fetched, StopReason};
pub use exception::Exception;
