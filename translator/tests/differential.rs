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

#[path = "differential/forms.rs"]
mod forms;
#[path = "differential/harness.rs"]
mod harness;
#[path = "differential/native.rs"]
mod native;
#[path = "differential/translated.rs"]
mod translated;

use forms::{all_forms, excluded, is_noop, lift_mnemonics, Form};
use harness::Ctx;
use iced_x86::{Code, Mnemonic};
use translated::{Backend, BACKENDS};

const DEFAULT_CASES: u64 = 400;

fn cases() -> u64 {
    std::env::var("DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

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

fn forms_of(f: Family) -> Vec<Form> {
    let filter = std::env::var("DIFF_FORM").ok();
    all_forms()
        .into_iter()
        .filter(|form| family(form.mnemonic) == f)
        .filter(|form| {
            filter
                .as_ref()
                .map(|s| form.name.contains(s.as_str()))
                .unwrap_or(true)
        })
        .collect()
}

fn run_family(f: Family) {
    let forms = forms_of(f);
    let n = cases();
    let mut ctx = Ctx::new(0);
    let mut total_cases = 0;
    let mut total_de = 0;
    let mut failed = vec![];
    let start = std::time::Instant::now();
    let only = std::env::var("DIFF_BACKEND").ok();
    for &backend in BACKENDS {
        if only
            .as_ref()
            .is_some_and(|b| !format!("{backend:?}").eq_ignore_ascii_case(b))
        {
            continue;
        }
        // Compiling every block costs far more than interpreting it: fewer cases for tier 1.
        let n = if backend == Backend::Jit {
            n.div_ceil(4)
        } else {
            n
        };
        let verbose = std::env::var("DIFF_VERBOSE").is_ok();
        for form in &forms {
            if verbose {
                eprintln!("{}", form.name);
            }
            let r = ctx.run_form(backend, form, n);
            total_cases += r.cases;
            total_de += r.de;
            if r.failures > 0 {
                let mut s = format!(
                    "=== {} [{backend:?}]: {} of {} cases differ\n",
                    form.name, r.failures, r.cases
                );
                for rep in &r.reports {
                    s.push_str(rep);
                    s.push('\n');
                }
                failed.push(s);
            }
        }
    }
    println!(
        "{f:?}: {} forms x {} backend(s), {total_cases} cases ({total_de} #DE cases checked without native run), {:.2?}",
        forms.len(),
        BACKENDS.len(),
        start.elapsed()
    );
    if !failed.is_empty() {
        for s in &failed {
            eprintln!("{s}");
        }
        panic!(
            "{f:?}: {} of {} forms differ from the host CPU",
            failed.len(),
            forms.len()
        );
    }
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
    let forms = all_forms();
    let covered: std::collections::HashSet<Mnemonic> = forms.iter().map(|f| f.mnemonic).collect();
    let mut missing = vec![];
    for m in lift_mnemonics() {
        if covered.contains(&m) {
            continue;
        }
        // The reason: the first code of that mnemonic and why it is excluded.
        let why = Code::values()
            .filter(|c| c.mnemonic() == m)
            .filter_map(excluded)
            .next()
            .unwrap_or(if is_noop(m) {
                "no architectural effect"
            } else {
                "?"
            });
        missing.push(format!("{m:?} ({why})"));
    }
    let codes: std::collections::HashSet<String> = forms
        .iter()
        .map(|f| f.name.split(' ').next().unwrap().to_string())
        .collect();
    println!(
        "{} forms ({} encodings, {} mnemonics); Lift mnemonics not covered: {}",
        forms.len(),
        codes.len(),
        covered.len(),
        missing.join(", ")
    );
    let unexplained: Vec<_> = missing.iter().filter(|s| s.ends_with("(?)")).collect();
    assert!(
        unexplained.is_empty(),
        "Lift mnemonics without forms: {unexplained:?}"
    );
}
