//! The child's seccomp filter and the monitor's validation of the stub's address-space calls
//! (design.md 3.2; notes/native-exec.md, "Requirements" 1).
//!
//! Guest code can jump into the stub, so an instruction-pointer test decides only which path a
//! system call takes, never whether it is safe:
//! - from anywhere but the stub's code: every call traps (SIGSYS). These are the guest's own
//!   `syscall` / `int $0x80` (and the host's vsyscall emulation), delivered to the guest kernel.
//! - from the stub's code: rt_sigreturn and sched_yield pass (harmless whatever the
//!   arguments: they only change the child's own registers or give up its CPU), futex passes
//!   only on the control area's state word; mmap, munmap and mprotect go to the monitor
//!   (SECCOMP_RET_USER_NOTIF), which lets a call continue only if it is exactly the next
//!   request the monitor itself queued. Everything else traps.
//!
//! So a guest process that jumps into the stub can map nothing its guest page tables do not
//! grant, and no guest instruction ever reaches the host kernel with a call the monitor did not
//! ask for.

use super::layout::{self, Op};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;

pub const NR_MMAP: u64 = 9;
pub const NR_MPROTECT: u64 = 10;
pub const NR_MUNMAP: u64 = 11;
const NR_RT_SIGRETURN: u32 = 15;
const NR_SCHED_YIELD: u32 = 24;
const NR_FUTEX: u32 = 202;

// struct seccomp_data offsets
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_IP_LO: u32 = 8;
const DATA_IP_HI: u32 = 12;
const fn data_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}
const fn data_arg_hi(i: u32) -> u32 {
    20 + 8 * i
}

/// One classic-BPF instruction being assembled: jumps name labels.
enum Ins {
    Ld(u32),
    /// if A == k goto t else goto f (`None`: the next instruction)
    Jeq(u32, Option<&'static str>, Option<&'static str>),
    /// if A >= k goto t else goto f
    Jge(u32, Option<&'static str>, Option<&'static str>),
    Ret(u32),
    Label(&'static str),
}

fn assemble(prog: &[Ins]) -> Vec<u64> {
    let mut labels = std::collections::HashMap::new();
    let mut n = 0usize;
    for i in prog {
        match i {
            Ins::Label(l) => {
                labels.insert(*l, n);
            }
            _ => n += 1,
        }
    }
    let mut out = Vec::new();
    for i in prog {
        let at = out.len();
        let rel = |t: &Option<&'static str>| -> u64 {
            match t {
                None => 0,
                Some(l) => {
                    let target = labels[l];
                    (target - at - 1) as u64
                }
            }
        };
        let word =
            |code: u64, jt: u64, jf: u64, k: u32| code | jt << 16 | jf << 24 | (k as u64) << 32;
        match i {
            Ins::Label(_) => continue,
            Ins::Ld(off) => out.push(word(0x20, 0, 0, *off)),
            Ins::Jeq(k, t, f) => out.push(word(0x15, rel(t), rel(f), *k)),
            Ins::Jge(k, t, f) => out.push(word(0x35, rel(t), rel(f), *k)),
            Ins::Ret(v) => out.push(word(0x06, 0, 0, *v)),
        }
    }
    out
}

/// The child's filter. `futex_word` is the child address of the control area's state word.
pub fn filter(code: (u64, u64), futex_word: u64) -> Vec<u64> {
    use Ins::*;
    let (lo, hi) = code;
    assert_eq!(
        lo >> 32,
        (hi - 1) >> 32,
        "stub code must not cross a 4 GiB line"
    );
    let prog = [
        Ld(DATA_ARCH),
        Jeq(AUDIT_ARCH_X86_64, None, Some("trap")),
        Ld(DATA_IP_HI),
        Jeq((lo >> 32) as u32, None, Some("trap")),
        Ld(DATA_IP_LO),
        Jge(lo as u32, None, Some("trap")),
        Jge(hi as u32, Some("trap"), None),
        Ld(DATA_NR),
        Jeq(NR_RT_SIGRETURN, Some("allow"), None),
        Jeq(NR_SCHED_YIELD, Some("allow"), None),
        Jeq(NR_MMAP as u32, Some("notif"), None),
        Jeq(NR_MPROTECT as u32, Some("notif"), None),
        Jeq(NR_MUNMAP as u32, Some("notif"), None),
        Jeq(NR_FUTEX, None, Some("trap")),
        Ld(data_arg_hi(0)),
        Jeq((futex_word >> 32) as u32, None, Some("trap")),
        Ld(data_arg_lo(0)),
        Jeq(futex_word as u32, None, Some("trap")),
        Ld(data_arg_lo(1)),
        Jeq(0, Some("allow"), None),         // FUTEX_WAIT
        Jeq(1, Some("allow"), Some("trap")), // FUTEX_WAKE
        Label("trap"),
        Ret(RET_TRAP),
        Label("allow"),
        Ret(RET_ALLOW),
        Label("notif"),
        Ret(RET_USER_NOTIF),
    ];
    let out = assemble(&prog);
    assert!(out.len() <= layout::MAX_FILTER);
    out
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct SeccompData {
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}

#[repr(C)]
#[derive(Default)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

const IOCTL_NOTIF_RECV: u64 = 0xc050_2100;
const IOCTL_NOTIF_SEND: u64 = 0xc018_2101;
const IOCTL_NOTIF_SET_FLAGS: u64 = 0x4008_2104;
const USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;
const USER_NOTIF_FLAG_CONTINUE: u32 = 1;

/// Counters the validator keeps (read by `--stats`).
#[derive(Default, Debug)]
pub struct ValidatorStats {
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
}

/// The requests the monitor queued for one child, in the order the stub runs them.
#[derive(Default)]
pub struct Expected {
    queue: Mutex<VecDeque<Op>>,
}

impl Expected {
    pub fn push(&self, ops: &[Op]) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.extend(ops.iter().copied());
    }
    pub fn clear(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
    /// Whether `nr(args)` is the next expected request (consumed either way: after a
    /// mismatch the queue is dropped, so nothing queued can be replayed later).
    fn take(&self, nr: u64, args: &[u64; 6]) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        match q.pop_front() {
            Some(op) if op.nr == nr && op.args == *args => true,
            _ => {
                q.clear();
                false
            }
        }
    }
}

/// The validator: a thread per child blocked on its seccomp listener, answering each
/// notification CONTINUE if it is the next expected request and EPERM otherwise. It runs
/// pinned to the child's CPU, and the listener asks for synchronous wake-ups (Linux 6.6), so a
/// validated call is two context switches on that CPU rather than two cross-CPU wake-ups.
pub struct Validator {
    pub expected: Arc<Expected>,
    pub stats: Arc<ValidatorStats>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Validator {
    pub fn start(listener: OwnedFd, child_pid: i32, cpu: Option<usize>) -> io::Result<Validator> {
        // SAFETY: an ioctl on a descriptor we own, with a u64 argument it reads.
        unsafe {
            let flags: u64 = USER_NOTIF_FD_SYNC_WAKE_UP;
            // Older kernels lack the flag; validation works without it, only slower.
            libc::ioctl(listener.as_raw_fd(), IOCTL_NOTIF_SET_FLAGS as _, flags);
        }
        let expected = Arc::new(Expected::default());
        let stats = Arc::new(ValidatorStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s, st) = (expected.clone(), stats.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("btvisor-validate".into())
            .spawn(move || {
                if let Some(c) = cpu {
                    super::child::pin_current_thread(c);
                }
                serve(listener, child_pid, &e, &s, &st)
            })?;
        Ok(Validator {
            expected,
            stats,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Validator {
    fn drop(&mut self) {
        // The child is dead by now (Child drops it first): the listener reports POLLHUP and
        // the thread ends.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    listener: OwnedFd,
    child_pid: i32,
    expected: &Expected,
    stats: &ValidatorStats,
    stop: &AtomicBool,
) {
    let fd = listener.as_raw_fd();
    let (code_lo, code_hi) = super::stub::code_range();
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 100) };
        if r < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if r == 0 {
            continue;
        }
        if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
            && pfd.revents & libc::POLLIN == 0
        {
            return;
        }
        let mut n = Notif::default();
        // SAFETY: RECV fills the zeroed struct of the size the ioctl number encodes.
        if unsafe { libc::ioctl(fd, IOCTL_NOTIF_RECV as _, &mut n as *mut Notif) } != 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) | Some(libc::ENOENT) => continue,
                _ => return,
            }
        }
        let nr = n.data.nr as u64;
        let ok = n.pid as i32 == child_pid
            && n.data.arch == AUDIT_ARCH_X86_64
            && (code_lo..code_hi).contains(&n.data.ip)
            && matches!(nr, NR_MMAP | NR_MUNMAP | NR_MPROTECT)
            && expected.take(nr, &n.data.args);
        let mut resp = NotifResp {
            id: n.id,
            ..Default::default()
        };
        if ok {
            resp.flags = USER_NOTIF_FLAG_CONTINUE;
            stats.allowed.fetch_add(1, Ordering::Relaxed);
        } else {
            resp.error = -libc::EPERM;
            stats.denied.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: "btvisor::native",
                "denied an unrequested system call {nr} {:x?} from the stub at {:#x}",
                n.data.args,
                n.data.ip
            );
        }
        // SAFETY: SEND reads the response struct; a stale id (the child died) fails harmlessly.
        unsafe { libc::ioctl(fd, IOCTL_NOTIF_SEND as _, &resp as *const NotifResp) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny classic-BPF interpreter for the instructions `filter` emits.
    fn run(prog: &[u64], data: &SeccompData) -> u32 {
        let bytes: [u8; 64] = unsafe { std::mem::transmute(*data) };
        let mut pc = 0usize;
        let mut a = 0u32;
        loop {
            let w = prog[pc];
            let code = (w & 0xffff) as u16;
            let jt = ((w >> 16) & 0xff) as usize;
            let jf = ((w >> 24) & 0xff) as usize;
            let k = (w >> 32) as u32;
            pc += 1;
            match code {
                0x20 => {
                    let o = k as usize;
                    a = u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
                }
                0x15 => pc += if a == k { jt } else { jf },
                0x35 => pc += if a >= k { jt } else { jf },
                0x06 => return k,
                _ => panic!("unexpected opcode {code:#x}"),
            }
        }
    }

    fn call(nr: i32, arch: u32, ip: u64, args: [u64; 6]) -> SeccompData {
        SeccompData { nr, arch, ip, args }
    }

    #[test]
    fn filter_routes_calls_by_origin_and_number() {
        let code = super::super::stub::code_range();
        let word = layout::STUB_BASE + layout::CTRL_OFFSET;
        let f = filter(code, word);
        let stub_ip = code.0 + 0x40;
        let x64 = AUDIT_ARCH_X86_64;
        // guest calls (outside the stub) always trap, whatever the number
        for nr in [0, 1, 9, 15, 39, 59, 60, 202, 231] {
            assert_eq!(
                run(&f, &call(nr, x64, 0x401000, [0; 6])),
                RET_TRAP,
                "nr {nr}"
            );
        }
        // int $0x80 and compat-mode calls (i386 ABI) trap even from the stub
        assert_eq!(run(&f, &call(15, 0x4000_0003, stub_ip, [0; 6])), RET_TRAP);
        // vsyscall emulation: the ip is the vsyscall page
        assert_eq!(
            run(&f, &call(96, x64, 0xffff_ffff_ff60_0000, [0; 6])),
            RET_TRAP
        );
        // from the stub
        assert_eq!(run(&f, &call(15, x64, stub_ip, [0; 6])), RET_ALLOW);
        assert_eq!(run(&f, &call(24, x64, stub_ip, [0; 6])), RET_ALLOW);
        for nr in [9, 10, 11] {
            assert_eq!(run(&f, &call(nr, x64, stub_ip, [0; 6])), RET_USER_NOTIF);
        }
        assert_eq!(
            run(&f, &call(202, x64, stub_ip, [word, 1, 1, 0, 0, 0])),
            RET_ALLOW
        );
        assert_eq!(
            run(&f, &call(202, x64, stub_ip, [word, 0, 1, 0, 0, 0])),
            RET_ALLOW
        );
        assert_eq!(
            run(&f, &call(202, x64, stub_ip, [word + 4, 1, 1, 0, 0, 0])),
            RET_TRAP
        );
        assert_eq!(
            run(&f, &call(202, x64, stub_ip, [word, 9, 1, 0, 0, 0])),
            RET_TRAP
        );
        for nr in [0, 1, 2, 59, 60, 62, 231, 317, 0x4000_0009] {
            assert_eq!(
                run(&f, &call(nr, x64, stub_ip, [0; 6])),
                RET_TRAP,
                "nr {nr}"
            );
        }
        // just past the stub's code: the control area is not code
        assert_eq!(run(&f, &call(15, x64, code.1, [0; 6])), RET_TRAP);
        assert_eq!(run(&f, &call(15, x64, code.0 - 1, [0; 6])), RET_TRAP);
    }

    #[test]
    fn expected_requests_are_taken_in_order_and_only_once() {
        let e = Expected::default();
        let op = |nr, a| Op {
            nr,
            args: [a, 4096, 0, 0, 0, 0],
            result: 0,
        };
        e.push(&[op(NR_MMAP, 0x1000), op(NR_MUNMAP, 0x2000)]);
        assert!(e.take(NR_MMAP, &op(NR_MMAP, 0x1000).args));
        assert!(e.take(NR_MUNMAP, &op(NR_MUNMAP, 0x2000).args));
        assert!(!e.take(NR_MUNMAP, &op(NR_MUNMAP, 0x2000).args));
        e.push(&[op(NR_MMAP, 0x1000), op(NR_MMAP, 0x3000)]);
        // a forged request (other address) is refused and drops the rest of the queue
        assert!(!e.take(NR_MMAP, &op(NR_MMAP, 0x5000).args));
        assert!(!e.take(NR_MMAP, &op(NR_MMAP, 0x3000).args));
    }
}
