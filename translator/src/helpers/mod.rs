//! Helpers: the out-of-line parts of instructions too bulky for micro-ops, called from both
//! tiers with decoded operands (as QEMU's target/i386 helpers). Each may read and write
//! `CpuState`; the lifter orders them before the instruction's register writes.

pub mod arith;
pub mod flagops;
pub mod frame;
pub mod string;
pub mod timestamp;

use crate::cpu::{rflags, CpuState};
use crate::flags::{arith_flags, CcOp, LazyFlags};

/// Replace the arithmetic flags with `f` (materialised).
pub fn set_arith(cpu: &mut CpuState, f: u64) {
    cpu.cc = LazyFlags {
        op: CcOp::Eflags as u32,
        size: 0,
        src1: f & rflags::ARITH,
        src2: 0,
        res: 0,
        aux: 0,
    };
}

/// The arithmetic flags as they are now.
pub fn arith(cpu: &CpuState) -> u64 {
    arith_flags(&cpu.cc)
}
