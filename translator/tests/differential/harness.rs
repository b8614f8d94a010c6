//! Case generation (random operands biased to edge values, random incoming flags), the
//! undefined-flag table, and the comparison of the native and translated outcomes.

use crate::common::GPRS;
pub use crate::common::{mask, Rng};
use crate::forms::{Form, FormKind};
use crate::native::{Native, NativeOut, Trampoline, TAKEN_OFF};
use crate::translated::{cpu64, run_translated, Backend, Backends, TestEnv, TransExit, BACKENDS};
use btvisor_translator::cpu::rflags::{AF, ARITH, CF, DF, OF, PF, SF, ZF};
use btvisor_translator::exception::vector;
use btvisor_translator::CpuState;
use iced_x86::{
    Code, Decoder, DecoderOptions, Encoder, Formatter, Instruction, IntelFormatter, MemoryOperand,
    Mnemonic, OpCodeOperandKind as K, OpKind, Register,
};
use std::collections::HashSet;

// ---------------------------------------------------------------- random numbers

pub fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

// ---------------------------------------------------------------- registers

const R64: [Register; 16] = GPRS;
pub const R32: [Register; 16] = [
    Register::EAX,
    Register::ECX,
    Register::EDX,
    Register::EBX,
    Register::ESP,
    Register::EBP,
    Register::ESI,
    Register::EDI,
    Register::R8D,
    Register::R9D,
    Register::R10D,
    Register::R11D,
    Register::R12D,
    Register::R13D,
    Register::R14D,
    Register::R15D,
];
pub const R16: [Register; 16] = [
    Register::AX,
    Register::CX,
    Register::DX,
    Register::BX,
    Register::SP,
    Register::BP,
    Register::SI,
    Register::DI,
    Register::R8W,
    Register::R9W,
    Register::R10W,
    Register::R11W,
    Register::R12W,
    Register::R13W,
    Register::R14W,
    Register::R15W,
];
const R8: [Register; 20] = [
    Register::AL,
    Register::CL,
    Register::DL,
    Register::BL,
    Register::SPL,
    Register::BPL,
    Register::SIL,
    Register::DIL,
    Register::R8L,
    Register::R9L,
    Register::R10L,
    Register::R11L,
    Register::R12L,
    Register::R13L,
    Register::R14L,
    Register::R15L,
    Register::AH,
    Register::CH,
    Register::DH,
    Register::BH,
];

fn rand_reg(rng: &mut Rng, sz: u32) -> Register {
    match sz {
        1 => R8[rng.below(20) as usize],
        2 => R16[rng.below(16) as usize],
        4 => R32[rng.below(16) as usize],
        _ => R64[rng.below(16) as usize],
    }
}

/// (index into the 16 GPRs, bit shift of the low byte: 8 for AH..BH).
pub fn reg_slot(r: Register) -> (usize, u32) {
    match r {
        Register::AH => (0, 8),
        Register::CH => (1, 8),
        Register::DH => (2, 8),
        Register::BH => (3, 8),
        _ => (
            (r.full_register() as u32 - Register::RAX as u32) as usize,
            0,
        ),
    }
}

pub fn read_reg(g: &[u64; 16], r: Register) -> u64 {
    let (i, sh) = reg_slot(r);
    (g[i] >> sh) & mask(r.size() as u32)
}

pub fn write_low(g: &mut [u64; 16], r: Register, v: u64) {
    let (i, sh) = reg_slot(r);
    let m = mask(r.size() as u32) << sh;
    g[i] = (g[i] & !m) | ((v << sh) & m);
}

// ---------------------------------------------------------------- operands

pub enum Opnd {
    R(Register),
    M(MemoryOperand),
    I(i32),
    U64(u64),
}

pub fn build(code: Code, ops: &[Opnd]) -> Option<Instruction> {
    use Opnd::*;
    let r = match ops {
        [] => Ok(Instruction::with(code)),
        [R(a)] => Instruction::with1(code, *a),
        [M(a)] => Instruction::with1(code, *a),
        [I(a)] => Instruction::with1(code, *a),
        [R(a), R(b)] => Instruction::with2(code, *a, *b),
        [R(a), M(b)] => Instruction::with2(code, *a, *b),
        [R(a), I(b)] => Instruction::with2(code, *a, *b),
        [R(a), U64(b)] => Instruction::with2(code, *a, *b),
        [M(a), R(b)] => Instruction::with2(code, *a, *b),
        [M(a), I(b)] => Instruction::with2(code, *a, *b),
        [I(a), I(b)] => Instruction::with2(code, *a, *b),
        [R(a), R(b), R(c)] => Instruction::with3(code, *a, *b, *c),
        [R(a), R(b), I(c)] => Instruction::with3(code, *a, *b, *c),
        [R(a), M(b), I(c)] => Instruction::with3(code, *a, *b, *c),
        [M(a), R(b), R(c)] => Instruction::with3(code, *a, *b, *c),
        [M(a), R(b), I(c)] => Instruction::with3(code, *a, *b, *c),
        _ => return None,
    };
    r.ok()
}

/// A memory operand that addresses `target`, and the register values that make it do so.
pub struct MemPlan {
    pub op: MemoryOperand,
    pub pins: Vec<(Register, u64)>,
}

fn plan_mem(rng: &mut Rng, target: u64) -> MemPlan {
    let kind = rng.below(16);
    let none = Register::None;
    if kind == 0 {
        // RIP-relative: iced takes the absolute target.
        return MemPlan {
            op: MemoryOperand::new(Register::RIP, none, 1, target as i64, 4, false, none),
            pins: vec![],
        };
    }
    if kind == 1 {
        return MemPlan {
            op: MemoryOperand::with_displ(target, 4),
            pins: vec![],
        };
    }
    let a32 = kind <= 4;
    let regs: &[Register; 16] = if a32 { &R32 } else { &R64 };
    let (disp, dsize) = match rng.below(3) {
        0 => (0i64, 0u32),
        1 => (rng.below(256) as i64 - 128, 1),
        _ => (rng.below(0x20000) as i64 - 0x10000, 4),
    };
    let scale = 1u32 << rng.below(4);
    let base = if rng.chance(1, 10) {
        none
    } else {
        regs[rng.below(16) as usize]
    };
    let mut index = none;
    if rng.chance(1, 2) || base == none {
        loop {
            let i = regs[rng.below(16) as usize];
            if i.full_register() != Register::RSP && i != base {
                index = i;
                break;
            }
        }
    }
    let garbage = |rng: &mut Rng| if a32 { rng.next() << 32 } else { 0 };
    let mut pins = vec![];
    let mut rest = target.wrapping_sub(disp as u64);
    if index != none {
        let iv = rng.below(64).wrapping_sub(16);
        let iv = if a32 { iv & 0xffff_ffff } else { iv };
        rest = rest.wrapping_sub(iv.wrapping_mul(scale as u64));
        pins.push((index.full_register(), iv | garbage(rng)));
    }
    let (disp, dsize) = if base == none {
        // [index*scale + disp32]: the displacement carries the address.
        (disp.wrapping_add(rest as i64) as i32 as i64, 4)
    } else {
        let bv = if a32 { rest & 0xffff_ffff } else { rest };
        pins.push((base.full_register(), bv | garbage(rng)));
        (disp, dsize)
    };
    MemPlan {
        op: MemoryOperand::new(base, index, scale, disp, dsize, false, none),
        pins,
    }
}

// ---------------------------------------------------------------- one case

/// One case: the encoding, its decoding, the register file (in the 64-bit layout; a 32-bit
/// case has its values in slots 0..8 and zeros above) and the incoming RFLAGS/EFLAGS.
pub struct Case {
    pub bytes: Vec<u8>,
    pub insn: Instruction,
    pub gpr: [u64; 16],
    pub rflags: u64,
    pub tlb: bool,
}

/// The two sides of a suite: the native area `N`, the translated side's memory, the random
/// numbers and the backends.
pub struct Sides<N> {
    pub native: N,
    pub env: TestEnv,
    pub rng: Rng,
    pub backends: Backends,
}

/// The 64-bit suite's context.
pub type Ctx = Sides<Native>;

impl<N: Trampoline> Sides<N> {
    pub fn with_native(native: N, seed: u64) -> Sides<N> {
        let env = TestEnv {
            code_base: native.test_addr(),
            code: vec![0; 0x100],
            data_base: native.data_base(),
            data: native.data().to_vec(),
            stray: None,
        };
        Sides {
            native,
            env,
            rng: Rng::new(seed),
            backends: Backends::new(),
        }
    }

    pub fn d(&self) -> u64 {
        self.native.data_base()
    }

    pub fn in_data(&self, a: u64, len: u64) -> bool {
        a >= self.d() + 0x100 && a.wrapping_add(len) <= self.d() + self.native.data_size() - 0x100
    }

    pub fn poke(&mut self, a: u64, v: u64, len: u64) {
        let off = (a - self.d()) as usize;
        for i in 0..len as usize {
            let b = (v >> (8 * i)) as u8;
            self.native.data()[off + i] = b;
            self.env.data[off + i] = b;
        }
    }

    pub fn peek(&self, a: u64, len: u64) -> u64 {
        let off = (a - self.d()) as usize;
        (0..len as usize).fold(0, |v, i| {
            v | (self.native.data()[off + i] as u64) << (8 * i)
        })
    }

    /// Randomise `len` bytes around `a` (when inside the data area) on both sides.
    pub fn scramble(&mut self, a: u64, before: u64, len: u64) {
        let lo = a.wrapping_sub(before).max(self.d());
        let hi = a.wrapping_add(len).min(self.d() + self.native.data_size());
        let mut p = lo;
        while p < hi {
            let v = self.rng.next();
            let n = (hi - p).min(8);
            self.poke(p, v, n);
            p += n;
        }
    }

    /// Explicit register operands get edge-biased values in their low bytes.
    pub fn randomise_reg_operands(&mut self, insn: &Instruction, g: &mut [u64; 16]) {
        for i in 0..insn.op_count() {
            if insn.op_kind(i) == OpKind::Register {
                let r = insn.op_register(i);
                let v = self.rng.val(r.size() as u32);
                write_low(g, r, v);
            }
        }
    }

    /// Set the pinned registers; randomise the memory around everything that may be accessed.
    /// Returns the mask of pinned register slots.
    pub fn pin_and_scramble(
        &mut self,
        g: &mut [u64; 16],
        pins: &[(Register, u64)],
        mem_target: Option<(u64, u64)>,
        m: Mnemonic,
        asz: u32,
    ) -> u32 {
        let mut pinned = 0u32;
        for (r, v) in pins {
            let (i, _) = reg_slot(*r);
            g[i] = *v;
            pinned |= 1 << i;
        }
        // Memory contents around everything that may be accessed.
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
        pinned
    }

    /// Operand values that the shifts, DIV/IDIV and CMPXCHG want more often than chance gives
    /// them: interesting counts in CL, a dividend whose quotient mostly fits, an accumulator
    /// equal to the destination. `free`: the register is not pinned.
    pub fn steer_operands(
        &mut self,
        insn: &Instruction,
        g: &mut [u64; 16],
        free: impl Fn(Register) -> bool,
        mem_ea: Option<u64>,
        opsz: u32,
    ) {
        let m = insn.mnemonic();
        match m {
            _ if is_shift(m) => {
                let last = insn.op_count() - 1;
                if insn.op_kind(last) == OpKind::Register
                    && insn.op_register(last) == Register::CL
                    && free(Register::CL)
                {
                    let c = count_value(&mut self.rng);
                    write_low(g, Register::CL, c);
                }
            }
            Mnemonic::Div | Mnemonic::Idiv if self.rng.chance(3, 4) => {
                let divisor = match insn.op_kind(0) {
                    OpKind::Register => read_reg(g, insn.op_register(0)),
                    _ => self.peek(mem_ea.unwrap(), opsz as u64),
                };
                let (hi_reg, lo_reg) = match opsz {
                    1 => (Register::AH, Register::AL),
                    2 => (Register::DX, Register::AX),
                    4 => (Register::EDX, Register::EAX),
                    _ => (Register::RDX, Register::RAX),
                };
                if free(hi_reg)
                    && !(insn.op_kind(0) == OpKind::Register
                        && reg_slot(insn.op_register(0)).0 == reg_slot(hi_reg).0)
                {
                    let lo = read_reg(g, lo_reg);
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
                    write_low(g, hi_reg, hi);
                }
            }
            Mnemonic::Cmpxchg if self.rng.chance(1, 2) => {
                let dst = match insn.op_kind(0) {
                    OpKind::Register => read_reg(g, insn.op_register(0)),
                    _ => self.peek(mem_ea.unwrap(), opsz as u64),
                };
                let acc = match opsz {
                    1 => Register::AL,
                    2 => Register::AX,
                    4 => Register::EAX,
                    _ => Register::RAX,
                };
                if free(acc) {
                    write_low(g, acc, dst);
                }
            }
            _ => {}
        }
    }

    /// Random incoming arithmetic flags, IF, and DF (more often for the string instructions).
    pub fn flags_in(&mut self, m: Mnemonic) -> u64 {
        0x202
            | (self.rng.next() & ARITH)
            | if self.rng.chance(1, if is_string(m) { 2 } else { 8 }) {
                DF
            } else {
                0
            }
    }

    /// Up to `cases` cases from `gen` (which gets 20 tries per case), each run by `run` (which
    /// returns a report when the sides differ).
    pub fn run_generated(
        &mut self,
        name: &str,
        cases: u64,
        mut gen: impl FnMut(&mut Self) -> Option<Case>,
        mut run: impl FnMut(&mut Self, &Case, &mut FormResult) -> Option<String>,
    ) -> FormResult {
        let mut res = FormResult::default();
        let mut attempts = 0;
        while res.cases < cases && attempts < cases * 20 {
            attempts += 1;
            let Some(case) = gen(self) else { continue };
            res.cases += 1;
            let report = run(self, &case, &mut res);
            self.record(&mut res, report);
        }
        if res.cases < cases / 2 {
            res.failures += 1;
            res.reports.push(format!(
                "{}: only {} of {} cases could be generated",
                name, res.cases, cases
            ));
        }
        res
    }

    /// Count a failure (and keep its report, up to 4 of them).
    pub fn record(&mut self, res: &mut FormResult, report: Option<String>) {
        if let Some(report) = report {
            res.failures += 1;
            if res.reports.len() < 4 {
                res.reports.push(report);
            }
            // Resynchronise the two memories.
            self.env.data.copy_from_slice(self.native.data());
        }
    }

    /// Load the case's encoding on both sides and run the translated side from `cpu` (whose
    /// registers, RIP, flags and TLB are set here) until an exit.
    pub fn run_translated_side(
        &mut self,
        backend: Backend,
        c: &Case,
        mut cpu: CpuState,
    ) -> (TransExit, CpuState) {
        let area = self.native.load_insn(&c.bytes);
        self.env.code.fill(0xcc);
        self.env.code[..area.len()].copy_from_slice(&area);
        let taken_off = (self.native.taken_addr() - self.native.test_addr()) as usize;
        let stub = self.native.code(TAKEN_OFF, 5).to_vec();
        self.env.code[taken_off..taken_off + 5].copy_from_slice(&stub);
        self.env.stray = None;

        cpu.gpr = c.gpr;
        cpu.rip = self.native.test_addr();
        cpu.set_rflags(c.rflags);
        if c.tlb {
            for p in 0..self.native.data_size() / 0x1000 {
                let lin = self.env.data_base + p * 0x1000;
                // SAFETY (of later use): the Vec is never resized while the TLB points into it.
                let host = unsafe { self.env.data.as_mut_ptr().add((p * 0x1000) as usize) };
                cpu.tlb.fill(lin, true, host, lin, true);
            }
        }
        let stops = [self.native.e_fall(), self.native.e_taken()];
        let t_exit = run_translated(&mut self.backends, backend, &mut cpu, &mut self.env, &stops);
        (t_exit, cpu)
    }

    /// Run the case natively (it must not fault) and compare with the translated side's
    /// outcome: the report of the differences, if any.
    pub fn run_native_and_compare(
        &mut self,
        c: &Case,
        t_exit: &TransExit,
        cpu: &CpuState,
        regs_str: fn(&[u64; 16]) -> String,
    ) -> Option<String> {
        let insn = &c.insn;
        let (t_gpr, t_flags) = (cpu.gpr, cpu.rflags());
        let head = || case_head(c, regs_str);
        if std::env::var("DIFF_VERBOSE")
            .map(|v| v == "2")
            .unwrap_or(false)
        {
            eprintln!("{}", head());
        }
        // SAFETY: `gen` checked every access and branch target (`safe`), and exception cases
        // were filtered out by the caller.
        let n: NativeOut = unsafe { self.native.run(&c.gpr, c.rflags) };

        let mut diffs = vec![];
        let want_exit = match n.exit {
            1 => self.native.e_fall(),
            2 => self.native.e_taken(),
            x => panic!("native run ended with exit id {x}"),
        };
        if *t_exit != TransExit::Reached(want_exit) {
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
            if Some(i) != skip_reg && n.gpr[i] != t_gpr[i] {
                diffs.push(format!(
                    "gpr[{i}]: native {:#x} translated {:#x}",
                    n.gpr[i], t_gpr[i]
                ));
            }
        }
        let cmp = (ARITH | DF) & !und.flags;
        if (n.rflags ^ t_flags) & cmp != 0 {
            diffs.push(format!(
                "flags (compared {:#x}): native {} translated {}",
                cmp,
                flags_str(n.rflags & cmp),
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
            // Not compared: resynchronise so that later cases start from equal memories.
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
            regs_str(&n.gpr),
            flags_str(n.rflags),
            regs_str(&t_gpr),
            flags_str(t_flags),
            diffs.join("\n  ")
        ))
    }
}

impl Ctx {
    pub fn new(seed: u64) -> Ctx {
        Sides::with_native(Native::new(), seed)
    }

    /// Generate one valid case for `form`, or None when the random choices did not work out.
    fn gen(&mut self, form: &Form) -> Option<Case> {
        let d = self.d();
        let taken = self.native.taken_addr();
        let mut g = [0u64; 16];
        for v in g.iter_mut() {
            *v = self.rng.val(8);
        }
        let mut pins: Vec<(Register, u64)> = vec![];
        let stack = d + 0x2000 + (self.rng.below(0x800) & !7) - 0x400
            + if self.rng.chance(1, 8) { 4 } else { 0 };
        pins.push((Register::RSP, stack));
        let mut mem_target = None;
        let bytes = match &form.kind {
            FormKind::Raw { bytes } => bytes.clone(),
            FormKind::Code { code, mem, lock } => {
                let opc = code.op_code();
                let mut ops = vec![];
                let msize = code_mem_size(*code);
                let lea_like = form.mnemonic == Mnemonic::Lea;
                for (i, k) in opc.op_kinds().iter().enumerate() {
                    let sz = |k: K| match k {
                        K::r8_or_mem | K::r8_reg | K::r8_opcode => 1,
                        K::r16_or_mem | K::r16_reg | K::r16_opcode => 2,
                        K::r32_or_mem | K::r32_reg | K::r32_opcode => 4,
                        _ => 8,
                    };
                    let shift_count = is_shift(form.mnemonic);
                    let o = match *k {
                        K::r8_or_mem | K::r16_or_mem | K::r32_or_mem | K::r64_or_mem if !mem => {
                            Opnd::R(rand_reg(&mut self.rng, sz(*k)))
                        }
                        K::r8_or_mem | K::r16_or_mem | K::r32_or_mem | K::r64_or_mem | K::mem => {
                            if lea_like {
                                // LEA: no access; any registers and displacement.
                                let t = self.rng.next() & 0xffff_ffff;
                                let p = plan_mem(&mut self.rng, t);
                                Opnd::M(p.op)
                            } else {
                                let align = if *code == Code::Cmpxchg16b_m128 {
                                    16
                                } else {
                                    1
                                };
                                let t = (d + 0x1000 + self.rng.below(0x2000)) & !(align - 1);
                                let p = plan_mem(&mut self.rng, t);
                                pins.extend(p.pins);
                                mem_target = Some((t, msize));
                                Opnd::M(p.op)
                            }
                        }
                        K::mem_offs => {
                            let t = d + 0x1000 + self.rng.below(0x2000);
                            mem_target = Some((t, msize));
                            Opnd::M(MemoryOperand::with_displ(t, 8))
                        }
                        K::r8_reg
                        | K::r8_opcode
                        | K::r16_reg
                        | K::r16_opcode
                        | K::r32_reg
                        | K::r32_opcode
                        | K::r64_reg
                        | K::r64_opcode => Opnd::R(rand_reg(&mut self.rng, sz(*k))),
                        K::al => Opnd::R(Register::AL),
                        K::cl => Opnd::R(Register::CL),
                        K::ax => Opnd::R(Register::AX),
                        K::eax => Opnd::R(Register::EAX),
                        K::rax => Opnd::R(Register::RAX),
                        K::imm8_const_1 => Opnd::I(1),
                        K::imm8 if shift_count => Opnd::I(count_value(&mut self.rng) as i32),
                        K::imm8 => Opnd::I(self.rng.val(1) as i32),
                        // ENTER's allocation: the host faults when RSP - size leaves the data
                        // area (it touches the new stack top), so keep it inside.
                        K::imm16 if form.mnemonic == Mnemonic::Enter => {
                            Opnd::I(self.rng.val(2) as i32 & 0x7ff)
                        }
                        K::imm16 => Opnd::I(self.rng.val(2) as i32),
                        K::imm8sex16 | K::imm8sex32 | K::imm8sex64 => {
                            Opnd::I(self.rng.val(1) as i8 as i32)
                        }
                        K::imm32 | K::imm32sex64 => Opnd::I(self.rng.val(4) as i32),
                        K::imm64 => Opnd::U64(self.rng.val(8)),
                        K::br64_1 | K::br64_4 => {
                            assert_eq!(i, 0);
                            ops.clear();
                            break;
                        }
                        other => panic!("unexpected operand kind {other:?} in {code:?}"),
                    };
                    ops.push(o);
                }
                let mut insn = if opc
                    .op_kinds()
                    .iter()
                    .any(|k| matches!(k, K::br64_1 | K::br64_4))
                {
                    Instruction::with_branch(*code, taken).ok()?
                } else {
                    build(*code, &ops)?
                };
                insn.set_has_lock_prefix(*lock);
                let mut enc = Encoder::new(64);
                enc.encode(&insn, self.native.test_addr()).ok()?;
                enc.take_buffer()
            }
        };
        let mut dec = Decoder::with_ip(64, &bytes, self.native.test_addr(), DecoderOptions::NONE);
        let insn = dec.decode();
        if insn.is_invalid() || insn.len() != bytes.len() {
            return None;
        }
        if let FormKind::Code { code, .. } = &form.kind {
            if insn.code() != *code {
                return None;
            }
        }
        let m = insn.mnemonic();
        self.randomise_reg_operands(&insn, &mut g);
        // Implicit pointers.
        let ptr = |rng: &mut Rng, lo: u64| d + lo + rng.below(0x1000);
        let asz = addr_size(&insn);
        match m {
            Mnemonic::Leave | Mnemonic::Enter => {
                pins.push((Register::RBP, ptr(&mut self.rng, 0x1800) & !3))
            }
            Mnemonic::Xlatb => {
                let v =
                    ptr(&mut self.rng, 0x1800) | if asz == 4 { self.rng.next() << 32 } else { 0 };
                pins.push((Register::RBX, v));
            }
            _ if is_string(m) => {
                for r in [Register::RSI, Register::RDI] {
                    let v = ptr(&mut self.rng, 0x1800)
                        | if asz == 4 { self.rng.next() << 32 } else { 0 };
                    pins.push((r, v));
                }
                if insn.has_rep_prefix() || insn.has_repne_prefix() {
                    let c = self.rng.below(7) | if asz == 4 { self.rng.next() << 32 } else { 0 };
                    pins.push((Register::RCX, c));
                }
            }
            _ => {}
        }
        let pinned = self.pin_and_scramble(&mut g, &pins, mem_target, m, asz);
        // Operand-specific values.
        let free = |r: Register| pinned & (1 << reg_slot(r).0) == 0;
        let opsz = if insn.op_count() > 0 {
            op_size(&insn, 0)
        } else {
            8
        };
        let mem_ea = mem_target.map(|(t, _)| t);
        self.steer_operands(&insn, &mut g, free, mem_ea, opsz);
        match m {
            Mnemonic::Bt | Mnemonic::Bts | Mnemonic::Btr | Mnemonic::Btc
                if insn.op_kind(0) == OpKind::Memory && insn.op_kind(1) == OpKind::Register =>
            {
                let r = insn.op_register(1);
                if !free(r) {
                    return None;
                }
                let off = (self.rng.below(0x6000) as i64 - 0x3000) as u64;
                let (i, _) = reg_slot(r);
                g[i] = (off & mask(opsz)) | (self.rng.next() & !mask(opsz));
            }
            Mnemonic::Loop
            | Mnemonic::Loope
            | Mnemonic::Loopne
            | Mnemonic::Jrcxz
            | Mnemonic::Jecxz => {
                g[1] = [0, 1, 2, 0x1_0000_0000, 0x1_0000_0001, self.rng.next()]
                    [self.rng.below(6) as usize];
            }
            Mnemonic::Jmp | Mnemonic::Call
                if insn.op_count() == 1 && insn.op_kind(0) == OpKind::Register =>
            {
                if !free(insn.op_register(0)) {
                    return None;
                }
                g[reg_slot(insn.op_register(0)).0] = taken;
            }
            _ => {}
        }
        // Memory-held targets and wide compare-exchange operands (after the scrambling).
        match m {
            Mnemonic::Jmp | Mnemonic::Call
                if insn.op_count() == 1 && insn.op_kind(0) == OpKind::Memory =>
            {
                self.poke(mem_ea.unwrap(), taken, 8);
            }
            Mnemonic::Ret => {
                if !self.in_data(g[4], 8) {
                    return None;
                }
                self.poke(g[4], taken, 8);
            }
            Mnemonic::Cmpxchg8b | Mnemonic::Cmpxchg16b if self.rng.chance(1, 2) => {
                let half = if m == Mnemonic::Cmpxchg16b { 8 } else { 4 };
                let t = mem_ea.unwrap();
                let (lo, hi) = (self.peek(t, half), self.peek(t + half, half));
                if free(Register::RAX) && free(Register::RDX) {
                    write_low(
                        &mut g,
                        if half == 8 {
                            Register::RAX
                        } else {
                            Register::EAX
                        },
                        lo,
                    );
                    write_low(
                        &mut g,
                        if half == 8 {
                            Register::RDX
                        } else {
                            Register::EDX
                        },
                        hi,
                    );
                }
            }
            _ => {}
        }
        let flags_in = self.flags_in(m);
        let case = Case {
            bytes,
            insn,
            gpr: g,
            rflags: flags_in,
            tlb: self.rng.chance(1, 2),
        };
        self.safe(&case).then_some(case)
    }

    /// Every memory access stays in the data area, every branch lands on the taken stub.
    fn safe(&self, c: &Case) -> bool {
        let insn = &c.insn;
        let g = &c.gpr;
        let m = insn.mnemonic();
        let taken = self.native.taken_addr();
        let uses_stack = matches!(
            m,
            Mnemonic::Push | Mnemonic::Pop | Mnemonic::Call | Mnemonic::Ret | Mnemonic::Enter
        );
        if uses_stack && !(self.in_data(g[4].wrapping_sub(0x180), 0x200)) {
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
            if m == Mnemonic::Cmpxchg16b && ea & 15 != 0 {
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
            if matches!(m, Mnemonic::Jmp | Mnemonic::Call) && self.peek(ea, 8) != taken {
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
}

pub fn code_mem_size(code: Code) -> u64 {
    let mut i = Instruction::with(code);
    i.set_code(code);
    i.memory_size().size() as u64
}

pub fn is_shift(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Shl | Sal | Shr | Sar | Rol | Ror | Rcl | Rcr | Shld | Shrd
    )
}

pub fn count_value(rng: &mut Rng) -> u64 {
    if rng.chance(1, 2) {
        [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65][rng.below(16) as usize]
    } else {
        rng.next() & 0xff
    }
}

pub fn is_string(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Movsb
            | Movsw
            | Movsd
            | Movsq
            | Stosb
            | Stosw
            | Stosd
            | Stosq
            | Lodsb
            | Lodsw
            | Lodsd
            | Lodsq
            | Cmpsb
            | Cmpsw
            | Cmpsd
            | Cmpsq
            | Scasb
            | Scasw
            | Scasd
            | Scasq
    )
}

fn addr_size(insn: &Instruction) -> u32 {
    let b = insn.memory_base();
    if b != Register::None && b != Register::RIP && b.size() == 4 {
        return 4;
    }
    for i in 0..insn.op_count() {
        if matches!(
            insn.op_kind(i),
            OpKind::MemorySegESI | OpKind::MemorySegEDI | OpKind::MemoryESEDI
        ) {
            return 4;
        }
    }
    if insn.memory_index() != Register::None && insn.memory_index().size() == 4 {
        return 4;
    }
    if insn.mnemonic() == Mnemonic::Jecxz || format!("{:?}", insn.code()).ends_with("_ECX") {
        return 4;
    }
    8
}

pub fn sext(v: u64, sz: u32) -> i64 {
    let sh = 64 - sz * 8;
    ((v << sh) as i64) >> sh
}

pub fn op_size(insn: &Instruction, i: u32) -> u32 {
    match insn.op_kind(i) {
        OpKind::Register => insn.op_register(i).size() as u32,
        OpKind::Memory => insn.memory_size().size() as u32,
        _ => 8,
    }
}

/// The effective (= linear, in 64-bit mode) address of the memory operand.
pub fn effective_address(insn: &Instruction, g: &[u64; 16]) -> u64 {
    let b = insn.memory_base();
    if b == Register::RIP {
        return insn.memory_displacement64();
    }
    let mut a = insn.memory_displacement64();
    if b != Register::None {
        a = a.wrapping_add(read_reg(g, b));
    }
    let i = insn.memory_index();
    if i != Register::None {
        a = a.wrapping_add(read_reg(g, i).wrapping_mul(insn.memory_index_scale() as u64));
    }
    a & mask(addr_size(insn))
}

// ---------------------------------------------------------------- undefined flags

pub struct Undefined {
    pub flags: u64,
    /// The destination's value is undefined too (16-bit SHLD/SHRD with a count above 16).
    pub result: bool,
}

/// What the SDM leaves undefined for this instruction with these inputs (SDM Vol. 2, each
/// instruction's "Flags Affected"; Vol. 1, Appendix A).
pub fn undefined(insn: &Instruction, g: &[u64; 16]) -> Undefined {
    use Mnemonic::*;
    let m = insn.mnemonic();
    let sz = if insn.op_count() > 0 {
        op_size(insn, 0)
    } else {
        8
    };
    let bits = sz * 8;
    let count = || {
        let last = insn.op_count() - 1;
        let raw = match insn.op_kind(last) {
            OpKind::Register => read_reg(g, insn.op_register(last)),
            _ => insn.immediate(last),
        };
        (raw & if sz == 8 { 0x3f } else { 0x1f }) as u32
    };
    let flags = match m {
        And | Or | Xor | Test => AF,
        Shl | Sal | Shr | Sar => {
            let c = count();
            if c == 0 {
                0
            } else {
                AF | if c > 1 { OF } else { 0 } | if m != Sar && c >= bits { CF } else { 0 }
            }
        }
        Rol | Ror | Rcl | Rcr => {
            if count() > 1 {
                OF
            } else {
                0
            }
        }
        Shld | Shrd => {
            let c = count();
            if c > bits {
                return Undefined {
                    flags: ARITH,
                    result: true,
                };
            }
            match c {
                0 => 0,
                1 => AF,
                _ => AF | OF,
            }
        }
        Mul | Imul => SF | ZF | AF | PF,
        Div | Idiv => ARITH,
        Bt | Bts | Btr | Btc => OF | SF | AF | PF,
        Bsf | Bsr => CF | OF | SF | AF | PF,
        Tzcnt | Lzcnt => OF | SF | AF | PF,
        // The legacy BCD instructions (32-bit code only; SDM Vol. 2, "Flags Affected").
        Daa | Das => OF,
        Aaa | Aas => OF | SF | ZF | PF,
        Aam | Aad => OF | AF | CF,
        _ => 0,
    };
    Undefined {
        flags,
        result: false,
    }
}

/// #DE exactly when the quotient does not fit or the divisor is zero (SDM Vol. 2, DIV/IDIV).
pub fn div_faults(insn: &Instruction, g: &[u64; 16], divisor: u64) -> bool {
    let sz = op_size(insn, 0);
    let bits = sz * 8;
    let d = divisor & mask(sz);
    if d == 0 {
        return true;
    }
    let (lo, hi) = if sz == 1 {
        (g[0] & 0xff, (g[0] >> 8) & 0xff)
    } else {
        (g[0] & mask(sz), g[2] & mask(sz))
    };
    let n = ((hi as u128) << bits) | lo as u128;
    if insn.mnemonic() == Mnemonic::Div {
        return n / d as u128 > mask(sz) as u128;
    }
    let sn = ((n << (128 - 2 * bits)) as i128) >> (128 - 2 * bits);
    let sd = sext(d, sz) as i128;
    match sn.checked_div(sd) {
        None => true,
        Some(q) => q > (1i128 << (bits - 1)) - 1 || q < -(1i128 << (bits - 1)),
    }
}

// ---------------------------------------------------------------- running and comparing

#[derive(Default)]
pub struct FormResult {
    pub cases: u64,
    pub failures: u64,
    pub reports: Vec<String>,
    /// Cases where both sides raised #DE (not run natively).
    pub de: u64,
}

pub fn disasm(insn: &Instruction) -> String {
    let mut f = IntelFormatter::new();
    let mut s = String::new();
    f.format(insn, &mut s);
    s
}

/// The case's instruction, encoding and inputs, as a report starts.
pub fn case_head(c: &Case, regs_str: fn(&[u64; 16]) -> String) -> String {
    format!(
        "{} [{}]\n  in:  {}\n       flags {}",
        disasm(&c.insn),
        c.bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
        regs_str(&c.gpr),
        flags_str(c.rflags)
    )
}

fn regs_str(g: &[u64; 16]) -> String {
    let names = [
        "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15",
    ];
    names
        .iter()
        .zip(g)
        .map(|(n, v)| format!("{n}={v:#x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn flags_str(f: u64) -> String {
    let mut s = format!("{f:#x} [");
    for (b, n) in [
        (OF, "O"),
        (DF, "D"),
        (SF, "S"),
        (ZF, "Z"),
        (AF, "A"),
        (PF, "P"),
        (CF, "C"),
    ] {
        s.push_str(if f & b != 0 { n } else { "-" });
    }
    s.push(']');
    s
}

impl Ctx {
    /// Run `cases` random cases of `form` on both sides and compare.
    pub fn run_form(&mut self, backend: Backend, form: &Form, cases: u64) -> FormResult {
        self.rng = Rng::new(hash(&form.name));
        self.run_generated(
            &form.name,
            cases,
            |s| s.gen(form),
            |s, c, res| s.run_case(backend, c, res),
        )
    }

    fn run_case(&mut self, backend: Backend, c: &Case, res: &mut FormResult) -> Option<String> {
        let insn = &c.insn;
        // The #DE prediction, from the inputs.
        let divisor = if matches!(insn.mnemonic(), Mnemonic::Div | Mnemonic::Idiv) {
            Some(match insn.op_kind(0) {
                OpKind::Register => read_reg(&c.gpr, insn.op_register(0)),
                _ => self.peek(effective_address(insn, &c.gpr), op_size(insn, 0) as u64),
            })
        } else {
            None
        };
        let de = divisor
            .map(|d| div_faults(insn, &c.gpr, d))
            .unwrap_or(false);

        let (t_exit, cpu) = self.run_translated_side(backend, c, cpu64());
        if de {
            res.de += 1;
            return match t_exit {
                TransExit::Raise(e)
                    if e.vector == vector::DE
                        && cpu.rip == self.native.test_addr()
                        && cpu.gpr == c.gpr =>
                {
                    None
                }
                other => Some(format!(
                    "{}\n  native would raise #DE; translated: {other:?} rip={:#x}",
                    case_head(c, regs_str),
                    cpu.rip
                )),
            };
        }
        self.run_native_and_compare(c, &t_exit, &cpu, regs_str)
    }
}

// ---------------------------------------------------------------- running a suite

const DEFAULT_CASES: u64 = 400;

/// Cases per form: `DIFF_CASES`, or 400.
pub fn cases() -> u64 {
    std::env::var("DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// The forms of `all` in the family (`in_family`) that `DIFF_FORM` selects.
pub fn select<M>(all: Vec<Form<M>>, in_family: impl Fn(&Form<M>) -> bool) -> Vec<Form<M>> {
    let filter = std::env::var("DIFF_FORM").ok();
    all.into_iter()
        .filter(|form| in_family(form))
        .filter(|form| {
            filter
                .as_ref()
                .map(|s| form.name.contains(s.as_str()))
                .unwrap_or(true)
        })
        .collect()
}

/// The backends that `DIFF_BACKEND` selects (all without it).
pub fn backends() -> impl Iterator<Item = Backend> {
    let only = std::env::var("DIFF_BACKEND").ok();
    BACKENDS.iter().copied().filter(move |backend| {
        !only
            .as_ref()
            .is_some_and(|b| !format!("{backend:?}").eq_ignore_ascii_case(b))
    })
}

/// Run every form of a family with `run` (backend, form, number of cases) on each backend,
/// print the summary (`label`: the family; `exc`: the exceptions checked without a native
/// run) and fail with the reports of the forms that differ. The JIT gets a quarter of the
/// cases unless `jit_all_cases`: compiling every block costs far more than interpreting it.
pub fn run_family_forms<M>(
    label: &str,
    exc: &str,
    forms: &[Form<M>],
    jit_all_cases: bool,
    mut run: impl FnMut(Backend, &Form<M>, u64) -> FormResult,
) {
    let n = cases();
    let verbose = std::env::var("DIFF_VERBOSE").is_ok();
    let mut total_cases = 0;
    let mut total_exc = 0;
    let mut failed = vec![];
    let start = std::time::Instant::now();
    for backend in backends() {
        let n = if backend == Backend::Jit && !jit_all_cases {
            n.div_ceil(4)
        } else {
            n
        };
        for form in forms {
            if verbose {
                eprintln!("{}", form.name);
            }
            let r = run(backend, form, n);
            total_cases += r.cases;
            total_exc += r.de;
            if r.failures > 0 {
                let mut s = format!(
                    "=== {} [{backend:?}]: {} of {} cases differ\n",
                    form.name, r.failures, r.cases
                );
                for rep in &r.reports {
                    s.push_str(rep);
                    s.push('\n');
                }
                failed.push(s);
            }
        }
    }
    println!(
        "{label}: {} forms x {} backend(s), {total_cases} cases ({total_exc} {exc} cases checked \
         without native run), {:.2?}",
        forms.len(),
        BACKENDS.len(),
        start.elapsed()
    );
    if !failed.is_empty() {
        for s in &failed {
            eprintln!("{s}");
        }
        panic!(
            "{label}: {} of {} forms differ from the host CPU",
            failed.len(),
            forms.len()
        );
    }
}

/// Check that every mnemonic of `lift` has a form, or a reason from `why` ("?": none), and
/// print the coverage summary after `label`. Returns the encodings (`Code` names) covered.
pub fn coverage_report<M>(
    label: &str,
    forms: &[Form<M>],
    lift: Vec<Mnemonic>,
    why: impl Fn(Mnemonic) -> &'static str,
) -> HashSet<String> {
    let covered: HashSet<Mnemonic> = forms.iter().map(|f| f.mnemonic).collect();
    let missing: Vec<String> = lift
        .into_iter()
        .filter(|m| !covered.contains(m))
        .map(|m| format!("{m:?} ({})", why(m)))
        .collect();
    let codes: HashSet<String> = forms
        .iter()
        .map(|f| f.name.split(' ').next().unwrap().to_string())
        .collect();
    println!(
        "{label}{} forms ({} encodings, {} mnemonics); Lift mnemonics not covered: {}",
        forms.len(),
        codes.len(),
        covered.len(),
        missing.join(", ")
    );
    let unexplained: Vec<_> = missing.iter().filter(|s| s.ends_with("(?)")).collect();
    assert!(
        unexplained.is_empty(),
        "Lift mnemonics without forms: {unexplained:?}"
    );
    codes
}
