//! Differential tests of the translator in 32-bit protected mode against the host CPU running
//! the same bytes in compatibility mode (CS = 0x23 of the Linux x86-64 GDT).
//!
//! Every instruction form that classify.rs lifts and that is valid in 32-bit mode (enumerated
//! from iced's opcode tables, see `differential/harness32.rs`) is run with random operands
//! (biased to edge values), random incoming arithmetic flags and DF, once natively through the
//! compat-mode trampoline (`differential/native32.rs`) and once through `scan_block` + each
//! backend on a 32-bit vCPU, and the 8 GPRs (full 64 bits on the translated side: nothing may
//! leak into the upper halves), the arithmetic flags (minus the ones the SDM leaves undefined),
//! DF, the data memory and the control-flow outcome are compared. That covers the 32-bit-only
//! instructions (DAA, DAS, AAA, AAS, AAM, AAD, SALC, BOUND, PUSHA/POPA(D), JCXZ, INC/DEC
//! 0x40-0x4F), 16-bit addressing, 16-bit near branches, and the 32-bit forms of everything else
//! (32-bit stack, ESI/EDI/ECX strings, LOOP with ECX or CX). Exceptions that the inputs predict
//! (#DE of DIV/IDIV/AAM 0, #BR of BOUND out of range) are checked on the translated side only.
//!
//! The native area must sit below 64 KiB (16-bit addressing, 16-bit IP): there is one per
//! process, so the tests of this file take turns on it.
//!
//! Run: `cargo test --release -p btvisor-translator --test differential32 -- --nocapture`.
//! `DIFF_CASES=n`, `DIFF_FORM=substring`, `DIFF_BACKEND=interpreter|jit` and `DIFF_VERBOSE` work
//! as in `differential.rs`.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

#[allow(dead_code)]
#[path = "differential/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "differential/forms.rs"]
mod forms;
#[allow(dead_code)]
#[path = "differential/harness.rs"]
mod harness;
#[path = "differential/harness32.rs"]
mod harness32;
#[allow(dead_code)]
#[path = "differential/native.rs"]
mod native;
#[path = "differential/native32.rs"]
mod native32;
#[path = "differential/translated.rs"]
mod translated;

use forms::lift_mnemonics_where;
use harness::{backends, coverage_report, run_family_forms, select};
use harness32::{all_forms32, excluded32, Ctx32, Form32};
use iced_x86::{Code, Mnemonic};
use native32::Native32;
use translated::Backend;

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Family {
    /// The instructions that exist only outside 64-bit mode, and the short INC/DEC forms.
    Legacy,
    Alu,
    ShiftMulDiv,
    Bits,
    Data,
    StringStackBranch,
}

/// Mnemonics that only 32-bit (and 16-bit) code has.
fn legacy_only(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Daa | Das | Aaa | Aas | Aam | Aad | Salc | Bound | Pusha | Pushad | Popa | Popad | Jcxz
    )
}

fn family(f: &Form32) -> Family {
    use Mnemonic::*;
    let m = f.mnemonic;
    // INC/DEC r16/r32 (0x40-0x4F): REX prefixes in 64-bit mode.
    let short_inc_dec = matches!(
        f.kind,
        harness32::Kind32::Code {
            code: Code::Inc_r16 | Code::Inc_r32 | Code::Dec_r16 | Code::Dec_r32,
            ..
        }
    );
    if legacy_only(m) || short_inc_dec {
        return Family::Legacy;
    }
    match m {
        Add | Adc | Sub | Sbb | And | Or | Xor | Cmp | Test | Inc | Dec | Neg | Not | Xadd
        | Cmpxchg | Cmpxchg8b => Family::Alu,
        Shl | Sal | Shr | Sar | Rol | Ror | Rcl | Rcr | Shld | Shrd | Mul | Imul | Div | Idiv => {
            Family::ShiftMulDiv
        }
        Bt | Bts | Btr | Btc | Bsf | Bsr | Tzcnt | Lzcnt | Popcnt | Bswap | Clc | Stc | Cmc
        | Cld | Std | Lahf | Sahf => Family::Bits,
        _ if harness::is_string(m) => Family::StringStackBranch,
        Push | Pop | Enter | Leave | Call | Ret | Jmp | Loop | Loope | Loopne | Jecxz | Jo
        | Jno | Jb | Jae | Je | Jne | Jbe | Ja | Js | Jns | Jp | Jnp | Jl | Jge | Jle | Jg => {
            Family::StringStackBranch
        }
        _ => Family::Data,
    }
}

fn run_family(f: Family) {
    let forms = select(all_forms32(), |form| family(form) == f);
    let guard = Native32::lock();
    let mut ctx = Ctx32::new(guard.as_ref().unwrap());
    // The 32-bit-only instructions, which this suite exists for, get every case on the JIT too.
    run_family_forms(
        &format!("32-bit {f:?}"),
        "#DE/#BR",
        &forms,
        f == Family::Legacy,
        |backend, form, n| ctx.run_form(backend, form, n),
    );
}

#[test]
fn legacy32() {
    run_family(Family::Legacy);
}

#[test]
fn alu32() {
    run_family(Family::Alu);
}

#[test]
fn shifts_mul_div32() {
    run_family(Family::ShiftMulDiv);
}

#[test]
fn bits_and_flags32() {
    run_family(Family::Bits);
}

#[test]
fn data_movement32() {
    run_family(Family::Data);
}

#[test]
fn strings_stack_branches32() {
    run_family(Family::StringStackBranch);
}

/// The BCD instructions and SALC over their whole input space: every AL with every AF/CF
/// combination (and a few AH values and bases where they matter), both backends (the JIT on
/// every third input). Other registers and the other flags are random.
#[test]
fn bcd_exhaustive32() {
    use btvisor_translator::cpu::rflags::{AF, ARITH, CF};
    let mut rng = harness::Rng::new(0xbcd);
    type Inputs = Vec<([u64; 16], u64)>;
    let mut forms: Vec<(Vec<u8>, Inputs)> = vec![];
    let inputs = |rng: &mut harness::Rng, ahs: &[u64]| {
        let mut v = vec![];
        for al in 0..256u64 {
            for &ah in ahs {
                for fl in [0, AF, CF, AF | CF] {
                    let mut g = [0u64; 16];
                    for r in g.iter_mut().take(8) {
                        *r = rng.next() & 0xffff_ffff;
                    }
                    g[4] = native32::BASE + 0x8000;
                    let ah = if ah == 0x100 { rng.next() & 0xff } else { ah };
                    g[0] = (g[0] & !0xffff) | ah << 8 | al;
                    let other = rng.next() & ARITH & !(AF | CF);
                    v.push((
                        g,
                        0x202 | fl | other | if rng.chance(1, 8) { 0x400 } else { 0 },
                    ));
                }
            }
        }
        v
    };
    for op in [0x27u8, 0x2f] {
        forms.push((vec![op], inputs(&mut rng, &[0x100])));
    }
    for op in [0x37u8, 0x3f] {
        forms.push((vec![op], inputs(&mut rng, &[0, 0x09, 0x7f, 0xff, 0x100])));
    }
    for base in [10u8, 16, 1, 7, 0xff, 0] {
        forms.push((vec![0xd4, base], inputs(&mut rng, &[0x100])));
        forms.push((
            vec![0xd5, base],
            inputs(&mut rng, &[0, 0x09, 0x80, 0xff, 0x100]),
        ));
    }
    forms.push((vec![0xd6], inputs(&mut rng, &[0x100])));
    let guard = Native32::lock();
    let mut ctx = Ctx32::new(guard.as_ref().unwrap());
    let start = std::time::Instant::now();
    let (mut total, mut exc, mut failed) = (0, 0, vec![]);
    for backend in backends() {
        for (bytes, ins) in &forms {
            let ins: Vec<_> = if backend == Backend::Jit {
                ins.iter().step_by(3).copied().collect()
            } else {
                ins.clone()
            };
            let r = ctx.run_inputs(backend, bytes, &ins);
            total += r.cases;
            exc += r.de;
            if r.failures > 0 {
                failed.push(format!(
                    "=== {bytes:02x?} [{backend:?}]: {} of {} cases differ\n{}",
                    r.failures,
                    r.cases,
                    r.reports.join("\n")
                ));
            }
        }
    }
    println!(
        "32-bit BCD exhaustive: {} encodings, {total} cases ({exc} #DE checked without native \
         run), {:.2?}",
        forms.len(),
        start.elapsed()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Every Lift-class mnemonic valid in 32-bit mode has a form here, or a stated reason why not;
/// the 32-bit-only ones must all be covered.
#[test]
fn coverage32() {
    let lift = lift_mnemonics_where(|c| c.op_code().mode32());
    let codes = coverage_report("32-bit: ", &all_forms32(), lift, |m| {
        assert!(!legacy_only(m), "32-bit-only mnemonic {m:?} has no form");
        Code::values()
            .filter(|c| c.mnemonic() == m)
            .filter_map(excluded32)
            .next()
            .unwrap_or("?")
    });
    for short in ["Inc_r16", "Inc_r32", "Dec_r16", "Dec_r32"] {
        assert!(codes.contains(short), "{short} has no form");
    }
}
