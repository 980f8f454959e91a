//! Typed plan entries: steer-types decisions to and from the proto
//! messages of `operator.proto` ("Typed plan entries"). Decoding is the
//! boundary: every field is checked into its domain type, and an entry that
//! does not convert refuses the whole plan.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use steer_proto::v1 as pb;
use steer_types::{
    AnnounceReason, AnnounceState, Announcement, AnswerSet, BudgetMove, Canary, Degradation,
    PopHealth, PopId, PopPlan, RailFired, RegionId, RegionPlan, ServiceDrain, ServiceId, SetBasis,
    SetReason, SoftDrainPhase, WeightedTarget,
};

type Result<T> = std::result::Result<T, String>;

fn missing(what: &str) -> String {
    format!("{what} is missing")
}

pub(crate) fn health_to(h: PopHealth) -> pb::PlanPopHealth {
    match h {
        PopHealth::Up => pb::PlanPopHealth::Up,
        PopHealth::Down => pb::PlanPopHealth::Down,
        PopHealth::Unknown => pb::PlanPopHealth::Unknown,
        PopHealth::StaleUp => pb::PlanPopHealth::StaleUp,
        PopHealth::StaleDown => pb::PlanPopHealth::StaleDown,
    }
}

fn health_from(v: i32) -> Result<PopHealth> {
    Ok(
        match pb::PlanPopHealth::try_from(v).map_err(|_| format!("unknown PoP health {v}"))? {
            pb::PlanPopHealth::Up => PopHealth::Up,
            pb::PlanPopHealth::Down => PopHealth::Down,
            pb::PlanPopHealth::Unknown => PopHealth::Unknown,
            pb::PlanPopHealth::StaleUp => PopHealth::StaleUp,
            pb::PlanPopHealth::StaleDown => PopHealth::StaleDown,
        },
    )
}

/// A set's entry. With `chunks` the targets travel in chunk entries
/// ([`chunk_to`]) and only the chunks' numbers are listed here.
pub(crate) fn set_to(s: &AnswerSet, chunks: Vec<u32>) -> pb::PlanAnswerSet {
    pb::PlanAnswerSet {
        region: s.region.as_ref().map(ToString::to_string),
        targets: if chunks.is_empty() {
            s.targets.iter().map(target_to).collect()
        } else {
            Vec::new()
        },
        reason: Some(set_reason_to(&s.reason)),
        chunks,
    }
}

pub(crate) fn chunk_to(targets: &[WeightedTarget]) -> pb::PlanSetChunk {
    pb::PlanSetChunk {
        targets: targets.iter().map(target_to).collect(),
    }
}

fn target_to(t: &WeightedTarget) -> pb::PlanTarget {
    pb::PlanTarget {
        pop: t.pop.to_string(),
        weight: t.weight,
        ipv4: t.ipv4.map(|a| a.to_string()),
        ipv6: t.ipv6.map(|a| a.to_string()),
    }
}

fn set_reason_to(r: &SetReason) -> pb::PlanSetReason {
    use pb::plan_set_reason::{Basis, SpilledTo, Usable, WaterFilled};
    let basis = match &r.basis {
        SetBasis::WaterFilled {
            target_pct,
            spilled,
            shed,
        } => Basis::WaterFilled(WaterFilled {
            target_pct: *target_pct,
            spilled: *spilled,
            shed: *shed,
        }),
        SetBasis::OwnRegion { usable } => Basis::OwnRegion(Usable { usable: *usable }),
        SetBasis::SpilledTo { region, usable } => Basis::SpilledTo(SpilledTo {
            region: region.to_string(),
            usable: *usable,
        }),
        SetBasis::UnmappedByHeadroom => Basis::UnmappedByHeadroom(pb::PlanEmpty {}),
        SetBasis::UnmappedByCapacity { usable } => {
            Basis::UnmappedByCapacity(Usable { usable: *usable })
        }
        SetBasis::FailStatic => Basis::FailStatic(pb::PlanEmpty {}),
        SetBasis::AllDrained => Basis::AllDrained(pb::PlanEmpty {}),
        SetBasis::External => Basis::External(pb::PlanEmpty {}),
    };
    pb::PlanSetReason {
        basis: Some(basis),
        panic: r.panic,
        overrides: r
            .overrides
            .iter()
            .map(|(p, w)| pb::PlanPopWeight {
                pop: p.to_string(),
                weight: *w,
            })
            .collect(),
        ramping: r.ramping,
    }
}

/// A set's entry: the set (without its chunks' targets) and the numbers
/// of the chunks that hold them.
pub(crate) fn set_from(s: pb::PlanAnswerSet) -> Result<(AnswerSet, Vec<u32>)> {
    if !s.chunks.is_empty() && !s.targets.is_empty() {
        return Err("a chunked set lists targets too".to_owned());
    }
    if s.chunks.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("chunks {:?} are not strictly ascending", s.chunks));
    }
    let set = AnswerSet {
        region: s.region.map(|r| RegionId::from(r.as_str())),
        targets: targets_from(s.targets)?,
        reason: set_reason_from(s.reason.ok_or_else(|| missing("set reason"))?)?,
    };
    Ok((set, s.chunks))
}

pub(crate) fn chunk_from(c: pb::PlanSetChunk) -> Result<Vec<WeightedTarget>> {
    targets_from(c.targets)
}

fn targets_from(targets: Vec<pb::PlanTarget>) -> Result<Vec<WeightedTarget>> {
    targets
        .into_iter()
        .map(|t| {
            Ok(WeightedTarget {
                pop: PopId::from(t.pop.as_str()),
                weight: t.weight,
                ipv4: t
                    .ipv4
                    .map(|a| {
                        a.parse::<Ipv4Addr>()
                            .map_err(|e| format!("ipv4 {a:?}: {e}"))
                    })
                    .transpose()?,
                ipv6: t
                    .ipv6
                    .map(|a| {
                        a.parse::<Ipv6Addr>()
                            .map_err(|e| format!("ipv6 {a:?}: {e}"))
                    })
                    .transpose()?,
            })
        })
        .collect()
}

fn set_reason_from(r: pb::PlanSetReason) -> Result<SetReason> {
    use pb::plan_set_reason::Basis;
    let basis = match r.basis.ok_or_else(|| missing("set basis"))? {
        Basis::WaterFilled(w) => SetBasis::WaterFilled {
            target_pct: w.target_pct,
            spilled: w.spilled,
            shed: w.shed,
        },
        Basis::OwnRegion(u) => SetBasis::OwnRegion { usable: u.usable },
        Basis::SpilledTo(s) => SetBasis::SpilledTo {
            region: RegionId::from(s.region.as_str()),
            usable: s.usable,
        },
        Basis::UnmappedByHeadroom(_) => SetBasis::UnmappedByHeadroom,
        Basis::UnmappedByCapacity(u) => SetBasis::UnmappedByCapacity { usable: u.usable },
        Basis::FailStatic(_) => SetBasis::FailStatic,
        Basis::AllDrained(_) => SetBasis::AllDrained,
        Basis::External(_) => SetBasis::External,
    };
    Ok(SetReason {
        basis,
        panic: r.panic,
        overrides: r
            .overrides
            .into_iter()
            .map(|o| (PopId::from(o.pop.as_str()), o.weight))
            .collect(),
        ramping: r.ramping,
    })
}

pub(crate) fn pop_to(p: &PopPlan) -> pb::PlanPop {
    pb::PlanPop {
        id: p.id.to_string(),
        region: p.region.to_string(),
        health: health_to(p.health).into(),
        usable: p.usable,
        drained_by: p.drained_by.clone(),
        weight: p.weight,
        service_drains: p
            .service_drains
            .iter()
            .map(|d| pb::PlanServiceDrain {
                service: d.service.to_string(),
                drain: d.drain.clone(),
            })
            .collect(),
        at_target: p.at_target,
        budget_moves: p
            .budget_moves
            .iter()
            .map(|m| pb::PlanBudgetMove {
                service: m.service.to_string(),
                slo: m.slo.clone(),
                permille: m.permille,
            })
            .collect(),
    }
}

pub(crate) fn pop_from(p: pb::PlanPop) -> Result<PopPlan> {
    Ok(PopPlan {
        id: PopId::from(p.id.as_str()),
        region: RegionId::from(p.region.as_str()),
        health: health_from(p.health)?,
        usable: p.usable,
        drained_by: p.drained_by,
        weight: p.weight,
        service_drains: p
            .service_drains
            .into_iter()
            .map(|d| ServiceDrain {
                service: ServiceId::from(d.service.as_str()),
                drain: d.drain,
            })
            .collect(),
        at_target: p.at_target,
        budget_moves: p
            .budget_moves
            .into_iter()
            .map(|m| BudgetMove {
                service: ServiceId::from(m.service.as_str()),
                slo: m.slo,
                permille: m.permille,
            })
            .collect(),
    })
}

pub(crate) fn region_to(r: &RegionPlan) -> pb::PlanRegion {
    let level = match r.level {
        Degradation::Normal => pb::PlanDegradation::Normal,
        Degradation::Spill => pb::PlanDegradation::Spill,
        Degradation::Shed => pb::PlanDegradation::Shed,
        Degradation::Panic => pb::PlanDegradation::Panic,
    };
    pb::PlanRegion {
        id: r.id.to_string(),
        served_by: r.served_by.iter().map(ToString::to_string).collect(),
        level: level.into(),
    }
}

pub(crate) fn region_from(r: pb::PlanRegion) -> Result<RegionPlan> {
    let level = match pb::PlanDegradation::try_from(r.level)
        .map_err(|_| format!("unknown degradation level {}", r.level))?
    {
        pb::PlanDegradation::Normal => Degradation::Normal,
        pb::PlanDegradation::Spill => Degradation::Spill,
        pb::PlanDegradation::Shed => Degradation::Shed,
        pb::PlanDegradation::Panic => Degradation::Panic,
    };
    Ok(RegionPlan {
        id: RegionId::from(r.id.as_str()),
        served_by: r
            .served_by
            .iter()
            .map(|s| RegionId::from(s.as_str()))
            .collect(),
        level,
    })
}

fn state_to(s: AnnounceState) -> pb::PlanAnnounceState {
    use pb::plan_announce_state::State;
    pb::PlanAnnounceState {
        state: Some(match s {
            AnnounceState::Announce => State::Announce(pb::PlanEmpty {}),
            AnnounceState::Prepend { count } => State::Prepend(u32::from(count)),
            AnnounceState::Withdraw => State::Withdraw(pb::PlanEmpty {}),
        }),
    }
}

fn state_from(s: Option<pb::PlanAnnounceState>) -> Result<AnnounceState> {
    use pb::plan_announce_state::State;
    Ok(
        match s
            .and_then(|s| s.state)
            .ok_or_else(|| missing("announce state"))?
        {
            State::Announce(_) => AnnounceState::Announce,
            State::Prepend(n) => AnnounceState::Prepend {
                count: u8::try_from(n).map_err(|_| format!("prepend count {n} over 255"))?,
            },
            State::Withdraw(_) => AnnounceState::Withdraw,
        },
    )
}

fn prefix_from(p: &str) -> Result<IpNet> {
    p.parse().map_err(|e| format!("prefix {p:?}: {e}"))
}

fn announce_reason_to(r: &AnnounceReason) -> pb::PlanAnnounceReason {
    use pb::plan_announce_reason::{Kind, MinAnnounceRail, SoftDrain};
    let kind = match r {
        AnnounceReason::Healthy => Kind::Healthy(pb::PlanEmpty {}),
        AnnounceReason::Unhealthy { health } => Kind::Unhealthy(health_to(*health).into()),
        AnnounceReason::HardDrain { intent } => Kind::HardDrain(intent.clone()),
        AnnounceReason::SoftDrain { intent, phase } => Kind::SoftDrain(SoftDrain {
            intent: intent.clone(),
            phase: match phase {
                SoftDrainPhase::DnsRamp => pb::PlanSoftDrainPhase::DnsRamp,
                SoftDrainPhase::Prepend => pb::PlanSoftDrainPhase::Prepend,
                SoftDrainPhase::Withdrawn => pb::PlanSoftDrainPhase::Withdrawn,
            }
            .into(),
        }),
        AnnounceReason::MinAnnounceRail { min, of, wished } => {
            Kind::MinAnnounceRail(Box::new(MinAnnounceRail {
                min: *min,
                of: *of,
                wished: Some(Box::new(announce_reason_to(wished))),
            }))
        }
    };
    pb::PlanAnnounceReason { kind: Some(kind) }
}

/// Reasons nest only through the min-announce rail; deeper than this is
/// not something our policy makes, and is refused rather than recursed.
const MAX_REASON_DEPTH: usize = 4;

fn announce_reason_from(r: pb::PlanAnnounceReason, depth: usize) -> Result<AnnounceReason> {
    use pb::plan_announce_reason::Kind;
    if depth > MAX_REASON_DEPTH {
        return Err("announce reason nested too deep".to_owned());
    }
    Ok(match r.kind.ok_or_else(|| missing("announce reason"))? {
        Kind::Healthy(_) => AnnounceReason::Healthy,
        Kind::Unhealthy(h) => AnnounceReason::Unhealthy {
            health: health_from(h)?,
        },
        Kind::HardDrain(intent) => AnnounceReason::HardDrain { intent },
        Kind::SoftDrain(s) => AnnounceReason::SoftDrain {
            intent: s.intent,
            phase: match pb::PlanSoftDrainPhase::try_from(s.phase)
                .map_err(|_| format!("unknown soft drain phase {}", s.phase))?
            {
                pb::PlanSoftDrainPhase::DnsRamp => SoftDrainPhase::DnsRamp,
                pb::PlanSoftDrainPhase::Prepend => SoftDrainPhase::Prepend,
                pb::PlanSoftDrainPhase::Withdrawn => SoftDrainPhase::Withdrawn,
            },
        },
        Kind::MinAnnounceRail(m) => AnnounceReason::MinAnnounceRail {
            min: m.min,
            of: m.of,
            wished: Box::new(announce_reason_from(
                *m.wished.ok_or_else(|| missing("wished reason"))?,
                depth + 1,
            )?),
        },
    })
}

pub(crate) fn announcement_to(a: &Announcement) -> pb::PlanAnnouncement {
    pb::PlanAnnouncement {
        pop: a.pop.to_string(),
        prefix: a.prefix.to_string(),
        state: Some(state_to(a.state)),
        reason: Some(announce_reason_to(&a.reason)),
    }
}

pub(crate) fn announcement_from(a: pb::PlanAnnouncement) -> Result<Announcement> {
    Ok(Announcement {
        pop: PopId::from(a.pop.as_str()),
        prefix: prefix_from(&a.prefix)?,
        state: state_from(a.state)?,
        reason: announce_reason_from(a.reason.ok_or_else(|| missing("announce reason"))?, 0)?,
    })
}

pub(crate) fn rails_to(rails: &[RailFired]) -> pb::PlanRails {
    use pb::plan_rail::{MinAnnounce, Rail, WeightStep};
    pb::PlanRails {
        rails: rails
            .iter()
            .map(|r| pb::PlanRail {
                rail: Some(match r {
                    RailFired::WeightStep {
                        service,
                        region,
                        pop,
                        held,
                    } => Rail::WeightStep(WeightStep {
                        service: service.to_string(),
                        region: region.as_ref().map(ToString::to_string),
                        pop: pop.to_string(),
                        held: *held,
                    }),
                    RailFired::MinAnnounce {
                        pop,
                        prefix,
                        state,
                        min,
                        of,
                    } => Rail::MinAnnounce(MinAnnounce {
                        pop: pop.to_string(),
                        prefix: prefix.to_string(),
                        state: Some(state_to(*state)),
                        min: *min,
                        of: *of,
                    }),
                }),
            })
            .collect(),
    }
}

pub(crate) fn rails_from(r: pb::PlanRails) -> Result<Vec<RailFired>> {
    use pb::plan_rail::Rail;
    r.rails
        .into_iter()
        .map(|r| {
            Ok(match r.rail.ok_or_else(|| missing("rail"))? {
                Rail::WeightStep(w) => RailFired::WeightStep {
                    service: ServiceId::from(w.service.as_str()),
                    region: w.region.map(|r| RegionId::from(r.as_str())),
                    pop: PopId::from(w.pop.as_str()),
                    held: w.held,
                },
                Rail::MinAnnounce(m) => RailFired::MinAnnounce {
                    pop: PopId::from(m.pop.as_str()),
                    prefix: prefix_from(&m.prefix)?,
                    state: state_from(m.state)?,
                    min: m.min,
                    of: m.of,
                },
            })
        })
        .collect()
}

pub(crate) fn canary_to(c: &Canary) -> pb::PlanCanary {
    let regional = c.regional.iter().enumerate().filter_map(|(i, set)| {
        Some(pb::PlanCanarySet {
            regional: Some(u32::try_from(i).ok()?),
            set: Some(set_to(set.as_ref()?, Vec::new())),
        })
    });
    let global = c.global.iter().map(|set| pb::PlanCanarySet {
        regional: None,
        set: Some(set_to(set, Vec::new())),
    });
    pb::PlanCanary {
        share_ppm: c.share_ppm,
        sets: regional.chain(global).collect(),
    }
}

/// The canary of a service with `regions` regional sets.
pub(crate) fn canary_from(c: pb::PlanCanary, regions: usize) -> Result<Canary> {
    if !(1..1_000_000).contains(&c.share_ppm) {
        return Err(format!(
            "canary share {} ppm is not in 1..=999999",
            c.share_ppm
        ));
    }
    let mut out = Canary {
        share_ppm: c.share_ppm,
        regional: vec![None; regions],
        global: None,
    };
    for s in c.sets {
        let (set, chunks) = set_from(s.set.ok_or_else(|| missing("canary set"))?)?;
        if !chunks.is_empty() {
            return Err("a canary set is chunked".to_owned());
        }
        let slot = match s.regional {
            None => &mut out.global,
            Some(i) => usize::try_from(i)
                .ok()
                .and_then(|i| out.regional.get_mut(i))
                .ok_or_else(|| format!("canary set for regional set {i} of {regions}"))?,
        };
        if slot.replace(set).is_some() {
            return Err("a canary lists one set twice".to_owned());
        }
    }
    Ok(out)
}
