//! PUSH/POP (general and immediate forms), PUSHA/POPA, ENTER/LEAVE. Segment-register forms
//! are callouts (classify.rs).

use super::{LiftError, Lifter};
use crate::cpu::reg;
use iced_x86::{Instruction, Mnemonic, OpKind};

pub fn stack(l: &mut Lifter, insn: &Instruction) -> Result<(), LiftError> {
    match insn.mnemonic() {
        Mnemonic::Push => {
            let sz = l.stack_op_size(insn);
            let v = l.read_op(insn, 0)?;
            let sp = l.get_sp();
            let nsp = l.push_value(sp, v, sz);
            l.set_sp(nsp);
        }
        Mnemonic::Pop => {
            let sz = l.stack_op_size(insn);
            let sp = l.get_sp();
            let (v, nsp) = l.pop_value(sp, sz);
            if insn.op_kind(0) == OpKind::Memory {
                // The destination address is computed with the incremented stack pointer
                // (SDM Vol. 2, POP): with RSP as the base, that is the decoded address plus
                // the operand size.
                if insn.memory_base().full_register() == iced_x86::Register::RSP {
                    let ea = l.ea(insn)?;
                    let mut a = l.bin_imm(crate::ir::BinOp::Add, ea, sz as u64);
                    if l.mode.code_bits != 64 {
                        a = l.bin_imm(crate::ir::BinOp::And, a, 0xffff_ffff);
                    }
                    let seg = l.seg_index(insn.memory_segment());
                    l.store(seg, a, v, sz, false);
                } else {
                    l.write_op(insn, 0, v)?;
                }
                l.set_sp(nsp);
            } else {
                l.set_sp(nsp);
                l.write_op(insn, 0, v)?;
            }
        }
        Mnemonic::Pushad | Mnemonic::Pusha => {
            let sz = if insn.mnemonic() == Mnemonic::Pushad {
                4
            } else {
                2
            };
            let sp0 = l.get_sp();
            let mut sp = sp0;
            for r in 0..8u8 {
                let v = if r == reg::RSP { sp0 } else { l.get_n(r, sz) };
                sp = l.push_value(sp, v, sz);
            }
            l.set_sp(sp);
        }
        Mnemonic::Popad | Mnemonic::Popa => {
            let sz = if insn.mnemonic() == Mnemonic::Popad {
                4
            } else {
                2
            };
            let mut sp = l.get_sp();
            let mut vals = [0u8; 8];
            for r in (0..8u8).rev() {
                let (v, nsp) = l.pop_value(sp, sz);
                vals[r as usize] = v;
                sp = nsp;
            }
            for r in 0..8u8 {
                if r != reg::RSP {
                    l.set_n(r, sz, vals[r as usize]);
                }
            }
            l.set_sp(sp);
        }
        Mnemonic::Enter => {
            let sz = l.stack_op_size(insn);
            let alloc = l.konst(insn.immediate16() as u64);
            let level = l.konst(insn.immediate8_2nd() as u64);
            l.call(crate::helpers::frame::ENTER, sz, alloc, level, level);
        }
        Mnemonic::Leave => {
            let sz = l.stack_op_size(insn);
            let ssz = l.stack_bytes();
            let bp = l.get_n(reg::RBP, ssz);
            let (v, nsp) = l.pop_value(bp, sz);
            l.set_sp(nsp);
            l.set_n(reg::RBP, sz, v);
        }
        _ => return Err("stack instruction form not lifted"),
    }
    Ok(())
}
