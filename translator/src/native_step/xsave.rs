//! XSAVE and XRSTOR (and their REX.W forms) on the guest's own state: `CpuState::fx` (the x87
//! and SSE legacy region), `CpuState::ymmh` (the AVX component) and `CpuState::x87_ptr`, in the
//! standard (non-compacted) format (SDM Vol. 1, 13.4-13.8). They are emulated, not run on the
//! host: the host's XRSTOR would #GP (a host SIGSEGV) on a bad header, its XSAVE writes the
//! host's init-optimisation bits and pointers, and the guest's XCR0 is not the host's.
//!
//! The virtual CPU offers x87, SSE and AVX (`xcr0_supported`), no XSAVEOPT/XSAVEC/XSAVES (their
//! CPUID bits are clear, so they are #UD) and no init optimisation: XSAVE writes 1 for every
//! XSTATE_BV bit in RFBM, which the SDM allows (13.6: XINUSE[i] may be 1 for a component in its
//! initial configuration).

use super::memory::{self, Operand};
use super::ptrs::{self, PtrFormat};
use crate::cpu::{cr, CpuState, FxArea};
use crate::env::Env;
use crate::exception::Exception;
use crate::interp::{read_mem, write_mem};
use iced_x86::{Instruction, Mnemonic};

/// Offsets in the standard-format XSAVE area (SDM Vol. 1, 13.4 and 13.5).
const HEADER: usize = 512;
pub const AVX_OFFSET: usize = 576;
/// The area with x87, SSE and AVX: what CPUID.(EAX=0DH,ECX=0):EBX/ECX report.
pub const AREA_SIZE_AVX: usize = AVX_OFFSET + 256;
/// Without AVX: the legacy region and the header.
pub const AREA_SIZE_LEGACY: usize = AVX_OFFSET;

const X87: u64 = 1;
const SSE: u64 = 2;
const AVX: u64 = 4;

/// Whether an instruction is handled here rather than by a native-step plan.
pub fn handles(insn: &Instruction) -> bool {
    matches!(
        insn.mnemonic(),
        Mnemonic::Xsave | Mnemonic::Xsave64 | Mnemonic::Xrstor | Mnemonic::Xrstor64
    ) && !insn.has_lock_prefix()
}

/// The XCR0 bits the virtual CPU supports: x87 and SSE, plus AVX when the host can run it
/// (`super::avx_offered`).
pub fn xcr0_supported() -> u64 {
    if super::avx_offered() {
        X87 | SSE | AVX
    } else {
        X87 | SSE
    }
}

/// CPUID.(EAX=0DH,ECX=0):EBX: the size of the area for the components enabled in `xcr0`.
pub fn area_size(xcr0: u64) -> usize {
    if xcr0 & AVX != 0 {
        AREA_SIZE_AVX
    } else {
        AREA_SIZE_LEGACY
    }
}

/// Run XSAVE/XSAVE64/XRSTOR/XRSTOR64 (`handles(insn)` is true).
pub fn run(
    cpu: &mut CpuState,
    env: &mut dyn Env,
    insn: &Instruction,
    bits: u8,
) -> Result<(), Exception> {
    // SDM Vol. 2, XSAVE/XRSTOR "Protected Mode Exceptions": #UD without CR4.OSXSAVE, #NM with
    // CR0.TS, #GP(0) for an area not 64-byte aligned.
    if cpu.cr4 & cr::CR4_OSXSAVE == 0 {
        return Err(Exception::ud());
    }
    if cpu.cr0 & cr::CR0_TS != 0 {
        return Err(Exception::nm());
    }
    let op = memory::operand(cpu, insn, bits)?;
    if op.lin & 63 != 0 {
        return Err(Exception::gp(0));
    }
    let rfbm = cpu.xcr0 & ((cpu.gpr[2] << 32) | (cpu.gpr[0] & 0xffff_ffff));
    let fmt = match insn.mnemonic() {
        Mnemonic::Xsave64 | Mnemonic::Xrstor64 => PtrFormat::Fx64,
        _ => PtrFormat::Fx32,
    };
    // Outside 64-bit mode only XMM0-7 (and YMM0-7) exist.
    let regs = if bits == 64 { 16 } else { 8 };
    let user = cpu.cpl() == 3;
    match insn.mnemonic() {
        Mnemonic::Xsave | Mnemonic::Xsave64 => save(cpu, env, &op, rfbm, fmt, regs, user),
        _ => restore(cpu, env, &op, rfbm, fmt, regs, user),
    }
}

fn at(op: &Operand, off: usize) -> u64 {
    let l = op.lin.wrapping_add(off as u64);
    if op.wrap32 {
        l & 0xffff_ffff
    } else {
        l
    }
}

fn read(
    cpu: &mut CpuState,
    env: &mut dyn Env,
    op: &Operand,
    buf: &mut [u8],
    from: usize,
    to: usize,
    user: bool,
) -> Result<(), Exception> {
    let mut i = from;
    while i < to {
        let v = read_mem(cpu, env, at(op, i), 8, user)?;
        buf[i..i + 8].copy_from_slice(&v.to_le_bytes());
        i += 8;
    }
    Ok(())
}

fn write(
    cpu: &mut CpuState,
    env: &mut dyn Env,
    op: &Operand,
    buf: &[u8],
    from: usize,
    to: usize,
    user: bool,
) -> Result<(), Exception> {
    let mut i = from;
    while i < to {
        let v = u64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
        write_mem(cpu, env, at(op, i), 8, v, user)?;
        i += 8;
    }
    Ok(())
}

fn save(
    cpu: &mut CpuState,
    env: &mut dyn Env,
    op: &Operand,
    rfbm: u64,
    fmt: PtrFormat,
    regs: usize,
    user: bool,
) -> Result<(), Exception> {
    let mut img = [0u8; AREA_SIZE_AVX];
    img[..512].copy_from_slice(&cpu.fx.0);
    ptrs::store(fmt, &mut img, &cpu.x87_ptr);
    img[AVX_OFFSET..AVX_OFFSET + 256].copy_from_slice(&cpu.ymmh.0);
    // The header's XSTATE_BV is read, then written back with the RFBM bits set: read it
    // first, so a fault leaves everything unchanged.
    read(cpu, env, op, &mut img, HEADER, HEADER + 8, user)?;
    let bv = u64::from_le_bytes(img[HEADER..HEADER + 8].try_into().expect("8 bytes")) | rfbm;
    img[HEADER..HEADER + 8].copy_from_slice(&bv.to_le_bytes());
    // Every page written must be writable before the first byte changes: probe the first and
    // last byte of the span (an area of at most 832 bytes covers at most two pages).
    let end = if rfbm & AVX != 0 {
        AVX_OFFSET + 16 * regs
    } else {
        HEADER + 8
    };
    for off in [0, end - 1] {
        let b = read_mem(cpu, env, at(op, off), 1, user)?;
        write_mem(cpu, env, at(op, off), 1, b, user)?;
    }
    if rfbm & X87 != 0 {
        // FCW, FSW, FTW, FOP, FIP, FDP (bytes 0..24) and ST0-7 (32..160).
        write(cpu, env, op, &img, 0, 24, user)?;
        write(cpu, env, op, &img, FxArea::ST0, FxArea::XMM0, user)?;
    }
    if rfbm & (SSE | AVX) != 0 {
        write(cpu, env, op, &img, FxArea::MXCSR, FxArea::ST0, user)?;
    }
    if rfbm & SSE != 0 {
        write(
            cpu,
            env,
            op,
            &img,
            FxArea::XMM0,
            FxArea::XMM0 + 16 * regs,
            user,
        )?;
    }
    if rfbm & AVX != 0 {
        write(cpu, env, op, &img, AVX_OFFSET, AVX_OFFSET + 16 * regs, user)?;
    }
    write(cpu, env, op, &img, HEADER, HEADER + 8, user)
}

fn restore(
    cpu: &mut CpuState,
    env: &mut dyn Env,
    op: &Operand,
    rfbm: u64,
    fmt: PtrFormat,
    regs: usize,
    user: bool,
) -> Result<(), Exception> {
    // Read everything first, check, then commit: a fault or #GP changes nothing.
    let mut img = [0u8; AREA_SIZE_AVX];
    let end = if rfbm & AVX != 0 {
        AREA_SIZE_AVX
    } else {
        AREA_SIZE_LEGACY
    };
    read(cpu, env, op, &mut img, 0, end, user)?;
    let q = |o: usize| u64::from_le_bytes(img[o..o + 8].try_into().expect("8 bytes"));
    let bv = q(HEADER);
    // Standard form (SDM Vol. 1, 13.8.1): XSTATE_BV within XCR0, header bytes 23:8 (XCOMP_BV
    // and the next quadword) zero. The compacted form (XCOMP_BV[63]) is not offered.
    if bv & !cpu.xcr0 != 0 || q(HEADER + 8) != 0 || q(HEADER + 16) != 0 {
        return Err(Exception::gp(0));
    }
    let mask = super::guest_mxcsr_mask();
    let mxcsr = u32::from_le_bytes(img[FxArea::MXCSR..FxArea::MXCSR + 4].try_into().expect("4"));
    if rfbm & (SSE | AVX) != 0 && mxcsr & !mask != 0 {
        return Err(Exception::gp(0));
    }
    let fx = &mut cpu.fx;
    if rfbm & X87 != 0 {
        if bv & X87 != 0 {
            fx.0[..FxArea::MXCSR].copy_from_slice(&img[..FxArea::MXCSR]);
            // ST0-7 are 80 bits in 16-byte slots: the 6 bytes above each are reserved, ignored
            // on load and stored as zero.
            for i in 0..8 {
                let o = FxArea::ST0 + 16 * i;
                fx.0[o..o + 10].copy_from_slice(&img[o..o + 10]);
                fx.0[o + 10..o + 16].fill(0);
            }
            cpu.x87_ptr = ptrs::load(fmt, &img);
        } else {
            fx.init_x87();
            cpu.x87_ptr = Default::default();
        }
    }
    if rfbm & (SSE | AVX) != 0 {
        fx.set32(FxArea::MXCSR, mxcsr);
    }
    let xmm = FxArea::XMM0..FxArea::XMM0 + 16 * regs;
    if rfbm & SSE != 0 {
        if bv & SSE != 0 {
            fx.0[xmm.clone()].copy_from_slice(&img[xmm]);
        } else {
            fx.0[xmm].fill(0);
        }
    }
    let ymm = AVX_OFFSET..AVX_OFFSET + 16 * regs;
    if rfbm & AVX != 0 {
        if bv & AVX != 0 {
            cpu.ymmh.0[..16 * regs].copy_from_slice(&img[ymm]);
        } else {
            cpu.ymmh.0[..16 * regs].fill(0);
        }
    }
    ptrs::store(PtrFormat::Fx64, &mut cpu.fx.0, &cpu.x87_ptr);
    cpu.fx.set32(FxArea::MXCSR_MASK, mask);
    Ok(())
}
