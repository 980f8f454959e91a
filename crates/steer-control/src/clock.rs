//! The one place that reads the clock. Everything below the control loop
//! gets time as a value.
//!
//! The loop's time ([`Clock::now`]) drives staleness, ramps, damping and
//! expiries, so it must never jump: [`SystemClock`] reads the wall clock once
//! and then advances by monotonic elapsed time. A wall-clock step (NTP after
//! a long outage, an operator's `date -s`) would otherwise stale every PoP at
//! once or end every ramp. The real wall time ([`Clock::wall`]) is read only
//! for what people read: audit entries.

use std::{
    sync::OnceLock,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use steer_types::Timestamp;

pub trait Clock: Send + Sync {
    /// The loop's time: milliseconds since the epoch as of start, advancing
    /// monotonically.
    fn now(&self) -> Timestamp;
    /// Wall time for display and audit; may step. Defaults to [`Clock::now`]
    /// (replay and test clocks have only one time).
    fn wall(&self) -> Timestamp {
        self.now()
    }
}

/// Wall time at start plus monotonic elapsed time; one anchor per process.
pub struct SystemClock;

fn system_wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        static ANCHOR: OnceLock<MonotonicClock<fn() -> i64>> = OnceLock::new();
        ANCHOR
            .get_or_init(|| MonotonicClock::new(system_wall_ms as fn() -> i64))
            .now()
    }

    fn wall(&self) -> Timestamp {
        Timestamp::from_unix_ms(system_wall_ms())
    }
}

/// A clock anchored to `wall` once, at construction, then driven by
/// [`Instant`]. `wall` is injectable so a test can step it.
pub struct MonotonicClock<W> {
    wall: W,
    wall_at_start: i64,
    start: Instant,
}

impl<W: Fn() -> i64> MonotonicClock<W> {
    pub fn new(wall: W) -> Self {
        let wall_at_start = wall();
        Self {
            wall,
            wall_at_start,
            start: Instant::now(),
        }
    }
}

impl<W: Fn() -> i64 + Send + Sync> Clock for MonotonicClock<W> {
    fn now(&self) -> Timestamp {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        Timestamp::from_unix_ms(self.wall_at_start.saturating_add(elapsed))
    }

    fn wall(&self) -> Timestamp {
        Timestamp::from_unix_ms((self.wall)())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    };

    use super::*;

    #[test]
    fn a_wall_clock_step_does_not_move_the_loops_time() {
        const HOUR_MS: i64 = 3_600_000;
        let wall = Arc::new(AtomicI64::new(1_800_000_000_000));
        let source = wall.clone();
        let clock = MonotonicClock::new(move || source.load(Ordering::Relaxed));
        let before = clock.now();
        wall.fetch_add(HOUR_MS, Ordering::Relaxed);
        let after = clock.now();
        let moved = after.unix_ms() - before.unix_ms();
        assert!((0..1_000).contains(&moved), "loop time moved {moved} ms");
        // Audit and display still see the real wall time.
        assert_eq!(clock.wall().unix_ms(), 1_800_000_000_000 + HOUR_MS);
        // A step back does not run the loop's time backwards either.
        wall.fetch_sub(2 * HOUR_MS, Ordering::Relaxed);
        assert!(clock.now() >= after);
    }

    #[test]
    fn the_system_clock_starts_at_wall_time() {
        let skew = SystemClock.now().unix_ms() - SystemClock.wall().unix_ms();
        assert!(skew.abs() < 1_000, "{skew}");
    }
}
