//! The micro-op IR: x86 semantics lifted ONCE per block, run by the interpreter (tier 0) and,
//! for hot blocks, compiled (tier 1). Guest registers are read and written in `CpuState`;
//! temporaries (`T`) hold values within one guest instruction.
//!
//! Rules the lifter keeps so that exceptions are precise without any bookkeeping: within a
//! guest instruction every op that can fault (loads, stores, helpers) comes before the first
//! write to a guest register or to the lazy flags.

use crate::classify::CalloutKind;
use crate::cpu::CpuState;
use crate::env::Env;
use crate::exception::Exception;
use crate::flags::{CcOp, Cond};
use iced_x86::Instruction;

/// A temporary: an index into the per-instruction temp file.
pub type T = u8;
/// Number of temporaries available to one guest instruction.
pub const TEMPS: usize = 64;
/// "No segment": 64-bit mode addressing where the segment base is ignored (SDM Vol. 1, 3.3.7.1).
pub const NO_SEG: u8 = 0xff;
/// Register numbers 16..19 name AH, CH, DH, BH.
pub const REG_AH: u8 = 16;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    And,
    Or,
    Xor,
    /// Shifts take the count from `b` already masked by the lifter.
    Shl,
    Shr,
    Sar,
    Mul,
    /// The high 64 bits of the signed 128-bit product (IMUL's overflow check at 64 bits).
    MulHiS,
}

/// Arguments of a helper call.
pub struct HelperArgs<'a> {
    /// Operand size in bytes.
    pub sz: u8,
    pub a: u64,
    pub b: u64,
    pub c: u64,
    /// The instruction being run (prefixes, operand forms).
    pub insn: &'a Instruction,
}

/// A helper: the out-of-line part of an instruction too bulky for micro-ops (division, rotates
/// through carry, string operations...). Helpers may read and write `CpuState` directly, which is
/// why they count as faulting ops: the lifter emits register writes only after them.
pub type HelperFn = fn(&mut CpuState, &mut dyn Env, &HelperArgs) -> Result<u64, Exception>;

#[derive(Copy, Clone)]
pub struct Helper {
    pub name: &'static str,
    pub f: HelperFn,
}

impl std::fmt::Debug for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Memory access flags.
pub mod mem {
    /// Linear addresses wrap at 4 GiB (every mode but 64-bit).
    pub const WRAP32: u8 = 1;
    /// The access is a stack access (#SS instead of #GP for segment faults).
    pub const STACK: u8 = 2;
    /// Check the segment's limit and type (segmented protected-mode code, or a write through
    /// a CS override).
    pub const CHECK: u8 = 4;
}

#[derive(Copy, Clone, Debug)]
pub enum Op {
    /// Start of guest instruction `idx` of the block, at `rip`.
    Insn {
        idx: u16,
        rip: u64,
    },
    Const {
        d: T,
        v: u64,
    },
    /// Read a guest register, zero-extended from `sz` bytes.
    Get {
        d: T,
        r: u8,
        sz: u8,
    },
    /// Write a guest register: 1 and 2 bytes merge, 4 zero-extends, 8 replaces (SDM Vol. 1, 3.4.1.1).
    Set {
        r: u8,
        sz: u8,
        s: T,
    },
    Bin {
        op: BinOp,
        d: T,
        a: T,
        b: T,
    },
    /// Sign-extend the low `from` bytes of `s` to 64 bits.
    Sext {
        d: T,
        s: T,
        from: u8,
    },
    /// Zero-extend the low `from` bytes.
    Zext {
        d: T,
        s: T,
        from: u8,
    },
    /// Record lazy flags; `aux` is only read for ADC/SBB (carry in) and INC/DEC (old CF).
    Flags {
        op: CcOp,
        sz: u8,
        a: T,
        b: T,
        r: T,
        aux: T,
    },
    /// The current CF as 0 or 1.
    Carry {
        d: T,
    },
    /// A condition as 0 or 1.
    Cond {
        d: T,
        cc: Cond,
    },
    /// `d = c != 0 ? a : b`.
    Select {
        d: T,
        c: T,
        a: T,
        b: T,
    },
    Load {
        d: T,
        seg: u8,
        a: T,
        sz: u8,
        flags: u8,
    },
    Store {
        seg: u8,
        a: T,
        s: T,
        sz: u8,
        flags: u8,
    },
    /// Set and clear RFLAGS bits that are not arithmetic flags (CLD/STD).
    Rflags {
        and: u64,
        or: u64,
    },
    Call {
        h: Helper,
        sz: u8,
        d: T,
        a: T,
        b: T,
        c: T,
    },
    // ---- block terminators ----
    Jmp {
        target: u64,
    },
    JmpInd {
        t: T,
    },
    Branch {
        c: T,
        taken: u64,
        not_taken: u64,
    },
    Callout {
        kind: CalloutKind,
    },
    Raise {
        e: Exception,
    },
    /// The instruction cannot be run yet: stop the VM with a clear message.
    Unsupported {
        what: &'static str,
    },
}

impl Op {
    pub fn is_terminator(&self) -> bool {
        matches!(
            self,
            Op::Jmp { .. }
                | Op::JmpInd { .. }
                | Op::Branch { .. }
                | Op::Callout { .. }
                | Op::Raise { .. }
                | Op::Unsupported { .. }
        )
    }
}
