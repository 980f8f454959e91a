//! Which agent reports are news: per PoP, the newest agent instance wins and
//! its sequence numbers only go up.
//!
//! An agent process is identified by a random `agent_instance` and, from
//! agents that send it, its start time. A report from an instance that
//! started before the newest one seen is from a superseded process (an old
//! agent left running after a restart, a stuck container) and is dropped, so
//! two agents for one PoP cannot flap its health. A newer instance starts its
//! sequence over. Agents that send no start time (0) are compared by instance
//! only, as before.
//!
//! A start time can also be "older" because the agent host's clock stepped
//! back before the restart; then the newest instance is gone and stops
//! reporting. Once it has been silent for [`SUPERSEDED_GRACE`], an older-started
//! instance takes over, so a clock step never locks a PoP out for good.

use std::time::Duration;

use tokio::time::Instant;

/// How long the newest instance must be silent before an instance that
/// started earlier is believed again.
pub const SUPERSEDED_GRACE: Duration = Duration::from_secs(30);

/// What one report claims about its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportOrigin {
    pub instance: u64,
    /// Agent start, ms since the epoch; 0 when the agent does not send it.
    pub started_unix_ms: i64,
    pub sequence: u64,
}

/// The outcome of [`SequenceTracker::check`], with the metric label of a drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceVerdict {
    /// News: accept the report.
    Fresh,
    /// Same instance, sequence not above the last accepted: a duplicate or
    /// a reordering.
    StaleSequence,
    /// From an instance that started before the newest one seen.
    SupersededInstance,
}

impl SequenceVerdict {
    /// `reason` label of `steer_health_reports_rejected_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Fresh => "accepted",
            Self::StaleSequence => "stale_sequence",
            Self::SupersededInstance => "superseded_instance",
        }
    }
}

/// One PoP's last accepted report origin and the newest start time seen.
#[derive(Clone, Copy, Debug)]
pub struct SequenceTracker {
    last: ReportOrigin,
    /// Newest `started_unix_ms` seen for the PoP (0: none sent yet).
    newest_start: i64,
    last_accepted_at: Instant,
}

impl SequenceTracker {
    /// A tracker whose first report was `first` (already accepted).
    pub fn new(first: ReportOrigin, now: Instant) -> Self {
        Self {
            last: first,
            newest_start: first.started_unix_ms.max(0),
            last_accepted_at: now,
        }
    }

    /// Decides on `report` and, when it is fresh, records it.
    pub fn check(&mut self, report: ReportOrigin, now: Instant) -> SequenceVerdict {
        let verdict = self.verdict(report, now);
        if verdict == SequenceVerdict::Fresh {
            if report.started_unix_ms > 0 {
                self.newest_start = report.started_unix_ms;
            }
            self.last = report;
            self.last_accepted_at = now;
        }
        verdict
    }

    fn verdict(&self, report: ReportOrigin, now: Instant) -> SequenceVerdict {
        let same_instance = report.instance == self.last.instance
            && report.started_unix_ms == self.last.started_unix_ms;
        if same_instance {
            return if report.sequence > self.last.sequence {
                SequenceVerdict::Fresh
            } else {
                SequenceVerdict::StaleSequence
            };
        }
        // Another instance. Without start times on both sides, a new instance
        // simply starts over (the behaviour before start times were sent).
        let older = report.started_unix_ms > 0
            && self.newest_start > 0
            && report.started_unix_ms < self.newest_start;
        let newest_is_silent =
            now.saturating_duration_since(self.last_accepted_at) >= SUPERSEDED_GRACE;
        if older && !newest_is_silent {
            SequenceVerdict::SupersededInstance
        } else {
            SequenceVerdict::Fresh
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(instance: u64, started_unix_ms: i64, sequence: u64) -> ReportOrigin {
        ReportOrigin {
            instance,
            started_unix_ms,
            sequence,
        }
    }

    #[test]
    fn a_superseded_instance_is_ignored_and_a_newer_one_resets_the_sequence() {
        let t0 = Instant::now();
        let mut tracker = SequenceTracker::new(origin(1, 1_000, 1), t0);
        assert_eq!(
            tracker.check(origin(1, 1_000, 2), t0),
            SequenceVerdict::Fresh
        );
        // The agent restarts: a newer instance starts its sequence over.
        assert_eq!(
            tracker.check(origin(2, 5_000, 1), t0),
            SequenceVerdict::Fresh
        );
        // The old process is still running and reports with a higher sequence.
        assert_eq!(
            tracker.check(origin(1, 1_000, 3), t0),
            SequenceVerdict::SupersededInstance
        );
        assert_eq!(
            tracker.check(origin(1, 1_000, 1_000), t0 + Duration::from_secs(1)),
            SequenceVerdict::SupersededInstance
        );
        assert_eq!(
            SequenceVerdict::SupersededInstance.label(),
            "superseded_instance"
        );
        // The newest instance carries on undisturbed.
        assert_eq!(
            tracker.check(origin(2, 5_000, 2), t0),
            SequenceVerdict::Fresh
        );
        assert_eq!(
            tracker.check(origin(2, 5_000, 2), t0),
            SequenceVerdict::StaleSequence
        );
    }

    #[test]
    fn agents_without_a_start_time_are_compared_by_instance_as_before() {
        let t0 = Instant::now();
        let mut tracker = SequenceTracker::new(origin(1, 0, 50), t0);
        assert_eq!(
            tracker.check(origin(1, 0, 50), t0),
            SequenceVerdict::StaleSequence
        );
        assert_eq!(tracker.check(origin(2, 0, 1), t0), SequenceVerdict::Fresh);
        assert_eq!(tracker.check(origin(1, 0, 60), t0), SequenceVerdict::Fresh);
    }

    #[test]
    fn an_older_start_takes_over_once_the_newest_instance_is_silent() {
        // The agent host's clock stepped back before a restart.
        let t0 = Instant::now();
        let mut tracker = SequenceTracker::new(origin(1, 9_000, 1), t0);
        assert_eq!(
            tracker.check(origin(2, 4_000, 1), t0 + Duration::from_secs(1)),
            SequenceVerdict::SupersededInstance
        );
        let later = t0 + SUPERSEDED_GRACE;
        assert_eq!(
            tracker.check(origin(2, 4_000, 2), later),
            SequenceVerdict::Fresh
        );
        // From now on instance 2 is the newest; instance 1 is superseded.
        assert_eq!(
            tracker.check(origin(2, 4_000, 3), later),
            SequenceVerdict::Fresh
        );
    }

    proptest::proptest! {
        /// Replaying any sequence of reports from one instance, only strictly
        /// increasing sequence numbers are accepted: regressions and
        /// duplicates are ignored.
        #[test]
        fn sequence_regressions_are_ignored(seqs in proptest::collection::vec(1u64..50, 1..100)) {
            let t0 = Instant::now();
            let mut tracker: Option<SequenceTracker> = None;
            let mut high = 0;
            for s in seqs {
                let report = origin(9, 1_000, s);
                let fresh = match &mut tracker {
                    None => { tracker = Some(SequenceTracker::new(report, t0)); true }
                    Some(t) => t.check(report, t0) == SequenceVerdict::Fresh,
                };
                proptest::prop_assert_eq!(fresh, s > high);
                if fresh {
                    high = s;
                }
            }
        }

        /// Interleaving two instances, the one that started earlier is never
        /// accepted after the later one was.
        #[test]
        fn the_older_instance_never_wins_back(order in proptest::collection::vec(proptest::bool::ANY, 1..100)) {
            let t0 = Instant::now();
            let mut tracker = SequenceTracker::new(origin(1, 1_000, 1), t0);
            let mut newer_seen = false;
            for (i, newer) in order.into_iter().enumerate() {
                let seq = i as u64 + 2;
                let verdict = if newer {
                    tracker.check(origin(2, 2_000, seq), t0)
                } else {
                    tracker.check(origin(1, 1_000, seq), t0)
                };
                if newer {
                    newer_seen = true;
                    proptest::prop_assert_eq!(verdict, SequenceVerdict::Fresh);
                } else if newer_seen {
                    proptest::prop_assert_eq!(verdict, SequenceVerdict::SupersededInstance);
                }
            }
        }
    }
}
