//! Stability of the demand loop: with fixed true demand, planning on the
//! demand estimated from the answers served converges to one plan (no
//! two-cycle), whatever the world, and the estimate is the true demand.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, time::Duration};

use proptest::prelude::*;
use steer_types::{
    HealthSettings, Intents, PlanBody, PolicySettings, Pop, PopId, Region, RegionId, Service,
    ServiceId, Timestamp, Topology, UnknownHealth,
    answers::{AnswerKey, AnswerWindow},
    health::{HealthSnapshot, ObservedDemand, PopHealthReport, TargetState},
};

use crate::{compute, estimate_demand};

/// A world of `regions.len()` regions, each with PoPs of the given
/// capacities, every region falling back to every other.
fn world(regions: &[Vec<f64>], max_records: usize) -> Topology {
    let ids: Vec<RegionId> = (0..regions.len())
        .map(|r| RegionId::new(format!("r{r}")))
        .collect();
    let mut pops = Vec::new();
    for (r, caps) in regions.iter().enumerate() {
        for (k, cap) in caps.iter().enumerate() {
            pops.push(Pop {
                id: PopId::new(format!("p{r}{k}")),
                region: ids[r].clone(),
                ipv4: Some(std::net::Ipv4Addr::new(192, 0, 2, (r * 10 + k) as u8)),
                ipv6: None,
                capacity_rps: *cap,
            });
        }
    }
    Topology {
        regions: ids
            .iter()
            .map(|id| Region {
                id: id.clone(),
                fallback: ids.iter().filter(|o| *o != id).cloned().collect(),
            })
            .collect(),
        services: vec![Service {
            id: ServiceId::new("app"),
            fqdn: "app.example.test.".into(),
            ttl: 30,
            max_records,
            pops: pops.iter().map(|p| p.id.clone()).collect(),
            anycast: Vec::new(),
            priority: 0,
            demand_estimate: Default::default(),
        }],
        pops,
        client_networks: Vec::new(),
        health: HealthSettings {
            unknown_health: UnknownHealth::AssumeUp,
            stale_after: Duration::from_secs(10),
            max_stale: Duration::from_secs(60),
            rise: 1,
            fall: 1,
            guards: Default::default(),
        },
        policy: PolicySettings::default(),
    }
}

/// What the data plane does with a plan, for true demand `demand` (rps per
/// region) and `clients` (subnets per region, each asking once per TTL):
/// the PoP loads agents report and the answers the DNS counted. The DNS
/// view delivers the plan's shares exactly (see steer-dns's delivery test).
fn serve(
    topo: &Topology,
    body: &PlanBody,
    demand: &[f64],
    clients: &[f64],
) -> (HealthSnapshot, AnswerWindow) {
    let mut load: BTreeMap<PopId, f64> = BTreeMap::new();
    let mut window = AnswerWindow::default();
    let service = &body.services[0];
    for (r, set) in service.regional.iter().enumerate() {
        let total: u32 = set.targets.iter().map(|t| t.weight).sum();
        for t in &set.targets {
            let share = f64::from(t.weight) / f64::from(total.max(1));
            *load.entry(t.pop.clone()).or_default() += demand[r] * share;
            window.counts.insert(
                AnswerKey {
                    service: service.id.clone(),
                    region: set.region.clone(),
                    pop: t.pop.clone(),
                },
                clients[r] * share,
            );
        }
    }
    window.window_s.insert(service.id.clone(), 30);
    let pops = topo
        .pops
        .iter()
        .map(|p| {
            let mut h = PopHealthReport::unknown();
            h.state = TargetState::Up;
            h.load_rps = load.get(&p.id).copied().unwrap_or(0.0);
            (p.id.clone(), h)
        })
        .collect();
    (
        HealthSnapshot {
            pops,
            ..Default::default()
        },
        window,
    )
}

fn world_strategy() -> impl Strategy<Value = (Vec<Vec<f64>>, Vec<f64>, Vec<f64>, usize)> {
    (2usize..5).prop_flat_map(|n| {
        (
            proptest::collection::vec(proptest::collection::vec(1_000.0f64..20_000.0, 1..4), n),
            proptest::collection::vec(0.0f64..30_000.0, n),
            proptest::collection::vec(5.0f64..5_000.0, n),
            1usize..4,
        )
    })
}

/// As [`serve`], but the answers counted are the ones `stale` gave (the
/// plan resolvers still hold) while the load follows `body`, and agents
/// attribute each PoP's load to client regions.
fn serve_attributed(
    topo: &Topology,
    body: &PlanBody,
    stale: &PlanBody,
    demand: &[f64],
    clients: &[f64],
) -> (HealthSnapshot, AnswerWindow) {
    let (_, window) = serve(topo, stale, demand, clients);
    let (mut health, _) = serve(topo, body, demand, clients);
    let service = &body.services[0];
    for (r, set) in service.regional.iter().enumerate() {
        let total: u32 = set.targets.iter().map(|t| t.weight).sum();
        for t in &set.targets {
            let share = f64::from(t.weight) / f64::from(total.max(1));
            if let (Some(h), Some(region)) = (health.pops.get_mut(&t.pop), &set.region) {
                *h.region_load.entry(region.clone()).or_default() += demand[r] * share;
            }
        }
    }
    (health, window)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn region_load_from_agents_is_exact_whatever_plan_the_answers_came_from(
        (regions, demand, clients, records) in world_strategy(),
        believed in proptest::collection::vec(0.0f64..30_000.0, 4),
    ) {
        let topo = world(&regions, records);
        let intents = Intents::default();
        let now = Timestamp(0);
        // The plan resolvers held in the window was made for a demand
        // other than the true one (the answers split differently over the
        // PoPs); the load follows the plan made for the true demand.
        let planned_for = |d: &[f64]| {
            let mut h = HealthSnapshot::default();
            let mut observed = ObservedDemand::default();
            for (r, x) in d.iter().enumerate().take(regions.len()) {
                observed.regional.insert(RegionId::new(format!("r{r}")), *x);
            }
            h.demand.insert(ServiceId::new("app"), observed);
            compute(&topo, &h, &intents, now)
        };
        let stale = planned_for(&believed);
        let body = planned_for(&demand);
        let (health, window) = serve_attributed(&topo, &body, &stale, &demand, &clients);
        let estimate = estimate_demand(&topo, &body, &health, &window, &BTreeMap::new());
        let got = &estimate[&ServiceId::new("app")];
        let total: f64 = demand.iter().sum();
        for (r, d) in demand.iter().enumerate() {
            let region = RegionId::new(format!("r{r}"));
            let e = got.regional.get(&region).copied().unwrap_or(0.0);
            // Crumbs under a thousandth of the total are dropped.
            prop_assert!(
                (e - d).abs() <= 1e-6 * d + 1e-3 * total + 1.0,
                "region r{} estimated {:.1}, true {:.1}: {:?}", r, e, d, got
            );
            if e > 0.0 {
                prop_assert!(
                    matches!(got.sources.get(&region), Some(steer_types::DemandSource::RegionLoad { .. })),
                    "{:?}", got.sources
                );
            }
        }
    }

    #[test]
    fn planning_on_served_answers_reaches_a_fixed_point(
        (regions, demand, clients, records) in world_strategy()
    ) {
        let topo = world(&regions, records);
        let intents = Intents::default();
        let now = Timestamp(0);
        let mut estimate: BTreeMap<ServiceId, ObservedDemand> = BTreeMap::new();
        let mut bodies: Vec<PlanBody> = Vec::new();
        let mut body = compute(&topo, &HealthSnapshot::default(), &intents, now);
        for _ in 0..6 {
            let (mut health, window) = serve(&topo, &body, &demand, &clients);
            estimate = estimate_demand(&topo, &body, &health, &window, &estimate);
            health.demand = estimate.clone();
            body = compute(&topo, &health, &intents, now);
            bodies.push(body.clone());
        }
        // One plan from the second round on: no relay between two plans.
        let last = bodies.len() - 1;
        prop_assert_eq!(&bodies[last], &bodies[last - 1]);
        prop_assert_eq!(&bodies[last - 1], &bodies[last - 2]);
        // And the estimate it settled on is the true demand, wherever a
        // region's demand is visible (it has answers and load).
        let got = &estimate[&ServiceId::new("app")];
        let total: f64 = demand.iter().sum();
        for (r, d) in demand.iter().enumerate() {
            let e = got.regional.get(&RegionId::new(format!("r{r}"))).copied().unwrap_or(0.0);
            prop_assert!(
                (e - d).abs() <= 0.01 * d.max(1.0) + 1e-3 * total + 1.0,
                "region r{} estimated {:.1}, true {:.1}: {:?}", r, e, d, got
            );
        }
    }
}
