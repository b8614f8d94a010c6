//! The boundary between compiled blocks and Rust: the context record compiled code receives,
//! the exit codes it returns, and the `extern "C"` trampolines it calls for the slow paths,
//! helpers and lazy-flag evaluation.
//!
//! Trampolines never unwind into generated code: a panic (a translator bug) is caught, parked
//! in `JitCtx::panic`, reported to the generated code as a fault, and resumed by
//! `run_compiled` once the compiled function has returned.

use crate::block::Block;
use crate::cpu::CpuState;
use crate::env::Env;
use crate::exception::Exception;
use crate::flags::{self, Cond};
use crate::interp::stack_fault;
use crate::ir::{HelperArgs, Op};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Signature of a compiled block.
pub type BlockFn = unsafe extern "C" fn(cpu: *mut CpuState, ctx: *mut JitCtx) -> u32;

/// Exit codes returned by compiled blocks (`BlockExit` is rebuilt from them by `run_compiled`).
pub mod exit {
    /// `BlockExit::Next { slot: None }`; `cpu.rip` stored.
    pub const NEXT: u32 = 0;
    /// `BlockExit::Next { slot: Some(0) }`.
    pub const SLOT0: u32 = 1;
    /// `BlockExit::Next { slot: Some(1) }`.
    pub const SLOT1: u32 = 2;
    /// A trampoline faulted: the exception (or a panic) is in `JitCtx`; `cpu.rip` stored.
    pub const FAULT: u32 = 3;
    /// `OP | (i << 8)`: the block ended at op `i` (a callout, `Raise`, `Unsupported`, or a
    /// load/store through a not-present segment), which `run_compiled` finishes exactly as
    /// the interpreter would; `i == ops.len()` means the block had no terminator.
    pub const OP: u32 = 4;
}

/// What compiled code and the trampolines share for one block run.
#[repr(C)]
pub struct JitCtx<'a> {
    /// Nonzero after a trampoline faulted (then `exc` or `panic` says why).
    pub fault: u32,
    pub exc: Exception,
    pub env: &'a mut dyn Env,
    pub block: &'a Block,
    pub panic: Option<Box<dyn Any + Send>>,
}

impl<'a> JitCtx<'a> {
    pub fn new(env: &'a mut dyn Env, block: &'a Block) -> Self {
        JitCtx {
            fault: 0,
            exc: Exception::new(0),
            env,
            block,
            panic: None,
        }
    }
}

/// Packs `sz`, `user` and the `mem` flags for the memory trampolines.
#[inline]
pub fn mem_info(sz: u8, user: bool, flags: u8) -> u32 {
    sz as u32 | (user as u32) << 8 | (flags as u32) << 16
}

#[inline]
fn guard<R>(ctx: &mut JitCtx, fail: R, f: impl FnOnce(&mut JitCtx) -> R) -> R {
    match catch_unwind(AssertUnwindSafe(|| f(&mut *ctx))) {
        Ok(r) => r,
        Err(p) => {
            ctx.panic = Some(p);
            ctx.fault = 1;
            fail
        }
    }
}

/// Soft-TLB miss on a load: `Env::read_slow`. On a fault sets `ctx.fault`.
///
/// # Safety
/// Called only by compiled code, with the `CpuState` and `JitCtx` of the block it runs.
pub unsafe extern "C" fn read_slow(
    cpu: *mut CpuState,
    ctx: *mut JitCtx,
    lin: u64,
    info: u32,
) -> u64 {
    let (cpu, ctx) = (&mut *cpu, &mut *ctx);
    guard(ctx, 0, |ctx| {
        match ctx
            .env
            .read_slow(cpu, lin, info as u8, (info >> 8) & 1 != 0)
        {
            Ok(v) => v,
            Err(e) => {
                ctx.exc = stack_fault(e, (info >> 16) as u8);
                ctx.fault = 1;
                0
            }
        }
    })
}

/// Soft-TLB miss on a store: `Env::write_slow`. Returns nonzero on a fault.
///
/// # Safety
/// Called only by compiled code, with the `CpuState` and `JitCtx` of the block it runs.
pub unsafe extern "C" fn write_slow(
    cpu: *mut CpuState,
    ctx: *mut JitCtx,
    lin: u64,
    v: u64,
    info: u32,
) -> u32 {
    let (cpu, ctx) = (&mut *cpu, &mut *ctx);
    guard(ctx, 1, |ctx| {
        match ctx
            .env
            .write_slow(cpu, lin, info as u8, v, (info >> 8) & 1 != 0)
        {
            Ok(()) => 0,
            Err(e) => {
                ctx.exc = stack_fault(e, (info >> 16) as u8);
                ctx.fault = 1;
                1
            }
        }
    })
}

/// `Op::Call` at op index `op` of instruction `insn`: run the helper. On a fault sets
/// `ctx.fault`. The caller has stored RIP and every cached guest register.
///
/// # Safety
/// Called only by compiled code, with the `CpuState` and `JitCtx` of the block it runs.
pub unsafe extern "C" fn call_helper(
    cpu: *mut CpuState,
    ctx: *mut JitCtx,
    op: u32,
    insn: u32,
    a: u64,
    b: u64,
    c: u64,
) -> u64 {
    let (cpu, ctx) = (&mut *cpu, &mut *ctx);
    guard(ctx, 0, |ctx| {
        let blk = ctx.block;
        let Op::Call { h, sz, .. } = blk.ops[op as usize] else {
            unreachable!("call_helper on a non-call op")
        };
        let args = HelperArgs {
            sz,
            a,
            b,
            c,
            insn: &blk.insns[insn as usize],
        };
        match (h.f)(cpu, &mut *ctx.env, &args) {
            Ok(v) => v,
            Err(e) => {
                ctx.exc = e;
                ctx.fault = 1;
                0
            }
        }
    })
}

/// `Op::Cond` from the lazy flags in `cpu.cc`.
///
/// # Safety
/// Called only by compiled code, with the `CpuState` of the block it runs.
pub unsafe extern "C" fn eval_cond(cpu: *const CpuState, cond: u32) -> u32 {
    flags::eval_cond_lazy(Cond::from_index(cond as u8), &(*cpu).cc) as u32
}

/// `Op::Carry` from the lazy flags in `cpu.cc`.
///
/// # Safety
/// Called only by compiled code, with the `CpuState` of the block it runs.
pub unsafe extern "C" fn carry(cpu: *const CpuState) -> u64 {
    flags::carry_flag(&(*cpu).cc) & 1
}
