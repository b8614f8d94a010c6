//! A native-execution child: a forked process that keeps nothing of the monitor but the stub
//! window, runs under the seccomp filter, and hands every exit to the monitor through the
//! control area (design.md 3.2).
//!
//! Between `fork` and the jump into the stub the child runs only raw system calls (no
//! allocation, no locks: the monitor is multi-threaded). The stub then unmaps the rest of the
//! monitor's image, installs the filter and reports once with `int3`; the monitor takes the
//! filter's listener with pidfd_getfd and starts the validator.

use super::layout::{self, state, Ctrl, Op};
use super::seccomp::{self, Validator};
use super::stub;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The descriptor number guest RAM has in every child (the stub's mmap requests use it).
pub const CHILD_RAM_FD: i32 = 3;

/// Signals the stub handles: the filter's SIGSYS, the CPU's faults and the monitor's kick.
pub const HANDLED_SIGNALS: [i32; 7] = [
    libc::SIGSYS,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
    KICK_SIGNAL,
];
/// The monitor's preemption kick.
pub const KICK_SIGNAL: i32 = libc::SIGUSR2;

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("native execution: {0}: {1}")]
    Os(&'static str, io::Error),
    #[error("native execution: the child did not start ({0})")]
    Start(String),
}

fn os(what: &'static str) -> ChildError {
    ChildError::Os(what, io::Error::last_os_error())
}

/// Pin the calling thread to one CPU (best effort: a failure only costs speed).
pub fn pin_current_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed by pointer with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the zeroed set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// What the monitor's wait loop asks of the channel while the child runs.
pub enum WaitStep {
    /// Keep waiting, sleeping at most this long when the spin budget is spent.
    Wait(Duration),
    /// Interrupt the child (SIGUSR2) and keep waiting for its report.
    Kick(Duration),
}

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitEnd {
    Exited,
    /// The child died (a bug in the stub, or a guest that broke its own sandbox).
    Died(String),
    /// No report for this long after a kick: the guest blocked the kick signal.
    Unresponsive,
}

/// How long the monitor spins before it sleeps on the futex (notes/native-exec.md item 3:
/// cross-CPU wake-ups cost 16-20 us each way here, so a short wait must never sleep).
const MONITOR_SPIN: Duration = Duration::from_micros(50);
/// A kicked child that reports nothing for this long has blocked the kick.
const KICK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Child {
    pub pid: i32,
    /// The monitor's mapping of the stub memfd (code, then the control area).
    map: *mut u8,
    map_len: usize,
    /// The stub memfd (code and control area), closed with the child.
    _stub_fd: OwnedFd,
    pub validator: Option<Validator>,
    /// The XSAVE image of the child's first report: the template of every guest FPU image.
    pub fp_template: Vec<u8>,
    /// The host PMU's count of the child's user-mode instructions, where the host has one.
    pub insns: Option<super::counter::InsnCounter>,
    reaped: bool,
}

// SAFETY: the raw mapping is owned by the Child and only used through &self/&mut self.
unsafe impl Send for Child {}

impl Child {
    pub fn ctrl_ptr(&self) -> *mut Ctrl {
        // SAFETY: the mapping covers CODE_SIZE + CTRL_SIZE bytes.
        unsafe { self.map.add(layout::CTRL_OFFSET as usize) as *mut Ctrl }
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        // SAFETY: `off` is a 4-byte aligned field of the control area, which lives as long as
        // `self`; AtomicU32 has u32's layout.
        unsafe { &*(self.map.add(layout::CTRL_OFFSET as usize + off) as *const AtomicU32) }
    }

    pub fn state(&self) -> &AtomicU32 {
        self.word(layout::off::STATE)
    }

    /// Fork and start a child; `ram_fd` is guest RAM, `cpu` the CPU to pin it (and its
    /// validator) to.
    pub fn spawn(ram_fd: i32, cpu: Option<usize>) -> Result<Child, ChildError> {
        let code = stub::code();
        let map_len = (layout::CODE_SIZE + layout::CTRL_SIZE) as usize;
        // SAFETY: plain system calls; results are checked, the mapping is owned by Child.
        let (stub_fd, map) = unsafe {
            let fd = libc::memfd_create(c"btvisor-stub".as_ptr(), libc::MFD_CLOEXEC);
            if fd < 0 {
                return Err(os("memfd_create"));
            }
            let fd = OwnedFd::from_raw_fd(fd);
            if libc::ftruncate(std::os::fd::AsRawFd::as_raw_fd(&fd), map_len as i64) != 0 {
                return Err(os("ftruncate"));
            }
            let p = libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                0,
            );
            if p == libc::MAP_FAILED {
                return Err(os("mmap of the stub"));
            }
            (fd, p as *mut u8)
        };
        // SAFETY: the mapping is map_len bytes; the code fits CODE_SIZE (stub::code asserts).
        unsafe {
            std::ptr::copy_nonoverlapping(code.bytes.as_ptr(), map, code.bytes.len());
            let ctrl = &mut *(map.add(layout::CTRL_OFFSET as usize) as *mut Ctrl);
            let futex_word = layout::STUB_BASE + layout::CTRL_OFFSET + layout::off::STATE as u64;
            let f = seccomp::filter(stub::code_range(), futex_word);
            ctrl.filter[..f.len()].copy_from_slice(&f);
            ctrl.prog_len = f.len() as u64;
            ctrl.prog_ptr = layout::STUB_BASE + layout::CTRL_OFFSET + layout::off::FILTER as u64;
            ctrl.listener_fd = -1;
            ctrl.state = state::RUNNING;
        }
        let stub_raw = std::os::fd::AsRawFd::as_raw_fd(&stub_fd);
        let setup = ChildSetup::new(ram_fd, stub_raw, cpu, &code);
        // SAFETY: fork duplicates only this thread; the child runs `setup.run`, which makes
        // raw system calls only and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            // SAFETY: unmapping our own mapping.
            unsafe { libc::munmap(map as *mut _, map_len) };
            return Err(os("fork"));
        }
        if pid == 0 {
            // SAFETY: see above; in the child.
            unsafe { setup.run() }
        }
        let mut child = Child {
            pid,
            map,
            map_len,
            _stub_fd: stub_fd,
            validator: None,
            fp_template: Vec::new(),
            insns: None,
            reaped: false,
        };
        child.finish_start(cpu)?;
        Ok(child)
    }

    fn finish_start(&mut self, cpu: Option<usize>) -> Result<(), ChildError> {
        // The first report is the stub's int3 after installing the filter.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.state().load(Ordering::Acquire) != state::EXITED {
            if let Some(why) = self.died() {
                return Err(ChildError::Start(why));
            }
            if Instant::now() > deadline {
                return Err(ChildError::Start("no report within 5 s".into()));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // SAFETY: the stub published its report (state EXITED, read with Acquire).
        let (fd_num, signo, fp) = unsafe {
            let c = &*self.ctrl_ptr();
            (
                c.listener_fd,
                c.signo,
                c.fpstate[..(c.fp_size as usize).min(layout::FP_MAX)].to_vec(),
            )
        };
        if signo != libc::SIGTRAP as u32 || fd_num < 0 {
            return Err(ChildError::Start(format!(
                "seccomp with a user-notification listener failed in the child (signal {signo}, result {fd_num}); native execution needs Linux 5.9 or later"
            )));
        }
        if fp.len() < 576 {
            return Err(ChildError::Start(format!(
                "the child's signal frame has no XSAVE image ({} bytes)",
                fp.len()
            )));
        }
        self.fp_template = fp;
        // SAFETY: pidfd_open/pidfd_getfd on our own child; results checked.
        let listener = unsafe {
            let pidfd = libc::syscall(libc::SYS_pidfd_open, self.pid, 0) as i32;
            if pidfd < 0 {
                return Err(os("pidfd_open"));
            }
            let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd_num, 0) as i32;
            libc::close(pidfd);
            if fd < 0 {
                return Err(os("pidfd_getfd of the seccomp listener"));
            }
            OwnedFd::from_raw_fd(fd)
        };
        self.validator = Some(
            Validator::start(listener, self.pid, cpu)
                .map_err(|e| ChildError::Os("validator thread", e))?,
        );
        Ok(())
    }

    /// The child's exit status if it died (reaps it).
    pub fn died(&mut self) -> Option<String> {
        if self.reaped {
            return Some("already reaped".into());
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child, non-blocking.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if r == self.pid {
            self.reaped = true;
            return Some(if libc::WIFSIGNALED(status) {
                format!("killed by signal {}", libc::WTERMSIG(status))
            } else {
                format!("exited with status {}", libc::WEXITSTATUS(status))
            });
        }
        None
    }

    /// Hand the control area back to the stub with `ops` to run first.
    pub fn resume(&self, ops: &[Op]) {
        assert!(ops.len() <= layout::MAX_OPS);
        if let Some(v) = &self.validator {
            v.expected.clear();
            v.expected.push(ops);
        }
        // SAFETY: the stub waits (state EXITED) and reads the ops only after RESUME.
        unsafe {
            let c = &mut *self.ctrl_ptr();
            c.ops[..ops.len()].copy_from_slice(ops);
            c.nops = ops.len() as u32;
        }
        self.state().swap(state::RESUME, Ordering::AcqRel);
        if self
            .word(layout::off::CHILD_WAITING)
            .load(Ordering::Acquire)
            != 0
        {
            futex_wake(self.state());
        }
    }

    /// Wait for the child's next report. `step` runs every few microseconds of waiting:
    /// timers, interrupts, console input; it decides whether to kick the child.
    pub fn wait(&mut self, mut step: impl FnMut() -> WaitStep) -> WaitEnd {
        let start = Instant::now();
        let mut kicked_at: Option<Instant> = None;
        let mut sleep_cap;
        loop {
            for _ in 0..256 {
                if self.state().load(Ordering::Acquire) == state::EXITED {
                    return WaitEnd::Exited;
                }
                std::hint::spin_loop();
            }
            match step() {
                WaitStep::Wait(d) => sleep_cap = d,
                WaitStep::Kick(d) => {
                    sleep_cap = d;
                    if kicked_at.is_none() {
                        // SAFETY: signalling our own child.
                        unsafe { libc::kill(self.pid, KICK_SIGNAL) };
                        kicked_at = Some(Instant::now());
                    }
                }
            }
            if let Some(k) = kicked_at {
                if k.elapsed() > KICK_TIMEOUT {
                    return WaitEnd::Unresponsive;
                }
            }
            if start.elapsed() < MONITOR_SPIN {
                continue;
            }
            // Sleep on the futex until the stub publishes (it wakes us) or a timer is due.
            let waiting = self.word(layout::off::MONITOR_WAITING);
            waiting.swap(1, Ordering::AcqRel);
            let v = self.state().load(Ordering::Acquire);
            if v != state::EXITED {
                futex_wait(self.state(), v, sleep_cap.min(Duration::from_millis(10)));
            }
            waiting.store(0, Ordering::Release);
            if let Some(why) = self.died() {
                return WaitEnd::Died(why);
            }
        }
    }

    /// The monitor goes on with another child: make this one sleep now if it waits.
    pub fn park(&self) {
        let _ = self.state().compare_exchange(
            state::EXITED,
            state::PARKED,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// User-mode instructions the child retired so far (0 without a counter).
    pub fn user_instructions(&self) -> u64 {
        self.insns.as_ref().map_or(0, |c| c.read())
    }

    /// Kill the child now (it is replaced by a fresh one when needed).
    pub fn kill(&mut self) {
        if !self.reaped {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                let mut st = 0;
                libc::waitpid(self.pid, &mut st, 0);
            }
            self.reaped = true;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.map as *mut _, self.map_len) };
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a shared (non-private) futex word in a MAP_SHARED mapping.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1);
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT on a shared futex word with a relative timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Everything the forked child needs, computed before the fork (no allocation after it).
struct ChildSetup {
    ram_fd: i32,
    stub_fd: i32,
    cpu: Option<usize>,
    parent: i32,
    handler: u64,
    restorer: u64,
    init: u64,
    rseq: Option<(u64, [u32; 2])>,
}

extern "C" {
    static __rseq_offset: isize;
    static __rseq_size: u32;
}

impl ChildSetup {
    fn new(ram_fd: i32, stub_fd: i32, cpu: Option<usize>, code: &stub::StubCode) -> ChildSetup {
        // glibc registers an rseq area per thread at the thread pointer + __rseq_offset; it
        // must be unregistered before its memory is unmapped, with the length glibc used (32
        // on glibc 2.36 although __rseq_size says 20: notes/native-exec.md, pitfall 3).
        // SAFETY: reading glibc's exported constants and this thread's FS base.
        let rseq = unsafe {
            if __rseq_size == 0 {
                None
            } else {
                let tp: u64;
                core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly));
                Some((tp.wrapping_add(__rseq_offset as u64), [32, __rseq_size]))
            }
        };
        ChildSetup {
            ram_fd,
            stub_fd,
            cpu,
            // SAFETY: getpid has no preconditions.
            parent: unsafe { libc::getpid() },
            handler: layout::STUB_BASE + code.handler,
            restorer: layout::STUB_BASE + code.restorer,
            init: layout::STUB_BASE + code.init,
            rseq,
        }
    }

    /// In the forked child: set up and jump into the stub's start. Never returns.
    ///
    /// # Safety
    /// Only in the child right after fork.
    unsafe fn run(&self) -> ! {
        let fail = |code: i32| -> ! { libc::_exit(code) };
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != self.parent {
            fail(100);
        }
        if let Some((area, lens)) = self.rseq {
            const RSEQ_SIG: u32 = 0x5305_3053;
            for len in lens {
                if libc::syscall(libc::SYS_rseq, area, len, 1, RSEQ_SIG) == 0 {
                    break;
                }
            }
        }
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        // Block everything while the handlers change.
        let all: u64 = !0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all,
            0usize,
            8usize,
        );
        // The window: code (read/execute) and control area (shared), the signal stack.
        let base = layout::STUB_BASE as usize;
        let m = libc::mmap(
            base as *mut _,
            layout::CODE_SIZE as usize,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_SHARED | libc::MAP_FIXED,
            self.stub_fd,
            0,
        );
        if m == libc::MAP_FAILED {
            fail(101);
        }
        let m = libc::mmap(
            (base + layout::CTRL_OFFSET as usize) as *mut _,
            layout::CTRL_SIZE as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            self.stub_fd,
            layout::CTRL_OFFSET as i64,
        );
        if m == libc::MAP_FAILED {
            fail(102);
        }
        let m = libc::mmap(
            (base + layout::STACK_OFFSET as usize) as *mut _,
            layout::STACK_SIZE as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_POPULATE,
            -1,
            0,
        );
        if m == libc::MAP_FAILED {
            fail(103);
        }
        // Guest RAM at a fixed descriptor number; every other descriptor closed.
        if self.ram_fd != CHILD_RAM_FD && libc::dup2(self.ram_fd, CHILD_RAM_FD) != CHILD_RAM_FD {
            fail(104);
        }
        libc::syscall(libc::SYS_close_range, 0u32, 2u32, 0u32);
        libc::syscall(
            libc::SYS_close_range,
            CHILD_RAM_FD as u32 + 1,
            u32::MAX,
            0u32,
        );
        let ss = libc::stack_t {
            ss_sp: (base + layout::STACK_OFFSET as usize) as *mut _,
            ss_flags: 0,
            ss_size: layout::STACK_SIZE as usize,
        };
        if libc::sigaltstack(&ss, std::ptr::null_mut()) != 0 {
            fail(105);
        }
        #[repr(C)]
        struct KernelSigaction {
            handler: u64,
            flags: u64,
            restorer: u64,
            mask: u64,
        }
        const SA_RESTORER: u64 = 0x0400_0000;
        let act = KernelSigaction {
            handler: self.handler,
            flags: (libc::SA_SIGINFO | libc::SA_ONSTACK) as u64 | SA_RESTORER,
            restorer: self.restorer,
            mask: !0,
        };
        for sig in HANDLED_SIGNALS {
            if libc::syscall(libc::SYS_rt_sigaction, sig, &act, 0usize, 8usize) != 0 {
                fail(106);
            }
        }
        if let Some(c) = self.cpu {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(c, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(107);
        }
        let none: u64 = 0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &none,
            0usize,
            8usize,
        );
        core::arch::asm!("jmp {}", in(reg) self.init, options(noreturn));
    }
}
