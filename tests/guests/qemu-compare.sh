#!/usr/bin/env bash
# Developer script (not run in CI): build every tests/guests/*.S (or the ones named on the
# command line), run each under QEMU TCG (the oracle) or under btvisor, and compare the serial
# output with NAME.expected and the exit status with the "# expect-exit: N" line.
#   tests/guests/qemu-compare.sh [--vmm PATH] [--keep DIR] [NAME.S ...]
# --vmm PATH runs "PATH run --kernel OUT.elf" instead of QEMU.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vmm= keep=
while [ $# -gt 0 ]; do
    case $1 in
        --vmm) vmm=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        -h|--help) sed -n 2,6p "$0"; exit 0 ;;
        *) break ;;
    esac
done
if [ $# -gt 0 ]; then srcs=("$@"); else srcs=("$here"/*.S); fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
for src in "${srcs[@]}"; do
    name=$(basename "$src" .S)
    dir=$(dirname "$src")
    elf=$tmp/$name.elf
    want_exit=$(head -n 10 "$src" | sed -n 's/^# expect-exit: *\([0-9]*\).*/\1/p' | head -n 1)
    if [ -z "$want_exit" ] || [ ! -f "$dir/$name.expected" ]; then
        echo "FAIL $name (no '# expect-exit' line or no $name.expected)"; fail=$((fail + 1)); continue
    fi
    if ! "$here/build.sh" "$src" "$elf" 2>"$tmp/$name.build"; then
        echo "FAIL $name (build)"; sed 's/^/    /' "$tmp/$name.build"; fail=$((fail + 1)); continue
    fi
    if [ -n "$vmm" ]; then
        timeout 20 "$vmm" run --kernel "$elf" >"$tmp/$name.out" 2>"$tmp/$name.err" </dev/null
    else
        timeout 20 qemu-system-x86_64 -accel tcg -cpu max -m 128 -display none -serial stdio \
            -device isa-debug-exit,iobase=0xf4,iosize=0x04 -no-reboot -kernel "$elf" \
            >"$tmp/$name.out" 2>"$tmp/$name.err" </dev/null
    fi
    got_exit=$?
    [ -n "$keep" ] && { mkdir -p "$keep"; cp "$elf" "$tmp/$name.out" "$keep/"; }
    if [ "$got_exit" = "$want_exit" ] && cmp -s "$tmp/$name.out" "$dir/$name.expected"; then
        echo "PASS $name"; pass=$((pass + 1))
    else
        echo "FAIL $name (exit $got_exit, expected $want_exit)"
        diff "$dir/$name.expected" "$tmp/$name.out" | head -n 20 | sed 's/^/    /'
        fail=$((fail + 1))
    fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
