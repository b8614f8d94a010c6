//! The native side: run one instruction on the host CPU between a trampoline that loads all 16
//! GPRs and RFLAGS from a state area and stores them back afterwards.
//!
//! One mapping below 2 GiB (MAP_32BIT, so that absolute `[disp32]` addressing and 32-bit address
//! size forms reach it) holds, in this order:
//!
//! * the code page: prologue, the test area (the instruction followed by `jmp E_FALL`), a
//!   "taken" stub (`jmp E_TAKEN`) that branch forms target, the two exits (each records which
//!   one was reached) and the common epilogue, and the state area;
//! * `DATA_SIZE` bytes of data that memory operands and the guest stack point into.
//!
//! The translated side runs at the same linear addresses (its `Env` maps them onto its own copy
//! of the data), so pointer values, return addresses and branch targets are identical on both.

use iced_x86::{Code, Encoder, Instruction, MemoryOperand, Register};

pub const PAGE: u64 = 0x1000;
pub const DATA_SIZE: u64 = 0x4000;
pub const TEST_OFF: u64 = 0x100;
/// Where branch forms jump to: a `jmp E_TAKEN` (reachable with rel8 from the test area).
pub const TAKEN_OFF: u64 = 0x140;
pub const E_FALL_OFF: u64 = 0x200;
pub const E_TAKEN_OFF: u64 = 0x220;
const COMMON_OFF: u64 = 0x240;
const IN_GPR: u64 = 0x800;
const IN_FLAGS: u64 = 0x880;
const OUT_GPR: u64 = 0x900;
const OUT_FLAGS: u64 = 0x980;
const HOST_RSP: u64 = 0x988;
const EXIT_ID: u64 = 0x990;

const GPRS: [Register; 16] = [
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

pub struct NativeOut {
    pub gpr: [u64; 16],
    pub rflags: u64,
    /// 1: fell through to the next instruction, 2: reached the taken stub.
    pub exit: u8,
}

pub struct Native {
    base: *mut u8,
    len: usize,
}

fn mem_abs(addr: u64) -> MemoryOperand {
    assert!(addr < 0x8000_0000);
    MemoryOperand::with_displ(addr, 4)
}

fn assemble(ip: u64, insns: &[Instruction]) -> Vec<u8> {
    let mut enc = Encoder::new(64);
    let mut rip = ip;
    for i in insns {
        let n = enc.encode(i, rip).expect("trampoline instruction");
        rip += n as u64;
    }
    enc.take_buffer()
}

impl Native {
    pub fn new() -> Native {
        let len = (PAGE + DATA_SIZE) as usize;
        // SAFETY: a fresh private anonymous mapping; checked for failure below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        assert!(
            base != libc::MAP_FAILED,
            "mmap of the native test area failed"
        );
        let n = Native {
            base: base as *mut u8,
            len,
        };
        n.build_trampoline();
        n
    }

    pub fn code_base(&self) -> u64 {
        self.base as u64
    }
    pub fn data_base(&self) -> u64 {
        self.base as u64 + PAGE
    }
    pub fn test_addr(&self) -> u64 {
        self.code_base() + TEST_OFF
    }
    pub fn taken_addr(&self) -> u64 {
        self.code_base() + TAKEN_OFF
    }
    pub fn e_fall(&self) -> u64 {
        self.code_base() + E_FALL_OFF
    }
    pub fn e_taken(&self) -> u64 {
        self.code_base() + E_TAKEN_OFF
    }

    fn put(&self, off: u64, bytes: &[u8]) {
        assert!(off as usize + bytes.len() <= self.len);
        // SAFETY: inside our own mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(off as usize), bytes.len())
        }
    }

    pub fn data(&self) -> &mut [u8] {
        // SAFETY: the data part of our mapping; only this thread touches it.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(PAGE as usize), DATA_SIZE as usize) }
    }

    /// The code page bytes from `off` (what the translated side fetches).
    pub fn code(&self, off: u64, len: usize) -> &[u8] {
        // SAFETY: inside our mapping.
        unsafe { std::slice::from_raw_parts(self.base.add(off as usize), len) }
    }

    fn build_trampoline(&self) {
        let c = self.code_base();
        let w = |x: Result<Instruction, iced_x86::IcedError>| x.unwrap();
        // Prologue: save callee-saved registers and the host RFLAGS, remember RSP, load the
        // incoming RFLAGS and all 16 GPRs, jump to the test area.
        let mut p = vec![];
        for r in [
            Register::RBX,
            Register::RBP,
            Register::R12,
            Register::R13,
            Register::R14,
            Register::R15,
        ] {
            p.push(w(Instruction::with1(Code::Push_r64, r)));
        }
        p.push(Instruction::with(Code::Pushfq));
        p.push(w(Instruction::with2(
            Code::Mov_rm64_r64,
            mem_abs(c + HOST_RSP),
            Register::RSP,
        )));
        p.push(w(Instruction::with1(
            Code::Push_rm64,
            mem_abs(c + IN_FLAGS),
        )));
        p.push(Instruction::with(Code::Popfq));
        for (i, r) in GPRS.iter().enumerate() {
            p.push(w(Instruction::with2(
                Code::Mov_r64_rm64,
                *r,
                mem_abs(c + IN_GPR + 8 * i as u64),
            )));
        }
        p.push(w(Instruction::with_branch(
            Code::Jmp_rel32_64,
            c + TEST_OFF,
        )));
        let bytes = assemble(c, &p);
        assert!(bytes.len() as u64 <= TEST_OFF);
        self.put(0, &bytes);
        // Taken stub and the two exits.
        self.put(
            TAKEN_OFF,
            &assemble(
                c + TAKEN_OFF,
                &[w(Instruction::with_branch(
                    Code::Jmp_rel32_64,
                    c + E_TAKEN_OFF,
                ))],
            ),
        );
        for (off, id) in [(E_FALL_OFF, 1u32), (E_TAKEN_OFF, 2u32)] {
            let m = mem_abs(c + EXIT_ID);
            let e = [
                w(Instruction::with2(Code::Mov_rm8_imm8, m, id)),
                w(Instruction::with_branch(Code::Jmp_rel32_64, c + COMMON_OFF)),
            ];
            self.put(off, &assemble(c + off, &e));
        }
        // Common epilogue: store the GPRs, go back to the host stack, store RFLAGS, restore.
        let mut e = vec![];
        for (i, r) in GPRS.iter().enumerate() {
            e.push(w(Instruction::with2(
                Code::Mov_rm64_r64,
                mem_abs(c + OUT_GPR + 8 * i as u64),
                *r,
            )));
        }
        e.push(w(Instruction::with2(
            Code::Mov_r64_rm64,
            Register::RSP,
            mem_abs(c + HOST_RSP),
        )));
        e.push(Instruction::with(Code::Pushfq));
        e.push(w(Instruction::with1(
            Code::Pop_rm64,
            mem_abs(c + OUT_FLAGS),
        )));
        e.push(Instruction::with(Code::Popfq));
        for r in [
            Register::R15,
            Register::R14,
            Register::R13,
            Register::R12,
            Register::RBP,
            Register::RBX,
        ] {
            e.push(w(Instruction::with1(Code::Pop_r64, r)));
        }
        e.push(Instruction::with(Code::Retnq));
        let bytes = assemble(c + COMMON_OFF, &e);
        assert!(COMMON_OFF + (bytes.len() as u64) <= IN_GPR);
        self.put(COMMON_OFF, &bytes);
    }

    /// Write the instruction under test followed by `jmp E_FALL`; returns the bytes of the test
    /// area (instruction + jump).
    pub fn load_insn(&self, insn_bytes: &[u8]) -> Vec<u8> {
        let c = self.code_base();
        let next = c + TEST_OFF + insn_bytes.len() as u64;
        let jmp = assemble(
            next,
            &[Instruction::with_branch(Code::Jmp_rel32_64, c + E_FALL_OFF).unwrap()],
        );
        let mut all = insn_bytes.to_vec();
        all.extend_from_slice(&jmp);
        assert!(TEST_OFF + all.len() as u64 <= TAKEN_OFF);
        self.put(TEST_OFF, &all);
        all
    }

    /// Run the loaded instruction with these registers and RFLAGS.
    ///
    /// # Safety
    /// The caller guarantees that every memory access of the instruction stays within the data
    /// area, that it cannot fault, and that every control transfer lands on the taken stub.
    pub unsafe fn run(&self, gpr: &[u64; 16], rflags: u64) -> NativeOut {
        let c = self.base;
        for (i, v) in gpr.iter().enumerate() {
            (c.add((IN_GPR + 8 * i as u64) as usize) as *mut u64).write(*v);
        }
        (c.add(IN_FLAGS as usize) as *mut u64).write(rflags);
        *c.add(EXIT_ID as usize) = 0;
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        let f: extern "sysv64" fn() = std::mem::transmute(c);
        f();
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        let mut out = NativeOut {
            gpr: [0; 16],
            rflags: 0,
            exit: 0,
        };
        for i in 0..16 {
            out.gpr[i] = (c.add((OUT_GPR + 8 * i as u64) as usize) as *const u64).read_volatile();
        }
        out.rflags = (c.add(OUT_FLAGS as usize) as *const u64).read_volatile();
        out.exit = (c.add(EXIT_ID as usize) as *const u8).read_volatile();
        out
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.len);
        }
    }
}
