#!/usr/bin/env bash
# The README's main command: build btvisor and boot a guest.
#   scripts/demo.sh [KERNEL.S|KERNEL.elf] [btvisor run options...]
# Today the guests are btvisor's own multiboot test kernels (default: the 64-bit ring-3 kernel,
# which switches to long mode, enters user mode and makes system calls). Booting Debian's
# Linux kernel to a shell is the next milestone (see README.md, "What runs today").
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v as >/dev/null || ! command -v ld >/dev/null || ! command -v objcopy >/dev/null; then
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq binutils; else sudo apt-get install -y binutils; fi
fi
cargo build --release --quiet
kernel=${1:-tests/guests/user64.S}
[ $# -gt 0 ] && shift
case "$kernel" in
    *.S)
        elf=$(mktemp --suffix=.elf)
        trap 'rm -f "$elf"' EXIT
        tests/guests/build.sh "$kernel" "$elf"
        ;;
    *) elf=$kernel ;;
esac
exec target/release/btvisor run --kernel "$elf" "$@"
