//! The policy engine: a pure function from the world as we know it to a Plan.
//!
//! `compute` reads no clock, does no IO and uses no randomness, so the same
//! inputs always give the same plan (replayable, property-testable).
//!
//! For each service (most important first, sharing PoP capacity) and each
//! client region:
//! 1. candidates are the service's PoPs that are healthy (per the snapshot
//!    and `unknown_health`) and not fully drained; a soft drain scales a
//!    PoP's capacity down over its ramp;
//! 2. with known demand (load reports attributed to regions, else the
//!    configured estimate), demand is water-filled into PoPs in preference
//!    order (own region, its fallbacks, then the rest by latency) up to the
//!    target utilisation, then up to full capacity, spilling onward; what
//!    still does not fit is spread by capacity (the region is `shed`);
//! 3. without demand figures, the first region in preference order with
//!    candidates serves, weighted by capacity;
//! 4. panic mode: if a region's serving PoPs have less than
//!    `panic_threshold` of their capacity healthy, health is ignored there;
//! 5. fail static: with no candidate anywhere, every undrained PoP serves,
//!    because a signal that says "everything is down" is more likely broken.
//!
//! Weights are the resulting shares; overrides pin a PoP's share; the
//! weight-step rail limits how fast a PoP's share may grow between plans.

mod announce;
mod demand;
mod fill;
mod overrides;
mod projection;
mod rails;
mod weights;

use std::time::Duration;

use steer_types::{
    Degradation, Drain, DrainMode, DrainScope, Intents, PERMILLE, Plan, PlanBody, PlanEvidence,
    Pop, PopHealth, PopPlan, RegionId, RegionPlan, Service, ServiceDrain, Timestamp, Topology,
    UnknownHealth,
    health::{HealthSnapshot, PopHealthReport, StaleLast, TargetState},
};

pub use demand::estimate_demand;
pub use projection::{attribute_demand, project, project_change, project_drain};
pub use weights::apportion;

/// Computes the plan body for the given inputs at `now`, with no previous
/// plan (so no weight-step rail).
pub fn compute(
    topology: &Topology,
    health: &HealthSnapshot,
    intents: &Intents,
    now: Timestamp,
) -> PlanBody {
    compute_step(topology, health, intents, None, now)
}

/// Computes the next plan body; `previous` is the plan being replaced, used
/// by the weight-step rail.
pub fn compute_step(
    topology: &Topology,
    health: &HealthSnapshot,
    intents: &Intents,
    previous: Option<&Plan>,
    now: Timestamp,
) -> PlanBody {
    compute_with_evidence(topology, health, intents, previous, now).0
}

/// As [`compute_step`], with the live figures behind the decisions
/// (demand rates, health evidence), which belong beside the plan, not in it.
pub fn compute_with_evidence(
    topology: &Topology,
    health: &HealthSnapshot,
    intents: &Intents,
    previous: Option<&Plan>,
    now: Timestamp,
) -> (PlanBody, PlanEvidence) {
    let unknown = PopHealthReport::unknown();
    let report = |pop: &Pop| health.pops.get(&pop.id).unwrap_or(&unknown);

    let fill::Filled {
        mut services,
        figures,
        levels,
        at_target,
    } = fill::plan_services(topology, health, intents, &report, now);
    let mut rails = rails::Rails::default();
    if let Some(prev) = previous {
        rails::limit_weight_steps(topology, prev, &mut services, now, &mut rails);
    }

    let first = services.first();
    let region_index: std::collections::HashMap<&str, usize> = topology
        .regions
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    let pop_region: std::collections::HashMap<&str, &RegionId> = topology
        .pops
        .iter()
        .map(|p| (p.id.as_str(), &p.region))
        .collect();
    // Budget shifts the policy acted on: a service and a member PoP.
    let mut budget: Vec<&steer_types::health::BudgetShift> = health
        .budget
        .iter()
        .filter(|b| {
            b.share > 0.0
                && b.share.is_finite()
                && topology
                    .services
                    .iter()
                    .any(|s| s.id == b.service && s.pops.contains(&b.pop))
        })
        .collect();
    budget.sort_by(|a, b| (&a.pop, &a.service, &a.slo).cmp(&(&b.pop, &b.service, &b.slo)));
    let pops = topology
        .pops
        .iter()
        .enumerate()
        .map(|(i, pop)| {
            let r = report(pop);
            let drain = intents.drain_for(&pop.id, &pop.region);
            let health = pop_health(r.state);
            // Soft drains in their DNS ramp still send traffic here; the
            // PoP is out once any drain of it as a whole is past its ramp.
            let keeps_traffic = drain.is_none()
                || topology
                    .services
                    .iter()
                    .find(|s| s.pops.contains(&pop.id))
                    .is_some_and(|s| {
                        intents
                            .drains
                            .iter()
                            .filter(|d| {
                                !matches!(d.scope, DrainScope::ServicePop { .. })
                                    && d.scope.covers(None, &pop.id, &pop.region)
                            })
                            .all(|d| drain_progress(d, s, now) < 1.0)
                    });
            let usable = keeps_traffic && state_usable(r.state, topology.health.unknown_health);
            // Only services a drain names at this PoP can have one (and
            // most plans have none: no scan of every service's PoPs).
            let named: Vec<&steer_types::ServiceId> = intents
                .drains
                .iter()
                .filter_map(|d| match &d.scope {
                    DrainScope::ServicePop { service, pop: p } if *p == pop.id => Some(service),
                    _ => None,
                })
                .collect();
            let service_drains = topology
                .services
                .iter()
                .filter(|s| named.contains(&&s.id) && s.pops.contains(&pop.id))
                .filter_map(|s| {
                    let d = strictest_drain(s, pop, intents, now)?;
                    (matches!(d.scope, DrainScope::ServicePop { .. })
                        && drain.is_none_or(|p| p.id != d.id))
                    .then(|| ServiceDrain {
                        service: s.id.clone(),
                        drain: d.id.clone(),
                    })
                })
                .collect();
            let weight = first
                .and_then(|s| {
                    region_index
                        .get(pop.region.as_str())
                        .and_then(|&i| s.regional.get(i))
                })
                .and_then(|set| set.targets.iter().find(|t| t.pop == pop.id))
                .map_or(0, |t| t.weight);
            PopPlan {
                id: pop.id.clone(),
                region: pop.region.clone(),
                health,
                usable,
                drained_by: drain.map(|d| d.id.clone()),
                weight,
                service_drains,
                at_target: at_target.get(i).copied().unwrap_or(false),
                budget_moves: budget
                    .iter()
                    .filter(|b| b.pop == pop.id)
                    .map(|b| steer_types::BudgetMove {
                        service: b.service.clone(),
                        slo: b.slo.clone(),
                        permille: ((b.share * f64::from(PERMILLE)).round() as u32)
                            .clamp(1, PERMILLE),
                    })
                    .collect(),
            }
        })
        .collect();

    let regions = topology
        .regions
        .iter()
        .enumerate()
        .map(|(ri, region)| {
            let mut served_by: Vec<RegionId> = Vec::new();
            if let Some(set) = first.and_then(|s| s.regional.get(ri)) {
                for t in &set.targets {
                    if let Some(r) = pop_region.get(t.pop.as_str())
                        && !served_by.contains(*r)
                    {
                        served_by.push((*r).clone());
                    }
                }
            }
            RegionPlan {
                id: region.id.clone(),
                served_by,
                level: levels.get(ri).copied().unwrap_or(Degradation::Normal),
            }
        })
        .collect();

    let mut rails_fired = rails.fired;
    let mut rail_wanted = rails.wanted;
    let mut announce_rails = Vec::new();
    let announcements = announce::plan(topology, intents, &report, now, &mut announce_rails);
    rail_wanted.extend(std::iter::repeat_n(0, announce_rails.len()));
    rails_fired.extend(announce_rails);
    let evidence = PlanEvidence {
        computed_at: now,
        services: figures,
        pops: topology
            .pops
            .iter()
            .map(|p| (p.id.clone(), report(p).evidence.clone()))
            .collect(),
        rail_wanted,
        budget: budget.into_iter().cloned().collect(),
    };
    (
        PlanBody {
            services,
            pops,
            regions,
            announcements,
            rails: rails_fired,
        },
        evidence,
    )
}

pub(crate) fn pop_health(state: TargetState) -> PopHealth {
    match state {
        TargetState::Up => PopHealth::Up,
        TargetState::Down => PopHealth::Down,
        TargetState::Unknown => PopHealth::Unknown,
        TargetState::Stale {
            last: StaleLast::Up,
        } => PopHealth::StaleUp,
        TargetState::Stale {
            last: StaleLast::Down,
        } => PopHealth::StaleDown,
    }
}

fn state_usable(state: TargetState, unknown: UnknownHealth) -> bool {
    match state {
        TargetState::Up
        | TargetState::Stale {
            last: StaleLast::Up,
        } => true,
        TargetState::Down
        | TargetState::Stale {
            last: StaleLast::Down,
        } => false,
        TargetState::Unknown => unknown == UnknownHealth::AssumeUp,
    }
}

/// Share of its normal capacity a PoP keeps for `service` under drains:
/// 1 undrained, 0 hard-drained or past its ramp, linear in between. With
/// several covering drains the strictest wins, whatever their order.
fn drain_factor(service: &Service, pop: &Pop, intents: &Intents, now: Timestamp) -> f64 {
    strictest_drain(service, pop, intents, now).map_or(1.0, |d| {
        (1.0 - drain_progress(d, service, now)).clamp(0.0, 1.0)
    })
}

/// How far a drain has gone for `service` at `now`, in ramps: a soft
/// drain takes DNS weight away over its first ramp (0..1), prepends over
/// the second (1..2), then withdraws; a hard drain is past all of it.
pub(crate) fn drain_progress(drain: &Drain, service: &Service, now: Timestamp) -> f64 {
    match drain.mode {
        DrainMode::Hard => f64::INFINITY,
        DrainMode::Soft => {
            let ramp = effective_ramp(drain.ramp, service.ttl);
            now.since(drain.created).as_secs_f64() / ramp.as_secs_f64()
        }
    }
}

/// The drain covering `service` at `pop` that leaves it the least: the
/// one furthest along (hard beats soft; of two soft drains, the one that
/// started its ramp earlier relative to its length). Creation order
/// breaks ties, so the choice is deterministic.
pub(crate) fn strictest_drain<'a>(
    service: &Service,
    pop: &Pop,
    intents: &'a Intents,
    now: Timestamp,
) -> Option<&'a Drain> {
    intents
        .drains_for_service(&service.id, &pop.id, &pop.region)
        .fold(None, |best: Option<&Drain>, d| match best {
            Some(b) if drain_progress(b, service, now) >= drain_progress(d, service, now) => {
                Some(b)
            }
            _ => Some(d),
        })
}

/// A zero ramp means five TTLs: long enough for resolvers to drop the
/// old answers before the weight reaches zero.
pub fn effective_ramp(ramp: Duration, ttl: u32) -> Duration {
    if ramp.is_zero() {
        Duration::from_secs(u64::from(ttl.max(1)) * 5)
    } else {
        ramp
    }
}

#[cfg(test)]
mod stability_tests;
#[cfg(test)]
mod tests;
