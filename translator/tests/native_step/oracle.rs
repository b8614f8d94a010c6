//! The native side of the native-step tests: run one instruction on the host with a given
//! FXSAVE image, GPRs and arithmetic flags, and return the resulting image, GPRs and flags.
//!
//! One mapping below 2 GiB (MAP_32BIT: absolute addressing reaches it):
//!   0x0000 prologue (save callee-saved GPRs and the host FPU state, load the inputs), `jmp`
//!   0x0100 the instruction under test, then `jmp 0x200`
//!   0x0200 epilogue (store the outputs, restore the host state)
//!   0x0800 GPRs in, 0x0880 flags in, 0x0888 flags out, 0x0890 host RSP, 0x0900 GPRs out
//!   0x1000 host FXSAVE area, 0x1200 image in, 0x1400 image out
//!   0x2000 DATA_SIZE bytes of data

use iced_x86::{Code, Encoder, Instruction, MemoryOperand, Register};

pub const TEST_OFF: u64 = 0x100;
pub const END_OFF: u64 = 0x200;
pub const DATA_OFF: u64 = 0x2000;
pub const DATA_SIZE: usize = 0x4000;
const IN_GPR: u64 = 0x800;
const IN_FLAGS: u64 = 0x880;
const OUT_FLAGS: u64 = 0x888;
const HOST_RSP: u64 = 0x890;
const OUT_GPR: u64 = 0x900;
const HOST_FX: u64 = 0x1000;
const IN_FX: u64 = 0x1200;
const OUT_FX: u64 = 0x1400;
const LEN: usize = DATA_OFF as usize + DATA_SIZE;

pub const GPRS: [Register; 16] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RSP,
    Register::RBP,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

pub struct Out {
    pub fx: [u8; 512],
    pub gpr: [u64; 16],
    pub flags: u64,
}

pub struct Oracle {
    base: *mut u8,
}

fn abs(a: u64) -> MemoryOperand {
    assert!(a < 0x8000_0000);
    MemoryOperand::with_displ(a, 4)
}

fn asm(ip: u64, insns: &[Instruction]) -> Vec<u8> {
    let mut e = Encoder::new(64);
    let mut rip = ip;
    for i in insns {
        rip += e.encode(i, rip).expect("oracle instruction") as u64;
    }
    e.take_buffer()
}

impl Oracle {
    pub fn new() -> Oracle {
        // SAFETY: a fresh private anonymous mapping, checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED);
        let o = Oracle { base: p as *mut u8 };
        o.build();
        o
    }

    pub fn base(&self) -> u64 {
        self.base as u64
    }
    pub fn data_base(&self) -> u64 {
        self.base() + DATA_OFF
    }
    pub fn test_addr(&self) -> u64 {
        self.base() + TEST_OFF
    }
    pub fn end_addr(&self) -> u64 {
        self.base() + END_OFF
    }

    fn put(&self, off: u64, b: &[u8]) {
        assert!(off as usize + b.len() <= LEN);
        // SAFETY: inside our mapping.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.base.add(off as usize), b.len()) }
    }

    fn get(&self, off: u64, b: &mut [u8]) {
        // SAFETY: inside our mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(off as usize), b.as_mut_ptr(), b.len())
        }
    }

    pub fn data(&self) -> Vec<u8> {
        let mut v = vec![0; DATA_SIZE];
        self.get(DATA_OFF, &mut v);
        v
    }

    pub fn set_data(&self, d: &[u8]) {
        self.put(DATA_OFF, d);
    }

    fn build(&self) {
        use Register::*;
        let c = self.base();
        let w = |r: Result<Instruction, iced_x86::IcedError>| r.unwrap();
        let mut p = vec![];
        for r in [RBX, RBP, R12, R13, R14, R15] {
            p.push(w(Instruction::with1(Code::Push_r64, r)));
        }
        p.push(w(Instruction::with2(
            Code::Mov_rm64_r64,
            abs(c + HOST_RSP),
            RSP,
        )));
        p.push(w(Instruction::with1(
            Code::Fxsave64_m512byte,
            abs(c + HOST_FX),
        )));
        p.push(w(Instruction::with1(
            Code::Fxrstor64_m512byte,
            abs(c + IN_FX),
        )));
        p.push(w(Instruction::with1(Code::Push_rm64, abs(c + IN_FLAGS))));
        p.push(Instruction::with(Code::Popfq));
        for (i, r) in GPRS.iter().enumerate() {
            if i != 4 {
                p.push(w(Instruction::with2(
                    Code::Mov_r64_rm64,
                    *r,
                    abs(c + IN_GPR + 8 * i as u64),
                )));
            }
        }
        p.push(w(Instruction::with_branch(
            Code::Jmp_rel32_64,
            c + TEST_OFF,
        )));
        let b = asm(c, &p);
        assert!(b.len() as u64 <= TEST_OFF);
        self.put(0, &b);
        let mut e = vec![];
        for (i, r) in GPRS.iter().enumerate() {
            if i != 4 {
                e.push(w(Instruction::with2(
                    Code::Mov_rm64_r64,
                    abs(c + OUT_GPR + 8 * i as u64),
                    *r,
                )));
            }
        }
        e.push(Instruction::with(Code::Pushfq));
        e.push(w(Instruction::with1(Code::Pop_rm64, abs(c + OUT_FLAGS))));
        e.push(w(Instruction::with1(
            Code::Fxsave64_m512byte,
            abs(c + OUT_FX),
        )));
        e.push(w(Instruction::with1(
            Code::Fxrstor64_m512byte,
            abs(c + HOST_FX),
        )));
        e.push(w(Instruction::with2(
            Code::Mov_r64_rm64,
            RSP,
            abs(c + HOST_RSP),
        )));
        for r in [R15, R14, R13, R12, RBP, RBX] {
            e.push(w(Instruction::with1(Code::Pop_r64, r)));
        }
        e.push(Instruction::with(Code::Retnq));
        let b = asm(c + END_OFF, &e);
        assert!(END_OFF + b.len() as u64 <= IN_GPR);
        self.put(END_OFF, &b);
    }

    /// The bytes the translated side fetches at `test_addr()`: the instruction, `jmp end`.
    pub fn load(&self, insn: &[u8]) -> Vec<u8> {
        let next = self.test_addr() + insn.len() as u64;
        let j = asm(
            next,
            &[Instruction::with_branch(Code::Jmp_rel32_64, self.end_addr()).unwrap()],
        );
        let mut all = insn.to_vec();
        all.extend_from_slice(&j);
        assert!(TEST_OFF + all.len() as u64 <= END_OFF);
        self.put(TEST_OFF, &all);
        all
    }

    /// Run the loaded instruction (its 64-bit encoding).
    ///
    /// # Safety
    /// The instruction must not fault (memory inside the data area, aligned where required,
    /// FP exceptions masked) and must not transfer control or touch RSP.
    pub unsafe fn run(&self, fx: &[u8; 512], gpr: &[u64; 16], flags: u64) -> Out {
        self.put(IN_FX, fx);
        for (i, v) in gpr.iter().enumerate() {
            self.put(IN_GPR + 8 * i as u64, &v.to_le_bytes());
        }
        self.put(IN_FLAGS, &flags.to_le_bytes());
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        let f: extern "sysv64" fn() = std::mem::transmute(self.base);
        f();
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        let mut out = Out {
            fx: [0; 512],
            gpr: [0; 16],
            flags: 0,
        };
        self.get(OUT_FX, &mut out.fx);
        for i in 0..16 {
            let mut b = [0u8; 8];
            self.get(OUT_GPR + 8 * i as u64, &mut b);
            out.gpr[i] = u64::from_le_bytes(b);
        }
        out.gpr[4] = gpr[4];
        let mut b = [0u8; 8];
        self.get(OUT_FLAGS, &mut b);
        out.flags = u64::from_le_bytes(b);
        out
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, LEN);
        }
    }
}
