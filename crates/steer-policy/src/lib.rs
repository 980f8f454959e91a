//! The policy engine: a pure function from the world as we know it to a Plan.
//!
//! `compute` reads no clock, does no IO and uses no randomness, so the same
//! inputs always give the same plan (replayable, property-testable).
//!
//! Decision order for each service and client region:
//! 1. PoPs of the client's own region that are usable (healthy per the
//!    snapshot and `unknown_health`, and not drained);
//! 2. else the first region in its fallback order that has usable PoPs;
//! 3. else any other region, in topology order;
//! 4. else fail static: every undrained PoP regardless of health, because a
//!    signal that says "everything is down" is more likely broken than true.
//!
//! Within the chosen region, weights are proportional to capacity.

mod announce;
mod projection;
mod weights;

use std::time::Duration;

use steer_types::{
    AnswerSet, DrainMode, Intents, PERMILLE, PlanBody, Pop, PopHealth, PopPlan, RegionId,
    RegionPlan, Service, ServicePlan, Timestamp, Topology, UnknownHealth, WeightedTarget,
    health::{HealthSnapshot, PopHealthReport, StaleLast, TargetState},
};

pub use projection::project;
pub use weights::apportion;

/// Computes the plan body for the given inputs at `now`.
pub fn compute(
    topology: &Topology,
    health: &HealthSnapshot,
    intents: &Intents,
    now: Timestamp,
) -> PlanBody {
    let unknown = PopHealthReport::unknown();
    let report = |pop: &Pop| health.pops.get(&pop.id).unwrap_or(&unknown);

    let services: Vec<ServicePlan> = topology
        .services
        .iter()
        .map(|service| plan_service(topology, service, intents, &report, now))
        .collect();

    let first = services.first();
    let pops = topology
        .pops
        .iter()
        .map(|pop| {
            let r = report(pop);
            let drain = intents.drain_for(&pop.id, &pop.region);
            let health = pop_health(r.state);
            let usable = drain.is_none() && state_usable(r.state, topology.health.unknown_health);
            let weight = first
                .map(|s| s.for_region(Some(&pop.region)))
                .and_then(|set| set.targets.iter().find(|t| t.pop == pop.id))
                .map_or(0, |t| t.weight);
            let reason = match drain {
                Some(d) => format!("drained by {} ({}): {}", d.id, d.principal, d.reason),
                None => format!("{}: {}", health.as_str(), r.evidence),
            };
            PopPlan {
                id: pop.id.clone(),
                region: pop.region.clone(),
                health,
                usable,
                drained_by: drain.map(|d| d.id.clone()),
                weight,
                reason,
            }
        })
        .collect();

    let regions = topology
        .regions
        .iter()
        .map(|region| {
            let mut served_by: Vec<RegionId> = Vec::new();
            if let Some(set) = first.map(|s| s.for_region(Some(&region.id))) {
                for t in &set.targets {
                    if let Some(p) = topology.pop(t.pop.as_str())
                        && !served_by.contains(&p.region)
                    {
                        served_by.push(p.region.clone());
                    }
                }
            }
            RegionPlan {
                id: region.id.clone(),
                served_by,
            }
        })
        .collect();

    let announcements = announce::plan(topology, intents, &report, now);
    PlanBody {
        services,
        pops,
        regions,
        announcements,
    }
}

fn pop_health(state: TargetState) -> PopHealth {
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

/// Share of its normal weight a PoP keeps for `service` under drains:
/// 1 undrained, 0 hard-drained or past its ramp, linear in between.
fn drain_factor(service: &Service, pop: &Pop, intents: &Intents, now: Timestamp) -> f64 {
    let Some(drain) = intents.drain_for_service(&service.id, &pop.id, &pop.region) else {
        return 1.0;
    };
    match drain.mode {
        DrainMode::Hard => 0.0,
        DrainMode::Soft => {
            let ramp = effective_ramp(drain.ramp, service.ttl);
            let elapsed = now.since(drain.created);
            (1.0 - elapsed.as_secs_f64() / ramp.as_secs_f64()).clamp(0.0, 1.0)
        }
    }
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

fn plan_service<'a>(
    topology: &'a Topology,
    service: &Service,
    intents: &Intents,
    report: &impl Fn(&Pop) -> &'a PopHealthReport,
    now: Timestamp,
) -> ServicePlan {
    let pops: Vec<&Pop> = service
        .pops
        .iter()
        .filter_map(|id| topology.pop(id.as_str()))
        .collect();
    let factor = |p: &Pop| drain_factor(service, p, intents, now);
    let usable: Vec<&Pop> = pops
        .iter()
        .copied()
        .filter(|p| {
            factor(p) > 0.0
                && state_usable(
                    report(p).service_state(&service.id),
                    topology.health.unknown_health,
                )
        })
        .collect();

    let regional = topology
        .regions
        .iter()
        .map(|region| {
            let order = std::iter::once(&region.id)
                .chain(region.fallback.iter())
                .chain(topology.regions.iter().map(|r| &r.id));
            let mut chosen = None;
            for candidate in order {
                let in_region: Vec<&Pop> = usable
                    .iter()
                    .copied()
                    .filter(|p| &p.region == candidate)
                    .collect();
                if !in_region.is_empty() {
                    chosen = Some((candidate, in_region));
                    break;
                }
            }
            match chosen {
                Some((serving, set)) => {
                    let reason = if serving == &region.id {
                        format!("{} usable PoP(s) in own region", set.len())
                    } else {
                        format!("no usable PoP in {}: spilled to {serving}", region.id)
                    };
                    answer_set(
                        Some(region.id.clone()),
                        &set,
                        intents,
                        report,
                        &factor,
                        reason,
                    )
                }
                None => fail_static(Some(region.id.clone()), &pops, report, &factor),
            }
        })
        .collect();

    let global = if usable.is_empty() {
        fail_static(None, &pops, report, &factor)
    } else {
        answer_set(
            None,
            &usable,
            intents,
            report,
            &factor,
            format!("{} usable PoP(s), weighted by capacity", usable.len()),
        )
    };

    ServicePlan {
        id: service.id.clone(),
        fqdn: service.fqdn.clone(),
        ttl: service.ttl,
        max_records: service.max_records,
        regional,
        global,
    }
}

/// No usable PoP anywhere: serve every undrained PoP (or, if the operator
/// drained all of them, every PoP) rather than nothing.
fn fail_static<'a>(
    region: Option<RegionId>,
    pops: &[&Pop],
    report: &impl Fn(&Pop) -> &'a PopHealthReport,
    factor: &impl Fn(&Pop) -> f64,
) -> AnswerSet {
    let undrained: Vec<&Pop> = pops.iter().copied().filter(|p| factor(p) > 0.0).collect();
    let (set, reason) = if undrained.is_empty() {
        (
            pops.to_vec(),
            "every PoP is drained: ignoring drains rather than answering nothing",
        )
    } else {
        (
            undrained,
            "no healthy PoP anywhere: health signal distrusted, serving all undrained PoPs (fail static)",
        )
    };
    answer_set(
        region,
        &set,
        &Intents::default(),
        report,
        &|_: &Pop| 1.0,
        reason.to_owned(),
    )
}

/// Pins the given targets' weights and shares what is left among the rest
/// in proportion to their computed weights. Targets pinned to 0 leave the
/// set's traffic entirely (weight 0 is dropped by the caller).
fn apply_overrides(weights: &[u32], pinned: &[(usize, u32)]) -> Vec<u32> {
    let others: Vec<usize> = (0..weights.len())
        .filter(|i| pinned.iter().all(|&(j, _)| j != *i))
        .collect();
    let mut out = vec![0; weights.len()];
    if others.is_empty() {
        // Only pinned targets: keep their proportions, fill the set.
        let shares: Vec<f64> = pinned.iter().map(|&(_, w)| f64::from(w.max(1))).collect();
        for (k, w) in apportion(&shares).into_iter().enumerate() {
            out[pinned[k].0] = w;
        }
        return out;
    }
    let mut budget = PERMILLE;
    for &(i, w) in pinned {
        let w = w.min(budget);
        out[i] = w;
        budget -= w;
    }
    let shares: Vec<f64> = others.iter().map(|&i| f64::from(weights[i])).collect();
    let spread = apportion(&shares);
    // apportion fills PERMILLE; rescale to the budget, largest remainder.
    let exact: Vec<f64> = spread
        .iter()
        .map(|&w| f64::from(w) * f64::from(budget) / f64::from(PERMILLE))
        .collect();
    let mut given = 0;
    for (k, &i) in others.iter().enumerate() {
        out[i] = exact[k].floor() as u32;
        given += out[i];
    }
    let mut order: Vec<usize> = (0..others.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    for k in order.into_iter().take((budget - given) as usize) {
        out[others[k]] += 1;
    }
    out
}

fn answer_set<'a>(
    region: Option<RegionId>,
    pops: &[&Pop],
    intents: &Intents,
    report: &impl Fn(&Pop) -> &'a PopHealthReport,
    factor: &impl Fn(&Pop) -> f64,
    reason: String,
) -> AnswerSet {
    let capacities: Vec<f64> = pops
        .iter()
        .map(|p| report(p).reported_capacity_rps.unwrap_or(p.capacity_rps) * factor(p))
        .collect();
    let mut weights = apportion(&capacities);
    let mut reason = reason;
    let pinned: Vec<(usize, u32)> = pops
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            intents
                .override_for(&p.id)
                .map(|o| (i, o.weight.min(PERMILLE)))
        })
        .collect();
    if !pinned.is_empty() {
        weights = apply_overrides(&weights, &pinned);
        let names: Vec<String> = pinned
            .iter()
            .map(|&(i, w)| format!("{}={}‰", pops[i].id, w))
            .collect();
        reason.push_str(&format!("; weight override {}", names.join(", ")));
    }
    AnswerSet {
        region,
        targets: pops
            .iter()
            .zip(weights)
            .filter(|(_, weight)| *weight > 0)
            .map(|(p, weight)| WeightedTarget {
                pop: p.id.clone(),
                weight,
                ipv4: p.ipv4,
                ipv6: p.ipv6,
            })
            .collect(),
        reason,
    }
}

#[cfg(test)]
mod tests;
