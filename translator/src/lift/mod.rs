//! Lifting: one guest instruction into micro-ops. `Lifter` holds the operand plumbing
//! (registers, effective addresses, segment choice, stack); the family modules hold semantics.

mod alu;
mod bits;
mod branch;
mod data;
mod stack;

use crate::cpu::{Mode, Seg};
use crate::flags::CcOp;
use crate::ir::{mem, BinOp, Helper, Op, NO_SEG, REG_AH, T, TEMPS};
use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

/// Why an instruction classified as liftable could not be lifted (a form not done yet).
pub type LiftError = &'static str;

pub struct Lifter {
    pub ops: Vec<Op>,
    ntemp: u8,
    pub mode: Mode,
    /// The effective address of the current instruction's memory operand, once computed.
    ea: Option<T>,
    /// Set when the instruction ended the block (emitted a terminator).
    pub ended: bool,
    pub helpers: u32,
    /// Set when an instruction needed more than `TEMPS` temporaries: its lift fails cleanly.
    temps_exhausted: bool,
}

impl Lifter {
    pub fn new(mode: Mode) -> Self {
        Lifter {
            ops: Vec::with_capacity(64),
            ntemp: 0,
            mode,
            ea: None,
            ended: false,
            helpers: 0,
            temps_exhausted: false,
        }
    }

    /// Lift one instruction; `idx` is its index in the block.
    pub fn lift(&mut self, idx: u16, insn: &Instruction) -> Result<(), LiftError> {
        self.ntemp = 0;
        self.ea = None;
        self.ops.push(Op::Insn {
            idx,
            rip: insn.ip(),
        });
        let mark = self.ops.len();
        self.temps_exhausted = false;
        let mut r = self.lift_inner(insn);
        if self.temps_exhausted {
            r = Err("instruction needs more temporaries than the IR provides");
        }
        if r.is_err() {
            self.ops.truncate(mark);
        }
        r
    }

    /// An instruction run by the native-step engine: one helper call, which raises every
    /// exception itself and writes registers only when nothing can fault any more.
    pub fn native_step(&mut self, idx: u16, insn: &Instruction, h: Helper) {
        self.ntemp = 0;
        self.ea = None;
        self.ops.push(Op::Insn {
            idx,
            rip: insn.ip(),
        });
        let z = self.konst(0);
        let d = self.tmp();
        self.ops.push(Op::Call {
            h,
            sz: 0,
            d,
            a: z,
            b: z,
            c: z,
        });
    }

    fn lift_inner(&mut self, insn: &Instruction) -> Result<(), LiftError> {
        use Mnemonic::*;
        match insn.mnemonic() {
            Add | Adc | Sub | Sbb | And | Or | Xor | Cmp | Test | Inc | Dec | Neg | Not => {
                alu::arith(self, insn)
            }
            Shl | Sal | Shr | Sar | Rol | Ror | Rcl | Rcr | Shld | Shrd => alu::shift(self, insn),
            Mul | Imul | Div | Idiv => alu::muldiv(self, insn),
            Rdtsc | Rdtscp => {
                let z = self.konst(0);
                self.call(crate::helpers::timestamp::TIMESTAMP, 0, z, z, z);
                Ok(())
            }
            Daa | Das | Aaa | Aas | Aam | Aad | Salc => alu::bcd(self, insn),
            Bound => alu::bound(self, insn),
            Arpl => bits::arpl(self, insn),
            Bt | Bts | Btr | Btc => bits::bit_test(self, insn),
            Bsf | Bsr | Tzcnt | Lzcnt | Popcnt | Bswap => bits::scan(self, insn),
            Clc | Stc | Cmc | Cld | Std | Lahf | Sahf => bits::flag_ops(self, insn),
            Mov | Movzx | Movsx | Movsxd | Lea | Xchg | Xadd | Cmpxchg | Cmpxchg8b | Cmpxchg16b
            | Cbw | Cwde | Cdqe | Cwd | Cdq | Cqo | Xlatb => data::data(self, insn),
            Seto | Setno | Setb | Setae | Sete | Setne | Setbe | Seta | Sets | Setns | Setp
            | Setnp | Setl | Setge | Setle | Setg | Cmovo | Cmovno | Cmovb | Cmovae | Cmove
            | Cmovne | Cmovbe | Cmova | Cmovs | Cmovns | Cmovp | Cmovnp | Cmovl | Cmovge
            | Cmovle | Cmovg => data::conditional(self, insn),
            Movsb | Movsw | Movsd | Movsq | Stosb | Stosw | Stosd | Stosq | Lodsb | Lodsw
            | Lodsd | Lodsq | Cmpsb | Cmpsw | Cmpsd | Cmpsq | Scasb | Scasw | Scasd | Scasq => {
                data::string(self, insn)
            }
            Push | Pop | Pushad | Popad | Pusha | Popa | Enter | Leave => stack::stack(self, insn),
            Call | Ret | Jmp | Jo | Jno | Jb | Jae | Je | Jne | Jbe | Ja | Js | Jns | Jp | Jnp
            | Jl | Jge | Jle | Jg | Jcxz | Jecxz | Jrcxz | Loop | Loope | Loopne => {
                branch::branch(self, insn)
            }
            Nop | Pause | Lfence | Sfence | Mfence | Prefetchnta | Prefetcht0 | Prefetcht1
            | Prefetcht2 | Prefetchw | Endbr32 | Endbr64 | Clflush | Clflushopt | Clwb => Ok(()),
            _ => Err("instruction not lifted yet"),
        }
    }

    // ---------- temporaries and constants ----------

    pub fn tmp(&mut self) -> T {
        if self.ntemp as usize >= TEMPS {
            self.temps_exhausted = true;
            return 0;
        }
        let t = self.ntemp;
        self.ntemp += 1;
        t
    }

    pub fn konst(&mut self, v: u64) -> T {
        let d = self.tmp();
        self.ops.push(Op::Const { d, v });
        d
    }

    pub fn bin(&mut self, op: BinOp, a: T, b: T) -> T {
        let d = self.tmp();
        self.ops.push(Op::Bin { op, d, a, b });
        d
    }

    pub fn bin_imm(&mut self, op: BinOp, a: T, v: u64) -> T {
        let b = self.konst(v);
        self.bin(op, a, b)
    }

    pub fn sext(&mut self, s: T, from: u8) -> T {
        let d = self.tmp();
        self.ops.push(Op::Sext { d, s, from });
        d
    }

    pub fn zext(&mut self, s: T, from: u8) -> T {
        let d = self.tmp();
        self.ops.push(Op::Zext { d, s, from });
        d
    }

    pub fn select(&mut self, c: T, a: T, b: T) -> T {
        let d = self.tmp();
        self.ops.push(Op::Select { d, c, a, b });
        d
    }

    pub fn flags(&mut self, op: CcOp, sz: u8, a: T, b: T, r: T, aux: T) {
        self.ops.push(Op::Flags {
            op,
            sz,
            a,
            b,
            r,
            aux,
        });
    }

    pub fn call(&mut self, h: Helper, sz: u8, a: T, b: T, c: T) -> T {
        let d = self.tmp();
        self.helpers += 1;
        self.ops.push(Op::Call { h, sz, d, a, b, c });
        d
    }

    pub fn end(&mut self, op: Op) {
        debug_assert!(op.is_terminator());
        self.ops.push(op);
        self.ended = true;
    }

    // ---------- registers ----------

    /// (register number, size in bytes) of a general-purpose register.
    pub fn reg_loc(reg: Register) -> Result<(u8, u8), LiftError> {
        match reg {
            Register::AH => return Ok((REG_AH, 1)),
            Register::CH => return Ok((REG_AH + 1, 1)),
            Register::DH => return Ok((REG_AH + 2, 1)),
            Register::BH => return Ok((REG_AH + 3, 1)),
            _ => {}
        }
        if !reg.is_gpr() {
            return Err("operand is not a general-purpose register");
        }
        let full = reg.full_register();
        Ok(((full as u32 - Register::RAX as u32) as u8, reg.size() as u8))
    }

    pub fn get(&mut self, reg: Register) -> Result<T, LiftError> {
        let (r, sz) = Self::reg_loc(reg)?;
        Ok(self.get_n(r, sz))
    }

    pub fn get_n(&mut self, r: u8, sz: u8) -> T {
        let d = self.tmp();
        self.ops.push(Op::Get { d, r, sz });
        d
    }

    pub fn set(&mut self, reg: Register, s: T) -> Result<(), LiftError> {
        let (r, sz) = Self::reg_loc(reg)?;
        self.ops.push(Op::Set { r, sz, s });
        Ok(())
    }

    pub fn set_n(&mut self, r: u8, sz: u8, s: T) {
        self.ops.push(Op::Set { r, sz, s });
    }

    // ---------- memory ----------

    fn addr_mask(&self, insn: &Instruction) -> u64 {
        let base = insn.memory_base();
        let index = insn.memory_index();
        let sz = if base != Register::None && base != Register::RIP && base != Register::EIP {
            base.size()
        } else if index != Register::None {
            index.size()
        } else {
            match self.mode.code_bits {
                64 => 8,
                32 => 4,
                _ => 2,
            }
        };
        match sz {
            2 => 0xffff,
            4 => 0xffff_ffff,
            _ => u64::MAX,
        }
    }

    /// Effective address of the memory operand (SDM Vol. 1, 3.7.5), truncated to the address size.
    pub fn ea(&mut self, insn: &Instruction) -> Result<T, LiftError> {
        if let Some(t) = self.ea {
            return Ok(t);
        }
        let base = insn.memory_base();
        let index = insn.memory_index();
        let mut acc = self.konst(insn.memory_displacement64());
        if base != Register::None && base != Register::RIP && base != Register::EIP {
            let b = self.get(base)?;
            acc = self.bin(BinOp::Add, acc, b);
        }
        if index != Register::None {
            let i = self.get(index)?;
            let shift = insn.memory_index_scale().trailing_zeros() as u64;
            let scaled = if shift > 0 {
                self.bin_imm(BinOp::Shl, i, shift)
            } else {
                i
            };
            acc = self.bin(BinOp::Add, acc, scaled);
        }
        let mask = self.addr_mask(insn);
        if mask != u64::MAX {
            acc = self.bin_imm(BinOp::And, acc, mask);
        }
        self.ea = Some(acc);
        Ok(acc)
    }

    /// Segment index for a memory access through `seg`: in 64-bit mode only FS and GS have a
    /// base (SDM Vol. 1, 3.3.7.1).
    pub fn seg_index(&self, seg: Register) -> u8 {
        let s = match seg {
            Register::ES => Seg::Es,
            Register::CS => Seg::Cs,
            Register::SS => Seg::Ss,
            Register::FS => Seg::Fs,
            Register::GS => Seg::Gs,
            _ => Seg::Ds,
        };
        if self.mode.code_bits == 64 && !matches!(s, Seg::Fs | Seg::Gs) {
            NO_SEG
        } else {
            s as u8
        }
    }

    pub fn mem_flags(&self) -> u8 {
        if self.mode.code_bits == 64 {
            0
        } else {
            mem::WRAP32
        }
    }

    /// Segment checks for an access through `seg`: whenever the mode has non-flat segments,
    /// and always for writes through CS (code segments are never writable).
    fn check_flag(&self, seg: u8, write: bool) -> u8 {
        if seg != NO_SEG && (self.mode.seg_checks || (write && seg == Seg::Cs as u8)) {
            mem::CHECK
        } else {
            0
        }
    }

    pub fn load(&mut self, seg: u8, a: T, sz: u8, stack: bool) -> T {
        let d = self.tmp();
        let flags =
            self.mem_flags() | if stack { mem::STACK } else { 0 } | self.check_flag(seg, false);
        self.ops.push(Op::Load {
            d,
            seg,
            a,
            sz,
            flags,
        });
        d
    }

    pub fn store(&mut self, seg: u8, a: T, s: T, sz: u8, stack: bool) {
        let flags =
            self.mem_flags() | if stack { mem::STACK } else { 0 } | self.check_flag(seg, true);
        self.ops.push(Op::Store {
            seg,
            a,
            s,
            sz,
            flags,
        });
    }

    // ---------- operands ----------

    /// Size in bytes of operand `i`.
    pub fn op_size(insn: &Instruction, i: u32) -> u8 {
        match insn.op_kind(i) {
            OpKind::Register => insn.op_register(i).size() as u8,
            OpKind::Memory => insn.memory_size().size() as u8,
            OpKind::Immediate8 | OpKind::Immediate8_2nd => 1,
            OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
            OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
            _ => 8,
        }
    }

    /// Read operand `i` (register, immediate or memory), zero-extended.
    pub fn read_op(&mut self, insn: &Instruction, i: u32) -> Result<T, LiftError> {
        match insn.op_kind(i) {
            OpKind::Register => self.get(insn.op_register(i)),
            OpKind::Memory => {
                let a = self.ea(insn)?;
                let seg = self.seg_index(insn.memory_segment());
                let sz = insn.memory_size().size() as u8;
                if !matches!(sz, 1 | 2 | 4 | 8) {
                    return Err("memory operand of unusual size");
                }
                Ok(self.load(seg, a, sz, false))
            }
            OpKind::Immediate8
            | OpKind::Immediate8_2nd
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => Ok(self.konst(insn.immediate(i))),
            _ => Err("operand kind not lifted"),
        }
    }

    /// Write operand `i` (register or memory) with `size` taken from the operand.
    pub fn write_op(&mut self, insn: &Instruction, i: u32, s: T) -> Result<(), LiftError> {
        match insn.op_kind(i) {
            OpKind::Register => self.set(insn.op_register(i), s),
            OpKind::Memory => {
                let a = self.ea(insn)?;
                let seg = self.seg_index(insn.memory_segment());
                let sz = insn.memory_size().size() as u8;
                self.store(seg, a, s, sz, false);
                Ok(())
            }
            _ => Err("destination operand kind not lifted"),
        }
    }

    /// A store of the operand's current value: raises any #PF/#GP the real write would raise,
    /// before a helper commits flags or registers (precise exceptions for read-modify-write
    /// instructions whose flags come from a helper).
    pub fn probe_write(&mut self, insn: &Instruction, i: u32, cur: T) -> Result<(), LiftError> {
        if insn.op_kind(i) == OpKind::Memory {
            self.write_op(insn, i, cur)?;
        }
        Ok(())
    }

    // ---------- stack ----------

    pub fn stack_bytes(&self) -> u8 {
        self.mode.stack_bits / 8
    }

    /// Push `v` of `sz` bytes; returns the new stack pointer, which the caller must write with
    /// `set_sp` after every other faulting op of the instruction.
    pub fn push_value(&mut self, sp: T, v: T, sz: u8) -> T {
        let mut nsp = self.bin_imm(BinOp::Sub, sp, sz as u64);
        if self.mode.stack_bits != 64 {
            nsp = self.bin_imm(
                BinOp::And,
                nsp,
                if self.mode.stack_bits == 32 {
                    0xffff_ffff
                } else {
                    0xffff
                },
            );
        }
        let seg = self.seg_index(Register::SS);
        self.store(seg, nsp, v, sz, true);
        nsp
    }

    /// Pop `sz` bytes at `sp`: (value, new stack pointer).
    pub fn pop_value(&mut self, sp: T, sz: u8) -> (T, T) {
        let seg = self.seg_index(Register::SS);
        let v = self.load(seg, sp, sz, true);
        let mut nsp = self.bin_imm(BinOp::Add, sp, sz as u64);
        if self.mode.stack_bits != 64 {
            nsp = self.bin_imm(
                BinOp::And,
                nsp,
                if self.mode.stack_bits == 32 {
                    0xffff_ffff
                } else {
                    0xffff
                },
            );
        }
        (v, nsp)
    }

    pub fn get_sp(&mut self) -> T {
        let sz = self.stack_bytes();
        self.get_n(crate::cpu::reg::RSP, sz)
    }

    pub fn set_sp(&mut self, v: T) {
        let sz = self.stack_bytes();
        self.set_n(crate::cpu::reg::RSP, sz, v);
    }

    /// Operand size of instructions whose size is the stack width in 64-bit mode (push/pop,
    /// call/ret): 8 unless a 0x66 prefix made it 2.
    pub fn stack_op_size(&self, insn: &Instruction) -> u8 {
        // ENTER/LEAVE: iced's stack-pointer increment does not give the operand size (it is 0
        // for LEAVE and depends on the operands for ENTER), the code does: a 0x66 prefix makes
        // them push/pop BP, not RBP (SDM Vol. 2, ENTER and LEAVE, "Operation").
        match insn.code() {
            Code::Enterw_imm16_imm8 | Code::Leavew => return 2,
            Code::Enterd_imm16_imm8 | Code::Leaved => return 4,
            Code::Enterq_imm16_imm8 | Code::Leaveq => return 8,
            // RET imm16: the increment is the operand size plus imm16 (`ret 4` in 32-bit code
            // moves ESP by 8), but the return address popped has the operand size (SDM Vol. 2,
            // RET, "Operation": EIP <- Pop(); then ESP <- ESP + SRC).
            Code::Retnw | Code::Retnw_imm16 => return 2,
            Code::Retnd | Code::Retnd_imm16 => return 4,
            Code::Retnq | Code::Retnq_imm16 => return 8,
            _ => {}
        }
        match insn.stack_pointer_increment() {
            -8 | 8 => 8,
            -2 | 2 => 2,
            -4 | 4 => 4,
            _ => self.stack_bytes(),
        }
    }
}

/// Size in bytes of the address (for RCX/RSI/RDI in string ops and LOOP/JCXZ), after any 0x67
/// prefix: iced records it in the string operands' kinds and in the LOOP/JCXZ codes.
pub fn address_size(insn: &Instruction, mode: Mode) -> u8 {
    for i in 0..insn.op_count() {
        match insn.op_kind(i) {
            // XLAT: [rBX + AL], the base register has the address size (a 0x67 prefix makes it
            // EBX in 64-bit mode; SDM Vol. 2, XLAT).
            OpKind::Memory if insn.memory_base() != Register::None => {
                return insn.memory_base().size() as u8
            }
            OpKind::MemorySegSI | OpKind::MemorySegDI | OpKind::MemoryESDI => return 2,
            OpKind::MemorySegESI | OpKind::MemorySegEDI | OpKind::MemoryESEDI => return 4,
            OpKind::MemorySegRSI | OpKind::MemorySegRDI | OpKind::MemoryESRDI => return 8,
            _ => {}
        }
    }
    match insn.mnemonic() {
        Mnemonic::Jcxz => return 2,
        Mnemonic::Jecxz => return 4,
        Mnemonic::Jrcxz => return 8,
        _ => {}
    }
    let code = format!("{:?}", insn.code());
    if code.ends_with("_RCX") {
        8
    } else if code.ends_with("_ECX") {
        4
    } else if code.ends_with("_CX") {
        2
    } else {
        match mode.code_bits {
            64 => 8,
            32 => 4,
            _ => 2,
        }
    }
}
