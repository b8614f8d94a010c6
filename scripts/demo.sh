#!/usr/bin/env bash
# The README's main command: build btvisor, fetch Debian's cloud kernel and busybox (cached in
# ~/.cache/btvisor by scripts/fetch-guest.sh), build the initramfs and boot it to a shell on
# this terminal. Ctrl-A x quits; `poweroff -f` in the guest ends btvisor with status 0.
#   scripts/demo.sh [btvisor run options...]        e.g. --stats, --mem 1G, --trace traps
#   scripts/demo.sh --test-kernel [KERNEL.S|.elf]   one of btvisor's own test kernels instead
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
    echo "demo.sh: cargo (a Rust toolchain) is required" >&2
    exit 1
fi
cargo build --release --quiet

if [ "${1:-}" = --test-kernel ]; then
    shift
    if ! command -v as >/dev/null || ! command -v ld >/dev/null || ! command -v objcopy >/dev/null; then
        if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq binutils; else sudo apt-get install -y binutils; fi
    fi
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
    target/release/btvisor run --kernel "$elf" "$@"
    exit
fi

guest=$(scripts/fetch-guest.sh)
kernel=$(sed -n 's/^kernel=//p' <<<"$guest")
initrd=$(sed -n 's/^initrd=//p' <<<"$guest")
echo "demo.sh: booting $(basename "$kernel") with a busybox initramfs (Ctrl-A x quits)" >&2
exec target/release/btvisor run --kernel "$kernel" --initrd "$initrd" \
    --append "console=ttyS0" --mem 512M "$@"
