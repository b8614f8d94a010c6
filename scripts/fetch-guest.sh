#!/usr/bin/env bash
# Fetches the Debian guest that the Linux-boot tests and demos run: Debian's stock cloud kernel
# and a busybox initramfs with a shell and a static test program, all cached.
#   scripts/fetch-guest.sh                  fetch/build what is missing, then print the paths
#   eval "$(scripts/fetch-guest.sh)"        sets $kernel and $initrd
#   scripts/fetch-guest.sh --help           this text
# There are no other options: every run is "fetch and build what is missing, then print".
#
# Contract:
# - stdout: exactly two lines, and nothing else:
#       kernel=<absolute path of the vmlinuz (bzImage) of linux-image-<ver>-cloud-amd64>
#       initrd=<absolute path of initrd.cpio.gz (cpio newc, gzip -9)>
#   All progress and errors go to stderr. Exit status non-zero on any failure.
# - Idempotent: a second run with everything cached does no network access and no build; it
#   resolves the package versions with apt-cache (local) and prints the same two lines.
#   Concurrent runs serialize on a lock in the cache directory.
# - Environment:
#       BTVISOR_CACHE          cache directory (default: $HOME/.cache/btvisor)
#       BTVISOR_KERNEL_PACKAGE kernel metapackage (default: linux-image-cloud-amd64)
# - apt: runs `apt-get update` only when the package lists are empty or cannot resolve a package
#   (or a download fails on stale lists); installs cpio, gcc and libc6-dev when missing. Both as
#   root, or through sudo otherwise (as scripts/test.sh). If the versions cannot be resolved at
#   all (offline), the last versions fetched into the cache are used, with a warning.
#
# Cache layout ($BTVISOR_CACHE):
#   deb/<package>_<version>_amd64.deb     the downloaded packages (':' of an epoch as '%3a')
#   pkg/<package>_<version>/              each package unpacked with dpkg-deb -x;
#                                         the kernel is pkg/linux-image-*/boot/vmlinuz-<kver>
#   initrd-<hash>/initrd.cpio.gz          the initramfs; <hash> covers this script, forkexec.c,
#                                         the busybox version and the compiler/libc versions, so
#                                         a change to any of them builds a new one
#   last-packages                         the versions last resolved (offline fallback)
#   .lock                                 flock(1) lock held while a run fetches or builds
#
# The guest (initramfs):
#   /init              busybox sh script: mounts proc, sysfs, devtmpfs, devpts, tmpfs on /tmp,
#                      prints "btvisor guest: init started (<uname -r>)" on the console, runs
#                      `setsid cttyhack sh -l` (a login shell with job control on the console),
#                      and when that shell exits prints "btvisor guest: shell exited, powering
#                      off" and runs `poweroff -f` (init never returns: the kernel would panic).
#   prompt             the shell's prompt is exactly "btvisor# " (set in /etc/profile; fixed,
#                      not the working directory, so a test can wait for it). Busybox's line
#                      editor follows each prompt with the cursor-position query ESC [ 6 n
#                      (a terminal answers it; without an answer it does no harm), and echoes
#                      the typed command, wrapping it at 80 columns. Before the first prompt
#                      the shell prints "BusyBox v1.35.0 (Debian ...) built-in shell (ash)".
#   /bin/busybox       busybox-static, with every applet linked (from `busybox --list-full`).
#   /bin/forkexec      tests/guest-programs/forkexec.c (gcc -O2 -static): prints exactly
#                      "forkexec: ok" (exit 0) or "forkexec: FAIL <what>" (exit 1).
#   /dev/console comes from the kernel's built-in initramfs (usr/default_cpio_list), which the
#   kernel unpacks before this one; nothing here needs a device node, so no root is needed to
#   build the archive. Boot with e.g. --append "console=ttyS0 panic=-1".
#
# To clean: rm -rf "${BTVISOR_CACHE:-$HOME/.cache/btvisor}".
set -euo pipefail

# stdout carries only the two result lines: everything else goes to stderr.
exec 3>&1 1>&2

root=$(cd "$(dirname "$0")/.." && pwd)
script="$root/scripts/$(basename "$0")"
forkexec_src="$root/tests/guest-programs/forkexec.c"
cache=${BTVISOR_CACHE:-$HOME/.cache/btvisor}
kernel_meta=${BTVISOR_KERNEL_PACKAGE:-linux-image-cloud-amd64}
start=$SECONDS

log() { echo "fetch-guest: $*" >&2; }
die() { log "error: $*"; exit 1; }
need() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

case "${1:-}" in
    "") ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&3; exit 0 ;;
    *) die "unknown argument '$1' (the script takes none; see --help)" ;;
esac
[ "$(uname -m)" = x86_64 ] || die "needs an x86-64 host (it runs the guest's busybox to list its applets)"
need apt-get && need apt-cache && need dpkg-deb || die "needs a Debian host (apt-get, apt-cache, dpkg-deb)"
[ -f "$forkexec_src" ] || die "missing $forkexec_src"

# --- tools -----------------------------------------------------------------------------------

apt_updated=0
apt_update() {
    [ "$apt_updated" = 1 ] && return 1
    apt_updated=1
    log "running apt-get update"
    as_root apt-get update -qq
}

# The package lists (/var/lib/apt/lists unless apt is configured otherwise) hold no Packages file.
lists_empty() {
    local lists=/var/lib/apt/lists/
    eval "$(apt-config shell lists Dir::State::Lists/d 2>/dev/null)" || true
    ! compgen -G "${lists%/}/*_Packages*" >/dev/null
}

install_missing() {
    local pkgs=()
    local libc_a
    need cpio || pkgs+=(cpio)
    need gcc || pkgs+=(gcc)
    # glibc's static libc, for gcc -static (gcc prints the bare name when it has none).
    libc_a=$(gcc -print-file-name=libc.a 2>/dev/null || true)
    [ "$libc_a" != libc.a ] && [ -f "$libc_a" ] || pkgs+=(libc6-dev)
    [ ${#pkgs[@]} = 0 ] && return
    log "installing ${pkgs[*]}"
    if lists_empty; then apt_update; fi
    as_root apt-get install -y -qq "${pkgs[@]}" >/dev/null
}

# --- packages --------------------------------------------------------------------------------

# candidate_version PKG POLICY: PKG's version that apt would install, from `apt-cache policy`
# output for one or more packages, or nothing.
candidate_version() {
    awk -v pkg="$1:" '/^[^ ]/ { cur = $1 } cur == pkg && $1 == "Candidate:" && $2 != "(none)" { print $2; exit }' <<<"$2"
}

# resolve: sets kernel_pkg, kernel_ver, busybox_ver from the apt package lists (two apt-cache
# calls: each reads all the lists, which takes a good fraction of a second).
resolve() {
    local policy
    kernel_pkg=$(apt-cache depends "$kernel_meta" 2>/dev/null \
        | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
    [ -n "$kernel_pkg" ] || return 1
    policy=$(apt-cache policy "$kernel_pkg" busybox-static 2>/dev/null) || return 1
    kernel_ver=$(candidate_version "$kernel_pkg" "$policy")
    busybox_ver=$(candidate_version busybox-static "$policy")
    [ -n "$kernel_ver" ] && [ -n "$busybox_ver" ]
}

# fsname VERSION: a version as it appears in file names (an epoch's ':' as apt writes it).
fsname() { echo "${1//:/%3a}"; }

# fetch PKG VERSION: ensures pkg/PKG_VERSION/ holds the unpacked package; prints its path.
# Runs in a command substitution under `if`, where set -e does not apply: checks each step.
fetch() {
    local pkg=$1 ver=$2 dir deb tmp
    dir="$cache/pkg/${pkg}_$(fsname "$ver")"
    deb="$cache/deb/${pkg}_$(fsname "$ver")_amd64.deb"
    if [ -d "$dir" ]; then echo "$dir"; return; fi
    if [ ! -f "$deb" ]; then
        log "downloading $pkg=$ver"
        tmp=$(mktemp -d "$cache/deb/.download.XXXXXX")
        # apt-get download writes to the working directory. As root, apt drops to the _apt user
        # for the download, who cannot write to a private cache; download as root instead.
        if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >/dev/null); then
            rm -rf "$tmp"
            return 1
        fi
        local got=("$tmp"/*.deb)
        [ ${#got[@]} = 1 ] && [ -f "${got[0]}" ] || { rm -rf "$tmp"; die "apt-get download $pkg=$ver left no single .deb"; }
        mv "${got[0]}" "$deb" && rmdir "$tmp" || return 1
    fi
    log "unpacking $(basename "$deb")"
    tmp=$(mktemp -d "$cache/pkg/.unpack.XXXXXX")
    dpkg-deb -x "$deb" "$tmp" || { rm -rf "$tmp"; die "dpkg-deb -x $deb failed"; }
    chmod 755 "$tmp" && mv "$tmp" "$dir" || return 1
    echo "$dir"
}

# remember: records the versions in the cache, for a later run that cannot resolve them.
remember() {
    printf 'kernel_meta=%s\nkernel_pkg=%q\nkernel_ver=%q\nbusybox_ver=%q\n' \
        "$kernel_meta" "$kernel_pkg" "$kernel_ver" "$busybox_ver" >"$cache/last-packages"
}

mkdir -p "$cache/deb" "$cache/pkg"
cache=$(cd "$cache" && pwd)
exec 9>"$cache/.lock"
if ! flock -n 9; then
    log "waiting for another fetch-guest.sh run (lock $cache/.lock)"
    flock 9
fi

if lists_empty || ! resolve; then
    if apt_update && resolve; then
        :
    elif [ -f "$cache/last-packages" ] && grep -qxF "kernel_meta=$kernel_meta" "$cache/last-packages"; then
        # shellcheck source=/dev/null
        . "$cache/last-packages"
        log "warning: apt cannot resolve $kernel_meta/busybox-static; using the cached $kernel_pkg=$kernel_ver, busybox-static=$busybox_ver"
    else
        die "apt cannot resolve $kernel_meta and busybox-static (is a Debian amd64 'main' source configured?)"
    fi
fi

# A download can fail on stale lists (the mirror moved on): update once and resolve again.
if ! kernel_dir=$(fetch "$kernel_pkg" "$kernel_ver") || ! busybox_dir=$(fetch busybox-static "$busybox_ver"); then
    apt_update || die "downloading $kernel_pkg=$kernel_ver or busybox-static=$busybox_ver failed"
    resolve || die "apt cannot resolve $kernel_meta and busybox-static after apt-get update"
    kernel_dir=$(fetch "$kernel_pkg" "$kernel_ver") || die "apt-get download $kernel_pkg=$kernel_ver failed"
    busybox_dir=$(fetch busybox-static "$busybox_ver") || die "apt-get download busybox-static=$busybox_ver failed"
fi
remember

kernel_release=${kernel_pkg#linux-image-}
kernel="$kernel_dir/boot/vmlinuz-$kernel_release"
[ -f "$kernel" ] || die "$kernel_pkg has no boot/vmlinuz-$kernel_release (in $kernel_dir)"
busybox="$busybox_dir/bin/busybox"
[ -x "$busybox" ] || die "busybox-static has no bin/busybox (in $busybox_dir)"

# --- initramfs -------------------------------------------------------------------------------

install_missing

inputs_hash=$(
    {
        sha256sum "$script" "$forkexec_src" | cut -d' ' -f1
        echo "busybox-static=$busybox_ver"
        echo "$kernel_pkg=$kernel_ver"
        gcc --version | head -n1
        dpkg-query -W -f='libc6-dev=${Version}\n' libc6-dev 2>/dev/null || true
    } | sha256sum | cut -c1-16
)
initrd_dir="$cache/initrd-$inputs_hash"
initrd="$initrd_dir/initrd.cpio.gz"

write_init() {
    cat >"$1" <<'EOF'
#!/bin/sh
# btvisor guest init, generated by btvisor's scripts/fetch-guest.sh.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
hostname btvisor
cd /root
# pvpanic reports a kernel panic to the VMM (btvisor exits with an error, QEMU stops).
for m in pvpanic pvpanic-mmio; do
    insmod /lib/modules/$m.ko || echo "btvisor guest: cannot load $m"
done
echo "btvisor guest: init started ($(uname -r))"
# cttyhack reopens the real console (ttyS0, ...) so that it becomes the controlling terminal
# of the shell's new session: job control and ^C work. Not exec'd: init must not return.
setsid cttyhack sh -l
echo "btvisor guest: shell exited, powering off"
poweroff -f
while :; do sleep 3600; done
EOF
    chmod 755 "$1"
}

build_initrd() {
    local tmp stage applet
    tmp=$(mktemp -d "$cache/.initrd.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    stage="$tmp/root"
    mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,root,etc,run}
    chmod 1777 "$stage/tmp"
    chmod 700 "$stage/root"

    install -m 755 "$busybox" "$stage/bin/busybox"
    "$busybox" --list-full >"$tmp/applets" || die "$busybox --list-full failed"
    while read -r applet; do
        [ -n "$applet" ] && [ "$applet" != bin/busybox ] || continue
        mkdir -p "$stage/$(dirname "$applet")"
        ln -sf /bin/busybox "$stage/$applet"
    done <"$tmp/applets"
    for applet in sh setsid cttyhack mount poweroff true; do
        [ -L "$stage/bin/$applet" ] || [ -L "$stage/sbin/$applet" ] || [ -L "$stage/usr/bin/$applet" ] \
            || die "busybox-static $busybox_ver has no '$applet' applet"
    done

    log "compiling $(basename "$forkexec_src") (gcc -O2 -static)"
    gcc -O2 -static -Wall -Wextra -Werror -o "$stage/bin/forkexec" "$forkexec_src"

    # The kernel modules init loads (the cloud kernel builds pvpanic as modules).
    mkdir -p "$stage/lib/modules"
    for m in pvpanic pvpanic-mmio; do
        install -m 644 "$kernel_dir/lib/modules/$kernel_release/kernel/drivers/misc/pvpanic/$m.ko" \
            "$stage/lib/modules/$m.ko" || die "$kernel_pkg has no $m.ko"
    done

    write_init "$stage/init"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$stage/etc/passwd"
    printf 'root:x:0:\n' >"$stage/etc/group"
    printf 'btvisor\n' >"$stage/etc/hostname"
    cat >"$stage/etc/profile" <<'EOF'
export PATH=/sbin:/usr/sbin:/bin:/usr/bin HOME=/root
# The prompt tests wait for: fixed, whatever the working directory.
PS1='btvisor# '
EOF

    # Reproducible archive: fixed timestamps, sorted names, root-owned whoever builds it.
    find "$stage" -exec touch -h -d @0 {} +
    (cd "$stage" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) \
        | gzip -9 -n >"$tmp/initrd.cpio.gz"
    mkdir -p "$tmp/out"
    mv "$tmp/initrd.cpio.gz" "$tmp/out/"
    rm -rf "$initrd_dir"
    mv "$tmp/out" "$initrd_dir"
    rm -rf "$tmp"
    trap - EXIT
}

if [ ! -f "$initrd" ]; then
    log "building initramfs (busybox-static $busybox_ver)"
    build_initrd
    log "built $initrd ($(du -k "$initrd" | cut -f1) KiB)"
fi

log "ready in $((SECONDS - start)) s: $kernel_pkg $kernel_ver, busybox-static $busybox_ver"
printf 'kernel=%s\ninitrd=%s\n' "$kernel" "$initrd" >&3
