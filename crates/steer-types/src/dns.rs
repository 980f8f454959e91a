//! Settings of the authoritative DNS that are not policy decisions: how a
//! GSLB name picks among its answer set, what it answers when the set is
//! empty, and response rate limiting. Static config, compiled into the DNS
//! view next to the zones.

use std::{net::IpAddr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::ServiceId;

/// How a GSLB name picks records from its weighted answer set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Weighted rendezvous hashing on the client's /24 or /56: a subnet
    /// keeps its records while the plan is unchanged.
    #[default]
    Sticky,
    /// Weighted random per query.
    Random,
}

/// DNS behaviour of one GSLB service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GslbSettings {
    pub service: ServiceId,
    /// Fully qualified, lower-case, trailing dot.
    pub fqdn: String,
    pub selection: Selection,
    /// Answered when the answer set has no target of the asked family.
    pub fallback: Vec<IpAddr>,
    /// CNAME-style service: answer a CNAME to this name, with `{region}`
    /// and `{pop}` replaced by the chosen PoP's region and id.
    pub cname: Option<String>,
}

/// Response rate limiting per client prefix (RRL, as in BIND and Knot).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RrlSettings {
    /// Identical-enough responses per second allowed to one client prefix.
    pub responses_per_second: u32,
    /// Every `slip`-th limited response is sent truncated (TC, no records)
    /// so a real client can retry over TCP; 0 drops them all.
    pub slip: u32,
    /// Clients are grouped by these prefix lengths.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Accounting window.
    pub window: Duration,
}

impl Default for RrlSettings {
    fn default() -> Self {
        Self {
            responses_per_second: 20,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            window: Duration::from_secs(1),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DnsSettings {
    /// EDNS UDP payload size advertised and used as the UDP response cap.
    pub udp_payload: u16,
    /// Per-service DNS behaviour, for every configured service.
    pub services: Vec<GslbSettings>,
    /// Off (`None`) by default.
    pub rrl: Option<RrlSettings>,
    /// UDP fast-path threads (one SO_REUSEPORT socket each); `None` = one
    /// per CPU, `Some(0)` = hickory-server's own UDP loop.
    pub udp_workers: Option<u16>,
    /// Region by geolocation for clients outside every client network.
    #[serde(default)]
    pub geo: Option<GeoSettings>,
}

/// Maps clients that match no configured client network to a region through
/// a MaxMind database (GeoIP2/GeoLite2 Country or City format): first by
/// country, then by continent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeoSettings {
    /// Absolute path of the .mmdb file.
    pub mmdb: std::path::PathBuf,
    /// ISO 3166 country code (`DE`) → region.
    pub countries: std::collections::BTreeMap<String, crate::RegionId>,
    /// Continent code (`EU`, `NA`, `AS`, …) → region.
    pub continents: std::collections::BTreeMap<String, crate::RegionId>,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            udp_payload: 1232,
            services: Vec::new(),
            rrl: None,
            udp_workers: None,
            geo: None,
        }
    }
}
