//! PUSH/POP (general and immediate forms), PUSHA/POPA, ENTER/LEAVE. Segment-register forms
//! are callouts (classify.rs).

use super::{LiftError, Lifter};
use crate::cpu::reg;
use crate::ir::BinOp;
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
                // (SDM Vol. 2, POP); only matters when RSP is the base register.
                if insn.memory_base().full_register() == iced_x86::Register::RSP {
                    return Err("pop to an RSP-based memory operand");
                }
                l.write_op(insn, 0, v)?;
                l.set_sp(nsp);
            } else {
                l.set_sp(nsp);
                l.write_op(insn, 0, v)?;
            }
        }
        Mnemonic::Pushad | Mnemonic::Pusha => {
            let sz = if insn.mnemonic() == Mnemonic::Pushad { 4 } else { 2 };
            let sp0 = l.get_sp();
            let mut sp = sp0;
            for r in 0..8u8 {
                let v = if r == reg::RSP { sp0 } else { l.get_n(r, sz) };
                sp = l.push_value(sp, v, sz);
            }
            l.set_sp(sp);
        }
        Mnemonic::Popad | Mnemonic::Popa => {
            let sz = if insn.mnemonic() == Mnemonic::Popad { 4 } else { 2 };
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
            if insn.immediate8_2nd() & 31 != 0 {
                return Err("ENTER with a nesting level");
            }
            let sz = l.stack_op_size(insn);
            let rbp = l.get_n(reg::RBP, sz);
            let sp = l.get_sp();
            let frame = l.push_value(sp, rbp, sz);
            let alloc = l.konst(insn.immediate16() as u64);
            let mut nsp = l.bin(BinOp::Sub, frame, alloc);
            if l.mode.stack_bits != 64 {
                nsp = l.bin_imm(BinOp::And, nsp, if l.mode.stack_bits == 32 { 0xffff_ffff } else { 0xffff });
            }
            l.set_n(reg::RBP, sz, frame);
            l.set_sp(nsp);
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
