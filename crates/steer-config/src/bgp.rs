//! The `[bgp]` table: speaker defaults, communities per announcement state
//! and the peers per PoP (`[[bgp.peers]]`). Kept apart from the rest of the
//! steerd schema; validated the same way (every error, with its place).

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use serde::Deserialize;
use steer_types::{
    Topology,
    bgp::{BgpPeerConfig, BgpSettings, BgpShutdownAction, RouteTags},
};
use toml::Spanned;

use crate::{duration::parse_duration, error::Reporter};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBgp {
    local_as: Option<Spanned<u32>>,
    router_id: Option<Spanned<String>>,
    hold_time: Option<Spanned<u16>>,
    reconnect_min: Option<Spanned<String>>,
    reconnect_max: Option<Spanned<String>>,
    graceful_restart: Option<bool>,
    restart_time: Option<Spanned<u16>>,
    on_shutdown: Option<Spanned<String>>,
    graceful_shutdown: Option<Spanned<String>>,
    startup_hold: Option<Spanned<String>>,
    add_path: Option<Spanned<bool>>,
    #[serde(default)]
    announce: RawTags,
    #[serde(default)]
    prepend: RawTags,
    #[serde(default)]
    peers: Vec<Spanned<RawPeer>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTags {
    #[serde(default)]
    communities: Vec<Spanned<String>>,
    #[serde(default)]
    large_communities: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    pop: Spanned<String>,
    address: Spanned<String>,
    #[serde(default = "default_port")]
    port: u16,
    peer_as: Spanned<u32>,
    local_as: Option<Spanned<u32>>,
    router_id: Option<Spanned<String>>,
    hold_time: Option<Spanned<u16>>,
    #[serde(default)]
    passive: bool,
    local_address: Option<Spanned<String>>,
    next_hop_ipv4: Option<Spanned<String>>,
    next_hop_ipv6: Option<Spanned<String>>,
    md5_password: Option<Spanned<String>>,
}

fn default_port() -> u16 {
    179
}

fn hold_time(r: &mut Reporter<'_>, v: &Option<Spanned<u16>>, default: u16) -> u16 {
    match v {
        None => default,
        Some(h) if *h.get_ref() == 0 || *h.get_ref() >= 3 => *h.get_ref(),
        Some(h) => {
            r.at(
                h.span(),
                "hold_time must be 0 or at least 3 seconds (RFC 4271)",
            );
            default
        }
    }
}

fn asn(r: &mut Reporter<'_>, v: &Spanned<u32>) -> u32 {
    let a = *v.get_ref();
    if a == 0 || a == 23_456 || a == u32::MAX {
        r.at(v.span(), format!("AS {a} is reserved and cannot be used"));
    }
    a
}

fn router_id(r: &mut Reporter<'_>, v: &Spanned<String>) -> Option<Ipv4Addr> {
    match v.get_ref().parse::<Ipv4Addr>() {
        Ok(id) if !id.is_unspecified() => Some(id),
        _ => {
            r.at(
                v.span(),
                format!(
                    "router_id {:?} must be a non-zero IPv4 address",
                    v.get_ref()
                ),
            );
            None
        }
    }
}

fn duration(r: &mut Reporter<'_>, v: &Option<Spanned<String>>, default: Duration) -> Duration {
    match v {
        None => default,
        Some(s) => parse_duration(s.get_ref()).unwrap_or_else(|e| {
            r.at(s.span(), e);
            default
        }),
    }
}

fn tags(r: &mut Reporter<'_>, raw: &RawTags) -> RouteTags {
    let mut t = RouteTags::default();
    for c in &raw.communities {
        let parts: Vec<Option<u16>> = c.get_ref().split(':').map(|p| p.parse().ok()).collect();
        match parts.as_slice() {
            [Some(a), Some(v)] => t.communities.push((u32::from(*a) << 16) | u32::from(*v)),
            _ => r.at(
                c.span(),
                format!("{:?} is not a community such as 65000:100", c.get_ref()),
            ),
        }
    }
    for c in &raw.large_communities {
        let parts: Vec<Option<u32>> = c.get_ref().split(':').map(|p| p.parse().ok()).collect();
        match parts.as_slice() {
            [Some(a), Some(b), Some(d)] => t.large_communities.push([*a, *b, *d]),
            _ => r.at(
                c.span(),
                format!(
                    "{:?} is not a large community such as 65000:0:100",
                    c.get_ref()
                ),
            ),
        }
    }
    if t.communities.len() + t.large_communities.len() > 32 {
        r.at(0..0, "at most 32 communities per announcement state");
    }
    t
}

pub(crate) fn bgp_settings(
    r: &mut Reporter<'_>,
    raw: &Spanned<RawBgp>,
    topology: &Topology,
) -> BgpSettings {
    let b = raw.get_ref();
    let local_as = match &b.local_as {
        Some(a) => asn(r, a),
        None => {
            if b.peers.iter().any(|p| p.get_ref().local_as.is_none()) {
                r.at(
                    raw.span(),
                    "bgp.local_as is required (or local_as on every peer)",
                );
            }
            0
        }
    };
    let default_id = b.router_id.as_ref().and_then(|id| router_id(r, id));
    let default_hold = hold_time(r, &b.hold_time, 90);
    let reconnect_min = duration(r, &b.reconnect_min, Duration::from_secs(1));
    let reconnect_max = duration(r, &b.reconnect_max, Duration::from_secs(30));
    if (reconnect_min.is_zero() || reconnect_max < reconnect_min)
        && let Some(s) = b.reconnect_max.as_ref().or(b.reconnect_min.as_ref())
    {
        r.at(s.span(), "need 0 < reconnect_min <= reconnect_max");
    }
    let on_shutdown = match &b.on_shutdown {
        None => BgpShutdownAction::GracefulRestart,
        Some(s) => match s.get_ref().as_str() {
            "withdraw" => BgpShutdownAction::Withdraw,
            "graceful-restart" => BgpShutdownAction::GracefulRestart,
            other => {
                r.at(
                    s.span(),
                    format!(
                        "on_shutdown must be \"withdraw\" or \"graceful-restart\", got {other:?}"
                    ),
                );
                BgpShutdownAction::GracefulRestart
            }
        },
    };
    if let Some(a) = &b.add_path
        && *a.get_ref()
    {
        r.at(
            a.span(),
            "add_path = true is not supported yet: each PoP sends one path per prefix",
        );
    }
    let graceful_restart = b.graceful_restart.unwrap_or(true);
    if on_shutdown == BgpShutdownAction::GracefulRestart
        && !graceful_restart
        && let Some(s) = &b.on_shutdown
    {
        r.at(
            s.span(),
            "on_shutdown = \"graceful-restart\" needs graceful_restart = true",
        );
    }
    let restart_time = match &b.restart_time {
        None => 120,
        Some(t) if (1..=4095).contains(t.get_ref()) => *t.get_ref(),
        Some(t) => {
            r.at(t.span(), "restart_time must be between 1 and 4095 seconds");
            120
        }
    };
    // Under assume-down a restarted steerd knows nothing for a moment; its
    // first plan would withdraw what graceful restart keeps at the peers.
    // By default, wait as long as a silent agent is trusted anyway.
    let startup_hold = match &b.startup_hold {
        Some(_) => duration(r, &b.startup_hold, Duration::ZERO),
        None if topology.health.unknown_health == steer_types::UnknownHealth::AssumeDown => {
            topology.health.stale_after
        }
        None => Duration::ZERO,
    };
    if graceful_restart && startup_hold >= Duration::from_secs(u64::from(restart_time)) {
        let why = format!(
            "startup_hold ({startup_hold:?}) must be shorter than restart_time ({restart_time} s), \
             or peers flush our routes before the first table goes out"
        );
        match (&b.startup_hold, &b.restart_time) {
            (Some(s), _) => r.at(s.span(), why),
            (None, Some(t)) => r.at(t.span(), why),
            (None, None) => r.at(raw.span(), why),
        }
    }

    let wants_v6 = topology
        .services
        .iter()
        .any(|s| s.anycast.iter().any(|p| matches!(p, ipnet::IpNet::V6(_))));
    let wants_v4 = topology
        .services
        .iter()
        .any(|s| s.anycast.iter().any(|p| matches!(p, ipnet::IpNet::V4(_))));
    let mut seen = HashSet::new();
    let mut listens = HashSet::new();
    let peers = b
        .peers
        .iter()
        .filter_map(|p| {
            let p = p.get_ref();
            let pop = topology.pop(p.pop.get_ref());
            if pop.is_none() {
                r.at(p.pop.span(), format!("unknown pop {:?}", p.pop.get_ref()));
            }
            let address = match p.address.get_ref().parse::<IpAddr>() {
                Ok(a) => a,
                Err(_) => {
                    r.at(
                        p.address.span(),
                        format!("{:?} is not an IP address", p.address.get_ref()),
                    );
                    return None;
                }
            };
            if !seen.insert(SocketAddr::new(address, p.port)) {
                r.at(
                    p.address.span(),
                    format!("peer {address} port {} is configured twice", p.port),
                );
            }
            let peer_as = asn(r, &p.peer_as);
            let local_as = p.local_as.as_ref().map_or(local_as, |a| asn(r, a));
            let router_id = match &p.router_id {
                Some(id) => router_id(r, id),
                None => {
                    if default_id.is_none() {
                        r.at(
                            p.pop.span(),
                            "router_id is required (in [bgp] or on the peer)",
                        );
                    }
                    default_id
                }
            }
            .unwrap_or(Ipv4Addr::LOCALHOST);
            let local_address = p.local_address.as_ref().and_then(|a| {
                a.get_ref().parse::<IpAddr>().ok().or_else(|| {
                    r.at(a.span(), format!("{:?} is not an IP address", a.get_ref()));
                    None
                })
            });
            if p.passive && !listens.insert(SocketAddr::new(
                local_address.unwrap_or(Ipv4Addr::UNSPECIFIED.into()),
                p.port,
            )) {
                r.at(
                    p.address.span(),
                    "two passive peers listen on the same local_address and port; give each its own local_address",
                );
            }
            let next_hop_ipv4 = match &p.next_hop_ipv4 {
                Some(a) => a.get_ref().parse().ok().or_else(|| {
                    r.at(a.span(), format!("{:?} is not an IPv4 address", a.get_ref()));
                    None
                }),
                None => pop.and_then(|pop| pop.ipv4),
            };
            let next_hop_ipv6 = match &p.next_hop_ipv6 {
                Some(a) => a.get_ref().parse().ok().or_else(|| {
                    r.at(a.span(), format!("{:?} is not an IPv6 address", a.get_ref()));
                    None
                }),
                None => pop.and_then(|pop| pop.ipv6),
            };
            if pop.is_some() && wants_v4 && next_hop_ipv4.is_none() && p.next_hop_ipv4.is_none() {
                r.at(
                    p.pop.span(),
                    "IPv4 anycast prefixes need next_hop_ipv4 (or an ipv4 on the pop)",
                );
            }
            if pop.is_some() && wants_v6 && next_hop_ipv6.is_none() && p.next_hop_ipv6.is_none() {
                r.at(
                    p.pop.span(),
                    "IPv6 anycast prefixes need next_hop_ipv6 (or an ipv6 on the pop)",
                );
            }
            if let Some(m) = &p.md5_password {
                r.at(
                    m.span(),
                    "TCP MD5 (RFC 2385) is not supported by this build; use TCP-AO or a protected network",
                );
            }
            Some(BgpPeerConfig {
                pop: steer_types::PopId::new(p.pop.get_ref()),
                address,
                port: p.port,
                peer_as,
                local_as,
                router_id,
                hold_time: hold_time(r, &p.hold_time, default_hold),
                passive: p.passive,
                local_address,
                next_hop_ipv4,
                next_hop_ipv6,
            })
        })
        .collect();

    BgpSettings {
        peers,
        reconnect_min,
        reconnect_max,
        graceful_restart,
        restart_time,
        on_shutdown,
        graceful_shutdown: duration(r, &b.graceful_shutdown, Duration::ZERO),
        startup_hold,
        add_path: false,
        announce: tags(r, &b.announce),
        prepend: tags(r, &b.prepend),
    }
}
