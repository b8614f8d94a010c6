//! The native-step engine against the host CPU: x87/MMX/SSE instructions run through
//! `scan_block` and both backends (interpreter, JIT) with random XMM/x87 state, GPRs, flags and
//! memory, compared with the same instruction run natively (oracle.rs): the FXSAVE image
//! (minus FOP/FIP/FDP and MXCSR_MASK, which the engine keeps for the guest), the GPRs, the
//! arithmetic flags and the data memory; VEX instructions (AVX, AVX2, FMA, F16C) and
//! XSAVE/XRSTOR with the upper YMM halves as well. Plus the exception rules: #NM/#UD from
//! CR0/CR4/XCR0, #GP for misaligned operands, reserved MXCSR bits and bad XSAVE headers, #PF
//! with nothing changed, #UD for EVEX, and clear stops for what the engine refuses.
//!
//! `NS_CASES=n` changes the number of random cases per instruction.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

#[allow(dead_code)]
#[path = "differential/common.rs"]
mod common;
#[path = "native_step/oracle.rs"]
mod oracle;
#[allow(dead_code)]
#[path = "differential/translated.rs"]
mod translated;

use btvisor_translator::cpu::{cr, rflags, FxArea, YmmHigh};
use btvisor_translator::exception::{vector, Exception};
use btvisor_translator::native_step::{avx_offered, xsave};
use btvisor_translator::CpuState;
use common::Rng;
use iced_x86::{Code, Encoder, Instruction, MemoryOperand, Register};
use oracle::{with_jmp, Oracle, DATA_SIZE};
use translated::{cpu32, cpu64, run_translated, Backend, Backends, TestEnv, TransExit, BACKENDS};

use Register::{
    AX, EAX, EBX, ECX, EDI, ESI, ESP, MM0, MM1, R14, R8, RAX, RBX, RDI, RDX, RIP, RSI, ST0, ST1,
    ST2, ST3, XMM0, XMM1, XMM13, XMM15, XMM2, XMM3, XMM4, XMM5, XMM6, XMM7, XMM9, YMM0, YMM1, YMM2,
};

/// A double biased to ordinary values (integers, fractions, signs), sometimes raw bits.
fn rand_f64(rng: &mut Rng) -> f64 {
    match rng.next() % 6 {
        0 => f64::from_bits(rng.next()),
        1 => (rng.next() % 2000) as f64 - 1000.0,
        2 => 0.0,
        _ => ((rng.next() % 2_000_000) as f64 - 1_000_000.0) / 1024.0,
    }
}

/// f64 to the x87 80-bit format (exact).
fn to_f80(x: f64) -> [u8; 10] {
    let b = x.to_bits();
    let sign = (b >> 63) as u16;
    let exp = ((b >> 52) & 0x7ff) as i32;
    let frac = b & ((1 << 52) - 1);
    let (e, m) = if exp == 0 && frac == 0 {
        (0u16, 0u64)
    } else if exp == 0x7ff {
        (0x7fff, (1 << 63) | (frac << 11))
    } else if exp == 0 {
        // Subnormal double: frac * 2^-1074, normal in the 80-bit format.
        let p = 63 - frac.leading_zeros() as i32;
        ((p - 1074 + 16383) as u16, frac << (63 - p))
    } else {
        ((exp - 1023 + 16383) as u16, (1 << 63) | (frac << 11))
    };
    let mut r = [0u8; 10];
    r[..8].copy_from_slice(&m.to_le_bytes());
    r[8..].copy_from_slice(&((sign << 15) | e).to_le_bytes());
    r
}

struct Input {
    fx: [u8; 512],
    ymmh: [u8; 256],
    gpr: [u64; 16],
    flags: u64,
    data: Vec<u8>,
}

fn random_input(rng: &mut Rng, o: &Oracle) -> Input {
    let mut a = FxArea::init(0xffff);
    // FCW: every exception masked, random precision and rounding control.
    a.set16(FxArea::FCW, 0x3f | 0x40 | (rng.next() as u16 & 0xf00));
    // FSW: random TOP and (sticky, masked) flags, no ES/B.
    let top = rng.next() as u16 & 7;
    a.set16(FxArea::FSW, (top << 11) | (rng.next() as u16 & 0x3f));
    a.0[FxArea::FTW] = rng.next() as u8;
    for i in 0..8 {
        let v = to_f80(rand_f64(rng));
        a.0[FxArea::ST0 + 16 * i..FxArea::ST0 + 16 * i + 10].copy_from_slice(&v);
    }
    // MXCSR: every exception masked, random flags, rounding, FZ, DAZ.
    let mx = 0x1f80 | (rng.next() as u32 & 0x3f) | (rng.next() as u32 & 0xe040);
    a.set32(FxArea::MXCSR, mx);
    for i in 0..16 {
        let mut x = [0u8; 16];
        for half in 0..2 {
            let v = if rng.next() % 2 == 0 {
                rand_f64(rng).to_bits()
            } else {
                rng.next()
            };
            x[half * 8..half * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        a.set_xmm(i, x);
    }
    let mut gpr = [0u64; 16];
    for g in gpr.iter_mut() {
        *g = match rng.next() % 3 {
            0 => rng.next() % 2000,
            1 => (rng.next() % 2000).wrapping_sub(1000),
            _ => rng.next(),
        };
    }
    let d = o.data_base();
    gpr[3] = d + 0x100; // rbx
    gpr[6] = d + 0x200; // rsi
    gpr[7] = d + 0x300; // rdi
    gpr[4] = 0xdead_beef;
    gpr[8] = (rng.next() % 32) * 8; // an index register
    let mut data = vec![0u8; DATA_SIZE];
    for c in data.chunks_mut(8) {
        let v = if rng.next() % 2 == 0 {
            rand_f64(rng).to_bits()
        } else {
            rng.next() % 5000
        };
        c.copy_from_slice(&v.to_le_bytes()[..c.len()]);
    }
    let mut ymmh = [0u8; 256];
    for c in ymmh.chunks_mut(8) {
        c.copy_from_slice(&rand_f64(rng).to_bits().to_le_bytes());
    }
    Input {
        fx: a.0,
        ymmh,
        gpr,
        flags: rng.next() & rflags::ARITH,
        data,
    }
}

type Prep = fn(&mut Input, &Oracle);

struct Case {
    name: &'static str,
    insn: Instruction,
    /// Data bytes (offsets in the data area) not compared: pointer fields that the engine
    /// replaces with guest values.
    skip_mem: &'static [(usize, usize)],
    prep: Option<Prep>,
}

fn mem(base: Register, d: i64) -> MemoryOperand {
    MemoryOperand::with_base_displ(base, d)
}

fn i1(c: Code, a: impl Into<Op1>) -> Instruction {
    a.into().build(c)
}
fn i2r(c: Code, a: Register, b: Register) -> Instruction {
    Instruction::with2(c, a, b).unwrap()
}
fn i2rm(c: Code, a: Register, b: MemoryOperand) -> Instruction {
    Instruction::with2(c, a, b).unwrap()
}
fn i2mr(c: Code, a: MemoryOperand, b: Register) -> Instruction {
    Instruction::with2(c, a, b).unwrap()
}

enum Op1 {
    R(Register),
    M(MemoryOperand),
}
impl From<Register> for Op1 {
    fn from(r: Register) -> Op1 {
        Op1::R(r)
    }
}
impl From<MemoryOperand> for Op1 {
    fn from(m: MemoryOperand) -> Op1 {
        Op1::M(m)
    }
}
impl Op1 {
    fn build(self, c: Code) -> Instruction {
        match self {
            Op1::R(r) => Instruction::with1(c, r).unwrap(),
            Op1::M(m) => Instruction::with1(c, m).unwrap(),
        }
    }
}

fn case(name: &'static str, insn: Instruction) -> Case {
    Case {
        name,
        insn,
        skip_mem: &[],
        prep: None,
    }
}

/// A valid MXCSR (masked) at [rbx].
fn prep_mxcsr(i: &mut Input, _: &Oracle) {
    i.data[0x100..0x104].copy_from_slice(&(0x1f80u32 | 0x2000).to_le_bytes());
}
/// A valid FXSAVE image at [rbx]: the input state with other XMM values.
fn prep_fx_image(i: &mut Input, _: &Oracle) {
    let mut img = i.fx;
    for b in img[160..416].iter_mut() {
        *b = b.wrapping_mul(7).wrapping_add(3);
    }
    img[24..28].copy_from_slice(&0x5f80u32.to_le_bytes());
    i.data[0x100..0x300].copy_from_slice(&img);
}
/// A masked control word at [rbx].
fn prep_fcw(i: &mut Input, _: &Oracle) {
    i.data[0x100..0x102].copy_from_slice(&0x0c7fu16.to_le_bytes());
}

fn cases64(o: &Oracle) -> Vec<Case> {
    let rip_target = o.data_base() + 0x40;
    let mut v = vec![
        case("addps xmm0,xmm1", i2r(Code::Addps_xmm_xmmm128, XMM0, XMM1)),
        case(
            "addps xmm2,[rbx]",
            i2rm(Code::Addps_xmm_xmmm128, XMM2, mem(RBX, 0)),
        ),
        case(
            "mulsd xmm3,[rsi+8]",
            i2rm(Code::Mulsd_xmm_xmmm64, XMM3, mem(RSI, 8)),
        ),
        case("divsd xmm9,xmm15", i2r(Code::Divsd_xmm_xmmm64, XMM9, XMM15)),
        case(
            "sqrtpd xmm4,[rdi]",
            i2rm(Code::Sqrtpd_xmm_xmmm128, XMM4, mem(RDI, 0)),
        ),
        case("maxps xmm5,xmm6", i2r(Code::Maxps_xmm_xmmm128, XMM5, XMM6)),
        case("cvtsi2sd xmm1,rax", i2r(Code::Cvtsi2sd_xmm_rm64, XMM1, RAX)),
        case(
            "cvtsi2sd xmm1,[rbx] (m32)",
            i2rm(Code::Cvtsi2sd_xmm_rm32, XMM1, mem(RBX, 4)),
        ),
        case(
            "cvttsd2si rax,xmm2",
            i2r(Code::Cvttsd2si_r64_xmmm64, RAX, XMM2),
        ),
        case(
            "cvttsd2si ecx,[rbx]",
            i2rm(Code::Cvttsd2si_r32_xmmm64, ECX, mem(RBX, 0)),
        ),
        case(
            "cvtsd2ss xmm3,xmm4",
            i2r(Code::Cvtsd2ss_xmm_xmmm64, XMM3, XMM4),
        ),
        case("movd xmm0,eax", i2r(Code::Movd_xmm_rm32, XMM0, EAX)),
        case("movd eax,xmm1", i2r(Code::Movd_rm32_xmm, EAX, XMM1)),
        case("movq rdx,xmm3", i2r(Code::Movq_rm64_xmm, RDX, XMM3)),
        case("movq r14,xmm13", i2r(Code::Movq_rm64_xmm, R14, XMM13)),
        case(
            "movq xmm4,[rbx]",
            i2rm(Code::Movq_xmm_xmmm64, XMM4, mem(RBX, 0)),
        ),
        case(
            "movq [rbx+8],xmm5",
            i2mr(Code::Movq_xmmm64_xmm, mem(RBX, 8), XMM5),
        ),
        case(
            "movsd xmm0,[rip+x]",
            i2rm(Code::Movsd_xmm_xmmm64, XMM0, mem(RIP, rip_target as i64)),
        ),
        case("movsd [rbx+rcx*1+0x10] idx", {
            let m = MemoryOperand::with_base_index_scale_displ_size(RBX, R8, 2, 0x10, 1);
            i2mr(Code::Movsd_xmmm64_xmm, m, XMM7)
        }),
        case("pxor xmm6,xmm7", i2r(Code::Pxor_xmm_xmmm128, XMM6, XMM7)),
        case(
            "paddq xmm1,[rbx]",
            i2rm(Code::Paddq_xmm_xmmm128, XMM1, mem(RBX, 0)),
        ),
        case(
            "pmullw xmm2,xmm3",
            i2r(Code::Pmullw_xmm_xmmm128, XMM2, XMM3),
        ),
        case(
            "pshufd xmm1,xmm2,1b",
            Instruction::with3(Code::Pshufd_xmm_xmmm128_imm8, XMM1, XMM2, 0x1b).unwrap(),
        ),
        case(
            "pshufd xmm1,[rbx],4e",
            Instruction::with3(Code::Pshufd_xmm_xmmm128_imm8, XMM1, mem(RBX, 0), 0x4e).unwrap(),
        ),
        case(
            "movdqu xmm0,[rbx+3]",
            i2rm(Code::Movdqu_xmm_xmmm128, XMM0, mem(RBX, 3)),
        ),
        case(
            "movdqu [rbx+5],xmm1",
            i2mr(Code::Movdqu_xmmm128_xmm, mem(RBX, 5), XMM1),
        ),
        case(
            "movaps [rbx],xmm3",
            i2mr(Code::Movaps_xmmm128_xmm, mem(RBX, 0), XMM3),
        ),
        case("comisd xmm0,xmm1", i2r(Code::Comisd_xmm_xmmm64, XMM0, XMM1)),
        case(
            "ucomiss xmm2,[rbx]",
            i2rm(Code::Ucomiss_xmm_xmmm32, XMM2, mem(RBX, 0)),
        ),
        case("pmovmskb eax,xmm3", i2r(Code::Pmovmskb_r32_xmm, EAX, XMM3)),
        case("fld qword [rbx]", i1(Code::Fld_m64fp, mem(RBX, 0))),
        case("fld tbyte [rbx]", i1(Code::Fld_m80fp, mem(RBX, 0))),
        case("fstp qword [rbx+8]", i1(Code::Fstp_m64fp, mem(RBX, 8))),
        case("fstp tbyte [rsi]", i1(Code::Fstp_m80fp, mem(RSI, 0))),
        case("fild dword [rbx]", i1(Code::Fild_m32int, mem(RBX, 0))),
        case("fistp qword [rbx+16]", i1(Code::Fistp_m64int, mem(RBX, 16))),
        case("fadd st0,st1", i2r(Code::Fadd_st0_sti, ST0, ST1)),
        case("fmulp st2,st0", i2r(Code::Fmulp_sti_st0, ST2, ST0)),
        case("fdiv dword [rbx]", i1(Code::Fdiv_m32fp, mem(RBX, 0))),
        case("fsqrt", Instruction::with(Code::Fsqrt)),
        case("fxch st3", i2r(Code::Fxch_st0_sti, ST0, ST3)),
        case("fcomi st0,st1", i2r(Code::Fcomi_st0_sti, ST0, ST1)),
        case("fcmovb st0,st2", i2r(Code::Fcmovb_st0_sti, ST0, ST2)),
        case("fnstsw ax", i1(Code::Fnstsw_AX, AX)),
        case("fnstcw [rbx]", i1(Code::Fnstcw_m2byte, mem(RBX, 0))),
        case("fninit", Instruction::with(Code::Fninit)),
        case("fwait", Instruction::with(Code::Wait)),
        case("emms", Instruction::with(Code::Emms)),
        case(
            "movq mm0,[rbx]",
            i2rm(Code::Movq_mm_mmm64, MM0, mem(RBX, 0)),
        ),
        case("paddb mm0,mm1", i2r(Code::Paddb_mm_mmm64, MM0, MM1)),
        case("stmxcsr [rbx+4]", i1(Code::Stmxcsr_m32, mem(RBX, 4))),
        Case {
            prep: Some(prep_mxcsr),
            ..case("ldmxcsr [rbx]", i1(Code::Ldmxcsr_m32, mem(RBX, 0)))
        },
        Case {
            prep: Some(prep_fcw),
            ..case("fldcw [rbx]", i1(Code::Fldcw_m2byte, mem(RBX, 0)))
        },
        Case {
            skip_mem: &[
                (0x100 + 6, 0x100 + 24),
                (0x100 + 28, 0x100 + 32),
                (0x100 + 464, 0x100 + 512),
            ],
            ..case("fxsave [rbx]", i1(Code::Fxsave_m512byte, mem(RBX, 0)))
        },
        Case {
            skip_mem: &[
                (0x100 + 6, 0x100 + 24),
                (0x100 + 28, 0x100 + 32),
                (0x100 + 464, 0x100 + 512),
            ],
            ..case("fxsave64 [rbx]", i1(Code::Fxsave64_m512byte, mem(RBX, 0)))
        },
        Case {
            prep: Some(prep_fx_image),
            ..case("fxrstor64 [rbx]", i1(Code::Fxrstor64_m512byte, mem(RBX, 0)))
        },
        Case {
            prep: Some(prep_fx_image),
            ..case("fxrstor [rbx]", i1(Code::Fxrstor_m512byte, mem(RBX, 0)))
        },
        Case {
            skip_mem: &[(0x100 + 12, 0x100 + 28)],
            ..case("fnstenv [rbx]", i1(Code::Fnstenv_m28byte, mem(RBX, 0)))
        },
        Case {
            skip_mem: &[(0x100 + 12, 0x100 + 28)],
            ..case("fnsave [rbx]", i1(Code::Fnsave_m108byte, mem(RBX, 0)))
        },
    ];
    if avx_offered() {
        v.extend(cases_avx());
    }
    v.extend(cases_xsave());
    if std::arch::is_x86_feature_detected!("sse4.2") {
        v.push(case(
            "pcmpistri xmm1,xmm2,0c",
            Instruction::with3(Code::Pcmpistri_xmm_xmmm128_imm8, XMM1, XMM2, 0x0c).unwrap(),
        ));
    }
    if std::arch::is_x86_feature_detected!("ssse3") {
        v.push(case(
            "pshufb xmm3,[rbx]",
            i2rm(Code::Pshufb_xmm_xmmm128, XMM3, mem(RBX, 0)),
        ));
    }
    v
}

fn i3(c: Code, a: Register, b: Register, d: impl Into<Op1>) -> Instruction {
    match d.into() {
        Op1::R(r) => Instruction::with3(c, a, b, r).unwrap(),
        Op1::M(m) => Instruction::with3(c, a, b, m).unwrap(),
    }
}

/// VEX instructions (AVX, AVX2, FMA, F16C): the upper YMM halves are compared too.
fn cases_avx() -> Vec<Case> {
    use Register::{YMM10, YMM3, YMM4, YMM5, YMM6, YMM7, YMM8, YMM9};
    let mut v = vec![
        case(
            "vaddps ymm0,ymm1,ymm2",
            i3(Code::VEX_Vaddps_ymm_ymm_ymmm256, YMM0, YMM1, YMM2),
        ),
        case(
            "vaddps ymm3,ymm4,[rbx]",
            i3(Code::VEX_Vaddps_ymm_ymm_ymmm256, YMM3, YMM4, mem(RBX, 0)),
        ),
        case(
            "vaddps xmm0,xmm1,xmm2 (upper half zeroed)",
            i3(Code::VEX_Vaddps_xmm_xmm_xmmm128, XMM0, XMM1, XMM2),
        ),
        case(
            "vmovdqu ymm5,[rbx+3]",
            i2rm(Code::VEX_Vmovdqu_ymm_ymmm256, YMM5, mem(RBX, 3)),
        ),
        case(
            "vmovdqu [rbx+5],ymm6",
            i2mr(Code::VEX_Vmovdqu_ymmm256_ymm, mem(RBX, 5), YMM6),
        ),
        case(
            "vmovdqa [rbx],ymm7",
            i2mr(Code::VEX_Vmovdqa_ymmm256_ymm, mem(RBX, 0), YMM7),
        ),
        case(
            "vinsertf128 ymm5,ymm6,[rbx],1",
            Instruction::with4(
                Code::VEX_Vinsertf128_ymm_ymm_xmmm128_imm8,
                YMM5,
                YMM6,
                mem(RBX, 0),
                1,
            )
            .unwrap(),
        ),
        case("vmovd xmm1,ecx", i2r(Code::VEX_Vmovd_xmm_rm32, XMM1, ECX)),
        case(
            "vpextrq rax,xmm1,1",
            Instruction::with3(Code::VEX_Vpextrq_rm64_xmm_imm8, RAX, XMM1, 1).unwrap(),
        ),
        case(
            "vptest ymm0,ymm1",
            i2r(Code::VEX_Vptest_ymm_ymmm256, YMM0, YMM1),
        ),
        case(
            "vmovmskps eax,ymm2",
            i2r(Code::VEX_Vmovmskps_r32_ymm, EAX, YMM2),
        ),
        case(
            "vbroadcastss ymm1,[rbx]",
            i2rm(Code::VEX_Vbroadcastss_ymm_m32, YMM1, mem(RBX, 0)),
        ),
        case("vzeroupper", Instruction::with(Code::VEX_Vzeroupper)),
        case("vzeroall", Instruction::with(Code::VEX_Vzeroall)),
        case("vstmxcsr [rbx+4]", i1(Code::VEX_Vstmxcsr_m32, mem(RBX, 4))),
        Case {
            prep: Some(prep_mxcsr),
            ..case("vldmxcsr [rbx]", i1(Code::VEX_Vldmxcsr_m32, mem(RBX, 0)))
        },
    ];
    if std::arch::is_x86_feature_detected!("avx2") {
        v.extend([
            case(
                "vpaddq ymm8,ymm9,ymm10",
                i3(Code::VEX_Vpaddq_ymm_ymm_ymmm256, YMM8, YMM9, YMM10),
            ),
            case(
                "vpshufb ymm1,ymm2,[rsi]",
                i3(Code::VEX_Vpshufb_ymm_ymm_ymmm256, YMM1, YMM2, mem(RSI, 0)),
            ),
            case(
                "vperm2i128 ymm0,ymm1,ymm2,21",
                Instruction::with4(
                    Code::VEX_Vperm2i128_ymm_ymm_ymmm256_imm8,
                    YMM0,
                    YMM1,
                    YMM2,
                    0x21,
                )
                .unwrap(),
            ),
            case(
                "vextracti128 xmm3,ymm4,1",
                Instruction::with3(Code::VEX_Vextracti128_xmmm128_ymm_imm8, XMM3, YMM4, 1).unwrap(),
            ),
            case(
                "vpcmpeqq ymm3,ymm4,[rdi]",
                i3(Code::VEX_Vpcmpeqq_ymm_ymm_ymmm256, YMM3, YMM4, mem(RDI, 0)),
            ),
        ]);
    }
    if std::arch::is_x86_feature_detected!("fma") {
        v.push(case(
            "vfmadd231ps ymm0,ymm1,ymm2",
            i3(Code::VEX_Vfmadd231ps_ymm_ymm_ymmm256, YMM0, YMM1, YMM2),
        ));
    }
    if std::arch::is_x86_feature_detected!("f16c") {
        v.push(case(
            "vcvtph2ps ymm0,xmm1",
            i2r(Code::VEX_Vcvtph2ps_ymm_xmmm128, YMM0, XMM1),
        ));
    }
    v
}

/// RFBM (EDX:EAX) for XSAVE/XRSTOR: a random subset of x87, SSE, AVX (the host's XCR0 has
/// them all, so host and guest agree on RFBM).
fn prep_rfbm(i: &mut Input) {
    i.gpr[0] = (i.gpr[0] & 7) & xsave::xcr0_supported();
    i.gpr[2] = 0;
}
fn prep_xsave(i: &mut Input, _: &Oracle) {
    prep_rfbm(i);
}
/// An XRSTOR image at [rbx] (64-byte aligned): other XMM, upper-half and x87 values, a valid
/// MXCSR unlike the current one, XSTATE_BV a random subset of XCR0, XCOMP_BV and the
/// reserved header bytes zero.
fn prep_xrstor(i: &mut Input, _: &Oracle) {
    prep_rfbm(i);
    let mut img = [0u8; 832];
    img[..512].copy_from_slice(&i.fx);
    for b in img[32..416].iter_mut() {
        *b = b.wrapping_mul(5).wrapping_add(1);
    }
    img[24..28].copy_from_slice(&(0x1f80u32 | 0x6000 | (i.gpr[1] as u32 & 0x3f)).to_le_bytes());
    let bv = i.gpr[9] & xsave::xcr0_supported();
    img[512..520].copy_from_slice(&bv.to_le_bytes());
    for (k, b) in img[576..832].iter_mut().enumerate() {
        *b = i.ymmh[k] ^ 0x5a;
    }
    i.data[0x100..0x100 + 832].copy_from_slice(&img);
}

fn cases_xsave() -> Vec<Case> {
    // Pointers (FOP/FIP/FDP/FCS/FDS) hold guest values in the engine, host ones natively;
    // MXCSR_MASK is the guest's.
    const SKIP: &[(usize, usize)] = &[(0x100 + 6, 0x100 + 24), (0x100 + 28, 0x100 + 32)];
    vec![
        Case {
            skip_mem: SKIP,
            prep: Some(prep_xsave),
            ..case("xsave [rbx]", i1(Code::Xsave_mem, mem(RBX, 0)))
        },
        Case {
            skip_mem: SKIP,
            prep: Some(prep_xsave),
            ..case("xsave64 [rbx]", i1(Code::Xsave64_mem, mem(RBX, 0)))
        },
        Case {
            prep: Some(prep_xrstor),
            ..case("xrstor [rbx]", i1(Code::Xrstor_mem, mem(RBX, 0)))
        },
        Case {
            prep: Some(prep_xrstor),
            ..case("xrstor64 [rbx]", i1(Code::Xrstor64_mem, mem(RBX, 0)))
        },
    ]
}

fn cases32() -> Vec<Case> {
    vec![
        case(
            "(32) addpd xmm2,[ebx]",
            i2rm(Code::Addpd_xmm_xmmm128, XMM2, mem(EBX, 0)),
        ),
        case(
            "(32) cvttsd2si eax,xmm1",
            i2r(Code::Cvttsd2si_r32_xmmm64, EAX, XMM1),
        ),
        case(
            "(32) movdqu [esi+1],xmm3",
            i2mr(Code::Movdqu_xmmm128_xmm, mem(ESI, 1), XMM3),
        ),
        case("(32) fild qword [ebx]", i1(Code::Fild_m64int, mem(EBX, 0))),
        case(
            "(32) fistp dword [edi]",
            i1(Code::Fistp_m32int, mem(EDI, 0)),
        ),
    ]
}

/// The guest CPU for the tests: SSE enabled (CR4.OSFXSR/OSXMMEXCPT), CR0.MP set, EM/TS clear.
fn guest(bits: u32, inp: &Input, rip: u64) -> CpuState {
    let mut cpu = if bits == 64 { cpu64() } else { cpu32() };
    cpu.cr0 = (cpu.cr0 | cr::CR0_MP | cr::CR0_NE) & !(cr::CR0_EM | cr::CR0_TS);
    cpu.cr4 |= cr::CR4_OSFXSR | cr::CR4_OSXMMEXCPT;
    cpu.fx = FxArea(inp.fx);
    cpu.ymmh = YmmHigh(inp.ymmh);
    // XSAVE and, where offered, AVX enabled as a guest kernel enables them.
    cpu.cr4 |= cr::CR4_OSXSAVE;
    cpu.xcr0 = xsave::xcr0_supported();
    cpu.gpr = inp.gpr;
    cpu.set_rflags(inp.flags | rflags::FIXED1);
    cpu.rip = rip;
    cpu
}

/// The translated side's memory: `code` at the oracle's test address, a copy of the input data.
fn test_env(o: &Oracle, code: Vec<u8>, inp: &Input) -> TestEnv {
    TestEnv {
        code_base: o.test_addr(),
        code,
        data_base: o.data_base(),
        data: inp.data.clone(),
        stray: None,
    }
}

fn encode(insn: &Instruction, bits: u32, ip: u64) -> Vec<u8> {
    let mut e = Encoder::new(bits);
    e.encode(insn, ip).expect("encode test instruction");
    e.take_buffer()
}

/// FXSAVE image bytes the comparison skips: FOP/FIP/FDP (guest values in the engine, host or
/// none on the host), MXCSR_MASK (the guest's), and the software-available area.
fn fx_cmp(a: &[u8; 512]) -> Vec<u8> {
    let mut v = a.to_vec();
    v[6..24].fill(0);
    v[28..32].fill(0);
    v[464..512].fill(0);
    v
}

fn run_case(
    o: &Oracle,
    backends: &mut Backends,
    backend: Backend,
    c: &Case,
    bits: u32,
    rng: &mut Rng,
) -> Result<(), String> {
    let mut inp = random_input(rng, o);
    if let Some(p) = c.prep {
        p(&mut inp, o);
    }
    let native_bytes = encode(&c.insn, 64, o.test_addr());
    let guest_bytes = encode(&c.insn, bits, o.test_addr());
    // Native.
    o.load(&native_bytes);
    o.set_data(&inp.data);
    // SAFETY: every test instruction addresses the data area, aligned where it must be, with
    // every FP exception masked; none touches RSP or transfers control.
    let nat = unsafe { o.run(&inp.fx, &inp.ymmh, &inp.gpr, inp.flags | 0x202) };
    let nat_data = o.data();
    // Translated.
    let code = with_jmp(&guest_bytes, bits, o.test_addr(), o.end_addr());
    let mut env = test_env(o, code, &inp);
    let mut cpu = guest(bits, &inp, o.test_addr());
    let r = run_translated(backends, backend, &mut cpu, &mut env, &[o.end_addr()]);
    if r != TransExit::Reached(o.end_addr()) {
        return Err(format!("translated run ended with {r:?}"));
    }
    if fx_cmp(&cpu.fx.0) != fx_cmp(&nat.fx) {
        let diff: Vec<usize> = (0..512)
            .filter(|&i| fx_cmp(&cpu.fx.0)[i] != fx_cmp(&nat.fx)[i])
            .collect();
        return Err(format!("FXSAVE image differs at bytes {diff:?}"));
    }
    if cpu.ymmh.0 != nat.ymmh {
        let diff: Vec<usize> = (0..256).filter(|&i| cpu.ymmh.0[i] != nat.ymmh[i]).collect();
        return Err(format!("upper YMM halves differ at bytes {diff:?}"));
    }
    for i in 0..16 {
        if i != 4 && cpu.gpr[i] != nat.gpr[i] {
            return Err(format!(
                "GPR {i}: translated {:#x}, native {:#x}",
                cpu.gpr[i], nat.gpr[i]
            ));
        }
    }
    let (tf, nf) = (cpu.rflags() & rflags::ARITH, nat.flags & rflags::ARITH);
    if tf != nf {
        return Err(format!("flags: translated {tf:#x}, native {nf:#x}"));
    }
    for (i, (a, b)) in env.data.iter().zip(nat_data.iter()).enumerate() {
        if a != b && !c.skip_mem.iter().any(|&(s, e)| (s..e).contains(&i)) {
            return Err(format!(
                "data byte {i:#x}: translated {a:#x}, native {b:#x}"
            ));
        }
    }
    if let Some(s) = env.stray {
        return Err(format!("stray access at {s:#x}"));
    }
    Ok(())
}

fn n_cases() -> usize {
    std::env::var("NS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

#[test]
fn native_step_matches_host() {
    let o = Oracle::new();
    let mut backends = Backends::new();
    let mut failures = vec![];
    let mut total = 0;
    let all: Vec<(Case, u32)> = cases64(&o)
        .into_iter()
        .map(|c| (c, 64))
        .chain(cases32().into_iter().map(|c| (c, 32)))
        .collect();
    for &backend in BACKENDS {
        for (c, bits) in &all {
            let mut rng = Rng::with_state(
                c.name.len() as u64 * 7919 + c.name.bytes().map(u64::from).sum::<u64>(),
            );
            let n = if backend == Backend::Jit {
                n_cases().div_ceil(4)
            } else {
                n_cases()
            };
            for k in 0..n {
                total += 1;
                if let Err(e) = run_case(&o, &mut backends, backend, c, *bits, &mut rng) {
                    failures.push(format!("{} [{backend:?}] case {k}: {e}", c.name));
                    break;
                }
            }
        }
    }
    println!("native-step: {} instructions, {total} cases", all.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------- exceptions and refusals

/// Run one 64-bit instruction on a guest prepared by `setup` and return how it ended, with the
/// guest state before and after.
fn run_one(
    backend: Backend,
    insn: &Instruction,
    setup: impl Fn(&mut CpuState),
) -> (TransExit, CpuState, CpuState, TestEnv, Vec<u8>) {
    let o = Oracle::new();
    let mut rng = Rng::with_state(42);
    let mut inp = random_input(&mut rng, &o);
    inp.data[BAD_MXCSR..BAD_MXCSR + 4].copy_from_slice(&[0xff; 4]);
    let code = with_jmp(
        &encode(insn, 64, o.test_addr()),
        64,
        o.test_addr(),
        o.end_addr(),
    );
    let mut env = test_env(&o, code, &inp);
    let mut cpu = guest(64, &inp, o.test_addr());
    setup(&mut cpu);
    let before = clone_cpu(&cpu);
    let mut backends = Backends::new();
    let r = run_translated(&mut backends, backend, &mut cpu, &mut env, &[o.end_addr()]);
    (r, before, cpu, env, inp.data)
}

fn clone_cpu(c: &CpuState) -> CpuState {
    let mut n = CpuState::new();
    n.gpr = c.gpr;
    n.fx = c.fx;
    n.cr0 = c.cr0;
    n.cr4 = c.cr4;
    n.rip = c.rip;
    n
}

fn expect_raise(insn: Instruction, setup: impl Fn(&mut CpuState) + Copy, v: u8, code: Option<u32>) {
    for &b in BACKENDS {
        let (r, before, after, env, data) = run_one(b, &insn, setup);
        match r {
            TransExit::Raise(Exception {
                vector, error_code, ..
            }) => {
                assert_eq!((vector, error_code), (v, code), "{insn} [{b:?}]");
            }
            other => panic!("{insn} [{b:?}]: expected vector {v}, got {other:?}"),
        }
        // Precise: nothing changed.
        assert_eq!(after.rip, before.rip, "{insn} [{b:?}]: rip");
        assert_eq!(after.gpr, before.gpr, "{insn} [{b:?}]: gprs");
        assert_eq!(after.fx.0, before.fx.0, "{insn} [{b:?}]: fx state");
        assert_eq!(env.data, data, "{insn} [{b:?}]: memory");
    }
}

fn expect_stop(insn: Instruction, setup: impl Fn(&mut CpuState) + Copy, what: &str) {
    for &b in BACKENDS {
        let (r, ..) = run_one(b, &insn, setup);
        match r {
            TransExit::Other(s) if s.contains(what) => {}
            other => panic!("{insn} [{b:?}]: expected a stop with {what:?}, got {other:?}"),
        }
    }
}

fn expect_ok(insn: Instruction, setup: impl Fn(&mut CpuState) + Copy) {
    for &b in BACKENDS {
        let (r, ..) = run_one(b, &insn, setup);
        assert!(matches!(r, TransExit::Reached(_)), "{insn} [{b:?}]: {r:?}");
    }
}

fn nothing(_: &mut CpuState) {}

#[test]
fn cr0_ts_raises_nm() {
    let ts = |c: &mut CpuState| c.cr0 |= cr::CR0_TS;
    expect_raise(
        i2r(Code::Addps_xmm_xmmm128, XMM0, XMM1),
        ts,
        vector::NM,
        None,
    );
    expect_raise(i1(Code::Fld_m64fp, mem(RBX, 0)), ts, vector::NM, None);
    expect_raise(i2r(Code::Paddb_mm_mmm64, MM0, MM1), ts, vector::NM, None);
    expect_raise(
        i1(Code::Fxsave64_m512byte, mem(RBX, 0)),
        ts,
        vector::NM,
        None,
    );
    // WAIT: #NM only with MP as well (SDM Vol. 3, Table 2-2).
    expect_raise(Instruction::with(Code::Wait), ts, vector::NM, None);
    expect_ok(Instruction::with(Code::Wait), |c: &mut CpuState| {
        c.cr0 = (c.cr0 | cr::CR0_TS) & !cr::CR0_MP
    });
}

#[test]
fn cr0_em_and_osfxsr_raise_ud_for_simd() {
    let em = |c: &mut CpuState| c.cr0 |= cr::CR0_EM;
    expect_raise(
        i2r(Code::Addps_xmm_xmmm128, XMM0, XMM1),
        em,
        vector::UD,
        None,
    );
    expect_raise(Instruction::with(Code::Emms), em, vector::UD, None);
    // x87 with EM: #NM (the OS emulates x87).
    expect_raise(i2r(Code::Fadd_st0_sti, ST0, ST1), em, vector::NM, None);
    let no_fxsr = |c: &mut CpuState| c.cr4 &= !cr::CR4_OSFXSR;
    expect_raise(
        i2r(Code::Addps_xmm_xmmm128, XMM0, XMM1),
        no_fxsr,
        vector::UD,
        None,
    );
    expect_raise(
        i1(Code::Ldmxcsr_m32, mem(RBX, 0)),
        no_fxsr,
        vector::UD,
        None,
    );
    expect_ok(i2r(Code::Fadd_st0_sti, ST0, ST1), no_fxsr);
    expect_ok(i2r(Code::Paddb_mm_mmm64, MM0, MM1), no_fxsr);
}

#[test]
fn misaligned_sse_operand_raises_gp() {
    expect_raise(
        i2rm(Code::Movaps_xmm_xmmm128, XMM0, mem(RBX, 4)),
        nothing,
        vector::GP,
        Some(0),
    );
    expect_raise(
        i2rm(Code::Addps_xmm_xmmm128, XMM0, mem(RBX, 8)),
        nothing,
        vector::GP,
        Some(0),
    );
    expect_raise(
        i1(Code::Fxsave64_m512byte, mem(RBX, 8)),
        nothing,
        vector::GP,
        Some(0),
    );
    // The unaligned family and 64-bit operands do not check.
    expect_ok(i2rm(Code::Movups_xmm_xmmm128, XMM0, mem(RBX, 4)), nothing);
    expect_ok(i2rm(Code::Addsd_xmm_xmmm64, XMM0, mem(RBX, 4)), nothing);
}

#[test]
fn reserved_mxcsr_bits_raise_gp() {
    // `run_one` puts FFFFFFFFH (reserved bits set) at data offset BAD_MXCSR.
    let at_bad = |c: &mut CpuState| c.gpr[3] = c.gpr[3] - 0x100 + BAD_MXCSR as u64;
    expect_raise(
        i1(Code::Ldmxcsr_m32, mem(RBX, 0)),
        at_bad,
        vector::GP,
        Some(0),
    );
    // FXRSTOR's MXCSR field is at +24: an image 24 bytes below (16-byte aligned: BAD_MXCSR is
    // 8 mod 16).
    expect_raise(
        i1(Code::Fxrstor64_m512byte, mem(RBX, -24)),
        at_bad,
        vector::GP,
        Some(0),
    );
}

const BAD_MXCSR: usize = 0x3000 + 24;

#[test]
fn faulting_store_changes_nothing() {
    // [rbx - 0x1000] is outside the test Env's memory: #PF, state and memory unchanged.
    expect_raise(
        i2mr(Code::Movdqu_xmmm128_xmm, mem(RBX, -0x1000), XMM1),
        nothing,
        vector::PF,
        Some(0),
    );
    expect_raise(
        i1(Code::Fistp_m64int, mem(RBX, -0x1000)),
        nothing,
        vector::PF,
        Some(0),
    );
    // Straddling the end of memory: the part inside must not be written.
    expect_raise(
        i2mr(Code::Movdqu_xmmm128_xmm, mem(RBX, 0x3ff8 - 0x100), XMM1),
        nothing,
        vector::PF,
        Some(0),
    );
}

#[test]
fn vex_and_xsave_follow_cr4_xcr0_and_ts() {
    let v = Instruction::with3(Code::VEX_Vaddps_xmm_xmm_xmmm128, XMM0, XMM1, XMM2).unwrap();
    let y = Instruction::with3(Code::VEX_Vpaddd_ymm_ymm_ymmm256, YMM0, YMM1, YMM2).unwrap();
    let xs = i1(Code::Xsave64_mem, mem(RBX, 0));
    let xr = i1(Code::Xrstor64_mem, mem(RBX, 0));
    // CR4.OSXSAVE clear: VEX and XSAVE/XRSTOR are #UD.
    let no_osxsave = |c: &mut CpuState| c.cr4 &= !cr::CR4_OSXSAVE;
    for i in [v, y, xs, xr] {
        expect_raise(i, no_osxsave, vector::UD, None);
    }
    // XCR0 without AVX: VEX is #UD, XSAVE runs.
    let no_avx = |c: &mut CpuState| c.xcr0 = 3;
    expect_raise(v, no_avx, vector::UD, None);
    expect_raise(y, no_avx, vector::UD, None);
    expect_ok(xs, no_avx);
    // CR0.TS: #NM.
    let ts = |c: &mut CpuState| c.cr0 |= cr::CR0_TS;
    for i in [v, y, xs, xr] {
        if i == xs || i == xr || avx_offered() {
            expect_raise(i, ts, vector::NM, None);
        }
    }
    // EVEX (AVX-512 is not offered): #UD.
    let z = Instruction::with3(
        Code::EVEX_Vaddps_zmm_k1z_zmm_zmmm512b32_er,
        Register::ZMM0,
        Register::ZMM1,
        Register::ZMM2,
    )
    .unwrap();
    expect_raise(z, nothing, vector::UD, None);
}

#[test]
fn xsave_area_checks_raise_gp() {
    // Misaligned (RBX + 16), then XRSTOR headers: XCOMP_BV nonzero, XSTATE_BV beyond XCR0,
    // bytes 16..23 nonzero, MXCSR reserved bits. `run_one` leaves XSTATE_BV etc. random, so
    // each setup writes a whole valid header first through the data it controls.
    expect_raise(
        i1(Code::Xsave64_mem, mem(RBX, 16)),
        nothing,
        vector::GP,
        Some(0),
    );
    expect_raise(
        i1(Code::Xrstor64_mem, mem(RBX, 32)),
        nothing,
        vector::GP,
        Some(0),
    );
    for (what, off, val) in [
        ("XCOMP_BV", 520usize, 1u64 << 63),
        ("XSTATE_BV beyond XCR0", 512, 1 << 9),
        ("header bytes 16..23", 528, 1),
        ("MXCSR reserved bit", 24, 0x8000_1f80),
    ] {
        let (r, before, after, env, data) = run_xrstor_with(off, val);
        assert!(
            matches!(
                r,
                TransExit::Raise(Exception {
                    vector: vector::GP,
                    error_code: Some(0),
                    ..
                })
            ),
            "{what}: {r:?}"
        );
        assert_eq!(after.fx.0, before.fx.0, "{what}: state changed");
        assert_eq!(env.data, data, "{what}: memory changed");
    }
}

/// XRSTOR64 [rbx] of a valid image (RFBM 7) with the quadword at `off` set to `val`.
fn run_xrstor_with(off: usize, val: u64) -> (TransExit, CpuState, CpuState, TestEnv, Vec<u8>) {
    let o = Oracle::new();
    let mut rng = Rng::with_state(9);
    let inp = random_input(&mut rng, &o);
    let mut data = inp.data.clone();
    let img = &mut data[0x100..0x100 + 832];
    img[..512].copy_from_slice(&inp.fx);
    img[512..576].fill(0);
    img[512] = 3;
    img[off..off + 8].copy_from_slice(&val.to_le_bytes());
    let insn = i1(Code::Xrstor64_mem, mem(RBX, 0));
    let code = with_jmp(
        &encode(&insn, 64, o.test_addr()),
        64,
        o.test_addr(),
        o.end_addr(),
    );
    let mut env = test_env(&o, code, &inp);
    env.data = data.clone();
    let mut cpu = guest(64, &inp, o.test_addr());
    cpu.gpr[0] = 7;
    cpu.gpr[2] = 0;
    let before = clone_cpu(&cpu);
    let mut backends = Backends::new();
    let r = run_translated(
        &mut backends,
        Backend::Interpreter,
        &mut cpu,
        &mut env,
        &[o.end_addr()],
    );
    (r, before, cpu, env, data)
}

#[test]
fn unmasked_exceptions_and_refused_forms_stop() {
    expect_stop(
        i2r(Code::Addps_xmm_xmmm128, XMM0, XMM1),
        |c: &mut CpuState| c.fx.set32(FxArea::MXCSR, 0x1d80),
        "unmasked SIMD",
    );
    expect_stop(
        i2r(Code::Fadd_st0_sti, ST0, ST1),
        |c: &mut CpuState| c.fx.set16(FxArea::FCW, 0x37e),
        "unmasked floating-point",
    );
    expect_stop(
        Instruction::with_maskmovdqu(64, XMM0, XMM1, Register::None).unwrap(),
        nothing,
        "unusual operand kind",
    );
    expect_stop(i2r(Code::Movd_xmm_rm32, XMM0, ESP), nothing, "RSP");
    // FNINIT does not wait: it runs with exceptions unmasked and masks them.
    expect_ok(Instruction::with(Code::Fninit), |c: &mut CpuState| {
        c.fx.set16(FxArea::FCW, 0x37e)
    });
}

#[test]
fn x87_pointers_are_guest_values() {
    for &b in BACKENDS {
        let insn = i1(Code::Fld_m64fp, mem(RBX, 0x18));
        let (r, before, after, ..) = run_one(b, &insn, nothing);
        assert!(matches!(r, TransExit::Reached(_)), "{r:?}");
        assert_eq!(after.x87_ptr.fip, before.rip, "[{b:?}] FIP");
        assert_eq!(after.x87_ptr.fdp, before.gpr[3] + 0x18, "[{b:?}] FDP");
        // DD /0 with ModR/M 43H (mod 01, reg 0, rm 3 = rbx, disp8): FOP 543H.
        assert_eq!(after.x87_ptr.fop, 0x543, "[{b:?}] FOP");
        assert_eq!(
            after.fx.get32(FxArea::FIP) as u64,
            before.rip,
            "[{b:?}] image FIP"
        );
    }
}

#[test]
fn native_step_cost() {
    // Not a pass/fail test: prints the cost of one native step (a block of 32 ADDPD, scanned
    // once, run by the interpreter).
    use btvisor_translator::block::BlockKey;
    use btvisor_translator::env::Env;
    use btvisor_translator::interp::run_block;
    use btvisor_translator::scan::{scan_block, MAX_FETCH};
    let o = Oracle::new();
    let mut rng = Rng::with_state(7);
    let inp = random_input(&mut rng, &o);
    for (name, insn) in [
        ("addpd xmm0,xmm1", i2r(Code::Addpd_xmm_xmmm128, XMM0, XMM1)),
        (
            "movdqu xmm0,[rbx]",
            i2rm(Code::Movdqu_xmm_xmmm128, XMM0, mem(RBX, 0)),
        ),
        (
            "movdqu [rbx],xmm0",
            i2mr(Code::Movdqu_xmmm128_xmm, mem(RBX, 0), XMM0),
        ),
    ] {
        let mut code = vec![];
        for _ in 0..32 {
            code.extend_from_slice(&encode(&insn, 64, 0));
        }
        let code = with_jmp(&code, 64, o.test_addr(), o.end_addr());
        let mut env = test_env(&o, code, &inp);
        let mut cpu = guest(64, &inp, o.test_addr());
        let mut buf = vec![0u8; MAX_FETCH];
        let fetched = env.fetch(&mut cpu, o.test_addr(), &mut buf).unwrap();
        let key = BlockKey {
            rip: o.test_addr(),
            cs_base: 0,
            phys: fetched.phys,
            mode: cpu.mode(),
        };
        let blk = scan_block(key, fetched, &buf);
        assert_eq!(blk.counts.native_steps, 32);
        let reps = 3000;
        let t = std::time::Instant::now();
        for _ in 0..reps {
            cpu.rip = o.test_addr();
            let _ = run_block(&mut cpu, &mut env, &blk);
        }
        let ns = t.elapsed().as_nanos() as f64 / (reps * 32) as f64;
        println!("native step cost, {name}: {ns:.0} ns per instruction (interpreter)");
    }
}
