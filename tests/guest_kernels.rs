//! Every guest test kernel in tests/guests runs under btvisor with the exact serial output
//! (NAME.expected) and exit status (`# expect-exit`) that QEMU and hardware give, twice: with
//! guest user code run natively (the default engine) and translated (`--engine translate`).

mod common;

use common::*;

fn check(name: &str) {
    for engine in ["native", "translate", "adaptive"] {
        check_engine(name, engine);
    }
}

fn check_engine(name: &str, engine: &str) {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let elf = build_guest(name);
    let out = run_kernel(&elf, &["--engine", engine]);
    let expected = std::fs::read_to_string(guests_dir().join(format!("{name}.expected")))
        .expect("read NAME.expected");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout != expected {
        let first = stdout
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b);
        panic!(
            "{name} (--engine {engine}): serial output differs (first differing line {:?})\n--- got ---\n{stdout}\n--- expected ---\n{expected}\n--- stderr ---\n{stderr}",
            first.map(|i| i + 1)
        );
    }
    assert_eq!(
        out.status.code(),
        Some(expected_exit(name)),
        "{name} (--engine {engine}): exit status; stderr:\n{stderr}"
    );
}

macro_rules! guest_tests {
    ($($name:ident),* $(,)?) => {
        $( #[test] fn $name() { check(stringify!($name)); } )*
        /// Every kernel in tests/guests is listed above: none is skipped silently.
        #[test]
        fn every_guest_kernel_is_tested() {
            let listed = [$(stringify!($name)),*];
            for e in std::fs::read_dir(guests_dir()).expect("list tests/guests") {
                let p = e.expect("dir entry").path();
                if p.extension().is_some_and(|x| x == "S") {
                    let n = p.file_stem().unwrap().to_string_lossy().to_string();
                    assert!(listed.contains(&n.as_str()), "tests/guests/{n}.S is not in guest_tests!()");
                }
            }
        }
    };
}

guest_tests!(
    hello, triple32, seg32, alu32, memstr32, paging32, pae32, exc32, sens32, pitirq32, smc32,
    user32, alu64, paging64, exc64, sens64, user64, smc64, sse64, native64, sandbox64, xsave64
);
