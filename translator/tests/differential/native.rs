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

use crate::common::{abs, assemble, w, Area, CALLEE_SAVED, GPRS};
use iced_x86::{Code, Instruction, Register};

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

/// What a native run left, in the 64-bit layout (a 32-bit run zero-extends its registers).
pub struct NativeOut {
    pub gpr: [u64; 16],
    pub rflags: u64,
    /// 1: fell through to the next instruction, 2: reached the taken stub.
    pub exit: u8,
}

/// The layout both native sides share: the code page (test area at `TEST_OFF`, the taken stub
/// at `TAKEN_OFF`, the exits at `E_FALL_OFF` and `E_TAKEN_OFF`), then `data_size()` bytes of
/// data.
pub trait Trampoline {
    /// The mapping.
    fn area(&self) -> &Area;
    /// The code size of the test area (64 or 32).
    fn bits(&self) -> u32;
    fn data_size(&self) -> u64;
    /// Run the loaded instruction with these registers and flags (the 32-bit side uses the
    /// low halves of the first 8).
    ///
    /// # Safety
    /// The caller guarantees that every memory access of the instruction stays within the data
    /// area, that it cannot fault, and that every control transfer lands on the taken stub.
    unsafe fn run(&self, gpr: &[u64; 16], flags: u64) -> NativeOut;

    fn code_base(&self) -> u64 {
        self.area().base()
    }
    fn data_base(&self) -> u64 {
        self.code_base() + PAGE
    }
    fn test_addr(&self) -> u64 {
        self.code_base() + TEST_OFF
    }
    fn taken_addr(&self) -> u64 {
        self.code_base() + TAKEN_OFF
    }
    fn e_fall(&self) -> u64 {
        self.code_base() + E_FALL_OFF
    }
    fn e_taken(&self) -> u64 {
        self.code_base() + E_TAKEN_OFF
    }

    #[allow(clippy::mut_from_ref)]
    fn data(&self) -> &mut [u8] {
        self.area().bytes_mut(PAGE, self.data_size() as usize)
    }

    /// The code page bytes from `off` (what the translated side fetches).
    fn code(&self, off: u64, len: usize) -> &[u8] {
        self.area().bytes(off, len)
    }

    /// Write the instruction under test followed by `jmp E_FALL`; returns the bytes of the test
    /// area (instruction + jump).
    fn load_insn(&self, insn_bytes: &[u8]) -> Vec<u8> {
        let c = self.code_base();
        let next = c + TEST_OFF + insn_bytes.len() as u64;
        let jmp = if self.bits() == 64 {
            Code::Jmp_rel32_64
        } else {
            Code::Jmp_rel32_32
        };
        let jmp = assemble(
            self.bits(),
            next,
            &[w(Instruction::with_branch(jmp, c + E_FALL_OFF))],
        );
        let mut all = insn_bytes.to_vec();
        all.extend_from_slice(&jmp);
        assert!(TEST_OFF + all.len() as u64 <= TAKEN_OFF);
        self.area().put(TEST_OFF, &all);
        all
    }
}

impl<T: Trampoline> Trampoline for &T {
    fn area(&self) -> &Area {
        (**self).area()
    }
    fn bits(&self) -> u32 {
        (**self).bits()
    }
    fn data_size(&self) -> u64 {
        (**self).data_size()
    }
    unsafe fn run(&self, gpr: &[u64; 16], flags: u64) -> NativeOut {
        (**self).run(gpr, flags)
    }
}

pub struct Native {
    area: Area,
}

impl Native {
    pub fn new() -> Native {
        let area = Area::map(0, (PAGE + DATA_SIZE) as usize, libc::MAP_32BIT)
            .expect("mmap of the native test area failed");
        let n = Native { area };
        n.build_trampoline();
        n
    }

    fn build_trampoline(&self) {
        let c = self.code_base();
        let put = |off, bytes: &[u8]| self.area.put(off, bytes);
        // Prologue: save callee-saved registers and the host RFLAGS, remember RSP, load the
        // incoming RFLAGS and all 16 GPRs, jump to the test area.
        let mut p = vec![];
        for r in CALLEE_SAVED {
            p.push(w(Instruction::with1(Code::Push_r64, r)));
        }
        p.push(Instruction::with(Code::Pushfq));
        p.push(w(Instruction::with2(
            Code::Mov_rm64_r64,
            abs(c + HOST_RSP),
            Register::RSP,
        )));
        p.push(w(Instruction::with1(Code::Push_rm64, abs(c + IN_FLAGS))));
        p.push(Instruction::with(Code::Popfq));
        for (i, r) in GPRS.iter().enumerate() {
            p.push(w(Instruction::with2(
                Code::Mov_r64_rm64,
                *r,
                abs(c + IN_GPR + 8 * i as u64),
            )));
        }
        p.push(w(Instruction::with_branch(
            Code::Jmp_rel32_64,
            c + TEST_OFF,
        )));
        let bytes = assemble(64, c, &p);
        assert!(bytes.len() as u64 <= TEST_OFF);
        put(0, &bytes);
        // Taken stub and the two exits.
        put(
            TAKEN_OFF,
            &assemble(
                64,
                c + TAKEN_OFF,
                &[w(Instruction::with_branch(
                    Code::Jmp_rel32_64,
                    c + E_TAKEN_OFF,
                ))],
            ),
        );
        for (off, id) in [(E_FALL_OFF, 1u32), (E_TAKEN_OFF, 2u32)] {
            let e = [
                w(Instruction::with2(Code::Mov_rm8_imm8, abs(c + EXIT_ID), id)),
                w(Instruction::with_branch(Code::Jmp_rel32_64, c + COMMON_OFF)),
            ];
            put(off, &assemble(64, c + off, &e));
        }
        // Common epilogue: store the GPRs, go back to the host stack, store RFLAGS, restore.
        let mut e = vec![];
        for (i, r) in GPRS.iter().enumerate() {
            e.push(w(Instruction::with2(
                Code::Mov_rm64_r64,
                abs(c + OUT_GPR + 8 * i as u64),
                *r,
            )));
        }
        e.push(w(Instruction::with2(
            Code::Mov_r64_rm64,
            Register::RSP,
            abs(c + HOST_RSP),
        )));
        e.push(Instruction::with(Code::Pushfq));
        e.push(w(Instruction::with1(Code::Pop_rm64, abs(c + OUT_FLAGS))));
        e.push(Instruction::with(Code::Popfq));
        for r in CALLEE_SAVED.iter().rev() {
            e.push(w(Instruction::with1(Code::Pop_r64, *r)));
        }
        e.push(Instruction::with(Code::Retnq));
        let bytes = assemble(64, c + COMMON_OFF, &e);
        assert!(COMMON_OFF + (bytes.len() as u64) <= IN_GPR);
        put(COMMON_OFF, &bytes);
    }
}

impl Trampoline for Native {
    fn area(&self) -> &Area {
        &self.area
    }
    fn bits(&self) -> u32 {
        64
    }
    fn data_size(&self) -> u64 {
        DATA_SIZE
    }

    unsafe fn run(&self, gpr: &[u64; 16], rflags: u64) -> NativeOut {
        let a = &self.area;
        for (i, v) in gpr.iter().enumerate() {
            a.put(IN_GPR + 8 * i as u64, &v.to_le_bytes());
        }
        a.put(IN_FLAGS, &rflags.to_le_bytes());
        a.put(EXIT_ID, &[0]);
        a.call();
        let mut out = NativeOut {
            gpr: [0; 16],
            rflags: a.read_u64(OUT_FLAGS),
            exit: a.bytes(EXIT_ID, 1)[0],
        };
        for (i, g) in out.gpr.iter_mut().enumerate() {
            *g = a.read_u64(OUT_GPR + 8 * i as u64);
        }
        out
    }
}
