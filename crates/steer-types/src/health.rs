//! The health snapshot the aggregator hands to the policy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{PopId, RegionId, ServiceId, Timestamp};

/// Aggregated state of one target (a PoP, or a service at a PoP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Never reported since steerd started.
    Unknown,
    Up,
    Down,
    /// Reports stopped; `last` is the state before they did. Policy keeps it
    /// (fail static) until the staleness limit.
    Stale {
        last: StaleLast,
    },
}

/// What a stale target was last seen as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleLast {
    Up,
    Down,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopHealthReport {
    pub state: TargetState,
    /// Per-service state; a service missing here follows `state`.
    pub services: BTreeMap<ServiceId, TargetState>,
    pub last_report: Option<Timestamp>,
    pub load_rps: f64,
    /// Capacity the agent reported, if any (else the configured one applies).
    pub reported_capacity_rps: Option<f64>,
    /// Why the state is what it is, for `/status` and explain.
    pub evidence: String,
    /// The aggregator's own state name (`up`, `down`, `stale-up`,
    /// `suppressed`, `gray-failure`, `frozen`, ...): finer than `state`,
    /// which is what the policy acts on.
    #[serde(default)]
    pub phase: String,
    /// What other PoPs' agents saw when probing this PoP's VIPs.
    #[serde(default)]
    pub peers: Vec<PeerView>,
    #[serde(default)]
    pub load: LoadFigures,
    /// `load_rps` by client region, when the agent attributes it (the
    /// rest came from clients in no region); empty when it does not.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub region_load: BTreeMap<RegionId, f64>,
}

/// One observer's latest view of a PoP (peer probe evidence).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    pub observer: PopId,
    pub reachable: bool,
    /// e.g. `tcp 192.0.2.11:443: connection refused`.
    pub detail: String,
    pub latency_ms: u32,
    /// When steerd received the observation.
    pub at: Timestamp,
}

/// Load and quality figures an agent reported, beyond `load_rps`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadFigures {
    pub bandwidth_bps: f64,
    /// Failed / total requests over the agent's last interval, 0..=1.
    pub error_ratio: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// Some service reported itself degraded (up, but not at full health).
    #[serde(default)]
    pub degraded: bool,
}

impl LoadFigures {
    /// Share of its capacity the policy gives a PoP in this condition:
    /// the requests it still serves well, halved if it says it is degraded.
    pub fn health_factor(&self) -> f64 {
        let serving = if self.error_ratio.is_finite() {
            1.0 - self.error_ratio.clamp(0.0, 1.0)
        } else {
            1.0
        };
        serving * if self.degraded { 0.5 } else { 1.0 }
    }
}

impl PopHealthReport {
    pub fn unknown() -> Self {
        Self {
            state: TargetState::Unknown,
            services: BTreeMap::new(),
            last_report: None,
            load_rps: 0.0,
            reported_capacity_rps: None,
            evidence: "no report yet".to_owned(),
            phase: "unknown".to_owned(),
            peers: Vec::new(),
            load: LoadFigures::default(),
            region_load: BTreeMap::new(),
        }
    }

    pub fn service_state(&self, service: &ServiceId) -> TargetState {
        self.services.get(service).copied().unwrap_or(self.state)
    }
}

/// Demand of one service, attributed from PoP load reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ObservedDemand {
    pub regional: BTreeMap<RegionId, f64>,
    /// Clients that map to no region.
    pub global: f64,
    /// Where each regional figure came from.
    #[serde(default)]
    pub sources: BTreeMap<RegionId, crate::DemandSource>,
    #[serde(default)]
    pub global_source: crate::DemandSource,
}

/// Health of every PoP at one instant, plus observed demand.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthSnapshot {
    pub pops: BTreeMap<PopId, PopHealthReport>,
    /// Per service; empty when no load is reported.
    #[serde(default)]
    pub demand: BTreeMap<ServiceId, ObservedDemand>,
    /// Budget-aware steering: PoPs whose errors burn a service's error
    /// budget, and the share of their traffic to move elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budget: Vec<BudgetShift>,
}

/// A PoP burning a service's SLO budget while other PoPs serve well: the
/// policy moves up to `share` of its traffic to PoPs with headroom.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetShift {
    pub service: ServiceId,
    pub pop: PopId,
    pub slo: String,
    /// In (0, 1).
    pub share: f64,
    /// The PoP's burn rate over `window_s`, and the events behind it.
    pub burn_rate: f64,
    pub events: u64,
    pub window_s: u64,
}
