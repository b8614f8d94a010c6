//! Counting the user-mode instructions a native child retires, with the host's PMU
//! (perf_event_open, PERF_COUNT_HW_INSTRUCTIONS, user mode only), for `--stats`. The count
//! includes the stub's few instructions per world switch. Hosts without a PMU (VMs that do not
//! expose one, like the machine this project is developed on) cannot count: `--stats` then
//! says why instead of giving a number.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `struct perf_event_attr` up to PERF_ATTR_SIZE_VER0 (64 bytes): all this counter needs.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// Bit flags: 5 exclude_kernel, 6 exclude_hv.
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_HARDWARE: u32 = 0;
const PERF_COUNT_HW_INSTRUCTIONS: u64 = 1;
const EXCLUDE_KERNEL: u64 = 1 << 5;
const EXCLUDE_HV: u64 = 1 << 6;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// A user-mode instruction counter attached to one process.
pub struct InsnCounter(OwnedFd);

impl InsnCounter {
    /// Count the user-mode instructions of process `pid` from now on.
    pub fn open(pid: i32) -> Result<InsnCounter, String> {
        let attr = PerfEventAttr {
            kind: PERF_TYPE_HARDWARE,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: PERF_COUNT_HW_INSTRUCTIONS,
            flags: EXCLUDE_KERNEL | EXCLUDE_HV,
            ..Default::default()
        };
        // SAFETY: perf_event_open reads `attr` (valid for its declared size); the result is a
        // new descriptor that we own, or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                pid,
                -1,
                -1,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!("perf_event_open(instructions): {e}"));
        }
        // SAFETY: a fresh descriptor returned to us.
        Ok(InsnCounter(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Instructions counted so far (0 if the counter cannot be read).
    pub fn read(&self) -> u64 {
        let mut v = 0u64;
        // SAFETY: reading 8 bytes into a u64 we own from our descriptor.
        let n = unsafe {
            libc::read(
                self.0.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
        if n == 8 {
            v
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a host PMU (the kernel lists a "cpu" event source) the counter sees a known loop's
    /// instructions; without one, opening it fails and `--stats` says so.
    #[test]
    fn counts_user_instructions_where_the_host_has_a_pmu() {
        let pmu = std::path::Path::new("/sys/bus/event_source/devices/cpu").exists();
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        match InsnCounter::open(me) {
            Ok(c) => {
                assert!(pmu, "a hardware counter opened without a cpu event source");
                let before = c.read();
                let mut x = 1u64;
                for i in 0..1_000_000u64 {
                    x = std::hint::black_box(x.wrapping_mul(3).wrapping_add(i));
                }
                std::hint::black_box(x);
                assert!(
                    c.read() - before >= 1_000_000,
                    "too few instructions counted"
                );
            }
            Err(e) => {
                assert!(!pmu, "the host has a PMU but the counter failed: {e}");
                assert!(e.contains("perf_event_open"));
            }
        }
    }
}
