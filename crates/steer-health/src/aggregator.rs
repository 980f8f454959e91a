//! Pure aggregation core: per-target hysteresis, staleness, flap damping,
//! peer quorum and the correlated-failure guard.
//!
//! Invariants:
//! - the first report about a target is taken at face value (no rise/fall
//!   wait from `Unknown`), so a fresh steerd converges in one report;
//! - afterwards a target changes state only after `rise` (or `fall`)
//!   consecutive observations that disagree with it;
//! - silence never flips a target by itself: it becomes `Stale` and keeps its
//!   last state until `max_stale` has also passed (fail static);
//! - a PoP whose state flips too often is held down (see [`Damping`]);
//! - a PoP that says it is up but that a strict majority (and at least two)
//!   of its fresh observers cannot reach is down (gray failure);
//! - when more than a configured share of PoPs turn down within one window,
//!   their last good state is held (see [`Guard`]).
//!
//! Suppression and gray failure show to the policy as `Down`; `phase` in
//! the snapshot carries the finer state for operators.

use std::collections::{BTreeMap, BTreeSet};

use steer_types::{
    PopId, RegionId, ServiceId, Timestamp,
    health::{HealthSnapshot, LoadFigures, PeerView, PopHealthReport, StaleLast, TargetState},
    health_guard::{FreezeInfo, HealthGuards},
};

use crate::{
    damping::Damping,
    guard::{Guard, GuardEvent},
};

/// One observation of a target, after validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Observation {
    Up,
    Down,
}

/// What one agent saw when probing another PoP's VIP.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeerObservation {
    pub target: PopId,
    pub reachable: bool,
    pub detail: String,
    pub latency_ms: u32,
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
    #[serde(default)]
    pub load: LoadFigures,
    #[serde(default)]
    pub peers: Vec<PeerObservation>,
    /// Request counters for SLIs, per service, as the agent read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sli: Vec<SliCounters>,
    /// `load_rps` by client region, where the agent attributes it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub region_load: BTreeMap<RegionId, f64>,
}

/// Cumulative request counters of one service at a PoP, as the edge
/// proxy exposes them (see `steer_slo::counters`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SliCounters {
    pub service: ServiceId,
    pub total: u64,
    pub failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow: Option<u64>,
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

fn usable(state: TargetState) -> bool {
    matches!(
        state,
        TargetState::Up
            | TargetState::Stale {
                last: StaleLast::Up
            }
    )
}

#[derive(Clone, Debug)]
struct PopTracker {
    pop: TargetPhase,
    services: BTreeMap<ServiceId, TargetPhase>,
    last_report: Option<Timestamp>,
    load_rps: f64,
    capacity_rps: Option<f64>,
    load: LoadFigures,
    region_load: BTreeMap<RegionId, f64>,
    evidence: String,
    damping: Damping,
    /// Latest observation of this PoP by each other PoP's agent.
    seen_by: BTreeMap<PopId, PeerView>,
    /// Policy-facing state at the last evaluation (before any freeze).
    last_effective: TargetState,
    /// Last usable (state, per-service states), held while frozen.
    last_good: Option<(TargetState, BTreeMap<ServiceId, TargetState>)>,
    /// When it last turned from usable to down, until confirmed or recovered.
    went_down_at: Option<Timestamp>,
}

impl PopTracker {
    fn new() -> Self {
        Self {
            pop: TargetPhase::Unknown,
            services: BTreeMap::new(),
            last_report: None,
            load_rps: 0.0,
            capacity_rps: None,
            load: LoadFigures::default(),
            region_load: BTreeMap::new(),
            evidence: String::new(),
            damping: Damping::Clear,
            seen_by: BTreeMap::new(),
            last_effective: TargetState::Unknown,
            last_good: None,
            went_down_at: None,
        }
    }
}

/// A change of a PoP's policy-facing state, found by [`HealthAggregator::evaluate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub pop: PopId,
    pub from: TargetState,
    pub to: TargetState,
    pub phase: String,
}

/// Owns per-PoP health. Lives inside the control loop; never shared.
#[derive(Clone, Debug)]
pub struct HealthAggregator {
    settings: AggregatorSettings,
    pops: BTreeMap<PopId, PopTracker>,
    guard: Guard,
}

impl HealthAggregator {
    /// `pops` are the configured PoPs; reports for others are ignored.
    pub fn new(settings: AggregatorSettings, pops: impl IntoIterator<Item = PopId>) -> Self {
        Self {
            settings,
            pops: pops.into_iter().map(|p| (p, PopTracker::new())).collect(),
            guard: Guard::Watching,
        }
    }

    /// Sets damping and correlated-failure settings.
    pub fn set_guards(&mut self, guards: HealthGuards) {
        self.settings.guards = guards;
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
        if let Guard::Frozen { held, .. } = &mut self.guard {
            held.retain(|p| self.pops.contains_key(p));
        }
    }

    /// Applies one report received at `now`. Returns false if the PoP is not
    /// configured.
    pub fn observe(&mut self, report: &ObservedReport, now: Timestamp) -> bool {
        let (rise, fall) = (self.settings.rise, self.settings.fall);
        let damping = self.settings.guards.damping;
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
        let before = tracker.pop.settled();
        tracker.pop = tracker.pop.observe(pop_obs, rise, fall);
        let after = tracker.pop.settled();
        if before != after && before != TargetState::Unknown {
            tracker.damping = tracker.damping.flap(now, &damping);
        }
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
        tracker.load = report.load;
        tracker.region_load.clone_from(&report.region_load);
        tracker.evidence.clone_from(&report.evidence);
        for seen in &report.peers {
            if seen.target == report.pop {
                continue;
            }
            if let Some(target) = self.pops.get_mut(&seen.target) {
                target.seen_by.insert(
                    report.pop.clone(),
                    PeerView {
                        observer: report.pop.clone(),
                        reachable: seen.reachable,
                        detail: seen.detail.clone(),
                        latency_ms: seen.latency_ms,
                        at: now,
                    },
                );
            }
        }
        true
    }

    /// Finds state transitions since the last evaluation and runs the
    /// correlated-failure guard. Call before every `snapshot` that feeds
    /// the policy, with the same `now`.
    pub fn evaluate(&mut self, now: Timestamp) -> (Vec<Transition>, Option<GuardEvent>) {
        let mut transitions = Vec::new();
        let window = self.settings.guards.correlation.window;
        let raw: Vec<(PopId, PopHealthReport)> = self
            .pops
            .iter()
            .map(|(id, t)| (id.clone(), self.raw_report(t, now)))
            .collect();
        for (id, report) in raw {
            let Some(t) = self.pops.get_mut(&id) else {
                continue;
            };
            if report.state != t.last_effective {
                transitions.push(Transition {
                    pop: id.clone(),
                    from: t.last_effective,
                    to: report.state,
                    phase: report.phase.clone(),
                });
            }
            if usable(report.state) {
                t.last_good = Some((report.state, report.services.clone()));
                t.went_down_at = None;
            } else if usable(t.last_effective) && report.state == TargetState::Down {
                t.went_down_at = Some(now);
            }
            if t.went_down_at.is_some_and(|at| now.since(at) > window) && !self.guard.holds(&id) {
                t.went_down_at = None;
            }
            t.last_effective = report.state;
        }
        let event = self.run_guard(now);
        (transitions, event)
    }

    fn run_guard(&mut self, now: Timestamp) -> Option<GuardEvent> {
        let settings = self.settings.guards.correlation;
        let recent: BTreeSet<PopId> = self
            .pops
            .iter()
            .filter(|(_, t)| t.went_down_at.is_some() && t.last_effective == TargetState::Down)
            .map(|(id, _)| id.clone())
            .collect();
        match &mut self.guard {
            Guard::Watching => {
                let total = self.pops.len();
                let share = recent.len() as f64 / total.max(1) as f64;
                // One PoP failing is never a correlated failure.
                if !settings.enabled || recent.len() < 2 || share <= settings.max_down_share {
                    return None;
                }
                let why = format!(
                    "{} of {} PoPs ({:.0}%) turned down within {}s (limit {:.0}%): {}; \
                     holding their last good health until an operator confirms \
                     (steerctl confirm-failure)",
                    recent.len(),
                    total,
                    share * 100.0,
                    settings.window.as_secs_f64(),
                    settings.max_down_share * 100.0,
                    recent
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                self.guard = Guard::Frozen {
                    since: now,
                    held: recent,
                    why,
                };
                self.guard.info().map(GuardEvent::Froze)
            }
            Guard::Frozen { held, .. } => {
                // While the signal is suspect, any further PoP turning down is
                // part of the same event.
                held.extend(recent);
                let still_down = held
                    .iter()
                    .any(|p| self.pops.get(p).is_some_and(|t| !usable(t.last_effective)));
                if still_down {
                    None
                } else {
                    self.guard = Guard::Watching;
                    Some(GuardEvent::Thawed)
                }
            }
        }
    }

    /// An operator confirmed the failure: live health applies again.
    /// Returns what was frozen, or `None` if nothing was.
    pub fn confirm_failure(&mut self) -> Option<FreezeInfo> {
        let info = self.guard.info()?;
        for p in &info.pops {
            if let Some(t) = self.pops.get_mut(p) {
                t.went_down_at = None;
            }
        }
        self.guard = Guard::Watching;
        Some(info)
    }

    /// Set while the correlated-failure guard holds health.
    pub fn frozen(&self) -> Option<FreezeInfo> {
        self.guard.info()
    }

    /// The health of every configured PoP as of `now`.
    pub fn snapshot(&self, now: Timestamp) -> HealthSnapshot {
        let pops = self
            .pops
            .iter()
            .map(|(id, t)| {
                let mut report = self.raw_report(t, now);
                if self.guard.holds(id)
                    && !usable(report.state)
                    && let Some((state, services)) = &t.last_good
                {
                    report.evidence = format!(
                        "frozen by the correlated-failure guard at last good state; live: {} ({})",
                        report.phase, report.evidence
                    );
                    report.state = *state;
                    report.services.clone_from(services);
                    report.phase = "frozen".into();
                }
                (id.clone(), report)
            })
            .collect();
        HealthSnapshot {
            pops,
            ..Default::default()
        }
    }

    /// The gray-failure verdict: `Some(evidence)` if a strict majority (and
    /// at least two) of the fresh observers cannot reach the PoP.
    fn gray_failure(&self, t: &PopTracker, now: Timestamp) -> Option<String> {
        let fresh: Vec<&PeerView> = t
            .seen_by
            .values()
            .filter(|v| now.since(v.at) < self.settings.stale_after)
            .collect();
        let failing: Vec<&PeerView> = fresh.iter().copied().filter(|v| !v.reachable).collect();
        if failing.len() < 2 || failing.len() * 2 <= fresh.len() {
            return None;
        }
        Some(format!(
            "gray failure: {} of {} observers cannot reach it ({})",
            failing.len(),
            fresh.len(),
            failing
                .iter()
                .map(|v| format!("{}: {}", v.observer, v.detail))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    }

    /// Health before the correlated-failure guard.
    fn raw_report(&self, t: &PopTracker, now: Timestamp) -> PopHealthReport {
        let Some(last) = t.last_report else {
            let mut r = PopHealthReport::unknown();
            r.peers = t.seen_by.values().cloned().collect();
            return r;
        };
        let silent = now.since(last);
        let expired = silent >= self.settings.stale_after + self.settings.max_stale;
        let stale = silent >= self.settings.stale_after;
        let age = |state: TargetState| -> TargetState {
            if expired {
                return TargetState::Down;
            }
            match state {
                TargetState::Up if stale => TargetState::Stale {
                    last: StaleLast::Up,
                },
                TargetState::Down if stale => TargetState::Stale {
                    last: StaleLast::Down,
                },
                other => other,
            }
        };
        let damping = &self.settings.guards.damping;
        let suppressed = t.damping.suppressed(now, damping);
        let mut state = age(t.pop.settled());
        let mut services: BTreeMap<ServiceId, TargetState> = t
            .services
            .iter()
            .map(|(s, phase)| (s.clone(), age(phase.settled())))
            .collect();
        let mut phase = state_name(state).to_owned();
        let mut evidence = if expired {
            format!(
                "silent for {}s (over stale_after + max_stale): treated as down",
                silent.as_secs()
            )
        } else if stale {
            format!(
                "silent for {}s: keeping last state (fail static); last: {}",
                silent.as_secs(),
                t.evidence
            )
        } else {
            t.evidence.clone()
        };
        let held_down = if !usable(state) {
            None
        } else if suppressed {
            Some((t.damping.describe(now, damping), "suppressed"))
        } else {
            self.gray_failure(t, now).map(|why| (why, "gray-failure"))
        };
        if let Some((why, name)) = held_down {
            let down = match state {
                TargetState::Stale { .. } => TargetState::Stale {
                    last: StaleLast::Down,
                },
                _ => TargetState::Down,
            };
            state = down;
            for s in services.values_mut() {
                *s = down;
            }
            phase = name.to_owned();
            evidence = format!("{why}; agent says: {evidence}");
        }
        PopHealthReport {
            state,
            services,
            last_report: Some(last),
            load_rps: t.load_rps,
            reported_capacity_rps: t.capacity_rps,
            evidence,
            phase,
            peers: t.seen_by.values().cloned().collect(),
            load: t.load,
            region_load: t.region_load.clone(),
        }
    }
}

fn state_name(state: TargetState) -> &'static str {
    match state {
        TargetState::Unknown => "unknown",
        TargetState::Up => "up",
        TargetState::Down => "down",
        TargetState::Stale {
            last: StaleLast::Up,
        } => "stale-up",
        TargetState::Stale {
            last: StaleLast::Down,
        } => "stale-down",
    }
}

#[cfg(test)]
#[path = "aggregator_tests.rs"]
mod tests;
