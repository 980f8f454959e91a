//! Good and bad event counts in time buckets, with bounded memory: fine
//! (one-minute) buckets for the recent hours that the alert windows look
//! at, coarse (one-hour) buckets for the whole SLO window.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use steer_types::Timestamp;

use crate::spec::Correction;

/// Width of a fine bucket, unless an SLO's alert windows are short enough
/// to need finer ones (see [`fine_width_for`]).
pub const FINE_MS: i64 = 60_000;

/// The fine bucket width for alert windows as short as `shortest`: a
/// fifth of it, rounded down to a width that divides an hour, between one
/// second and [`FINE_MS`]. The Workbook's windows (5 m and up) get minutes.
pub fn fine_width_for(shortest: std::time::Duration) -> i64 {
    const WIDTHS_S: [i64; 10] = [60, 30, 20, 15, 12, 10, 6, 5, 2, 1];
    let fifth = i64::try_from(shortest.as_secs() / 5).unwrap_or(60);
    WIDTHS_S.iter().copied().find(|w| *w <= fifth).unwrap_or(1) * 1000
}
/// Width of a coarse bucket.
pub const COARSE_MS: i64 = 3_600_000;

/// Events in some span of time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: u64,
    pub bad: u64,
}

impl Counts {
    pub fn new(total: u64, bad: u64) -> Self {
        // A bad event is an event: never more bad than total.
        Self {
            total: total.max(bad),
            bad,
        }
    }

    pub fn add(&mut self, other: Counts) {
        self.total = self.total.saturating_add(other.total);
        self.bad = self.bad.saturating_add(other.bad);
    }

    /// Share of bad events; 0 without events.
    pub fn bad_ratio(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.bad as f64 / self.total as f64
        }
    }
}

/// Buckets of one width, oldest first, each keyed by its aligned start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Buckets {
    width_ms: i64,
    /// Kept for this long behind the newest bucket.
    keep_ms: i64,
    items: VecDeque<(i64, Counts)>,
}

impl Buckets {
    fn new(width_ms: i64, keep_ms: i64) -> Self {
        Self {
            width_ms,
            keep_ms,
            items: VecDeque::new(),
        }
    }

    fn start_of(&self, at_ms: i64) -> i64 {
        at_ms.div_euclid(self.width_ms) * self.width_ms
    }

    /// Adds `counts` at `at_ms`; false when that is older than what is kept.
    fn record(&mut self, at_ms: i64, counts: Counts) -> bool {
        let start = self.start_of(at_ms);
        match self.items.back_mut() {
            Some((last, c)) if *last == start => {
                c.add(counts);
                return true;
            }
            Some((last, _)) if *last < start => {
                self.items.push_back((start, counts));
                self.prune(start);
                return true;
            }
            None => {
                self.items.push_back((start, counts));
                return true;
            }
            Some(_) => {}
        }
        // Late: into its bucket if still kept.
        let newest = self.items.back().map_or(start, |(s, _)| *s);
        if start < newest - self.keep_ms {
            return false;
        }
        match self.items.binary_search_by_key(&start, |(s, _)| *s) {
            Ok(i) => {
                if let Some((_, c)) = self.items.get_mut(i) {
                    c.add(counts);
                }
            }
            Err(i) => self.items.insert(i, (start, counts)),
        }
        true
    }

    fn prune(&mut self, newest: i64) {
        while self
            .items
            .front()
            .is_some_and(|(s, _)| *s < newest - self.keep_ms)
        {
            self.items.pop_front();
        }
    }

    /// Oldest start still kept, as if the newest bucket were at `now`.
    fn covers_from(&self, now_ms: i64) -> i64 {
        self.start_of(now_ms) - self.keep_ms
    }

    /// Sum of the buckets that start in `[from, to)`, less the share of
    /// each that a correction excludes (pro rata by time).
    fn sum(&self, from_ms: i64, to_ms: i64, corrections: &[&Correction]) -> Counts {
        let first = self.items.partition_point(|(s, _)| *s < from_ms);
        let mut out = Counts::default();
        let mut excluded_total = 0.0;
        let mut excluded_bad = 0.0;
        for (start, c) in self.items.range(first..) {
            if *start >= to_ms {
                break;
            }
            out.add(*c);
            let end = start + self.width_ms;
            let excluded_ms: i64 = corrections
                .iter()
                .map(|k| k.overlap_ms(*start, end))
                .sum::<i64>()
                .min(self.width_ms);
            if excluded_ms > 0 {
                let share = excluded_ms as f64 / self.width_ms as f64;
                excluded_total += c.total as f64 * share;
                excluded_bad += c.bad as f64 * share;
            }
        }
        out.total = out.total.saturating_sub(excluded_total.round() as u64);
        out.bad = out.bad.saturating_sub(excluded_bad.round() as u64);
        out.total = out.total.max(out.bad);
        out
    }
}

/// One SLO scope's event history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    fine: Buckets,
    coarse: Buckets,
    /// Events dropped because they arrived older than anything kept.
    pub dropped_late: u64,
}

impl History {
    /// Keeps one-minute buckets for `fine` and one-hour buckets for
    /// `coarse` (zero: none, for scopes only the short windows look at).
    pub fn new(fine: std::time::Duration, coarse: std::time::Duration) -> Self {
        Self::with_fine_width(FINE_MS, fine, coarse)
    }

    /// As [`History::new`] with fine buckets `fine_ms` wide (a divisor of
    /// an hour).
    pub fn with_fine_width(
        fine_ms: i64,
        fine: std::time::Duration,
        coarse: std::time::Duration,
    ) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        let fine_ms = if fine_ms > 0 && COARSE_MS % fine_ms == 0 {
            fine_ms
        } else {
            FINE_MS
        };
        Self {
            fine: Buckets::new(fine_ms, ms(fine)),
            coarse: Buckets::new(COARSE_MS, ms(coarse)),
            dropped_late: 0,
        }
    }

    /// Width of a fine bucket and how far the fine buckets reach back, in
    /// milliseconds.
    pub fn fine_shape(&self) -> (i64, i64) {
        (self.fine.width_ms, self.fine.keep_ms)
    }

    /// Adds events seen at `at`.
    pub fn record(&mut self, at: Timestamp, counts: Counts) {
        if counts.total == 0 && counts.bad == 0 {
            return;
        }
        let fine = self.fine.record(at.0, counts);
        let coarse = self.coarse.keep_ms > 0 && self.coarse.record(at.0, counts);
        if !fine && !coarse {
            self.dropped_late = self.dropped_late.saturating_add(counts.total);
        }
    }

    /// Events over the `window` ending at `now`, less corrections: the
    /// buckets that start within the window. Fine buckets count the part
    /// they still cover (from an hour boundary on), coarse buckets the
    /// older part, so a window is exact to the minute as far back as the
    /// fine buckets reach and to the hour beyond; the span counted is
    /// between `window` less one bucket and `window`, never more.
    pub fn window(
        &self,
        now: Timestamp,
        window: std::time::Duration,
        corrections: &[&Correction],
    ) -> Counts {
        let w = i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 4);
        let from = now.0.saturating_sub(w);
        let to = now.0.saturating_add(1);
        let up = |at: i64, width: i64| {
            at.div_euclid(width) * width + i64::from(at.rem_euclid(width) != 0) * width
        };
        let fine_from = self.fine.covers_from(now.0);
        if from >= fine_from || self.coarse.keep_ms == 0 {
            return self.fine.sum(up(from, self.fine.width_ms), to, corrections);
        }
        // Coarse up to the first hour boundary the fine buckets cover.
        let split = up(fine_from, COARSE_MS);
        let mut out = self.coarse.sum(up(from, COARSE_MS), split, corrections);
        out.add(self.fine.sum(split, to, corrections));
        out
    }

    /// Number of buckets held (memory is this × 24 bytes, plus overhead).
    pub fn buckets(&self) -> usize {
        self.fine.items.len() + self.coarse.items.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    const MIN: i64 = 60_000;

    fn history() -> History {
        History::new(
            Duration::from_secs(6 * 3600),
            Duration::from_secs(29 * 86_400),
        )
    }

    #[test]
    fn windows_count_whole_buckets_inside_them() {
        let mut h = history();
        // One event per minute for two hours, bad every tenth minute.
        for m in 0..120 {
            h.record(
                Timestamp(m * MIN + 5_000),
                Counts::new(1, u64::from(m % 10 == 0)),
            );
        }
        let now = Timestamp(120 * MIN - 1);
        assert_eq!(
            h.window(now, Duration::from_secs(300), &[]),
            Counts::new(5, 0)
        );
        assert_eq!(
            h.window(now, Duration::from_secs(3600), &[]),
            Counts::new(60, 6)
        );
        // Longer than the fine buckets reach: hour buckets.
        assert_eq!(
            h.window(now, Duration::from_secs(7 * 3600), &[]),
            Counts::new(120, 12)
        );
    }

    #[test]
    fn fine_buckets_are_bounded_and_coarse_keep_the_window() {
        let mut h = history();
        for m in 0..(3 * 24 * 60) {
            h.record(Timestamp(m * MIN), Counts::new(10, 0));
        }
        assert!(h.fine.items.len() <= 6 * 60 + 1, "{}", h.fine.items.len());
        assert_eq!(h.coarse.items.len(), 72);
        let now = Timestamp(3 * 24 * 60 * MIN - 1);
        assert_eq!(
            h.window(now, Duration::from_secs(3 * 86_400), &[]).total,
            72 * 600
        );
    }

    #[test]
    fn short_alert_windows_get_finer_buckets() {
        assert_eq!(fine_width_for(Duration::from_secs(300)), 60_000);
        assert_eq!(fine_width_for(Duration::from_secs(60)), 12_000);
        assert_eq!(fine_width_for(Duration::from_secs(30)), 6_000);
        assert_eq!(fine_width_for(Duration::from_secs(3)), 1_000);
        let mut h = History::with_fine_width(
            10_000,
            Duration::from_secs(600),
            Duration::from_secs(86_400),
        );
        for s in 0..120 {
            h.record(Timestamp(s * 1000), Counts::new(1, u64::from(s >= 100)));
        }
        // The last 30 s: 30 events, 20 of them bad (100..120).
        let w = h.window(Timestamp(120_000 - 1), Duration::from_secs(30), &[]);
        assert_eq!(w, Counts::new(30, 20));
    }

    #[test]
    fn late_events_land_in_their_bucket_or_are_counted_dropped() {
        let mut h = History::new(Duration::from_secs(600), Duration::ZERO);
        h.record(Timestamp(30 * MIN), Counts::new(1, 0));
        h.record(Timestamp(25 * MIN), Counts::new(2, 1));
        h.record(Timestamp(5 * MIN), Counts::new(4, 4));
        assert_eq!(h.dropped_late, 4);
        let now = Timestamp(31 * MIN - 1);
        assert_eq!(
            h.window(now, Duration::from_secs(600), &[]),
            Counts::new(3, 1)
        );
    }

    #[test]
    fn corrections_exclude_their_share_of_each_bucket() {
        let mut h = history();
        for m in 0..60 {
            h.record(Timestamp(m * MIN), Counts::new(100, 50));
        }
        let maintenance = Correction {
            slo: "x".into(),
            start: Timestamp(10 * MIN),
            end: Timestamp(20 * MIN + 30_000),
            reason: "planned".into(),
            principal: "alice".into(),
        };
        let now = Timestamp(60 * MIN - 1);
        let c = h.window(now, Duration::from_secs(3600), &[&maintenance]);
        assert_eq!(c, Counts::new(6000 - 1050, 3000 - 525));
    }

    proptest! {
        /// Whatever the order and spacing of the records, a window that
        /// reaches back past every record counts each event exactly once;
        /// and a window never counts more than was recorded.
        #[test]
        fn every_event_counted_once(
            events in proptest::collection::vec((0i64..(5 * 3600 * 1000), 0u64..50, 0u64..50), 1..200),
        ) {
            let mut h = history();
            let mut sum = Counts::default();
            let mut sorted = events.clone();
            sorted.sort_by_key(|e| e.0);
            for (at, total, bad) in &sorted {
                let c = Counts::new(*total, *bad);
                h.record(Timestamp(*at), c);
                sum.add(c);
            }
            let now = Timestamp(5 * 3600 * 1000);
            for hours in [1u64, 2, 6, 24] {
                let w = h.window(now, Duration::from_secs(hours * 3600), &[]);
                prop_assert!(w.total <= sum.total && w.bad <= sum.bad && w.bad <= w.total);
            }
            prop_assert_eq!(h.window(now, Duration::from_secs(6 * 3600), &[]), sum);
            prop_assert_eq!(h.window(now, Duration::from_secs(24 * 3600), &[]), sum);
        }

        /// Out-of-order records within the kept span give the same sums as
        /// in-order ones (bucket merges commute).
        #[test]
        fn order_does_not_matter(
            events in proptest::collection::vec((0i64..(3600 * 1000), 0u64..50, 0u64..50), 1..100),
        ) {
            let mut in_order = history();
            let mut shuffled = history();
            let mut sorted = events.clone();
            sorted.sort_by_key(|e| e.0);
            for (at, t, b) in &sorted {
                in_order.record(Timestamp(*at), Counts::new(*t, *b));
            }
            for (at, t, b) in &events {
                shuffled.record(Timestamp(*at), Counts::new(*t, *b));
            }
            let now = Timestamp(3600 * 1000);
            for mins in [5u64, 30, 60] {
                let d = Duration::from_secs(mins * 60);
                prop_assert_eq!(in_order.window(now, d, &[]), shuffled.window(now, d, &[]));
            }
        }
    }
}
