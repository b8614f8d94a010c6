//! Tier 1: hot blocks compiled from the same micro-op IR with Cranelift (design.md 3.1).
//!
//! A compiled block is `extern "C" fn(cpu: *mut CpuState, ctx: *mut JitCtx) -> u32`;
//! [`run_compiled`] wraps it with exactly the contract of `interp::run_block`. Every op of
//! the IR is compiled (see `codegen.rs`); a block that Cranelift rejects stays interpreted.
//!
//! Code memory: cranelift-jit cannot free single functions (wasmtime issue 1157), so all
//! code lives in one `JITModule` per *generation*. A translation-cache flush ends the
//! generation: the module's memory is freed and every compiled pointer of that generation
//! becomes unreachable (blocks are cleared by the flush, and `run_compiled` callers check
//! the generation too). Invalidating a single block (a write to its code page) only drops the
//! block; its code stays in the module until the next flush, which `JIT_CODE_LIMIT` forces
//! once the module holds too much code.

pub mod abi;
mod codegen;
mod memory;
#[cfg(test)]
mod tests;

use crate::block::Block;
use crate::cpu::CpuState;
use crate::env::{CalloutResult, Env, StopReason};
use crate::exception::Exception;
use crate::interp::{stack_fault, BlockExit};
use crate::ir::Op;
use abi::{exit, BlockFn, JitCtx};
use cranelift_codegen::ir::types::{I32, I64};
use cranelift_codegen::ir::{AbiParam, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::Module;
use std::sync::atomic::{AtomicU64, Ordering};

/// Flush the translation cache (and so the JIT module) once compiled code exceeds this.
pub const JIT_CODE_LIMIT: usize = 64 << 20;

/// Generations are unique in the process, so a pointer can never match another module.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// A compiled block: its entry point and the module generation that owns the code.
#[derive(Copy, Clone, Debug)]
pub struct JitCode {
    pub f: BlockFn,
    pub generation: u64,
}

/// A block's tier-1 state.
#[derive(Copy, Clone, Debug, Default)]
pub enum JitSlot {
    #[default]
    None,
    /// Stays in tier 0: compilation failed, or the block has no lifted instruction (a lone
    /// callout), where compiled code would do nothing the interpreter does not.
    Interpreted,
    Code(JitCode),
}

/// Cranelift optimisation level for tier 1.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum JitOpt {
    None,
    Speed,
}

/// The compiler and the module of the current generation.
pub struct Jit {
    module: Option<JITModule>,
    ctx: Context,
    fctx: FunctionBuilderContext,
    generation: u64,
    /// Code bytes in the current module (each function rounded up to pages: the default
    /// memory provider starts a new mapping at every finalisation).
    code_bytes: usize,
    opt: JitOpt,
    verify: bool,
}

impl Default for Jit {
    fn default() -> Self {
        Self::new()
    }
}

impl Jit {
    pub fn new() -> Self {
        Jit {
            module: None,
            ctx: Context::new(),
            fctx: FunctionBuilderContext::new(),
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            code_bytes: 0,
            opt: match std::env::var("BTVISOR_JIT_OPT").as_deref() {
                Ok("speed") => JitOpt::Speed,
                _ => JitOpt::None,
            },
            verify: cfg!(debug_assertions) || cfg!(test),
        }
    }

    pub fn set_opt(&mut self, opt: JitOpt) {
        if opt != self.opt {
            self.opt = opt;
            self.reset();
        }
    }

    /// Cranelift's IR verifier (on in debug builds and tests, off in release).
    pub fn set_verifier(&mut self, on: bool) {
        if on != self.verify {
            self.verify = on;
            self.reset();
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes of code memory held by the current module.
    pub fn code_bytes(&self) -> usize {
        self.code_bytes
    }

    /// Whether `code` belongs to the live module.
    pub fn is_live(&self, code: &JitCode) -> bool {
        code.generation == self.generation && self.module.is_some()
    }

    /// End the generation: free all code memory. Callers must make sure no pointer of this
    /// generation runs again (`TranslationCache::flush` clears every block's slot; the
    /// generation check catches any block held elsewhere).
    pub fn reset(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: no compiled code is running (resets happen between blocks, from the
            // translator, never from inside compiled code) and every pointer into this
            // module carries the old generation, which `is_live` now rejects.
            unsafe { m.free_memory() };
        }
        self.generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        self.code_bytes = 0;
    }

    fn make_module(&self) -> Result<JITModule, String> {
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| {
            f.set(k, v).map_err(|e| format!("{k}: {e}"))
        };
        set(
            &mut flags,
            "opt_level",
            if self.opt == JitOpt::Speed {
                "speed"
            } else {
                "none"
            },
        )?;
        set(
            &mut flags,
            "enable_verifier",
            if self.verify { "true" } else { "false" },
        )?;
        // Blocks are small and compile time dominates a Linux boot (tens of thousands of hot
        // blocks): the single-pass register allocator compiles much faster than the
        // backtracking one, at a small cost in code quality (BENCHMARKS.md).
        if self.opt != JitOpt::Speed {
            set(&mut flags, "regalloc_algorithm", "single_pass")?;
        }
        set(&mut flags, "is_pic", "false")?;
        set(&mut flags, "use_colocated_libcalls", "false")?;
        let isa = cranelift_native::builder()
            .map_err(|e| e.to_string())?
            .finish(settings::Flags::new(flags))
            .map_err(|e| e.to_string())?;
        Ok(JITModule::new(JITBuilder::with_isa(
            isa,
            cranelift_module::default_libcall_names(),
        )))
    }

    /// Compile `blk`. Errors (Cranelift refusing the function) leave the block interpreted.
    pub fn compile(&mut self, blk: &Block) -> Result<JitCode, String> {
        if blk.has_segment_checks() {
            return Err("segment limit/type checks are interpreted only".into());
        }
        if self.module.is_none() {
            self.module = Some(self.make_module()?);
        }
        let module = self.module.as_mut().expect("module just made");
        module.clear_context(&mut self.ctx);
        let ptr = module.target_config().pointer_type();
        debug_assert_eq!(ptr, I64);
        let call_conv = module.isa().default_call_conv();
        let frontend = module.target_config();
        let sig = &mut self.ctx.func.signature;
        sig.params.push(AbiParam::new(I64));
        sig.params.push(AbiParam::new(I64));
        sig.returns.push(AbiParam::new(I32));
        let id = module
            .declare_anonymous_function(&self.ctx.func.signature)
            .map_err(|e| e.to_string())?;
        self.ctx.func.name = UserFuncName::user(0, id.as_u32());
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let (cpu, ctx) = (b.block_params(entry)[0], b.block_params(entry)[1]);
            let mut g = codegen::Gen::new(&mut b, blk, call_conv, cpu, ctx);
            g.emit_block();
            g.finish();
            b.seal_all_blocks();
            b.finalize(frontend);
        }
        if std::env::var("JIT_DUMP").as_deref() == Ok(&format!("{}", blk.ops.len())) {
            eprintln!(
                "insts {} blocks {}\n{}",
                self.ctx.func.dfg.num_insts(),
                self.ctx.func.dfg.num_blocks(),
                self.ctx.func.display()
            );
        }
        module
            .define_function(id, &mut self.ctx)
            .map_err(|e| format!("{e:?}"))?;
        let size = self
            .ctx
            .compiled_code()
            .map(|c| c.code_info().total_size as usize)
            .unwrap_or(0);
        module.clear_context(&mut self.ctx);
        module.finalize_definitions().map_err(|e| e.to_string())?;
        let f = module.get_finalized_function(id);
        self.code_bytes += size.div_ceil(4096) * 4096;
        // SAFETY: the function was built with exactly this signature and the host call conv.
        let f = unsafe { std::mem::transmute::<*const u8, BlockFn>(f) };
        Ok(JitCode {
            f,
            generation: self.generation,
        })
    }
}

/// Run a compiled block: the same contract as `interp::run_block` (state committed at
/// instruction boundaries, `cpu.rip` at the faulting instruction on `Raise`, `code_modified`
/// leaving at the next instruction boundary). `code` must be live (`Jit::is_live`) and
/// compiled from `blk`.
pub fn run_compiled(
    cpu: &mut CpuState,
    env: &mut dyn Env,
    blk: &Block,
    code: JitCode,
) -> BlockExit {
    let mut ctx = JitCtx::new(env, blk);
    // SAFETY: `code` was compiled from `blk` by a live module; the generated code accesses
    // `cpu` and `ctx` only through `offset_of!`-derived offsets and the trampolines.
    let r = unsafe { (code.f)(cpu, &mut ctx) };
    if let Some(p) = ctx.panic.take() {
        std::panic::resume_unwind(p);
    }
    match r & 0xff {
        exit::NEXT => BlockExit::Next { slot: None },
        exit::SLOT0 => BlockExit::Next { slot: Some(0) },
        exit::SLOT1 => BlockExit::Next { slot: Some(1) },
        exit::FAULT => crate::interp::helper_exit(cpu, ctx.exc),
        exit::OP => finish_at_op(cpu, ctx.env, blk, (r >> 8) as usize),
        _ => unreachable!("bad exit code {r:#x} from compiled block"),
    }
}

/// The block left at op `i` with `cpu.rip` stored: do what the interpreter does there.
fn finish_at_op(cpu: &mut CpuState, env: &mut dyn Env, blk: &Block, i: usize) -> BlockExit {
    let Some(op) = blk.ops.get(i) else {
        return BlockExit::Stop(StopReason::Unsupported("block without terminator"));
    };
    match *op {
        Op::Raise { e } => BlockExit::Raise(e),
        Op::Unsupported { what } => BlockExit::Stop(StopReason::Unsupported(what)),
        Op::Load { flags, .. } | Op::Store { flags, .. } => {
            BlockExit::Raise(stack_fault(Exception::gp(0), flags))
        }
        Op::Callout { kind } => {
            let idx = blk.ops[..i]
                .iter()
                .rev()
                .find_map(|o| {
                    if let Op::Insn { idx, .. } = o {
                        Some(*idx as usize)
                    } else {
                        None
                    }
                })
                .unwrap_or(0);
            let insn = blk.insns[idx];
            match env.callout(cpu, &insn, kind) {
                CalloutResult::Next => {
                    cpu.rip = insn.next_ip();
                    BlockExit::Next { slot: None }
                }
                CalloutResult::Jump => BlockExit::Next { slot: None },
                CalloutResult::Raise(e) => BlockExit::Raise(e),
                CalloutResult::Halt => {
                    cpu.rip = insn.next_ip();
                    BlockExit::Halt
                }
                CalloutResult::Stop(r) => BlockExit::Stop(r),
            }
        }
        ref o => unreachable!("compiled block exited at {o:?}"),
    }
}
