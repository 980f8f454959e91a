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
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            unknown_health: UnknownHealth::AssumeDown,
            stale_after: Duration::from_secs(10),
            max_stale: Duration::from_secs(300),
            rise: 1,
            fall: 1,
        }
    }
}

/// Knobs of the policy and its safety rails.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicySettings {
    /// Never let fewer than this share of a prefix's PoPs announce it
    /// (rounded up, at least one).
    pub min_announce_share: f64,
    /// Extra copies of our AS in the path when a PoP is de-preferred.
    pub prepend_count: u8,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            min_announce_share: 0.5,
            prepend_count: 3,
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
