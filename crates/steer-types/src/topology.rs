//! The configured world: regions, PoPs, services and the client map.
//! Built once from validated config; immutable afterwards.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{PopId, RegionId, ServiceId};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Region {
    pub id: RegionId,
    /// Regions to spill to, in order, when this region has no usable PoP.
    pub fallback: Vec<RegionId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pop {
    pub id: PopId,
    pub region: RegionId,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// Requests per second this PoP can serve at full health.
    pub capacity_rps: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: ServiceId,
    /// Fully qualified, lower-case, with trailing dot: `app.example.test.`.
    pub fqdn: String,
    pub ttl: u32,
    /// At most this many address records per answer.
    pub max_records: usize,
    pub pops: Vec<PopId>,
    /// Anycast prefixes announced over BGP for this service from its PoPs.
    #[serde(default)]
    pub anycast: Vec<IpNet>,
    /// Higher is more important: served first when capacity is short.
    #[serde(default)]
    pub priority: u8,
    /// Configured demand estimate (rps) per client region id, and `global`
    /// for unmapped clients; used until load reports say otherwise.
    #[serde(default)]
    pub demand_estimate: std::collections::BTreeMap<String, f64>,
}

/// A client network mapped to a region (resolver address or ECS subnet).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientNetwork {
    pub prefix: IpNet,
    pub region: RegionId,
}

/// What the policy assumes about a PoP that has never reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownHealth {
    /// Serve from it until a report says otherwise (quickstart, fail open).
    AssumeUp,
    /// Leave it out of answers until it reports healthy.
    AssumeDown,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthSettings {
    pub unknown_health: UnknownHealth,
    /// No report for this long marks a PoP stale: its last state is kept.
    pub stale_after: Duration,
    /// Stale for this long as well and the PoP is treated as down.
    pub max_stale: Duration,
    /// Consecutive up observations needed to go from down to up.
    pub rise: u32,
    /// Consecutive down observations needed to go from up to down.
    pub fall: u32,
    /// Flap damping and the correlated-failure freeze. Part of the
    /// topology so a reload changes them and a recording carries them.
    #[serde(default)]
    pub guards: crate::health_guard::HealthGuards,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            unknown_health: UnknownHealth::AssumeDown,
            stale_after: Duration::from_secs(10),
            max_stale: Duration::from_secs(300),
            rise: 1,
            fall: 1,
            guards: Default::default(),
        }
    }
}

/// Measured or estimated round-trip time between two regions, used to
/// order spill-over beyond the configured fallbacks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionLatency {
    pub from: RegionId,
    pub to: RegionId,
    pub ms: u32,
}

/// Knobs of the policy and its safety rails.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicySettings {
    /// Never let fewer than this share of a prefix's PoPs announce it
    /// (rounded up, at least one).
    pub min_announce_share: f64,
    /// Extra copies of our AS in the path when a PoP is de-preferred.
    pub prepend_count: u8,
    /// Fill PoPs up to this share of capacity before spilling onward.
    #[serde(default = "default_target")]
    pub target_utilisation: f64,
    /// Below this healthy share of a region's serving capacity, ignore
    /// health there and spread across all undrained PoPs (panic mode).
    /// 0 disables panic mode.
    #[serde(default = "default_panic")]
    pub panic_threshold: f64,
    /// Largest weight increase per PoP per second, in per-mille (0 = off).
    /// Removing an unusable PoP is never slowed down.
    #[serde(default = "default_step")]
    pub max_weight_step_per_s: u32,
    #[serde(default)]
    pub latency_ms: Vec<RegionLatency>,
}

fn default_target() -> f64 {
    0.8
}
fn default_panic() -> f64 {
    0.5
}
fn default_step() -> u32 {
    100
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            min_announce_share: 0.5,
            prepend_count: 3,
            target_utilisation: default_target(),
            panic_threshold: default_panic(),
            max_weight_step_per_s: default_step(),
            latency_ms: Vec::new(),
        }
    }
}

/// The whole configured world. Lists keep config order, which is also the
/// order the Plan reports things in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub regions: Vec<Region>,
    pub pops: Vec<Pop>,
    pub services: Vec<Service>,
    pub client_networks: Vec<ClientNetwork>,
    pub health: HealthSettings,
    #[serde(default)]
    pub policy: PolicySettings,
}

impl Topology {
    pub fn pop(&self, id: &str) -> Option<&Pop> {
        self.pops.iter().find(|p| p.id.as_str() == id)
    }

    pub fn region(&self, id: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.id.as_str() == id)
    }

    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.id.as_str() == id)
    }
}
