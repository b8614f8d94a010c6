//! The instruction forms under test: every legacy-encoded `Code` that iced marks valid in 64-bit
//! mode and that classify.rs puts in `Class::Lift`, in register and memory variants (and with
//! LOCK where the form allows it), plus hand-made encodings of the string instructions (every
//! size, REP/REPE/REPNE, 64- and 32-bit address size) and XLAT.

use btvisor_translator::classify::{classify, Class};
use iced_x86::{
    Code, Decoder, DecoderOptions, EncodingKind, Instruction, Mnemonic, OpCodeOperandKind as K,
};

/// `M`: the memory variant of a code form (`bool` in the 64-bit suite: register or memory;
/// `harness32::Addr` in the 32-bit one).
#[derive(Clone, Debug)]
pub enum FormKind<M = bool> {
    /// Built with iced's encoder from random operands; `mem` selects the memory variant of an
    /// r/m operand.
    Code { code: Code, mem: M, lock: bool },
    /// A fixed encoding (string instructions, XLAT).
    Raw { bytes: Vec<u8> },
}

#[derive(Clone, Debug)]
pub struct Form<M = bool> {
    pub kind: FormKind<M>,
    pub mnemonic: Mnemonic,
    pub name: String,
}

/// The memory variants a suite generates for each code.
pub trait MemVariant: Copy + 'static {
    /// The variants of a code with an r/m operand (`has_rm`), with a memory-only operand
    /// (`has_mem`), or with neither.
    fn variants(has_rm: bool, has_mem: bool) -> &'static [Self];
    /// Whether this variant gets a LOCK form too (where the code allows one).
    fn lockable(self) -> bool;
    /// What the form's name says about the variant.
    fn suffix(self, has_rm: bool) -> &'static str;
}

impl MemVariant for bool {
    fn variants(has_rm: bool, has_mem: bool) -> &'static [bool] {
        match (has_rm, has_mem) {
            (true, _) => &[false, true],
            (false, true) => &[true],
            (false, false) => &[false],
        }
    }
    fn lockable(self) -> bool {
        self
    }
    fn suffix(self, has_rm: bool) -> &'static str {
        match (has_rm, self) {
            (false, _) => "",
            (true, true) => " (mem)",
            (true, false) => " (reg)",
        }
    }
}

/// Lift-class mnemonics with no architectural effect to compare (hints, fences, cache control).
pub fn is_noop(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Nop | Pause
            | Lfence
            | Sfence
            | Mfence
            | Prefetchnta
            | Prefetcht0
            | Prefetcht1
            | Prefetcht2
            | Prefetchw
            | Endbr32
            | Endbr64
            | Clflush
            | Clflushopt
            | Clwb
    )
}

fn rm_kind(k: K) -> bool {
    matches!(
        k,
        K::r8_or_mem | K::r16_or_mem | K::r32_or_mem | K::r64_or_mem
    )
}

/// Operand kinds the generator knows how to fill.
fn supported_kind(k: K) -> bool {
    matches!(
        k,
        K::r8_or_mem
            | K::r16_or_mem
            | K::r32_or_mem
            | K::r64_or_mem
            | K::mem
            | K::mem_offs
            | K::r8_reg
            | K::r8_opcode
            | K::r16_reg
            | K::r16_opcode
            | K::r32_reg
            | K::r32_opcode
            | K::r64_reg
            | K::r64_opcode
            | K::al
            | K::cl
            | K::ax
            | K::eax
            | K::rax
            | K::imm8
            | K::imm8_const_1
            | K::imm8sex16
            | K::imm8sex32
            | K::imm8sex64
            | K::imm16
            | K::imm32
            | K::imm32sex64
            | K::imm64
            | K::br64_1
            | K::br64_4
    )
}

/// Every Lift-class mnemonic of the table (over all modes), for the coverage report.
pub fn lift_mnemonics() -> Vec<Mnemonic> {
    lift_mnemonics_where(|_| true)
}

/// The Lift-class mnemonics of the legacy-encoded codes that `valid` accepts, sorted.
pub fn lift_mnemonics_where(valid: impl Fn(Code) -> bool) -> Vec<Mnemonic> {
    let mut v: Vec<Mnemonic> = Code::values()
        .filter(|c| c.op_code().is_instruction() && c.op_code().encoding() == EncodingKind::Legacy)
        .filter(|c| valid(*c))
        .filter(|c| classify(&Instruction::with(*c)) == Class::Lift)
        .map(|c| c.mnemonic())
        .collect();
    v.sort_by_key(|m| *m as u32);
    v.dedup();
    v
}

/// Why a Lift-class code is not a form of this suite (None: it is).
pub fn excluded(code: Code) -> Option<&'static str> {
    let opc = code.op_code();
    let m = code.mnemonic();
    if is_noop(m) {
        return Some("no architectural effect");
    }
    if !opc.mode64() {
        return Some("invalid in 64-bit mode");
    }
    // With a 0x66 prefix near branches truncate RIP to 16 bits on AMD (Intel ignores the
    // prefix): not runnable natively in a process above 64 KiB.
    if opc
        .op_kinds()
        .iter()
        .any(|k| matches!(k, K::br16_1 | K::br16_2))
        || matches!(
            code,
            Code::Jmp_rm16 | Code::Call_rm16 | Code::Retnw | Code::Retnw_imm16
        )
    {
        return Some("16-bit near branch");
    }
    excluded_common(code, supported_kind)
}

/// The reasons for leaving a code out that both suites share, after the mode-specific ones;
/// `supported`: the operand kinds the suite's generator knows how to fill.
pub fn excluded_common(code: Code, supported: fn(K) -> bool) -> Option<&'static str> {
    let opc = code.op_code();
    let m = code.mnemonic();
    // BSWAP r16 is undefined (SDM Vol. 2, BSWAP).
    if code == Code::Bswap_r16 {
        return Some("undefined result");
    }
    // The time stamp counter differs between any two reads; the guest kernel tests cover it.
    if matches!(m, Mnemonic::Rdtsc | Mnemonic::Rdtscp) {
        return Some("reads the time stamp counter");
    }
    // The oracle must implement the instruction: without LZCNT/BMI1 the host runs LZCNT/TZCNT
    // as BSR/BSF (the F3 prefix is ignored).
    let host_has = match m {
        Mnemonic::Lzcnt => std::arch::is_x86_feature_detected!("lzcnt"),
        Mnemonic::Tzcnt => std::arch::is_x86_feature_detected!("bmi1"),
        Mnemonic::Popcnt => std::arch::is_x86_feature_detected!("popcnt"),
        Mnemonic::Cmpxchg16b => std::arch::is_x86_feature_detected!("cmpxchg16b"),
        _ => true,
    };
    if !host_has {
        return Some("the host CPU lacks it");
    }
    if opc
        .op_kinds()
        .iter()
        .any(|k| matches!(k, K::seg_rSI | K::es_rDI | K::seg_rDI | K::seg_rBX_al))
    {
        return Some("string/XLAT: covered by raw encodings");
    }
    if !opc.op_kinds().iter().all(|k| supported(*k)) {
        return Some("operand kind not generated");
    }
    None
}

pub fn all_forms() -> Vec<Form> {
    let mut forms = code_forms(excluded, rm_kind);
    forms.extend(string_forms(64, &[1, 2, 4, 8]));
    forms
}

/// A form of every Lift-class code that `excluded` does not leave out, in each memory variant
/// (and with LOCK where allowed); `rm_kind`: the operand kinds that are register or memory.
pub fn code_forms<M: MemVariant>(
    excluded: fn(Code) -> Option<&'static str>,
    rm_kind: fn(K) -> bool,
) -> Vec<Form<M>> {
    let mut forms = vec![];
    for code in Code::values() {
        let opc = code.op_code();
        if !opc.is_instruction() || opc.encoding() != EncodingKind::Legacy {
            continue;
        }
        if classify(&Instruction::with(code)) != Class::Lift || excluded(code).is_some() {
            continue;
        }
        let kinds = opc.op_kinds();
        let has_rm = kinds.iter().any(|k| rm_kind(*k));
        let has_mem = kinds.iter().any(|k| matches!(k, K::mem | K::mem_offs));
        for &mem in M::variants(has_rm, has_mem) {
            let mut locks = vec![false];
            if mem.lockable() && opc.can_use_lock_prefix() {
                locks.push(true);
            }
            for lock in locks {
                forms.push(Form {
                    kind: FormKind::Code { code, mem, lock },
                    mnemonic: code.mnemonic(),
                    name: format!(
                        "{code:?}{}{}",
                        mem.suffix(has_rm),
                        if lock { " lock" } else { "" }
                    ),
                });
            }
        }
    }
    forms
}

/// The string instructions in every operand size of `sizes`, prefix and address size (0x67:
/// the other one), then XLAT in both address sizes, as raw encodings for `bits`-bit code.
pub fn string_forms<M>(bits: u32, sizes: &[u32]) -> Vec<Form<M>> {
    let mut forms = vec![];
    for (op, repe_ok) in [
        (0xa4u8, false),
        (0xaa, false),
        (0xac, false),
        (0xa6, true),
        (0xae, true),
    ] {
        for &size in sizes {
            let reps: &[Option<u8>] = if repe_ok {
                &[None, Some(0xf3), Some(0xf2)]
            } else {
                &[None, Some(0xf3)]
            };
            for &rep in reps {
                for other_asz in [false, true] {
                    let mut b = vec![];
                    if other_asz {
                        b.push(0x67);
                    }
                    if size == 2 {
                        b.push(0x66);
                    }
                    if let Some(r) = rep {
                        b.push(r);
                    }
                    if size == 8 {
                        b.push(0x48);
                    }
                    b.push(if size == 1 { op } else { op + 1 });
                    forms.push(raw_form(bits, b));
                }
            }
        }
    }
    forms.push(raw_form(bits, vec![0xd7]));
    forms.push(raw_form(bits, vec![0x67, 0xd7]));
    forms
}

fn raw_form<M>(bits: u32, bytes: Vec<u8>) -> Form<M> {
    let mut d = Decoder::with_ip(bits, &bytes, 0, DecoderOptions::NONE);
    let insn = d.decode();
    assert!(!insn.is_invalid());
    let name = format!(
        "{:?} [{}]",
        insn.code(),
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Form {
        kind: FormKind::Raw { bytes },
        mnemonic: insn.mnemonic(),
        name,
    }
}
