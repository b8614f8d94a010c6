//! Integer arithmetic and logic: ADD..CMP, INC/DEC/NEG/NOT, shifts, MUL/DIV, BCD.

use super::{LiftError, Lifter};
use crate::flags::CcOp;
use crate::helpers::arith::{BCD, BOUND, DIV, IMUL2, MUL1, SHIFT};
use crate::ir::BinOp;
use iced_x86::{Instruction, Mnemonic};

pub fn arith(l: &mut Lifter, insn: &Instruction) -> Result<(), LiftError> {
    let sz = Lifter::op_size(insn, 0);
    let m = insn.mnemonic();
    let a = l.read_op(insn, 0)?;
    match m {
        Mnemonic::Inc | Mnemonic::Dec => {
            let cf = l.tmp();
            l.ops.push(crate::ir::Op::Carry { d: cf });
            let one = l.konst(1);
            let r = l.bin(
                if m == Mnemonic::Inc {
                    BinOp::Add
                } else {
                    BinOp::Sub
                },
                a,
                one,
            );
            l.write_op(insn, 0, r)?;
            l.flags(
                if m == Mnemonic::Inc {
                    CcOp::Inc
                } else {
                    CcOp::Dec
                },
                sz,
                a,
                one,
                r,
                cf,
            );
        }
        Mnemonic::Neg => {
            let zero = l.konst(0);
            let r = l.bin(BinOp::Sub, zero, a);
            l.write_op(insn, 0, r)?;
            l.flags(CcOp::Sub, sz, zero, a, r, zero);
        }
        Mnemonic::Not => {
            let r = l.bin_imm(BinOp::Xor, a, u64::MAX);
            l.write_op(insn, 0, r)?;
        }
        _ => {
            let b = l.read_op(insn, 1)?;
            let (op, cc, with_carry) = match m {
                Mnemonic::Add => (BinOp::Add, CcOp::Add, false),
                Mnemonic::Adc => (BinOp::Add, CcOp::Adc, true),
                Mnemonic::Sub | Mnemonic::Cmp => (BinOp::Sub, CcOp::Sub, false),
                Mnemonic::Sbb => (BinOp::Sub, CcOp::Sbb, true),
                Mnemonic::And | Mnemonic::Test => (BinOp::And, CcOp::Logic, false),
                Mnemonic::Or => (BinOp::Or, CcOp::Logic, false),
                _ => (BinOp::Xor, CcOp::Logic, false),
            };
            let (r, aux) = if with_carry {
                let cf = l.tmp();
                l.ops.push(crate::ir::Op::Carry { d: cf });
                let r0 = l.bin(op, a, b);
                (l.bin(op, r0, cf), cf)
            } else {
                (l.bin(op, a, b), a)
            };
            if !matches!(m, Mnemonic::Cmp | Mnemonic::Test) {
                l.write_op(insn, 0, r)?;
            }
            l.flags(cc, sz, a, b, r, aux);
        }
    }
    Ok(())
}

/// Shifts and rotates: the helper computes the result and the flags; a memory destination is
/// probed for writability first so that a #PF leaves the flags untouched.
pub fn shift(l: &mut Lifter, insn: &Instruction) -> Result<(), LiftError> {
    let sz = Lifter::op_size(insn, 0);
    let a = l.read_op(insn, 0)?;
    let (count, c) = match insn.mnemonic() {
        Mnemonic::Shld | Mnemonic::Shrd => {
            let src = l.read_op(insn, 1)?;
            (l.read_op(insn, 2)?, src)
        }
        _ => {
            let count = if insn.op_count() > 1 {
                l.read_op(insn, 1)?
            } else {
                l.konst(1)
            };
            (count, count)
        }
    };
    l.probe_write(insn, 0, a)?;
    let r = l.call(SHIFT, sz, a, count, c);
    l.write_op(insn, 0, r)
}

pub fn muldiv(l: &mut Lifter, insn: &Instruction) -> Result<(), LiftError> {
    match (insn.mnemonic(), insn.op_count()) {
        (Mnemonic::Mul | Mnemonic::Imul, 1) => {
            let sz = Lifter::op_size(insn, 0);
            let a = l.read_op(insn, 0)?;
            l.call(MUL1, sz, a, a, a);
        }
        (Mnemonic::Imul, 2) | (Mnemonic::Imul, 3) => {
            let sz = Lifter::op_size(insn, 0);
            let (x, y) = if insn.op_count() == 2 {
                (l.read_op(insn, 0)?, l.read_op(insn, 1)?)
            } else {
                (l.read_op(insn, 1)?, l.read_op(insn, 2)?)
            };
            // Immediates are sign-extended by the decoder to the operand size.
            let r = l.call(IMUL2, sz, x, y, y);
            l.write_op(insn, 0, r)?;
        }
        (Mnemonic::Div | Mnemonic::Idiv, 1) => {
            let sz = Lifter::op_size(insn, 0);
            let a = l.read_op(insn, 0)?;
            l.call(DIV, sz, a, a, a);
        }
        _ => return Err("multiplication form not lifted"),
    }
    Ok(())
}

pub fn bcd(l: &mut Lifter, _insn: &Instruction) -> Result<(), LiftError> {
    if l.mode.code_bits == 64 {
        // These encodings are invalid in 64-bit mode (SDM Vol. 2, "Instruction Set Reference").
        l.end(crate::ir::Op::Raise {
            e: crate::exception::Exception::ud(),
        });
        return Ok(());
    }
    let z = l.konst(0);
    l.call(BCD, 1, z, z, z);
    Ok(())
}

/// BOUND r, m: the two signed bounds are consecutive operand-sized words at the memory operand.
pub fn bound(l: &mut Lifter, insn: &Instruction) -> Result<(), LiftError> {
    let sz = Lifter::op_size(insn, 0);
    let idx = l.read_op(insn, 0)?;
    let ea = l.ea(insn)?;
    let seg = l.seg_index(insn.memory_segment());
    let lo = l.load(seg, ea, sz, false);
    let hi_a0 = l.bin_imm(BinOp::Add, ea, sz as u64);
    let hi_a = l.bin_imm(BinOp::And, hi_a0, 0xffff_ffff);
    let hi = l.load(seg, hi_a, sz, false);
    l.call(BOUND, sz, idx, lo, hi);
    Ok(())
}
