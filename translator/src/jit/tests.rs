//! Tier 1 against tier 0: compile small blocks, run them in both tiers from the same state,
//! compare the resulting `CpuState`, memory and `BlockExit`.

use super::{run_compiled, Jit};
use crate::block::{Block, BlockKey};
use crate::classify::CalloutKind;
use crate::cpu::{cr, reg, CpuState, Mode, Seg, Segment};
use crate::env::{CalloutResult, Env, Fetched};
use crate::exception::Exception;
use crate::interp::{run_block, BlockExit};
use crate::scan::scan_block;
use iced_x86::Instruction;
use std::time::Instant;

// Assembled with GNU as (intel syntax); the source is in the comment above each.

// add rax,rbx; sete cl; adc rdx,rsi; setb ch; sub edi,r8d; setl r9b; setle r10b; seto r11b;
// setp r12b; sbb bx,si; seta r13b; inc r14; sets r15b; dec al; setg ah; and rsi,rdx;
// setbe dil; or r8,rax; setnp r10b; xor bl,cl; setns r11b; neg rdx; setge r12b; not r9;
// cmp rax,rbx; setbe r13b; setg r14b; cmp esi,edi; seto r15b; setnl cl; test dx,dx; sets ch;
// adc eax,7; cmovb rbx,rcx; imul rsi,rdi; lea rdi,[rax+rbx*4-5]; movsx rcx,dl; movzx edx,bx;
// cdqe; jmp .+0x100
const ALU: &[u8] = &[
    0x48, 0x01, 0xd8, 0x0f, 0x94, 0xc1, 0x48, 0x11, 0xf2, 0x0f, 0x92, 0xc5, 0x44, 0x29, 0xc7, 0x41,
    0x0f, 0x9c, 0xc1, 0x41, 0x0f, 0x9e, 0xc2, 0x41, 0x0f, 0x90, 0xc3, 0x41, 0x0f, 0x9a, 0xc4, 0x66,
    0x19, 0xf3, 0x41, 0x0f, 0x97, 0xc5, 0x49, 0xff, 0xc6, 0x41, 0x0f, 0x98, 0xc7, 0xfe, 0xc8, 0x0f,
    0x9f, 0xc4, 0x48, 0x21, 0xd6, 0x40, 0x0f, 0x96, 0xc7, 0x49, 0x09, 0xc0, 0x41, 0x0f, 0x9b, 0xc2,
    0x30, 0xcb, 0x41, 0x0f, 0x99, 0xc3, 0x48, 0xf7, 0xda, 0x41, 0x0f, 0x9d, 0xc4, 0x49, 0xf7, 0xd1,
    0x48, 0x39, 0xd8, 0x41, 0x0f, 0x96, 0xc5, 0x41, 0x0f, 0x9f, 0xc6, 0x39, 0xfe, 0x41, 0x0f, 0x90,
    0xc7, 0x0f, 0x9d, 0xc1, 0x66, 0x85, 0xd2, 0x0f, 0x98, 0xc5, 0x83, 0xd0, 0x07, 0x48, 0x0f, 0x42,
    0xd9, 0x48, 0x0f, 0xaf, 0xf7, 0x48, 0x8d, 0x7c, 0x98, 0xfb, 0x48, 0x0f, 0xbe, 0xca, 0x0f, 0xb7,
    0xd3, 0x48, 0x98, 0xe9, 0xfb, 0x00, 0x00, 0x00,
];
// mov [rdi+8],rax; mov rbx,[rdi+8]; mov word [rdi+0x100],cx; movzx edx,word [rdi+0x100];
// mov byte [rdi+0x2001],dl; movsx rsi,byte [rdi+0x2001]; push rbx; push rax; pop rcx; pop rdx;
// mov rax,[rdi+0xffc] (crosses a page when rdi is page aligned); add [rdi+16],rax;
// mov r8d,[rdi+16]; jmp .+0x40
const MEM: &[u8] = &[
    0x48, 0x89, 0x47, 0x08, 0x48, 0x8b, 0x5f, 0x08, 0x66, 0x89, 0x8f, 0x00, 0x01, 0x00, 0x00, 0x0f,
    0xb7, 0x97, 0x00, 0x01, 0x00, 0x00, 0x88, 0x97, 0x01, 0x20, 0x00, 0x00, 0x48, 0x0f, 0xbe, 0xb7,
    0x01, 0x20, 0x00, 0x00, 0x53, 0x50, 0x59, 0x5a, 0x48, 0x8b, 0x87, 0xfc, 0x0f, 0x00, 0x00, 0x48,
    0x01, 0x47, 0x10, 0x44, 0x8b, 0x47, 0x10, 0xeb, 0x3e,
];
// shl rax,cl; rol edx,3; sar rbx,cl; mul rdi; div rcx; bsf r9,rsi; rcl r10,1; shld r11,r12,cl;
// jmp .+0x40
const HELPERS: &[u8] = &[
    0x48, 0xd3, 0xe0, 0xc1, 0xc2, 0x03, 0x48, 0xd3, 0xfb, 0x48, 0xf7, 0xe7, 0x48, 0xf7, 0xf1, 0x4c,
    0x0f, 0xbc, 0xce, 0x49, 0xd1, 0xd2, 0x4d, 0x0f, 0xa5, 0xe3, 0xeb, 0x3e,
];
// mov rax,0x1234; add rcx,rax; mov rdx,[rbx]; mov rsi,5; jmp .+0x40
const FAULTLOAD: &[u8] = &[
    0x48, 0xc7, 0xc0, 0x34, 0x12, 0x00, 0x00, 0x48, 0x01, 0xc1, 0x48, 0x8b, 0x13, 0x48, 0xc7, 0xc6,
    0x05, 0x00, 0x00, 0x00, 0xeb, 0x3e,
];
// mov rdx,rax; add rdx,rbx; cmp rax,rbx; jl .+0x40
const BRANCH: &[u8] = &[
    0x48, 0x89, 0xc2, 0x48, 0x01, 0xda, 0x48, 0x39, 0xd8, 0x7c, 0x3e,
];
// mov rax,0x11; mov [rbx],eax; mov rcx,0x22; mov rdx,0x33; jmp .+0x40
const SMC: &[u8] = &[
    0x48, 0xc7, 0xc0, 0x11, 0x00, 0x00, 0x00, 0x89, 0x03, 0x48, 0xc7, 0xc1, 0x22, 0x00, 0x00, 0x00,
    0x48, 0xc7, 0xc2, 0x33, 0x00, 0x00, 0x00, 0xeb, 0x3e,
];
// mov rax,0x11; add rcx,rax; cpuid
const CALLOUT: &[u8] = &[
    0x48, 0xc7, 0xc0, 0x11, 0x00, 0x00, 0x00, 0x48, 0x01, 0xc1, 0x0f, 0xa2,
];
// (32-bit) mov eax,0x11; mov ecx,[ebx]; mov edx,[ebx+4]; mov es:[ebx+8],eax; push ecx; pop esi;
// jmp .+0x40
const SEG32: &[u8] = &[
    0xb8, 0x11, 0x00, 0x00, 0x00, 0x8b, 0x0b, 0x8b, 0x53, 0x04, 0x26, 0x89, 0x43, 0x08, 0x51, 0x5e,
    0xeb, 0x3e,
];
// 1: mov rax,[rsi]; add rax,rdx; mov [rdi],rax; xor rdx,rax; add rsi,8; add rdi,8; dec rcx; jnz 1b
const HOTLOOP: &[u8] = &[
    0x48, 0x8b, 0x06, 0x48, 0x01, 0xd0, 0x48, 0x89, 0x07, 0x48, 0x31, 0xc2, 0x48, 0x83, 0xc6, 0x08,
    0x48, 0x83, 0xc7, 0x08, 0x48, 0xff, 0xc9, 0x75, 0xe7,
];
// mov rax,1; xor rcx,rcx; div rcx; jmp .+0x40
const DIVZ: &[u8] = &[
    0x48, 0xc7, 0xc0, 0x01, 0x00, 0x00, 0x00, 0x48, 0x31, 0xc9, 0x48, 0xf7, 0xf1, 0xeb, 0x3e,
];
// cld; rep movsb; lahf; jmp .+0x40
const STRINGOP: &[u8] = &[0xfc, 0xf3, 0xa4, 0x9f, 0xeb, 0x3e];

const MEM_SIZE: usize = 1 << 20;
const CODE: u64 = 0x1000;
const DATA: u64 = 0x10000;
const STACK_TOP: u64 = 0x18000;

/// Flat memory with adjacent pages swapped (linear page n is physical page n ^ 1, so an
/// access crossing a page is not contiguous in host memory); writes to `code_page` set
/// `code_modified`; addresses past the end raise #PF.
struct TestEnv {
    mem: Vec<u8>,
    fill_tlb: bool,
    code_page: Option<u64>,
    callouts: Vec<(u64, CalloutKind)>,
}

impl TestEnv {
    fn new() -> Self {
        TestEnv {
            mem: vec![0; MEM_SIZE],
            fill_tlb: true,
            code_page: None,
            callouts: Vec::new(),
        }
    }

    fn check(&self, lin: u64, size: u8, write: bool, user: bool) -> Result<(), Exception> {
        if lin
            .checked_add(size as u64)
            .is_none_or(|e| e > MEM_SIZE as u64)
        {
            let code = if write { crate::exception::pf::W } else { 0 }
                | if user { crate::exception::pf::U } else { 0 };
            return Err(Exception::pf(lin.max(MEM_SIZE as u64), code));
        }
        Ok(())
    }

    fn phys(lin: u64) -> usize {
        (lin ^ 0x1000) as usize
    }

    fn fill(&mut self, cpu: &mut CpuState, lin: u64, size: u8, user: bool) {
        if self.fill_tlb && (lin & 0xfff) + size as u64 <= 0x1000 {
            let page = lin & !0xfff;
            let phys = Self::phys(page);
            let host = unsafe { self.mem.as_mut_ptr().add(phys) };
            cpu.tlb
                .fill(lin, user, host, phys as u64, self.code_page != Some(page));
        }
    }
}

impl Env for TestEnv {
    fn read_slow(
        &mut self,
        cpu: &mut CpuState,
        lin: u64,
        size: u8,
        user: bool,
    ) -> Result<u64, Exception> {
        self.check(lin, size, false, user)?;
        self.fill(cpu, lin, size, user);
        let mut v = 0u64;
        for i in 0..size as usize {
            v |= (self.mem[Self::phys(lin + i as u64)] as u64) << (8 * i);
        }
        Ok(v)
    }

    fn write_slow(
        &mut self,
        cpu: &mut CpuState,
        lin: u64,
        size: u8,
        value: u64,
        user: bool,
    ) -> Result<(), Exception> {
        self.check(lin, size, true, user)?;
        if self.code_page == Some(lin & !0xfff) {
            cpu.code_modified = true;
        }
        self.fill(cpu, lin, size, user);
        for i in 0..size as usize {
            self.mem[Self::phys(lin + i as u64)] = (value >> (8 * i)) as u8;
        }
        Ok(())
    }

    fn fetch(
        &mut self,
        _cpu: &mut CpuState,
        lin: u64,
        buf: &mut [u8],
    ) -> Result<Fetched, Exception> {
        let n = buf.len().min(MEM_SIZE - lin as usize);
        buf[..n].copy_from_slice(&self.mem[lin as usize..lin as usize + n]);
        Ok(Fetched {
            phys: lin,
            len: n,
            next_page: None,
            next_fault: None,
        })
    }

    fn callout(
        &mut self,
        cpu: &mut CpuState,
        insn: &Instruction,
        kind: CalloutKind,
    ) -> CalloutResult {
        self.callouts.push((insn.ip(), kind));
        match kind {
            CalloutKind::Cpuid => {
                cpu.gpr[reg::RAX as usize] = 0x1234_5678;
                cpu.gpr[reg::RBX as usize] ^= cpu.gpr[reg::RCX as usize];
                CalloutResult::Next
            }
            CalloutKind::Hlt => CalloutResult::Halt,
            _ => CalloutResult::Raise(Exception::ud()),
        }
    }
}

fn mode64(cpl: u8) -> Mode {
    Mode {
        code_bits: 64,
        cpl,
        paging: true,
        stack_bits: 64,
        seg_checks: false,
    }
}

fn mode32() -> Mode {
    Mode {
        code_bits: 32,
        cpl: 0,
        paging: false,
        stack_bits: 32,
        seg_checks: false,
    }
}

fn cpu_for(mode: Mode) -> CpuState {
    let mut cpu = CpuState::new();
    cpu.cr0 = cr::CR0_PE | cr::CR0_ET | if mode.paging { cr::CR0_PG } else { 0 };
    let dpl = mode.cpl;
    for s in Seg::ALL {
        let typ = if s == Seg::Cs { 0xb } else { 0x3 };
        cpu.seg[s as usize] = Segment::flat(
            ((s as u16) << 3) | dpl as u16,
            typ,
            dpl,
            mode.code_bits == 32,
        );
    }
    if mode.code_bits == 64 {
        cpu.efer = cr::EFER_LME | cr::EFER_LMA;
        cpu.seg[Seg::Cs as usize].attrs |= Segment::ATTR_L;
    }
    cpu.gpr[reg::RSP as usize] = STACK_TOP;
    cpu.rip = CODE;
    cpu
}

fn block(code: &[u8], mode: Mode) -> Block {
    let key = BlockKey {
        rip: CODE,
        cs_base: 0,
        phys: CODE,
        mode,
    };
    let mut bytes = code.to_vec();
    bytes.resize(code.len() + 16, 0x90);
    let fetched = Fetched {
        phys: CODE,
        len: code.len(),
        next_page: None,
        next_fault: None,
    };
    scan_block(key, fetched, &bytes)
}

/// Deterministic pseudo-random values with the edge cases flags care about mixed in.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        const EDGE: [u64; 10] = [
            0,
            1,
            u64::MAX,
            0x80,
            0x7f,
            0xffff_ffff,
            0x8000_0000,
            0x7fff_ffff_ffff_ffff,
            0xff,
            0x8000,
        ];
        match self.0 % 5 {
            0 => EDGE[(self.0 >> 8) as usize % EDGE.len()],
            1 => self.0 & 0xff,
            _ => self.0,
        }
    }
}

struct Outcome {
    exit: BlockExit,
    cpu: CpuState,
    env: TestEnv,
}

fn assert_same(what: &str, a: &Outcome, b: &Outcome) {
    assert_eq!(a.exit, b.exit, "{what}: exit");
    assert_eq!(a.cpu.gpr, b.cpu.gpr, "{what}: gpr");
    assert_eq!(a.cpu.rip, b.cpu.rip, "{what}: rip");
    assert_eq!(a.cpu.rflags, b.cpu.rflags, "{what}: rflags field");
    assert_eq!(a.cpu.rflags(), b.cpu.rflags(), "{what}: rflags");
    assert_eq!(a.cpu.cc, b.cpu.cc, "{what}: lazy flags");
    assert_eq!(
        a.cpu.code_modified, b.cpu.code_modified,
        "{what}: code_modified"
    );
    for (i, (x, y)) in a
        .cpu
        .tlb
        .entries
        .iter()
        .zip(b.cpu.tlb.entries.iter())
        .enumerate()
    {
        assert_eq!(
            (x.read_tag, x.write_tag, x.phys),
            (y.read_tag, y.write_tag, y.phys),
            "{what}: tlb entry {i}"
        );
    }
    assert!(a.env.mem == b.env.mem, "{what}: memory differs");
    assert_eq!(a.env.callouts, b.env.callouts, "{what}: callouts");
}

/// Run `blk` in both tiers from the state `setup` makes; panics on any difference.
fn differential(
    what: &str,
    jit: &mut Jit,
    blk: &Block,
    setup: &dyn Fn(&mut CpuState, &mut TestEnv),
) -> Outcome {
    let code = jit
        .compile(blk)
        .unwrap_or_else(|e| panic!("{what}: compile failed: {e}"));
    let run = |compiled: bool| {
        let mut cpu = cpu_for(blk.key.mode);
        let mut env = TestEnv::new();
        setup(&mut cpu, &mut env);
        let exit = if compiled {
            run_compiled(&mut cpu, &mut env, blk, code)
        } else {
            run_block(&mut cpu, &mut env, blk)
        };
        Outcome { exit, cpu, env }
    };
    let i = run(false);
    let c = run(true);
    assert_same(what, &i, &c);
    c
}

#[test]
fn alu_and_flags_match_interpreter() {
    let mut jit = Jit::new();
    let blk = block(ALU, mode64(0));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        let regs: Vec<u64> = (0..16).map(|_| rng.next()).collect();
        let carry_in = rng.next() & 1;
        let o = differential(&format!("alu round {round}"), &mut jit, &blk, &|cpu, _| {
            cpu.gpr.copy_from_slice(&regs);
            cpu.set_rflags(carry_in | 0x2);
        });
        assert_eq!(o.exit, BlockExit::Next { slot: Some(0) });
    }
}

/// Every condition and CF, from every lazy-flag operation and size, against the interpreter:
/// covers both the inline evaluation (known flags) and the trampolines.
#[test]
fn conditions_and_carry_for_every_cc_op() {
    use crate::flags::{CcOp, Cond};
    use crate::ir::{Op, REG_AH};
    let mut jit = Jit::new();
    let mut rng = Rng(777);
    for op in [
        CcOp::Add,
        CcOp::Adc,
        CcOp::Sub,
        CcOp::Sbb,
        CcOp::Logic,
        CcOp::Inc,
        CcOp::Dec,
        CcOp::Eflags,
    ] {
        for sz in [1u8, 2, 4, 8] {
            for round in 0..40 {
                let (a, b, aux) = (rng.next(), rng.next(), rng.next() & 1);
                // Mostly the true result, sometimes an arbitrary one: both tiers must agree
                // on any record.
                let r = match (op, round % 4) {
                    (_, 3) => rng.next(),
                    (CcOp::Sub | CcOp::Sbb, _) => a.wrapping_sub(b),
                    (CcOp::Logic, _) => a & b,
                    _ => a.wrapping_add(b),
                };
                let mut ops = vec![
                    Op::Insn { idx: 0, rip: CODE },
                    Op::Const { d: 0, v: a },
                    Op::Const { d: 1, v: b },
                    Op::Const { d: 2, v: r },
                    Op::Const { d: 3, v: aux },
                    Op::Flags {
                        op,
                        sz,
                        a: 0,
                        b: 1,
                        r: 2,
                        aux: 3,
                    },
                ];
                for cc in 0..16u8 {
                    ops.push(Op::Cond {
                        d: 10 + cc,
                        cc: Cond::from_index(cc),
                    });
                    ops.push(Op::Set {
                        r: cc,
                        sz: 8,
                        s: 10 + cc,
                    });
                }
                ops.push(Op::Insn {
                    idx: 1,
                    rip: CODE + 1,
                });
                ops.push(Op::Carry { d: 40 });
                ops.push(Op::Set {
                    r: REG_AH,
                    sz: 1,
                    s: 40,
                });
                ops.push(Op::Jmp { target: CODE + 2 });
                let mut blk = block(&[0x90, 0x90], mode64(0));
                blk.ops = ops;
                let o = differential(
                    &format!("{op:?} sz{sz} round {round}"),
                    &mut jit,
                    &blk,
                    &|_, _| {},
                );
                assert_eq!(o.exit, BlockExit::Next { slot: Some(0) });
            }
        }
    }
}

#[test]
fn memory_tlb_hit_and_miss_match_interpreter() {
    let mut jit = Jit::new();
    for cpl in [0u8, 3] {
        let blk = block(MEM, mode64(cpl));
        for (name, prefill, fill) in [
            ("miss", false, true),
            ("hit", true, true),
            ("never cached", false, false),
        ] {
            for rdi in [DATA, DATA + 0x7f3, DATA + 0xffd] {
                let o = differential(
                    &format!("mem cpl{cpl} {name} rdi={rdi:#x}"),
                    &mut jit,
                    &blk,
                    &|cpu, env| {
                        for (i, r) in cpu.gpr.iter_mut().enumerate() {
                            if i != reg::RSP as usize {
                                *r = 0x1111_2222_3333_4444u64.wrapping_mul(i as u64 + 1);
                            }
                        }
                        cpu.gpr[reg::RDI as usize] = rdi;
                        for (i, b) in env.mem[DATA as usize..DATA as usize + 0x3000]
                            .iter_mut()
                            .enumerate()
                        {
                            *b = (i * 7 + 3) as u8;
                        }
                        env.fill_tlb = fill;
                        if prefill {
                            for page in (DATA..DATA + 0x3000)
                                .step_by(0x1000)
                                .chain([STACK_TOP - 0x1000])
                            {
                                let phys = TestEnv::phys(page);
                                let host = unsafe { env.mem.as_mut_ptr().add(phys) };
                                cpu.tlb.fill(page, cpl == 3, host, phys as u64, true);
                            }
                        }
                    },
                );
                assert_eq!(o.exit, BlockExit::Next { slot: Some(0) });
            }
        }
    }
}

#[test]
fn compiled_fast_path_really_hits() {
    // With a prefilled TLB and an Env that refuses slow paths, only the inline path can work.
    struct NoSlow(TestEnv);
    impl Env for NoSlow {
        fn read_slow(
            &mut self,
            _: &mut CpuState,
            lin: u64,
            _: u8,
            _: bool,
        ) -> Result<u64, Exception> {
            panic!("unexpected read slow path at {lin:#x}")
        }
        fn write_slow(
            &mut self,
            _: &mut CpuState,
            lin: u64,
            _: u8,
            _: u64,
            _: bool,
        ) -> Result<(), Exception> {
            panic!("unexpected write slow path at {lin:#x}")
        }
        fn fetch(
            &mut self,
            c: &mut CpuState,
            lin: u64,
            buf: &mut [u8],
        ) -> Result<Fetched, Exception> {
            self.0.fetch(c, lin, buf)
        }
        fn callout(&mut self, c: &mut CpuState, i: &Instruction, k: CalloutKind) -> CalloutResult {
            self.0.callout(c, i, k)
        }
    }
    let mut jit = Jit::new();
    let blk = block(HOTLOOP, mode64(0));
    let code = jit.compile(&blk).unwrap();
    let mut env = NoSlow(TestEnv::new());
    let mut cpu = cpu_for(blk.key.mode);
    for page in [DATA, DATA + 0x1000] {
        let host = unsafe { env.0.mem.as_mut_ptr().add(page as usize) };
        cpu.tlb.fill(page, false, host, page, true);
    }
    env.0.mem[DATA as usize] = 5;
    cpu.gpr[reg::RSI as usize] = DATA;
    cpu.gpr[reg::RDI as usize] = DATA + 0x1000;
    cpu.gpr[reg::RCX as usize] = 3;
    let exit = run_compiled(&mut cpu, &mut env, &blk, code);
    assert_eq!(exit, BlockExit::Next { slot: Some(0) });
    assert_eq!(env.0.mem[DATA as usize + 0x1000], 5);
    assert_eq!(cpu.gpr[reg::RCX as usize], 2);
}

#[test]
fn helpers_match_interpreter() {
    let mut jit = Jit::new();
    let blk = block(HELPERS, mode64(0));
    let mut rng = Rng(12345);
    let mut raised = 0;
    for round in 0..300 {
        let regs: Vec<u64> = (0..16).map(|_| rng.next()).collect();
        let o = differential(
            &format!("helpers round {round}"),
            &mut jit,
            &blk,
            &|cpu, _| {
                cpu.gpr.copy_from_slice(&regs);
            },
        );
        if matches!(o.exit, BlockExit::Raise(_)) {
            raised += 1;
        }
    }
    assert!(
        raised > 0 && raised < 300,
        "both #DE and normal completion covered ({raised})"
    );
    let o = differential("div by zero", &mut jit, &block(DIVZ, mode64(0)), &|_, _| {});
    assert_eq!(o.exit, BlockExit::Raise(Exception::de()));
    assert_eq!(o.cpu.rip, CODE + 10, "RIP of the DIV");
    assert_eq!(
        o.cpu.gpr[reg::RAX as usize],
        1,
        "registers of earlier instructions committed"
    );
}

#[test]
fn string_helper_and_flags_match_interpreter() {
    let mut jit = Jit::new();
    let blk = block(STRINGOP, mode64(0));
    for n in [0u64, 1, 5, 0x1800] {
        differential(&format!("rep movsb {n}"), &mut jit, &blk, &|cpu, env| {
            cpu.gpr[reg::RSI as usize] = DATA + 0x10;
            cpu.gpr[reg::RDI as usize] = DATA + 0x4000;
            cpu.gpr[reg::RCX as usize] = n;
            for i in 0..0x2000 {
                env.mem[DATA as usize + i] = i as u8;
            }
            cpu.set_rflags(0x2 | crate::cpu::rflags::DF | crate::cpu::rflags::CF);
        });
    }
}

#[test]
fn faulting_load_raises_at_its_instruction() {
    let mut jit = Jit::new();
    let blk = block(FAULTLOAD, mode64(0));
    let o = differential("fault", &mut jit, &blk, &|cpu, _| {
        cpu.gpr[reg::RBX as usize] = MEM_SIZE as u64 + 0x40;
        cpu.gpr[reg::RCX as usize] = 1;
    });
    assert_eq!(
        o.exit,
        BlockExit::Raise(Exception::pf(MEM_SIZE as u64 + 0x40, 0))
    );
    assert_eq!(o.cpu.rip, CODE + 10);
    assert_eq!(o.cpu.gpr[reg::RAX as usize], 0x1234);
    assert_eq!(o.cpu.gpr[reg::RCX as usize], 0x1235);
    assert_eq!(
        o.cpu.gpr[reg::RSI as usize],
        0,
        "nothing after the fault ran"
    );
    let o = differential("no fault", &mut jit, &blk, &|cpu, _| {
        cpu.gpr[reg::RBX as usize] = DATA
    });
    assert_eq!(o.exit, BlockExit::Next { slot: Some(0) });
}

#[test]
fn branch_both_slots() {
    let mut jit = Jit::new();
    let blk = block(BRANCH, mode64(0));
    for (a, b, slot) in [
        (1u64, 2u64, 0u8),
        (2, 1, 1),
        (u64::MAX, 0, 0),
        (0, u64::MAX, 1),
        (5, 5, 1),
    ] {
        let o = differential(&format!("branch {a} {b}"), &mut jit, &blk, &|cpu, _| {
            cpu.gpr[reg::RAX as usize] = a;
            cpu.gpr[reg::RBX as usize] = b;
        });
        assert_eq!(o.exit, BlockExit::Next { slot: Some(slot) });
        assert_eq!(
            o.cpu.rip,
            if slot == 0 {
                CODE + 9 + 0x40
            } else {
                CODE + BRANCH.len() as u64
            }
        );
    }
}

#[test]
fn code_modified_leaves_after_the_store() {
    let mut jit = Jit::new();
    let blk = block(SMC, mode64(0));
    let o = differential("smc", &mut jit, &blk, &|cpu, env| {
        cpu.gpr[reg::RBX as usize] = DATA + 0x20;
        env.code_page = Some(DATA);
    });
    assert_eq!(o.exit, BlockExit::Next { slot: None });
    assert_eq!(o.cpu.rip, CODE + 9, "the instruction after the store");
    assert!(o.cpu.code_modified);
    assert_eq!(o.cpu.gpr[reg::RCX as usize], 0);
    // Already set on entry: leave before the first instruction.
    let o = differential("smc on entry", &mut jit, &blk, &|cpu, _| {
        cpu.code_modified = true
    });
    assert_eq!((o.exit, o.cpu.rip), (BlockExit::Next { slot: None }, CODE));
    let o = differential("no smc", &mut jit, &blk, &|cpu, _| {
        cpu.gpr[reg::RBX as usize] = DATA + 0x20
    });
    assert_eq!(o.exit, BlockExit::Next { slot: Some(0) });
}

#[test]
fn callout_ends_block_like_interpreter() {
    let mut jit = Jit::new();
    let blk = block(CALLOUT, mode64(0));
    let o = differential("cpuid", &mut jit, &blk, &|cpu, _| {
        cpu.gpr[reg::RBX as usize] = 7
    });
    assert_eq!(o.exit, BlockExit::Next { slot: None });
    assert_eq!(o.cpu.rip, CODE + CALLOUT.len() as u64);
    assert_eq!(o.env.callouts, vec![(CODE + 10, CalloutKind::Cpuid)]);
    assert_eq!(
        o.cpu.gpr[reg::RBX as usize],
        7 ^ 0x11,
        "the callout saw the stored registers"
    );
}

#[test]
fn segments_in_32bit_mode() {
    let mut jit = Jit::new();
    let blk = block(SEG32, mode32());
    let o = differential("flat", &mut jit, &blk, &|cpu, _| {
        cpu.gpr[reg::RBX as usize] = DATA
    });
    assert_eq!(o.exit, BlockExit::Next { slot: Some(0) });
    differential("based es", &mut jit, &blk, &|cpu, _| {
        cpu.gpr[reg::RBX as usize] = DATA;
        cpu.seg[Seg::Es as usize].base = 0x3000;
    });
    differential("wrapping", &mut jit, &blk, &|cpu, _| {
        cpu.gpr[reg::RBX as usize] = 0xffff_f000;
        cpu.seg[Seg::Ds as usize].base = 0x1_1000;
    });
    let o = differential("ds not present", &mut jit, &blk, &|cpu, _| {
        cpu.gpr[reg::RBX as usize] = DATA;
        cpu.seg[Seg::Ds as usize].attrs &= !Segment::ATTR_P;
    });
    assert_eq!(
        (o.exit, o.cpu.rip),
        (BlockExit::Raise(Exception::gp(0)), CODE + 5)
    );
    let o = differential("ss not present", &mut jit, &blk, &|cpu, _| {
        cpu.gpr[reg::RBX as usize] = DATA;
        cpu.seg[Seg::Ss as usize].attrs &= !Segment::ATTR_P;
    });
    assert_eq!(o.exit, BlockExit::Raise(Exception::ss(0)));
}

#[test]
fn flush_frees_the_module_and_retires_pointers() {
    let mut jit = Jit::new();
    let blk = block(BRANCH, mode64(0));
    let code = jit.compile(&blk).unwrap();
    assert!(jit.is_live(&code));
    assert!(jit.code_bytes() > 0);
    jit.reset();
    assert!(!jit.is_live(&code));
    assert_eq!(jit.code_bytes(), 0);
    let again = jit.compile(&blk).unwrap();
    assert!(jit.is_live(&again) && again.generation != code.generation);
}

fn run_engine(
    policy: crate::engine::TierPolicy,
    tr: &mut crate::Translator,
) -> (CpuState, TestEnv) {
    let mut env = TestEnv::new();
    env.mem[CODE as usize..CODE as usize + HOTLOOP.len()].copy_from_slice(HOTLOOP);
    env.mem[CODE as usize + HOTLOOP.len()] = 0xf4; // hlt
    for i in 0..0x800 {
        env.mem[TestEnv::phys(DATA + i as u64)] = (i * 13) as u8;
    }
    let mut cpu = cpu_for(mode64(0));
    cpu.gpr[reg::RSI as usize] = DATA;
    cpu.gpr[reg::RDI as usize] = DATA + 0x2000;
    cpu.gpr[reg::RCX as usize] = 200;
    tr.set_tier_policy(policy);
    assert_eq!(tr.run(&mut cpu, &mut env, 10_000), crate::RunExit::Halt);
    (cpu, env)
}

#[test]
fn engine_tiers_up_at_threshold() {
    use crate::engine::TierPolicy;
    let mut reference = crate::Translator::new();
    let (rc, re) = run_engine(TierPolicy::InterpretOnly, &mut reference);
    assert_eq!(
        (
            reference.stats.runs_compiled,
            reference.stats.blocks_compiled
        ),
        (0, 0)
    );
    for policy in [TierPolicy::Threshold(50), TierPolicy::CompileAll] {
        let mut tr = crate::Translator::new();
        let (cpu, env) = run_engine(policy, &mut tr);
        assert_eq!(cpu.gpr, rc.gpr, "{policy:?}");
        assert_eq!(cpu.rip, rc.rip, "{policy:?}");
        assert_eq!(cpu.rflags(), rc.rflags(), "{policy:?}");
        assert!(env.mem == re.mem, "{policy:?}: memory");
        let s = &tr.stats;
        assert_eq!(s.runs_compiled + s.runs_interpreted, s.blocks_run);
        if policy == TierPolicy::Threshold(50) {
            // The loop block runs 200 times: 49 interpreted, compiled at the 50th run.
            assert_eq!(
                (s.blocks_compiled, s.runs_compiled, s.runs_interpreted),
                (1, 151, 50)
            );
        } else {
            assert_eq!(
                (s.blocks_compiled, s.runs_compiled, s.runs_interpreted),
                (1, 200, 1)
            );
        }
        // The HLT block (a lone callout) is never compiled.
        // A flush frees the module and retires every compiled pointer; running again recompiles.
        let generation = tr.cache.jit.generation();
        tr.flush();
        assert_ne!(tr.cache.jit.generation(), generation);
        assert_eq!(tr.cache.jit.code_bytes(), 0);
        let (cpu2, _) = run_engine(policy, &mut tr);
        assert_eq!(cpu2.gpr, rc.gpr);
        assert_eq!(tr.stats.blocks_compiled, 2, "recompiled after the flush");
    }
}

/// Compile cost and compiled/interpreted speed; run with
/// `cargo test --release -p btvisor-translator jit::tests::bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench() {
    for opt in [super::JitOpt::None, super::JitOpt::Speed] {
        let mut jit = Jit::new();
        jit.set_opt(opt);
        jit.set_verifier(false);
        for (name, code) in [
            ("branch", BRANCH),
            ("hotloop", HOTLOOP),
            ("mem", MEM),
            ("alu", ALU),
        ] {
            let blk = block(code, mode64(0));
            jit.compile(&blk).unwrap(); // warm the module and caches
                                        // Best of 5 rounds of 40: the machine is shared.
            let per = (0..5)
                .map(|_| {
                    let t0 = Instant::now();
                    for _ in 0..40 {
                        jit.compile(&blk).unwrap();
                    }
                    t0.elapsed() / 40
                })
                .min()
                .unwrap();
            println!(
                "{opt:?} compile {name}: {} insns, {} ops: {:.1} us/block, {:.2} us/insn",
                blk.insns.len(),
                blk.ops.len(),
                per.as_secs_f64() * 1e6,
                per.as_secs_f64() * 1e6 / blk.insns.len() as f64
            );
        }
        let blk = block(HOTLOOP, mode64(0));
        let code = jit.compile(&blk).unwrap();
        let mut env = TestEnv::new();
        let iters = 2_000_000u64;
        let time = |compiled: bool, env: &mut TestEnv| {
            let mut cpu = cpu_for(blk.key.mode);
            let t0 = Instant::now();
            for i in 0..iters {
                cpu.gpr[reg::RSI as usize] = DATA + (i & 0xff) * 8;
                cpu.gpr[reg::RDI as usize] = DATA + 0x4000 + (i & 0xff) * 8;
                cpu.gpr[reg::RCX as usize] = 2;
                let e = if compiled {
                    run_compiled(&mut cpu, env, &blk, code)
                } else {
                    run_block(&mut cpu, env, &blk)
                };
                debug_assert_eq!(e, BlockExit::Next { slot: Some(0) });
            }
            t0.elapsed()
        };
        let ti = time(false, &mut env);
        let tc = time(true, &mut env);
        println!(
            "{opt:?} hot loop block ({} insns): interpreted {:.1} ns/run, compiled {:.1} ns/run, speedup {:.1}x",
            blk.insns.len(),
            ti.as_nanos() as f64 / iters as f64,
            tc.as_nanos() as f64 / iters as f64,
            ti.as_secs_f64() / tc.as_secs_f64()
        );
    }
}
