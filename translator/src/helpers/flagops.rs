//! Flag manipulation and the wide compare-exchanges.

use super::{arith, set_arith};
use crate::cpu::{reg, rflags::*, CpuState};
use crate::env::Env;
use crate::exception::Exception;
use crate::interp::{get_reg, set_reg};
use crate::ir::{Helper, HelperArgs};
use iced_x86::Mnemonic;

/// BT/BTS/BTR/BTC: CF = `a`; ZF is preserved, the other flags are undefined (kept).
fn set_cf(cpu: &mut CpuState, _env: &mut dyn Env, x: &HelperArgs) -> Result<u64, Exception> {
    let f = arith(cpu);
    set_arith(cpu, (f & !CF) | (x.a & 1));
    Ok(0)
}
pub const SET_CF: Helper = Helper {
    name: "set_cf",
    f: set_cf,
};

/// CLC/STC/CMC/LAHF/SAHF.
fn flag_op(cpu: &mut CpuState, _env: &mut dyn Env, x: &HelperArgs) -> Result<u64, Exception> {
    let f = arith(cpu);
    match x.insn.mnemonic() {
        Mnemonic::Clc => set_arith(cpu, f & !CF),
        Mnemonic::Stc => set_arith(cpu, f | CF),
        Mnemonic::Cmc => set_arith(cpu, f ^ CF),
        Mnemonic::Lahf => {
            let ah = (f & (SF | ZF | AF | PF | CF)) | FIXED1;
            set_reg(cpu, crate::ir::REG_AH, 1, ah);
        }
        Mnemonic::Sahf => {
            let ah = get_reg(cpu, crate::ir::REG_AH, 1);
            set_arith(cpu, (f & OF) | (ah & (SF | ZF | AF | PF | CF)));
        }
        _ => return Err(Exception::ud()),
    }
    Ok(0)
}
pub const FLAG_OP: Helper = Helper {
    name: "flag_op",
    f: flag_op,
};

/// CMPXCHG8B/16B: `a` = low half of m64/m128, `b` = high half; returns 1 when the
/// comparison succeeded (the lifter then stores RCX:RBX), otherwise loads RDX:RAX.
/// The 16-byte form needs a 16-byte aligned operand (#GP(0) otherwise).
fn cmpxchg_wide(cpu: &mut CpuState, _env: &mut dyn Env, x: &HelperArgs) -> Result<u64, Exception> {
    let half = if x.insn.mnemonic() == Mnemonic::Cmpxchg16b {
        8
    } else {
        4
    };
    if half == 8 && x.c & 15 != 0 {
        return Err(Exception::gp(0));
    }
    let f = arith(cpu);
    let eax = get_reg(cpu, reg::RAX, half);
    let edx = get_reg(cpu, reg::RDX, half);
    if eax == x.a && edx == x.b {
        set_arith(cpu, f | ZF);
        Ok(1)
    } else {
        set_reg(cpu, reg::RAX, half, x.a);
        set_reg(cpu, reg::RDX, half, x.b);
        set_arith(cpu, f & !ZF);
        Ok(0)
    }
}
pub const CMPXCHG_WIDE: Helper = Helper {
    name: "cmpxchg_wide",
    f: cmpxchg_wide,
};

/// ARPL: `a` destination selector, `b` source selector (SDM Vol. 2, ARPL).
fn arpl(cpu: &mut CpuState, _env: &mut dyn Env, x: &HelperArgs) -> Result<u64, Exception> {
    let f = arith(cpu);
    if x.a & 3 < x.b & 3 {
        set_arith(cpu, f | ZF);
        Ok((x.a & !3) | (x.b & 3))
    } else {
        set_arith(cpu, f & !ZF);
        Ok(x.a)
    }
}
pub const ARPL: Helper = Helper {
    name: "arpl",
    f: arpl,
};
