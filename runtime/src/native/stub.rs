//! The stub: the only code of its own a native-execution child runs (design.md 3.2).
//!
//! Position-independent machine code, copied into the child's window at `layout::STUB_BASE`:
//! - `init` unmaps everything of the forked monitor below and above the window, installs the
//!   seccomp filter the monitor wrote into the control area (asking for a listener descriptor,
//!   which the monitor takes with pidfd_getfd), and raises `int3` to make its first report.
//! - `handler` is the SA_SIGINFO handler of every signal the child takes (guest system calls
//!   arrive as SIGSYS from the filter, faults as SIGSEGV/SIGILL/SIGFPE/SIGTRAP/SIGBUS, the
//!   monitor's preemption kick as SIGUSR2). It copies the siginfo fields, the general registers,
//!   the FS/GS bases and the XSAVE image of the frame into the control area, publishes the exit,
//!   spins then sleeps (futex) until the monitor writes RESUME, runs the monitor's mapping
//!   requests (each validated by the monitor through seccomp user notification), copies the
//!   guest's registers and FPU state back into the frame and returns through `restorer`
//!   (rt_sigreturn) into guest code.
//!
//! The stub never uses the stack beyond what the kernel's signal frame needs, never touches
//! %fs or %gs (they hold the guest's bases), and does not fault on any path the monitor drives
//! (notes/native-exec.md, "Pitfalls").

use super::layout::{self, off, state};

/// Pause iterations the stub spins before sleeping on the futex (about 20-40 us here:
/// notes/native-exec.md, item 3, "both spin 20 us").
pub const CHILD_SPIN: u32 = 2000;

core::arch::global_asm!(
    ".pushsection .text.btvisor_native_stub,\"ax\",@progbits",
    ".balign 64",
    ".globl btvisor_native_stub_start",
    "btvisor_native_stub_start:",
    // ---------------------------------------------------------------- handler(sig, info, uc)
    ".globl btvisor_native_stub_handler",
    "btvisor_native_stub_handler:",
    "lea btvisor_native_stub_start(%rip), %r15",
    "lea {ctrl}(%r15), %r14",
    "mov %rdx, %rbp",
    "cld",
    "mov %edi, {signo}(%r14)",
    "mov 8(%rsi), %eax",
    "mov %eax, {si_code}(%r14)",
    "mov 16(%rsi), %rax",
    "mov %rax, {si_addr}(%r14)",
    "mov 24(%rsi), %eax",
    "mov %eax, {si_syscall}(%r14)",
    "mov 28(%rsi), %eax",
    "mov %eax, {si_arch}(%r14)",
    "rdfsbase %rax",
    "mov %rax, {fs_base}(%r14)",
    "rdgsbase %rax",
    "mov %rax, {gs_base}(%r14)",
    // uc_mcontext.gregs (ucontext offset 40, 23 quadwords) to the control area
    "lea 40(%rbp), %rsi",
    "lea {gregs}(%r14), %rdi",
    "mov $23, %ecx",
    "rep movsq",
    // the XSAVE image: fx_sw_bytes (offset 464) says its size when magic1 is FP_XSTATE_MAGIC1
    "xor %ebx, %ebx",
    "mov 224(%rbp), %rsi",
    "test %rsi, %rsi",
    "jz 2f",
    "mov $512, %ebx",
    "cmpl $0x46505853, 464(%rsi)",
    "jne 1f",
    "mov 480(%rsi), %ebx",
    "1:",
    "cmp ${fp_max}, %ebx",
    "jbe 1f",
    "mov ${fp_max}, %ebx",
    "1:",
    "mov %ebx, %ecx",
    "lea {fpstate}(%r14), %rdi",
    "rep movsb",
    "2:",
    "mov %ebx, {fp_size}(%r14)",
    // publish the exit; wake the monitor if it sleeps
    "mov ${exited}, %eax",
    "xchg %eax, {state}(%r14)",
    "cmpl $0, {monitor_waiting}(%r14)",
    "je 3f",
    "mov $202, %eax",
    "lea {state}(%r14), %rdi",
    "mov $1, %esi",
    "mov $1, %edx",
    "syscall",
    // wait for RESUME: spin, then sleep
    "3:",
    "mov ${spin}, %ecx",
    "4:",
    "mov {state}(%r14), %edx",
    "cmp ${resume}, %edx",
    "je 6f",
    "cmp ${park}, %edx",
    "je 5f",
    "pause",
    "dec %ecx",
    "jnz 4b",
    // sleep while the state stays what it is now (EXITED, or PARKED: the monitor runs another
    // address space, whose child needs this CPU)
    "5:",
    "mov $1, %eax",
    "xchg %eax, {child_waiting}(%r14)",
    "cmp {state}(%r14), %edx",
    "jne 3b",
    "mov $202, %eax",
    "lea {state}(%r14), %rdi",
    "xor %esi, %esi",
    "xor %r10d, %r10d",
    "syscall",
    "jmp 3b",
    "6:",
    "movl $0, {child_waiting}(%r14)",
    // the monitor's mapping requests
    "mov {nops}(%r14), %r12d",
    "cmp ${max_ops}, %r12d",
    "jbe 7f",
    "mov ${max_ops}, %r12d",
    "7:",
    "lea {ops}(%r14), %r13",
    "8:",
    "test %r12d, %r12d",
    "jz 9f",
    "mov 0(%r13), %rax",
    "mov 8(%r13), %rdi",
    "mov 16(%r13), %rsi",
    "mov 24(%r13), %rdx",
    "mov 32(%r13), %r10",
    "mov 40(%r13), %r8",
    "mov 48(%r13), %r9",
    "syscall",
    "mov %rax, 56(%r13)",
    "add $64, %r13",
    "dec %r12d",
    "jmp 8b",
    "9:",
    // the guest's registers and FPU state back into the frame
    "lea {gregs}(%r14), %rsi",
    "lea 40(%rbp), %rdi",
    "mov $23, %ecx",
    "rep movsq",
    "mov 224(%rbp), %rdi",
    "test %rdi, %rdi",
    "jz 10f",
    "mov %ebx, %ecx",
    "lea {fpstate}(%r14), %rsi",
    "rep movsb",
    "10:",
    "movq $0, 296(%rbp)",
    "mov {fs_base}(%r14), %rax",
    "wrfsbase %rax",
    "mov {gs_base}(%r14), %rax",
    "wrgsbase %rax",
    "movl ${running}, {state}(%r14)",
    "ret",
    // ---------------------------------------------------------------- restorer
    ".globl btvisor_native_stub_restorer",
    "btvisor_native_stub_restorer:",
    "mov $15, %eax",
    "syscall",
    "hlt",
    // ---------------------------------------------------------------- init
    ".globl btvisor_native_stub_init",
    "btvisor_native_stub_init:",
    "lea btvisor_native_stub_start(%rip), %r15",
    "lea {ctrl}(%r15), %r14",
    "mov $11, %eax",
    "xor %edi, %edi",
    "mov %r15, %rsi",
    "syscall",
    "mov $11, %eax",
    "lea {span}(%r15), %rdi",
    "movabs ${host_top}, %rsi",
    "sub %rdi, %rsi",
    "syscall",
    "mov $317, %eax",
    "mov $1, %edi",
    "mov $8, %esi",
    "lea {prog}(%r14), %rdx",
    "syscall",
    "mov %eax, {listener_fd}(%r14)",
    "int3",
    "hlt",
    ".globl btvisor_native_stub_end",
    "btvisor_native_stub_end:",
    ".popsection",
    ctrl = const layout::CTRL_OFFSET,
    span = const layout::STUB_SPAN,
    host_top = const layout::HOST_MAP_TOP,
    signo = const off::SIGNO,
    si_code = const off::SI_CODE,
    si_addr = const off::SI_ADDR,
    si_syscall = const off::SI_SYSCALL,
    si_arch = const off::SI_ARCH,
    fs_base = const off::FS_BASE,
    gs_base = const off::GS_BASE,
    gregs = const off::GREGS,
    fp_max = const layout::FP_MAX,
    fpstate = const off::FPSTATE,
    fp_size = const off::FP_SIZE,
    state = const off::STATE,
    monitor_waiting = const off::MONITOR_WAITING,
    child_waiting = const off::CHILD_WAITING,
    nops = const off::NOPS,
    ops = const off::OPS,
    max_ops = const layout::MAX_OPS,
    prog = const off::PROG,
    listener_fd = const off::LISTENER_FD,
    exited = const state::EXITED,
    resume = const state::RESUME,
    running = const state::RUNNING,
    park = const state::PARKED,
    spin = const CHILD_SPIN,
    options(att_syntax)
);

extern "C" {
    static btvisor_native_stub_start: u8;
    static btvisor_native_stub_handler: u8;
    static btvisor_native_stub_restorer: u8;
    static btvisor_native_stub_init: u8;
    static btvisor_native_stub_end: u8;
}

/// The stub's code and its entry points as offsets from its start.
pub struct StubCode {
    pub bytes: &'static [u8],
    pub handler: u64,
    pub restorer: u64,
    pub init: u64,
}

pub fn code() -> StubCode {
    // SAFETY: the symbols delimit one contiguous block of the text section (global_asm above);
    // reading code bytes is reading initialised, immutable memory.
    unsafe {
        let start = &raw const btvisor_native_stub_start as usize;
        let end = &raw const btvisor_native_stub_end as usize;
        let at = |p: *const u8| (p as usize - start) as u64;
        let bytes = std::slice::from_raw_parts(start as *const u8, end - start);
        assert!(
            bytes.len() as u64 <= layout::CODE_SIZE,
            "stub code outgrew CODE_SIZE"
        );
        StubCode {
            bytes,
            handler: at(&raw const btvisor_native_stub_handler),
            restorer: at(&raw const btvisor_native_stub_restorer),
            init: at(&raw const btvisor_native_stub_init),
        }
    }
}

/// The range of child instruction pointers that are the stub's own code: the seccomp filter
/// lets only system calls from here through (or to the monitor), every other one traps.
pub fn code_range() -> (u64, u64) {
    (layout::STUB_BASE, layout::STUB_BASE + layout::CODE_SIZE)
}
