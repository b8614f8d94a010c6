//! THE classification table: every x86 instruction the scanner meets is lifted into micro-ops,
//! handed to the runtime as a callout, or (once the native-step engine exists) stepped
//! natively. One table, one place: `classify`.
//!
//! Callouts are the privileged instructions and the sensitive-but-unprivileged ones (Popek and
//! Goldberg; Robin and Irvine, "Analysis of the Intel Pentium's ability to support a secure
//! virtual machine monitor", USENIX Security 2000): their result depends on or changes state
//! the monitor virtualises (IF/IOPL, descriptor tables, segment hidden parts, CPL, CRs, MSRs).

use iced_x86::{Instruction, Mnemonic};

/// What the runtime must do for a callout instruction.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CalloutKind {
    Pushf,
    Popf,
    Cli,
    Sti,
    /// SGDT/SIDT/SLDT/STR/SMSW: reads of system registers (unprivileged unless CR4.UMIP).
    StoreSystemReg,
    /// LGDT/LIDT/LLDT/LTR/LMSW/CLTS.
    LoadSystemReg,
    /// LAR/LSL/VERR/VERW: descriptor queries.
    DescriptorQuery,
    /// MOV to/from Sreg, PUSH/POP Sreg, LDS/LES/LFS/LGS/LSS.
    SegmentLoad,
    /// JMP/CALL/RET far.
    FarTransfer,
    /// INT n, INT3, INTO, INT1.
    SoftwareInterrupt,
    Iret,
    /// SYSCALL/SYSRET/SYSENTER/SYSEXIT.
    FastSystemCall,
    Hlt,
    /// IN/OUT/INS/OUTS.
    PortIo,
    /// MOV to/from CR0-CR8 and DR0-DR7.
    MovControl,
    Invlpg,
    Msr,
    Cpuid,
    /// RDPID (RDTSC/RDTSCP are lifted through a helper).
    TimeStamp,
    Swapgs,
    /// XGETBV/XSETBV.
    ExtendedControl,
    /// WBINVD/INVD/CLFLUSH-like cache control with no visible effect on a coherent host.
    CacheControl,
    /// RDFSBASE/RDGSBASE/WRFSBASE/WRGSBASE.
    SegmentBase,
    /// UD0/UD1/UD2 and instructions this virtual CPU does not implement: raise #UD.
    Undefined,
    /// STAC/CLAC (RFLAGS.AC, privileged).
    AlignmentCheck,
    /// MONITOR/MWAIT: treated as NOP and HLT.
    MonitorWait,
    /// RDRAND/RDSEED: the host's random number generator (no state to emulate).
    Random,
}

/// The class of an instruction (design.md 3.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Class {
    /// Lifted into micro-ops.
    Lift,
    /// Handed to the runtime; always ends the block.
    Callout(CalloutKind),
    /// x87/MMX/SSE data operations, run on the host CPU one at a time by the native-step
    /// engine (`native_step`), which also raises #UD for VEX/EVEX (AVX is not offered) and stops
    /// on anything outside its allowlist.
    NativeStep,
    /// Not handled at all: stops the VM with "unsupported instruction".
    Unsupported,
}

pub fn classify(insn: &Instruction) -> Class {
    use CalloutKind as K;
    use Mnemonic::*;
    let c = |k| Class::Callout(k);
    // MOVSD and CMPSD name both a string instruction and an SSE2 instruction (XMM operands).
    if matches!(insn.mnemonic(), Movsd | Cmpsd) && uses_xmm(insn) {
        return Class::NativeStep;
    }
    let class = match insn.mnemonic() {
        // ---- lifted: integer ALU, moves, stack, strings, bit ops, branches ----
        Add | Adc | Sub | Sbb | And | Or | Xor | Cmp | Test | Inc | Dec | Neg | Not | Mov
        | Movzx | Movsx | Movsxd | Lea | Xchg | Xadd | Cmpxchg | Cmpxchg8b | Cmpxchg16b | Push
        | Pop | Pushad | Popad | Pusha | Popa | Enter | Leave | Call | Ret | Jmp | Jo | Jno
        | Jb | Jae | Je | Jne | Jbe | Ja | Js | Jns | Jp | Jnp | Jl | Jge | Jle | Jg | Jcxz
        | Jecxz | Jrcxz | Loop | Loope | Loopne | Seto | Setno | Setb | Setae | Sete | Setne
        | Setbe | Seta | Sets | Setns | Setp | Setnp | Setl | Setge | Setle | Setg | Cmovo
        | Cmovno | Cmovb | Cmovae | Cmove | Cmovne | Cmovbe | Cmova | Cmovs | Cmovns | Cmovp
        | Cmovnp | Cmovl | Cmovge | Cmovle | Cmovg | Shl | Shr | Sar | Sal | Rol | Ror | Rcl
        | Rcr | Shld | Shrd | Mul | Imul | Div | Idiv | Bt | Bts | Btr | Btc | Bsf | Bsr
        | Tzcnt | Lzcnt | Popcnt | Bswap | Cbw | Cwde | Cdqe | Cwd | Cdq | Cqo | Clc | Stc
        | Cmc | Cld | Std | Lahf | Sahf | Nop | Pause | Movsb | Movsw | Movsd | Movsq | Stosb
        | Stosw | Stosd | Stosq | Lodsb | Lodsw | Lodsd | Lodsq | Cmpsb | Cmpsw | Cmpsd | Cmpsq
        | Scasb | Scasw | Scasd | Scasq | Xlatb | Daa | Das | Aaa | Aas | Aam | Aad | Salc
        | Bound | Arpl | Lfence | Sfence | Mfence | Prefetchnta | Prefetcht0 | Prefetcht1
        | Prefetcht2 | Prefetchw | Endbr32 | Endbr64 | Clflush | Clflushopt | Clwb => Class::Lift,
        // ---- callouts ----
        Pushf | Pushfd | Pushfq => c(K::Pushf),
        Popf | Popfd | Popfq => c(K::Popf),
        Cli => c(K::Cli),
        Sti => c(K::Sti),
        Sgdt | Sidt | Sldt | Str | Smsw => c(K::StoreSystemReg),
        Lgdt | Lidt | Lldt | Ltr | Lmsw | Clts => c(K::LoadSystemReg),
        Lar | Lsl | Verr | Verw => c(K::DescriptorQuery),
        Lds | Les | Lfs | Lgs | Lss => c(K::SegmentLoad),
        Int | Int3 | Into | Int1 => c(K::SoftwareInterrupt),
        Iret | Iretd | Iretq => c(K::Iret),
        Syscall | Sysret | Sysretq | Sysenter | Sysexit | Sysexitq => c(K::FastSystemCall),
        Hlt => c(K::Hlt),
        In | Out | Insb | Insw | Insd | Outsb | Outsw | Outsd => c(K::PortIo),
        Invlpg | Invpcid => c(K::Invlpg),
        Rdmsr | Wrmsr => c(K::Msr),
        Cpuid => c(K::Cpuid),
        // RDTSC/RDTSCP are lifted (a helper checks CR4.TSD); RDPID reads IA32_TSC_AUX.
        Rdtsc | Rdtscp => Class::Lift,
        Rdpid => c(K::TimeStamp),
        Swapgs => c(K::Swapgs),
        Xgetbv | Xsetbv => c(K::ExtendedControl),
        Wbinvd | Invd | Wbnoinvd => c(K::CacheControl),
        Rdfsbase | Rdgsbase | Wrfsbase | Wrgsbase => c(K::SegmentBase),
        Ud0 | Ud1 | Ud2 => c(K::Undefined),
        Stac | Clac => c(K::AlignmentCheck),
        Monitor | Mwait => c(K::MonitorWait),
        Rdrand | Rdseed => c(K::Random),
        // Far forms of jmp/call/ret and everything touching segment registers are sensitive.
        Retf => c(K::FarTransfer),
        // WAIT/FWAIT checks for pending x87 exceptions: the native-step engine's job.
        Wait => Class::NativeStep,
        // ---- native-step candidates: SSE/AVX/x87 data operations ----
        _ if is_fpu_or_simd(insn) => Class::NativeStep,
        _ => Class::Unsupported,
    };
    refine(class, insn)
}

/// Operand-dependent cases of otherwise lifted mnemonics: far JMP/CALL, MOV/PUSH/POP of
/// segment registers and MOV to/from control and debug registers.
fn refine(class: Class, insn: &Instruction) -> Class {
    use iced_x86::{OpKind, Register};
    if class != Class::Lift {
        return class;
    }
    let is_sreg = |r: Register| r.is_segment_register();
    let is_ctl = |r: Register| r.is_cr() || r.is_dr() || r.is_tr();
    match insn.mnemonic() {
        Mnemonic::Jmp | Mnemonic::Call => {
            if insn.is_jmp_far()
                || insn.is_call_far()
                || insn.is_jmp_far_indirect()
                || insn.is_call_far_indirect()
            {
                return Class::Callout(CalloutKind::FarTransfer);
            }
        }
        Mnemonic::Mov | Mnemonic::Push | Mnemonic::Pop => {
            for i in 0..insn.op_count() {
                if insn.op_kind(i) == OpKind::Register {
                    let r = insn.op_register(i);
                    if is_sreg(r) {
                        return Class::Callout(CalloutKind::SegmentLoad);
                    }
                    if is_ctl(r) {
                        return Class::Callout(CalloutKind::MovControl);
                    }
                }
            }
        }
        _ => {}
    }
    Class::Lift
}

fn uses_xmm(insn: &Instruction) -> bool {
    (0..insn.op_count())
        .any(|i| insn.op_kind(i) == iced_x86::OpKind::Register && insn.op_register(i).is_xmm())
}

/// x87, MMX, SSE and AVX data operations, decided by the CPUID feature iced-x86 records for the
/// encoding rather than by mnemonic spelling. Every VEX/EVEX/XOP encoding but the
/// general-purpose BMI ones counts too: the native-step engine raises #UD for them.
fn is_fpu_or_simd(insn: &Instruction) -> bool {
    use iced_x86::CpuidFeature as F;
    use iced_x86::EncodingKind as E;
    if matches!(insn.encoding(), E::VEX | E::EVEX | E::XOP)
        && !insn
            .cpuid_features()
            .iter()
            .all(|f| matches!(f, F::BMI1 | F::BMI2))
    {
        return true;
    }
    insn.cpuid_features().iter().any(|f| {
        matches!(
            f,
            F::FPU
                | F::FPU287
                | F::FPU387
                | F::MMX
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
                | F::FXSR
                | F::XSAVE
                | F::XSAVEOPT
                | F::XSAVEC
                | F::XSAVES
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn class(bytes: &[u8]) -> Class {
        classify(&Decoder::new(64, bytes, DecoderOptions::NONE).decode())
    }

    #[test]
    fn sse_movsd_and_cmpsd_are_not_strings() {
        assert_eq!(class(&[0xa5]), Class::Lift); // movsd (string)
        assert_eq!(class(&[0xa7]), Class::Lift); // cmpsd (string)
        assert_eq!(class(&[0xf2, 0x0f, 0x10, 0xc1]), Class::NativeStep); // movsd xmm0,xmm1
        assert_eq!(class(&[0xf2, 0x0f, 0xc2, 0xc1, 0x01]), Class::NativeStep); // cmpsd xmm
    }

    #[test]
    fn simd_wait_and_vex_go_to_native_step() {
        assert_eq!(class(&[0x9b]), Class::NativeStep); // fwait
        assert_eq!(class(&[0xd9, 0xe8]), Class::NativeStep); // fld1
        assert_eq!(class(&[0xc5, 0xf0, 0x58, 0xc2]), Class::NativeStep); // vaddps (→ #UD)
        assert_eq!(
            class(&[0x62, 0xf1, 0x74, 0x48, 0x58, 0xc2]),
            Class::NativeStep
        ); // EVEX
        assert_eq!(class(&[0xc4, 0xe2, 0x70, 0xf2, 0xc2]), Class::Unsupported); // andn (BMI1)
    }
}
