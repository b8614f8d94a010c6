//! The native-step engine (design.md 3.1): x87, MMX and SSE data operations that the lifter
//! does not model run on the host CPU, one instruction at a time, in a generated stub
//! (`stub.rs`) with the guest's x87/SSE state (`CpuState::fx`) and GPRs loaded.
//!
//! For one instruction the helper
//! 1. decides once (`plan.rs`, cached per instruction) whether it may run at all: an allowlist
//!    of data operations with at most one memory operand, no control flow, no stack or segment
//!    semantics; VEX AVX/AVX2/FMA/F16C run with the upper YMM halves (`CpuState::ymmh`) loaded,
//!    EVEX/XOP (not offered) are #UD, anything else unknown a clear stop; XSAVE/XRSTOR are
//!    emulated on the guest state (`xsave.rs`);
//! 2. applies the CR0.EM/MP/TS and CR4.OSFXSR rules (SDM Vol. 3, 2.5 and Table 2-2), and for
//!    VEX the CR4.OSXSAVE/XCR0 and CR0.TS rules (SDM Vol. 2, 2.3.12);
//! 3. refuses to run with an unmasked x87 or SIMD exception (the host would take SIGFPE):
//!    a clear stop (ARCHITECTURE.md, known limits);
//! 4. copies the memory operand through the MMU into a 64-byte aligned bounce buffer (guest
//!    #PF/#GP/#SS and the alignment #GP raised here, before anything runs), runs the
//!    stub with the operand rewritten to the bounce buffer, writes the buffer back, and only then
//!    commits registers, so every exception is precise;
//! 5. keeps FIP/FDP/FOP and MXCSR_MASK guest values in every image (`ptrs.rs`).

mod memory;
mod plan;
mod ptrs;
mod stub;
pub mod xsave;

use crate::cpu::{cr, rflags, CpuState, FxArea, YmmHigh};
use crate::env::Env;
use crate::exception::Exception;
use crate::ir::{Helper, HelperArgs};
use iced_x86::Instruction;
use plan::{Plan, Refusal, Special, Unit};
use rustc_hash::FxHashMap as HashMap;
use std::cell::RefCell;
use std::sync::OnceLock;

pub use stub::MAX_STUBS;

/// The helper that `scan.rs` emits for every `Class::NativeStep` instruction.
pub const NATIVE_STEP: Helper = Helper {
    name: "native_step",
    f: native_step,
};

/// The MXCSR_MASK the guest sees (SDM Vol. 1, 11.6.6): the host's, without AMD's misaligned
/// exception mask bit 17 (MM), which this virtual CPU does not offer. LDMXCSR and FXRSTOR raise
/// #GP(0) for any bit outside it.
pub fn guest_mxcsr_mask() -> u32 {
    static MASK: OnceLock<u32> = OnceLock::new();
    *MASK.get_or_init(|| {
        let mut a = FxArea([0; 512]);
        // SAFETY: FXSAVE64 writes the 512-byte, 16-byte aligned area we own; it does not change
        // the FPU state.
        unsafe {
            core::arch::asm!("fxsave64 [{}]", in(reg) a.0.as_mut_ptr(), options(nostack));
        }
        match a.get32(FxArea::MXCSR_MASK) {
            // A zero mask means the default 0000FFBFH (no DAZ).
            0 => 0xffbf,
            m => m & 0xffff,
        }
    })
}

/// Whether the virtual CPU offers AVX (CPUID AVX/AVX2/FMA/F16C, XCR0 bit 2): the host runs
/// it (CPUID.1:ECX.AVX and the host OS enabled YMM state in XCR0) and puts the AVX component
/// where the standard XSAVE format has it (CPUID.(EAX=0DH,ECX=2) = 256 bytes at 576), which
/// `xsave.rs` and the native child's signal frame rely on.
pub fn avx_offered() -> bool {
    static OFFERED: OnceLock<bool> = OnceLock::new();
    *OFFERED.get_or_init(|| {
        if !std::arch::is_x86_feature_detected!("avx") {
            return false;
        }
        // Leaf 0DH exists where AVX does.
        let d = core::arch::x86_64::__cpuid_count(0xd, 2);
        d.eax == 256 && d.ebx == xsave::AVX_OFFSET as u32
    })
}

/// Per-thread engine state: the stub context, the bounce buffer, the plan and stub caches.
struct Engine {
    ctx: Box<StubCtxCell>,
    plans: HashMap<(Instruction, u8), Plan>,
    stubs: stub::Stubs,
}

/// The bounce buffer, the stub context and the staging areas, kept together. The bounce buffer
/// comes first and the cell is 64-byte aligned: VMOVDQA/VMOVAPS with a 256-bit operand need it
/// 32-byte aligned on the host.
#[repr(C, align(64))]
struct StubCtxCell {
    bounce: [u8; 512],
    ctx: stub::StubCtx,
    staged: FxArea,
    staged_ymmh: YmmHigh,
}

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(Engine {
        ctx: Box::new(StubCtxCell {
            ctx: stub::StubCtx {
                host_cw: 0,
                host_mxcsr: 0,
                gpr: [0; 16],
                fx_in: std::ptr::null(),
                fx_out: std::ptr::null_mut(),
                ymmh_in: std::ptr::null(),
                ymmh_out: std::ptr::null_mut(),
                flags_in: 0,
                flags_out: 0,
            },
            bounce: [0; 512],
            staged: FxArea([0; 512]),
            staged_ymmh: YmmHigh([0; 256]),
        }),
        plans: HashMap::default(),
        stubs: stub::Stubs::default(),
    });
}

fn stop(cpu: &mut CpuState, what: &'static str) -> Exception {
    cpu.stop_what = what;
    Exception::stop()
}

/// CR0/CR4 checks before anything else (SDM Vol. 3, 2.5 and Table 2-2; Vol. 2, the
/// "Protected Mode Exceptions" of each instruction).
fn check_cr(cpu: &CpuState, unit: Unit) -> Result<(), Exception> {
    let em = cpu.cr0 & cr::CR0_EM != 0;
    let ts = cpu.cr0 & cr::CR0_TS != 0;
    let mp = cpu.cr0 & cr::CR0_MP != 0;
    match unit {
        Unit::X87 | Unit::Fxsr if em || ts => Err(Exception::nm()),
        Unit::Wait if ts && mp => Err(Exception::nm()),
        Unit::Mmx if em => Err(Exception::ud()),
        Unit::Sse if em || cpu.cr4 & cr::CR4_OSFXSR == 0 => Err(Exception::ud()),
        Unit::Mmx | Unit::Sse if ts => Err(Exception::nm()),
        // VEX (SDM Vol. 2, 2.3.12): #UD without CR4.OSXSAVE or with XCR0[2:1] != 11b, then
        // #NM with CR0.TS; CR0.EM does not apply.
        Unit::Avx if cpu.cr4 & cr::CR4_OSXSAVE == 0 || cpu.xcr0 & 6 != 6 => Err(Exception::ud()),
        Unit::Avx if ts => Err(Exception::nm()),
        _ => Ok(()),
    }
}

fn native_step(cpu: &mut CpuState, env: &mut dyn Env, x: &HelperArgs) -> Result<u64, Exception> {
    ENGINE.with(|e| step(&mut e.borrow_mut(), cpu, env, x.insn))
}

fn step(
    eng: &mut Engine,
    cpu: &mut CpuState,
    env: &mut dyn Env,
    insn: &Instruction,
) -> Result<u64, Exception> {
    let bits = cpu.code_bits();
    if xsave::handles(insn) {
        xsave::run(cpu, env, insn, bits)?;
        cpu.native_steps += 1;
        return Ok(0);
    }
    let plan = match eng.plans.get(&(*insn, bits)) {
        Some(p) => *p,
        None => {
            if eng.stubs.len() >= MAX_STUBS {
                eng.plans.clear();
                eng.stubs.clear();
            }
            match plan::build(insn, bits as u32, &mut eng.stubs) {
                Ok(p) => {
                    eng.plans.insert((*insn, bits), p);
                    p
                }
                Err(Refusal::Ud) => return Err(Exception::ud()),
                Err(Refusal::Unsupported(what)) => return Err(stop(cpu, what)),
            }
        }
    };
    check_cr(cpu, plan.unit)?;
    if plan.x87_masked && (cpu.fx.fcw() & 0x3f != 0x3f || cpu.fx.fsw() & 0x80 != 0) {
        return Err(stop(
            cpu,
            "x87 instruction with unmasked floating-point exceptions (not supported)",
        ));
    }
    if plan.sse_masked && cpu.fx.mxcsr() & 0x1f80 != 0x1f80 {
        return Err(stop(
            cpu,
            "SSE instruction with unmasked SIMD floating-point exceptions (not supported)",
        ));
    }

    let cell = &mut *eng.ctx;
    let user = cpu.cpl() == 3;
    // ---- memory operand into the bounce buffer
    let mut operand = None;
    if let Some(mp) = plan.mem {
        let op = memory::operand(cpu, insn, bits)?;
        if op.lin & (mp.align - 1) != 0 {
            return Err(Exception::gp(0));
        }
        let buf = &mut cell.bounce[..mp.size];
        if mp.read {
            memory::read(cpu, env, &op, buf, user)?;
        } else {
            buf.fill(0);
        }
        operand = Some((op, mp));
    }
    let mask = guest_mxcsr_mask();
    let new_mxcsr = match plan.special {
        Special::Ldmxcsr => Some(u32::from_le_bytes([
            cell.bounce[0],
            cell.bounce[1],
            cell.bounce[2],
            cell.bounce[3],
        ])),
        Special::Fxrstor(_) => Some(u32::from_le_bytes([
            cell.bounce[24],
            cell.bounce[25],
            cell.bounce[26],
            cell.bounce[27],
        ])),
        _ => None,
    };
    if new_mxcsr.is_some_and(|v| v & !mask != 0) {
        return Err(Exception::gp(0));
    }

    // ---- run
    let writes = operand.as_ref().is_some_and(|(_, mp)| mp.write);
    let ctx = &mut cell.ctx;
    ctx.gpr = cpu.gpr;
    if operand.is_some() {
        ctx.gpr[plan.base as usize] = cell.bounce.as_mut_ptr() as u64;
    }
    ctx.fx_in = &cpu.fx;
    // With a memory write still to come (and fault), the new state is staged, not committed.
    ctx.fx_out = if writes {
        &mut cell.staged
    } else {
        &mut cpu.fx
    };
    // Only VEX stubs read and write the upper halves.
    ctx.ymmh_in = &cpu.ymmh;
    ctx.ymmh_out = if writes {
        &mut cell.staged_ymmh
    } else {
        &mut cpu.ymmh
    };
    ctx.flags_in = (cpu.rflags() & rflags::ARITH) | rflags::IF | rflags::FIXED1;
    // SAFETY: the stub was generated for this instruction with its memory operand (if any) at
    // [base], and `ctx.gpr[base]` points at the 512-byte, 64-byte aligned bounce buffer, which
    // covers the operand; the plan excluded control flow, stack and segment semantics, RSP
    // operands, implicit memory operands and unmasked FP exceptions, so the instruction cannot
    // fault, `fx_in`/`fx_out` point at valid 16-byte aligned FXSAVE areas and
    // `ymmh_in`/`ymmh_out` at 256-byte upper-half arrays.
    unsafe { (plan.stub)(ctx) };

    // ---- write back, then commit
    let ptr_before = cpu.x87_ptr;
    let mut ptr = ptr_before;
    match plan.special {
        Special::Init => ptr = Default::default(),
        Special::X87Op => {
            ptr.fip = insn.ip();
            ptr.fcs = cpu.seg[crate::cpu::Seg::Cs as usize].selector;
            ptr.fop = plan.fop;
            if let Some((op, _)) = &operand {
                ptr.fdp = op.offset;
                ptr.fds = op.selector;
            }
        }
        Special::LoadEnv(f) | Special::Fxrstor(f) => ptr = ptrs::load(f, &cell.bounce),
        Special::StoreEnv(f) => ptrs::store(f, &mut cell.bounce, &ptr_before),
        Special::SaveEnv(f) => {
            ptrs::store(f, &mut cell.bounce, &ptr_before);
            ptr = Default::default();
        }
        Special::Fxsave(f) => {
            ptrs::store(f, &mut cell.bounce, &ptr_before);
            cell.bounce[FxArea::MXCSR_MASK..FxArea::MXCSR_MASK + 4]
                .copy_from_slice(&mask.to_le_bytes());
        }
        Special::Ldmxcsr | Special::Keep => {}
    }
    if let Some((op, mp)) = &operand {
        if mp.write {
            memory::write(cpu, env, op, &cell.bounce[..mp.size], user)?;
            cpu.fx = cell.staged;
            if plan.unit == Unit::Avx {
                cpu.ymmh = cell.staged_ymmh;
            }
        }
    }
    for r in 0..16 {
        if plan.gpr_written & (1 << r) != 0 {
            cpu.gpr[r] = cell.ctx.gpr[r];
        }
    }
    if plan.flags_out {
        crate::helpers::set_arith(cpu, cell.ctx.flags_out & rflags::ARITH);
    }
    cpu.x87_ptr = ptr;
    ptrs::store(ptrs::PtrFormat::Fx64, &mut cpu.fx.0, &ptr);
    cpu.fx.set32(FxArea::MXCSR_MASK, mask);
    cpu.native_steps += 1;
    Ok(0)
}
