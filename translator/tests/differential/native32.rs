//! The native side for 32-bit code: run one instruction on the host CPU in compatibility mode.
//!
//! Linux x86-64 has a 32-bit user code segment in its GDT (selector 0x23; 0x2b is the flat data
//! segment, 0x33 the 64-bit code segment). The trampoline enters it from 64-bit code with a far
//! return (`retfq` to 0x23:compat_entry) and leaves it with a far return to 0x33.
//!
//! Everything the 32-bit code touches must lie below 4 GiB, and the 16-bit addressing forms
//! (`[bx+si+disp]`, `0x67` string instructions, XLAT, LOOP/JCXZ with CX) and the 16-bit near
//! branches (IP truncated to 16 bits) need data and code below 64 KiB: the whole area is one
//! fixed mapping at `BASE` (`MAP_FIXED_NOREPLACE`; the test runs as root, vm.mmap_min_addr is
//! 4096). There can be only one such area per process: `Native32::lock` hands it out.
//!
//! Layout (offsets from `BASE`):
//!
//! * 0x000: 64-bit entry: save callee-saved registers and RFLAGS, remember RSP in the state area
//!   (compat mode truncates RSP, see /work/shared/notes/native-exec.md pitfall 5), switch to the
//!   private low stack, `retfq` to 0x23:COMPAT_OFF;
//! * COMPAT_OFF: load DS/ES/SS = 0x2b (a null DS makes every data access #GP in compat mode),
//!   `popfd` the incoming EFLAGS, load the 8 GPRs, jump to the test area;
//! * TEST_OFF: the instruction, then `jmp E_FALL`; TAKEN_OFF: `jmp E_TAKEN` (branch target);
//! * the exits record which one was reached and join the common epilogue: store the GPRs,
//!   `pushfd` the outgoing EFLAGS on the private stack, far return to 0x33:BACK64_OFF, restore
//!   RSP and the callee-saved registers, return to Rust;
//! * the state area, the private stack; then `DATA_SIZE` bytes of data.

use iced_x86::{Code, Encoder, Instruction, MemoryOperand, Register};
use std::sync::{Mutex, MutexGuard};

pub const BASE: u64 = 0x2000;
pub const PAGE: u64 = 0x1000;
/// Data from BASE + PAGE up to 64 KiB.
pub const DATA_SIZE: u64 = 0x1_0000 - BASE - PAGE;
const COMPAT_OFF: u64 = 0x80;
pub const TEST_OFF: u64 = 0x100;
pub const TAKEN_OFF: u64 = 0x140;
pub const E_FALL_OFF: u64 = 0x200;
pub const E_TAKEN_OFF: u64 = 0x220;
const COMMON_OFF: u64 = 0x240;
const BACK64_OFF: u64 = 0x300;
const IN_GPR: u64 = 0x800;
const IN_FLAGS: u64 = 0x820;
const OUT_GPR: u64 = 0x840;
const OUT_FLAGS: u64 = 0x860;
const HOST_RSP: u64 = 0x868;
const EXIT_ID: u64 = 0x870;
const STACK_TOP: u64 = 0xff0;

const USER_CS32: u64 = 0x23;
const USER_DS: u64 = 0x2b;
const USER_CS64: u64 = 0x33;

const GPRS32: [Register; 8] = [
    Register::EAX,
    Register::ECX,
    Register::EDX,
    Register::EBX,
    Register::ESP,
    Register::EBP,
    Register::ESI,
    Register::EDI,
];

pub struct NativeOut {
    pub gpr: [u32; 8],
    pub eflags: u32,
    /// 1: fell through to the next instruction, 2: reached the taken stub.
    pub exit: u8,
}

pub struct Native32 {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is only used by the thread holding the lock.
unsafe impl Send for Native32 {}

static AREA: Mutex<Option<Native32>> = Mutex::new(None);

fn abs(addr: u64) -> MemoryOperand {
    assert!(addr < 0x8000_0000);
    MemoryOperand::with_displ(addr, 4)
}

fn assemble(bits: u32, ip: u64, insns: &[Instruction]) -> Vec<u8> {
    let mut enc = Encoder::new(bits);
    let mut rip = ip;
    for i in insns {
        let n = enc.encode(i, rip).expect("trampoline instruction");
        rip += n as u64;
    }
    enc.take_buffer()
}

fn w(x: Result<Instruction, iced_x86::IcedError>) -> Instruction {
    x.unwrap()
}

impl Native32 {
    /// The process-wide low area (created on first use), exclusively.
    pub fn lock() -> MutexGuard<'static, Option<Native32>> {
        let mut g = AREA.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(Native32::new());
        }
        g
    }

    fn new() -> Native32 {
        let len = (PAGE + DATA_SIZE) as usize;
        // SAFETY: a fresh private anonymous mapping at a fixed low address that must be free
        // (MAP_FIXED_NOREPLACE fails rather than replace anything); checked below.
        let base = unsafe {
            libc::mmap(
                BASE as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        assert!(
            base as u64 == BASE,
            "mmap of the low 32-bit test area at {BASE:#x} failed ({base:?}): the 32-bit \
             differential tests need vm.mmap_min_addr <= {BASE:#x} (or root)"
        );
        let n = Native32 {
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

    #[allow(clippy::mut_from_ref)]
    pub fn data(&self) -> &mut [u8] {
        // SAFETY: the data part of our mapping; only the lock holder touches it.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(PAGE as usize), DATA_SIZE as usize) }
    }

    /// The code page bytes from `off` (what the translated side fetches).
    pub fn code(&self, off: u64, len: usize) -> &[u8] {
        // SAFETY: inside our mapping.
        unsafe { std::slice::from_raw_parts(self.base.add(off as usize), len) }
    }

    fn build_trampoline(&self) {
        let c = self.code_base();
        // 64-bit entry.
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
            abs(c + HOST_RSP),
            Register::RSP,
        )));
        // The private stack below 4 GiB (a 32-bit move zero-extends into RSP).
        p.push(w(Instruction::with2(
            Code::Mov_r32_imm32,
            Register::ESP,
            (c + STACK_TOP) as u32,
        )));
        p.push(w(Instruction::with1(Code::Pushq_imm8, USER_CS32 as i32)));
        p.push(w(Instruction::with1(
            Code::Pushq_imm32,
            (c + COMPAT_OFF) as i32,
        )));
        p.push(Instruction::with(Code::Retfq));
        let bytes = assemble(64, c, &p);
        assert!(bytes.len() as u64 <= COMPAT_OFF);
        self.put(0, &bytes);

        // Compatibility-mode entry.
        let mut p = vec![];
        p.push(w(Instruction::with2(
            Code::Mov_r32_imm32,
            Register::EAX,
            USER_DS as u32,
        )));
        for s in [Register::DS, Register::ES, Register::SS] {
            p.push(w(Instruction::with2(
                Code::Mov_Sreg_r32m16,
                s,
                Register::EAX,
            )));
        }
        p.push(w(Instruction::with1(Code::Push_rm32, abs(c + IN_FLAGS))));
        p.push(Instruction::with(Code::Popfd));
        for (i, r) in GPRS32.iter().enumerate() {
            p.push(w(Instruction::with2(
                Code::Mov_r32_rm32,
                *r,
                abs(c + IN_GPR + 4 * i as u64),
            )));
        }
        p.push(w(Instruction::with_branch(
            Code::Jmp_rel32_32,
            c + TEST_OFF,
        )));
        let bytes = assemble(32, c + COMPAT_OFF, &p);
        assert!(COMPAT_OFF + bytes.len() as u64 <= TEST_OFF);
        self.put(COMPAT_OFF, &bytes);

        // Taken stub and the two exits.
        self.put(
            TAKEN_OFF,
            &assemble(
                32,
                c + TAKEN_OFF,
                &[w(Instruction::with_branch(
                    Code::Jmp_rel32_32,
                    c + E_TAKEN_OFF,
                ))],
            ),
        );
        for (off, id) in [(E_FALL_OFF, 1u32), (E_TAKEN_OFF, 2u32)] {
            let e = [
                w(Instruction::with2(Code::Mov_rm8_imm8, abs(c + EXIT_ID), id)),
                w(Instruction::with_branch(Code::Jmp_rel32_32, c + COMMON_OFF)),
            ];
            self.put(off, &assemble(32, c + off, &e));
        }

        // Common epilogue (32-bit), then back to 64-bit mode.
        let mut e = vec![];
        for (i, r) in GPRS32.iter().enumerate() {
            e.push(w(Instruction::with2(
                Code::Mov_rm32_r32,
                abs(c + OUT_GPR + 4 * i as u64),
                *r,
            )));
        }
        e.push(w(Instruction::with2(
            Code::Mov_r32_imm32,
            Register::ESP,
            (c + STACK_TOP) as u32,
        )));
        e.push(Instruction::with(Code::Pushfd));
        e.push(w(Instruction::with1(Code::Pop_rm32, abs(c + OUT_FLAGS))));
        e.push(w(Instruction::with1(Code::Pushd_imm8, USER_CS64 as i32)));
        e.push(w(Instruction::with1(
            Code::Pushd_imm32,
            (c + BACK64_OFF) as i32,
        )));
        e.push(Instruction::with(Code::Retfd));
        let bytes = assemble(32, c + COMMON_OFF, &e);
        assert!(COMMON_OFF + (bytes.len() as u64) <= BACK64_OFF);
        self.put(COMMON_OFF, &bytes);

        let mut e = vec![];
        e.push(w(Instruction::with2(
            Code::Mov_r64_rm64,
            Register::RSP,
            abs(c + HOST_RSP),
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
        let bytes = assemble(64, c + BACK64_OFF, &e);
        assert!(BACK64_OFF + (bytes.len() as u64) <= IN_GPR);
        self.put(BACK64_OFF, &bytes);
    }

    /// Write the instruction under test followed by `jmp E_FALL`; returns the bytes of the test
    /// area (instruction + jump).
    pub fn load_insn(&self, insn_bytes: &[u8]) -> Vec<u8> {
        let c = self.code_base();
        let next = c + TEST_OFF + insn_bytes.len() as u64;
        let jmp = assemble(
            32,
            next,
            &[w(Instruction::with_branch(
                Code::Jmp_rel32_32,
                c + E_FALL_OFF,
            ))],
        );
        let mut all = insn_bytes.to_vec();
        all.extend_from_slice(&jmp);
        assert!(TEST_OFF + all.len() as u64 <= TAKEN_OFF);
        self.put(TEST_OFF, &all);
        all
    }

    /// Run the loaded instruction in compatibility mode with these registers and EFLAGS.
    ///
    /// # Safety
    /// The caller guarantees that every memory access of the instruction stays within the data
    /// area, that it cannot fault, and that every control transfer lands on the taken stub.
    pub unsafe fn run(&self, gpr: &[u32; 8], eflags: u32) -> NativeOut {
        let c = self.base;
        for (i, v) in gpr.iter().enumerate() {
            (c.add((IN_GPR + 4 * i as u64) as usize) as *mut u32).write_volatile(*v);
        }
        (c.add(IN_FLAGS as usize) as *mut u32).write_volatile(eflags);
        c.add(EXIT_ID as usize).write_volatile(0);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        let f: extern "sysv64" fn() = std::mem::transmute(c);
        f();
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        let mut out = NativeOut {
            gpr: [0; 8],
            eflags: 0,
            exit: 0,
        };
        for i in 0..8 {
            out.gpr[i] = (c.add((OUT_GPR + 4 * i as u64) as usize) as *const u32).read_volatile();
        }
        out.eflags = (c.add(OUT_FLAGS as usize) as *const u32).read_volatile();
        out.exit = (c.add(EXIT_ID as usize) as *const u8).read_volatile();
        out
    }
}
