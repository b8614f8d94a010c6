//! The native side of the native-step tests: run one instruction on the host with a given
//! FXSAVE image, GPRs and arithmetic flags, and return the resulting image, GPRs and flags.
//!
//! One mapping below 2 GiB (MAP_32BIT: absolute addressing reaches it):
//!   0x0000 prologue (save callee-saved GPRs and the host FPU state, load the inputs), `jmp`
//!   0x0200 the instruction under test, then `jmp 0x300`
//!   0x0300 epilogue (store the outputs, restore the host state)
//!   0x0800 GPRs in, 0x0880 flags in, 0x0888 flags out, 0x0890 host RSP, 0x0900 GPRs out
//!   0x1000 host FXSAVE area, 0x1200 image in, 0x1400 image out
//!   0x1600 upper YMM halves in, 0x1700 upper YMM halves out (where the host has AVX)
//!   0x2000 DATA_SIZE bytes of data

use crate::common::{abs, assemble, w, Area, CALLEE_SAVED, GPRS};
use iced_x86::{Code, Instruction, Register};

pub const TEST_OFF: u64 = 0x200;
pub const END_OFF: u64 = 0x300;
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
const IN_YMMH: u64 = 0x1600;
const OUT_YMMH: u64 = 0x1700;
const LEN: usize = DATA_OFF as usize + DATA_SIZE;

pub struct Out {
    pub fx: [u8; 512],
    pub ymmh: [u8; 256],
    pub gpr: [u64; 16],
    pub flags: u64,
}

pub struct Oracle {
    area: Area,
}

impl Oracle {
    pub fn new() -> Oracle {
        let area = Area::map(0, LEN, libc::MAP_32BIT).expect("mmap of the oracle area");
        let o = Oracle { area };
        o.build();
        o
    }

    pub fn base(&self) -> u64 {
        self.area.base()
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

    pub fn data(&self) -> Vec<u8> {
        self.area.bytes(DATA_OFF, DATA_SIZE).to_vec()
    }

    pub fn set_data(&self, d: &[u8]) {
        self.area.put(DATA_OFF, d);
    }

    fn build(&self) {
        use Register::*;
        let c = self.base();
        let mut p = vec![];
        for r in CALLEE_SAVED {
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
        if avx() {
            for (i, y) in ymm().iter().enumerate() {
                p.push(w(Instruction::with4(
                    Code::VEX_Vinsertf128_ymm_ymm_xmmm128_imm8,
                    *y,
                    *y,
                    abs(c + IN_YMMH + 16 * i as u64),
                    1,
                )));
            }
        }
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
        let b = assemble(64, c, &p);
        assert!(b.len() as u64 <= TEST_OFF);
        self.area.put(0, &b);
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
        if avx() {
            for (i, y) in ymm().iter().enumerate() {
                e.push(w(Instruction::with3(
                    Code::VEX_Vextractf128_xmmm128_ymm_imm8,
                    abs(c + OUT_YMMH + 16 * i as u64),
                    *y,
                    1,
                )));
            }
            e.push(Instruction::with(Code::VEX_Vzeroupper));
        }
        e.push(w(Instruction::with1(
            Code::Fxrstor64_m512byte,
            abs(c + HOST_FX),
        )));
        e.push(w(Instruction::with2(
            Code::Mov_r64_rm64,
            RSP,
            abs(c + HOST_RSP),
        )));
        for r in CALLEE_SAVED.iter().rev() {
            e.push(w(Instruction::with1(Code::Pop_r64, *r)));
        }
        e.push(Instruction::with(Code::Retnq));
        let b = assemble(64, c + END_OFF, &e);
        assert!(END_OFF + b.len() as u64 <= IN_GPR);
        self.area.put(END_OFF, &b);
    }

    /// The bytes the translated side fetches at `test_addr()`: the instruction, `jmp end`.
    pub fn load(&self, insn: &[u8]) -> Vec<u8> {
        let all = with_jmp(insn, 64, self.test_addr(), self.end_addr());
        assert!(TEST_OFF + all.len() as u64 <= END_OFF);
        self.area.put(TEST_OFF, &all);
        all
    }

    /// Run the loaded instruction (its 64-bit encoding).
    ///
    /// # Safety
    /// The instruction must not fault (memory inside the data area, aligned where required,
    /// FP exceptions masked) and must not transfer control or touch RSP.
    pub unsafe fn run(&self, fx: &[u8; 512], ymmh: &[u8; 256], gpr: &[u64; 16], flags: u64) -> Out {
        let a = &self.area;
        a.put(IN_FX, fx);
        a.put(IN_YMMH, ymmh);
        for (i, v) in gpr.iter().enumerate() {
            a.put(IN_GPR + 8 * i as u64, &v.to_le_bytes());
        }
        a.put(IN_FLAGS, &flags.to_le_bytes());
        a.call();
        let mut out = Out {
            fx: [0; 512],
            ymmh: [0; 256],
            gpr: [0; 16],
            flags: a.read_u64(OUT_FLAGS),
        };
        a.get(OUT_FX, &mut out.fx);
        if avx() {
            a.get(OUT_YMMH, &mut out.ymmh);
        } else {
            out.ymmh = *ymmh;
        }
        for (i, g) in out.gpr.iter_mut().enumerate() {
            *g = a.read_u64(OUT_GPR + 8 * i as u64);
        }
        out.gpr[4] = gpr[4];
        out
    }
}

/// Whether the host runs AVX (the oracle then carries the upper YMM halves).
pub fn avx() -> bool {
    std::arch::is_x86_feature_detected!("avx")
}

fn ymm() -> [Register; 16] {
    use Register::*;
    [
        YMM0, YMM1, YMM2, YMM3, YMM4, YMM5, YMM6, YMM7, YMM8, YMM9, YMM10, YMM11, YMM12, YMM13,
        YMM14, YMM15,
    ]
}

/// `insn` (encoded for `bits`-bit code at `at`) followed by a `jmp` to `target`.
pub fn with_jmp(insn: &[u8], bits: u32, at: u64, target: u64) -> Vec<u8> {
    let jmp = if bits == 64 {
        Code::Jmp_rel32_64
    } else {
        Code::Jmp_rel32_32
    };
    let j = assemble(
        bits,
        at + insn.len() as u64,
        &[w(Instruction::with_branch(jmp, target))],
    );
    let mut all = insn.to_vec();
    all.extend_from_slice(&j);
    all
}
