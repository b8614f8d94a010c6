#!/usr/bin/env bash
# Assemble one guest test kernel into a multiboot ELF32 image.
#   tests/guests/build.sh tests/guests/NAME.S OUT.elf
# A source whose first lines contain "# bits: 64" is assembled as x86-64 (its entry is still
# .code32: multiboot enters in 32-bit protected mode) and converted to elf32-i386, as
# kvm-unit-tests does, because multiboot loaders take ELF32 only.
set -euo pipefail
src=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if head -n 5 "$src" | grep -q '^# bits: 64'; then
    as --64 -I "$here/lib" -I "$here" -o "$tmp/k.o" "$src"
    ld -m elf_x86_64 -nostdlib -z max-page-size=0x1000 --no-warn-rwx-segments -T "$here/lib/link32.ld" -o "$tmp/k64.elf" "$tmp/k.o"
    objcopy -O elf32-i386 "$tmp/k64.elf" "$out"
else
    as --32 -I "$here/lib" -I "$here" -o "$tmp/k.o" "$src"
    ld -m elf_i386 -nostdlib -z max-page-size=0x1000 --no-warn-rwx-segments -T "$here/lib/link32.ld" -o "$out" "$tmp/k.o"
fi
