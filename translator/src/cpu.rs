//! The guest CPU state shared by the interpreter, compiled code and the runtime.
//!
//! `CpuState` is `#[repr(C)]` so that generated code can reach fields through offsets derived
//! with `core::mem::offset_of!`. Arithmetic flags are lazy (see `flags.rs`): OF/SF/ZF/AF/PF/CF
//! live in the `cc` record until somebody asks for RFLAGS.

use crate::flags::{self, CcOp, LazyFlags};
use crate::tlb::SoftTlb;

/// General-purpose register numbers in the hardware encoding order (SDM Vol. 2, 2.1.5).
pub mod reg {
    pub const RAX: u8 = 0;
    pub const RCX: u8 = 1;
    pub const RDX: u8 = 2;
    pub const RBX: u8 = 3;
    pub const RSP: u8 = 4;
    pub const RBP: u8 = 5;
    pub const RSI: u8 = 6;
    pub const RDI: u8 = 7;
}

/// Segment register indices in the hardware encoding order (ES, CS, SS, DS, FS, GS).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Seg {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
}

impl Seg {
    pub const ALL: [Seg; 6] = [Seg::Es, Seg::Cs, Seg::Ss, Seg::Ds, Seg::Fs, Seg::Gs];
    pub fn from_index(i: u8) -> Option<Seg> {
        Seg::ALL.get(i as usize).copied()
    }
    pub fn name(self) -> &'static str {
        ["es", "cs", "ss", "ds", "fs", "gs"][self as usize]
    }
}

/// A segment register with its hidden part (SDM Vol. 3, 3.4.3): what the CPU loaded from the
/// descriptor when the selector was written.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Segment {
    pub selector: u16,
    /// Descriptor bits 40..55 (type, S, DPL, P, AVL, L, D/B, G), as bytes 5 and 6 of the
    /// descriptor: the same layout as KVM's and VMX's access rights, minus the limit nibble.
    pub attrs: u16,
    pub limit: u32,
    pub base: u64,
}

impl Segment {
    pub const ATTR_P: u16 = 1 << 7;
    pub const ATTR_S: u16 = 1 << 4;
    pub const ATTR_L: u16 = 1 << 13;
    pub const ATTR_DB: u16 = 1 << 14;
    pub const ATTR_G: u16 = 1 << 15;
    pub fn dpl(&self) -> u8 {
        ((self.attrs >> 5) & 3) as u8
    }
    pub fn present(&self) -> bool {
        self.attrs & Self::ATTR_P != 0
    }
    pub fn long(&self) -> bool {
        self.attrs & Self::ATTR_L != 0
    }
    pub fn big(&self) -> bool {
        self.attrs & Self::ATTR_DB != 0
    }
    /// The type field (descriptor bits 40..43).
    pub fn typ(&self) -> u8 {
        (self.attrs & 0xf) as u8
    }
    /// Whether data accesses through this segment can fault on limit or type (a usable data
    /// segment that is not writable, expand-up and 4 GiB long). Code segments are checked
    /// only when used for data, which the lifter flags per access.
    pub fn needs_checks(&self) -> bool {
        if !self.present() || self.typ() & 8 != 0 {
            return false;
        }
        let writable = self.typ() & 2 != 0;
        let expand_down = self.typ() & 4 != 0;
        !writable || expand_down || self.limit != 0xffff_ffff
    }

    /// A flat 32-bit segment as loaded in real/protected mode boot (base 0, limit 4 GiB).
    pub fn flat(selector: u16, typ: u8, dpl: u8, db: bool) -> Segment {
        let mut attrs =
            typ as u16 | Self::ATTR_S | Self::ATTR_P | ((dpl as u16) << 5) | Self::ATTR_G;
        if db {
            attrs |= Self::ATTR_DB;
        }
        Segment {
            selector,
            attrs,
            limit: 0xffff_ffff,
            base: 0,
        }
    }
}

/// GDTR / IDTR (SDM Vol. 3, 2.4).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TableReg {
    pub base: u64,
    pub limit: u16,
}

/// RFLAGS bits (SDM Vol. 1, 3.4.3).
pub mod rflags {
    pub const CF: u64 = 1 << 0;
    pub const FIXED1: u64 = 1 << 1;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const TF: u64 = 1 << 8;
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const OF: u64 = 1 << 11;
    pub const IOPL: u64 = 3 << 12;
    pub const NT: u64 = 1 << 14;
    pub const RF: u64 = 1 << 16;
    pub const VM: u64 = 1 << 17;
    pub const AC: u64 = 1 << 18;
    pub const VIF: u64 = 1 << 19;
    pub const VIP: u64 = 1 << 20;
    pub const ID: u64 = 1 << 21;
    /// The six arithmetic flags kept lazily.
    pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
}

/// Control-register and EFER bits the translator and MMU depend on.
pub mod cr {
    pub const CR0_PE: u64 = 1 << 0;
    pub const CR0_MP: u64 = 1 << 1;
    pub const CR0_EM: u64 = 1 << 2;
    pub const CR0_TS: u64 = 1 << 3;
    pub const CR0_ET: u64 = 1 << 4;
    pub const CR0_NE: u64 = 1 << 5;
    pub const CR0_WP: u64 = 1 << 16;
    pub const CR0_AM: u64 = 1 << 18;
    pub const CR0_NW: u64 = 1 << 29;
    pub const CR0_CD: u64 = 1 << 30;
    pub const CR0_PG: u64 = 1 << 31;
    pub const CR4_PSE: u64 = 1 << 4;
    pub const CR4_PAE: u64 = 1 << 5;
    pub const CR4_PGE: u64 = 1 << 7;
    pub const CR4_OSFXSR: u64 = 1 << 9;
    pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
    pub const CR4_UMIP: u64 = 1 << 11;
    pub const CR4_LA57: u64 = 1 << 12;
    pub const CR4_FSGSBASE: u64 = 1 << 16;
    pub const CR4_PCIDE: u64 = 1 << 17;
    pub const CR4_OSXSAVE: u64 = 1 << 18;
    pub const CR4_SMEP: u64 = 1 << 20;
    pub const CR4_SMAP: u64 = 1 << 21;
    pub const EFER_SCE: u64 = 1 << 0;
    pub const EFER_LME: u64 = 1 << 8;
    pub const EFER_LMA: u64 = 1 << 10;
    pub const EFER_NXE: u64 = 1 << 11;
}

/// The MSRs that kernels and the tests use and that are plain storage (SDM Vol. 4).
#[derive(Copy, Clone, Debug, Default)]
#[repr(C)]
pub struct Msrs {
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub fmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub tsc_aux: u64,
    pub pat: u64,
    pub misc_enable: u64,
    pub tsc_offset: i64,
}

/// The guest's x87/MMX/SSE state as an FXSAVE image in the 64-bit layout (SDM Vol. 1, 10.5.1,
/// Table 10-2): the native-step stubs load it with FXRSTOR64 and store it with FXSAVE64, so it
/// must be 16-byte aligned. FOP/FIP/FDP (bytes 6..24) are kept by the native-step engine (see
/// `X87Pointers`), never taken from the host, whose values would be host addresses.
#[derive(Copy, Clone)]
#[repr(C, align(16))]
pub struct FxArea(pub [u8; 512]);

impl FxArea {
    pub const FCW: usize = 0;
    pub const FSW: usize = 2;
    /// The abridged tag byte (one bit per register, 1 = valid).
    pub const FTW: usize = 4;
    pub const FOP: usize = 6;
    pub const FIP: usize = 8;
    pub const FDP: usize = 16;
    pub const MXCSR: usize = 24;
    pub const MXCSR_MASK: usize = 28;
    pub const ST0: usize = 32;
    pub const XMM0: usize = 160;
    pub const MXCSR_DEFAULT: u32 = 0x1f80;

    /// The state FNINIT leaves (SDM Vol. 1, 8.1.10: FCW 037FH, FSW 0, all registers empty,
    /// pointers 0) with MXCSR at its power-up value 1F80H (Vol. 3, Table 9-1) and `mxcsr_mask`
    /// as the MXCSR_MASK field (Vol. 1, 11.6.6).
    pub fn init(mxcsr_mask: u32) -> FxArea {
        let mut a = FxArea([0; 512]);
        a.set16(Self::FCW, 0x037f);
        a.set32(Self::MXCSR, Self::MXCSR_DEFAULT);
        a.set32(Self::MXCSR_MASK, mxcsr_mask);
        a
    }
    /// Put the x87 part (FCW, FSW, FTW, FOP, FIP, FDP, ST0-7) in its initial configuration
    /// (SDM Vol. 1, 13.6: FCW 037FH, everything else 0), as XRSTOR does for a component whose
    /// XSTATE_BV bit is clear. MXCSR and the XMM registers are left alone.
    pub fn init_x87(&mut self) {
        self.0[..Self::MXCSR].fill(0);
        self.set16(Self::FCW, 0x037f);
        self.0[Self::ST0..Self::XMM0].fill(0);
    }
    pub fn get16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.0[off], self.0[off + 1]])
    }
    pub fn get32(&self, off: usize) -> u32 {
        u32::from_le_bytes([
            self.0[off],
            self.0[off + 1],
            self.0[off + 2],
            self.0[off + 3],
        ])
    }
    pub fn set16(&mut self, off: usize, v: u16) {
        self.0[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn set32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub fn fcw(&self) -> u16 {
        self.get16(Self::FCW)
    }
    pub fn fsw(&self) -> u16 {
        self.get16(Self::FSW)
    }
    pub fn mxcsr(&self) -> u32 {
        self.get32(Self::MXCSR)
    }
    /// XMM register `i` (0..16) as little-endian bytes.
    pub fn xmm(&self, i: usize) -> [u8; 16] {
        let o = Self::XMM0 + 16 * i;
        let mut r = [0; 16];
        r.copy_from_slice(&self.0[o..o + 16]);
        r
    }
    pub fn set_xmm(&mut self, i: usize, v: [u8; 16]) {
        let o = Self::XMM0 + 16 * i;
        self.0[o..o + 16].copy_from_slice(&v);
    }
    /// The 80-bit register in physical slot ST(`i`) relative to TOP, as stored (16 bytes).
    pub fn st(&self, i: usize) -> [u8; 10] {
        let o = Self::ST0 + 16 * i;
        let mut r = [0; 10];
        r.copy_from_slice(&self.0[o..o + 10]);
        r
    }
}

/// The upper halves of YMM0-15, 16 bytes each (the AVX component of an XSAVE image, SDM
/// Vol. 1, 13.5.3).
#[derive(Copy, Clone, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct YmmHigh(pub [u8; 256]);

impl std::fmt::Debug for YmmHigh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.0.iter().any(|&b| b != 0);
        write!(f, "YmmHigh {{ nonzero: {used} }}")
    }
}

impl std::fmt::Debug for FxArea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FxArea {{ fcw: {:#x}, fsw: {:#x}, mxcsr: {:#x} }}",
            self.fcw(),
            self.fsw(),
            self.mxcsr()
        )
    }
}

/// The x87 last-instruction and last-operand pointers (SDM Vol. 1, 8.1.8 and 8.1.9), tracked in
/// software: the host CPU would record the stub's and the bounce buffer's host addresses.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct X87Pointers {
    /// Offset in CS of the last non-control x87 instruction.
    pub fip: u64,
    /// Offset of its memory operand.
    pub fdp: u64,
    pub fcs: u16,
    pub fds: u16,
    /// 11-bit opcode: low 3 bits of the first opcode byte, then the ModR/M byte.
    pub fop: u16,
}

/// The processor mode that a translation depends on. Part of the block key: a block lifted for
/// one mode is never run in another.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mode {
    /// 16, 32 or 64: the default operand/address size of the code segment.
    pub code_bits: u8,
    /// Current privilege level.
    pub cpl: u8,
    /// Paging on (CR0.PG).
    pub paging: bool,
    /// 16, 32 or 64: the stack-pointer width (SS.B, or 64 in 64-bit mode).
    pub stack_bits: u8,
    /// Some segment register needs limit or type checks on data accesses (a limit below
    /// 4 GiB, expand-down, read-only). Flat guests run without them; translations made with
    /// checks are never reused without (SDM Vol. 3, 5.3 and 5.5).
    pub seg_checks: bool,
}

/// `CpuState::exit_request` bit: interrupts just became enabled; let the run loop look for a
/// pending one before running on.
pub const EXIT_INTERRUPT_WINDOW: u32 = 1;
/// `CpuState::exit_request` bit: the vCPU returned to user mode and the run loop may hand it
/// to the native engine.
pub const EXIT_TO_USER: u32 = 2;

/// The whole architectural state of one vCPU that the translator touches.
#[repr(C)]
pub struct CpuState {
    pub gpr: [u64; 16],
    pub rip: u64,
    /// RFLAGS without the six arithmetic flags while `cc.op != CcOp::Eflags`.
    pub rflags: u64,
    pub cc: LazyFlags,
    pub seg: [Segment; 6],
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: TableReg,
    pub idtr: TableReg,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    /// CR8 as handed to and from KVM (`runtime/src/kvm`); under the translator the local APIC
    /// owns the task priority and MOV CR8 goes there.
    pub cr8: u64,
    pub efer: u64,
    pub xcr0: u64,
    pub dr: [u64; 8],
    pub msr: Msrs,
    /// Nonzero when the run loop must regain control at the next block boundary
    /// (pending interrupt, TLB flush, stop). Tested at every block entry.
    pub exit_request: u32,
    /// STI / MOV SS interrupt shadow: interrupts are not recognised before the next
    /// instruction completes (SDM Vol. 3, 6.8.3).
    pub interrupt_shadow: bool,
    /// Set by the MMU when a store hit a page holding translations; the interpreter leaves the
    /// block after the current instruction so no stale translation runs (SDM Vol. 3, 8.1.3).
    pub code_modified: bool,
    /// Bumped by the runtime at every soft-TLB flush; the translator's jump cache (linear RIP to
    /// block) is valid only within one generation.
    pub tlb_generation: u64,
    pub tlb: SoftTlb,
    /// x87/MMX/SSE registers, run by the native-step engine (`crate::native_step`).
    pub fx: FxArea,
    /// Bits 255:128 of YMM0-15 (XSAVE state component 2, AVX), in the layout of the XSAVE
    /// area's AVX component: the legacy SSE instructions leave them alone, VEX instructions
    /// (native-stepped) and XSAVE/XRSTOR use them. Zero is the initial state.
    pub ymmh: YmmHigh,
    pub x87_ptr: X87Pointers,
    /// Why a helper stopped the VM (with `Exception::stop()`): reported as
    /// `StopReason::Unsupported`.
    pub stop_what: &'static str,
    /// Instructions run by the native-step engine (for `--stats`).
    pub native_steps: u64,
}

impl Default for CpuState {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuState {
    /// The state after RESET/INIT (SDM Vol. 3, 9.1.1), minus real mode which loaders skip.
    pub fn new() -> Self {
        CpuState {
            gpr: [0; 16],
            rip: 0xfff0,
            rflags: rflags::FIXED1,
            cc: LazyFlags::default(),
            seg: [Segment::default(); 6],
            ldtr: Segment::default(),
            tr: Segment::default(),
            gdtr: TableReg::default(),
            idtr: TableReg {
                base: 0,
                limit: 0xffff,
            },
            cr0: cr::CR0_ET | cr::CR0_NW | cr::CR0_CD,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            xcr0: 1,
            dr: [0, 0, 0, 0, 0, 0, 0xffff0ff0, 0x400],
            msr: Msrs {
                pat: 0x0007_0406_0007_0406,
                ..Msrs::default()
            },
            exit_request: 0,
            interrupt_shadow: false,
            code_modified: false,
            tlb_generation: 0,
            tlb: SoftTlb::new(),
            fx: FxArea::init(crate::native_step::guest_mxcsr_mask()),
            ymmh: YmmHigh([0; 256]),
            x87_ptr: X87Pointers::default(),
            stop_what: "",
            native_steps: 0,
        }
    }

    /// Current privilege level: the DPL of the hidden SS (SDM Vol. 3, 5.5; equal to CS.RPL
    /// outside conforming-code corner cases).
    pub fn cpl(&self) -> u8 {
        self.seg[Seg::Ss as usize].dpl()
    }

    pub fn long_mode_active(&self) -> bool {
        self.efer & cr::EFER_LMA != 0
    }

    /// Code size of the current CS: 64 in long mode with CS.L, else 32 or 16 by CS.D.
    pub fn code_bits(&self) -> u8 {
        let cs = &self.seg[Seg::Cs as usize];
        if self.cr0 & cr::CR0_PE == 0 {
            16
        } else if self.long_mode_active() && cs.long() {
            64
        } else if cs.big() {
            32
        } else {
            16
        }
    }

    pub fn mode(&self) -> Mode {
        let code_bits = self.code_bits();
        let stack_bits = match self.stack_pointer_mask() {
            u64::MAX => 64,
            0xffff_ffff => 32,
            _ => 16,
        };
        Mode {
            code_bits,
            cpl: self.cpl(),
            paging: self.cr0 & cr::CR0_PG != 0,
            stack_bits,
            seg_checks: code_bits != 64 && self.seg.iter().any(|s| s.needs_checks()),
        }
    }

    /// Architectural RFLAGS, folding the lazy arithmetic flags in.
    pub fn rflags(&self) -> u64 {
        (self.rflags & !rflags::ARITH) | flags::arith_flags(&self.cc) | rflags::FIXED1
    }

    /// Set RFLAGS wholesale; the arithmetic flags become materialised (`CcOp::Eflags`).
    pub fn set_rflags(&mut self, value: u64) {
        self.rflags = (value & !(rflags::ARITH)) | rflags::FIXED1;
        self.cc = LazyFlags {
            op: CcOp::Eflags as u32,
            size: 0,
            src1: value & rflags::ARITH,
            src2: 0,
            res: 0,
            aux: 0,
        };
    }

    pub fn stack_pointer_mask(&self) -> u64 {
        if self.code_bits() == 64 {
            u64::MAX
        } else if self.seg[Seg::Ss as usize].big() {
            0xffff_ffff
        } else {
            0xffff
        }
    }
}
