//! Requests at the PoPs: the cumulative counters agents report as SLIs
//! (as an edge proxy's Prometheus endpoint exposes them) and the failures
//! users got, with the world's SLOs and their steering.

use std::time::Duration;

use steer_health::SliCounters;
use steer_slo::{SloSpec, Steering};
use steer_types::ServiceId;

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

    /// `rps` served at PoP `p` for `seconds`, `error_share` of it failing;
    /// returns the failures per second.
    pub(crate) fn serve(&mut self, p: usize, rps: f64, error_share: f64, seconds: f64) -> f64 {
        let failing = rps * error_share;
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
