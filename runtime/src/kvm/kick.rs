//! Getting the vCPU thread out of KVM_RUN. A guest that spins without touching a device never
//! exits on its own, yet its timers must fire and the run deadline must end it: a per-thread
//! POSIX timer sends this thread a real-time signal every period, and KVM_RUN returns EINTR
//! (KVM API, KVM_RUN: "a signal is pending"). The handler does nothing; the signal exists to
//! interrupt. SA_RESTART keeps it invisible to every other system call (KVM_RUN's EINTR is not
//! restarted).

use std::io;
use std::sync::Once;
use std::time::Duration;

/// The kick signal: the first real-time signal the C library leaves to applications.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int) {}

fn install_handler() -> io::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler is an
        // async-signal-safe function that does nothing.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(kick_signal(), &sa, std::ptr::null_mut()) != 0 {
                result = Err(io::Error::last_os_error());
            }
        }
    });
    result
}

/// A periodic timer signalling the thread that created it; stopped when dropped.
pub struct Kicker {
    timer: libc::timer_t,
}

impl Kicker {
    /// Start kicking the calling thread every `period`.
    pub fn start(period: Duration) -> io::Result<Kicker> {
        install_handler()?;
        // SAFETY: plain system calls with fully initialised arguments; the timer id is only
        // used if timer_create succeeded.
        unsafe {
            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_THREAD_ID;
            sev.sigev_signo = kick_signal();
            sev.sigev_notify_thread_id = libc::gettid();
            let mut timer: libc::timer_t = std::ptr::null_mut();
            if libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer) != 0 {
                return Err(io::Error::last_os_error());
            }
            let ts = libc::timespec {
                tv_sec: period.as_secs() as libc::time_t,
                tv_nsec: period.subsec_nanos() as libc::c_long,
            };
            let spec = libc::itimerspec {
                it_interval: ts,
                it_value: ts,
            };
            if libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) != 0 {
                let e = io::Error::last_os_error();
                libc::timer_delete(timer);
                return Err(e);
            }
            Ok(Kicker { timer })
        }
    }
}

impl Drop for Kicker {
    fn drop(&mut self) {
        // SAFETY: our own timer, created in `start`; a signal already queued is harmless.
        unsafe {
            libc::timer_delete(self.timer);
        }
    }
}
