//! A translated block: the micro-ops of a run of guest instructions that starts at one guest
//! address in one mode and lies within one guest page (an instruction that straddles a page
//! boundary makes the block depend on the next page too).

use crate::cpu::Mode;
use crate::ir::Op;
use crate::jit::JitSlot;
use iced_x86::Instruction;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// What a translation depends on: where it starts (linear and physical) and the mode it was
/// lifted for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// RIP (the offset in CS) of the first instruction.
    pub rip: u64,
    pub cs_base: u64,
    /// Guest-physical address of the first byte.
    pub phys: u64,
    pub mode: Mode,
}

/// Instruction counts by class, for `--stats`.
#[derive(Copy, Clone, Debug, Default)]
pub struct ClassCounts {
    pub lifted: u32,
    pub callouts: u32,
    pub helpers: u32,
    /// Instructions run by the native-step engine (x87/MMX/SSE).
    pub native_steps: u32,
}

pub struct Block {
    pub key: BlockKey,
    pub ops: Vec<Op>,
    pub insns: Vec<Instruction>,
    /// Guest-physical pages the bytes came from (the second is `u64::MAX` unless an
    /// instruction straddles into the next page).
    pub pages: [u64; 2],
    pub guest_bytes: u32,
    pub counts: ClassCounts,
    /// Cleared when the guest writes to one of `pages`; a stale block is never entered again.
    pub valid: Cell<bool>,
    pub exec_count: Cell<u64>,
    /// Direct successors, cached after their first lookup (chaining). Only targets in the same
    /// linear page as the block start are chained: their physical address cannot differ.
    pub chain: [RefCell<Option<Rc<Block>>>; 2],
    /// Static successor RIPs for the chain slots (u64::MAX when absent).
    pub succ_rip: [u64; 2],
    /// Tier 1: the compiled code once the block got hot (cleared by cache flushes).
    pub jit: Cell<JitSlot>,
    /// The block only raises the fault of fetching its instruction's bytes from the next page.
    /// Never cached: the guest kernel may map that page without any TLB flush (not-present
    /// entries are never cached by the CPU, SDM Vol. 3, 4.10.2.3), and the next run must fetch
    /// again.
    pub fetch_fault: bool,
}

impl Block {
    /// Whether any memory access of the block carries segment limit/type checks; such blocks
    /// stay in the interpreter (tier 1 does not implement the checks).
    pub fn has_segment_checks(&self) -> bool {
        self.ops.iter().any(|op| {
            matches!(op, crate::ir::Op::Load { flags, .. } | crate::ir::Op::Store { flags, .. } if flags & crate::ir::mem::CHECK != 0)
        })
    }

    pub fn end_rip(&self) -> u64 {
        self.insns
            .last()
            .map(|i| i.next_ip())
            .unwrap_or(self.key.rip)
    }
}
