//! Integer arithmetic and logic: ADD..CMP, INC/DEC/NEG/NOT, shifts, MUL/DIV, BCD.

use super::{LiftError, Lifter};
use crate::flags::CcOp;
use crate::helpers::arith::{BCD, BOUND, DIV, MUL1, SHIFT};
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
    if let Some(count) = constant_shift_count(insn, sz) {
        return shift_by_constant(l, insn, sz, count);
    }
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

/// The masked count of SHL/SAL/SHR/SAR by an immediate (or the implicit 1), when it is nonzero
/// and below the operand width: those are lifted inline; a zero count (flags unchanged), counts
/// past a narrow operand, rotates and double shifts go through the helper.
fn constant_shift_count(insn: &Instruction, sz: u8) -> Option<u32> {
    use iced_x86::OpKind;
    if !matches!(
        insn.mnemonic(),
        Mnemonic::Shl | Mnemonic::Sal | Mnemonic::Shr | Mnemonic::Sar
    ) {
        return None;
    }
    let raw = match insn.op_count() {
        1 => 1,
        _ if insn.op_kind(1) == OpKind::Immediate8 => u32::from(insn.immediate8()),
        _ => return None,
    };
    let count = raw & if sz == 8 { 63 } else { 31 };
    (count != 0 && count < u32::from(sz) * 8).then_some(count)
}

/// SHL/SHR/SAR by a constant `count` in 1..width (SDM Vol. 2B, SAL/SAR/SHL/SHR): CF is the
/// last bit shifted out; OF (defined for a count of 1) is MSB(result) XOR CF for SHL, the
/// original MSB for SHR and 0 for SAR; the same formulas are used for larger counts, where OF
/// is undefined.
fn shift_by_constant(
    l: &mut Lifter,
    insn: &Instruction,
    sz: u8,
    count: u32,
) -> Result<(), LiftError> {
    let bits = u64::from(sz) * 8;
    let c = u64::from(count);
    let a = l.read_op(insn, 0)?;
    let (r, cf, of) = match insn.mnemonic() {
        Mnemonic::Shl | Mnemonic::Sal => {
            let out = l.bin_imm(BinOp::Shr, a, bits - c);
            let cf = l.bin_imm(BinOp::And, out, 1);
            let r = l.bin_imm(BinOp::Shl, a, c);
            let msb = l.bin_imm(BinOp::Shr, r, bits - 1);
            let msb = l.bin_imm(BinOp::And, msb, 1);
            let of = l.bin(BinOp::Xor, msb, cf);
            (r, cf, of)
        }
        Mnemonic::Shr => {
            let a = l.zext(a, sz);
            let out = l.bin_imm(BinOp::Shr, a, c - 1);
            let cf = l.bin_imm(BinOp::And, out, 1);
            let r = l.bin_imm(BinOp::Shr, a, c);
            let of = l.bin_imm(BinOp::Shr, a, bits - 1);
            (r, cf, of)
        }
        _ => {
            let a = l.sext(a, sz);
            let out = l.bin_imm(BinOp::Sar, a, c - 1);
            let cf = l.bin_imm(BinOp::And, out, 1);
            let r = l.bin_imm(BinOp::Sar, a, c);
            (r, cf, l.konst(0))
        }
    };
    l.write_op(insn, 0, r)?;
    let of = l.bin_imm(BinOp::Shl, of, 11);
    let aux = l.bin(BinOp::Or, cf, of);
    let zero = l.konst(0);
    l.flags(CcOp::Shift, sz, a, zero, r, aux);
    Ok(())
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
            // Immediates are sign-extended by the decoder to the operand size. The product is
            // exact in 64 bits below 64-bit operands; at 64 bits its high half decides.
            let (xs, ys) = (l.sext(x, sz), l.sext(y, sz));
            let p = l.bin(BinOp::Mul, xs, ys);
            let (r, overflow) = if sz < 8 {
                let r = l.zext(p, sz);
                let back = l.sext(p, sz);
                (r, l.bin(BinOp::Xor, back, p))
            } else {
                let hi = l.bin(BinOp::MulHiS, xs, ys);
                let sign = l.bin_imm(BinOp::Sar, p, 63);
                (p, l.bin(BinOp::Xor, hi, sign))
            };
            l.write_op(insn, 0, r)?;
            l.flags(CcOp::Mul, sz, xs, ys, r, overflow);
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
