//! Load projection: where would today's load go under a proposed plan?
//!
//! Each PoP's reported load is attributed to the answer sets it is in, in
//! proportion to its weight there; each set's demand is then re-spread by
//! the proposed weights. Pure arithmetic on two plan bodies and the health
//! snapshot, so a dry run and the real refusal give the same figures.

use std::collections::BTreeMap;

use steer_types::{
    AnswerSet, Drain, DrainMode, DrainScope, Intents, PERMILLE, PlanBody, PopId, RegionId,
    ServiceId, Timestamp, Topology,
    health::{HealthSnapshot, ObservedDemand},
    projection::{PopProjection, Projection},
};

fn sets(body: &PlanBody) -> impl Iterator<Item = (usize, &AnswerSet)> {
    body.services
        .iter()
        .flat_map(|s| s.regional.iter().chain(std::iter::once(&s.global)))
        .enumerate()
}

/// Each set's (service, client region) in `sets` order.
fn keyed_sets(body: &PlanBody) -> impl Iterator<Item = (&ServiceId, Option<&RegionId>)> {
    body.services.iter().flat_map(|s| {
        s.regional
            .iter()
            .chain(std::iter::once(&s.global))
            .map(move |set| (&s.id, set.region.as_ref()))
    })
}

/// Where today's load would go under `new_topology` (a proposed config),
/// against the plan in force: capacities are the new config's.
pub fn project_change(
    new_topology: &Topology,
    health: &HealthSnapshot,
    intents: &Intents,
    current: &PlanBody,
    now: Timestamp,
) -> (PlanBody, Projection) {
    let proposed = crate::compute(new_topology, health, intents, now);
    let projection = project(new_topology, health, current, &proposed);
    (proposed, projection)
}

/// Attributes each PoP's reported load to the answer sets it serves under
/// `current`, giving the demand per service and client region.
pub fn attribute_demand(
    current: &PlanBody,
    health: &HealthSnapshot,
) -> BTreeMap<ServiceId, ObservedDemand> {
    let demand = set_demand(current, health);
    let mut out = BTreeMap::new();
    let mut i = 0;
    for s in &current.services {
        let mut d = ObservedDemand::default();
        for set in &s.regional {
            if let Some(r) = &set.region {
                d.regional
                    .insert(r.clone(), demand.get(i).copied().unwrap_or(0.0));
            }
            i += 1;
        }
        d.global = demand.get(i).copied().unwrap_or(0.0);
        i += 1;
        out.insert(s.id.clone(), d);
    }
    out
}

/// Demand per answer set (in `sets` order), attributed from PoP loads.
fn set_demand(current: &PlanBody, health: &HealthSnapshot) -> Vec<f64> {
    let load = |pop: &PopId| health.pops.get(pop).map_or(0.0, |h| h.load_rps);
    let mut total_weight: BTreeMap<&PopId, f64> = BTreeMap::new();
    for (_, set) in sets(current) {
        for t in &set.targets {
            *total_weight.entry(&t.pop).or_default() += f64::from(t.weight);
        }
    }
    let mut demand: Vec<f64> = sets(current)
        .map(|(_, set)| {
            set.targets
                .iter()
                .map(|t| {
                    let total = total_weight.get(&t.pop).copied().unwrap_or(0.0);
                    if total > 0.0 {
                        load(&t.pop) * f64::from(t.weight) / total
                    } else {
                        0.0
                    }
                })
                .sum()
        })
        .collect();
    // Load on a PoP that no set uses any more (just drained or failed, the
    // report predates the plan) still exists: its clients are mostly its own
    // region's, so it goes to that region's sets.
    let region_of: BTreeMap<&PopId, &RegionId> =
        current.pops.iter().map(|p| (&p.id, &p.region)).collect();
    for p in &current.pops {
        let orphan = load(&p.id);
        if orphan <= 0.0 || total_weight.contains_key(&p.id) {
            continue;
        }
        let own: Vec<usize> = sets(current)
            .filter(|(_, set)| set.region.as_ref() == region_of.get(&p.id).copied())
            .map(|(i, _)| i)
            .collect();
        for &i in &own {
            demand[i] += orphan / own.len() as f64;
        }
    }
    demand
}

/// Demand per answer set (in `sets` order) from the control loop's
/// estimate (answers served × PoP load), when it has one.
fn observed_set_demand(current: &PlanBody, health: &HealthSnapshot) -> Option<Vec<f64>> {
    let known: f64 = health
        .demand
        .values()
        .map(|d| d.regional.values().sum::<f64>() + d.global)
        .sum();
    if known <= 0.0 {
        return None;
    }
    Some(
        current
            .services
            .iter()
            .flat_map(|s| {
                let d = health.demand.get(&s.id);
                s.regional
                    .iter()
                    .map(move |set| {
                        d.and_then(|d| set.region.as_ref().and_then(|r| d.regional.get(r)))
                            .copied()
                            .unwrap_or(0.0)
                    })
                    .chain(std::iter::once(d.map_or(0.0, |d| d.global)))
            })
            .collect(),
    )
}

/// Where today's load would go if `scope` were drained (its end state: as
/// if any ramp were over), against the plan without that drain. A drain of
/// the same scope already in force is replaced, as a real drain would.
/// Pure: the control loop's refusal and an off-loop dry run agree.
pub fn project_drain(
    topology: &Topology,
    health: &HealthSnapshot,
    intents: &Intents,
    scope: &DrainScope,
    now: Timestamp,
) -> Projection {
    let mut end_state = intents.clone();
    end_state.drains.retain(|d| &d.scope != scope);
    end_state.drains.push(Drain {
        id: "projected".into(),
        scope: scope.clone(),
        mode: DrainMode::Hard,
        ramp: std::time::Duration::ZERO,
        reason: String::new(),
        principal: String::new(),
        created: now,
        expires: None,
        forced: false,
    });
    let unchanged = crate::compute(topology, health, intents, now);
    let proposed = crate::compute(topology, health, &end_state, now);
    project(topology, health, &unchanged, &proposed)
}

/// Projects per-PoP load from `current` to `proposed`. PoPs without a load
/// report count as idle.
pub fn project(
    topology: &Topology,
    health: &HealthSnapshot,
    current: &PlanBody,
    proposed: &PlanBody,
) -> Projection {
    let load = |pop: &PopId| health.pops.get(pop).map_or(0.0, |h| h.load_rps);
    let capacity = |pop: &PopId| {
        let configured = topology.pop(pop.as_str()).map_or(0.0, |p| p.capacity_rps);
        health
            .pops
            .get(pop)
            .and_then(|h| h.reported_capacity_rps)
            .unwrap_or(configured)
    };

    let demand =
        observed_set_demand(current, health).unwrap_or_else(|| set_demand(current, health));
    // Re-spread each set's demand by the proposed weights. Sets match by
    // service and client region, so a proposed plan from another config
    // (a change request) lines up too; a set new in it has no demand yet.
    let keyed: BTreeMap<(&ServiceId, Option<&RegionId>), f64> =
        keyed_sets(current).zip(demand).collect();
    let mut projected: BTreeMap<PopId, f64> = BTreeMap::new();
    for (key, set) in keyed_sets(proposed).zip(sets(proposed).map(|(_, s)| s)) {
        let d = keyed.get(&key).copied().unwrap_or(0.0);
        for t in &set.targets {
            *projected.entry(t.pop.clone()).or_default() +=
                d * f64::from(t.weight) / f64::from(PERMILLE);
        }
    }

    let pops: Vec<PopProjection> = topology
        .pops
        .iter()
        .map(|p| {
            let cap = capacity(&p.id);
            let projected_rps = projected.get(&p.id).copied().unwrap_or(0.0);
            PopProjection {
                pop: p.id.clone(),
                capacity_rps: cap,
                current_rps: load(&p.id),
                projected_rps,
                projected_utilisation: if cap > 0.0 { projected_rps / cap } else { 0.0 },
            }
        })
        .collect();
    let over: Vec<&PopProjection> = pops
        .iter()
        .filter(|p| p.projected_utilisation > 1.0)
        .collect();
    let summary = if over.is_empty() {
        match pops
            .iter()
            .max_by(|a, b| a.projected_utilisation.total_cmp(&b.projected_utilisation))
        {
            Some(top) if top.projected_rps > 0.0 => format!(
                "no PoP over capacity; busiest would be {} at {:.0}% ({:.0}/{:.0} rps)",
                top.pop,
                top.projected_utilisation * 100.0,
                top.projected_rps,
                top.capacity_rps
            ),
            _ => "no PoP over capacity (no load reported)".to_owned(),
        }
    } else {
        let parts: Vec<String> = over
            .iter()
            .map(|p| {
                format!(
                    "{} to {:.0}% ({:.0}/{:.0} rps)",
                    p.pop,
                    p.projected_utilisation * 100.0,
                    p.projected_rps,
                    p.capacity_rps
                )
            })
            .collect();
        format!("would push {}", parts.join(", "))
    };
    Projection {
        over_capacity: !over.is_empty(),
        pops,
        summary,
    }
}
