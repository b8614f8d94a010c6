//! Lazy arithmetic flags, as QEMU's CC_OP: an ALU instruction records its operation, operand
//! size, operands and result; OF/SF/ZF/AF/PF/CF are computed only when an instruction or a
//! block exit needs them (SDM Vol. 1, 3.4.3.1 and Appendix A for which instruction sets what).

use crate::cpu::rflags::{AF, CF, OF, PF, SF, ZF};

/// The operation whose flags are pending.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum CcOp {
    /// Flags are materialised: `src1` holds them.
    Eflags = 0,
    Add = 1,
    /// `aux` = carry in.
    Adc = 2,
    Sub = 3,
    /// `aux` = borrow in.
    Sbb = 4,
    /// AND/OR/XOR/TEST: CF=OF=0, AF=0 (undefined in the SDM; both vendors clear it).
    Logic = 5,
    /// `aux` = CF before the instruction (INC leaves CF alone).
    Inc = 6,
    /// `aux` = CF before the instruction (DEC leaves CF alone).
    Dec = 7,
    /// IMUL with a truncated result: CF = OF = (`aux` != 0), i.e. the signed product did not
    /// fit; SF, ZF and PF follow the result and AF is 0 (all four are undefined in the SDM).
    Mul = 8,
    /// SHL/SHR/SAR by a constant count: `aux` holds CF and OF at their RFLAGS positions;
    /// SF, ZF and PF follow the result and AF is 0 (undefined in the SDM).
    Shift = 9,
}

impl CcOp {
    pub fn from_u32(v: u32) -> CcOp {
        match v {
            1 => CcOp::Add,
            2 => CcOp::Adc,
            3 => CcOp::Sub,
            4 => CcOp::Sbb,
            5 => CcOp::Logic,
            6 => CcOp::Inc,
            7 => CcOp::Dec,
            8 => CcOp::Mul,
            9 => CcOp::Shift,
            _ => CcOp::Eflags,
        }
    }
}

/// The pending flag computation; part of `CpuState`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct LazyFlags {
    pub op: u32,
    /// Operand size in bytes (1, 2, 4, 8).
    pub size: u32,
    pub src1: u64,
    pub src2: u64,
    pub res: u64,
    pub aux: u64,
}

#[inline]
pub fn size_mask(size: u32) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

#[inline]
fn sign_bit(size: u32) -> u64 {
    1u64 << (size * 8 - 1)
}

/// PF: set when the low byte of the result has an even number of one bits.
#[inline]
pub fn parity(res: u64) -> u64 {
    if (res as u8).count_ones() % 2 == 0 {
        PF
    } else {
        0
    }
}

/// ZF, SF and PF of a result of `size` bytes.
#[inline]
pub fn szp(res: u64, size: u32) -> u64 {
    let r = res & size_mask(size);
    let mut f = parity(r);
    if r == 0 {
        f |= ZF;
    }
    if r & sign_bit(size) != 0 {
        f |= SF;
    }
    f
}

/// The six arithmetic flags of a pending computation.
pub fn arith_flags(cc: &LazyFlags) -> u64 {
    let op = CcOp::from_u32(cc.op);
    if op == CcOp::Eflags {
        return cc.src1 & (CF | PF | AF | ZF | SF | OF);
    }
    let size = cc.size;
    let m = size_mask(size);
    let sb = sign_bit(size);
    let (a, b, r) = (cc.src1 & m, cc.src2 & m, cc.res & m);
    let mut f = szp(r, size);
    let af = (a ^ b ^ r) & 0x10;
    match op {
        CcOp::Add | CcOp::Adc => {
            let carry = r < a || (op == CcOp::Adc && cc.aux != 0 && r == a);
            if carry {
                f |= CF;
            }
            if (a ^ r) & (b ^ r) & sb != 0 {
                f |= OF;
            }
            f |= af;
        }
        CcOp::Sub | CcOp::Sbb => {
            let borrow = a < b || (op == CcOp::Sbb && cc.aux != 0 && a == b);
            if borrow {
                f |= CF;
            }
            if (a ^ b) & (a ^ r) & sb != 0 {
                f |= OF;
            }
            f |= af;
        }
        CcOp::Logic => {}
        CcOp::Inc => {
            f |= cc.aux & CF;
            if r == sb {
                f |= OF;
            }
            f |= (a ^ 1 ^ r) & 0x10;
        }
        CcOp::Dec => {
            f |= cc.aux & CF;
            if a == sb {
                f |= OF;
            }
            f |= (a ^ 1 ^ r) & 0x10;
        }
        CcOp::Mul => {
            if cc.aux != 0 {
                f |= CF | OF;
            }
        }
        CcOp::Shift => f |= cc.aux & (CF | OF),
        CcOp::Eflags => unreachable!("handled above"),
    }
    f
}

/// Just CF, cheaper than the whole set for ADC/SBB/INC/DEC chains.
#[inline]
pub fn carry_flag(cc: &LazyFlags) -> u64 {
    match CcOp::from_u32(cc.op) {
        CcOp::Eflags => cc.src1 & CF,
        CcOp::Logic => 0,
        CcOp::Inc | CcOp::Dec | CcOp::Shift => cc.aux & CF,
        CcOp::Add => ((cc.res & size_mask(cc.size)) < (cc.src1 & size_mask(cc.size))) as u64,
        CcOp::Sub => ((cc.src1 & size_mask(cc.size)) < (cc.src2 & size_mask(cc.size))) as u64,
        _ => arith_flags(cc) & CF,
    }
}

/// The 16 condition codes in their encoding order (SDM Vol. 1, Appendix B).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cond {
    O = 0,
    No,
    B,
    Ae,
    E,
    Ne,
    Be,
    A,
    S,
    Ns,
    P,
    Np,
    L,
    Ge,
    Le,
    G,
}

impl Cond {
    pub fn from_index(i: u8) -> Cond {
        use Cond::*;
        [O, No, B, Ae, E, Ne, Be, A, S, Ns, P, Np, L, Ge, Le, G][(i & 15) as usize]
    }
}

/// Evaluate a condition against materialised flags.
#[inline]
pub fn eval_cond(cond: Cond, f: u64) -> bool {
    let of = f & OF != 0;
    let sf = f & SF != 0;
    let zf = f & ZF != 0;
    let cf = f & CF != 0;
    let pf = f & PF != 0;
    let base = match (cond as u8) >> 1 {
        0 => of,
        1 => cf,
        2 => zf,
        3 => cf || zf,
        4 => sf,
        5 => pf,
        6 => sf != of,
        _ => zf || (sf != of),
    };
    base ^ ((cond as u8) & 1 != 0)
}

/// Evaluate a condition straight from the lazy record: the common compare-and-branch cases
/// skip materialising all six flags.
#[inline]
pub fn eval_cond_lazy(cond: Cond, cc: &LazyFlags) -> bool {
    if cc.op == CcOp::Sub as u32 {
        let m = size_mask(cc.size);
        let (a, b) = (cc.src1 & m, cc.src2 & m);
        let shift = 64 - cc.size * 8;
        let (sa, sb) = (((a << shift) as i64), ((b << shift) as i64));
        let r = match cond {
            Cond::E | Cond::Ne => a == b,
            Cond::B | Cond::Ae => a < b,
            Cond::Be | Cond::A => a <= b,
            Cond::L | Cond::Ge => sa < sb,
            Cond::Le | Cond::G => sa <= sb,
            _ => return eval_cond(cond, arith_flags(cc)),
        };
        return r ^ ((cond as u8) & 1 != 0);
    }
    eval_cond(cond, arith_flags(cc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(op: CcOp, size: u32, a: u64, b: u64, r: u64, aux: u64) -> LazyFlags {
        LazyFlags {
            op: op as u32,
            size,
            src1: a,
            src2: b,
            res: r,
            aux,
        }
    }

    #[test]
    fn add_overflow_and_carry() {
        let f = arith_flags(&cc(CcOp::Add, 1, 0x7f, 1, 0x80, 0));
        assert_eq!(f & (OF | SF | ZF | CF | AF), OF | SF | AF);
        let f = arith_flags(&cc(CcOp::Add, 4, 0xffff_ffff, 1, 0, 0));
        assert_eq!(f & (OF | SF | ZF | CF), ZF | CF);
    }

    #[test]
    fn lazy_compare_matches_materialised() {
        for &(a, b) in &[
            (0u64, 0u64),
            (1, 2),
            (2, 1),
            (0x80, 0x7f),
            (0x7f, 0x80),
            (0xff, 0),
        ] {
            let c = cc(CcOp::Sub, 1, a, b, a.wrapping_sub(b) & 0xff, 0);
            for i in 0..16 {
                let cond = Cond::from_index(i);
                assert_eq!(
                    eval_cond_lazy(cond, &c),
                    eval_cond(cond, arith_flags(&c)),
                    "{cond:?} {a} {b}"
                );
            }
        }
    }
}
