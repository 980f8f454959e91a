//! Budget-aware steering: which PoPs lose how much of a service's traffic
//! because their errors burn an SLO's budget while other PoPs serve well.
//!
//! This is the gray failure health checks miss: probes pass, users get 5%
//! errors. Per SLO with [`Steering`](crate::Steering) configured, every
//! evaluation looks at each PoP's burn rate over the steering window:
//!
//! - a PoP burning at least `burn_rate`, with enough events to judge
//!   (`min_events`) and another PoP of the SLO burning under
//!   `release_below`, gets `max_shift` of its traffic moved (the policy
//!   moves it within the other PoPs' capacity targets and the step rails);
//! - a PoP burning under `release_below` gets a quarter of `max_shift`
//!   back per evaluation, so recovery is gradual;
//! - in between, or without enough events (too little traffic is no
//!   evidence either way), the shift holds: hysteresis, no flapping;
//! - when no PoP serves well, moving traffic helps nobody: the shift is
//!   given back the same way.
//!
//! The burn rate is a ratio of the PoP's own events, so moving traffic
//! away does not change it: there is no feedback from the shift to the
//! signal, and so nothing to oscillate. What is left at the PoP keeps
//! measuring it.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use crate::SloSpec;

/// One PoP's shifted share of one service's traffic, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetShift {
    pub slo: String,
    pub service: String,
    pub pop: String,
    /// Share of the PoP's traffic to move elsewhere, in (0, 1).
    pub share: f64,
    /// The PoP's burn rate over the steering window at the last
    /// evaluation, and the events behind it.
    pub burn_rate: f64,
    pub events: u64,
    pub window: Duration,
}

/// The shifts in force, per (SLO, PoP).
#[derive(Clone, Debug, Default)]
pub struct BudgetSteering {
    shifts: BTreeMap<(String, String), f64>,
}

/// Each PoP's burn rate for an SLO over a window, with its event count.
pub type PopBurns<'a> = dyn Fn(&SloSpec, Duration) -> Vec<(String, f64, u64)> + 'a;

/// Evaluations a full give-back takes.
const RELEASE_STEPS: f64 = 4.0;

impl BudgetSteering {
    /// One evaluation. `burns(spec, window)` gives each PoP's burn rate
    /// for the SLO over `window` with its event count (see
    /// [`SloEngine::pop_burn`](crate::SloEngine::pop_burn)). Returns the
    /// shifts in force, in (SLO, PoP) order.
    pub fn update(&mut self, specs: &[SloSpec], burns: &PopBurns<'_>) -> Vec<BudgetShift> {
        // SLOs no longer steering forget their shifts.
        self.shifts
            .retain(|(slo, _), _| specs.iter().any(|s| &s.name == slo && s.steering.is_some()));
        let mut out = Vec::new();
        for spec in specs {
            let Some(st) = &spec.steering else { continue };
            let burns = burns(spec, st.window);
            let judged = |events: u64| events >= spec.min_events.max(1);
            let step = st.max_shift / RELEASE_STEPS;
            let mut seen: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
            for (pop, burn, events) in &burns {
                seen.insert(pop.as_str(), (*burn, *events));
                let good_elsewhere = burns.iter().any(|(other, b, e)| {
                    other != pop && judged(*e) && b.is_finite() && *b < st.release_below
                });
                let key = (spec.name.clone(), pop.clone());
                let current = self.shifts.get(&key).copied().unwrap_or(0.0);
                let next = if !judged(*events) || !burn.is_finite() {
                    current
                } else if *burn >= st.burn_rate && good_elsewhere {
                    st.max_shift
                } else if *burn < st.release_below || !good_elsewhere {
                    current - step
                } else {
                    current
                };
                let next = next.clamp(0.0, st.max_shift);
                if next > 1e-9 {
                    self.shifts.insert(key, next);
                } else {
                    self.shifts.remove(&key);
                }
            }
            for ((slo, pop), share) in &mut self.shifts {
                if slo != &spec.name {
                    continue;
                }
                // A reload may have lowered the bound.
                *share = share.min(st.max_shift);
                let (burn_rate, events) = seen.get(pop.as_str()).copied().unwrap_or((0.0, 0));
                out.push(BudgetShift {
                    slo: slo.clone(),
                    service: spec.service.clone(),
                    pop: pop.clone(),
                    share: *share,
                    burn_rate,
                    events,
                    window: st.window,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Objective, Steering};
    use proptest::prelude::*;

    fn spec() -> SloSpec {
        let mut s = SloSpec::new("app", "app", Objective::Availability { target: 0.999 });
        s.min_events = 100;
        s.steering = Some(Steering {
            max_shift: 0.8,
            ..Steering::new(10.0)
        });
        s
    }

    fn step(
        st: &mut BudgetSteering,
        specs: &[SloSpec],
        pops: &[(&str, f64, u64)],
    ) -> BTreeMap<String, f64> {
        let burns: Vec<(String, f64, u64)> = pops
            .iter()
            .map(|(p, b, e)| (p.to_string(), *b, *e))
            .collect();
        st.update(specs, &|_, _| burns.clone())
            .into_iter()
            .map(|s| (s.pop, (s.share * 1000.0).round() / 1000.0))
            .collect()
    }

    #[test]
    fn a_burning_pop_loses_traffic_and_gets_it_back_gradually() {
        let specs = [spec()];
        let mut st = BudgetSteering::default();
        let clean = [("fra1", 0.0, 1000), ("ams1", 0.2, 1000)];
        assert!(step(&mut st, &specs, &clean).is_empty());
        // fra1 serves 5% errors on a 0.1% budget: 50x.
        let burning = [("fra1", 50.0, 1000), ("ams1", 0.2, 1000)];
        assert_eq!(step(&mut st, &specs, &burning)["fra1"], 0.8);
        // Still burning with less traffic (it was moved): holds.
        let burning = [("fra1", 50.0, 200), ("ams1", 0.2, 1800)];
        assert_eq!(step(&mut st, &specs, &burning)["fra1"], 0.8);
        // Too few events to judge: holds (no data is not recovery).
        let quiet = [("fra1", 0.0, 20), ("ams1", 0.2, 1800)];
        assert_eq!(step(&mut st, &specs, &quiet)["fra1"], 0.8);
        // Between release (5x) and trigger (10x): holds.
        let middling = [("fra1", 7.0, 200), ("ams1", 0.2, 1800)];
        assert_eq!(step(&mut st, &specs, &middling)["fra1"], 0.8);
        // Recovered: a quarter back per evaluation.
        let fixed = [("fra1", 0.5, 200), ("ams1", 0.2, 1800)];
        let mut shares = Vec::new();
        for _ in 0..5 {
            shares.push(step(&mut st, &specs, &fixed).get("fra1").copied());
        }
        assert_eq!(shares, [Some(0.6), Some(0.4), Some(0.2), None, None]);
    }

    #[test]
    fn nothing_moves_when_every_pop_burns_or_none_is_judged() {
        let specs = [spec()];
        let mut st = BudgetSteering::default();
        // A bad origin: every PoP fails alike; moving helps nobody.
        let all = [("fra1", 50.0, 1000), ("ams1", 40.0, 1000)];
        assert!(step(&mut st, &specs, &all).is_empty());
        // The only other PoP has too little traffic to vouch for.
        let thin = [("fra1", 50.0, 1000), ("ams1", 0.0, 10)];
        assert!(step(&mut st, &specs, &thin).is_empty());
        // Engaged, then the others start burning too: given back.
        let one = [("fra1", 50.0, 1000), ("ams1", 0.0, 1000)];
        assert_eq!(step(&mut st, &specs, &one)["fra1"], 0.8);
        let both = [("fra1", 50.0, 1000), ("ams1", 30.0, 1000)];
        assert_eq!(step(&mut st, &specs, &both)["fra1"], 0.6);
    }

    #[test]
    fn unconfigured_slos_forget_their_shifts_and_bounds_follow_reloads() {
        let mut specs = vec![spec()];
        let mut st = BudgetSteering::default();
        let burning = [("fra1", 50.0, 1000), ("ams1", 0.0, 1000)];
        assert_eq!(step(&mut st, &specs, &burning)["fra1"], 0.8);
        if let Some(s) = specs[0].steering.as_mut() {
            s.max_shift = 0.3;
        }
        let holding = [("fra1", 7.0, 1000), ("ams1", 0.0, 1000)];
        assert_eq!(step(&mut st, &specs, &holding)["fra1"], 0.3);
        specs[0].steering = None;
        assert!(step(&mut st, &specs, &burning).is_empty());
        specs[0].steering = Some(Steering::new(10.0));
        // Starts from nothing, engages at the default bound.
        assert_eq!(step(&mut st, &specs, &burning)["fra1"], 0.5);
    }

    proptest! {
        /// Whatever the burns, shares stay within (0, max_shift], a PoP
        /// with too few events never changes, and a PoP gains a shift only
        /// when it burns at the trigger while another serves well.
        #[test]
        fn shifts_are_bounded_and_only_evidence_moves_them(
            rounds in proptest::collection::vec(
                proptest::collection::vec((0.0f64..100.0, 0u64..300), 3),
                1..30,
            )
        ) {
            let specs = [spec()];
            let mut st = BudgetSteering::default();
            let names = ["a", "b", "c"];
            let mut before: BTreeMap<String, f64> = BTreeMap::new();
            for round in rounds {
                let pops: Vec<(&str, f64, u64)> = names
                    .iter()
                    .zip(&round)
                    .map(|(n, (b, e))| (*n, *b, *e))
                    .collect();
                let after = step(&mut st, &specs, &pops);
                for (i, (pop, burn, events)) in pops.iter().enumerate() {
                    let was = before.get(*pop).copied().unwrap_or(0.0);
                    let now = after.get(*pop).copied().unwrap_or(0.0);
                    prop_assert!((0.0..=0.8).contains(&now));
                    if *events < 100 {
                        prop_assert_eq!(was, now);
                    }
                    if now > was {
                        prop_assert!(*burn >= 10.0);
                        let others_good = pops
                            .iter()
                            .enumerate()
                            .any(|(j, (_, b, e))| j != i && *e >= 100 && *b < 5.0);
                        prop_assert!(others_good);
                    }
                }
                before = after;
            }
        }
    }
}
