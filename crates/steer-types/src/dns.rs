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
    /// Clients never limited: loopback by default (health checks and
    /// local tooling). A spoofed source here gets full-rate answers, so
    /// list only networks whose sources cannot be forged from outside.
    #[serde(default = "default_rrl_exempt")]
    pub exempt: Vec<ipnet::IpNet>,
}

fn default_rrl_exempt() -> Vec<ipnet::IpNet> {
    let v4 = ipnet::Ipv4Net::new(std::net::Ipv4Addr::LOCALHOST, 8).map(ipnet::IpNet::V4);
    let v6 = ipnet::Ipv6Net::new(std::net::Ipv6Addr::LOCALHOST, 128).map(ipnet::IpNet::V6);
    v4.into_iter().chain(v6).collect()
}

impl RrlSettings {
    /// Whether `client` is on the exempt list (asked for every UDP query:
    /// masks compared as integers, one family at a time).
    #[inline]
    pub fn is_exempt(&self, client: IpAddr) -> bool {
        match client.to_canonical() {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.exempt.iter().any(|net| match net {
                    ipnet::IpNet::V4(n) => {
                        (a ^ u32::from(n.network())) & u32::from(n.netmask()) == 0
                    }
                    ipnet::IpNet::V6(_) => false,
                })
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.exempt.iter().any(|net| match net {
                    ipnet::IpNet::V6(n) => {
                        (a ^ u128::from(n.network())) & u128::from(n.netmask()) == 0
                    }
                    ipnet::IpNet::V4(_) => false,
                })
            }
        }
    }
}

impl Default for RrlSettings {
    fn default() -> Self {
        Self {
            responses_per_second: 20,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            window: Duration::from_secs(1),
            exempt: default_rrl_exempt(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DnsSettings {
    /// EDNS UDP payload size advertised and used as the UDP response cap.
    pub udp_payload: u16,
    /// Per-service DNS behaviour, for every configured service.
    pub services: Vec<GslbSettings>,
    /// On by default for every client outside [`RrlSettings::exempt`];
    /// `None` turns it off.
    pub rrl: Option<RrlSettings>,
    /// UDP fast-path threads (one SO_REUSEPORT socket each); `None` = one
    /// per CPU, `Some(0)` = hickory-server's own UDP loop.
    pub udp_workers: Option<u16>,
    /// Region by geolocation for clients outside every client network.
    #[serde(default)]
    pub geo: Option<GeoSettings>,
    /// What a DNS-over-TCP peer may hold.
    #[serde(default)]
    pub tcp: TcpLimits,
    /// How often the view is recalibrated on the client subnets asking
    /// now (when they changed); `None`: selection is not calibrated.
    #[serde(default = "default_calibrate_every")]
    pub calibrate_every: Option<Duration>,
    /// Zones signed online (`dnssec` on a `[[zones]]` entry); every other
    /// zone is served unsigned.
    #[serde(default)]
    pub dnssec: Vec<DnssecZone>,
    /// The CHAOS `id.server` / `hostname.bind` answer; `None`: the host
    /// name; empty: not answered (REFUSED).
    #[serde(default)]
    pub identity: Option<String>,
    /// The CHAOS `version.server` / `version.bind` answer; `None`:
    /// "Steer" and its version; empty: not answered.
    #[serde(default)]
    pub version: Option<String>,
    /// The NSID (RFC 5001) sent to queries that ask; `None`: not sent.
    #[serde(default)]
    pub nsid: Option<String>,
}

fn default_calibrate_every() -> Option<Duration> {
    Some(Duration::from_secs(30))
}

/// One zone signed when answering (DNSSEC online signing, algorithm 13:
/// ECDSA P-256 with SHA-256, one combined signing key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnssecZone {
    /// Fully qualified, lower-case, trailing dot (as [`crate::Zone::origin`]).
    pub origin: String,
    /// Where the zone's key lives as BIND `K<zone>+013+<tag>.key` and
    /// `.private` files: loaded if there, generated on first start if not.
    pub key_dir: std::path::PathBuf,
}

/// Where a DNSSEC key is in its life, from its BIND timing metadata
/// (RFC 7583 3.1's states, folded to what a server acts on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DnssecKeyState {
    /// Generated, Publish not reached: not served.
    Generated,
    /// Published: in the DNSKEY RRset, not signing (pre-publication).
    Published,
    /// Active: in the DNSKEY RRset and signing.
    Active,
    /// Retired (Inactive reached): still in the DNSKEY RRset so cached
    /// signatures keep validating, no longer signing.
    Retired,
    /// Removed (Delete reached): gone from the zone.
    Removed,
}

impl DnssecKeyState {
    /// The metric label and the word steerctl prints (BIND's names).
    pub fn label(self) -> &'static str {
        match self {
            Self::Generated => "generated",
            Self::Published => "published",
            Self::Active => "active",
            Self::Retired => "inactive",
            Self::Removed => "deleted",
        }
    }

    /// Whether the key is in the DNSKEY RRset.
    pub fn published(self) -> bool {
        matches!(self, Self::Published | Self::Active | Self::Retired)
    }
}

/// A DS record for one of a signed zone's KSKs/CSKs (SHA-256 digest,
/// RFC 4034 5.1.4), with the state of its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnssecDs {
    /// The zone, fully qualified with a trailing dot.
    pub zone: String,
    pub key_tag: u16,
    /// 13: ECDSAP256SHA256.
    pub algorithm: u8,
    /// 2: SHA-256.
    pub digest_type: u8,
    pub digest: Vec<u8>,
    pub key_state: DnssecKeyState,
}

/// Limits on DNS over TCP: connections are cheap to open and a peer can
/// hold them idle, so each is capped and timed out (RFC 7766 6.2.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpLimits {
    /// Open connections over all clients; more are closed on accept.
    pub max_connections: u32,
    /// Open connections from one client address (IPv6: one /64).
    pub max_connections_per_client: u32,
    /// A connection with no complete query for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_client: 64,
            idle_timeout: Duration::from_secs(10),
        }
    }
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
            rrl: Some(RrlSettings::default()),
            udp_workers: None,
            geo: None,
            tcp: TcpLimits::default(),
            calibrate_every: default_calibrate_every(),
            dnssec: Vec::new(),
            identity: None,
            version: None,
            nsid: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_exempt_check_agrees_with_ipnet() {
        let nets = ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/33", "::1/128"];
        let rrl = RrlSettings {
            exempt: nets.iter().map(|n| n.parse().unwrap()).collect(),
            ..RrlSettings::default()
        };
        let everything = RrlSettings {
            exempt: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            ..RrlSettings::default()
        };
        for addr in [
            "10.255.0.1",
            "11.0.0.0",
            "192.0.2.7",
            "192.0.2.6",
            "2001:db8:7fff::1",
            "2001:db8:8000::1",
            "::1",
            "::2",
            "::ffff:10.1.1.1",
            "::ffff:9.1.1.1",
        ] {
            let ip: IpAddr = addr.parse().unwrap();
            let canonical = ip.to_canonical();
            let want = rrl.exempt.iter().any(|n| n.contains(&canonical));
            assert_eq!(rrl.is_exempt(ip), want, "{addr}");
            assert!(everything.is_exempt(ip), "{addr}");
        }
    }
}
