//! Every configured SLO's history, fed by the agents' cumulative counters.
//!
//! One [`Baseline`] per (PoP, service) turns counters into increments; the
//! increments go into each SLO whose service and scope they match: one
//! full history per SLO (minute buckets for the alert windows, hour
//! buckets for the SLO window) and a short one per SLO × PoP (which PoP is
//! burning, for budget-aware steering and the operator). The state is one
//! serializable value, persisted by the control plane, so a restart or a
//! failover loses no budget history.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};
use steer_types::Timestamp;

use crate::{
    counters::{Baseline, Cumulative},
    eval::{Evaluation, evaluate},
    history::{Counts, History},
    spec::{Correction, SloSpec},
};

/// What one agent report says about one service's traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliSample {
    pub total: u64,
    pub failed: u64,
    pub slow: Option<u64>,
}

/// How long an SLO's fine buckets reach back: the longest page window.
const POP_HORIZON: Duration = Duration::from_secs(6 * 3600 + 600);

/// The persisted part: histories, baselines and corrections.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SloState {
    /// Per SLO name.
    pub histories: BTreeMap<String, History>,
    /// Per SLO name, then PoP.
    pub pop_histories: BTreeMap<String, BTreeMap<String, History>>,
    /// Per `pop/service`.
    pub baselines: BTreeMap<String, BaselinePair>,
    pub corrections: Vec<Correction>,
}

/// The availability and latency counters of one source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselinePair {
    pub availability: Baseline,
    pub latency: Baseline,
}

/// The SLO engine: specs plus state.
#[derive(Clone, Debug)]
pub struct SloEngine {
    specs: Vec<SloSpec>,
    /// Region of each PoP, for region-scoped SLOs.
    pop_region: BTreeMap<String, String>,
    state: SloState,
    /// Scratch for a source's key (`pop/service`).
    key: String,
    /// Indexes into `specs` per service.
    by_service: std::collections::HashMap<String, Vec<usize>>,
}

fn index_by_service(specs: &[SloSpec]) -> std::collections::HashMap<String, Vec<usize>> {
    let mut out: std::collections::HashMap<String, Vec<usize>> = Default::default();
    for (i, s) in specs.iter().enumerate() {
        out.entry(s.service.clone()).or_default().push(i);
    }
    out
}

impl SloEngine {
    pub fn new(specs: Vec<SloSpec>, pop_region: BTreeMap<String, String>) -> Self {
        let mut engine = Self {
            by_service: index_by_service(&specs),
            specs,
            pop_region,
            state: SloState::default(),
            key: String::new(),
        };
        engine.ensure_histories();
        engine
    }

    fn fine_width(spec: &SloSpec) -> i64 {
        crate::history::fine_width_for(
            spec.alerts
                .iter()
                .map(|r| r.short)
                .chain(spec.steering.as_ref().map(|st| st.window))
                .min()
                .unwrap_or(Duration::from_secs(300)),
        )
    }

    /// Per-PoP histories answer the shortest alert window (which PoP is
    /// burning, for operators) and the steering window: their fine buckets
    /// reach back twice the longer of those, plus ten minutes.
    fn pop_shape(spec: &SloSpec) -> (i64, Duration) {
        let longest = spec
            .alerts
            .iter()
            .map(|r| r.short)
            .min()
            .unwrap_or(Duration::from_secs(300))
            .max(
                spec.steering
                    .as_ref()
                    .map_or(Duration::ZERO, |st| st.window),
            );
        (
            Self::fine_width(spec),
            longest * 2 + Duration::from_secs(600),
        )
    }

    fn full_history(spec: &SloSpec) -> History {
        let longest_rule = spec.alerts.iter().map(|r| r.long).max().unwrap_or_default();
        History::with_fine_width(
            Self::fine_width(spec),
            POP_HORIZON,
            spec.window.max(longest_rule) + Duration::from_secs(3600),
        )
    }

    fn ensure_histories(&mut self) {
        for spec in &self.specs {
            self.state
                .histories
                .entry(spec.name.clone())
                .or_insert_with(|| Self::full_history(spec));
        }
        // SLOs no longer configured are dropped with their history.
        let names: std::collections::BTreeSet<&String> =
            self.specs.iter().map(|s| &s.name).collect();
        self.state.histories.retain(|k, _| names.contains(k));
        self.state.pop_histories.retain(|k, _| names.contains(k));
        // Per-PoP histories of another shape (a changed steering or alert
        // window) start over: they hold minutes, the SLO's own history
        // keeps the budget.
        for spec in &self.specs {
            let (width, keep) = Self::pop_shape(spec);
            let keep = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX / 4);
            if let Some(pops) = self.state.pop_histories.get_mut(&spec.name) {
                pops.retain(|_, h| h.fine_shape() == (width, keep));
            }
        }
    }

    /// Starts from persisted state (histories of SLOs still configured are
    /// kept; a changed window takes effect as buckets age).
    pub fn restore(&mut self, state: SloState) {
        self.state = state;
        self.ensure_histories();
    }

    /// New specs (a reload), keeping the history of SLOs that stay.
    pub fn reconfigure(&mut self, specs: Vec<SloSpec>, pop_region: BTreeMap<String, String>) {
        self.by_service = index_by_service(&specs);
        self.specs = specs;
        self.pop_region = pop_region;
        self.ensure_histories();
    }

    pub fn specs(&self) -> &[SloSpec] {
        &self.specs
    }

    pub fn state(&self) -> &SloState {
        &self.state
    }

    /// Feeds one report's counters for `service` at `pop`; `recorded` is
    /// told the events each SLO took (for counters).
    pub fn observe(
        &mut self,
        pop: &str,
        service: &str,
        sample: SliSample,
        at: Timestamp,
        recorded: &mut dyn FnMut(&str, Counts),
    ) {
        let Some(indexes) = self.by_service.get(service) else {
            return;
        };
        // Reports are small and frequent: no allocation once a source and
        // its histories exist.
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        key.push_str(pop);
        key.push('/');
        key.push_str(service);
        if !self.state.baselines.contains_key(key.as_str()) {
            self.state
                .baselines
                .insert(key.clone(), BaselinePair::default());
        }
        let Some(base) = self.state.baselines.get_mut(key.as_str()) else {
            self.key = key;
            return;
        };
        self.key = key;
        let availability = base.availability.advance(Cumulative {
            total: sample.total,
            bad: sample.failed.min(sample.total),
        });
        let latency = sample.slow.map(|slow| {
            base.latency.advance(Cumulative {
                total: sample.total,
                bad: slow.min(sample.total),
            })
        });
        let region = self.pop_region.get(pop);
        for spec in indexes.iter().filter_map(|&i| self.specs.get(i)) {
            if spec.pop.as_deref().is_some_and(|p| p != pop)
                || spec
                    .region
                    .as_ref()
                    .is_some_and(|r| region.is_none_or(|pr| pr != r))
            {
                continue;
            }
            let counts: Counts = match spec.objective {
                crate::Objective::Availability { .. } => availability,
                // A latency SLO with no latency counters gets no data.
                crate::Objective::Latency { .. } => match latency {
                    Some(c) => c,
                    None => continue,
                },
            };
            if counts.total == 0 {
                continue;
            }
            if let Some(h) = self.state.histories.get_mut(&spec.name) {
                h.record(at, counts);
            }
            recorded(&spec.name, counts);
            let pops = match self.state.pop_histories.get_mut(&spec.name) {
                Some(pops) => pops,
                None => self
                    .state
                    .pop_histories
                    .entry(spec.name.clone())
                    .or_default(),
            };
            match pops.get_mut(pop) {
                Some(h) => h.record(at, counts),
                None => {
                    let (width, keep) = Self::pop_shape(spec);
                    let mut h = History::with_fine_width(width, keep, Duration::ZERO);
                    h.record(at, counts);
                    pops.insert(pop.to_owned(), h);
                }
            }
        }
    }

    /// Adds a correction; refused when the SLO is unknown or the range is
    /// empty.
    pub fn correct(&mut self, correction: Correction) -> Result<(), String> {
        if !self.specs.iter().any(|s| s.name == correction.slo) {
            return Err(format!("no SLO {:?}", correction.slo));
        }
        if correction.end.0 <= correction.start.0 {
            return Err("a correction needs its end after its start".into());
        }
        self.state.corrections.push(correction);
        Ok(())
    }

    /// Takes back a correction [`correct`](Self::correct) added (it could
    /// not be stored, so it must not count).
    pub fn withdraw_correction(&mut self, correction: &Correction) {
        if let Some(i) = self.state.corrections.iter().rposition(|c| c == correction) {
            self.state.corrections.remove(i);
        }
    }

    /// Drops corrections that no window can reach any more.
    pub fn expire_corrections(&mut self, now: Timestamp) {
        let longest = self
            .specs
            .iter()
            .map(|s| s.window)
            .max()
            .unwrap_or_default();
        let horizon =
            now.0 - i64::try_from(longest.as_millis()).unwrap_or(i64::MAX / 4) - 3_600_000;
        self.state.corrections.retain(|c| c.end.0 >= horizon);
    }

    /// Every SLO evaluated at `now`.
    pub fn evaluate(&self, now: Timestamp) -> Vec<Evaluation> {
        let empty = History::new(Duration::ZERO, Duration::ZERO);
        self.specs
            .iter()
            .map(|spec| {
                let h = self.state.histories.get(&spec.name).unwrap_or(&empty);
                evaluate(spec, h, &self.state.corrections, now)
            })
            .collect()
    }

    /// The corrections of `slo`.
    fn corrections_of(&self, slo: &str) -> Vec<&Correction> {
        self.state
            .corrections
            .iter()
            .filter(|c| c.slo == slo)
            .collect()
    }

    /// Events of `slo` per PoP from `since` to `at`, less corrections (a
    /// staged change's canary and baseline scopes). Buckets are counted
    /// whole: the one `since` falls in is included, so a span shorter than
    /// a bucket still sees its events (and some from just before).
    pub fn pop_events(&self, slo: &str, since: Timestamp, at: Timestamp) -> Vec<(String, Counts)> {
        let mine = self.corrections_of(slo);
        self.state
            .pop_histories
            .get(slo)
            .map(|pops| {
                pops.iter()
                    .map(|(pop, h)| {
                        let (width, _) = h.fine_shape();
                        let span = at.since(since)
                            + Duration::from_millis(u64::try_from(width).unwrap_or(0));
                        (pop.clone(), h.window(at, span, &mine))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Burn rate of each PoP's traffic for `slo` over `window`, with its
    /// event count (for budget-aware steering and the operator).
    pub fn pop_burn(&self, slo: &str, window: Duration, now: Timestamp) -> Vec<(String, f64, u64)> {
        let Some(spec) = self.specs.iter().find(|s| s.name == slo) else {
            return Vec::new();
        };
        let mine = self.corrections_of(slo);
        let share = spec.objective.budget_share();
        self.state
            .pop_histories
            .get(slo)
            .map(|pops| {
                pops.iter()
                    .map(|(pop, h)| {
                        let c = h.window(now, window, &mine);
                        let burn = if share > 0.0 {
                            c.bad_ratio() / share
                        } else {
                            0.0
                        };
                        (pop.clone(), burn, c.total)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Objective, Severity};

    const MIN: i64 = 60_000;

    fn engine() -> SloEngine {
        let mut lat = SloSpec::new(
            "app-fast",
            "app",
            Objective::Latency {
                target: 0.99,
                threshold: Duration::from_millis(300),
            },
        );
        lat.min_events = 10;
        let mut eu = SloSpec::new("app-eu", "app", Objective::Availability { target: 0.999 });
        eu.region = Some("eu-west".into());
        let all = SloSpec::new("app", "app", Objective::Availability { target: 0.999 });
        SloEngine::new(
            vec![all, eu, lat],
            [("fra1", "eu-west"), ("iad1", "us-east")]
                .map(|(p, r)| (p.to_owned(), r.to_owned()))
                .into(),
        )
    }

    fn feed(e: &mut SloEngine, pop: &str, minutes: std::ops::Range<i64>, rps: u64, bad: f64) {
        // Cumulative counters continue from where this PoP's last feed left.
        let mut cum = LAST
            .with(|l| l.borrow().get(pop).copied())
            .unwrap_or_default();
        for m in minutes {
            let total = rps * 60;
            let failed = (total as f64 * bad) as u64;
            cum.0 += total;
            cum.1 += failed;
            cum.2 += failed;
            e.observe(
                pop,
                "app",
                SliSample {
                    total: cum.0,
                    failed: cum.1,
                    slow: Some(cum.2),
                },
                Timestamp(m * MIN),
                &mut |_, _| {},
            );
        }
        LAST.with(|l| l.borrow_mut().insert(pop.to_owned(), cum));
    }

    thread_local! {
        static LAST: std::cell::RefCell<BTreeMap<String, (u64, u64, u64)>> =
            const { std::cell::RefCell::new(BTreeMap::new()) };
    }

    #[test]
    fn scopes_pops_and_persistence() {
        LAST.with(|l| l.borrow_mut().clear());
        let mut e = engine();
        // fra1 (eu-west) fails 20% for ten minutes after a clean hour; iad1
        // stays clean.
        feed(&mut e, "fra1", 0..60, 10, 0.0);
        feed(&mut e, "iad1", 0..70, 10, 0.0);
        feed(&mut e, "fra1", 60..70, 10, 0.2);
        let now = Timestamp(70 * MIN);
        let evals = e.evaluate(now);
        let by = |n: &str| evals.iter().find(|x| x.slo == n).cloned().expect("slo");
        // The EU SLO sees only fra1's traffic: it burns harder than the
        // global one.
        let eu = by("app-eu");
        let all = by("app");
        assert!(
            eu.burns[2].burn_rate > all.burns[2].burn_rate * 1.5,
            "{eu:?} {all:?}"
        );
        assert_eq!(eu.firing(), Some(Severity::Page));
        // The latency SLO uses the slow counter.
        assert!(by("app-fast").window_counts.bad > 0);
        // Per PoP: fra1 burns, iad1 does not.
        let pops = e.pop_burn("app", Duration::from_secs(600), now);
        let fra = pops.iter().find(|p| p.0 == "fra1").expect("fra1");
        let iad = pops.iter().find(|p| p.0 == "iad1").expect("iad1");
        assert!(fra.1 > 100.0 && iad.1 == 0.0, "{pops:?}");

        // Persisted and restored: the same evaluation.
        let json = serde_json::to_string(e.state()).expect("serialize");
        let mut back = engine();
        back.restore(serde_json::from_str(&json).expect("deserialize"));
        assert_eq!(back.evaluate(now), evals);
    }

    #[test]
    fn corrections_are_checked_and_expire() {
        let mut e = engine();
        let c = |slo: &str, start: i64, end: i64| Correction {
            slo: slo.into(),
            start: Timestamp(start),
            end: Timestamp(end),
            reason: "maintenance".into(),
            principal: "alice".into(),
        };
        assert!(e.correct(c("nosuch", 0, 10)).is_err());
        assert!(e.correct(c("app", 10, 10)).is_err());
        assert!(e.correct(c("app", 0, 10)).is_ok());
        e.expire_corrections(Timestamp(30 * 86_400_000));
        assert!(e.state().corrections.is_empty());
    }
}
