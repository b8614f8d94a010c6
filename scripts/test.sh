#!/usr/bin/env bash
# The test command of README.md: installs what the tests need, builds, runs every test.
#   scripts/test.sh            all tests (release-optimised test profile)
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Guest test kernels are assembled at test time with the system assembler and linker.
if ! need as || ! need ld || ! need objcopy; then
    echo "test.sh: installing binutils (as, ld, objcopy)" >&2
    as_root apt-get update -qq
    as_root apt-get install -y -qq binutils
fi
if ! need cargo; then
    echo "test.sh: cargo (a Rust toolchain) is required" >&2
    exit 1
fi

cargo build --release --workspace --all-targets
# One test binary at a time (cargo's default) and the guest tests serialize themselves: the
# machine has two cores and guests with timers must not compete.
cargo test --release --workspace
