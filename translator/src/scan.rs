//! The scanner: decode guest code (iced-x86) from the start address until a control transfer,
//! a callout, the end of the page or a length cap, classify each instruction and lift it.

use crate::block::{Block, BlockKey, ClassCounts};
use crate::classify::{classify, Class};
use crate::env::Fetched;
use crate::exception::Exception;
use crate::ir::Op;
use crate::jit::JitSlot;
use crate::lift::Lifter;
use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction};
use std::cell::{Cell, RefCell};

/// Longest block, in guest instructions.
pub const MAX_BLOCK_INSNS: usize = 64;
/// Most code bytes fetched per block: enough for `MAX_BLOCK_INSNS` typical instructions.
pub const MAX_FETCH: usize = 1024;

/// Decode and lift one block from `bytes` (fetched at `key`'s linear address).
pub fn scan_block(key: BlockKey, fetched: Fetched, bytes: &[u8]) -> Block {
    let fault_after = fetched.next_fault;
    let bits = key.mode.code_bits as u32;
    let mut decoder = Decoder::with_ip(bits, &bytes[..fetched.len], key.rip, DecoderOptions::NONE);
    let mut lifter = Lifter::new(key.mode);
    let mut insns: Vec<Instruction> = Vec::new();
    let mut counts = ClassCounts::default();
    let page_end = (key.cs_base.wrapping_add(key.rip) | 0xfff).wrapping_add(1);
    let mut used_next_page = false;
    let mut fetch_fault = false;
    let mut insn = Instruction::default();
    while !lifter.ended {
        let lin = key.cs_base.wrapping_add(decoder.ip());
        if !insns.is_empty() && (insns.len() >= MAX_BLOCK_INSNS || lin >= page_end) {
            lifter.end(Op::Jmp {
                target: decoder.ip(),
            });
            break;
        }
        if !decoder.can_decode() {
            fetch_fault = end_without_bytes(&mut lifter, &insns, decoder.ip(), fault_after);
            break;
        }
        decoder.decode_out(&mut insn);
        if decoder.last_error() != DecoderError::None {
            if decoder.last_error() == DecoderError::NoMoreBytes {
                fetch_fault = end_without_bytes(&mut lifter, &insns, insn.ip(), fault_after);
            } else {
                // An invalid encoding: #UD when reached (SDM Vol. 3, 6.15 "Interrupt 6").
                push_insn(&mut lifter, &mut insns, &insn);
                lifter.end(Op::Raise { e: Exception::ud() });
            }
            break;
        }
        if key.cs_base.wrapping_add(insn.next_ip()).wrapping_sub(1) >= page_end {
            used_next_page = true;
        }
        let idx = insns.len() as u16;
        insns.push(insn);
        match classify(&insn) {
            Class::Lift => {
                if let Err(what) = lifter.lift(idx, &insn) {
                    lifter.end(Op::Unsupported { what });
                } else {
                    counts.lifted += 1;
                }
            }
            Class::Callout(kind) => {
                lifter.ops.push(Op::Insn {
                    idx,
                    rip: insn.ip(),
                });
                lifter.end(Op::Callout { kind });
                counts.callouts += 1;
            }
            Class::NativeStep => {
                lifter.native_step(idx, &insn, crate::native_step::NATIVE_STEP);
                counts.native_steps += 1;
            }
            Class::Unsupported => {
                lifter.ops.push(Op::Insn {
                    idx,
                    rip: insn.ip(),
                });
                lifter.end(Op::Unsupported {
                    what: "instruction not supported by the translator",
                });
            }
        }
    }
    counts.helpers = lifter.helpers;
    let succ_rip = succ_rips(&lifter.ops);
    let guest_bytes = insns.iter().map(|i| i.len() as u32).sum();
    Block {
        key,
        ops: lifter.ops,
        insns,
        pages: [
            key.phys & !0xfff,
            if used_next_page {
                fetched.next_page.unwrap_or(u64::MAX)
            } else {
                u64::MAX
            },
        ],
        guest_bytes,
        counts,
        valid: Cell::new(true),
        exec_count: Cell::new(0),
        chain: [RefCell::new(None), RefCell::new(None)],
        succ_rip,
        jit: Cell::new(JitSlot::None),
        fetch_fault,
    }
}

fn push_insn(l: &mut Lifter, insns: &mut Vec<Instruction>, insn: &Instruction) {
    l.ops.push(Op::Insn {
        idx: insns.len() as u16,
        rip: insn.ip(),
    });
    insns.push(*insn);
}

/// The bytes ran out: before the first instruction that is a fetch fault on the next page;
/// later, the block simply ends there and the next block's fetch will fault precisely.
/// End a block whose next instruction's bytes are not all available. Returns true when the
/// block consists of raising the fetch fault (see `Block::fetch_fault`).
fn end_without_bytes(
    l: &mut Lifter,
    insns: &[Instruction],
    ip: u64,
    fault: Option<Exception>,
) -> bool {
    if insns.is_empty() {
        l.ops.push(Op::Insn { idx: 0, rip: ip });
        l.end(Op::Raise {
            e: fault.unwrap_or(Exception::gp(0)),
        });
        true
    } else {
        l.end(Op::Jmp { target: ip });
        false
    }
}

fn succ_rips(ops: &[Op]) -> [u64; 2] {
    match ops.last() {
        Some(Op::Jmp { target }) => [*target, u64::MAX],
        Some(Op::Branch {
            taken, not_taken, ..
        }) => [*taken, *not_taken],
        _ => [u64::MAX, u64::MAX],
    }
}
