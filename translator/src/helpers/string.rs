//! MOVS/STOS/LODS/CMPS/SCAS with and without REP/REPE/REPNE (SDM Vol. 2, "REP/REPE/REPZ...").
//!
//! Registers are committed after every iteration, so a fault in the middle leaves RSI/RDI/RCX
//! exactly where the CPU would and the instruction restarts from there. A long REP yields
//! after a chunk (the helper returns 1 and the block re-runs the instruction) so interrupts
//! are not starved, as the CPU itself allows (SDM Vol. 1, 7.3.9.3).

use crate::cpu::{reg, rflags::DF, CpuState, Seg};
use crate::env::Env;
use crate::exception::Exception;
use crate::flags::{size_mask, CcOp, LazyFlags};
use crate::interp::{check_segment, get_reg, read_mem, set_reg, write_mem};
use crate::ir::{Helper, HelperArgs};
use iced_x86::{Mnemonic, Register};

const CHUNK: u64 = 4096;

fn string(cpu: &mut CpuState, env: &mut dyn Env, x: &HelperArgs) -> Result<u64, Exception> {
    let insn = x.insn;
    let sz = x.sz;
    let mode = cpu.mode();
    let asz = crate::lift::address_size(insn, mode);
    let amask = size_mask(asz as u32);
    let user = mode.cpl == 3;
    let wrap = mode.code_bits != 64;
    let seg_base = |cpu: &CpuState, s: Seg| -> u64 {
        if mode.code_bits == 64 && !matches!(s, Seg::Fs | Seg::Gs) {
            0
        } else {
            cpu.seg[s as usize].base
        }
    };
    let lin = |base: u64, off: u64| {
        let l = base.wrapping_add(off);
        if wrap {
            l & 0xffff_ffff
        } else {
            l
        }
    };
    let src_seg = match insn.memory_segment() {
        Register::ES => Seg::Es,
        Register::CS => Seg::Cs,
        Register::SS => Seg::Ss,
        Register::FS => Seg::Fs,
        Register::GS => Seg::Gs,
        _ => Seg::Ds,
    };
    let m = insn.mnemonic();
    let rep = insn.has_rep_prefix() || insn.has_repne_prefix();
    let step: u64 = if cpu.rflags & DF != 0 {
        (sz as u64).wrapping_neg()
    } else {
        sz as u64
    };
    let mut n = 0;
    loop {
        if rep && get_reg(cpu, reg::RCX, asz) & amask == 0 {
            return Ok(0);
        }
        if n == CHUNK {
            return Ok(1);
        }
        n += 1;
        let rsi = get_reg(cpu, reg::RSI, asz);
        let rdi = get_reg(cpu, reg::RDI, asz);
        let src = lin(seg_base(cpu, src_seg), rsi);
        let dst = lin(seg_base(cpu, Seg::Es), rdi);
        if mode.seg_checks {
            // Segmented protected mode: limit and type of the source (reads) and of ES
            // (MOVS/STOS write it, CMPS/SCAS read it) (SDM Vol. 3, 5.3).
            let reads_src = !matches!(
                m,
                Mnemonic::Stosb
                    | Mnemonic::Stosw
                    | Mnemonic::Stosd
                    | Mnemonic::Stosq
                    | Mnemonic::Scasb
                    | Mnemonic::Scasw
                    | Mnemonic::Scasd
                    | Mnemonic::Scasq
            );
            let uses_dst = !matches!(
                m,
                Mnemonic::Lodsb | Mnemonic::Lodsw | Mnemonic::Lodsd | Mnemonic::Lodsq
            );
            let writes_dst = matches!(
                m,
                Mnemonic::Movsb
                    | Mnemonic::Movsw
                    | Mnemonic::Movsd
                    | Mnemonic::Movsq
                    | Mnemonic::Stosb
                    | Mnemonic::Stosw
                    | Mnemonic::Stosd
                    | Mnemonic::Stosq
            );
            if reads_src {
                check_segment(cpu, src_seg as u8, rsi, sz, false, 0)?;
            }
            if uses_dst {
                check_segment(cpu, Seg::Es as u8, rdi, sz, writes_dst, 0)?;
            }
        }
        let mut cmp: Option<(u64, u64)> = None;
        match m {
            Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd | Mnemonic::Movsq => {
                let v = read_mem(cpu, env, src, sz, user)?;
                write_mem(cpu, env, dst, sz, v, user)?;
                set_reg(cpu, reg::RSI, asz, rsi.wrapping_add(step) & amask);
                set_reg(cpu, reg::RDI, asz, rdi.wrapping_add(step) & amask);
            }
            Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq => {
                let v = get_reg(cpu, reg::RAX, sz);
                write_mem(cpu, env, dst, sz, v, user)?;
                set_reg(cpu, reg::RDI, asz, rdi.wrapping_add(step) & amask);
            }
            Mnemonic::Lodsb | Mnemonic::Lodsw | Mnemonic::Lodsd | Mnemonic::Lodsq => {
                let v = read_mem(cpu, env, src, sz, user)?;
                set_reg(cpu, reg::RAX, sz, v);
                set_reg(cpu, reg::RSI, asz, rsi.wrapping_add(step) & amask);
            }
            Mnemonic::Cmpsb | Mnemonic::Cmpsw | Mnemonic::Cmpsd | Mnemonic::Cmpsq => {
                let a = read_mem(cpu, env, src, sz, user)?;
                let b = read_mem(cpu, env, dst, sz, user)?;
                set_reg(cpu, reg::RSI, asz, rsi.wrapping_add(step) & amask);
                set_reg(cpu, reg::RDI, asz, rdi.wrapping_add(step) & amask);
                cmp = Some((a, b));
            }
            Mnemonic::Scasb | Mnemonic::Scasw | Mnemonic::Scasd | Mnemonic::Scasq => {
                let a = get_reg(cpu, reg::RAX, sz);
                let b = read_mem(cpu, env, dst, sz, user)?;
                set_reg(cpu, reg::RDI, asz, rdi.wrapping_add(step) & amask);
                cmp = Some((a, b));
            }
            _ => return Err(Exception::ud()),
        }
        if let Some((a, b)) = cmp {
            let mk = size_mask(sz as u32);
            cpu.cc = LazyFlags {
                op: CcOp::Sub as u32,
                size: sz as u32,
                src1: a & mk,
                src2: b & mk,
                res: a.wrapping_sub(b) & mk,
                aux: 0,
            };
        }
        if !rep {
            return Ok(0);
        }
        let rcx = get_reg(cpu, reg::RCX, asz).wrapping_sub(1) & amask;
        set_reg(cpu, reg::RCX, asz, rcx);
        if let Some((a, b)) = cmp {
            let equal = (a ^ b) & size_mask(sz as u32) == 0;
            // REPE stops on a difference, REPNE on equality.
            if insn.has_repe_prefix() && !equal || insn.has_repne_prefix() && equal {
                return Ok(0);
            }
        }
    }
}
pub const STRING: Helper = Helper {
    name: "string",
    f: string,
};
