//! From Plan announcements to the routes each PoP's peers should hold.
//!
//! Pure: time comes in as an offset from the speaker's start. Two state
//! machines live here. [`RoutePhase`] is per (PoP, prefix): it follows the
//! Plan, except that a planned withdraw (a de-preferred route told to go
//! away) first lingers with the RFC 8326 GRACEFUL_SHUTDOWN community. And
//! [`Routes::apply`] refuses a plan that would withdraw a prefix from more
//! than the allowed share of its PoPs (the speaker's own min-announce rail),
//! keeping what it had.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use ipnet::IpNet;
use steer_types::{
    AnnounceReason, AnnounceState, Announcement, PopId,
    bgp::{BgpPeerConfig, BgpRouteStatus, BgpSettings},
};

/// RFC 8326 GRACEFUL_SHUTDOWN well-known community (65535:0).
pub const GRACEFUL_SHUTDOWN: u32 = 0xFFFF_0000;

/// The attributes of one route as sent on the wire.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteAttrs {
    /// Our AS, repeated for prepends; empty towards iBGP peers.
    pub as_path: Vec<u32>,
    pub next_hop: IpAddr,
    /// Set (to 100) towards iBGP peers only.
    pub local_pref: Option<u32>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
}

/// What one peer should hold: prefix → attributes.
pub type RouteTable = BTreeMap<IpNet, RouteAttrs>;

/// The wire changes that turn one table into another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteChanges {
    pub announce: Vec<(IpNet, RouteAttrs)>,
    pub withdraw: Vec<IpNet>,
}

impl RouteChanges {
    pub fn is_empty(&self) -> bool {
        self.announce.is_empty() && self.withdraw.is_empty()
    }
}

/// Only what differs: new or changed routes are (re)announced, vanished
/// ones withdrawn; unchanged routes are not sent again.
pub fn diff(old: &RouteTable, new: &RouteTable) -> RouteChanges {
    let announce = new
        .iter()
        .filter(|(p, a)| old.get(*p) != Some(*a))
        .map(|(p, a)| (*p, a.clone()))
        .collect();
    let withdraw = old
        .keys()
        .filter(|p| !new.contains_key(*p))
        .copied()
        .collect();
    RouteChanges { announce, withdraw }
}

/// Per (PoP, prefix) state the speaker applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoutePhase {
    Announced,
    Prepended {
        count: u8,
    },
    /// Planned withdraw in progress: still announced (prepended) with
    /// GRACEFUL_SHUTDOWN until `until`, then withdrawn.
    GracefulShutdown {
        count: u8,
        until: Duration,
    },
    Withdrawn,
}

impl RoutePhase {
    /// One step: the Plan's wish at time `now`.
    pub fn step(self, wish: AnnounceState, linger: Duration, now: Duration) -> Self {
        match (self, wish) {
            (_, AnnounceState::Announce) => Self::Announced,
            (_, AnnounceState::Prepend { count }) => Self::Prepended { count },
            // Planned: the route was de-preferred first; let traffic move
            // off with GRACEFUL_SHUTDOWN before it goes.
            (Self::Prepended { count }, AnnounceState::Withdraw) if !linger.is_zero() => {
                Self::GracefulShutdown {
                    count,
                    until: now + linger,
                }
            }
            (Self::GracefulShutdown { until, .. }, AnnounceState::Withdraw) if now >= until => {
                Self::Withdrawn
            }
            (s @ Self::GracefulShutdown { .. }, AnnounceState::Withdraw) => s,
            // Unplanned (hard drain, unhealthy): at once.
            (_, AnnounceState::Withdraw) => Self::Withdrawn,
        }
    }

    fn deadline(self) -> Option<Duration> {
        match self {
            Self::GracefulShutdown { until, .. } => Some(until),
            _ => None,
        }
    }

    pub fn label(self) -> String {
        match self {
            Self::Announced => "announce".to_owned(),
            Self::Prepended { count } => format!("prepend {count}"),
            Self::GracefulShutdown { .. } => "graceful-shutdown".to_owned(),
            Self::Withdrawn => "withdraw".to_owned(),
        }
    }
}

/// The speaker's view of all announcements, advanced plan by plan.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    phases: BTreeMap<(PopId, IpNet), (RoutePhase, AnnounceReason)>,
    /// The wishes last accepted, re-applied when timers fire.
    wishes: Vec<Announcement>,
}

impl Routes {
    /// Takes a new set of wishes. Returns `Err(why)` and changes nothing if
    /// it would withdraw some prefix from more than `1 - min_share` of its
    /// PoPs.
    pub fn apply(
        &mut self,
        wishes: &[Announcement],
        min_share: f64,
        linger: Duration,
        now: Duration,
    ) -> Result<(), String> {
        rail_check(wishes, min_share)?;
        self.wishes = wishes.to_vec();
        self.tick(linger, now);
        Ok(())
    }

    /// Re-applies the accepted wishes at `now` (graceful-shutdown expiry).
    pub fn tick(&mut self, linger: Duration, now: Duration) {
        let mut next = BTreeMap::new();
        for w in &self.wishes {
            let key = (w.pop.clone(), w.prefix);
            let before = self
                .phases
                .get(&key)
                .map_or(RoutePhase::Withdrawn, |(p, _)| *p);
            next.insert(key, (before.step(w.state, linger, now), w.reason.clone()));
        }
        self.phases = next;
    }

    /// The earliest pending timer, if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.phases.values().filter_map(|(p, _)| p.deadline()).min()
    }

    pub fn phase(&self, pop: &str, prefix: IpNet) -> Option<RoutePhase> {
        self.phases
            .iter()
            .find(|((p, n), _)| p.as_str() == pop && *n == prefix)
            .map(|(_, (ph, _))| *ph)
    }

    /// The table one peer should hold.
    pub fn table_for(&self, peer: &BgpPeerConfig, settings: &BgpSettings) -> RouteTable {
        let ibgp = peer.local_as == peer.peer_as;
        self.phases
            .iter()
            .filter(|((pop, _), _)| *pop == peer.pop)
            .filter_map(|((_, prefix), (phase, _))| {
                let (prepends, tags, gshut) = match *phase {
                    RoutePhase::Announced => (0, &settings.announce, false),
                    RoutePhase::Prepended { count } => (count, &settings.prepend, false),
                    RoutePhase::GracefulShutdown { count, .. } => (count, &settings.prepend, true),
                    RoutePhase::Withdrawn => return None,
                };
                let next_hop = match prefix {
                    IpNet::V4(_) => IpAddr::V4(peer.next_hop_ipv4?),
                    IpNet::V6(_) => IpAddr::V6(peer.next_hop_ipv6?),
                };
                let own = usize::from(prepends) + usize::from(!ibgp);
                let mut communities = tags.communities.clone();
                if gshut {
                    communities.push(GRACEFUL_SHUTDOWN);
                }
                Some((
                    *prefix,
                    RouteAttrs {
                        as_path: vec![peer.local_as; own],
                        next_hop,
                        local_pref: ibgp.then_some(100),
                        communities,
                        large_communities: tags.large_communities.clone(),
                    },
                ))
            })
            .collect()
    }

    /// In Plan (topology) order.
    pub fn status(&self) -> Vec<BgpRouteStatus> {
        self.wishes
            .iter()
            .filter_map(|w| {
                let (phase, reason) = self.phases.get(&(w.pop.clone(), w.prefix))?;
                Some(BgpRouteStatus {
                    pop: w.pop.clone(),
                    prefix: w.prefix,
                    state: phase.label(),
                    reason: reason.to_string(),
                })
            })
            .collect()
    }
}

/// The speaker's own min-announce rail, independent of the policy's: a plan
/// that takes a prefix away from too many PoPs is treated as a broken input.
pub fn rail_check(wishes: &[Announcement], min_share: f64) -> Result<(), String> {
    let prefixes: BTreeSet<IpNet> = wishes.iter().map(|w| w.prefix).collect();
    for prefix in prefixes {
        let of: Vec<&Announcement> = wishes.iter().filter(|w| w.prefix == prefix).collect();
        let n = of.len();
        let min = ((min_share.clamp(0.0, 1.0) * n as f64).ceil() as usize).clamp(1, n);
        let announcing = of
            .iter()
            .filter(|w| w.state != AnnounceState::Withdraw)
            .count();
        if announcing < min {
            return Err(format!(
                "plan would announce {prefix} from {announcing} of {n} PoPs (minimum {min}); \
                 keeping the previous announcements"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
