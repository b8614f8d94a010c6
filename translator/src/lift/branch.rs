//! Near control transfer: JMP/CALL/RET, Jcc, JCXZ and LOOP. Far forms are callouts.

use super::{address_size, data::cond_of, LiftError, Lifter};
use crate::cpu::reg;
use crate::flags::Cond;
use crate::ir::{BinOp, Op};
use iced_x86::{Instruction, Mnemonic, OpKind};

pub fn branch(l: &mut Lifter, insn: &Instruction) -> Result<(), LiftError> {
    let next = insn.next_ip();
    match insn.mnemonic() {
        Mnemonic::Jmp => match insn.op0_kind() {
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => l.end(Op::Jmp {
                target: insn.near_branch_target(),
            }),
            _ => {
                let t = l.read_op(insn, 0)?;
                l.end(Op::JmpInd { t });
            }
        },
        Mnemonic::Call => {
            let sz = l.stack_op_size(insn);
            let direct = matches!(
                insn.op0_kind(),
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
            );
            let target = if direct {
                None
            } else {
                Some(l.read_op(insn, 0)?)
            };
            let ret = l.konst(next);
            let sp = l.get_sp();
            let nsp = l.push_value(sp, ret, sz);
            l.set_sp(nsp);
            match target {
                None => l.end(Op::Jmp {
                    target: insn.near_branch_target(),
                }),
                Some(t) => l.end(Op::JmpInd { t }),
            }
        }
        Mnemonic::Ret => {
            let sz = l.stack_op_size(insn);
            let sp = l.get_sp();
            let (v, mut nsp) = l.pop_value(sp, sz);
            if insn.op_count() == 1 {
                nsp = l.bin_imm(BinOp::Add, nsp, insn.immediate16() as u64);
                if l.mode.stack_bits != 64 {
                    nsp = l.bin_imm(
                        BinOp::And,
                        nsp,
                        if l.mode.stack_bits == 32 {
                            0xffff_ffff
                        } else {
                            0xffff
                        },
                    );
                }
            }
            l.set_sp(nsp);
            l.end(Op::JmpInd { t: v });
        }
        Mnemonic::Jcxz | Mnemonic::Jecxz | Mnemonic::Jrcxz => {
            let asz = address_size(insn, l.mode);
            let c = l.get_n(reg::RCX, asz);
            let zero = l.konst(0);
            let one = l.konst(1);
            let is_zero = l.select(c, zero, one);
            l.end(Op::Branch {
                c: is_zero,
                taken: insn.near_branch_target(),
                not_taken: next,
            });
        }
        Mnemonic::Loop | Mnemonic::Loope | Mnemonic::Loopne => {
            let asz = address_size(insn, l.mode);
            let c0 = l.get_n(reg::RCX, asz);
            let c1 = l.bin_imm(BinOp::Sub, c0, 1);
            let c = l.zext(c1, asz);
            l.set_n(reg::RCX, asz, c);
            let zero = l.konst(0);
            let one = l.konst(1);
            let nonzero = l.select(c, one, zero);
            let take = match insn.mnemonic() {
                Mnemonic::Loop => nonzero,
                m => {
                    let z = l.tmp();
                    let cc = if m == Mnemonic::Loope {
                        Cond::E
                    } else {
                        Cond::Ne
                    };
                    l.ops.push(Op::Cond { d: z, cc });
                    l.bin(BinOp::And, nonzero, z)
                }
            };
            l.end(Op::Branch {
                c: take,
                taken: insn.near_branch_target(),
                not_taken: next,
            });
        }
        _ => {
            let cc = cond_of(insn)?;
            let c = l.tmp();
            l.ops.push(Op::Cond { d: c, cc });
            l.end(Op::Branch {
                c,
                taken: insn.near_branch_target(),
                not_taken: next,
            });
        }
    }
    // Near branch targets outside a 16/32-bit code segment wrap (the decoder did that for us).
    Ok(())
}
