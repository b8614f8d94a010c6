//! Time source for devices whose registers depend on the current time.
//!
//! The PIT counter a guest reads with `in` must reflect the time of that very
//! `in` (Linux spins on it to calibrate the TSC), but port accesses carry no
//! timestamp. Devices therefore read a [`Clock`]; production uses
//! [`SystemClock`], tests use [`ManualClock`] so that every tick count they
//! assert is deterministic.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::bus::lock;

/// A monotonic time source.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The host's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to, for deterministic tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Instant>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock to `now` (which may be earlier: devices saturate).
    pub fn set(&self, now: Instant) {
        *lock(&self.now) = now;
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = lock(&self.now);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *lock(&self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let t0 = Instant::now();
        let c = ManualClock::new(t0);
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_millis(5));
        assert_eq!(c.now(), t0 + Duration::from_millis(5));
        c.set(t0);
        assert_eq!(c.now(), t0);
    }
}
