//! `--trace blocks`: every translation with its guest disassembly and which instructions became
//! callouts or could not be lifted. Events go through `tracing` (target `btvisor::blocks`), so
//! they cost one level check when the category is off.

use crate::block::Block;
use crate::classify::{classify, Class};
use iced_x86::{Formatter, GasFormatter};

pub const BLOCKS: &str = "btvisor::blocks";

pub fn block(b: &Block) {
    if !tracing::enabled!(target: BLOCKS, tracing::Level::TRACE) {
        return;
    }
    let mut f = GasFormatter::new();
    let mut text = String::new();
    for insn in &b.insns {
        let mut s = String::new();
        f.format(insn, &mut s);
        let class = match classify(insn) {
            Class::Lift => "",
            Class::Callout(_) => "  ; callout",
            Class::NativeStep => "  ; native-step",
            Class::Unsupported => "  ; unsupported",
        };
        text.push_str(&format!("\n    {:#010x}: {}{}", insn.ip(), s, class));
    }
    tracing::trace!(
        target: BLOCKS,
        "block rip={:#x} phys={:#x} bits={} cpl={} insns={} ops={}{}",
        b.key.rip,
        b.key.phys,
        b.key.mode.code_bits,
        b.key.mode.cpl,
        b.insns.len(),
        b.ops.len(),
        text
    );
}
