//! The allowlist of the native-step engine and the per-instruction plan: everything decided
//! once per distinct instruction (which CR0/CR4 checks apply, the memory operand, the GPRs and
//! flags it reads and writes, the stub that runs it). Anything outside the allowlist is refused:
//! #UD where real hardware with this virtual CPU's CPUID and CR4 raises it, else a clear stop.

use super::ptrs::PtrFormat;
use super::stub::{self, StubFn};
use iced_x86::{
    CpuidFeature as F, EncodingKind, Instruction, InstructionInfoFactory, MemorySize, Mnemonic,
    OpAccess, OpKind, Register, RflagsBits,
};

/// Which row of SDM Vol. 3, Table 2-2 ("Action Taken By x87 FPU Instructions for Different
/// Combinations of EM, MP, and TS") and which CR4.OSFXSR rule (Vol. 3, 2.5) applies.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Unit {
    /// x87 instructions: #NM if CR0.EM or CR0.TS.
    X87,
    /// WAIT/FWAIT: #NM if CR0.TS and CR0.MP.
    Wait,
    /// MMX-register instructions: #UD if CR0.EM, #NM if CR0.TS.
    Mmx,
    /// XMM-register instructions and LDMXCSR/STMXCSR: #UD if CR0.EM or !CR4.OSFXSR, #NM if
    /// CR0.TS.
    Sse,
    /// FXSAVE/FXRSTOR: #NM if CR0.TS or CR0.EM (SDM Vol. 2, FXSAVE "Protected Mode Exceptions").
    Fxsr,
    /// General-purpose-only instructions of the SSE families (MOVNTI, CRC32): no CR0 checks.
    Gpr,
    /// VEX-encoded AVX/AVX2/FMA/F16C: #UD without CR4.OSXSAVE or XCR0[2:1] = 11b, #NM if
    /// CR0.TS (SDM Vol. 2, 2.3.12). The stub loads and stores the upper YMM halves too.
    Avx,
}

/// What a refused instruction turns into.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Real hardware raises #UD (EVEX/XOP, XSAVEOPT/XSAVEC/XSAVES, LOCK, a feature the
    /// host and so the guest CPUID lack).
    Ud,
    /// Valid, but not run natively: stop the VM with this reason.
    Unsupported(&'static str),
}

/// The memory operand.
#[derive(Copy, Clone, Debug)]
pub struct MemPlan {
    pub size: usize,
    /// Copy guest memory into the bounce buffer before the run (the instruction reads it, or
    /// may leave some of it unwritten).
    pub read: bool,
    pub write: bool,
    /// Required alignment (#GP(0) otherwise): 16 for legacy SSE 128-bit operands (SDM Vol. 1,
    /// 10.4.1.1 / 11.4.1.1) and FXSAVE/FXRSTOR, else 1.
    pub align: u64,
}

/// Extra work around the run for state-management instructions.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Special {
    /// LDMXCSR: #GP(0) if the new MXCSR sets reserved bits (SDM Vol. 2, LDMXCSR).
    Ldmxcsr,
    /// FXRSTOR(64): the MXCSR check, then the x87 pointers come from the image.
    Fxrstor(PtrFormat),
    /// FXSAVE(64): the stored image gets the tracked pointers and the guest MXCSR_MASK.
    Fxsave(PtrFormat),
    /// FLDENV/FRSTOR: the x87 pointers come from the environment.
    LoadEnv(PtrFormat),
    /// FNSTENV: the stored environment gets the tracked pointers.
    StoreEnv(PtrFormat),
    /// FNSAVE: as FNSTENV, then the FPU is initialised (pointers cleared).
    SaveEnv(PtrFormat),
    /// FNINIT: pointers cleared.
    Init,
    /// A non-control x87 instruction: it becomes the "last instruction" (SDM Vol. 1, 8.1.8).
    X87Op,
    /// A control instruction that leaves the pointers alone.
    Keep,
}

#[derive(Copy, Clone, Debug)]
pub struct Plan {
    pub unit: Unit,
    pub mem: Option<MemPlan>,
    /// Bit r: the instruction writes GPR r (copied back to `CpuState` after the run).
    pub gpr_written: u16,
    pub flags_out: bool,
    /// The run needs every x87 exception masked and none pending (FCW[5:0] all set, FSW.ES
    /// clear), else the host would take #MF (SIGFPE).
    pub x87_masked: bool,
    /// The run needs every SIMD exception masked (MXCSR[12:7] all set), else #XM (SIGFPE).
    pub sse_masked: bool,
    pub special: Special,
    /// The x87 opcode of a non-control x87 instruction (FOP).
    pub fop: u16,
    /// The GPR that holds the bounce buffer's address in the stub (when `mem` is set).
    pub base: u8,
    pub stub: StubFn,
}

/// VEX instructions that require their operand aligned to its size (SDM Vol. 2, 2.4, "Memory
/// Alignment"): the other VEX forms take any address.
const VEX_ALIGNED: &[Mnemonic] = &[
    Mnemonic::Vmovaps,
    Mnemonic::Vmovapd,
    Mnemonic::Vmovdqa,
    Mnemonic::Vmovntps,
    Mnemonic::Vmovntpd,
    Mnemonic::Vmovntdq,
    Mnemonic::Vmovntdqa,
];

const UNALIGNED_OK: &[Mnemonic] = &[
    Mnemonic::Movups,
    Mnemonic::Movupd,
    Mnemonic::Movdqu,
    Mnemonic::Lddqu,
    Mnemonic::Pcmpestri,
    Mnemonic::Pcmpestri64,
    Mnemonic::Pcmpestrm,
    Mnemonic::Pcmpestrm64,
    Mnemonic::Pcmpistri,
    Mnemonic::Pcmpistrm,
];

/// x87 control instructions (SDM Vol. 1, 8.1.9): they do not update FIP/FDP/FOP.
fn is_x87_control(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Fninit
            | Finit
            | Fnclex
            | Fclex
            | Fldcw
            | Fnstcw
            | Fstcw
            | Fnstsw
            | Fstsw
            | Fnstenv
            | Fstenv
            | Fldenv
            | Fnsave
            | Fsave
            | Frstor
            | Wait
    )
}

/// x87 instructions that do not check for pending unmasked exceptions (SDM Vol. 1, 8.3.12,
/// the "no-wait" forms): a guest may run them to recover from an unmasked state.
fn is_nowait(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(m, Fninit | Fnclex | Fnstcw | Fnstsw | Fnstenv | Fnsave)
}

/// The host must have the feature (the guest's CPUID mirrors the host's leaf 1), else #UD.
fn host_has(f: F) -> bool {
    match f {
        F::SSE3 => std::arch::is_x86_feature_detected!("sse3"),
        F::SSSE3 => std::arch::is_x86_feature_detected!("ssse3"),
        F::SSE4_1 => std::arch::is_x86_feature_detected!("sse4.1"),
        F::SSE4_2 => std::arch::is_x86_feature_detected!("sse4.2"),
        F::AVX => super::avx_offered(),
        F::AVX2 => super::avx_offered() && std::arch::is_x86_feature_detected!("avx2"),
        F::FMA => super::avx_offered() && std::arch::is_x86_feature_detected!("fma"),
        F::F16C => super::avx_offered() && std::arch::is_x86_feature_detected!("f16c"),
        // Architectural in x86-64: FPU, CMOV, MMX, FXSR, SSE, SSE2.
        _ => true,
    }
}

fn gpr_index(r: Register) -> Option<u8> {
    if r.is_gpr() {
        Some((r.full_register() as u32 - Register::RAX as u32) as u8)
    } else {
        None
    }
}

/// Decide and prepare: the allowlist (design.md 3.1) in one function.
pub fn build(insn: &Instruction, bits: u32, stubs: &mut stub::Stubs) -> Result<Plan, Refusal> {
    let m = insn.mnemonic();
    let feats = insn.cpuid_features();
    let vex = insn.encoding() == EncodingKind::VEX;
    match insn.encoding() {
        EncodingKind::Legacy => {}
        EncodingKind::VEX if feats.iter().all(|f| matches!(f, F::BMI1 | F::BMI2)) => {
            return Err(Refusal::Unsupported(
                "VEX-encoded general-purpose instruction",
            ));
        }
        // AVX, AVX2, FMA, F16C: offered when the host runs them (`avx_offered`).
        EncodingKind::VEX => {
            if !feats
                .iter()
                .all(|f| matches!(f, F::AVX | F::AVX2 | F::FMA | F::F16C))
            {
                return Err(Refusal::Unsupported(
                    "VEX instruction outside the native-step allowlist (AVX, AVX2, FMA, F16C)",
                ));
            }
        }
        // EVEX (AVX-512) and XOP are not offered: #UD, as on hardware without them.
        EncodingKind::EVEX | EncodingKind::XOP => return Err(Refusal::Ud),
        _ => {
            return Err(Refusal::Unsupported(
                "instruction encoding not native-stepped",
            ))
        }
    }
    if feats
        .iter()
        .any(|f| matches!(f, F::XSAVE | F::XSAVEOPT | F::XSAVEC | F::XSAVES))
    {
        // XSAVE family with CR4.OSXSAVE = 0 (SDM Vol. 2, XSAVE "Protected Mode Exceptions").
        return Err(Refusal::Ud);
    }
    let allowed = |f: &F| {
        matches!(
            f,
            F::FPU
                | F::FPU287
                | F::FPU387
                | F::CMOV
                | F::MMX
                | F::FXSR
                | F::SSE
                | F::SSE2
                | F::SSE3
                | F::SSSE3
                | F::SSE4_1
                | F::SSE4_2
                | F::AVX
                | F::AVX2
                | F::FMA
                | F::F16C
        )
    };
    // WAIT/FWAIT is an 8086 instruction to iced; FSETPM (287 only) is refused.
    if m != Mnemonic::Wait && (!feats.iter().all(allowed) || m == Mnemonic::Fsetpm) {
        return Err(Refusal::Unsupported(
            "x87/SIMD instruction outside the native-step allowlist",
        ));
    }
    if !feats.iter().all(|f| host_has(*f)) {
        return Err(Refusal::Ud);
    }
    if insn.has_lock_prefix() {
        return Err(Refusal::Ud);
    }

    // ---- operands: registers, immediates and at most one explicit memory operand
    let mut uses_xmm = false;
    let mut uses_mm = false;
    let mut mem_ops = 0;
    for i in 0..insn.op_count() {
        match insn.op_kind(i) {
            OpKind::Register => {
                let r = insn.op_register(i);
                if r.is_gpr() {
                    if r.full_register() == Register::RSP {
                        return Err(Refusal::Unsupported(
                            "x87/SSE instruction with RSP as an operand",
                        ));
                    }
                } else if (r.is_xmm() || (vex && r.is_ymm())) && r.number() < 16 {
                    uses_xmm = true;
                } else if r.is_mm() {
                    uses_mm = true;
                } else if !r.is_st() {
                    return Err(Refusal::Unsupported(
                        "x87/SSE instruction with an unusual register operand",
                    ));
                }
            }
            OpKind::Memory => mem_ops += 1,
            OpKind::Immediate8 | OpKind::Immediate8_2nd | OpKind::Immediate16 => {}
            _ => {
                return Err(Refusal::Unsupported(
                    "x87/SSE instruction with an unusual operand kind",
                ))
            }
        }
    }
    if mem_ops == 1 && !insn.memory_index().is_gpr() && insn.memory_index() != Register::None {
        return Err(Refusal::Unsupported(
            "VSIB (gather) memory operand is not native-stepped",
        ));
    }
    if mem_ops > 1 {
        return Err(Refusal::Unsupported(
            "x87/SSE instruction with two memory operands",
        ));
    }

    // ---- implicit operands, from iced's instruction info
    let mut factory = InstructionInfoFactory::new();
    let info = factory.info(insn);
    let mut gpr_used: u16 = 0;
    let mut gpr_written: u16 = 0;
    for u in info.used_registers() {
        let r = u.register();
        if r == Register::RIP || r == Register::EIP {
            continue;
        }
        if r.is_xmm() || r.is_ymm() {
            uses_xmm = true;
        }
        if let Some(g) = gpr_index(r) {
            if g == 4 {
                // RSP only addressing the memory operand is fine: the stub rewrites that
                // operand to [base] and never touches the guest's stack pointer.
                let addressing = mem_ops == 1
                    && [insn.memory_base(), insn.memory_index()]
                        .iter()
                        .any(|m| m.full_register() == Register::RSP);
                if addressing && u.access() == OpAccess::Read {
                    continue;
                }
                return Err(Refusal::Unsupported(
                    "x87/SSE instruction that uses the stack pointer",
                ));
            }
            gpr_used |= 1 << g;
            if matches!(
                u.access(),
                OpAccess::Write
                    | OpAccess::ReadWrite
                    | OpAccess::CondWrite
                    | OpAccess::ReadCondWrite
            ) {
                gpr_written |= 1 << g;
            }
        }
    }
    let used_mem = info.used_memory();
    if used_mem.len() > 1 || (used_mem.len() == 1 && mem_ops == 0) {
        return Err(Refusal::Unsupported(
            "x87/SSE instruction with an implicit memory operand (MASKMOVQ/MASKMOVDQU)",
        ));
    }
    let access = used_mem.first().map(|u| u.access());

    // ---- the CR0/CR4 unit and the exception-mask requirements
    let x87 = feats.iter().any(|f| matches!(f, F::FPU | F::FPU387)) || m == Mnemonic::Fisttp;
    let unit = match m {
        Mnemonic::Fxsave | Mnemonic::Fxsave64 | Mnemonic::Fxrstor | Mnemonic::Fxrstor64 => {
            Unit::Fxsr
        }
        Mnemonic::Wait => Unit::Wait,
        _ if vex => Unit::Avx,
        Mnemonic::Ldmxcsr | Mnemonic::Stmxcsr => Unit::Sse,
        _ if x87 => Unit::X87,
        _ if uses_xmm => Unit::Sse,
        _ if uses_mm || feats.contains(&F::MMX) => Unit::Mmx,
        _ => Unit::Gpr,
    };
    let x87_masked = match unit {
        Unit::X87 => !is_nowait(m),
        Unit::Wait | Unit::Mmx => true,
        Unit::Sse => uses_mm,
        Unit::Fxsr | Unit::Gpr | Unit::Avx => false,
    };
    let sse_masked = matches!(unit, Unit::Sse | Unit::Avx)
        && !matches!(
            m,
            Mnemonic::Ldmxcsr | Mnemonic::Stmxcsr | Mnemonic::Vldmxcsr | Mnemonic::Vstmxcsr
        );

    // ---- memory operand
    let msize = insn.memory_size();
    let mem = match access {
        None | Some(OpAccess::NoMemAccess) => None,
        Some(a) => {
            let size = msize.size();
            if size == 0 || size > 512 {
                return Err(Refusal::Unsupported(
                    "x87/SSE memory operand of unusual size",
                ));
            }
            let state_store = matches!(
                m,
                Mnemonic::Fxsave
                    | Mnemonic::Fxsave64
                    | Mnemonic::Fnstenv
                    | Mnemonic::Fstenv
                    | Mnemonic::Fnsave
                    | Mnemonic::Fsave
            );
            let write = matches!(
                a,
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            );
            let read = !matches!(a, OpAccess::Write) || state_store;
            let align = if unit == Unit::Fxsr
                || (unit == Unit::Sse && size == 16 && !UNALIGNED_OK.contains(&m))
            {
                16
            } else if unit == Unit::Avx && VEX_ALIGNED.contains(&m) {
                size as u64
            } else {
                1
            };
            Some(MemPlan {
                size,
                read,
                write,
                align,
            })
        }
    };

    let fmt_env = if msize == MemorySize::FpuEnv14 || msize == MemorySize::FpuState94 {
        PtrFormat::Env16
    } else {
        PtrFormat::Env32
    };
    let special = match m {
        Mnemonic::Ldmxcsr | Mnemonic::Vldmxcsr => Special::Ldmxcsr,
        Mnemonic::Fxrstor => Special::Fxrstor(PtrFormat::Fx32),
        Mnemonic::Fxrstor64 => Special::Fxrstor(PtrFormat::Fx64),
        Mnemonic::Fxsave => Special::Fxsave(PtrFormat::Fx32),
        Mnemonic::Fxsave64 => Special::Fxsave(PtrFormat::Fx64),
        Mnemonic::Fldenv | Mnemonic::Frstor => Special::LoadEnv(fmt_env),
        Mnemonic::Fnstenv | Mnemonic::Fstenv => Special::StoreEnv(fmt_env),
        Mnemonic::Fnsave | Mnemonic::Fsave => Special::SaveEnv(fmt_env),
        Mnemonic::Fninit | Mnemonic::Finit => Special::Init,
        _ if unit == Unit::X87 && !is_x87_control(m) => Special::X87Op,
        _ => Special::Keep,
    };
    let fop = if special == Special::X87Op {
        x87_opcode(insn, bits)
    } else {
        0
    };

    // ---- the stub: the instruction with its memory operand at [base], base a free GPR
    let base = (0u8..16)
        .find(|&r| r != 4 && gpr_used & (1 << r) == 0)
        .ok_or(Refusal::Unsupported(
            "x87/SSE instruction uses every general-purpose register",
        ))?;
    let mut host = *insn;
    if mem_ops == 1 {
        host.set_memory_base(stub::GPR64[base as usize]);
        host.set_memory_index(Register::None);
        host.set_memory_index_scale(1);
        host.set_memory_displacement64(0);
        host.set_memory_displ_size(0);
        host.set_segment_prefix(Register::None);
    }
    // Only the six arithmetic flags: iced also reports the x87 condition codes C0..C3 here.
    const ARITH: u32 = RflagsBits::OF
        | RflagsBits::SF
        | RflagsBits::ZF
        | RflagsBits::AF
        | RflagsBits::CF
        | RflagsBits::PF;
    let flags_out = insn.rflags_modified() & ARITH != 0;
    // Flags the instruction leaves alone must come back unchanged: load them too.
    let flags_in = insn.rflags_read() & ARITH != 0 || flags_out;
    let stub = stubs
        .get(&host, flags_in, flags_out, vex)
        .map_err(Refusal::Unsupported)?;
    Ok(Plan {
        unit,
        mem,
        gpr_written,
        flags_out,
        x87_masked,
        sse_masked,
        special,
        fop,
        base,
        stub,
    })
}

/// FOP (SDM Vol. 1, 8.1.8, Figure 8-8): bits 10:8 are bits 2:0 of the first opcode byte
/// (D8H..DFH), bits 7:0 the ModR/M byte, from the instruction re-encoded in its own mode.
fn x87_opcode(insn: &Instruction, bits: u32) -> u16 {
    let mut enc = iced_x86::Encoder::new(bits);
    if enc.encode(insn, insn.ip()).is_err() {
        return 0;
    }
    let b = enc.take_buffer();
    match b.iter().position(|x| (0xd8..=0xdf).contains(x)) {
        Some(i) if i + 1 < b.len() => (((b[i] & 7) as u16) << 8) | b[i + 1] as u16,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn plan(bytes: &[u8]) -> Result<Plan, Refusal> {
        let insn = Decoder::with_ip(64, bytes, 0x1000, DecoderOptions::NONE).decode();
        build(&insn, 64, &mut stub::Stubs::default())
    }

    #[test]
    fn units_follow_the_sdm_table() {
        assert_eq!(plan(&[0x0f, 0x58, 0xc1]).unwrap().unit, Unit::Sse); // addps
        assert_eq!(plan(&[0xd9, 0xe8]).unwrap().unit, Unit::X87); // fld1
        assert_eq!(plan(&[0x9b]).unwrap().unit, Unit::Wait); // fwait
        assert_eq!(plan(&[0x0f, 0x77]).unwrap().unit, Unit::Mmx); // emms
        assert_eq!(plan(&[0x0f, 0x70, 0xc1, 0x1b]).unwrap().unit, Unit::Mmx); // pshufw mm
        assert_eq!(plan(&[0x0f, 0xae, 0x13]).unwrap().unit, Unit::Sse); // ldmxcsr [rbx]
        assert_eq!(plan(&[0x0f, 0xae, 0x03]).unwrap().unit, Unit::Fxsr); // fxsave [rbx]
        assert_eq!(plan(&[0x0f, 0xc3, 0x03]).unwrap().unit, Unit::Gpr); // movnti [rbx],eax
    }

    #[test]
    fn alignment_and_memory_access() {
        let movaps = plan(&[0x0f, 0x28, 0x03]).unwrap().mem.unwrap();
        assert_eq!((movaps.align, movaps.read, movaps.write), (16, true, false));
        let movups = plan(&[0x0f, 0x10, 0x03]).unwrap().mem.unwrap();
        assert_eq!(movups.align, 1);
        let store = plan(&[0x0f, 0x29, 0x03]).unwrap().mem.unwrap(); // movaps [rbx],xmm0
        assert_eq!((store.read, store.write), (false, true));
        let fxsave = plan(&[0x0f, 0xae, 0x03]).unwrap().mem.unwrap();
        assert_eq!((fxsave.size, fxsave.align, fxsave.read), (512, 16, true));
        let addsd = plan(&[0xf2, 0x0f, 0x58, 0x03]).unwrap().mem.unwrap();
        assert_eq!((addsd.size, addsd.align), (8, 1));
    }

    #[test]
    fn registers_flags_and_base() {
        let p = plan(&[0xdf, 0xe0]).unwrap(); // fnstsw ax
        assert_eq!(p.gpr_written, 1);
        let p = plan(&[0x66, 0x0f, 0x2f, 0xc1]).unwrap(); // comisd
        assert!(p.flags_out);
        let p = plan(&[0xd9, 0xe8]).unwrap(); // fld1: C1 is not an RFLAGS bit
        assert!(!p.flags_out);
        // movsd xmm0,[rax+rcx*8]: the base must avoid no register it reads as an operand.
        let p = plan(&[0xf2, 0x0f, 0x10, 0x04, 0xc8]).unwrap();
        assert!(p.base != 4);
        assert_eq!(p.special, Special::Keep);
        let p = plan(&[0xdd, 0x43, 0x08]).unwrap(); // fld qword [rbx+8]
        assert_eq!((p.special, p.fop), (Special::X87Op, 0x543));
    }

    #[test]
    fn refusals() {
        // VEX vaddps runs (as Unit::Avx) where the host offers AVX; VEX andn (BMI1): not
        // native-stepped; EVEX vaddps: #UD.
        if crate::native_step::avx_offered() {
            assert_eq!(plan(&[0xc5, 0xf0, 0x58, 0xc2]).unwrap().unit, Unit::Avx);
        } else {
            assert_eq!(plan(&[0xc5, 0xf0, 0x58, 0xc2]).unwrap_err(), Refusal::Ud);
        }
        assert_eq!(
            plan(&[0x62, 0xf1, 0x74, 0x48, 0x58, 0xc2]).unwrap_err(),
            Refusal::Ud
        );
        assert!(matches!(
            plan(&[0xc4, 0xe2, 0x70, 0xf2, 0xc2]).unwrap_err(),
            Refusal::Unsupported(_)
        ));
        // xsaveopt [rbx]: #UD (not offered; XSAVE/XRSTOR are emulated in xsave.rs).
        assert_eq!(plan(&[0x0f, 0xae, 0x33]).unwrap_err(), Refusal::Ud);
        // maskmovdqu (implicit [rdi]) and movd xmm0,esp.
        assert!(matches!(
            plan(&[0x66, 0x0f, 0xf7, 0xc1]),
            Err(Refusal::Unsupported(_))
        ));
        assert!(matches!(
            plan(&[0x66, 0x0f, 0x6e, 0xc4]),
            Err(Refusal::Unsupported(_))
        ));
        // aesenc: outside the allowlist.
        assert!(matches!(
            plan(&[0x66, 0x0f, 0x38, 0xdc, 0xc1]),
            Err(Refusal::Unsupported(_))
        ));
    }
}
