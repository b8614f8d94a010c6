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

use crate::common::{abs, assemble, w, Area, CALLEE_SAVED};
use crate::native::{NativeOut, Trampoline, E_FALL_OFF, E_TAKEN_OFF, PAGE, TAKEN_OFF, TEST_OFF};
use iced_x86::{Code, Instruction, Register};
use std::sync::{Mutex, MutexGuard};

pub const BASE: u64 = 0x2000;
/// Data from BASE + PAGE up to 64 KiB.
pub const DATA_SIZE: u64 = 0x1_0000 - BASE - PAGE;
const COMPAT_OFF: u64 = 0x80;
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

pub struct Native32 {
    area: Area,
}

// SAFETY: the mapping is only used by the thread holding the lock.
unsafe impl Send for Native32 {}

static AREA: Mutex<Option<Native32>> = Mutex::new(None);

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
        // At a fixed low address that must be free (MAP_FIXED_NOREPLACE fails rather than
        // replace anything).
        let area = Area::map(BASE, (PAGE + DATA_SIZE) as usize, libc::MAP_FIXED_NOREPLACE)
            .unwrap_or_else(|base| {
                panic!(
                    "mmap of the low 32-bit test area at {BASE:#x} failed ({base:?}): the 32-bit \
                     differential tests need vm.mmap_min_addr <= {BASE:#x} (or root)"
                )
            });
        let n = Native32 { area };
        n.build_trampoline();
        n
    }

    fn build_trampoline(&self) {
        let c = self.code_base();
        let put = |off, bytes: &[u8]| self.area.put(off, bytes);
        // 64-bit entry.
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
        put(0, &bytes);

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
        put(COMPAT_OFF, &bytes);

        // Taken stub and the two exits.
        put(
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
            put(off, &assemble(32, c + off, &e));
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
        put(COMMON_OFF, &bytes);

        let mut e = vec![];
        e.push(w(Instruction::with2(
            Code::Mov_r64_rm64,
            Register::RSP,
            abs(c + HOST_RSP),
        )));
        e.push(Instruction::with(Code::Popfq));
        for r in CALLEE_SAVED.iter().rev() {
            e.push(w(Instruction::with1(Code::Pop_r64, *r)));
        }
        e.push(Instruction::with(Code::Retnq));
        let bytes = assemble(64, c + BACK64_OFF, &e);
        assert!(BACK64_OFF + (bytes.len() as u64) <= IN_GPR);
        put(BACK64_OFF, &bytes);
    }
}

impl Trampoline for Native32 {
    fn area(&self) -> &Area {
        &self.area
    }
    fn bits(&self) -> u32 {
        32
    }
    fn data_size(&self) -> u64 {
        DATA_SIZE
    }

    /// Runs in compatibility mode: the low halves of the first 8 GPRs go in, the results come
    /// back zero-extended.
    unsafe fn run(&self, gpr: &[u64; 16], eflags: u64) -> NativeOut {
        let a = &self.area;
        for (i, v) in gpr.iter().take(8).enumerate() {
            a.put(IN_GPR + 4 * i as u64, &(*v as u32).to_le_bytes());
        }
        a.put(IN_FLAGS, &(eflags as u32).to_le_bytes());
        a.put(EXIT_ID, &[0]);
        a.call();
        let mut out = NativeOut {
            gpr: [0; 16],
            rflags: a.read_u32(OUT_FLAGS) as u64,
            exit: a.bytes(EXIT_ID, 1)[0],
        };
        for (i, g) in out.gpr.iter_mut().take(8).enumerate() {
            *g = a.read_u32(OUT_GPR + 4 * i as u64) as u64;
        }
        out
    }
}
