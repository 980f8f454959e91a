//! Pure aggregation core: per-target hysteresis and staleness.
//!
//! Invariants:
//! - the first report about a target is taken at face value (no rise/fall
//!   wait from `Unknown`), so a fresh steerd converges in one report;
//! - afterwards a target changes state only after `rise` (or `fall`)
//!   consecutive observations that disagree with it;
//! - silence never flips a target by itself: it becomes `Stale` and keeps its
//!   last state until `max_stale` has also passed (fail static).

use std::collections::BTreeMap;

use steer_types::{
    PopId, ServiceId, Timestamp,
    health::{HealthSnapshot, PopHealthReport, StaleLast, TargetState},
};

/// One observation of a target, after validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Observation {
    Up,
    Down,
}

/// A validated agent report, stripped of wire details.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ObservedReport {
    pub pop: PopId,
    pub services: Vec<(ServiceId, Observation)>,
    pub load_rps: f64,
    pub capacity_rps: Option<f64>,
    /// Probe evidence, one line, e.g. `app: tcp 127.0.0.1:18080 refused`.
    pub evidence: String,
}

/// Rise/fall counts and staleness limits, straight from config.
pub type AggregatorSettings = steer_types::HealthSettings;

/// Hysteresis state machine of one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetPhase {
    /// No observation yet.
    Unknown,
    /// Stable up; `failures` consecutive down observations seen so far.
    Up { failures: u32 },
    /// Stable down; `successes` consecutive up observations seen so far.
    Down { successes: u32 },
}

impl TargetPhase {
    fn observe(self, obs: Observation, rise: u32, fall: u32) -> Self {
        match (self, obs) {
            (Self::Unknown, Observation::Up) => Self::Up { failures: 0 },
            (Self::Unknown, Observation::Down) => Self::Down { successes: 0 },
            (Self::Up { .. }, Observation::Up) => Self::Up { failures: 0 },
            (Self::Up { failures }, Observation::Down) => {
                if failures + 1 >= fall {
                    Self::Down { successes: 0 }
                } else {
                    Self::Up {
                        failures: failures + 1,
                    }
                }
            }
            (Self::Down { .. }, Observation::Down) => Self::Down { successes: 0 },
            (Self::Down { successes }, Observation::Up) => {
                if successes + 1 >= rise {
                    Self::Up { failures: 0 }
                } else {
                    Self::Down {
                        successes: successes + 1,
                    }
                }
            }
        }
    }

    fn settled(self) -> TargetState {
        match self {
            Self::Unknown => TargetState::Unknown,
            Self::Up { .. } => TargetState::Up,
            Self::Down { .. } => TargetState::Down,
        }
    }
}

#[derive(Clone, Debug)]
struct PopTracker {
    pop: TargetPhase,
    services: BTreeMap<ServiceId, TargetPhase>,
    last_report: Option<Timestamp>,
    load_rps: f64,
    capacity_rps: Option<f64>,
    evidence: String,
}

impl PopTracker {
    fn new() -> Self {
        Self {
            pop: TargetPhase::Unknown,
            services: BTreeMap::new(),
            last_report: None,
            load_rps: 0.0,
            capacity_rps: None,
            evidence: String::new(),
        }
    }
}

/// Owns per-PoP health. Lives inside the control loop; never shared.
#[derive(Clone, Debug)]
pub struct HealthAggregator {
    settings: AggregatorSettings,
    pops: BTreeMap<PopId, PopTracker>,
}

impl HealthAggregator {
    /// `pops` are the configured PoPs; reports for others are ignored.
    pub fn new(settings: AggregatorSettings, pops: impl IntoIterator<Item = PopId>) -> Self {
        Self {
            settings,
            pops: pops.into_iter().map(|p| (p, PopTracker::new())).collect(),
        }
    }

    /// Adopts new settings and PoP set (config reload): known PoPs keep
    /// their state, new ones start unknown, removed ones are forgotten.
    pub fn reconfigure(
        &mut self,
        settings: AggregatorSettings,
        pops: impl IntoIterator<Item = PopId>,
    ) {
        let mut next = BTreeMap::new();
        for p in pops {
            let tracker = self.pops.remove(&p).unwrap_or_else(PopTracker::new);
            next.insert(p, tracker);
        }
        self.pops = next;
        self.settings = settings;
    }

    /// Applies one report received at `now`. Returns false if the PoP is not
    /// configured.
    pub fn observe(&mut self, report: &ObservedReport, now: Timestamp) -> bool {
        let (rise, fall) = (self.settings.rise, self.settings.fall);
        let Some(tracker) = self.pops.get_mut(&report.pop) else {
            return false;
        };
        // A PoP whose every reported service is down is down; an agent that
        // reports no service at all still proves the PoP is reachable.
        let pop_obs = if !report.services.is_empty()
            && report.services.iter().all(|(_, o)| *o == Observation::Down)
        {
            Observation::Down
        } else {
            Observation::Up
        };
        tracker.pop = tracker.pop.observe(pop_obs, rise, fall);
        for (service, obs) in &report.services {
            let phase = tracker
                .services
                .entry(service.clone())
                .or_insert(TargetPhase::Unknown);
            *phase = phase.observe(*obs, rise, fall);
        }
        tracker.last_report = Some(now);
        tracker.load_rps = report.load_rps;
        tracker.capacity_rps = report.capacity_rps;
        tracker.evidence.clone_from(&report.evidence);
        true
    }

    /// The health of every configured PoP as of `now`.
    pub fn snapshot(&self, now: Timestamp) -> HealthSnapshot {
        let pops = self
            .pops
            .iter()
            .map(|(id, t)| (id.clone(), self.report_for(t, now)))
            .collect();
        HealthSnapshot {
            pops,
            ..Default::default()
        }
    }

    fn report_for(&self, t: &PopTracker, now: Timestamp) -> PopHealthReport {
        let Some(last) = t.last_report else {
            return PopHealthReport::unknown();
        };
        let silent = now.since(last);
        let age = |state: TargetState| -> TargetState {
            if silent < self.settings.stale_after {
                return state;
            }
            if silent >= self.settings.stale_after + self.settings.max_stale {
                return TargetState::Down;
            }
            match state {
                TargetState::Up => TargetState::Stale {
                    last: StaleLast::Up,
                },
                TargetState::Down => TargetState::Stale {
                    last: StaleLast::Down,
                },
                other => other,
            }
        };
        let evidence = if silent >= self.settings.stale_after + self.settings.max_stale {
            format!(
                "silent for {}s (over stale_after + max_stale): treated as down",
                silent.as_secs()
            )
        } else if silent >= self.settings.stale_after {
            format!(
                "silent for {}s: keeping last state (fail static); last: {}",
                silent.as_secs(),
                t.evidence
            )
        } else {
            t.evidence.clone()
        };
        PopHealthReport {
            state: age(t.pop.settled()),
            services: t
                .services
                .iter()
                .map(|(s, phase)| (s.clone(), age(phase.settled())))
                .collect(),
            last_report: Some(last),
            load_rps: t.load_rps,
            reported_capacity_rps: t.capacity_rps,
            evidence,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn report(pop: &str, up: bool) -> ObservedReport {
        ObservedReport {
            pop: PopId::new(pop),
            services: vec![(
                ServiceId::new("app"),
                if up {
                    Observation::Up
                } else {
                    Observation::Down
                },
            )],
            load_rps: 0.0,
            capacity_rps: None,
            evidence: String::new(),
        }
    }

    fn agg(rise: u32, fall: u32) -> HealthAggregator {
        HealthAggregator::new(
            AggregatorSettings {
                rise,
                fall,
                stale_after: Duration::from_secs(10),
                max_stale: Duration::from_secs(60),
                unknown_health: steer_types::UnknownHealth::AssumeDown,
            },
            [PopId::new("fra1")],
        )
    }

    fn state(a: &HealthAggregator, now: i64) -> TargetState {
        a.snapshot(Timestamp(now)).pops[&PopId::new("fra1")].state
    }

    #[test]
    fn first_report_is_taken_at_face_value() {
        let mut a = agg(3, 3);
        assert_eq!(state(&a, 0), TargetState::Unknown);
        a.observe(&report("fra1", false), Timestamp(0));
        assert_eq!(state(&a, 0), TargetState::Down);
    }

    #[test]
    fn fall_needs_consecutive_failures() {
        let mut a = agg(2, 3);
        a.observe(&report("fra1", true), Timestamp(0));
        a.observe(&report("fra1", false), Timestamp(1));
        a.observe(&report("fra1", false), Timestamp(2));
        assert_eq!(state(&a, 2), TargetState::Up);
        a.observe(&report("fra1", true), Timestamp(3));
        a.observe(&report("fra1", false), Timestamp(4));
        a.observe(&report("fra1", false), Timestamp(5));
        assert_eq!(state(&a, 5), TargetState::Up, "an up resets the count");
        a.observe(&report("fra1", false), Timestamp(6));
        assert_eq!(state(&a, 6), TargetState::Down);
        a.observe(&report("fra1", true), Timestamp(7));
        assert_eq!(state(&a, 7), TargetState::Down);
        a.observe(&report("fra1", true), Timestamp(8));
        assert_eq!(state(&a, 8), TargetState::Up);
    }

    #[test]
    fn silence_is_stale_then_down() {
        let mut a = agg(1, 1);
        a.observe(&report("fra1", true), Timestamp(0));
        assert_eq!(state(&a, 9_999), TargetState::Up);
        assert_eq!(
            state(&a, 10_000),
            TargetState::Stale {
                last: StaleLast::Up
            }
        );
        assert_eq!(state(&a, 70_000), TargetState::Down);
    }

    #[test]
    fn unknown_pop_is_ignored() {
        let mut a = agg(1, 1);
        assert!(!a.observe(&report("nope", true), Timestamp(0)));
    }

    proptest::proptest! {
        /// Whatever the sequence, a target never changes state on fewer
        /// consecutive disagreeing observations than rise/fall demand.
        #[test]
        fn hysteresis_holds(rise in 1u32..5, fall in 1u32..5, obs in proptest::collection::vec(proptest::bool::ANY, 1..60)) {
            let mut a = agg(rise, fall);
            let mut prev = TargetState::Unknown;
            let mut run = 0u32;
            let mut last_obs: Option<bool> = None;
            for (i, up) in obs.iter().enumerate() {
                run = if last_obs == Some(*up) { run + 1 } else { 1 };
                last_obs = Some(*up);
                a.observe(&report("fra1", *up), Timestamp(i as i64));
                let now = state(&a, i as i64);
                if now != prev && prev != TargetState::Unknown {
                    let need = if *up { rise } else { fall };
                    proptest::prop_assert!(run >= need, "flipped after {run} < {need}");
                }
                prev = now;
            }
        }
    }
}
