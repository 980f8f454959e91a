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
}

/// Health of every PoP at one instant, plus observed demand.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthSnapshot {
    pub pops: BTreeMap<PopId, PopHealthReport>,
    /// Per service; empty when no load is reported.
    #[serde(default)]
    pub demand: BTreeMap<ServiceId, ObservedDemand>,
}
