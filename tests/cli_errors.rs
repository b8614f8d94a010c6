//! Bad images and bad options get a one-line error and exit status 2, never a panic.

mod common;

use common::*;
use std::time::Duration;

fn run_args(args: &[&str]) -> (Option<i32>, String) {
    let out = btvisor(args, Duration::from_secs(20));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn write_tmp(name: &str, bytes: &[u8]) -> String {
    let p = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&p, bytes).expect("write temp file");
    p.to_string_lossy().to_string()
}

fn assert_clean_error(code: Option<i32>, stderr: &str, needle: &str) {
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not a one-line error: {stderr}"
    );
    assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
}

#[test]
fn missing_kernel_file() {
    let (code, err) = run_args(&["run", "--kernel", "/nonexistent/kernel.elf"]);
    assert_clean_error(code, &err, "cannot read kernel");
}

#[test]
fn not_an_elf() {
    let p = write_tmp("garbage.bin", b"this is not an ELF image at all, just text");
    let (code, err) = run_args(&["run", "--kernel", &p]);
    assert_clean_error(code, &err, "not an ELF");
}

#[test]
fn no_multiboot_header() {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let elf = build_guest("hello");
    let mut bytes = std::fs::read(elf).unwrap();
    // Destroy the magic wherever it is.
    let magic = 0x1BADB002u32.to_le_bytes();
    let pos = bytes
        .windows(4)
        .position(|w| w == magic)
        .expect("hello has a multiboot header");
    bytes[pos] ^= 0xff;
    let p = write_tmp("nomb.elf", &bytes);
    let (code, err) = run_args(&["run", "--kernel", &p]);
    assert_clean_error(code, &err, "no multiboot header");
}

#[test]
fn truncated_image() {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let elf = build_guest("hello");
    let bytes = std::fs::read(elf).unwrap();
    let p = write_tmp("trunc.elf", &bytes[..bytes.len() / 2]);
    let (code, err) = run_args(&["run", "--kernel", &p]);
    assert_eq!(code, Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn segment_outside_ram() {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let elf = build_guest("hello");
    let (code, err) = run_args(&["run", "--kernel", elf.to_str().unwrap(), "--mem", "1K"]);
    assert_eq!(code, Some(2), "{err}");
    // 2 MiB of RAM loads hello at 1 MiB fine; the loader refuses segments past the end.
    let mut bytes = std::fs::read(&elf).unwrap();
    // Move the first program header's physical address to 3 GiB.
    let phoff = u32::from_le_bytes(bytes[0x1c..0x20].try_into().unwrap()) as usize;
    bytes[phoff + 12..phoff + 16].copy_from_slice(&0xC000_0000u32.to_le_bytes());
    let p = write_tmp("far.elf", &bytes);
    let (code, err) = run_args(&["run", "--kernel", &p]);
    assert_clean_error(code, &err, "outside guest RAM");
}

#[test]
fn bad_options() {
    let (code, err) = run_args(&["run", "--kernel", "x", "--mem", "lots"]);
    assert_clean_error(code, &err, "not a size");
    let (code, err) = run_args(&["run", "--kernel", "x", "--trace", "everything"]);
    assert_clean_error(code, &err, "invalid value");
    let (code, err) = run_args(&["frobnicate"]);
    assert_clean_error(code, &err, "unrecognized subcommand");
}

#[test]
fn triple_fault_stops_with_a_register_dump() {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let elf = build_guest("triple32");
    let out = run_kernel(&elf, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("triple fault"), "{err}");
    assert!(
        err.contains("rip=") && err.contains("cr0=") && err.contains("last blocks:"),
        "{err}"
    );
}

/// A bzImage header ("HdrS" at 0x202) with no protected-mode kernel behind it.
fn truncated_bzimage() -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    b[0x1f1] = 4; // setup_sects
    b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    b
}

#[test]
fn truncated_bzimage_is_a_clean_error() {
    let p = write_tmp("truncated.bzimage", &truncated_bzimage());
    let (code, err) = run_args(&["run", "--kernel", &p, "--mem", "64M"]);
    assert_clean_error(code, &err, "not a Linux bzImage or ELF vmlinux");
}

#[test]
fn linux_needs_enough_ram_and_a_short_command_line() {
    let p = write_tmp("small-ram.bzimage", &truncated_bzimage());
    let (code, err) = run_args(&["run", "--kernel", &p, "--mem", "16M"]);
    assert_clean_error(code, &err, "too small for a Linux kernel");
    let long = "x".repeat(3000);
    let (code, err) = run_args(&["run", "--kernel", &p, "--append", &long]);
    assert_clean_error(code, &err, "command line is too long");
}

#[test]
fn initrd_problems_are_clean_errors() {
    let _g = GUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let elf = build_guest("hello");
    let elf = elf.to_str().expect("utf-8 path");
    let (code, err) = run_args(&["run", "--kernel", elf, "--initrd", elf]);
    assert_clean_error(code, &err, "--initrd needs a Linux kernel");
    let p = write_tmp("missing-initrd.bzimage", &truncated_bzimage());
    let (code, err) = run_args(&["run", "--kernel", &p, "--initrd", "/nonexistent/initrd"]);
    assert_clean_error(code, &err, "cannot read initrd");
}
