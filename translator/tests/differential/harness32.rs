//! The 32-bit forms and their cases: every legacy-encoded `Code` that iced marks valid in 32-bit
//! mode and that classify.rs puts in `Class::Lift`, in register and memory variants (memory with
//! 32-bit and with 16-bit addressing, and with LOCK where allowed), plus hand-made encodings of
//! the string instructions (every size, REP/REPE/REPNE, 32- and 16-bit address size) and XLAT.
//! The translated side runs a 32-bit protected-mode vCPU (`cpu32`), the native side runs the
//! same bytes at the same address in compatibility mode (`native32.rs`).
//!
//! The register file is kept in the 64-bit suite's layout (`[u64; 16]`, RAX..RDI in 0..8, AH..BH
//! as slots 0..3 shifted by 8) so that its helpers apply; values are 32-bit, R8..R15 are zero on
//! input and must stay zero.

use crate::forms::is_noop;
use crate::harness::{
    build, code_mem_size, count_value, disasm, div_faults, flags_str, hash, mask, op_size,
    read_reg, reg_slot, sext, undefined, write_low, FormResult, Opnd, Rng,
};
use crate::native32::{Native32, DATA_SIZE, TAKEN_OFF};
use crate::translated::{cpu32, run_translated, Backend, Backends, TestEnv, TransExit};
use btvisor_translator::classify::{classify, Class};
use btvisor_translator::cpu::rflags::{ARITH, DF};
use btvisor_translator::exception::vector;
use iced_x86::{
    Code, Decoder, DecoderOptions, Encoder, EncodingKind, Instruction, MemoryOperand, Mnemonic,
    OpCodeOperandKind as K, OpKind, Register,
};

// ---------------------------------------------------------------- forms

/// How a memory operand is addressed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    None,
    A32,
    A16,
}

#[derive(Clone, Debug)]
pub enum Kind32 {
    Code { code: Code, mem: Addr, lock: bool },
    Raw { bytes: Vec<u8> },
}

#[derive(Clone, Debug)]
pub struct Form32 {
    pub kind: Kind32,
    pub mnemonic: Mnemonic,
    pub name: String,
}

fn rm_kind(k: K) -> bool {
    matches!(k, K::r8_or_mem | K::r16_or_mem | K::r32_or_mem)
}

fn supported_kind(k: K) -> bool {
    matches!(
        k,
        K::r8_or_mem
            | K::r16_or_mem
            | K::r32_or_mem
            | K::mem
            | K::mem_offs
            | K::r8_reg
            | K::r8_opcode
            | K::r16_reg
            | K::r16_opcode
            | K::r32_reg
            | K::r32_opcode
            | K::al
            | K::cl
            | K::ax
            | K::eax
            | K::imm8
            | K::imm8_const_1
            | K::imm8sex16
            | K::imm8sex32
            | K::imm16
            | K::imm32
            | K::br16_1
            | K::br16_2
            | K::br32_1
            | K::br32_4
    )
}

fn is_branch_kind(k: K) -> bool {
    matches!(k, K::br16_1 | K::br16_2 | K::br32_1 | K::br32_4)
}

/// Why a Lift-class code valid in 32-bit mode is not a form here (None: it is).
pub fn excluded32(code: Code) -> Option<&'static str> {
    let opc = code.op_code();
    let m = code.mnemonic();
    if is_noop(m) {
        return Some("no architectural effect");
    }
    if !opc.mode32() {
        return Some("invalid in 32-bit mode");
    }
    // Encodings of old CPUs (CMPXCHG486 0F A6/A7) that the decoder only accepts with an
    // option: current CPUs decode them differently.
    if opc.decoder_option() != DecoderOptions::NONE {
        return Some("old-CPU encoding (decoder option)");
    }
    if code == Code::Bswap_r16 {
        return Some("undefined result");
    }
    let host_has = match m {
        Mnemonic::Lzcnt => std::arch::is_x86_feature_detected!("lzcnt"),
        Mnemonic::Tzcnt => std::arch::is_x86_feature_detected!("bmi1"),
        Mnemonic::Popcnt => std::arch::is_x86_feature_detected!("popcnt"),
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
    if !opc.op_kinds().iter().all(|k| supported_kind(*k)) {
        return Some("operand kind not generated");
    }
    None
}

pub fn all_forms32() -> Vec<Form32> {
    let mut forms = vec![];
    for code in Code::values() {
        let opc = code.op_code();
        if !opc.is_instruction() || opc.encoding() != EncodingKind::Legacy {
            continue;
        }
        if classify(&Instruction::with(code)) != Class::Lift || excluded32(code).is_some() {
            continue;
        }
        let kinds = opc.op_kinds();
        let has_rm = kinds.iter().any(|k| rm_kind(*k));
        let has_mem = kinds.iter().any(|k| matches!(k, K::mem | K::mem_offs));
        let variants: &[Addr] = if has_rm {
            &[Addr::None, Addr::A32, Addr::A16]
        } else if has_mem {
            &[Addr::A32, Addr::A16]
        } else {
            &[Addr::None]
        };
        for &mem in variants {
            let mut locks = vec![false];
            if mem == Addr::A32 && opc.can_use_lock_prefix() {
                locks.push(true);
            }
            for lock in locks {
                let v = match mem {
                    Addr::None if has_rm => " (reg)",
                    Addr::None => "",
                    Addr::A32 => " (mem32)",
                    Addr::A16 => " (mem16)",
                };
                forms.push(Form32 {
                    kind: Kind32::Code { code, mem, lock },
                    mnemonic: code.mnemonic(),
                    name: format!("{code:?}{v}{}", if lock { " lock" } else { "" }),
                });
            }
        }
    }
    // String instructions: every size, prefix and address size.
    for (op, repe_ok) in [
        (0xa4u8, false),
        (0xaa, false),
        (0xac, false),
        (0xa6, true),
        (0xae, true),
    ] {
        for size in [1, 2, 4] {
            let reps: &[Option<u8>] = if repe_ok {
                &[None, Some(0xf3), Some(0xf2)]
            } else {
                &[None, Some(0xf3)]
            };
            for &rep in reps {
                for a16 in [false, true] {
                    let mut b = vec![];
                    if a16 {
                        b.push(0x67);
                    }
                    if size == 2 {
                        b.push(0x66);
                    }
                    if let Some(r) = rep {
                        b.push(r);
                    }
                    b.push(if size == 1 { op } else { op + 1 });
                    forms.push(raw_form(b));
                }
            }
        }
    }
    forms.push(raw_form(vec![0xd7]));
    forms.push(raw_form(vec![0x67, 0xd7]));
    forms
}

fn raw_form(bytes: Vec<u8>) -> Form32 {
    let mut d = Decoder::with_ip(32, &bytes, 0, DecoderOptions::NONE);
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
    Form32 {
        kind: Kind32::Raw { bytes },
        mnemonic: insn.mnemonic(),
        name,
    }
}

// ---------------------------------------------------------------- registers and addresses

const R32: [Register; 8] = [
    Register::EAX,
    Register::ECX,
    Register::EDX,
    Register::EBX,
    Register::ESP,
    Register::EBP,
    Register::ESI,
    Register::EDI,
];
const R16: [Register; 8] = [
    Register::AX,
    Register::CX,
    Register::DX,
    Register::BX,
    Register::SP,
    Register::BP,
    Register::SI,
    Register::DI,
];
const R8: [Register; 8] = [
    Register::AL,
    Register::CL,
    Register::DL,
    Register::BL,
    Register::AH,
    Register::CH,
    Register::DH,
    Register::BH,
];

fn rand_reg(rng: &mut Rng, sz: u32) -> Register {
    let i = rng.below(8) as usize;
    match sz {
        1 => R8[i],
        2 => R16[i],
        _ => R32[i],
    }
}

struct MemPlan {
    op: MemoryOperand,
    pins: Vec<(Register, u64)>,
}

/// 32-bit addressing: `[disp32]` or `[base + index*scale + disp]`, wrapping at 4 GiB.
fn plan_mem32(rng: &mut Rng, target: u64) -> MemPlan {
    let none = Register::None;
    if rng.chance(1, 8) {
        return MemPlan {
            op: MemoryOperand::with_displ(target, 4),
            pins: vec![],
        };
    }
    let (disp, dsize) = match rng.below(3) {
        0 => (0u64, 0u32),
        1 => ((rng.below(256) as i64 - 128) as u64, 1),
        _ => (rng.next() & 0xffff_ffff, 4),
    };
    let scale = 1u32 << rng.below(4);
    let base = if rng.chance(1, 10) {
        none
    } else {
        R32[rng.below(8) as usize]
    };
    let mut index = none;
    if rng.chance(1, 2) || base == none {
        loop {
            let i = R32[rng.below(8) as usize];
            if i != Register::ESP && i != base {
                index = i;
                break;
            }
        }
    }
    let mut pins = vec![];
    let mut rest = target.wrapping_sub(disp);
    if index != none {
        let iv = rng.val(4);
        rest = rest.wrapping_sub(iv.wrapping_mul(scale as u64));
        pins.push((index, iv));
    }
    let (disp, dsize) = if base == none {
        (disp.wrapping_add(rest) & 0xffff_ffff, 4)
    } else {
        pins.push((base, rest & 0xffff_ffff));
        (disp, dsize)
    };
    MemPlan {
        op: MemoryOperand::new(base, index, scale, disp as i32 as i64, dsize, false, none),
        pins,
    }
}

/// 16-bit addressing: `[bx|bp + si|di + disp]`, wrapping at 64 KiB; the upper halves of the
/// registers hold garbage that must be ignored.
fn plan_mem16(rng: &mut Rng, target: u64) -> MemPlan {
    use Register::*;
    let none = Register::None;
    let (base, index) = [
        (BX, SI),
        (BX, DI),
        (BP, SI),
        (BP, DI),
        (none, SI),
        (none, DI),
        (BP, none),
        (BX, none),
        (none, none),
    ][rng.below(9) as usize];
    if base == none && index == none {
        return MemPlan {
            op: MemoryOperand::new(none, none, 1, (target & 0xffff) as i64, 2, false, none),
            pins: vec![],
        };
    }
    let (disp, dsize) = match rng.below(3) {
        0 => (0u64, 0u32),
        1 => ((rng.below(256) as i64 - 128) as u64, 1),
        _ => (rng.next() & 0xffff, 2),
    };
    let garbage = |rng: &mut Rng| rng.next() & 0xffff_0000;
    let mut pins = vec![];
    let mut rest = target.wrapping_sub(disp) & 0xffff;
    if base != none && index != none {
        let iv = rng.next() & 0xffff;
        rest = rest.wrapping_sub(iv) & 0xffff;
        pins.push((index.full_register32(), iv | garbage(rng)));
        pins.push((base.full_register32(), rest | garbage(rng)));
    } else {
        let r = if base != none { base } else { index };
        pins.push((r.full_register32(), rest | garbage(rng)));
    }
    let d = if dsize == 2 {
        disp as u16 as i16 as i64
    } else {
        disp as i64
    };
    MemPlan {
        op: MemoryOperand::new(base, index, 1, d, dsize, false, none),
        pins,
    }
}

/// Address size of the instruction's memory operand, string operands or LOOP/JCXZ counter.
fn addr_size(insn: &Instruction) -> u32 {
    for i in 0..insn.op_count() {
        match insn.op_kind(i) {
            OpKind::MemorySegSI | OpKind::MemorySegDI | OpKind::MemoryESDI => return 2,
            OpKind::MemorySegESI | OpKind::MemorySegEDI | OpKind::MemoryESEDI => return 4,
            OpKind::Memory => {
                for r in [insn.memory_base(), insn.memory_index()] {
                    if r != Register::None {
                        return r.size() as u32;
                    }
                }
                return if insn.memory_displ_size() == 2 { 2 } else { 4 };
            }
            _ => {}
        }
    }
    let name = format!("{:?}", insn.code());
    if insn.mnemonic() == Mnemonic::Jcxz || name.ends_with("_CX") {
        return 2;
    }
    if insn.mnemonic() == Mnemonic::Xlatb {
        return if insn.memory_base() == Register::BX {
            2
        } else {
            4
        };
    }
    4
}

/// The linear (= effective: flat segments) address of the memory operand.
fn effective_address(insn: &Instruction, g: &[u64; 16]) -> u64 {
    let mut a = insn.memory_displacement64();
    let b = insn.memory_base();
    if b != Register::None {
        a = a.wrapping_add(read_reg(g, b));
    }
    let i = insn.memory_index();
    if i != Register::None {
        a = a.wrapping_add(read_reg(g, i).wrapping_mul(insn.memory_index_scale() as u64));
    }
    a & mask(addr_size(insn))
}

fn is_string(m: Mnemonic) -> bool {
    crate::harness::is_string(m)
}

// ---------------------------------------------------------------- cases

pub struct Case32 {
    pub bytes: Vec<u8>,
    pub insn: Instruction,
    pub gpr: [u64; 16],
    pub eflags: u64,
    pub tlb: bool,
}

pub struct Ctx32<'a> {
    pub native: &'a Native32,
    pub env: TestEnv,
    pub rng: Rng,
    pub backends: Backends,
}

fn regs_str(g: &[u64; 16]) -> String {
    let names = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
    let mut s = names
        .iter()
        .zip(g)
        .map(|(n, v)| format!("{n}={v:#x}"))
        .collect::<Vec<_>>()
        .join(" ");
    if g[8..].iter().any(|v| *v != 0) {
        s.push_str(&format!(" r8..r15={:x?}", &g[8..]));
    }
    s
}

impl<'a> Ctx32<'a> {
    pub fn new(native: &'a Native32) -> Ctx32<'a> {
        let env = TestEnv {
            code_base: native.test_addr(),
            code: vec![0; 0x100],
            data_base: native.data_base(),
            data: native.data().to_vec(),
            stray: None,
        };
        Ctx32 {
            native,
            env,
            rng: Rng::new(0),
            backends: Backends::new(),
        }
    }

    fn d(&self) -> u64 {
        self.native.data_base()
    }

    fn in_data(&self, a: u64, len: u64) -> bool {
        a >= self.d() + 0x100 && a.wrapping_add(len) <= self.d() + DATA_SIZE - 0x100
    }

    fn poke(&mut self, a: u64, v: u64, len: u64) {
        let off = (a - self.d()) as usize;
        for i in 0..len as usize {
            let b = (v >> (8 * i)) as u8;
            self.native.data()[off + i] = b;
            self.env.data[off + i] = b;
        }
    }

    fn peek(&self, a: u64, len: u64) -> u64 {
        let off = (a - self.d()) as usize;
        (0..len as usize).fold(0, |v, i| {
            v | (self.native.data()[off + i] as u64) << (8 * i)
        })
    }

    fn scramble(&mut self, a: u64, before: u64, len: u64) {
        let lo = a.wrapping_sub(before).max(self.d());
        let hi = a.wrapping_add(len).min(self.d() + DATA_SIZE);
        let mut p = lo;
        while p < hi {
            let v = self.rng.next();
            let n = (hi - p).min(8);
            self.poke(p, v, n);
            p += n;
        }
    }

    /// Generate one valid case for `form`, or None when the random choices did not work out.
    fn gen(&mut self, form: &Form32) -> Option<Case32> {
        let d = self.d();
        let taken = self.native.taken_addr();
        let mut g = [0u64; 16];
        for v in g.iter_mut().take(8) {
            *v = self.rng.val(4);
        }
        let mut pins: Vec<(Register, u64)> = vec![];
        let stack = d + 0x6000 + (self.rng.below(0x800) & !3) - 0x400
            + if self.rng.chance(1, 8) { 2 } else { 0 };
        pins.push((Register::ESP, stack));
        let mut mem_target = None;
        let bytes = match &form.kind {
            Kind32::Raw { bytes } => bytes.clone(),
            Kind32::Code { code, mem, lock } => {
                let opc = code.op_code();
                let mut ops = vec![];
                let msize = code_mem_size(*code);
                let m = form.mnemonic;
                let shift_count = matches!(
                    m,
                    Mnemonic::Shl
                        | Mnemonic::Sal
                        | Mnemonic::Shr
                        | Mnemonic::Sar
                        | Mnemonic::Rol
                        | Mnemonic::Ror
                        | Mnemonic::Rcl
                        | Mnemonic::Rcr
                        | Mnemonic::Shld
                        | Mnemonic::Shrd
                );
                let mut branch = false;
                for (i, k) in opc.op_kinds().iter().enumerate() {
                    let sz = |k: K| match k {
                        K::r8_or_mem | K::r8_reg | K::r8_opcode => 1,
                        K::r16_or_mem | K::r16_reg | K::r16_opcode => 2,
                        _ => 4,
                    };
                    let o = match *k {
                        K::r8_or_mem | K::r16_or_mem | K::r32_or_mem if *mem == Addr::None => {
                            Opnd::R(rand_reg(&mut self.rng, sz(*k)))
                        }
                        K::r8_or_mem | K::r16_or_mem | K::r32_or_mem | K::mem => {
                            let lea = m == Mnemonic::Lea;
                            let t = if lea {
                                self.rng.next() & 0xffff_ffff
                            } else {
                                d + 0x1000 + self.rng.below(0x4000)
                            };
                            let p = if *mem == Addr::A16 {
                                plan_mem16(&mut self.rng, t)
                            } else {
                                plan_mem32(&mut self.rng, t)
                            };
                            if !lea {
                                pins.extend(p.pins);
                                mem_target = Some((t, msize));
                            }
                            Opnd::M(p.op)
                        }
                        K::mem_offs => {
                            let t = d + 0x1000 + self.rng.below(0x4000);
                            mem_target = Some((t, msize));
                            let dsz = if *mem == Addr::A16 { 2 } else { 4 };
                            Opnd::M(MemoryOperand::with_displ(t, dsz))
                        }
                        K::r8_reg
                        | K::r8_opcode
                        | K::r16_reg
                        | K::r16_opcode
                        | K::r32_reg
                        | K::r32_opcode => Opnd::R(rand_reg(&mut self.rng, sz(*k))),
                        K::al => Opnd::R(Register::AL),
                        K::cl => Opnd::R(Register::CL),
                        K::ax => Opnd::R(Register::AX),
                        K::eax => Opnd::R(Register::EAX),
                        K::imm8_const_1 => Opnd::I(1),
                        K::imm8 if shift_count => Opnd::I(count_value(&mut self.rng) as i32),
                        // AAM/AAD: mostly the decimal base, sometimes another one (0: #DE).
                        K::imm8
                            if matches!(m, Mnemonic::Aam | Mnemonic::Aad)
                                && self.rng.chance(1, 2) =>
                        {
                            Opnd::I(10)
                        }
                        // ENTER's nesting level: mostly small.
                        K::imm8 if m == Mnemonic::Enter && self.rng.chance(3, 4) => {
                            Opnd::I(self.rng.below(4) as i32)
                        }
                        K::imm8 => Opnd::I(self.rng.val(1) as i32),
                        K::imm16 if m == Mnemonic::Enter => Opnd::I(self.rng.val(2) as i32 & 0x7ff),
                        K::imm16 => Opnd::I(self.rng.val(2) as i32),
                        K::imm8sex16 | K::imm8sex32 => Opnd::I(self.rng.val(1) as i8 as i32),
                        K::imm32 => Opnd::I(self.rng.val(4) as i32),
                        k if is_branch_kind(k) => {
                            assert_eq!(i, 0);
                            branch = true;
                            break;
                        }
                        other => panic!("unexpected operand kind {other:?} in {code:?}"),
                    };
                    ops.push(o);
                }
                let mut insn = if branch {
                    Instruction::with_branch(*code, taken).ok()?
                } else {
                    build(*code, &ops)?
                };
                insn.set_has_lock_prefix(*lock);
                let mut enc = Encoder::new(32);
                enc.encode(&insn, self.native.test_addr()).ok()?;
                enc.take_buffer()
            }
        };
        let mut dec = Decoder::with_ip(32, &bytes, self.native.test_addr(), DecoderOptions::NONE);
        let insn = dec.decode();
        if insn.is_invalid() || insn.len() != bytes.len() {
            return None;
        }
        if let Kind32::Code { code, mem, .. } = &form.kind {
            if insn.code() != *code {
                return None;
            }
            let has_mem = (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory);
            let want = match mem {
                Addr::None => None,
                Addr::A32 => Some(4),
                Addr::A16 => Some(2),
            };
            if has_mem && want != Some(addr_size(&insn)) {
                return None;
            }
        }
        let m = insn.mnemonic();
        for i in 0..insn.op_count() {
            if insn.op_kind(i) == OpKind::Register {
                let r = insn.op_register(i);
                let v = self.rng.val(r.size() as u32);
                write_low(&mut g, r, v);
            }
        }
        // Implicit pointers (16-bit address size: garbage in the upper halves).
        let ptr = |rng: &mut Rng, lo: u64| d + lo + rng.below(0x1000);
        let asz = addr_size(&insn);
        let hi_garbage = |rng: &mut Rng| {
            if asz == 2 {
                rng.next() & 0xffff_0000
            } else {
                0
            }
        };
        match m {
            Mnemonic::Leave | Mnemonic::Enter => {
                pins.push((Register::EBP, ptr(&mut self.rng, 0x3800) & !3))
            }
            Mnemonic::Xlatb => {
                let v = ptr(&mut self.rng, 0x1800) | hi_garbage(&mut self.rng);
                pins.push((Register::EBX, v));
            }
            _ if is_string(m) => {
                for r in [Register::ESI, Register::EDI] {
                    let v = ptr(&mut self.rng, 0x1800) | hi_garbage(&mut self.rng);
                    pins.push((r, v));
                }
                if insn.has_rep_prefix() || insn.has_repne_prefix() {
                    let c = self.rng.below(7) | hi_garbage(&mut self.rng);
                    pins.push((Register::ECX, c));
                }
            }
            _ => {}
        }
        let mut pinned = 0u32;
        for (r, v) in &pins {
            let (i, _) = reg_slot(*r);
            g[i] = *v;
            pinned |= 1 << i;
        }
        if let Some((t, _)) = mem_target {
            self.scramble(t, 32, 48);
        }
        self.scramble(g[4], 320, 64);
        if pinned & (1 << 5) != 0 {
            self.scramble(g[5], 320, 16);
        }
        if is_string(m) || m == Mnemonic::Xlatb {
            for i in [3usize, 6, 7] {
                let a = g[i] & mask(asz);
                self.scramble(a, 64, 300);
            }
        }
        let free = |r: Register| pinned & (1 << reg_slot(r).0) == 0;
        let opsz = if insn.op_count() > 0 {
            op_size(&insn, 0)
        } else {
            4
        };
        let mem_ea = mem_target.map(|(t, _)| t);
        match m {
            Mnemonic::Shl
            | Mnemonic::Sal
            | Mnemonic::Shr
            | Mnemonic::Sar
            | Mnemonic::Rol
            | Mnemonic::Ror
            | Mnemonic::Rcl
            | Mnemonic::Rcr
            | Mnemonic::Shld
            | Mnemonic::Shrd => {
                let last = insn.op_count() - 1;
                if insn.op_kind(last) == OpKind::Register
                    && insn.op_register(last) == Register::CL
                    && free(Register::CL)
                {
                    let c = count_value(&mut self.rng);
                    write_low(&mut g, Register::CL, c);
                }
            }
            Mnemonic::Div | Mnemonic::Idiv if self.rng.chance(3, 4) => {
                let divisor = match insn.op_kind(0) {
                    OpKind::Register => read_reg(&g, insn.op_register(0)),
                    _ => self.peek(mem_ea.unwrap(), opsz as u64),
                };
                let (hi_reg, lo_reg) = match opsz {
                    1 => (Register::AH, Register::AL),
                    2 => (Register::DX, Register::AX),
                    _ => (Register::EDX, Register::EAX),
                };
                if free(hi_reg)
                    && !(insn.op_kind(0) == OpKind::Register
                        && reg_slot(insn.op_register(0)).0 == reg_slot(hi_reg).0)
                {
                    let lo = read_reg(&g, lo_reg);
                    let hi = if m == Mnemonic::Div {
                        if divisor == 0 {
                            0
                        } else {
                            self.rng.next() % divisor
                        }
                    } else {
                        let sb = 1u64 << (opsz * 8 - 1);
                        if lo & sb != 0 {
                            mask(opsz)
                        } else {
                            0
                        }
                    };
                    write_low(&mut g, hi_reg, hi);
                }
            }
            Mnemonic::Bt | Mnemonic::Bts | Mnemonic::Btr | Mnemonic::Btc
                if insn.op_kind(0) == OpKind::Memory && insn.op_kind(1) == OpKind::Register =>
            {
                let r = insn.op_register(1);
                if !free(r) {
                    return None;
                }
                let off = (self.rng.below(0x6000) as i64 - 0x3000) as u64;
                write_low(&mut g, r, off & mask(opsz));
            }
            Mnemonic::Loop
            | Mnemonic::Loope
            | Mnemonic::Loopne
            | Mnemonic::Jcxz
            | Mnemonic::Jecxz => {
                g[1] = [0, 1, 2, 0x1_0000, 0x1_0001, 0xffff_0000, self.rng.val(4)]
                    [self.rng.below(7) as usize];
            }
            Mnemonic::Jmp | Mnemonic::Call
                if insn.op_count() == 1 && insn.op_kind(0) == OpKind::Register =>
            {
                let r = insn.op_register(0);
                if !free(r) {
                    return None;
                }
                write_low(&mut g, r, taken);
            }
            Mnemonic::Cmpxchg if self.rng.chance(1, 2) => {
                let dst = match insn.op_kind(0) {
                    OpKind::Register => read_reg(&g, insn.op_register(0)),
                    _ => self.peek(mem_ea.unwrap(), opsz as u64),
                };
                let acc = match opsz {
                    1 => Register::AL,
                    2 => Register::AX,
                    _ => Register::EAX,
                };
                if free(acc) {
                    write_low(&mut g, acc, dst);
                }
            }
            _ => {}
        }
        // Memory-held values (after the scrambling).
        match m {
            Mnemonic::Jmp | Mnemonic::Call
                if insn.op_count() == 1 && insn.op_kind(0) == OpKind::Memory =>
            {
                self.poke(mem_ea.unwrap(), taken, opsz as u64);
            }
            Mnemonic::Ret => {
                let sz = if matches!(insn.code(), Code::Retnw | Code::Retnw_imm16) {
                    2
                } else {
                    4
                };
                if !self.in_data(g[4], sz) {
                    return None;
                }
                self.poke(g[4], taken, sz);
            }
            Mnemonic::Cmpxchg8b if self.rng.chance(1, 2) => {
                let t = mem_ea.unwrap();
                let (lo, hi) = (self.peek(t, 4), self.peek(t + 4, 4));
                if free(Register::EAX) && free(Register::EDX) {
                    g[0] = lo;
                    g[2] = hi;
                }
            }
            Mnemonic::Bound => {
                // Signed bounds [lo, hi] at the operand, the index in range 60% of the time
                // (edges included), outside otherwise.
                let t = mem_ea.unwrap();
                let sz = opsz;
                let r = insn.op_register(0);
                let (mut lo, mut hi) = (sext(self.rng.val(sz), sz), sext(self.rng.val(sz), sz));
                let inside = self.rng.chance(3, 5);
                if inside && lo > hi {
                    std::mem::swap(&mut lo, &mut hi);
                }
                self.poke(t, lo as u64 & mask(sz), sz as u64);
                self.poke(t + sz as u64, hi as u64 & mask(sz), sz as u64);
                if free(r) {
                    let v = if inside {
                        match self.rng.below(4) {
                            0 => lo,
                            1 => hi,
                            _ => lo + (self.rng.next() % ((hi - lo) as u64 + 1)) as i64,
                        }
                    } else {
                        match self.rng.below(4) {
                            0 => lo - 1,
                            1 => hi + 1,
                            _ => sext(self.rng.val(sz), sz),
                        }
                    };
                    write_low(&mut g, r, v as u64 & mask(sz));
                }
            }
            _ => {}
        }
        for v in g.iter_mut().take(8) {
            *v &= 0xffff_ffff;
        }
        let flags_in = 0x202
            | (self.rng.next() & ARITH)
            | if self.rng.chance(1, if is_string(m) { 2 } else { 8 }) {
                DF
            } else {
                0
            };
        let case = Case32 {
            bytes,
            insn,
            gpr: g,
            eflags: flags_in,
            tlb: self.rng.chance(1, 2),
        };
        self.safe(&case).then_some(case)
    }

    /// Every memory access stays in the data area, every branch lands on the taken stub.
    fn safe(&self, c: &Case32) -> bool {
        let insn = &c.insn;
        let g = &c.gpr;
        let m = insn.mnemonic();
        let taken = self.native.taken_addr();
        let uses_stack = matches!(
            m,
            Mnemonic::Push
                | Mnemonic::Pop
                | Mnemonic::Call
                | Mnemonic::Ret
                | Mnemonic::Enter
                | Mnemonic::Pushad
                | Mnemonic::Popad
                | Mnemonic::Pusha
                | Mnemonic::Popa
        );
        if uses_stack && !self.in_data(g[4].wrapping_sub(0x180), 0x200) {
            return false;
        }
        if m == Mnemonic::Enter && !self.in_data(g[4].wrapping_sub(0x900), 0x900) {
            return false;
        }
        if matches!(m, Mnemonic::Leave | Mnemonic::Enter)
            && !self.in_data(g[5].wrapping_sub(0x180), 0x200)
        {
            return false;
        }
        let asz = addr_size(insn);
        if is_string(m) {
            let n = if insn.has_rep_prefix() || insn.has_repne_prefix() {
                g[1] & mask(asz)
            } else {
                1
            };
            if n > 16 {
                return false;
            }
            for i in [6usize, 7] {
                if !self.in_data((g[i] & mask(asz)).wrapping_sub(0x80), 0x100) {
                    return false;
                }
            }
            // Host quirk (measured on the project's AMD Zen 4): REP MOVS with a 16-bit address
            // size copies overlapping buffers non-sequentially when the upper halves of ESI and
            // EDI differ (`67 f3 a4`, SI=0x51d9, DI=0x51dc, CX=5: the fourth byte gets the old
            // value of [DI], where the SDM's one-element-per-iteration semantics, which the
            // translator implements, give the byte just copied). Its overlap check evidently
            // looks at the full registers. Not a translator difference: such cases are skipped.
            let size = insn.memory_size().size() as u64;
            if asz == 2
                && matches!(m, Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd)
                && insn.has_rep_prefix()
                && (g[6] ^ g[7]) >> 16 != 0
                && ((g[7] & 0xffff).abs_diff(g[6] & 0xffff)) < n * size
            {
                return false;
            }
        }
        if m == Mnemonic::Xlatb && !self.in_data(g[3].wrapping_add(g[0] & 0xff) & mask(asz), 1) {
            return false;
        }
        let has_mem = (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory);
        if has_mem && m != Mnemonic::Lea && m != Mnemonic::Xlatb {
            let ea = effective_address(insn, g);
            let size = insn.memory_size().size().max(1) as u64;
            if !self.in_data(ea, size) {
                return false;
            }
            if matches!(
                m,
                Mnemonic::Bt | Mnemonic::Bts | Mnemonic::Btr | Mnemonic::Btc
            ) && insn.op_kind(1) == OpKind::Register
            {
                let sz = size as u32;
                let off = sext(read_reg(g, insn.op_register(1)), sz) >> (sz * 8).trailing_zeros();
                if !self.in_data(ea.wrapping_add((off * sz as i64) as u64), size) {
                    return false;
                }
            }
            if matches!(m, Mnemonic::Jmp | Mnemonic::Call) && self.peek(ea, size) != taken {
                return false;
            }
        }
        if matches!(m, Mnemonic::Jmp | Mnemonic::Call)
            && insn.op_kind(0) == OpKind::Register
            && read_reg(g, insn.op_register(0)) != taken
        {
            return false;
        }
        true
    }

    /// Run `cases` random cases of `form` on both sides and compare.
    pub fn run_form(&mut self, backend: Backend, form: &Form32, cases: u64) -> FormResult {
        self.rng = Rng::new(hash(&form.name) ^ 0x3232);
        let mut res = FormResult {
            cases: 0,
            failures: 0,
            reports: vec![],
            de: 0,
        };
        let mut attempts = 0;
        while res.cases < cases && attempts < cases * 20 {
            attempts += 1;
            let Some(case) = self.gen(form) else { continue };
            res.cases += 1;
            if let Some(report) = self.run_case(backend, &case, &mut res) {
                res.failures += 1;
                if res.reports.len() < 4 {
                    res.reports.push(report);
                }
                self.env.data.copy_from_slice(self.native.data());
            }
        }
        if res.cases < cases / 2 {
            res.failures += 1;
            res.reports.push(format!(
                "{}: only {} of {} cases could be generated",
                form.name, res.cases, cases
            ));
        }
        res
    }

    /// Run the fixed encoding `bytes` (an instruction without memory operands) with each of
    /// the given register files and EFLAGS values, on both sides, and compare.
    pub fn run_inputs(
        &mut self,
        backend: Backend,
        bytes: &[u8],
        inputs: &[([u64; 16], u64)],
    ) -> FormResult {
        let mut dec = Decoder::with_ip(32, bytes, self.native.test_addr(), DecoderOptions::NONE);
        let insn = dec.decode();
        assert!(!insn.is_invalid() && insn.len() == bytes.len());
        let mut res = FormResult {
            cases: 0,
            failures: 0,
            reports: vec![],
            de: 0,
        };
        for (g, f) in inputs {
            let case = Case32 {
                bytes: bytes.to_vec(),
                insn,
                gpr: *g,
                eflags: *f,
                tlb: false,
            };
            res.cases += 1;
            if let Some(report) = self.run_case(backend, &case, &mut res) {
                res.failures += 1;
                if res.reports.len() < 4 {
                    res.reports.push(report);
                }
                self.env.data.copy_from_slice(self.native.data());
            }
        }
        res
    }

    fn run_case(&mut self, backend: Backend, c: &Case32, res: &mut FormResult) -> Option<String> {
        let insn = &c.insn;
        let m = insn.mnemonic();
        let area = self.native.load_insn(&c.bytes);
        self.env.code.fill(0xcc);
        self.env.code[..area.len()].copy_from_slice(&area);
        let taken_off = (self.native.taken_addr() - self.native.test_addr()) as usize;
        let stub = self.native.code(TAKEN_OFF, 5).to_vec();
        self.env.code[taken_off..taken_off + 5].copy_from_slice(&stub);
        self.env.stray = None;

        // Exceptions predicted from the inputs: #DE (DIV/IDIV, AAM 0) and #BR (BOUND).
        let expect = match m {
            Mnemonic::Div | Mnemonic::Idiv => {
                let divisor = match insn.op_kind(0) {
                    OpKind::Register => read_reg(&c.gpr, insn.op_register(0)),
                    _ => self.peek(effective_address(insn, &c.gpr), op_size(insn, 0) as u64),
                };
                div_faults(insn, &c.gpr, divisor).then_some(vector::DE)
            }
            Mnemonic::Aam => (insn.immediate8() == 0).then_some(vector::DE),
            Mnemonic::Bound => {
                let sz = op_size(insn, 0);
                let ea = effective_address(insn, &c.gpr);
                let v = sext(read_reg(&c.gpr, insn.op_register(0)), sz);
                let lo = sext(self.peek(ea, sz as u64), sz);
                let hi = sext(self.peek(ea + sz as u64, sz as u64), sz);
                (v < lo || v > hi).then_some(vector::BR)
            }
            _ => None,
        };

        // Translated side.
        let mut cpu = cpu32();
        cpu.gpr = c.gpr;
        cpu.rip = self.native.test_addr();
        cpu.set_rflags(c.eflags);
        if c.tlb {
            for p in 0..DATA_SIZE / 0x1000 {
                let lin = self.env.data_base + p * 0x1000;
                // SAFETY (of later use): the Vec is never resized while the TLB points into it.
                let host = unsafe { self.env.data.as_mut_ptr().add((p * 0x1000) as usize) };
                cpu.tlb.fill(lin, true, host, lin, true);
            }
        }
        assert_eq!(cpu.mode().code_bits, 32);
        let stops = [self.native.e_fall(), self.native.e_taken()];
        let t_exit = run_translated(&mut self.backends, backend, &mut cpu, &mut self.env, &stops);
        let t_gpr = cpu.gpr;
        let t_flags = cpu.rflags();

        let head = || {
            format!(
                "{} [{}]\n  in:  {}\n       flags {}",
                disasm(insn),
                c.bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                regs_str(&c.gpr),
                flags_str(c.eflags)
            )
        };
        if let Some(vec) = expect {
            res.de += 1;
            return match t_exit {
                TransExit::Raise(e)
                    if e.vector == vec
                        && cpu.rip == self.native.test_addr()
                        && t_gpr == c.gpr
                        && self.native.data() == &self.env.data[..] =>
                {
                    None
                }
                other => Some(format!(
                    "{}\n  native would raise vector {vec}; translated: {other:?} rip={:#x}\n  \
                     out: {}",
                    head(),
                    cpu.rip,
                    regs_str(&t_gpr)
                )),
            };
        }

        if std::env::var("DIFF_VERBOSE")
            .map(|v| v == "2")
            .unwrap_or(false)
        {
            eprintln!("{}", head());
        }
        let mut gin = [0u32; 8];
        for (i, v) in gin.iter_mut().enumerate() {
            *v = c.gpr[i] as u32;
        }
        // SAFETY: `gen` checked every access and branch target (`safe`); exception cases were
        // filtered out above.
        let n = unsafe { self.native.run(&gin, c.eflags as u32) };
        let mut n_gpr = [0u64; 16];
        for (o, v) in n_gpr.iter_mut().zip(n.gpr) {
            *o = v as u64;
        }

        let mut diffs = vec![];
        let want_exit = match n.exit {
            1 => self.native.e_fall(),
            2 => self.native.e_taken(),
            x => panic!("native run ended with exit id {x}"),
        };
        if t_exit != TransExit::Reached(want_exit) {
            diffs.push(format!(
                "exit: native {} translated {t_exit:?} (rip {:#x})",
                if n.exit == 1 { "fallthrough" } else { "taken" },
                cpu.rip
            ));
        }
        let und = undefined(insn, &c.gpr);
        let skip_reg = if und.result && insn.op_kind(0) == OpKind::Register {
            Some(reg_slot(insn.op_register(0)).0)
        } else {
            None
        };
        for i in 0..16 {
            if Some(i) != skip_reg && n_gpr[i] != t_gpr[i] {
                diffs.push(format!(
                    "gpr[{i}]: native {:#x} translated {:#x}",
                    n_gpr[i], t_gpr[i]
                ));
            }
        }
        let cmp = (ARITH | DF) & !und.flags;
        if (n.eflags as u64 ^ t_flags) & cmp != 0 {
            diffs.push(format!(
                "flags (compared {:#x}): native {} translated {}",
                cmp,
                flags_str(n.eflags as u64 & cmp),
                flags_str(t_flags & cmp)
            ));
        }
        if !(und.result && insn.op_kind(0) == OpKind::Memory)
            && self.native.data() != &self.env.data[..]
        {
            let nd = self.native.data();
            let first = (0..nd.len()).find(|&i| nd[i] != self.env.data[i]).unwrap();
            let lo = first & !7;
            diffs.push(format!(
                "memory at {:#x}: native {:02x?} translated {:02x?}",
                self.env.data_base + lo as u64,
                &nd[lo..lo + 16],
                &self.env.data[lo..lo + 16]
            ));
        }
        if und.result && insn.op_kind(0) == OpKind::Memory {
            self.env.data.copy_from_slice(self.native.data());
        }
        if let Some(a) = self.env.stray {
            diffs.push(format!(
                "translated side touched {a:#x} outside the data area"
            ));
        }
        if diffs.is_empty() {
            return None;
        }
        Some(format!(
            "{}\n  native:     {}\n              flags {}\n  translated: {}\n              flags {}\n  {}",
            head(),
            regs_str(&n_gpr),
            flags_str(n.eflags as u64),
            regs_str(&t_gpr),
            flags_str(t_flags),
            diffs.join("\n  ")
        ))
    }
}
