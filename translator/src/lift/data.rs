//! Data movement: MOV and its extending forms, LEA, exchanges, sign extension of the
//! accumulator, XLAT, SETcc/CMOVcc and the string instructions.

use super::{LiftError, Lifter};
use crate::cpu::reg;
use crate::flags::{CcOp, Cond};
use crate::helpers::flagops::CMPXCHG_WIDE;
use crate::helpers::string::STRING;
use crate::ir::{BinOp, Op};
use iced_x86::{ConditionCode, Instruction, Mnemonic, OpKind};

pub fn data(l: &mut Lifter, insn: &Instruction) -> Result<(), LiftError> {
    match insn.mnemonic() {
        Mnemonic::Mov | Mnemonic::Movzx => {
            let v = l.read_op(insn, 1)?;
            l.write_op(insn, 0, v)
        }
        Mnemonic::Movsx | Mnemonic::Movsxd => {
            let v = l.read_op(insn, 1)?;
            let s = l.sext(v, Lifter::op_size(insn, 1));
            l.write_op(insn, 0, s)
        }
        Mnemonic::Lea => {
            let a = l.ea(insn)?;
            l.write_op(insn, 0, a)
        }
        Mnemonic::Xchg => {
            let a = l.read_op(insn, 0)?;
            let b = l.read_op(insn, 1)?;
            // Memory first: its write is the only one that can fault.
            if insn.op_kind(1) == OpKind::Memory {
                l.write_op(insn, 1, a)?;
                l.write_op(insn, 0, b)
            } else {
                l.write_op(insn, 0, b)?;
                l.write_op(insn, 1, a)
            }
        }
        Mnemonic::Xadd => {
            let sz = Lifter::op_size(insn, 0);
            let a = l.read_op(insn, 0)?;
            let b = l.read_op(insn, 1)?;
            let r = l.bin(BinOp::Add, a, b);
            // SDM Vol. 2, XADD: "SRC <- DEST; DEST <- TEMP": with the same register as both
            // operands the sum wins, so the source is written first. A memory destination is
            // written first anyway (the only write that can fault).
            if insn.op_kind(0) == OpKind::Memory {
                l.write_op(insn, 0, r)?;
                l.write_op(insn, 1, a)?;
            } else {
                l.write_op(insn, 1, a)?;
                l.write_op(insn, 0, r)?;
            }
            l.flags(CcOp::Add, sz, a, b, r, a);
            Ok(())
        }
        Mnemonic::Cmpxchg => {
            // SDM Vol. 2: a memory destination is written in both cases (with its own value
            // when the comparison fails), the accumulator only on failure. A register
            // destination is written only on success: with 32-bit operands the register that is
            // not written keeps its upper half (no zero extension), as the hardware does. With
            // the accumulator itself as the destination, success must leave the source in it,
            // so the accumulator is written first (a memory destination still goes first, being
            // the only write that can fault).
            let sz = Lifter::op_size(insn, 0);
            let dst = l.read_op(insn, 0)?;
            let src = l.read_op(insn, 1)?;
            let acc = l.get_n(reg::RAX, sz);
            let diff0 = l.bin(BinOp::Xor, acc, dst);
            let diff = l.zext(diff0, sz);
            let write_acc = |l: &mut Lifter| {
                if sz == 4 {
                    let acc64 = l.get_n(reg::RAX, 8);
                    let new_acc = l.select(diff, dst, acc64);
                    l.set_n(reg::RAX, 8, new_acc);
                } else {
                    let new_acc = l.select(diff, dst, acc);
                    l.set_n(reg::RAX, sz, new_acc);
                }
            };
            if insn.op_kind(0) == OpKind::Memory {
                let new_dst = l.select(diff, dst, src);
                l.write_op(insn, 0, new_dst)?;
                write_acc(l);
            } else {
                write_acc(l);
                let (r, rsz) = Lifter::reg_loc(insn.op_register(0))?;
                if sz == 4 {
                    let old = l.get_n(r, 8);
                    let new_dst = l.select(diff, old, src);
                    l.set_n(r, 8, new_dst);
                } else {
                    let new_dst = l.select(diff, dst, src);
                    l.set_n(r, rsz, new_dst);
                }
            }
            let r = l.bin(BinOp::Sub, acc, dst);
            l.flags(CcOp::Sub, sz, acc, dst, r, acc);
            Ok(())
        }
        Mnemonic::Cmpxchg8b | Mnemonic::Cmpxchg16b => {
            let half: u8 = if insn.mnemonic() == Mnemonic::Cmpxchg16b {
                8
            } else {
                4
            };
            let ea = l.ea(insn)?;
            let seg = l.seg_index(insn.memory_segment());
            let ea_hi0 = l.bin_imm(BinOp::Add, ea, half as u64);
            let ea_hi = if l.mode.code_bits == 64 {
                ea_hi0
            } else {
                l.bin_imm(BinOp::And, ea_hi0, 0xffff_ffff)
            };
            let lo = l.load(seg, ea, half, false);
            let hi = l.load(seg, ea_hi, half, false);
            l.store(seg, ea, lo, half, false);
            l.store(seg, ea_hi, hi, half, false);
            let ok = l.call(CMPXCHG_WIDE, half, lo, hi, ea);
            let rbx = l.get_n(reg::RBX, half);
            let rcx = l.get_n(reg::RCX, half);
            let nlo = l.select(ok, rbx, lo);
            let nhi = l.select(ok, rcx, hi);
            l.store(seg, ea, nlo, half, false);
            l.store(seg, ea_hi, nhi, half, false);
            Ok(())
        }
        Mnemonic::Cbw | Mnemonic::Cwde | Mnemonic::Cdqe => {
            let sz = Lifter::op_size_of_acc(insn);
            let v = l.get_n(reg::RAX, sz / 2);
            let s = l.sext(v, sz / 2);
            l.set_n(reg::RAX, sz, s);
            Ok(())
        }
        Mnemonic::Cwd | Mnemonic::Cdq | Mnemonic::Cqo => {
            let sz = Lifter::op_size_of_acc(insn);
            let v = l.get_n(reg::RAX, sz);
            let s = l.sext(v, sz);
            let hi = l.bin_imm(BinOp::Sar, s, 63);
            l.set_n(reg::RDX, sz, hi);
            Ok(())
        }
        Mnemonic::Xlatb => {
            let asz = super::address_size(insn, l.mode);
            let rbx = l.get_n(reg::RBX, asz);
            let al = l.get_n(reg::RAX, 1);
            let a0 = l.bin(BinOp::Add, rbx, al);
            let a = l.zext(a0, asz);
            let seg = l.seg_index(insn.memory_segment());
            let v = l.load(seg, a, 1, false);
            l.set_n(reg::RAX, 1, v);
            Ok(())
        }
        _ => Err("data movement form not lifted"),
    }
}

impl Lifter {
    /// Operand size of CBW/CWDE/CDQE/CWD/CDQ/CQO from the mnemonic.
    fn op_size_of_acc(insn: &Instruction) -> u8 {
        match insn.mnemonic() {
            Mnemonic::Cbw | Mnemonic::Cwd => 2,
            Mnemonic::Cwde | Mnemonic::Cdq => 4,
            _ => 8,
        }
    }
}

pub fn cond_of(insn: &Instruction) -> Result<Cond, LiftError> {
    match insn.condition_code() {
        ConditionCode::None => Err("instruction has no condition"),
        cc => Ok(Cond::from_index(cc as u8 - 1)),
    }
}

pub fn conditional(l: &mut Lifter, insn: &Instruction) -> Result<(), LiftError> {
    let cc = cond_of(insn)?;
    let c = l.tmp();
    l.ops.push(Op::Cond { d: c, cc });
    if insn.op_count() == 1 {
        // SETcc
        return l.write_op(insn, 0, c);
    }
    // CMOVcc: the source is read (and may fault) whatever the condition; a 32-bit destination
    // is zero-extended even when the move does not happen (SDM Vol. 2, CMOVcc).
    let src = l.read_op(insn, 1)?;
    let dst = l.read_op(insn, 0)?;
    let v = l.select(c, src, dst);
    l.write_op(insn, 0, v)
}

/// String instructions go through one helper; it ends the block with a branch back to itself
/// while a REP has iterations left.
pub fn string(l: &mut Lifter, insn: &Instruction) -> Result<(), LiftError> {
    let sz = match insn.mnemonic() {
        Mnemonic::Movsb | Mnemonic::Stosb | Mnemonic::Lodsb | Mnemonic::Cmpsb | Mnemonic::Scasb => {
            1
        }
        Mnemonic::Movsw | Mnemonic::Stosw | Mnemonic::Lodsw | Mnemonic::Cmpsw | Mnemonic::Scasw => {
            2
        }
        Mnemonic::Movsd | Mnemonic::Stosd | Mnemonic::Lodsd | Mnemonic::Cmpsd | Mnemonic::Scasd => {
            4
        }
        _ => 8,
    };
    let z = l.konst(0);
    let more = l.call(STRING, sz, z, z, z);
    if insn.has_rep_prefix() || insn.has_repne_prefix() {
        l.end(Op::Branch {
            c: more,
            taken: insn.ip(),
            not_taken: insn.next_ip(),
        });
    }
    Ok(())
}
