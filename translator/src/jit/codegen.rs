//! Micro-ops to Cranelift IR for one block.
//!
//! Guest registers are cached in SSA values within the block (`regs`) for reads, and written
//! through to `CpuState` at every `Set`, as everything else the interpreter writes (lazy
//! flags, RFLAGS, RIP before helpers) is, in the interpreter's order. So at any point where
//! Rust code can look (trampolines, exits) `CpuState` is exactly what tier 0 would have
//! produced, and the exits and slow paths need no spill code: that keeps the cold paths to a
//! call and a branch, which matters more for compile time than the few extra stores cost at
//! run time. Helpers may change any register, so the cache is dropped after a call; the slow
//! paths (`Env::read_slow`/`write_slow`) never change guest registers or the lazy flags
//! (`Env` contract), so the cache survives them.
//!
//! The generated code is straight-line apart from: the diamond of each memory access (inline
//! soft-TLB hit, cold slow path, join), the `code_modified` and fault exits, and the final
//! terminator. A value defined on the main line therefore dominates everything after it,
//! which is why plain `Value`s (no `Variable`s) suffice for temps and cached registers.

use super::abi::{self, exit, JitCtx};
use crate::block::Block;
use crate::cpu::{CpuState, Segment};
use crate::flags::{size_mask, CcOp, Cond, LazyFlags};
use crate::ir::{BinOp, Op, REG_AH, TEMPS};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I16, I32, I64, I8};
use cranelift_codegen::ir::{
    AbiParam, Block as ClifBlock, BlockArg, InstBuilder, MemFlagsData, SigRef, Signature, Value,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::FunctionBuilder;
use std::mem::{offset_of, size_of};

/// Offsets into `CpuState` and `JitCtx`, all derived with `offset_of!`.
pub(super) mod off {
    use super::*;
    pub fn gpr(r: usize) -> i32 {
        (offset_of!(CpuState, gpr) + r * size_of::<u64>()) as i32
    }
    pub const RIP: i32 = offset_of!(CpuState, rip) as i32;
    pub const RFLAGS: i32 = offset_of!(CpuState, rflags) as i32;
    pub const CODE_MODIFIED: i32 = offset_of!(CpuState, code_modified) as i32;
    const CC: usize = offset_of!(CpuState, cc);
    pub const CC_OP: i32 = (CC + offset_of!(LazyFlags, op)) as i32;
    pub const CC_SIZE: i32 = (CC + offset_of!(LazyFlags, size)) as i32;
    pub const CC_SRC1: i32 = (CC + offset_of!(LazyFlags, src1)) as i32;
    pub const CC_SRC2: i32 = (CC + offset_of!(LazyFlags, src2)) as i32;
    pub const CC_RES: i32 = (CC + offset_of!(LazyFlags, res)) as i32;
    pub const CC_AUX: i32 = (CC + offset_of!(LazyFlags, aux)) as i32;
    pub fn seg_attrs(s: usize) -> i32 {
        (offset_of!(CpuState, seg) + s * size_of::<Segment>() + offset_of!(Segment, attrs)) as i32
    }
    pub fn seg_base(s: usize) -> i32 {
        (offset_of!(CpuState, seg) + s * size_of::<Segment>() + offset_of!(Segment, base)) as i32
    }
    pub const CTX_FAULT: i32 = offset_of!(JitCtx<'static>, fault) as i32;
}

/// The operands of the last `Op::Flags` of the block, while `cpu.cc` still holds them: lets
/// `Cond`/`Carry` be computed inline for the common cases.
#[derive(Copy, Clone)]
struct Known {
    op: CcOp,
    sz: u8,
    a: Value,
    b: Value,
    r: Value,
    aux: Value,
}

/// Trampoline signatures, imported into the function on first use.
#[derive(Default)]
struct Sigs {
    read: Option<SigRef>,
    write: Option<SigRef>,
    call: Option<SigRef>,
    cond: Option<SigRef>,
    carry: Option<SigRef>,
}

pub(super) struct Gen<'a, 'f> {
    pub b: &'a mut FunctionBuilder<'f>,
    blk: &'a Block,
    call_conv: CallConv,
    pub cpu: Value,
    pub ctx: Value,
    pub user: bool,
    regs: [Option<Value>; 16],
    t: [Option<Value>; TEMPS],
    /// Segment bases already checked present in this block (dropped after helper calls).
    segs: [Option<Value>; 6],
    known: Option<Known>,
    /// Current instruction.
    pub rip: u64,
    idx: u16,
    op_idx: usize,
    /// Set once anything that can set `cpu.code_modified` (a store's slow path, a helper) was
    /// emitted since the last check. Loads cannot set it (`Env::read_slow` contract).
    need_cm_check: bool,
    /// The shared cold exit: stores its RIP parameter and returns its code parameter.
    exit: Option<ClifBlock>,
    sigs: Sigs,
}

/// Memory flags for `CpuState` and `JitCtx` fields: aligned, never trapping.
pub(super) fn state_flags() -> MemFlagsData {
    MemFlagsData::trusted()
}

impl<'a, 'f> Gen<'a, 'f> {
    pub fn new(
        b: &'a mut FunctionBuilder<'f>,
        blk: &'a Block,
        call_conv: CallConv,
        cpu: Value,
        ctx: Value,
    ) -> Self {
        Gen {
            b,
            blk,
            call_conv,
            cpu,
            ctx,
            user: blk.key.mode.cpl == 3,
            regs: [None; 16],
            t: [None; TEMPS],
            segs: [None; 6],
            known: None,
            rip: blk.key.rip,
            idx: 0,
            op_idx: 0,
            need_cm_check: true,
            exit: None,
            sigs: Sigs::default(),
        }
    }

    // ---------- small emitters ----------

    pub fn k(&mut self, v: u64) -> Value {
        self.b.ins().iconst(I64, v as i64)
    }

    fn k32(&mut self, v: u32) -> Value {
        self.b.ins().iconst(I32, v as i64)
    }

    pub fn and_k(&mut self, x: Value, m: u64) -> Value {
        if m == u64::MAX {
            return x;
        }
        let m = self.k(m);
        self.b.ins().band(x, m)
    }

    fn ld_state(&mut self, ty: cranelift_codegen::ir::Type, off: i32) -> Value {
        self.b.ins().load(ty, state_flags(), self.cpu, off)
    }

    fn st_state(&mut self, v: Value, off: i32) {
        self.b.ins().store(state_flags(), v, self.cpu, off);
    }

    fn temp(&mut self, t: u8) -> Value {
        match self.t[t as usize] {
            Some(v) => v,
            None => {
                // The interpreter's temp file starts zeroed.
                let z = self.k(0);
                self.t[t as usize] = Some(z);
                z
            }
        }
    }

    fn set_temp(&mut self, t: u8, v: Value) {
        self.t[t as usize] = Some(v);
    }

    fn sig(
        &mut self,
        params: &[cranelift_codegen::ir::Type],
        ret: cranelift_codegen::ir::Type,
    ) -> SigRef {
        let mut s = Signature::new(self.call_conv);
        s.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        s.returns.push(AbiParam::new(ret));
        self.b.import_signature(s)
    }

    /// Call a trampoline by absolute address (no relocations, no symbol lookup).
    fn call_tramp(&mut self, sig: SigRef, f: usize, args: &[Value]) -> Value {
        let callee = self.b.ins().iconst(I64, f as i64);
        let call = self.b.ins().call_indirect(sig, callee, args);
        self.b.inst_results(call)[0]
    }

    // ---------- guest registers ----------

    fn reg_full(&mut self, r: usize) -> Value {
        if let Some(v) = self.regs[r] {
            return v;
        }
        let v = self.ld_state(I64, off::gpr(r));
        self.regs[r] = Some(v);
        v
    }

    fn set_reg_full(&mut self, r: usize, v: Value) {
        self.regs[r] = Some(v);
        self.st_state(v, off::gpr(r));
    }

    fn get(&mut self, r: u8, sz: u8) -> Value {
        if r >= REG_AH {
            let g = self.reg_full((r - REG_AH) as usize);
            let s = self.b.ins().ushr_imm_u(g, 8);
            return self.and_k(s, 0xff);
        }
        let g = self.reg_full(r as usize);
        match sz {
            1 | 2 | 4 => self.and_k(g, size_mask(sz as u32)),
            _ => g,
        }
    }

    fn set(&mut self, r: u8, sz: u8, v: Value) {
        if r >= REG_AH {
            let i = (r - REG_AH) as usize;
            let g = self.reg_full(i);
            let keep = self.and_k(g, !0xff00);
            let lo = self.and_k(v, 0xff);
            let hi = self.b.ins().ishl_imm_u(lo, 8);
            let n = self.b.ins().bor(keep, hi);
            self.set_reg_full(i, n);
            return;
        }
        let i = r as usize;
        let n = match sz {
            1 | 2 => {
                let m = size_mask(sz as u32);
                let g = self.reg_full(i);
                let keep = self.and_k(g, !m);
                let lo = self.and_k(v, m);
                self.b.ins().bor(keep, lo)
            }
            4 => self.and_k(v, 0xffff_ffff),
            _ => v,
        };
        self.set_reg_full(i, n);
    }

    // ---------- exits ----------

    /// Store RIP and return `code` (the caller stored the registers it needs).
    fn ret(&mut self, rip: Value, code: u32) {
        self.st_state(rip, off::RIP);
        let c = self.k32(code);
        self.b.ins().return_(&[c]);
    }

    /// The shared cold exit block (params: RIP, exit code).
    fn exit_block(&mut self) -> ClifBlock {
        if let Some(b) = self.exit {
            return b;
        }
        let b = self.b.create_block();
        self.b.append_block_param(b, I64);
        self.b.append_block_param(b, I32);
        self.b.set_cold_block(b);
        self.exit = Some(b);
        b
    }

    /// Leave through the shared exit with `rip` and `code` if `cond` is nonzero.
    fn exit_if(&mut self, cond: Value, rip: u64, code: u32) {
        let ex = self.exit_block();
        let cont = self.b.create_block();
        let (r, c) = (self.k(rip), self.k32(code));
        self.b.ins().brif(
            cond,
            ex,
            &[BlockArg::Value(r), BlockArg::Value(c)],
            cont,
            &[],
        );
        self.b.switch_to_block(cont);
    }

    /// After a trampoline call: leave with `exit::FAULT` if it faulted (`status`, or
    /// `ctx.fault` when None), else continue at `next` with `args` (a fresh block if None).
    fn check_fault(&mut self, status: Option<Value>, next: Option<(ClifBlock, &[BlockArg])>) {
        let st = match status {
            Some(s) => s,
            None => self
                .b
                .ins()
                .load(I32, state_flags(), self.ctx, off::CTX_FAULT),
        };
        match next {
            None => self.exit_if(st, self.rip, exit::FAULT),
            Some((blk, args)) => {
                let ex = self.exit_block();
                let (r, c) = (self.k(self.rip), self.k32(exit::FAULT));
                self.b
                    .ins()
                    .brif(st, ex, &[BlockArg::Value(r), BlockArg::Value(c)], blk, args);
            }
        }
    }

    // ---------- memory (see memory.rs for the TLB paths) ----------

    /// Linear address of `seg:off` (interp::linear); a not-present segment leaves through
    /// an `exit::OP` exit, where `run_compiled` raises #GP(0) or #SS(0).
    fn linear(&mut self, seg: u8, a: Value, flags: u8) -> Value {
        if seg == crate::ir::NO_SEG {
            return a;
        }
        let s = seg as usize;
        let base = match self.segs[s] {
            Some(base) => base,
            None => {
                // 64-bit mode (no WRAP32) does no null-selector check (interp::linear).
                if flags & crate::ir::mem::WRAP32 != 0 {
                    let attrs =
                        self.b
                            .ins()
                            .uload16(I32, state_flags(), self.cpu, off::seg_attrs(s));
                    let p = self.b.ins().band_imm_u(attrs, Segment::ATTR_P as i64);
                    let np = self.b.ins().icmp_imm_u(IntCC::Equal, p, 0);
                    self.exit_if(np, self.rip, exit::OP | (self.op_idx as u32) << 8);
                }
                let base = self.ld_state(I64, off::seg_base(s));
                self.segs[s] = Some(base);
                base
            }
        };
        let lin = self.b.ins().iadd(a, base);
        if flags & crate::ir::mem::WRAP32 != 0 {
            self.and_k(lin, 0xffff_ffff)
        } else {
            lin
        }
    }

    /// Cold path of a load: call `Env::read_slow`; leave on a fault, else jump to `join`
    /// with the value.
    pub fn read_slow_call(&mut self, lin: Value, sz: u8, flags: u8, join: ClifBlock) {
        let sig = match self.sigs.read {
            Some(s) => s,
            None => {
                let s = self.sig(&[I64, I64, I64, I32], I64);
                self.sigs.read = Some(s);
                s
            }
        };
        let info = self.k32(abi::mem_info(sz, self.user, flags));
        let (cpu, ctx) = (self.cpu, self.ctx);
        let v = self.call_tramp(
            sig,
            abi::read_slow as *const () as usize,
            &[cpu, ctx, lin, info],
        );
        self.check_fault(None, Some((join, &[BlockArg::Value(v)])));
    }

    /// Cold path of a store: call `Env::write_slow`; leave on a fault, else jump to `join`.
    pub fn write_slow_call(&mut self, lin: Value, v: Value, sz: u8, flags: u8, join: ClifBlock) {
        let sig = match self.sigs.write {
            Some(s) => s,
            None => {
                let s = self.sig(&[I64, I64, I64, I64, I32], I32);
                self.sigs.write = Some(s);
                s
            }
        };
        let info = self.k32(abi::mem_info(sz, self.user, flags));
        let (cpu, ctx) = (self.cpu, self.ctx);
        let st = self.call_tramp(
            sig,
            abi::write_slow as *const () as usize,
            &[cpu, ctx, lin, v, info],
        );
        self.check_fault(Some(st), Some((join, &[])));
    }

    // ---------- lazy flags ----------

    fn flags(&mut self, op: CcOp, sz: u8, a: Value, b: Value, r: Value, aux: Value) {
        // `op` and `size` are adjacent u32s: one 64-bit store (little-endian host).
        const _: () = assert!(off::CC_SIZE == off::CC_OP + 4 && cfg!(target_endian = "little"));
        let opsz = self.k((sz as u64) << 32 | op as u64);
        self.st_state(opsz, off::CC_OP);
        self.st_state(a, off::CC_SRC1);
        self.st_state(b, off::CC_SRC2);
        self.st_state(r, off::CC_RES);
        self.st_state(aux, off::CC_AUX);
        self.known = Some(Known {
            op,
            sz,
            a,
            b,
            r,
            aux,
        });
    }

    /// Sign test of the low `sz` bytes of `v`, as an i8 boolean.
    fn sign(&mut self, v: Value, sz: u8) -> Value {
        let sh = 64 - sz as i64 * 8;
        let s = if sh == 0 {
            v
        } else {
            self.b.ins().ishl_imm_u(v, sh)
        };
        self.b.ins().icmp_imm_u(IntCC::SignedLessThan, s, 0)
    }

    /// `Op::Cond` inline when the pending flags are known and the case is simple (the same
    /// results as `flags::eval_cond_lazy`); None otherwise.
    fn cond_inline(&mut self, cc: Cond) -> Option<Value> {
        let k = self.known?;
        let m = size_mask(k.sz as u32);
        let base = (cc as u8) & !1;
        let v = match k.op {
            CcOp::Sub => {
                let signed = matches!(base, x if x == Cond::L as u8 || x == Cond::Le as u8);
                let (a, b) = if signed {
                    let sh = 64 - k.sz as i64 * 8;
                    if sh == 0 {
                        (k.a, k.b)
                    } else {
                        (
                            self.b.ins().ishl_imm_u(k.a, sh),
                            self.b.ins().ishl_imm_u(k.b, sh),
                        )
                    }
                } else {
                    (self.and_k(k.a, m), self.and_k(k.b, m))
                };
                let ic = match base {
                    x if x == Cond::E as u8 => IntCC::Equal,
                    x if x == Cond::B as u8 => IntCC::UnsignedLessThan,
                    x if x == Cond::Be as u8 => IntCC::UnsignedLessThanOrEqual,
                    x if x == Cond::L as u8 => IntCC::SignedLessThan,
                    x if x == Cond::Le as u8 => IntCC::SignedLessThanOrEqual,
                    x if x == Cond::S as u8 => {
                        let s = self.sign(k.r, k.sz);
                        return Some(self.negate_if(cc, s));
                    }
                    _ => return None,
                };
                self.b.ins().icmp(ic, a, b)
            }
            CcOp::Logic => {
                let r = self.and_k(k.r, m);
                match base {
                    x if x == Cond::E as u8 || x == Cond::Be as u8 => {
                        self.b.ins().icmp_imm_u(IntCC::Equal, r, 0)
                    }
                    x if x == Cond::O as u8 || x == Cond::B as u8 => self.b.ins().iconst(I8, 0),
                    x if x == Cond::S as u8 || x == Cond::L as u8 => self.sign(r, k.sz),
                    x if x == Cond::Le as u8 => {
                        let z = self.b.ins().icmp_imm_u(IntCC::Equal, r, 0);
                        let s = self.sign(r, k.sz);
                        self.b.ins().bor(z, s)
                    }
                    _ => return None,
                }
            }
            CcOp::Add | CcOp::Adc | CcOp::Sbb | CcOp::Inc | CcOp::Dec | CcOp::Mul | CcOp::Shift => {
                match base {
                    x if x == Cond::E as u8 => {
                        let r = self.and_k(k.r, m);
                        self.b.ins().icmp_imm_u(IntCC::Equal, r, 0)
                    }
                    x if x == Cond::S as u8 => self.sign(k.r, k.sz),
                    _ => return None,
                }
            }
            CcOp::Eflags => return None,
        };
        Some(self.negate_if(cc, v))
    }

    fn negate_if(&mut self, cc: Cond, v: Value) -> Value {
        if (cc as u8) & 1 != 0 {
            self.b.ins().bxor_imm_u(v, 1)
        } else {
            v
        }
    }

    fn cond(&mut self, cc: Cond) -> Value {
        if let Some(v) = self.cond_inline(cc) {
            return self.b.ins().uextend(I64, v);
        }
        let sig = match self.sigs.cond {
            Some(s) => s,
            None => {
                let s = self.sig(&[I64, I32], I32);
                self.sigs.cond = Some(s);
                s
            }
        };
        let c = self.k32(cc as u32);
        let cpu = self.cpu;
        let r = self.call_tramp(sig, abi::eval_cond as *const () as usize, &[cpu, c]);
        self.b.ins().uextend(I64, r)
    }

    fn carry(&mut self) -> Value {
        if let Some(k) = self.known {
            let m = size_mask(k.sz as u32);
            let bit = match k.op {
                CcOp::Sub => {
                    let (a, b) = (self.and_k(k.a, m), self.and_k(k.b, m));
                    Some(self.b.ins().icmp(IntCC::UnsignedLessThan, a, b))
                }
                CcOp::Add => {
                    let (r, a) = (self.and_k(k.r, m), self.and_k(k.a, m));
                    Some(self.b.ins().icmp(IntCC::UnsignedLessThan, r, a))
                }
                CcOp::Logic => return self.k(0),
                CcOp::Inc | CcOp::Dec | CcOp::Shift => return self.and_k(k.aux, 1),
                _ => None,
            };
            if let Some(b) = bit {
                return self.b.ins().uextend(I64, b);
            }
        }
        let sig = match self.sigs.carry {
            Some(s) => s,
            None => {
                let s = self.sig(&[I64], I64);
                self.sigs.carry = Some(s);
                s
            }
        };
        let cpu = self.cpu;
        self.call_tramp(sig, abi::carry as *const () as usize, &[cpu])
    }

    // ---------- the block ----------

    /// Emit the whole block; the builder is positioned in the entry block.
    pub fn emit_block(&mut self) {
        let blk = self.blk;
        for (i, op) in blk.ops.iter().enumerate() {
            self.op_idx = i;
            match *op {
                Op::Insn { idx, rip } => {
                    if self.need_cm_check {
                        // The previous instruction wrote to a page holding translations: leave
                        // before this one (interp.rs does the same).
                        self.need_cm_check = false;
                        let cm =
                            self.b
                                .ins()
                                .uload8(I32, state_flags(), self.cpu, off::CODE_MODIFIED);
                        self.exit_if(cm, rip, exit::NEXT);
                    }
                    self.idx = idx;
                    self.rip = rip;
                }
                Op::Const { d, v } => {
                    let v = self.k(v);
                    self.set_temp(d, v);
                }
                Op::Get { d, r, sz } => {
                    let v = self.get(r, sz);
                    self.set_temp(d, v);
                }
                Op::Set { r, sz, s } => {
                    let v = self.temp(s);
                    self.set(r, sz, v);
                }
                Op::Bin { op, d, a, b } => {
                    let (a, b) = (self.temp(a), self.temp(b));
                    let ins = self.b.ins();
                    let v = match op {
                        BinOp::Add => ins.iadd(a, b),
                        BinOp::Sub => ins.isub(a, b),
                        BinOp::And => ins.band(a, b),
                        BinOp::Or => ins.bor(a, b),
                        BinOp::Xor => ins.bxor(a, b),
                        // Cranelift masks the amount to 0..63 like `wrapping_shl`.
                        BinOp::Shl => ins.ishl(a, b),
                        BinOp::Shr => ins.ushr(a, b),
                        BinOp::Sar => ins.sshr(a, b),
                        BinOp::Mul => ins.imul(a, b),
                        BinOp::MulHiS => ins.smulhi(a, b),
                    };
                    self.set_temp(d, v);
                }
                Op::Sext { d, s, from } => {
                    let s = self.temp(s);
                    let ty = match from {
                        1 => Some(I8),
                        2 => Some(I16),
                        4 => Some(I32),
                        _ => None,
                    };
                    let v = match ty {
                        Some(ty) => {
                            let n = self.b.ins().ireduce(ty, s);
                            self.b.ins().sextend(I64, n)
                        }
                        None => s,
                    };
                    self.set_temp(d, v);
                }
                Op::Zext { d, s, from } => {
                    let s = self.temp(s);
                    let v = self.and_k(s, size_mask(from as u32));
                    self.set_temp(d, v);
                }
                Op::Flags {
                    op,
                    sz,
                    a,
                    b,
                    r,
                    aux,
                } => {
                    let (a, b, r, aux) = (self.temp(a), self.temp(b), self.temp(r), self.temp(aux));
                    self.flags(op, sz, a, b, r, aux);
                }
                Op::Carry { d } => {
                    let v = self.carry();
                    self.set_temp(d, v);
                }
                Op::Cond { d, cc } => {
                    let v = self.cond(cc);
                    self.set_temp(d, v);
                }
                Op::Select { d, c, a, b } => {
                    let (c, a, b) = (self.temp(c), self.temp(a), self.temp(b));
                    let v = self.b.ins().select(c, a, b);
                    self.set_temp(d, v);
                }
                Op::Load {
                    d,
                    seg,
                    a,
                    sz,
                    flags,
                } => {
                    let a = self.temp(a);
                    let lin = self.linear(seg, a, flags);
                    let v = self.load(lin, sz, flags);
                    self.set_temp(d, v);
                }
                Op::Store {
                    seg,
                    a,
                    s,
                    sz,
                    flags,
                } => {
                    let a = self.temp(a);
                    let v = self.temp(s);
                    let lin = self.linear(seg, a, flags);
                    self.store(lin, v, sz, flags);
                    self.need_cm_check = true;
                }
                Op::Rflags { and, or } => {
                    let f = self.ld_state(I64, off::RFLAGS);
                    let f = self.and_k(f, and);
                    let o = self.k(or);
                    let f = self.b.ins().bor(f, o);
                    self.st_state(f, off::RFLAGS);
                }
                Op::Call { d, a, b, c, .. } => {
                    let (a, b, c) = (self.temp(a), self.temp(b), self.temp(c));
                    let rip = self.k(self.rip);
                    self.st_state(rip, off::RIP);
                    let sig = match self.sigs.call {
                        Some(s) => s,
                        None => {
                            let s = self.sig(&[I64, I64, I32, I32, I64, I64, I64], I64);
                            self.sigs.call = Some(s);
                            s
                        }
                    };
                    let opi = self.k32(i as u32);
                    let ii = self.k32(self.idx as u32);
                    let (cpu, ctx) = (self.cpu, self.ctx);
                    let v = self.call_tramp(
                        sig,
                        abi::call_helper as *const () as usize,
                        &[cpu, ctx, opi, ii, a, b, c],
                    );
                    self.check_fault(None, None);
                    // The helper may have changed anything in CpuState.
                    self.regs = [None; 16];
                    self.segs = [None; 6];
                    self.known = None;
                    self.need_cm_check = true;
                    self.set_temp(d, v);
                }
                Op::Jmp { target } => {
                    let t = self.k(target);
                    self.ret(t, exit::SLOT0);
                    return;
                }
                Op::JmpInd { t } => {
                    let t = self.temp(t);
                    self.ret(t, exit::NEXT);
                    return;
                }
                Op::Branch {
                    c,
                    taken,
                    not_taken,
                } => {
                    let c = self.temp(c);
                    let tb = self.b.create_block();
                    let nb = self.b.create_block();
                    self.b.ins().brif(c, tb, &[], nb, &[]);
                    self.b.switch_to_block(tb);
                    let t = self.k(taken);
                    self.ret(t, exit::SLOT0);
                    self.b.switch_to_block(nb);
                    let n = self.k(not_taken);
                    self.ret(n, exit::SLOT1);
                    return;
                }
                Op::Callout { .. } | Op::Raise { .. } | Op::Unsupported { .. } => {
                    let r = self.k(self.rip);
                    self.ret(r, exit::OP | (i as u32) << 8);
                    return;
                }
            }
        }
        // No terminator: run_compiled reports it as the interpreter does.
        let r = self.k(self.rip);
        self.ret(r, exit::OP | (blk.ops.len() as u32) << 8);
    }

    /// Emit the shared exit if it was used (after the main line is done).
    pub fn finish(&mut self) {
        if let Some(ex) = self.exit {
            self.b.switch_to_block(ex);
            let (rip, code) = (self.b.block_params(ex)[0], self.b.block_params(ex)[1]);
            self.st_state(rip, off::RIP);
            self.b.ins().return_(&[code]);
        }
    }
}
