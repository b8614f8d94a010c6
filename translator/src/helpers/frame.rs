//! ENTER with a nesting level (SDM Vol. 2, ENTER "Operation"): copies the enclosing frame
//! pointers. Registers are committed only after every memory access succeeded.

use crate::cpu::{reg, CpuState, Seg};
use crate::env::Env;
use crate::exception::{vector, Exception};
use crate::interp::{get_reg, read_mem, set_reg, write_mem};
use crate::ir::{Helper, HelperArgs};

/// `a` = bytes to allocate, `b` = nesting level.
fn enter(cpu: &mut CpuState, env: &mut dyn Env, x: &HelperArgs) -> Result<u64, Exception> {
    let sz = x.sz;
    let mode = cpu.mode();
    let (mask, ssz) = match mode.stack_bits {
        64 => (u64::MAX, 8),
        32 => (0xffff_ffff, 4),
        _ => (0xffff, 2),
    };
    let base = if mode.code_bits == 64 {
        0
    } else {
        cpu.seg[Seg::Ss as usize].base
    };
    let lin = |off: u64| {
        let l = base.wrapping_add(off & mask);
        if mode.code_bits == 64 {
            l
        } else {
            l & 0xffff_ffff
        }
    };
    let user = mode.cpl == 3;
    let ss_fault = |e: Exception| {
        if e.vector == vector::GP {
            Exception::ss(0)
        } else {
            e
        }
    };
    let level = x.b & 31;
    let mut sp = get_reg(cpu, reg::RSP, ssz);
    let mut bp = get_reg(cpu, reg::RBP, ssz);
    sp = sp.wrapping_sub(sz as u64) & mask;
    write_mem(cpu, env, lin(sp), sz, get_reg(cpu, reg::RBP, sz), user).map_err(ss_fault)?;
    let frame = sp;
    if level > 0 {
        for _ in 1..level {
            bp = bp.wrapping_sub(sz as u64) & mask;
            let v = read_mem(cpu, env, lin(bp), sz, user).map_err(ss_fault)?;
            sp = sp.wrapping_sub(sz as u64) & mask;
            write_mem(cpu, env, lin(sp), sz, v, user).map_err(ss_fault)?;
        }
        sp = sp.wrapping_sub(sz as u64) & mask;
        write_mem(cpu, env, lin(sp), sz, frame, user).map_err(ss_fault)?;
    }
    sp = sp.wrapping_sub(x.a) & mask;
    set_reg(cpu, reg::RBP, sz, frame);
    set_reg(cpu, reg::RSP, ssz, sp);
    Ok(0)
}
pub const ENTER: Helper = Helper {
    name: "enter",
    f: enter,
};
