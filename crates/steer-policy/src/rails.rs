//! The weight-step rail: a PoP's share of an answer set may grow by at most
//! `max_weight_step_per_s` per-mille per second. Shares that must move
//! because a PoP left the set (unusable, drained) are never held back: the
//! rail only slows growth that can be paid for by PoPs that are still
//! there and are losing share.

use steer_types::{
    AnswerSet, PERMILLE, Plan, RailFired, ServiceId, ServicePlan, Timestamp, Topology,
};

use crate::apportion;

pub(crate) fn limit_weight_steps(
    topology: &Topology,
    previous: &Plan,
    services: &mut [ServicePlan],
    now: Timestamp,
    rails: &mut Rails,
) {
    let per_s = topology.policy.max_weight_step_per_s;
    if per_s == 0 {
        return;
    }
    let dt = now.since(previous.computed_at).as_secs_f64();
    let allowance = (f64::from(per_s) * dt).ceil().max(1.0);
    for service in services.iter_mut() {
        let Some(prev) = previous.body.services.iter().find(|s| s.id == service.id) else {
            continue;
        };
        let label = service.id.clone();
        for (i, set) in service.regional.iter_mut().enumerate() {
            // Same topology: same position; else search.
            let old = match prev.regional.get(i) {
                Some(o) if o.region == set.region => Some(o),
                _ => prev.regional.iter().find(|o| o.region == set.region),
            };
            if let Some(old) = old {
                clamp_set(set, old, allowance, &label, rails);
            }
        }
        clamp_set(&mut service.global, &prev.global, allowance, &label, rails);
    }
}

/// Rails fired, and for each the share it held a target back from
/// (evidence, not decision).
#[derive(Default)]
pub(crate) struct Rails {
    pub(crate) fired: Vec<RailFired>,
    pub(crate) wanted: Vec<u32>,
}

fn clamp_set(
    set: &mut AnswerSet,
    old: &AnswerSet,
    allowance: f64,
    service: &ServiceId,
    rails: &mut Rails,
) {
    // Sets can hold every PoP (a thousand): look the old weights up by
    // hash, not by scanning the old set for each target.
    let old_weights: std::collections::HashMap<&str, u32> = old
        .targets
        .iter()
        .map(|t| (t.pop.as_str(), t.weight))
        .collect();
    let prev_of =
        |pop: &steer_types::PopId| old_weights.get(pop.as_str()).map_or(0.0, |w| f64::from(*w));
    let wanted: Vec<f64> = set.targets.iter().map(|t| f64::from(t.weight)).collect();
    let before: Vec<f64> = set.targets.iter().map(|t| prev_of(&t.pop)).collect();
    let excess: Vec<f64> = wanted
        .iter()
        .zip(&before)
        .map(|(w, v)| (w - (v + allowance)).max(0.0))
        .collect();
    let freed: f64 = excess.iter().sum();
    if freed <= 0.0 {
        return;
    }
    // Room to give back: PoPs still in the set that are losing share.
    let room: Vec<f64> = wanted
        .iter()
        .zip(&before)
        .map(|(w, v)| (v - w).max(0.0))
        .collect();
    let total_room: f64 = room.iter().sum();
    if total_room <= 0.0 {
        return;
    }
    let given = freed.min(total_room);
    let scale = given / freed;
    let mut adjusted: Vec<f64> = wanted.clone();
    for i in 0..adjusted.len() {
        adjusted[i] -= excess[i] * scale;
        adjusted[i] += given * room[i] / total_room;
    }
    let weights = apportion(&adjusted);
    for ((t, w), want) in set.targets.iter_mut().zip(weights).zip(&wanted) {
        if w + 1 < *want as u32 {
            rails.fired.push(RailFired::WeightStep {
                service: service.clone(),
                region: set.region.clone(),
                pop: t.pop.clone(),
                held: w,
            });
            rails.wanted.push(want.round() as u32);
        }
        t.weight = w;
    }
    debug_assert_eq!(set.targets.iter().map(|t| t.weight).sum::<u32>(), PERMILLE);
    set.reason.ramping = true;
}
