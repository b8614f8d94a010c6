//! Differential tests of the translator against the host CPU (x86-64, the same ISA: the oracle).
//!
//! Every instruction form that classify.rs lifts (enumerated from iced's opcode tables, see
//! `forms.rs`) is run a few hundred times with random operands (biased to edge values), random
//! incoming arithmetic flags and DF, once natively inside a trampoline and once through
//! `scan_block` + the translated-code backend, and the 16 GPRs, the arithmetic flags (minus the
//! ones the SDM leaves undefined), DF, the data memory and the control-flow outcome are compared.
//! Seeds are derived from the form names, so a failure reproduces.
//!
//! Run: `cargo test --release -p btvisor-translator --test differential -- --nocapture` prints the
//! coverage summary. `DIFF_CASES=n` changes the number of cases per form, `DIFF_FORM=substring`
//! restricts the run to matching forms.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

#[allow(dead_code)]
#[path = "differential/common.rs"]
mod common;
#[path = "differential/forms.rs"]
mod forms;
#[path = "differential/harness.rs"]
mod harness;
#[path = "differential/native.rs"]
mod native;
#[path = "differential/translated.rs"]
mod translated;

use forms::{all_forms, excluded, is_noop, lift_mnemonics};
use harness::{coverage_report, run_family_forms, select, Ctx};
use iced_x86::{Code, Mnemonic};

/// The instruction families, one test each (they run in parallel).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Family {
    Alu,
    ShiftMulDiv,
    Bits,
    Data,
    StringStackBranch,
}

fn family(m: Mnemonic) -> Family {
    use Mnemonic::*;
    match m {
        Add | Adc | Sub | Sbb | And | Or | Xor | Cmp | Test | Inc | Dec | Neg | Not | Xadd
        | Cmpxchg | Cmpxchg8b | Cmpxchg16b => Family::Alu,
        Shl | Sal | Shr | Sar | Rol | Ror | Rcl | Rcr | Shld | Shrd | Mul | Imul | Div | Idiv => {
            Family::ShiftMulDiv
        }
        Bt | Bts | Btr | Btc | Bsf | Bsr | Tzcnt | Lzcnt | Popcnt | Bswap | Clc | Stc | Cmc
        | Cld | Std | Lahf | Sahf => Family::Bits,
        _ if harness::is_string(m) => Family::StringStackBranch,
        Push | Pop | Enter | Leave | Call | Ret | Jmp | Loop | Loope | Loopne | Jrcxz | Jecxz => {
            Family::StringStackBranch
        }
        _ if m_is_jcc(m) => Family::StringStackBranch,
        _ => Family::Data,
    }
}

fn m_is_jcc(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Jo | Jno | Jb | Jae | Je | Jne | Jbe | Ja | Js | Jns | Jp | Jnp | Jl | Jge | Jle | Jg
    )
}

fn run_family(f: Family) {
    let forms = select(all_forms(), |form| family(form.mnemonic) == f);
    let mut ctx = Ctx::new(0);
    run_family_forms(
        &format!("{f:?}"),
        "#DE",
        &forms,
        false,
        |backend, form, n| ctx.run_form(backend, form, n),
    );
}

#[test]
fn alu() {
    run_family(Family::Alu);
}

#[test]
fn shifts_mul_div() {
    run_family(Family::ShiftMulDiv);
}

#[test]
fn bits_and_flags() {
    run_family(Family::Bits);
}

#[test]
fn data_movement() {
    run_family(Family::Data);
}

#[test]
fn strings_stack_branches() {
    run_family(Family::StringStackBranch);
}

/// Every Lift-class mnemonic has at least one form here, or a stated reason why not.
#[test]
fn coverage() {
    coverage_report("", &all_forms(), lift_mnemonics(), |m| {
        // The reason: the first code of that mnemonic and why it is excluded.
        Code::values()
            .filter(|c| c.mnemonic() == m)
            .filter_map(excluded)
            .next()
            .unwrap_or(if is_noop(m) {
                "no architectural effect"
            } else {
                "?"
            })
    });
}
