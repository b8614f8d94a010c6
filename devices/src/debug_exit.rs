//! QEMU's `isa-debug-exit` device, so test kernels written for
//! `qemu -device isa-debug-exit,iobase=0xf4` run unchanged.
//!
//! QEMU (hw/misc/debugexit.c) calls `exit((val << 1) | 1)` on any write: the
//! status is always odd, so a guest can never make the VMM report a plain
//! success (0) by accident, and test harnesses map "guest wrote 0" to 1,
//! "guest wrote 1" to 3, and so on. We reproduce that, truncating to `i32`
//! like QEMU's `int` parameter does.

use tracing::debug;

use crate::bus::{le_value, IoOutcome, PioDevice};

/// The conventional port (`iobase=0xf4`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// The isa-debug-exit device. Stateless.
#[derive(Debug, Default, Clone, Copy)]
pub struct DebugExit;

impl DebugExit {
    /// The exit status for a write of `data` (1, 2 or 4 bytes,
    /// little-endian), or `None` for a malformed access width.
    pub fn exit_status(data: &[u8]) -> Option<i32> {
        match data.len() {
            // `le_value` already limits the value to the access width.
            1 | 2 | 4 => Some(((le_value(data) << 1) | 1) as i32),
            _ => None,
        }
    }
}

impl PioDevice for DebugExit {
    /// The device has no readable register; QEMU returns all-ones as well.
    fn read(&mut self, _port: u16, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, port: u16, data: &[u8]) -> IoOutcome {
        match Self::exit_status(data) {
            Some(status) => {
                debug!(port = format_args!("{port:#x}"), status, "isa-debug-exit");
                IoOutcome::Exit(status)
            }
            None => {
                debug!(
                    port = format_args!("{port:#x}"),
                    len = data.len(),
                    "isa-debug-exit: bad access width ignored"
                );
                IoOutcome::Continue
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_is_value_shifted_with_low_bit_set() {
        let mut d = DebugExit;
        assert_eq!(d.write(DEBUG_EXIT_PORT, &[0]), IoOutcome::Exit(1));
        assert_eq!(d.write(DEBUG_EXIT_PORT, &[1]), IoOutcome::Exit(3));
        assert_eq!(d.write(DEBUG_EXIT_PORT, &[0x10]), IoOutcome::Exit(0x21));
        assert_eq!(d.write(DEBUG_EXIT_PORT, &[0xff]), IoOutcome::Exit(0x1ff));
        assert_eq!(
            d.write(DEBUG_EXIT_PORT, &[0x34, 0x12]),
            IoOutcome::Exit(0x2469)
        );
        assert_eq!(
            d.write(DEBUG_EXIT_PORT, &[0x78, 0x56, 0x34, 0x12]),
            IoOutcome::Exit(0x2468_acf1)
        );
        // The top bit shifts out, as with QEMU's truncation to int.
        assert_eq!(d.write(DEBUG_EXIT_PORT, &[0xff; 4]), IoOutcome::Exit(-1));
    }

    #[test]
    fn reads_all_ones_and_bad_widths_do_not_exit() {
        let mut d = DebugExit;
        let mut buf = [0u8; 4];
        d.read(DEBUG_EXIT_PORT, &mut buf);
        assert_eq!(buf, [0xff; 4]);
        assert_eq!(d.write(DEBUG_EXIT_PORT, &[1, 2, 3]), IoOutcome::Continue);
        assert_eq!(d.write(DEBUG_EXIT_PORT, &[]), IoOutcome::Continue);
    }
}
