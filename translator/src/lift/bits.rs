//! Bit tests, bit scans, byte swap and the flag instructions.

use super::{LiftError, Lifter};
use crate::cpu::rflags::DF;
use crate::helpers::arith::SCAN;
use crate::helpers::flagops::{ARPL, FLAG_OP, SET_CF};
use crate::ir::{BinOp, Op};
use iced_x86::{Instruction, Mnemonic, OpKind};

/// BT/BTS/BTR/BTC (SDM Vol. 2): with a register bit offset and a memory operand, the offset is
/// signed and selects an operand-sized word relative to the effective address.
pub fn bit_test(l: &mut Lifter, insn: &Instruction) -> Result<(), LiftError> {
    let sz = Lifter::op_size(insn, 0);
    let bits = sz as u64 * 8;
    let off = l.read_op(insn, 1)?;
    let (val, addr) = if insn.op_kind(0) == OpKind::Memory && insn.op_kind(1) == OpKind::Register {
        let ea = l.ea(insn)?;
        let soff = l.sext(off, sz);
        let words = l.bin_imm(BinOp::Sar, soff, bits.trailing_zeros() as u64);
        let bytes = l.bin_imm(BinOp::Mul, words, sz as u64);
        let mut a = l.bin(BinOp::Add, ea, bytes);
        if l.mode.code_bits != 64 {
            a = l.bin_imm(BinOp::And, a, 0xffff_ffff);
        }
        let seg = l.seg_index(insn.memory_segment());
        (l.load(seg, a, sz, false), Some((seg, a)))
    } else {
        (l.read_op(insn, 0)?, None)
    };
    let bit = l.bin_imm(BinOp::And, off, bits - 1);
    let shifted = l.bin(BinOp::Shr, val, bit);
    let cf = l.bin_imm(BinOp::And, shifted, 1);
    let one = l.konst(1);
    let mask = l.bin(BinOp::Shl, one, bit);
    let new = match insn.mnemonic() {
        Mnemonic::Bts => Some(l.bin(BinOp::Or, val, mask)),
        Mnemonic::Btr => {
            let inv = l.bin_imm(BinOp::Xor, mask, u64::MAX);
            Some(l.bin(BinOp::And, val, inv))
        }
        Mnemonic::Btc => Some(l.bin(BinOp::Xor, val, mask)),
        _ => None,
    };
    if let Some(n) = new {
        match addr {
            Some((seg, a)) => l.store(seg, a, n, sz, false),
            None => l.write_op(insn, 0, n)?,
        }
    }
    l.call(SET_CF, sz, cf, cf, cf);
    Ok(())
}

pub fn scan(l: &mut Lifter, insn: &Instruction) -> Result<(), LiftError> {
    let sz = Lifter::op_size(insn, 0);
    if insn.mnemonic() == iced_x86::Mnemonic::Bswap {
        let a = l.read_op(insn, 0)?;
        let r = l.call(SCAN, sz, a, a, a);
        return l.write_op(insn, 0, r);
    }
    let src = l.read_op(insn, 1)?;
    if sz == 4 && matches!(insn.mnemonic(), Mnemonic::Bsf | Mnemonic::Bsr) {
        // A zero source leaves the destination unchanged (AMD APM Vol. 3, BSF/BSR; the SDM
        // says "undefined" and Intel hardware does the same): the whole 64-bit register, so a
        // 32-bit destination is not zero-extended then. A found index is < 32 and its 64-bit
        // write is the usual zero extension.
        let (r, _) = Lifter::reg_loc(insn.op_register(0))?;
        let old = l.get_n(r, 8);
        let v = l.call(SCAN, sz, src, old, old);
        l.set_n(r, 8, v);
        return Ok(());
    }
    let old = l.read_op(insn, 0)?;
    let r = l.call(SCAN, sz, src, old, old);
    l.write_op(insn, 0, r)
}

pub fn flag_ops(l: &mut Lifter, insn: &Instruction) -> Result<(), LiftError> {
    match insn.mnemonic() {
        Mnemonic::Cld => l.ops.push(Op::Rflags { and: !DF, or: 0 }),
        Mnemonic::Std => l.ops.push(Op::Rflags { and: !0, or: DF }),
        _ => {
            let z = l.konst(0);
            l.call(FLAG_OP, 1, z, z, z);
        }
    }
    Ok(())
}

/// ARPL r/m16, r16 (protected mode only; in 64-bit mode the opcode is MOVSXD): raise the
/// destination selector's RPL to the source's, ZF tells whether it changed.
pub fn arpl(l: &mut Lifter, insn: &Instruction) -> Result<(), LiftError> {
    let dst = l.read_op(insn, 0)?;
    let src = l.read_op(insn, 1)?;
    l.probe_write(insn, 0, dst)?;
    let r = l.call(ARPL, 2, dst, src, src);
    l.write_op(insn, 0, r)
}
