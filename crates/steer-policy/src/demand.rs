//! Demand per client region, estimated from what the data plane served.
//!
//! A PoP reports its load, not where its clients are. The clients sending
//! it traffic now are the ones whose resolvers hold an answer naming it:
//! the answers served over the last TTL. So each PoP's load is explained as
//! a mix of the answer sets that named it, `load(p) = Σ_j a(j, p) · D(j)`,
//! where `a(j, p)` is the fraction of set j's answers (record shares: an
//! answer of two records gives each half) that named p in the window and
//! `D(j)` is set j's demand. Solving that for `D ≥ 0` (least squares; more
//! PoPs than unknowns in practice) gives each region's demand from the
//! answers actually held, not from the plan in force: while resolvers
//! still hold the previous plan's answers, their traffic is credited to
//! the region it really comes from, so re-planning on the estimate does
//! not relay between two plans. A set no client asked for gets nothing.
//!
//! The estimate also does not assume clients in different regions send
//! the same traffic per answer (one /24 of a busy ISP vs one of a small
//! one): each set has its own traffic per answer, which the solve finds
//! from PoPs that serve one region only. Where the data cannot tell two
//! sets apart (they named the same PoPs in the same proportions), a small
//! ridge keeps the split at the equal-traffic-per-answer split.

use std::collections::BTreeMap;

use steer_types::{
    DemandSource, PlanBody, PopId, RegionId, ServiceId, Topology,
    answers::{AnswerKey, AnswerWindow},
    health::{HealthSnapshot, ObservedDemand, TargetState},
};

/// Pull toward the equal-traffic-per-answer split, relative to a column's
/// own weight: large enough to settle unidentifiable splits, small enough
/// not to bias identifiable ones measurably.
const RIDGE: f64 = 1e-4;

/// Demand per service and client region from PoP load and the answers
/// served in `window`. Falls back to attributing by the plan's shares
/// ([`crate::attribute_demand`]) when no answers were counted at all.
///
/// Only PoPs that are up and reporting explain anything: a dead PoP's
/// load is not zero demand but traffic nobody measures, so it is left out
/// of the fit rather than read as "its clients send nothing". A set whose
/// every named PoP is out keeps its `previous` figure.
pub fn estimate_demand(
    topology: &Topology,
    current: &PlanBody,
    health: &HealthSnapshot,
    window: &AnswerWindow,
    previous: &BTreeMap<ServiceId, ObservedDemand>,
) -> BTreeMap<ServiceId, ObservedDemand> {
    let counted: f64 = window.counts.values().sum();
    if counted <= 0.0 {
        let mut legacy = crate::attribute_demand(current, health);
        for d in legacy.values_mut() {
            let source = |x: f64| {
                if x > 0.0 {
                    DemandSource::PlanShares
                } else {
                    DemandSource::None
                }
            };
            d.sources = d
                .regional
                .iter()
                .map(|(r, x)| (r.clone(), source(*x)))
                .collect();
            d.global_source = source(d.global);
        }
        return legacy;
    }
    let load = |pop: &PopId| health.pops.get(pop).map_or(0.0, |h| h.load_rps.max(0.0));
    let measured = |pop: &PopId| {
        health
            .pops
            .get(pop)
            .is_some_and(|h| h.state == TargetState::Up)
    };

    // Columns: answer sets that were asked; rows: PoPs.
    let mut columns: Vec<(ServiceId, Option<RegionId>)> = Vec::new();
    let mut column_of: BTreeMap<(ServiceId, Option<RegionId>), usize> = BTreeMap::new();
    let pop_index: BTreeMap<&PopId, usize> = topology
        .pops
        .iter()
        .enumerate()
        .map(|(i, p)| (&p.id, i))
        .collect();
    let mut cells: Vec<(usize, usize, f64)> = Vec::new();
    for (
        AnswerKey {
            service,
            region,
            pop,
        },
        &n,
    ) in &window.counts
    {
        let Some(&p) = pop_index.get(pop) else {
            continue;
        };
        if n <= 0.0 {
            continue;
        }
        let key = (service.clone(), region.clone());
        let j = *column_of.entry(key.clone()).or_insert_with(|| {
            columns.push(key);
            columns.len() - 1
        });
        cells.push((j, p, n));
    }
    let ncols = columns.len();
    let npops = topology.pops.len();
    let mut total = vec![0.0; ncols];
    let mut named = vec![0.0; npops];
    for &(j, p, n) in &cells {
        total[j] += n;
        named[p] += n;
    }
    let live: Vec<bool> = topology.pops.iter().map(|p| measured(&p.id)).collect();
    let loads: Vec<f64> = topology.pops.iter().map(|p| load(&p.id)).collect();
    // Where agents attribute their PoP's load to client regions, a region's
    // demand is what its clients sent those PoPs: one row per region, the
    // sum of its load over them, explained by the region's sets through
    // the share of their answers that named those PoPs; how the answers
    // split between the PoPs (a plan resolvers may no longer hold) no
    // longer matters. Each such PoP's own row keeps the rest of its load
    // (clients in no region), for the unmapped sets. A PoP with no load
    // has nothing to attribute.
    let empty = BTreeMap::new();
    let attributed: Vec<Option<&BTreeMap<RegionId, f64>>> = (0..npops)
        .map(|p| {
            let by = health
                .pops
                .get(&topology.pops[p].id)
                .map_or(&empty, |h| &h.region_load);
            (live[p] && (!by.is_empty() || loads[p] <= 0.0)).then_some(by)
        })
        .collect();

    let mut rows: Vec<f64> = loads.clone();
    let mut region_row: BTreeMap<RegionId, usize> = BTreeMap::new();
    for (p, by) in attributed.iter().enumerate() {
        let Some(by) = by else { continue };
        rows[p] = (rows[p] - by.values().sum::<f64>()).max(0.0);
        for (r, l) in by.iter() {
            let row = *region_row.entry(r.clone()).or_insert_with(|| {
                rows.push(0.0);
                rows.len() - 1
            });
            rows[row] += l;
        }
    }
    // a(j, row) by column, as sparse lists, over the PoPs that measure.
    let mut a: Vec<Vec<(usize, f64)>> = vec![Vec::new(); ncols];
    let mut by_agents = vec![0u32; ncols];
    {
        let mut merged: Vec<BTreeMap<usize, f64>> = vec![BTreeMap::new(); ncols];
        for &(j, p, n) in &cells {
            if !live[p] {
                continue;
            }
            let row = match (&columns[j].1, attributed[p]) {
                (Some(r), Some(_)) => {
                    by_agents[j] += 1;
                    *region_row.entry(r.clone()).or_insert_with(|| {
                        // Answers named an attributing PoP, which says none
                        // of its load came from this region.
                        rows.push(0.0);
                        rows.len() - 1
                    })
                }
                _ => p,
            };
            *merged[j].entry(row).or_default() += n / total[j];
        }
        for (col, m) in a.iter_mut().zip(merged) {
            col.extend(m);
        }
    }
    let before = |(service, region): &(ServiceId, Option<RegionId>)| {
        previous.get(service).map_or(0.0, |d| match region {
            Some(r) => d.regional.get(r).copied().unwrap_or(0.0),
            None => d.global,
        })
    };
    let known = |(service, region): &(ServiceId, Option<RegionId>)| {
        previous.get(service).is_some_and(|d| match region {
            Some(r) => d.regional.contains_key(r),
            None => matches!(d.global_source, DemandSource::Answers { .. }),
        })
    };
    // The ridge's anchor: the previous estimate where there is one, else
    // equal traffic per answer (each live PoP's load split by answer
    // counts, scaled up by the share of the set's answers it covers).
    let mut seen = vec![0.0; ncols];
    for &(j, p, n) in &cells {
        if live[p] {
            seen[j] += loads[p] * n / named[p];
        }
    }
    let prior: Vec<f64> = (0..ncols)
        .map(|j| {
            let covered: f64 = a[j].iter().map(|(_, x)| x).sum();
            if covered <= 0.0 || known(&columns[j]) {
                before(&columns[j])
            } else {
                seen[j] / covered
            }
        })
        .collect();
    let mut demand = solve(&a, &rows, &prior);
    // A fit leaves crumbs on sets that send nothing (clients that only
    // ask); a crumb would turn a set from capacity-weighted to
    // headroom-placed and back. Below a thousandth of the total (and 1 rps)
    // a set has no demand.
    let floor = (demand.iter().sum::<f64>() * 1e-3).max(1.0);
    for d in &mut demand {
        if *d < floor {
            *d = 0.0;
        }
    }

    let mut out: BTreeMap<ServiceId, ObservedDemand> = BTreeMap::new();
    for s in &topology.services {
        out.insert(s.id.clone(), ObservedDemand::default());
    }
    let window_s = |s: &ServiceId| window.window_s.get(s).copied().unwrap_or(0);
    for (j, (service, region)) in columns.iter().enumerate() {
        let d = out.entry(service.clone()).or_default();
        let source = if by_agents[j] > 0 {
            DemandSource::RegionLoad {
                pops: by_agents[j],
                answers: total[j].round() as u64,
                window_s: window_s(service),
            }
        } else {
            DemandSource::Answers {
                answers: total[j].round() as u64,
                window_s: window_s(service),
            }
        };
        match region {
            Some(r) => {
                d.regional.insert(r.clone(), demand[j]);
                d.sources.insert(r.clone(), source);
            }
            None => {
                d.global = demand[j];
                d.global_source = source;
            }
        }
    }
    // Load at PoPs no counted answer named (traffic from before the
    // window, or not steered by DNS): its clients are most likely its own
    // region's, split over the services that have that region's answers.
    for (p, pop) in topology.pops.iter().enumerate() {
        // (An attributing PoP's load is in its regions' rows already.)
        if loads[p] <= 0.0 || named[p] > 0.0 || !live[p] || attributed[p].is_some() {
            continue;
        }
        let services: Vec<&ServiceId> = current
            .services
            .iter()
            .filter(|s| {
                s.regional
                    .iter()
                    .any(|set| set.region.as_ref() == Some(&pop.region))
            })
            .map(|s| &s.id)
            .collect();
        for s in &services {
            let d = out.entry((*s).clone()).or_default();
            *d.regional.entry(pop.region.clone()).or_default() += loads[p] / services.len() as f64;
            d.sources
                .entry(pop.region.clone())
                .or_insert(DemandSource::PlanShares);
        }
    }
    out
}

/// Non-negative least squares by cyclic coordinate descent, with a small
/// ridge toward `prior`: minimises Σ_p (load_p − Σ_j a_jp d_j)² +
/// RIDGE·w_j·(d_j − prior_j)², w_j = Σ_p a_jp².
fn solve(a: &[Vec<(usize, f64)>], loads: &[f64], prior: &[f64]) -> Vec<f64> {
    let mut d = prior.to_vec();
    let mut residual = loads.to_vec();
    for (j, col) in a.iter().enumerate() {
        for &(p, x) in col {
            residual[p] -= x * d[j];
        }
    }
    let norm: Vec<f64> = a
        .iter()
        .map(|col| col.iter().map(|(_, x)| x * x).sum::<f64>())
        .collect();
    let scale = 1.0 + loads.iter().copied().fold(0.0, f64::max);
    // A bounded amount of work per estimate (about 5M cell visits), so a
    // world of a thousand PoPs and tens of thousands of sets stays cheap;
    // starting from the previous estimate, few sweeps are needed anyway.
    let cells: usize = a.iter().map(Vec::len).sum();
    let sweeps = (5_000_000 / cells.max(1)).clamp(20, 2000);
    for _ in 0..sweeps {
        let mut moved = 0.0f64;
        for (j, col) in a.iter().enumerate() {
            if norm[j] <= 0.0 {
                continue;
            }
            let lambda = RIDGE * norm[j];
            // Residual without column j.
            let fit: f64 = col.iter().map(|&(p, x)| x * (residual[p] + x * d[j])).sum();
            let next = ((fit + lambda * prior[j]) / (norm[j] + lambda)).max(0.0);
            let delta = next - d[j];
            if delta != 0.0 {
                for &(p, x) in col {
                    residual[p] -= x * delta;
                }
                d[j] = next;
                moved = moved.max(delta.abs());
            }
        }
        if moved < 1e-6 * scale {
            break;
        }
    }
    d
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn recovers_each_regions_traffic_per_answer() {
        // Two regions, PoPs 0 (region A only), 1 (both), 2 (region B only).
        // A sends 3 rps per answer, B 1 rps per answer.
        let a = vec![
            vec![(0, 0.5), (1, 0.5)],   // A: 100 answers, half at PoP 0
            vec![(1, 0.25), (2, 0.75)], // B: 400 answers
        ];
        let d_true = [300.0, 400.0];
        let loads = [150.0, 150.0 + 100.0, 300.0];
        let prior = [0.0, 0.0];
        let d = solve(&a, &loads, &prior);
        assert!((d[0] - d_true[0]).abs() < 0.5, "{d:?}");
        assert!((d[1] - d_true[1]).abs() < 0.5, "{d:?}");
    }

    #[test]
    fn identical_columns_split_by_the_prior() {
        let a = vec![vec![(0, 1.0)], vec![(0, 1.0)]];
        let d = solve(&a, &[100.0], &[75.0, 25.0]);
        assert!(
            (d[0] - 75.0).abs() < 1e-6 && (d[1] - 25.0).abs() < 1e-6,
            "{d:?}"
        );
    }
}
