//! Where things live in a native-execution child's address space, and the shared control area
//! the monitor and the child's stub talk through (design.md 3.2).
//!
//! The child holds nothing but guest user pages, the stub's code, the control area and the
//! stub's signal stack, all inside one window at [`STUB_BASE`]. Guest user pages go anywhere
//! else below [`USER_TOP`]. A guest address space whose page tables map anything in the
//! 512 GiB slot of the window runs translated instead (`ShadowSpace::collides`), so a guest
//! that maps pages where the stub lives still runs correctly.
//!
//! Everything in the control area is guest-controlled data: guest code can write it (it is
//! mapped in the child) and can jump into the stub. The monitor never takes privilege or mode
//! from it, and validates every address-space system call the stub makes (`seccomp.rs`).

/// Base of the stub window: 16 TiB, a 512 GiB-aligned address Linux processes do not use
/// (executables load near 4 MiB or 0x5555_5555_0000, mmap and stacks sit below 128 TiB).
pub const STUB_BASE: u64 = 0x0000_1000_0000_0000;
/// Bytes of stub code (read and execute).
pub const CODE_SIZE: u64 = 0x2000;
/// Offset of the control area (shared read-write with the monitor).
pub const CTRL_OFFSET: u64 = CODE_SIZE;
pub const CTRL_SIZE: u64 = 0x4000;
/// Offset and size of the stub's signal stack (private to the child).
pub const STACK_OFFSET: u64 = CTRL_OFFSET + CTRL_SIZE;
pub const STACK_SIZE: u64 = 0x10000;
/// The whole window the child keeps.
pub const STUB_SPAN: u64 = 0x20000;
/// One past the highest user address of 4-level paging (and of the host's default user range).
pub const USER_TOP: u64 = 0x0000_8000_0000_0000;
/// The last page the host lets a process map (the top page is never mappable).
pub const HOST_MAP_TOP: u64 = 0x0000_7fff_ffff_f000;
/// The guest's PML4 slot covering the window: guests using it run translated.
pub const STUB_PML4_INDEX: u64 = STUB_BASE >> 39;

/// Values of [`Ctrl::state`], the futex word of the hand-off.
pub mod state {
    /// Guest code runs; the monitor waits.
    pub const RUNNING: u32 = 0;
    /// The stub published an exit report and waits for the monitor.
    pub const EXITED: u32 = 1;
    /// The monitor wrote the guest's state and the fix-ups: the stub applies them and resumes.
    pub const RESUME: u32 = 2;
    /// The monitor went on with another address space: the stub sleeps at once instead of
    /// spinning on the CPU the other child needs.
    pub const PARKED: u32 = 3;
}

/// One system call the stub makes before resuming (mmap, munmap, mprotect).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Op {
    pub nr: u64,
    pub args: [u64; 6],
    /// What the call returned (written by the stub).
    pub result: u64,
}

/// Maximum fix-ups carried by one resume.
pub const MAX_OPS: usize = 64;
/// Maximum BPF instructions of the child's seccomp filter.
pub const MAX_FILTER: usize = 64;
/// Room for the signal frame's XSAVE image.
pub const FP_MAX: usize = 0x2000;

/// The control area, at `STUB_BASE + CTRL_OFFSET` in the child and mapped in the monitor.
/// The stub's assembly reaches the fields through the offsets asserted below.
#[repr(C)]
pub struct Ctrl {
    /// [`state`] value; the futex word.
    pub state: u32,
    /// The monitor sleeps on `state` (the stub wakes it after publishing).
    pub monitor_waiting: u32,
    /// The stub sleeps on `state` (the monitor wakes it after writing RESUME).
    pub child_waiting: u32,
    /// Number of [`Op`]s to run before resuming.
    pub nops: u32,
    /// Exit report: the signal and its siginfo fields.
    pub signo: u32,
    pub si_code: i32,
    /// si_addr (faults) or si_call_addr (SIGSYS).
    pub si_addr: u64,
    /// SIGSYS: the system call number and audit architecture.
    pub si_syscall: u32,
    pub si_arch: u32,
    /// FS and GS bases: read at exit, written back at resume.
    pub fs_base: u64,
    pub gs_base: u64,
    /// Bytes of XSAVE image in `fpstate`.
    pub fp_size: u32,
    /// The seccomp listener descriptor number in the child (written once by the stub's start).
    pub listener_fd: i32,
    /// The signal frame's `uc_mcontext.gregs` (x86-64 order: r8..r15, rdi, rsi, rbp, rbx,
    /// rdx, rax, rcx, rsp, rip, eflags, csgsfs, err, trapno, oldmask, cr2).
    pub gregs: [u64; 23],
    pub _pad0: [u64; 1],
    pub ops: [Op; MAX_OPS],
    /// `struct sock_fprog` for the stub's seccomp() call: length and a pointer into `filter`.
    pub prog_len: u64,
    pub prog_ptr: u64,
    pub _pad1: [u64; 30],
    pub filter: [u64; MAX_FILTER],
    pub _pad2: [u8; 0x2000 - 0x1400],
    /// The signal frame's FPU state (XSAVE layout), `fp_size` bytes.
    pub fpstate: [u8; FP_MAX],
}

pub mod greg {
    pub const R8: usize = 0;
    pub const RDI: usize = 8;
    pub const RSI: usize = 9;
    pub const RBP: usize = 10;
    pub const RBX: usize = 11;
    pub const RDX: usize = 12;
    pub const RAX: usize = 13;
    pub const RCX: usize = 14;
    pub const RSP: usize = 15;
    pub const RIP: usize = 16;
    pub const EFLAGS: usize = 17;
    pub const CSGSFS: usize = 18;
    pub const ERR: usize = 19;
    pub const TRAPNO: usize = 20;
}

/// Offsets the stub's assembly uses (stub.rs `.set` lines must agree).
pub mod off {
    pub const STATE: usize = 0x0;
    pub const MONITOR_WAITING: usize = 0x4;
    pub const CHILD_WAITING: usize = 0x8;
    pub const NOPS: usize = 0xc;
    pub const SIGNO: usize = 0x10;
    pub const SI_CODE: usize = 0x14;
    pub const SI_ADDR: usize = 0x18;
    pub const SI_SYSCALL: usize = 0x20;
    pub const SI_ARCH: usize = 0x24;
    pub const FS_BASE: usize = 0x28;
    pub const GS_BASE: usize = 0x30;
    pub const FP_SIZE: usize = 0x38;
    pub const LISTENER_FD: usize = 0x3c;
    pub const GREGS: usize = 0x40;
    pub const OPS: usize = 0x100;
    pub const PROG: usize = 0x1100;
    pub const FILTER: usize = 0x1200;
    pub const FPSTATE: usize = 0x2000;
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(Ctrl, state) == off::STATE);
    assert!(offset_of!(Ctrl, monitor_waiting) == off::MONITOR_WAITING);
    assert!(offset_of!(Ctrl, child_waiting) == off::CHILD_WAITING);
    assert!(offset_of!(Ctrl, nops) == off::NOPS);
    assert!(offset_of!(Ctrl, signo) == off::SIGNO);
    assert!(offset_of!(Ctrl, si_code) == off::SI_CODE);
    assert!(offset_of!(Ctrl, si_addr) == off::SI_ADDR);
    assert!(offset_of!(Ctrl, si_syscall) == off::SI_SYSCALL);
    assert!(offset_of!(Ctrl, si_arch) == off::SI_ARCH);
    assert!(offset_of!(Ctrl, fs_base) == off::FS_BASE);
    assert!(offset_of!(Ctrl, gs_base) == off::GS_BASE);
    assert!(offset_of!(Ctrl, fp_size) == off::FP_SIZE);
    assert!(offset_of!(Ctrl, listener_fd) == off::LISTENER_FD);
    assert!(offset_of!(Ctrl, gregs) == off::GREGS);
    assert!(offset_of!(Ctrl, ops) == off::OPS);
    assert!(offset_of!(Ctrl, prog_len) == off::PROG);
    assert!(offset_of!(Ctrl, filter) == off::FILTER);
    assert!(offset_of!(Ctrl, fpstate) == off::FPSTATE);
    assert!(size_of::<Op>() == 64);
    assert!(size_of::<Ctrl>() as u64 == CTRL_SIZE);
    assert!(STUB_BASE % (1 << 39) == 0);
};

/// Whether `[addr, addr + len)` touches the stub window.
pub fn in_stub_window(addr: u64, len: u64) -> bool {
    addr < STUB_BASE + STUB_SPAN && addr.saturating_add(len) > STUB_BASE
}
