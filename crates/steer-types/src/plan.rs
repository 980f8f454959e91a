//! The Plan: the immutable, versioned output of the policy that every data
//! plane serves from. Readers only ever `load()` a published plan.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    PopId, RegionId, ServiceId, Timestamp,
    reason::{AnnounceReason, RailFired, SetFigures, SetReason},
};

/// Weights in an answer set add up to this.
pub const PERMILLE: u32 = 1000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightedTarget {
    pub pop: PopId,
    /// Share of this answer set, per-mille; never 0 for a listed target.
    pub weight: u32,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

/// The weighted targets answered to one client region (or to unmapped
/// clients when `region` is `None`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnswerSet {
    pub region: Option<RegionId>,
    pub targets: Vec<WeightedTarget>,
    /// Why this set looks the way it does (typed; rendered at the edge).
    pub reason: SetReason,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServicePlan {
    pub id: ServiceId,
    pub fqdn: String,
    pub ttl: u32,
    pub max_records: usize,
    /// One answer set per topology region, in topology order.
    pub regional: Vec<AnswerSet>,
    /// For clients that map to no region.
    pub global: AnswerSet,
    /// A change rolled out to a share of client subnets: their sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

/// The answer sets of a change's canary by client subnets (a rollout stage
/// with `share`): clients whose subnet hashes into the first `share_ppm`
/// millionths take these instead of the plan's sets; the rest, and
/// regions without one here, keep the plan's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// Parts per million of client subnets, 1..=999_999.
    pub share_ppm: u32,
    /// Indexed like [`ServicePlan::regional`]; `None`: that region's set
    /// does not change.
    pub regional: Vec<Option<AnswerSet>>,
    /// For clients that map to no region; `None`: no change.
    pub global: Option<AnswerSet>,
}

impl ServicePlan {
    pub fn for_region(&self, region: Option<&RegionId>) -> &AnswerSet {
        self.index_of(region)
            .and_then(|i| self.regional.get(i))
            .unwrap_or(&self.global)
    }

    /// Position of `region`'s set in `regional`; None for unmapped clients.
    pub fn index_of(&self, region: Option<&RegionId>) -> Option<usize> {
        let r = region?;
        self.regional
            .iter()
            .position(|a| a.region.as_ref() == Some(r))
    }
}

/// The health the policy acted on for one PoP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PopHealth {
    Up,
    Down,
    /// Never reported; treated per `unknown_health`.
    Unknown,
    /// Reports stopped; last known state kept (fail static).
    StaleUp,
    StaleDown,
}

impl PopHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Unknown => "unknown",
            Self::StaleUp => "stale-up",
            Self::StaleDown => "stale-down",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopPlan {
    pub id: PopId,
    pub region: RegionId,
    pub health: PopHealth,
    /// Whether the policy may send traffic here at all.
    pub usable: bool,
    /// Id of the drain intent covering this PoP, if any. A soft drain
    /// still in its DNS ramp leaves the PoP `usable` (draining).
    pub drained_by: Option<String>,
    /// Share of its own region's answers (first service), per-mille.
    pub weight: u32,
    /// Services taken out here by a drain narrower than the PoP (`drain
    /// service app --pop fra1`) that is stricter than `drained_by`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_drains: Vec<ServiceDrain>,
    /// The plan fills this PoP to its target utilisation (or past it): a
    /// data plane that cannot deliver shares exactly (a finite number of
    /// client subnets) rounds away from it, onto PoPs with headroom.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub at_target: bool,
    /// Budget-aware steering holds part of the PoP back from services
    /// whose SLO budget it burns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budget_moves: Vec<BudgetMove>,
}

/// Part of a PoP held back from one service because its errors burn the
/// service's error budget (see [`crate::health::BudgetShift`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetMove {
    pub service: ServiceId,
    pub slo: String,
    /// Share of the PoP's traffic for the service to move elsewhere
    /// (within the other PoPs' headroom), per-mille.
    pub permille: u32,
}

/// One service drained at one PoP, and the drain in force for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDrain {
    pub service: ServiceId,
    pub drain: String,
}

impl PopPlan {
    /// The drain in force for `service` here: a service drain stricter
    /// than the PoP's, else the PoP's own.
    pub fn drain_for_service(&self, service: &ServiceId) -> Option<&str> {
        self.service_drains
            .iter()
            .find(|d| &d.service == service)
            .map(|d| d.drain.as_str())
            .or(self.drained_by.as_deref())
    }

    /// One line for operators: the drain that covers it (draining while a
    /// soft drain still leaves it traffic), else its health with the live
    /// `evidence` behind it (from [`PlanEvidence`]).
    pub fn describe(&self, evidence: Option<&str>) -> String {
        match (&self.drained_by, evidence) {
            (Some(d), _) if self.usable => format!("draining by {d}"),
            (Some(d), _) => format!("drained by {d}"),
            (None, Some(e)) if !e.is_empty() => format!("{}: {e}", self.health.as_str()),
            (None, _) => self.health.as_str().to_owned(),
        }
    }
}

/// How far a region is from normal service.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Degradation {
    /// Served from its own region within target utilisation.
    #[default]
    Normal,
    /// Some of its demand is served from other regions.
    Spill,
    /// Capacity is short: PoPs run past target or lower-priority services
    /// are shed.
    Shed,
    /// Too little healthy capacity: health is ignored (panic mode).
    Panic,
}

impl Degradation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Spill => "spill",
            Self::Shed => "shed",
            Self::Panic => "panic",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionPlan {
    pub id: RegionId,
    /// Region whose PoPs actually serve this region's clients (itself unless
    /// it spilled over), per the first service.
    pub served_by: Vec<RegionId>,
    /// Worst level across services.
    #[serde(default)]
    pub level: Degradation,
}

/// What one PoP does with one anycast prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AnnounceState {
    Announce,
    /// Announced with our AS prepended `count` extra times (de-preferred).
    Prepend {
        count: u8,
    },
    Withdraw,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    pub pop: PopId,
    pub prefix: IpNet,
    pub state: AnnounceState,
    /// Why, including any rail that overrode the wish (e.g. min-announce).
    pub reason: AnnounceReason,
}

/// Everything the policy decided, without the version stamp. Two bodies that
/// compare equal mean nothing changed and nothing is published. It holds
/// decisions only: live figures behind them are in [`PlanEvidence`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanBody {
    pub services: Vec<ServicePlan>,
    pub pops: Vec<PopPlan>,
    pub regions: Vec<RegionPlan>,
    /// Per (PoP, anycast prefix), in topology order.
    #[serde(default)]
    pub announcements: Vec<Announcement>,
    /// Safety rails that clamped a decision in this plan.
    #[serde(default)]
    pub rails: Vec<RailFired>,
}

/// Live figures behind a plan's decisions (demand rates, probe output),
/// refreshed on every compute and published beside the plan. Never compared
/// or versioned: a figure that moves without moving a decision changes
/// nothing an operator or a data plane acts on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanEvidence {
    pub computed_at: Timestamp,
    /// Per service, in plan order.
    pub services: Vec<ServiceFigures>,
    /// Health evidence per PoP, in plan order (e.g. `silent for 22s`).
    pub pops: Vec<(PopId, String)>,
    /// For each rail in the plan's `rails`, in order: the share it held a
    /// target back from, per-mille (0 where that does not apply).
    pub rail_wanted: Vec<u32>,
    /// The burn behind each budget move in the plan.
    #[serde(default)]
    pub budget: Vec<crate::health::BudgetShift>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceFigures {
    pub id: ServiceId,
    /// One per regional answer set, in plan order.
    pub regional: Vec<SetFigures>,
    pub global: SetFigures,
}

impl PlanEvidence {
    /// Figures of `service`'s set for `region` (None: unmapped clients).
    pub fn set(&self, service: &ServiceId, index: Option<usize>) -> Option<&SetFigures> {
        let s = self.services.iter().find(|s| &s.id == service)?;
        match index {
            Some(i) => s.regional.get(i),
            None => Some(&s.global),
        }
    }

    pub fn pop(&self, pop: &str) -> Option<&str> {
        self.pops
            .iter()
            .find(|(p, _)| p.as_str() == pop)
            .map(|(_, e)| e.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Strictly increasing across publications of one control plane.
    pub version: u64,
    pub computed_at: Timestamp,
    pub body: PlanBody,
}

impl Plan {
    pub fn service_by_fqdn(&self, fqdn: &str) -> Option<&ServicePlan> {
        self.body.services.iter().find(|s| s.fqdn == fqdn)
    }

    pub fn pop(&self, id: &str) -> Option<&PopPlan> {
        self.body.pops.iter().find(|p| p.id.as_str() == id)
    }
}

impl Plan {
    /// Whether `self` moves only weights within the answer sets `old` had:
    /// the same PoPs in every set, the same health, drains, routes, region
    /// levels and rails (weight-step rails aside: they move with the steps).
    /// That is a
    /// ramp step (rate-limited growth after an undrain, a soft drain's DNS
    /// ramp): `steerctl watch` groups a run of them into one line.
    pub fn is_weight_step(&self, old: &Plan) -> bool {
        fn sets(p: &Plan) -> Vec<&AnswerSet> {
            p.body
                .services
                .iter()
                .flat_map(|s| s.regional.iter().chain(std::iter::once(&s.global)))
                .collect()
        }
        let (new_sets, old_sets) = (sets(self), sets(old));
        let same_members = new_sets.len() == old_sets.len()
            && new_sets.iter().zip(&old_sets).all(|(a, b)| {
                a.region == b.region
                    && a.targets.len() == b.targets.len()
                    && a.targets
                        .iter()
                        .zip(&b.targets)
                        .all(|(x, y)| x.pop == y.pop && x.ipv4 == y.ipv4 && x.ipv6 == y.ipv6)
            });
        let same_pops = self.body.pops.len() == old.body.pops.len()
            && self.body.pops.iter().zip(&old.body.pops).all(|(a, b)| {
                a.id == b.id
                    && a.health == b.health
                    && a.usable == b.usable
                    && a.drained_by == b.drained_by
            });
        // Weight-step rails come, move and go with the steps themselves.
        let other_rails = |p: &Plan| -> Vec<RailFired> {
            p.body
                .rails
                .iter()
                .filter(|r| !matches!(r, RailFired::WeightStep { .. }))
                .cloned()
                .collect()
        };
        let same_rails = other_rails(self) == other_rails(old);
        let weights_moved = new_sets.iter().zip(&old_sets).any(|(a, b)| {
            a.targets
                .iter()
                .zip(&b.targets)
                .any(|(x, y)| x.weight != y.weight)
        });
        same_members
            && same_pops
            && same_rails
            && weights_moved
            && self.body.regions == old.body.regions
            && self.body.announcements == old.body.announcements
    }

    /// Human-readable changes from `old` to `self`, one line each: PoP
    /// usability, drains, own-region weights and announcements.
    pub fn changes_since(&self, old: &Plan) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.body.pops {
            let Some(o) = old.pop(p.id.as_str()) else {
                out.push(format!("{} added", p.id));
                continue;
            };
            if o.health != p.health {
                out.push(format!(
                    "{} health {} -> {}",
                    p.id,
                    o.health.as_str(),
                    p.health.as_str()
                ));
            }
            if o.drained_by != p.drained_by {
                match &p.drained_by {
                    Some(d) => out.push(format!("{} drained ({d})", p.id)),
                    None => out.push(format!("{} undrained", p.id)),
                }
            }
            for d in &p.service_drains {
                if !o.service_drains.contains(d) {
                    out.push(format!("{} {} drained ({})", p.id, d.service, d.drain));
                }
            }
            for d in &o.service_drains {
                if !p.service_drains.iter().any(|n| n.service == d.service) {
                    out.push(format!("{} {} undrained", p.id, d.service));
                }
            }
            if o.weight != p.weight {
                out.push(format!("{} weight {}‰ -> {}‰", p.id, o.weight, p.weight));
            }
        }
        for a in &self.body.announcements {
            let before = old
                .body
                .announcements
                .iter()
                .find(|o| o.pop == a.pop && o.prefix == a.prefix);
            if before.map(|o| o.state) != Some(a.state) {
                out.push(format!("{} {} {}", a.pop, a.prefix, a.state.describe()));
            } else if before.is_some_and(|o| o.reason != a.reason) {
                out.push(format!(
                    "{} {} {} ({})",
                    a.pop,
                    a.prefix,
                    a.state.describe(),
                    a.reason
                ));
            }
        }
        for r in &self.body.regions {
            let before = old
                .body
                .regions
                .iter()
                .find(|o| o.id == r.id)
                .map(|o| &o.served_by);
            if before != Some(&r.served_by) {
                let by: Vec<&str> = r.served_by.iter().map(RegionId::as_str).collect();
                out.push(format!("region {} served by {}", r.id, by.join("+")));
            }
            let level = old
                .body
                .regions
                .iter()
                .find(|o| o.id == r.id)
                .map(|o| o.level);
            if level.is_some_and(|l| l != r.level) {
                out.push(format!("region {} level {}", r.id, r.level.as_str()));
            }
        }
        for rail in &self.body.rails {
            if !old.body.rails.contains(rail) {
                out.push(rail.to_string());
            }
        }
        for rail in &old.body.rails {
            if !self.body.rails.iter().any(|r| same_rail(r, rail)) {
                out.push(format!("released: {rail}"));
            }
        }
        if out.is_empty() && self.body != old.body {
            // Every version is a decision; say which kind when the lines
            // above (PoPs, routes, regions, rails) do not show it.
            let moved = self
                .body
                .services
                .iter()
                .flat_map(|s| {
                    let before = old.body.services.iter().find(|o| o.id == s.id);
                    s.regional
                        .iter()
                        .chain(std::iter::once(&s.global))
                        .filter(move |set| {
                            before.is_none_or(|b| b.for_region(set.region.as_ref()) != *set)
                        })
                        .map(move |set| {
                            format!(
                                "{}/{}",
                                s.id,
                                set.region.as_ref().map_or("global", RegionId::as_str)
                            )
                        })
                })
                .collect::<Vec<_>>();
            if !moved.is_empty() {
                out.push(format!("answer sets changed: {}", moved.join(", ")));
            }
        }
        out
    }
}

/// The same rail on the same target, whatever it held it at.
fn same_rail(a: &RailFired, b: &RailFired) -> bool {
    match (a, b) {
        (
            RailFired::WeightStep {
                service: s1,
                region: r1,
                pop: p1,
                ..
            },
            RailFired::WeightStep {
                service: s2,
                region: r2,
                pop: p2,
                ..
            },
        ) => s1 == s2 && r1 == r2 && p1 == p2,
        _ => a == b,
    }
}

impl AnnounceState {
    pub fn describe(&self) -> String {
        match self {
            Self::Announce => "announce".to_owned(),
            Self::Prepend { count } => format!("prepend x{count}"),
            Self::Withdraw => "withdraw".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(version: u64, service_drains: Vec<ServiceDrain>) -> Plan {
        Plan {
            version,
            computed_at: Timestamp(0),
            body: PlanBody {
                services: Vec::new(),
                pops: vec![PopPlan {
                    id: PopId::new("fra1"),
                    region: RegionId::new("eu-west"),
                    health: PopHealth::Up,
                    usable: true,
                    drained_by: None,
                    weight: 500,
                    service_drains,
                    at_target: false,
                    budget_moves: Vec::new(),
                }],
                regions: Vec::new(),
                announcements: Vec::new(),
                rails: Vec::new(),
            },
        }
    }

    /// A service drain is a decision: the version's change line names it,
    /// and its lifting.
    #[test]
    fn changes_name_service_drains() {
        let app = ServiceDrain {
            service: ServiceId::new("app"),
            drain: "drain-3".into(),
        };
        let before = plan(1, Vec::new());
        let drained = plan(2, vec![app.clone()]);
        assert_eq!(
            drained.changes_since(&before),
            ["fra1 app drained (drain-3)"]
        );
        let fra1 = drained
            .pop("fra1")
            .map(|p| p.drain_for_service(&app.service));
        assert_eq!(fra1, Some(Some("drain-3")));
        assert_eq!(
            plan(3, Vec::new()).changes_since(&drained),
            ["fra1 app undrained"]
        );
    }
}
