//! Why the policy decided what it did, as typed values.
//!
//! Reasons are part of the versioned plan, so they carry only what the
//! decision itself depends on (which intent, which region, which rail and
//! its bound), never live figures such as rates, ages or penalties: those
//! sit in [`PlanEvidence`](crate::PlanEvidence) beside the plan. A version
//! bump therefore means a decision changed. Text is rendered here, at the
//! edge, for steerctl, `/status` and explain; no code decides by reading it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{PopHealth, PopId, RegionId, ServiceId, plan::AnnounceState};

/// How an answer set was built.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SetBasis {
    /// Known demand water-filled into PoPs in preference order, up to the
    /// target utilisation, then up to full capacity.
    WaterFilled {
        /// Target utilisation in percent.
        target_pct: u32,
        /// Part of the demand is served outside the client's region.
        spilled: bool,
        /// Demand exceeds every usable PoP's capacity; lower-priority
        /// services are shed.
        shed: bool,
    },
    /// No demand figures: the region's own usable PoPs, by capacity.
    OwnRegion { usable: u32 },
    /// No demand figures and no usable PoP in the region: the first region
    /// in preference order that has one serves.
    SpilledTo { region: RegionId, usable: u32 },
    /// Unmapped clients' demand spread over every usable PoP by headroom.
    UnmappedByHeadroom,
    /// Unmapped clients without demand figures: every usable PoP by capacity.
    UnmappedByCapacity { usable: u32 },
    /// No usable PoP anywhere: the health signal is distrusted and every
    /// undrained PoP serves.
    FailStatic,
    /// Every PoP is drained: drains are ignored rather than answer nothing.
    AllDrained,
    /// Built outside the policy (fixtures, other planners in simulation).
    External,
}

/// Why one answer set looks the way it does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetReason {
    pub basis: SetBasis,
    /// Health is ignored for this region's clients (panic mode).
    #[serde(default)]
    pub panic: bool,
    /// Weight overrides that pinned a target, with the pinned per-mille.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<(PopId, u32)>,
    /// The weight-step rail held some target below its wanted share.
    #[serde(default)]
    pub ramping: bool,
}

impl SetReason {
    pub fn new(basis: SetBasis) -> Self {
        Self {
            basis,
            panic: false,
            overrides: Vec::new(),
            ramping: false,
        }
    }
}

impl Default for SetReason {
    fn default() -> Self {
        Self::new(SetBasis::External)
    }
}

/// Live figures behind one answer set (see [`PlanEvidence`](crate::PlanEvidence)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SetFigures {
    /// Demand this set carries (rps); 0 when unknown.
    pub demand_rps: f64,
    /// Of which served outside the client's region.
    pub spilled_rps: f64,
    /// Of which over every usable PoP's capacity.
    pub shed_rps: f64,
    /// Where the demand figure came from.
    #[serde(default)]
    pub source: DemandSource,
}

/// Where a demand figure came from, so an operator can judge it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DemandSource {
    /// No figure: the set is weighted by capacity.
    #[default]
    None,
    /// The service's configured `demand_rps` estimate (no load reported).
    Configured,
    /// PoP load reports attributed to client regions by the DNS answers
    /// actually served to each region over the last `window_s` (what
    /// resolvers hold now), independent of the plan in force.
    Answers {
        /// Answers served to this set's clients in the window.
        answers: u64,
        window_s: u32,
    },
    /// PoP load reports attributed by the plan's shares: no DNS answers
    /// were counted for them (none served here yet, or DNS served elsewhere).
    PlanShares,
    /// What this region's clients sent, as the agents at `pops` PoPs
    /// attribute their load to client regions; split over the region's
    /// services by the answers served in the last `window_s`.
    RegionLoad {
        pops: u32,
        answers: u64,
        window_s: u32,
    },
}

impl DemandSource {
    /// One word: `region_load`, `answers`, `plan_shares`, `configured` or
    /// `none`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Configured => "configured",
            Self::Answers { .. } => "answers",
            Self::PlanShares => "plan_shares",
            Self::RegionLoad { .. } => "region_load",
        }
    }
}

impl fmt::Display for DemandSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("no demand figure (weighted by capacity)"),
            Self::Configured => f.write_str("configured demand_rps estimate"),
            Self::Answers { answers, window_s } => write!(
                f,
                "PoP load reports attributed by {answers} answer(s) served to these clients in the last {window_s} s"
            ),
            Self::PlanShares => f.write_str(
                "PoP load reports attributed by the plan's shares (no answers counted yet)",
            ),
            Self::RegionLoad {
                pops,
                answers,
                window_s,
            } => write!(
                f,
                "load these clients sent, as agents at {pops} PoP(s) attribute it by client region; \
                 {answers} answer(s) in the last {window_s} s split it over services"
            ),
        }
    }
}

impl SetReason {
    /// One line for operators. `region` is the set's client region (None
    /// for unmapped clients); `figures` adds the live rates when known.
    pub fn render(&self, region: Option<&RegionId>, figures: Option<&SetFigures>) -> String {
        let f = figures.copied().unwrap_or_default();
        let mut out = match &self.basis {
            SetBasis::WaterFilled {
                target_pct,
                spilled,
                shed,
            } => {
                let mut s = if f.demand_rps > 0.0 {
                    format!(
                        "{:.0} rps ({}) water-filled to {target_pct}% target",
                        f.demand_rps, f.source
                    )
                } else {
                    format!("demand water-filled to {target_pct}% target")
                };
                if *spilled {
                    let from = region.map_or("unmapped clients", RegionId::as_str);
                    if f.spilled_rps > 0.0 {
                        s.push_str(&format!("; {:.0} rps spilled out of {from}", f.spilled_rps));
                    } else {
                        s.push_str(&format!("; some demand spilled out of {from}"));
                    }
                }
                if *shed {
                    if f.shed_rps > 0.0 {
                        s.push_str(&format!(
                            "; {:.0} rps over capacity (lower-priority services shed)",
                            f.shed_rps
                        ));
                    } else {
                        s.push_str("; over capacity (lower-priority services shed)");
                    }
                }
                s
            }
            SetBasis::OwnRegion { usable } => format!("{usable} usable PoP(s) in own region"),
            SetBasis::SpilledTo { region: to, usable } => format!(
                "no usable PoP in {}: spilled to {to} ({usable} usable PoP(s))",
                region.map_or("this region", RegionId::as_str)
            ),
            SetBasis::UnmappedByHeadroom => {
                if f.demand_rps > 0.0 {
                    format!(
                        "{:.0} rps from unmapped clients ({}) spread by headroom",
                        f.demand_rps, f.source
                    )
                } else {
                    "unmapped clients' demand spread by headroom".to_owned()
                }
            }
            SetBasis::UnmappedByCapacity { usable } => {
                format!("{usable} usable PoP(s), weighted by capacity")
            }
            SetBasis::FailStatic => "no healthy PoP anywhere: health signal distrusted, \
                 serving all undrained PoPs (fail static)"
                .to_owned(),
            SetBasis::AllDrained => {
                "every PoP is drained: ignoring drains rather than answering nothing".to_owned()
            }
            SetBasis::External => "set outside the policy".to_owned(),
        };
        if self.panic {
            out.push_str("; PANIC: healthy share below threshold, health ignored");
        }
        if !self.overrides.is_empty() {
            let pins: Vec<String> = self
                .overrides
                .iter()
                .map(|(p, w)| format!("{p}={w}‰"))
                .collect();
            out.push_str(&format!("; weight override {}", pins.join(", ")));
        }
        if self.ramping {
            out.push_str("; ramping (weight-step rail)");
        }
        out
    }
}

/// Where a soft drain is in its life (DNS first, then BGP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftDrainPhase {
    /// DNS weight ramps to zero; the prefix stays announced.
    DnsRamp,
    /// Announced prepended for one more ramp.
    Prepend,
    Withdrawn,
}

/// Why one PoP announces a prefix the way it does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AnnounceReason {
    Healthy,
    /// The service at this PoP is not usable (state as the policy saw it).
    Unhealthy {
        health: PopHealth,
    },
    HardDrain {
        intent: String,
    },
    SoftDrain {
        intent: String,
        phase: SoftDrainPhase,
    },
    /// The min-announce rail kept this PoP announcing (prepended) although
    /// it wished to withdraw, so at least `min` of `of` PoPs announce.
    MinAnnounceRail {
        min: u32,
        of: u32,
        wished: Box<AnnounceReason>,
    },
}

impl AnnounceReason {
    pub fn is_min_announce_rail(&self) -> bool {
        matches!(self, Self::MinAnnounceRail { .. })
    }
}

impl fmt::Display for AnnounceReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Healthy => f.write_str("healthy"),
            Self::Unhealthy { health } => write!(f, "unhealthy ({})", health.as_str()),
            Self::HardDrain { intent } => write!(f, "hard drain {intent}"),
            Self::SoftDrain { intent, phase } => {
                let phase = match phase {
                    SoftDrainPhase::DnsRamp => "DNS ramp phase",
                    SoftDrainPhase::Prepend => "prepend phase",
                    SoftDrainPhase::Withdrawn => "withdrawn",
                };
                write!(f, "soft drain {intent}: {phase}")
            }
            Self::MinAnnounceRail { min, of, wished } => write!(
                f,
                "min-announce rail: kept (prepended) so at least {min} of {of} PoPs announce; \
                 wished withdraw: {wished}"
            ),
        }
    }
}

/// A safety rail that clamped a decision in this plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rail", rename_all = "snake_case")]
pub enum RailFired {
    /// A PoP's share grew faster than `max_weight_step_per_s` allows and
    /// was held at `held` per-mille.
    WeightStep {
        service: ServiceId,
        /// None for the unmapped clients' set.
        region: Option<RegionId>,
        pop: PopId,
        held: u32,
    },
    /// A PoP kept announcing `prefix` (prepended) so at least `min` of the
    /// prefix's `of` PoPs announce.
    MinAnnounce {
        pop: PopId,
        prefix: ipnet::IpNet,
        state: AnnounceState,
        min: u32,
        of: u32,
    },
}

impl RailFired {
    /// Whether this rail acted on `service`'s answers for `region`.
    pub fn concerns_set(&self, service: &ServiceId, region: Option<&RegionId>) -> bool {
        match self {
            Self::WeightStep {
                service: s,
                region: r,
                ..
            } => s == service && r.as_ref() == region,
            Self::MinAnnounce { .. } => false,
        }
    }
}

impl fmt::Display for RailFired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WeightStep {
                service,
                region,
                pop,
                held,
            } => write!(
                f,
                "weight-step rail: {pop} in {service}/{} held at {held}‰",
                region.as_ref().map_or("global", RegionId::as_str)
            ),
            Self::MinAnnounce {
                pop,
                prefix,
                min,
                of,
                ..
            } => write!(
                f,
                "min-announce rail: {pop} keeps {prefix} announced (prepended) so at least {min} of {of} PoPs announce"
            ),
        }
    }
}
