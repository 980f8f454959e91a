//! Requests at the PoPs: the cumulative counters agents report as SLIs
//! (as an edge proxy's Prometheus endpoint exposes them) and the failures
//! users got, with the world's SLOs and their steering.

use std::time::Duration;

use serde::Serialize;
use steer_health::SliCounters;
use steer_slo::{Objective, SloSpec, Steering};
use steer_types::{ServiceId, Topology};

use crate::scenario::World;

/// The world config's SLOs, with the scenario's budget-aware steering.
pub(crate) fn slo_specs(world: &World, configured: &[SloSpec]) -> Vec<SloSpec> {
    configured
        .iter()
        .cloned()
        .map(|mut spec| {
            if let Some(st) = &world.slo_steering {
                let mut steering = Steering::new(st.burn_rate);
                if let Some(x) = st.release_below {
                    steering.release_below = x;
                }
                if let Some(x) = st.max_shift {
                    steering.max_shift = x;
                }
                if let Some(s) = st.window_s {
                    steering.window = Duration::from_secs(s);
                }
                spec.steering = Some(steering);
            }
            spec
        })
        .collect()
}

/// Requests served and failed per PoP since the start (fractional, so
/// low rates over short steps add up exactly).
pub(crate) struct Requests {
    total: Vec<f64>,
    failed: Vec<f64>,
}

impl Requests {
    pub(crate) fn new(pops: usize) -> Self {
        Self {
            total: vec![0.0; pops],
            failed: vec![0.0; pops],
        }
    }

    /// `rps` offered to PoP `p` for `seconds`: what is over its real
    /// `capacity` fails (an overloaded proxy sheds or times out that
    /// share), and `error_share` of the rest fails (errors faults);
    /// returns the failures per second.
    pub(crate) fn serve(
        &mut self,
        p: usize,
        rps: f64,
        capacity: f64,
        error_share: f64,
        seconds: f64,
    ) -> f64 {
        let over = (rps - capacity.max(0.0)).max(0.0);
        let failing = over + (rps - over) * error_share;
        self.total[p] += rps * seconds;
        self.failed[p] += failing * seconds;
        failing
    }

    /// What PoP `p`'s agent reports for `service`.
    pub(crate) fn counters(&self, p: usize, service: &ServiceId) -> SliCounters {
        SliCounters {
            service: service.clone(),
            total: self.total[p] as u64,
            failed: self.failed[p] as u64,
            slow: None,
        }
    }
}

/// How much of an SLO's error budget a run spent.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct BudgetBurn {
    pub(crate) slo: String,
    /// `28d`: the SLO's window.
    pub(crate) window: String,
    /// Requests the SLO counts over the run, and those that failed.
    pub(crate) requests: f64,
    pub(crate) failed: f64,
    /// Share of the budget of one SLO window at the run's traffic (the
    /// failures the window allows: `1 - objective` of the requests it
    /// would see) that the run's failures spent. 1.0 spends it all.
    pub(crate) burned: f64,
    /// The burn rate over the whole run: its failed share over `1 -
    /// objective` (1.0 spends the budget in exactly the window).
    pub(crate) mean_burn_rate: f64,
}

impl Requests {
    /// The budget each availability SLO of `service` spent over a run of
    /// `run_s` seconds (latency SLOs see no slow requests here: left out).
    pub(crate) fn budget_burned(
        &self,
        slos: &[SloSpec],
        topology: &Topology,
        service: &ServiceId,
        run_s: f64,
    ) -> Vec<BudgetBurn> {
        slos.iter()
            .filter(|s| {
                matches!(s.objective, Objective::Availability { .. })
                    && s.service == service.as_str()
            })
            .map(|spec| {
                let counted = |p: usize| {
                    let pop = &topology.pops[p];
                    spec.pop.as_deref().is_none_or(|id| id == pop.id.as_str())
                        && spec
                            .region
                            .as_deref()
                            .is_none_or(|r| r == pop.region.as_str())
                };
                let pops = (0..self.total.len()).filter(|&p| counted(p));
                let (requests, failed) = pops.fold((0.0, 0.0), |(t, f), p| {
                    (t + self.total[p], f + self.failed[p])
                });
                let allowed = spec.objective.budget_share();
                let window_share = spec.window.as_secs_f64() / run_s.max(1.0);
                let budget = requests * window_share * allowed;
                let mean_burn_rate = if requests > 0.0 && allowed > 0.0 {
                    failed / requests / allowed
                } else {
                    0.0
                };
                BudgetBurn {
                    slo: spec.name.clone(),
                    window: steer_slo::rules::duration_text(spec.window),
                    requests,
                    failed,
                    burned: if budget > 0.0 { failed / budget } else { 0.0 },
                    mean_burn_rate,
                }
            })
            .collect()
    }
}
