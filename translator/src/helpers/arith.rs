//! Shifts, rotates, multiplication, division, bit scans and BCD adjustment
//! (SDM Vol. 2, the instruction pages; flags per Vol. 1, Appendix A).

use super::{arith, set_arith};
use crate::cpu::{reg, rflags::*, CpuState};
use crate::env::Env;
use crate::exception::Exception;
use crate::flags::{size_mask, szp};
use crate::interp::{get_reg, set_reg};
use crate::ir::{Helper, HelperArgs};
use iced_x86::Mnemonic;

fn sign(v: u64, sz: u8) -> bool {
    v >> (sz as u32 * 8 - 1) & 1 != 0
}

/// SHL/SHR/SAR/ROL/ROR/RCL/RCR/SHLD/SHRD: `a` value, `b` count, `c` the SHLD/SHRD source.
/// A masked count of zero changes nothing, flags included.
fn shift(cpu: &mut CpuState, _env: &mut dyn Env, x: &HelperArgs) -> Result<u64, Exception> {
    let sz = x.sz;
    let bits = sz as u32 * 8;
    let m = size_mask(sz as u32);
    let a = x.a & m;
    let count = (x.b as u32) & if sz == 8 { 0x3f } else { 0x1f };
    if count == 0 {
        return Ok(a);
    }
    // Rotates keep SF/ZF/AF/PF and RCL/RCR read CF: only they need the current flags, which
    // are lazy and cost a full evaluation.
    let mn = x.insn.mnemonic();
    let old = if matches!(
        mn,
        Mnemonic::Rol | Mnemonic::Ror | Mnemonic::Rcl | Mnemonic::Rcr
    ) {
        arith(cpu)
    } else {
        0
    };
    let cf_in = old & CF;
    let (r, mut f) = match mn {
        Mnemonic::Shl | Mnemonic::Sal => {
            let r = if count >= bits { 0 } else { (a << count) & m };
            let cf = if count > bits {
                0
            } else {
                (a >> (bits - count)) & 1
            };
            let of = (sign(r, sz) as u64) ^ cf;
            (r, szp(r, sz as u32) | cf * CF | of * OF)
        }
        Mnemonic::Shr => {
            let r = if count >= bits { 0 } else { a >> count };
            let cf = if count > bits {
                0
            } else {
                (a >> (count - 1)) & 1
            };
            let of = sign(a, sz) as u64;
            (r, szp(r, sz as u32) | cf * CF | of * OF)
        }
        Mnemonic::Sar => {
            let sa = ((a << (64 - bits)) as i64) >> (64 - bits);
            let c = count.min(bits - 1);
            let r = ((sa >> c) as u64) & m;
            let cf = ((sa >> (count.min(bits) - 1)) as u64) & 1;
            (r, szp(r, sz as u32) | cf * CF)
        }
        Mnemonic::Rol => {
            let c = count % bits;
            let r = if c == 0 {
                a
            } else {
                ((a << c) | (a >> (bits - c))) & m
            };
            let cf = r & 1;
            let of = (sign(r, sz) as u64) ^ cf;
            (r, (old & !(CF | OF)) | cf * CF | of * OF)
        }
        Mnemonic::Ror => {
            let c = count % bits;
            let r = if c == 0 {
                a
            } else {
                ((a >> c) | (a << (bits - c))) & m
            };
            let msb = sign(r, sz) as u64;
            let of = msb ^ ((r >> (bits - 2)) & 1);
            (r, (old & !(CF | OF)) | msb * CF | of * OF)
        }
        Mnemonic::Rcl | Mnemonic::Rcr => {
            let c = match sz {
                1 => count % 9,
                2 => count % 17,
                _ => count,
            };
            let mut r = a;
            let mut cf = cf_in;
            for _ in 0..c {
                if x.insn.mnemonic() == Mnemonic::Rcl {
                    let out = (r >> (bits - 1)) & 1;
                    r = ((r << 1) | cf) & m;
                    cf = out;
                } else {
                    let out = r & 1;
                    r = (r >> 1) | (cf << (bits - 1));
                    cf = out;
                }
            }
            let of = if x.insn.mnemonic() == Mnemonic::Rcl {
                (sign(r, sz) as u64) ^ cf
            } else {
                (sign(r, sz) as u64) ^ ((r >> (bits - 2)) & 1)
            };
            (r, (old & !(CF | OF)) | cf * CF | of * OF)
        }
        Mnemonic::Shld | Mnemonic::Shrd => {
            let src = x.c & m;
            // Work on a 128-bit concatenation; counts above the operand size leave an undefined
            // result in 16-bit forms (we shift the concatenation, as most hardware does).
            let (r, cf) = if x.insn.mnemonic() == Mnemonic::Shld {
                let wide = ((a as u128) << bits) | src as u128;
                let sh = wide << count;
                (
                    ((sh >> bits) as u64) & m,
                    ((wide >> (2 * bits - count)) & 1) as u64,
                )
            } else {
                let wide = ((src as u128) << bits) | a as u128;
                let sh = wide >> count;
                ((sh as u64) & m, ((wide >> (count - 1)) & 1) as u64)
            };
            let of = (sign(r, sz) ^ sign(a, sz)) as u64;
            (r, szp(r, sz as u32) | cf * CF | of * OF)
        }
        _ => return Err(Exception::ud()),
    };
    f &= ARITH;
    set_arith(cpu, f);
    Ok(r)
}
pub const SHIFT: Helper = Helper {
    name: "shift",
    f: shift,
};

/// One-operand MUL/IMUL: RDX:RAX (or AX) = RAX * a. CF=OF when the high half is significant.
fn mul1(cpu: &mut CpuState, _env: &mut dyn Env, x: &HelperArgs) -> Result<u64, Exception> {
    let sz = x.sz;
    let bits = sz as u32 * 8;
    let signed = x.insn.mnemonic() == Mnemonic::Imul;
    let acc = get_reg(cpu, reg::RAX, sz);
    let (lo, hi, overflow) = if signed {
        let p = sext128(acc, sz) * sext128(x.a, sz);
        let lo = (p as u64) & size_mask(sz as u32);
        let hi = ((p >> bits) as u64) & size_mask(sz as u32);
        (lo, hi, p != sext128(lo, sz))
    } else {
        let p = (acc as u128) * (x.a as u128 & size_mask(sz as u32) as u128);
        let lo = (p as u64) & size_mask(sz as u32);
        let hi = ((p >> bits) as u64) & size_mask(sz as u32);
        (lo, hi, hi != 0)
    };
    if sz == 1 {
        set_reg(cpu, reg::RAX, 2, lo | (hi << 8));
    } else {
        set_reg(cpu, reg::RAX, sz, lo);
        set_reg(cpu, reg::RDX, sz, hi);
    }
    set_arith(cpu, szp(lo, sz as u32) | if overflow { CF | OF } else { 0 });
    Ok(0)
}
pub const MUL1: Helper = Helper {
    name: "mul1",
    f: mul1,
};

fn sext128(v: u64, sz: u8) -> i128 {
    let bits = sz as u32 * 8;
    (((v as u128) << (128 - bits)) as i128) >> (128 - bits)
}

/// DIV/IDIV: RDX:RAX (or AX) / a; #DE on a zero divisor or a quotient that does not fit.
/// Flags are undefined; they are left unchanged.
fn div(cpu: &mut CpuState, _env: &mut dyn Env, x: &HelperArgs) -> Result<u64, Exception> {
    let sz = x.sz;
    let bits = sz as u32 * 8;
    let m = size_mask(sz as u32);
    let d = x.a & m;
    if d == 0 {
        return Err(Exception::de());
    }
    let (lo, hi) = if sz == 1 {
        let ax = get_reg(cpu, reg::RAX, 2);
        (ax & 0xff, ax >> 8)
    } else {
        (get_reg(cpu, reg::RAX, sz), get_reg(cpu, reg::RDX, sz))
    };
    let n = ((hi as u128) << bits) | lo as u128;
    let (q, r) = if x.insn.mnemonic() == Mnemonic::Idiv {
        let sn = ((n << (128 - 2 * bits)) as i128) >> (128 - 2 * bits);
        let sd = sext128(d, sz);
        if sd == -1 && sn == i128::MIN {
            return Err(Exception::de());
        }
        let q = sn / sd;
        let r = sn % sd;
        let max = (1i128 << (bits - 1)) - 1;
        if q > max || q < -max - 1 {
            return Err(Exception::de());
        }
        ((q as u64) & m, (r as u64) & m)
    } else {
        let q = n / d as u128;
        if q > m as u128 {
            return Err(Exception::de());
        }
        (q as u64, (n % d as u128) as u64)
    };
    if sz == 1 {
        set_reg(cpu, reg::RAX, 2, q | (r << 8));
    } else {
        set_reg(cpu, reg::RAX, sz, q);
        set_reg(cpu, reg::RDX, sz, r);
    }
    Ok(0)
}
pub const DIV: Helper = Helper {
    name: "div",
    f: div,
};

/// BSF/BSR/TZCNT/LZCNT/POPCNT/BSWAP: `a` source, `b` the destination's old value.
fn scan(cpu: &mut CpuState, _env: &mut dyn Env, x: &HelperArgs) -> Result<u64, Exception> {
    let sz = x.sz;
    let bits = sz as u32 * 8;
    let a = x.a & size_mask(sz as u32);
    let old = arith(cpu);
    Ok(match x.insn.mnemonic() {
        Mnemonic::Bsf | Mnemonic::Bsr => {
            if a == 0 {
                // Destination unchanged (AMD documents it; Intel hardware does it).
                set_arith(cpu, (old & !ZF) | ZF);
                return Ok(x.b);
            }
            let r = if x.insn.mnemonic() == Mnemonic::Bsf {
                a.trailing_zeros()
            } else {
                63 - a.leading_zeros()
            };
            set_arith(cpu, old & !ZF);
            r as u64
        }
        Mnemonic::Tzcnt | Mnemonic::Lzcnt => {
            let r = if x.insn.mnemonic() == Mnemonic::Tzcnt {
                if a == 0 {
                    bits
                } else {
                    a.trailing_zeros()
                }
            } else {
                a.leading_zeros() - (64 - bits)
            };
            let f = (if a == 0 { CF } else { 0 }) | (if r == 0 { ZF } else { 0 });
            set_arith(cpu, (old & !(CF | ZF)) | f);
            r as u64
        }
        Mnemonic::Popcnt => {
            let r = a.count_ones() as u64;
            set_arith(cpu, if a == 0 { ZF } else { 0 });
            r
        }
        Mnemonic::Bswap => match sz {
            8 => a.swap_bytes(),
            4 => (a as u32).swap_bytes() as u64,
            // BSWAP of a 16-bit register is undefined; hardware clears it.
            _ => 0,
        },
        _ => return Err(Exception::ud()),
    })
}
pub const SCAN: Helper = Helper {
    name: "scan",
    f: scan,
};

/// DAA/DAS/AAA/AAS/AAM/AAD/SALC (legacy 32-bit BCD arithmetic, SDM Vol. 2).
fn bcd(cpu: &mut CpuState, _env: &mut dyn Env, x: &HelperArgs) -> Result<u64, Exception> {
    let f = arith(cpu);
    let ax = get_reg(cpu, reg::RAX, 2);
    let (al, ah) = (ax & 0xff, ax >> 8);
    let cf = f & CF != 0;
    let af = f & AF != 0;
    match x.insn.mnemonic() {
        Mnemonic::Daa | Mnemonic::Das => {
            let daa = x.insn.mnemonic() == Mnemonic::Daa;
            let mut nal = al;
            let mut ncf = false;
            let mut naf = false;
            if (al & 0xf) > 9 || af {
                nal = if daa {
                    nal.wrapping_add(6)
                } else {
                    nal.wrapping_sub(6)
                } & 0xff;
                ncf = cf || if daa { al > 0xf9 } else { al < 6 };
                naf = true;
            }
            if al > 0x99 || cf {
                nal = if daa {
                    nal.wrapping_add(0x60)
                } else {
                    nal.wrapping_sub(0x60)
                } & 0xff;
                ncf = true;
            }
            set_reg(cpu, reg::RAX, 1, nal);
            set_arith(
                cpu,
                szp(nal, 1) | if ncf { CF } else { 0 } | if naf { AF } else { 0 },
            );
        }
        Mnemonic::Aaa | Mnemonic::Aas => {
            // AX + 106H / AX - 6 then AH - 1: the carry or borrow out of AL reaches AH.
            let (nax, adj) = if (al & 0xf) > 9 || af {
                let v = if x.insn.mnemonic() == Mnemonic::Aaa {
                    ax.wrapping_add(0x106)
                } else {
                    ax.wrapping_sub(6).wrapping_sub(0x100)
                };
                (v & 0xffff, true)
            } else {
                (ax, false)
            };
            set_reg(cpu, reg::RAX, 2, nax & 0xff0f);
            set_arith(cpu, (f & !(CF | AF)) | if adj { CF | AF } else { 0 });
        }
        Mnemonic::Aam => {
            let base = x.insn.immediate8() as u64;
            if base == 0 {
                return Err(Exception::de());
            }
            let nal = al % base;
            set_reg(cpu, reg::RAX, 2, ((al / base) << 8) | nal);
            set_arith(cpu, szp(nal, 1));
        }
        Mnemonic::Aad => {
            let base = x.insn.immediate8() as u64;
            let nal = (al + ah * base) & 0xff;
            set_reg(cpu, reg::RAX, 2, nal);
            set_arith(cpu, szp(nal, 1));
        }
        Mnemonic::Salc => set_reg(cpu, reg::RAX, 1, if cf { 0xff } else { 0 }),
        _ => return Err(Exception::ud()),
    }
    Ok(0)
}
pub const BCD: Helper = Helper {
    name: "bcd",
    f: bcd,
};

/// BOUND: #BR when the signed index `a` lies outside [b, c] (SDM Vol. 2, BOUND).
fn bound(_cpu: &mut CpuState, _env: &mut dyn Env, x: &HelperArgs) -> Result<u64, Exception> {
    let s = |v: u64| sext128(v, x.sz);
    if s(x.a) < s(x.b) || s(x.a) > s(x.c) {
        return Err(Exception::new(crate::exception::vector::BR));
    }
    Ok(0)
}
pub const BOUND: Helper = Helper {
    name: "bound",
    f: bound,
};
