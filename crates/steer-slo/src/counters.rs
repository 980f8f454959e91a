//! From cumulative counters to increments.
//!
//! Edge proxies expose request counters that only grow, until the proxy
//! restarts and they start again from zero. Agents forward them as read;
//! the controller remembers the last value per source and counts the
//! difference. A counter that went down was reset: everything it shows now
//! is new (Prometheus' `increase()` does the same). The first value seen
//! from a source (a new source, or after the controller restarted) only
//! sets the baseline: counting it would count traffic from before.

use serde::{Deserialize, Serialize};

use crate::history::Counts;

/// Cumulative counters as a proxy exposes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cumulative {
    pub total: u64,
    pub bad: u64,
}

/// The last values seen from one source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    last: Option<Cumulative>,
    /// Resets seen (for the operator: a proxy that keeps restarting).
    pub resets: u64,
}

impl Baseline {
    /// The events since the previous reading.
    pub fn advance(&mut self, now: Cumulative) -> Counts {
        let delta = match self.last {
            None => Counts::default(),
            Some(prev) => {
                if now.total < prev.total || now.bad < prev.bad {
                    self.resets = self.resets.saturating_add(1);
                    Counts::new(now.total, now.bad)
                } else {
                    Counts::new(now.total - prev.total, now.bad - prev.bad)
                }
            }
        };
        self.last = Some(now);
        delta
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn c(total: u64, bad: u64) -> Cumulative {
        Cumulative { total, bad }
    }

    #[test]
    fn first_reading_is_a_baseline_and_resets_count_from_zero() {
        let mut b = Baseline::default();
        assert_eq!(b.advance(c(1000, 10)), Counts::default());
        assert_eq!(b.advance(c(1100, 12)), Counts::new(100, 2));
        // Proxy restarted: 30 requests since, 1 bad.
        assert_eq!(b.advance(c(30, 1)), Counts::new(30, 1));
        assert_eq!(b.resets, 1);
        assert_eq!(b.advance(c(30, 1)), Counts::default());
    }

    proptest! {
        /// Over any sequence of proxy lifetimes (each ends above where the
        /// next starts, so every reset shows), the increments add up to
        /// exactly the events after the first reading: none negative, none
        /// twice, none lost.
        #[test]
        fn increments_add_up(
            segments in proptest::collection::vec(
                proptest::collection::vec((0u64..100, 0u64..10), 1..20), 1..5),
        ) {
            let mut b = Baseline::default();
            let mut counted = Counts::default();
            let mut truth = Counts::default();
            let mut first = true;
            for seg in &segments {
                let mut cum = c(0, 0);
                // Small first step, then a large one: the lifetime ends
                // above any next lifetime's first reading.
                let steps = std::iter::once(seg[0])
                    .chain(std::iter::once((1000, 0)))
                    .chain(seg.iter().skip(1).copied());
                for (dt, db) in steps {
                    cum.total += dt + db;
                    cum.bad += db;
                    counted.add(b.advance(cum));
                    if first {
                        first = false;
                    } else if cum.total == dt + db {
                        // First reading of a new lifetime: all of it is new.
                        truth.add(Counts::new(cum.total, cum.bad));
                    } else {
                        truth.add(Counts::new(dt + db, db));
                    }
                }
            }
            prop_assert_eq!(counted, truth);
        }
    }
}
