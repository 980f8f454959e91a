#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, time::Duration};

use proptest::prelude::*;
use steer_types::{
    AnnounceState, ClientNetwork, Drain, DrainMode, DrainScope, HealthSettings, Intents, PERMILLE,
    PolicySettings, Pop, PopId, Region, RegionId, Service, ServiceId, Timestamp, Topology,
    UnknownHealth,
    health::{HealthSnapshot, PopHealthReport, TargetState},
};

use super::*;

mod budget;

const POPS: [(&str, &str); 6] = [
    ("fra1", "eu-west"),
    ("ams1", "eu-west"),
    ("iad1", "us-east"),
    ("ord1", "us-east"),
    ("sin1", "ap-south"),
    ("bom1", "ap-south"),
];

fn topology(unknown: UnknownHealth) -> Topology {
    let region = |id: &str, fb: [&str; 2]| Region {
        id: RegionId::new(id),
        fallback: fb.iter().map(RegionId::new).collect(),
    };
    Topology {
        regions: vec![
            region("eu-west", ["us-east", "ap-south"]),
            region("us-east", ["eu-west", "ap-south"]),
            region("ap-south", ["eu-west", "us-east"]),
        ],
        pops: POPS
            .iter()
            .enumerate()
            .map(|(i, (id, region))| Pop {
                id: PopId::new(id),
                region: RegionId::new(region),
                ipv4: Some(format!("192.0.2.{}", i + 10).parse().unwrap()),
                ipv6: None,
                capacity_rps: 10_000.0,
            })
            .collect(),
        services: vec![Service {
            id: ServiceId::new("app"),
            fqdn: "app.example.test.".into(),
            ttl: 30,
            max_records: 2,
            pops: POPS.iter().map(|(id, _)| PopId::new(id)).collect(),
            anycast: vec!["203.0.113.0/24".parse().unwrap()],
            priority: 0,
            demand_estimate: Default::default(),
        }],
        client_networks: vec![ClientNetwork {
            prefix: "10.1.0.0/16".parse().unwrap(),
            region: RegionId::new("eu-west"),
        }],
        health: HealthSettings {
            unknown_health: unknown,
            stale_after: Duration::from_secs(10),
            max_stale: Duration::from_secs(60),
            rise: 1,
            fall: 1,
            guards: Default::default(),
        },
        policy: PolicySettings::default(),
    }
}

fn health(states: &[(&str, TargetState)]) -> HealthSnapshot {
    let mut pops = BTreeMap::new();
    for (id, state) in states {
        let mut r = PopHealthReport::unknown();
        r.state = *state;
        pops.insert(PopId::new(id), r);
    }
    HealthSnapshot {
        pops,
        ..Default::default()
    }
}

fn drain(scope: DrainScope) -> Drain {
    Drain {
        id: "drain-1".into(),
        scope,
        mode: DrainMode::Hard,
        ramp: Duration::ZERO,
        reason: "test".into(),
        principal: "tester".into(),
        created: Timestamp(0),
        expires: None,
        forced: false,
    }
}

fn region_pops(body: &PlanBody, region: &str) -> Vec<String> {
    body.services[0]
        .for_region(Some(&RegionId::new(region)))
        .targets
        .iter()
        .map(|t| t.pop.to_string())
        .collect()
}

#[test]
fn assume_up_serves_own_region() {
    let body = compute(
        &topology(UnknownHealth::AssumeUp),
        &HealthSnapshot::default(),
        &Intents::default(),
        Timestamp(0),
    );
    assert_eq!(region_pops(&body, "eu-west"), ["fra1", "ams1"]);
    assert_eq!(region_pops(&body, "ap-south"), ["sin1", "bom1"]);
    assert_eq!(body.services[0].global.targets.len(), 6);
    assert_eq!(body.pops[0].weight, 500);
}

#[test]
fn down_pop_leaves_its_region_answer() {
    let h = health(&[("fra1", TargetState::Down)]);
    let body = compute(
        &topology(UnknownHealth::AssumeUp),
        &h,
        &Intents::default(),
        Timestamp(0),
    );
    assert_eq!(region_pops(&body, "eu-west"), ["ams1"]);
    assert!(!body.pops[0].usable);
}

#[test]
fn region_drain_spills_to_fallback() {
    let intents = Intents {
        drains: vec![drain(DrainScope::Region {
            region: RegionId::new("eu-west"),
        })],
        next_id: 2,
        ..Default::default()
    };
    let body = compute(
        &topology(UnknownHealth::AssumeUp),
        &HealthSnapshot::default(),
        &intents,
        Timestamp(0),
    );
    assert_eq!(region_pops(&body, "eu-west"), ["iad1", "ord1"]);
    assert_eq!(body.regions[0].served_by, [RegionId::new("us-east")]);
    assert_eq!(body.pops[0].drained_by.as_deref(), Some("drain-1"));
}

#[test]
fn assume_down_with_no_reports_fails_static() {
    let body = compute(
        &topology(UnknownHealth::AssumeDown),
        &HealthSnapshot::default(),
        &Intents::default(),
        Timestamp(0),
    );
    // Nothing is known to be up: serve everything rather than nothing.
    assert_eq!(body.services[0].global.targets.len(), 6);
    assert_eq!(
        body.services[0].global.reason.basis,
        steer_types::SetBasis::FailStatic
    );
}

fn soft(scope: DrainScope, ramp_s: u64) -> Drain {
    Drain {
        mode: DrainMode::Soft,
        ramp: Duration::from_secs(ramp_s),
        ..drain(scope)
    }
}

fn fra1_announce(body: &PlanBody) -> AnnounceState {
    body.announcements
        .iter()
        .find(|a| a.pop.as_str() == "fra1")
        .unwrap()
        .state
}

#[test]
fn soft_drain_ramps_weight_then_prepends_then_withdraws() {
    let intents = Intents {
        drains: vec![soft(
            DrainScope::Pop {
                pop: PopId::new("fra1"),
            },
            100,
        )],
        next_id: 2,
        ..Default::default()
    };
    let topo = topology(UnknownHealth::AssumeUp);
    let at = |s: i64| {
        compute(
            &topo,
            &HealthSnapshot::default(),
            &intents,
            Timestamp(s * 1000),
        )
    };
    let weight = |b: &PlanBody| {
        b.services[0].regional[0]
            .targets
            .iter()
            .find(|t| t.pop.as_str() == "fra1")
            .map_or(0, |t| t.weight)
    };
    assert_eq!(weight(&at(0)), 500);
    assert_eq!(weight(&at(50)), 334, "half way: fra1 at half capacity");
    assert_eq!(weight(&at(100)), 0);
    assert_eq!(fra1_announce(&at(50)), AnnounceState::Announce);
    assert_eq!(fra1_announce(&at(150)), AnnounceState::Prepend { count: 3 });
    assert_eq!(fra1_announce(&at(200)), AnnounceState::Withdraw);
}

#[test]
fn zero_ramp_means_five_ttls() {
    assert_eq!(effective_ramp(Duration::ZERO, 30), Duration::from_secs(150));
    assert_eq!(
        effective_ramp(Duration::from_secs(7), 30),
        Duration::from_secs(7)
    );
}

#[test]
fn service_pop_drain_leaves_other_scopes_alone() {
    let intents = Intents {
        drains: vec![drain(DrainScope::ServicePop {
            service: ServiceId::new("app"),
            pop: PopId::new("fra1"),
        })],
        next_id: 2,
        ..Default::default()
    };
    let body = compute(
        &topology(UnknownHealth::AssumeUp),
        &HealthSnapshot::default(),
        &intents,
        Timestamp(0),
    );
    assert_eq!(region_pops(&body, "eu-west"), ["ams1"]);
    assert_eq!(fra1_announce(&body), AnnounceState::Withdraw);
}

#[test]
fn min_announce_rail_keeps_prefix_up_when_everything_fails() {
    let all_down: Vec<(&str, TargetState)> = POPS
        .iter()
        .map(|(id, _)| (*id, TargetState::Down))
        .collect();
    let body = compute(
        &topology(UnknownHealth::AssumeUp),
        &health(&all_down),
        &Intents::default(),
        Timestamp(0),
    );
    let announcing: Vec<_> = body
        .announcements
        .iter()
        .filter(|a| a.state != AnnounceState::Withdraw)
        .collect();
    assert_eq!(announcing.len(), 3);
    assert!(announcing.iter().all(|a| a.reason.is_min_announce_rail()));
}

#[test]
fn override_pins_a_weight_and_rescales_the_rest() {
    let mut intents = Intents::default();
    intents.overrides.push(steer_types::WeightOverride {
        id: "override-1".into(),
        pop: PopId::new("fra1"),
        weight: 800,
        reason: "canary".into(),
        principal: "t".into(),
        created: Timestamp(0),
        expires: None,
    });
    let body = compute(
        &topology(UnknownHealth::AssumeUp),
        &HealthSnapshot::default(),
        &intents,
        Timestamp(0),
    );
    let eu = &body.services[0].regional[0];
    let w: Vec<(String, u32)> = eu
        .targets
        .iter()
        .map(|t| (t.pop.to_string(), t.weight))
        .collect();
    assert_eq!(w, [("fra1".to_owned(), 800), ("ams1".to_owned(), 200)]);
    assert!(
        eu.reason
            .overrides
            .iter()
            .any(|(p, _)| p.as_str() == "fra1")
    );
    // In the global set fra1 also holds 800, the other five share 200.
    let g = &body.services[0].global;
    assert_eq!(
        g.targets
            .iter()
            .find(|t| t.pop.as_str() == "fra1")
            .unwrap()
            .weight,
        800
    );
    assert_eq!(g.targets.iter().map(|t| t.weight).sum::<u32>(), PERMILLE);
}

#[test]
fn projection_refuses_a_drain_that_overloads_the_fallback() {
    let topo = topology(UnknownHealth::AssumeUp);
    let loads = [
        ("fra1", 5000.0),
        ("ams1", 5000.0),
        ("iad1", 7000.0),
        ("ord1", 7000.0),
        ("sin1", 5000.0),
        ("bom1", 5000.0),
    ];
    let mut h = HealthSnapshot::default();
    for (id, load) in loads {
        let mut r = PopHealthReport::unknown();
        r.state = TargetState::Up;
        r.load_rps = load;
        h.pops.insert(PopId::new(id), r);
    }
    let now = compute(&topo, &h, &Intents::default(), Timestamp(0));
    let drained = Intents {
        drains: vec![drain(DrainScope::Region {
            region: RegionId::new("eu-west"),
        })],
        ..Default::default()
    };
    let after = compute(&topo, &h, &drained, Timestamp(0));
    let p = project(&topo, &h, &now, &after);
    assert!(p.over_capacity, "{}", p.summary);
    assert!(
        p.summary.contains("iad1") && p.summary.contains("ord1"),
        "{}",
        p.summary
    );
    let fra1 = p.pops.iter().find(|x| x.pop.as_str() == "fra1").unwrap();
    assert_eq!(fra1.projected_rps, 0.0);
    // Load is conserved: everything that was served is still served.
    let before: f64 = p.pops.iter().map(|x| x.current_rps).sum();
    let projected: f64 = p.pops.iter().map(|x| x.projected_rps).sum();
    assert!((before - projected).abs() < 1e-6, "{before} vs {projected}");
    // Draining one PoP fits: ams1 takes fra1's regional share.
    let one = Intents {
        drains: vec![drain(DrainScope::Pop {
            pop: PopId::new("fra1"),
        })],
        ..Default::default()
    };
    let p1 = project(&topo, &h, &now, &compute(&topo, &h, &one, Timestamp(0)));
    assert!(!p1.over_capacity, "{}", p1.summary);
}

#[test]
fn apportion_sums_and_floors() {
    assert_eq!(apportion(&[1.0, 1.0, 1.0]), [334, 333, 333]);
    assert_eq!(apportion(&[1.0, 0.0]), [500, 500]);
    assert_eq!(apportion(&[1e9, 1.0]), [999, 1]);
    assert!(apportion(&[]).is_empty());
}

fn arb_state() -> impl Strategy<Value = TargetState> {
    prop_oneof![
        Just(TargetState::Up),
        Just(TargetState::Down),
        Just(TargetState::Unknown),
    ]
}

proptest! {
    #[test]
    fn apportion_invariants(shares in proptest::collection::vec(0.0f64..1e6, 1..50)) {
        let w = apportion(&shares);
        prop_assert_eq!(w.len(), shares.len());
        prop_assert_eq!(w.iter().sum::<u32>(), PERMILLE);
        prop_assert!(w.iter().all(|x| *x >= 1));
    }

    /// Every answer set is non-empty with weights summing to PERMILLE; drained
    /// PoPs are never answered while an undrained one exists; same inputs,
    /// same plan.
    #[test]
    fn plan_invariants(
        states in proptest::collection::vec(arb_state(), 6),
        drained in proptest::collection::vec(proptest::bool::ANY, 6),
        assume_up in proptest::bool::ANY,
    ) {
        let topo = topology(if assume_up { UnknownHealth::AssumeUp } else { UnknownHealth::AssumeDown });
        let pairs: Vec<(&str, TargetState)> = POPS.iter().map(|(id, _)| *id).zip(states).collect();
        let h = health(&pairs);
        let intents = Intents {
            drains: POPS.iter().zip(&drained).filter(|(_, d)| **d)
                .map(|((id, _), _)| drain(DrainScope::Pop { pop: PopId::new(id) })).collect(),
            next_id: 0,
            ..Default::default()
        };
        let body = compute(&topo, &h, &intents, Timestamp(0));
        prop_assert_eq!(&body, &compute(&topo, &h, &intents, Timestamp(0)));
        let any_undrained = drained.iter().any(|d| !d);
        let announcing = body.announcements.iter().filter(|a| a.state != AnnounceState::Withdraw).count();
        prop_assert!(announcing >= 3, "min-announce rail broken: {announcing} of 6");
        for set in body.services[0].regional.iter().chain([&body.services[0].global]) {
            prop_assert!(!set.targets.is_empty());
            prop_assert_eq!(set.targets.iter().map(|t| t.weight).sum::<u32>(), PERMILLE);
            if any_undrained {
                for t in &set.targets {
                    let idx = POPS.iter().position(|(id, _)| *id == t.pop.as_str()).unwrap();
                    prop_assert!(!drained[idx], "drained {} answered", t.pop);
                }
            }
        }
    }
}

/// Load per PoP implied by a plan: each set's demand spread by its weights.
fn implied_load((body, evidence): &(PlanBody, PlanEvidence)) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in &body.services {
        let indexed = s.regional.iter().enumerate().map(|(i, set)| (Some(i), set));
        for (i, set) in indexed.chain([(None, &s.global)]) {
            let demand = evidence.set(&s.id, i).map_or(0.0, |f| f.demand_rps);
            for t in &set.targets {
                *out.entry(t.pop.to_string()).or_default() +=
                    demand * f64::from(t.weight) / f64::from(PERMILLE);
            }
        }
    }
    out
}

fn with_demand(h: &mut HealthSnapshot, per_region: &[(&str, f64)], global: f64) {
    let d = h.demand.entry(ServiceId::new("app")).or_default();
    for (r, x) in per_region {
        d.regional.insert(RegionId::new(r), *x);
    }
    d.global = global;
}

/// Three regions of one PoP each, every one at 60%: when the nearest
/// fails, its load spreads over both survivors by headroom; nearest-first
/// failover would put 120% on one of them.
#[test]
fn failure_spreads_by_headroom_instead_of_cascading() {
    let region = |id: &str, fb: [&str; 2]| Region {
        id: RegionId::new(id),
        fallback: fb.iter().map(RegionId::new).collect(),
    };
    let pop = |id: &str, r: &str| Pop {
        id: PopId::new(id),
        region: RegionId::new(r),
        ipv4: Some("192.0.2.1".parse().unwrap()),
        ipv6: None,
        capacity_rps: 10_000.0,
    };
    let mut topo = topology(UnknownHealth::AssumeUp);
    topo.regions = vec![
        region("a", ["b", "c"]),
        region("b", ["a", "c"]),
        region("c", ["a", "b"]),
    ];
    topo.pops = vec![pop("pa", "a"), pop("pb", "b"), pop("pc", "c")];
    topo.services[0].pops = topo.pops.iter().map(|p| p.id.clone()).collect();
    topo.client_networks.clear();
    let mut h = health(&[
        ("pa", TargetState::Down),
        ("pb", TargetState::Up),
        ("pc", TargetState::Up),
    ]);
    with_demand(&mut h, &[("a", 6000.0), ("b", 6000.0), ("c", 6000.0)], 0.0);
    let computed = compute_with_evidence(&topo, &h, &Intents::default(), None, Timestamp(0));
    let load = implied_load(&computed);
    let body = computed.0;
    assert!(load.get("pa").is_none_or(|x| *x == 0.0));
    for p in ["pb", "pc"] {
        assert!(load[p] <= 10_000.0 + 1.0, "{p} overloaded: {load:?}");
    }
    // a's clients are served by both survivors.
    let a = &body.services[0].regional[0];
    assert_eq!(a.targets.len(), 2, "{a:?}");
    // 18k on 20k: past the 80% target but within capacity, so spill, not shed.
    assert_eq!(body.regions[0].level, Degradation::Spill);
    // Nearest-first for comparison: all of a's demand lands on b.
    let naive_b = 6000.0 + 6000.0;
    assert!(naive_b > 10_000.0);
}

#[test]
fn levels_normal_spill_shed() {
    let topo = topology(UnknownHealth::AssumeUp);
    let mut h = HealthSnapshot::default();
    with_demand(
        &mut h,
        &[
            ("eu-west", 10_000.0),
            ("us-east", 1000.0),
            ("ap-south", 1000.0),
        ],
        0.0,
    );
    let body = compute(&topo, &h, &Intents::default(), Timestamp(0));
    assert_eq!(body.regions[0].level, Degradation::Normal);
    with_demand(&mut h, &[("eu-west", 20_000.0)], 0.0);
    let body = compute(&topo, &h, &Intents::default(), Timestamp(0));
    assert_eq!(
        body.regions[0].level,
        Degradation::Spill,
        "{:?}",
        body.services[0].regional[0]
    );
    assert_eq!(body.regions[0].served_by[0], RegionId::new("eu-west"));
    with_demand(&mut h, &[("eu-west", 70_000.0)], 0.0);
    let body = compute(&topo, &h, &Intents::default(), Timestamp(0));
    assert_eq!(body.regions[0].level, Degradation::Shed);
}

/// The plan marks the PoPs it fills to the target utilisation, so data
/// planes round client shares away from them.
#[test]
fn pops_filled_to_the_target_are_marked() {
    let topo = topology(UnknownHealth::AssumeUp);
    let at_target = |body: &PlanBody| -> Vec<String> {
        body.pops
            .iter()
            .filter(|p| p.at_target)
            .map(|p| p.id.to_string())
            .collect()
    };
    let mut h = HealthSnapshot::default();
    with_demand(
        &mut h,
        &[
            ("eu-west", 10_000.0),
            ("us-east", 1000.0),
            ("ap-south", 1000.0),
        ],
        0.0,
    );
    let body = compute(&topo, &h, &Intents::default(), Timestamp(0));
    assert!(at_target(&body).is_empty(), "{:?}", at_target(&body));
    // Spilling: eu-west's own PoPs are full, the ones taking the spill
    // still have room.
    with_demand(&mut h, &[("eu-west", 20_000.0)], 0.0);
    let body = compute(&topo, &h, &Intents::default(), Timestamp(0));
    let eu: Vec<String> = body
        .pops
        .iter()
        .filter(|p| p.region.as_str() == "eu-west")
        .map(|p| p.id.to_string())
        .collect();
    assert!(!eu.is_empty());
    let full = at_target(&body);
    for p in &eu {
        assert!(full.contains(p), "{p} not marked: {full:?}");
    }
    assert!(full.len() < body.pops.len(), "{full:?}");
    // Survives the wire: edges get it from the plan.
    let json = serde_json::to_string(&body).unwrap();
    let back: PlanBody = serde_json::from_str(&json).unwrap();
    assert_eq!(at_target(&back), full);
}

#[test]
fn panic_mode_ignores_health_when_too_little_is_healthy() {
    let topo = topology(UnknownHealth::AssumeUp);
    // eu-west and both fallbacks: 1 of 6 healthy < 50%.
    let states: Vec<(&str, TargetState)> = POPS
        .iter()
        .map(|(id, _)| {
            (
                *id,
                if *id == "fra1" {
                    TargetState::Up
                } else {
                    TargetState::Down
                },
            )
        })
        .collect();
    let body = compute(&topo, &health(&states), &Intents::default(), Timestamp(0));
    assert_eq!(body.regions[0].level, Degradation::Panic);
    assert_eq!(region_pops(&body, "eu-west"), ["fra1", "ams1"]);
    assert!(body.services[0].regional[0].reason.panic);
    // Threshold 0 turns panic off: only fra1 answers.
    let mut off = topo.clone();
    off.policy.panic_threshold = 0.0;
    let body = compute(&off, &health(&states), &Intents::default(), Timestamp(0));
    assert_eq!(region_pops(&body, "eu-west"), ["fra1"]);
}

#[test]
fn priority_services_are_served_first() {
    let mut topo = topology(UnknownHealth::AssumeUp);
    let mut low = topo.services[0].clone();
    low.id = ServiceId::new("batch");
    low.fqdn = "batch.example.test.".into();
    low.priority = 0;
    topo.services[0].priority = 10;
    topo.services.push(low);
    let mut h = HealthSnapshot::default();
    with_demand(&mut h, &[("eu-west", 15_000.0)], 0.0);
    h.demand.insert(ServiceId::new("batch"), {
        let mut d = steer_types::health::ObservedDemand::default();
        d.regional.insert(RegionId::new("eu-west"), 15_000.0);
        d
    });
    let body = compute(&topo, &h, &Intents::default(), Timestamp(0));
    // app (important) stays home; batch is pushed out of eu-west.
    let app_eu = &body.services[0].regional[0];
    assert!(
        app_eu
            .targets
            .iter()
            .all(|t| t.pop.as_str() == "fra1" || t.pop.as_str() == "ams1"),
        "{app_eu:?}"
    );
    let batch_eu = &body.services[1].regional[0];
    assert!(
        batch_eu
            .targets
            .iter()
            .any(|t| t.pop.as_str() != "fra1" && t.pop.as_str() != "ams1"),
        "{batch_eu:?}"
    );
}

#[test]
fn weight_step_rail_ramps_a_recovered_pop() {
    let topo = topology(UnknownHealth::AssumeUp);
    let down = health(&[("fra1", TargetState::Down)]);
    let before = Plan {
        version: 1,
        computed_at: Timestamp(0),
        body: compute(&topo, &down, &Intents::default(), Timestamp(0)),
    };
    let fra1 = |b: &PlanBody| {
        b.services[0].regional[0]
            .targets
            .iter()
            .find(|t| t.pop.as_str() == "fra1")
            .map_or(0, |t| t.weight)
    };
    assert_eq!(fra1(&before.body), 0);
    // One second later fra1 is back: it may take at most 100‰.
    let up = HealthSnapshot::default();
    let next = compute_step(
        &topo,
        &up,
        &Intents::default(),
        Some(&before),
        Timestamp(1000),
    );
    assert!((99..=101).contains(&fra1(&next)), "{}", fra1(&next));
    assert!(
        next.rails
            .iter()
            .any(|r| matches!(r, steer_types::RailFired::WeightStep { pop, .. } if pop.as_str() == "fra1")),
        "{:?}",
        next.rails
    );
    // Removal is never slowed: fra1 down again drops to 0 at once.
    let after = Plan {
        version: 2,
        computed_at: Timestamp(1000),
        body: next,
    };
    let again = compute_step(
        &topo,
        &down,
        &Intents::default(),
        Some(&after),
        Timestamp(1200),
    );
    assert_eq!(fra1(&again), 0);
}

proptest! {
    /// While total headroom suffices, no PoP is given more than its target
    /// utilisation (up to per-mille rounding).
    #[test]
    fn no_pop_above_target_when_headroom_suffices(
        d in proptest::collection::vec(0.0f64..16_000.0, 3),
        g in 0.0f64..4_000.0,
        down in 0usize..7,
    ) {
        let topo = topology(UnknownHealth::AssumeUp);
        let mut states = Vec::new();
        if down < 6 {
            states.push((POPS[down].0, TargetState::Down));
        }
        let mut h = health(&states);
        with_demand(&mut h, &[("eu-west", d[0]), ("us-east", d[1]), ("ap-south", d[2])], g);
        let usable_cap = if down < 6 { 50_000.0 } else { 60_000.0 };
        let total = d.iter().sum::<f64>() + g;
        prop_assume!(total <= 0.8 * usable_cap);
        let computed = compute_with_evidence(&topo, &h, &Intents::default(), None, Timestamp(0));
        let load = implied_load(&computed);
        let body = &computed.0;
        let slack = total / 1000.0 * 4.0 + 1.0;
        for (pop, x) in &load {
            prop_assert!(*x <= 8000.0 + slack, "{pop} at {x} (total {total})");
        }
        let bytes = |b: &PlanBody| serde_json::to_vec(b).unwrap();
        prop_assert_eq!(bytes(body), bytes(&compute(&topo, &h, &Intents::default(), Timestamp(0))));
    }

    /// A soft-drained PoP's weight only goes down over the ramp and is 0
    /// from the end of the ramp on.
    #[test]
    fn soft_drain_weight_is_monotone_and_ends_at_zero(ramp_s in 1u64..600, steps in 2usize..20) {
        let topo = topology(UnknownHealth::AssumeUp);
        let intents = Intents {
            drains: vec![soft(DrainScope::Pop { pop: PopId::new("fra1") }, ramp_s)],
            ..Default::default()
        };
        let weight = |t_ms: i64| {
            let b = compute(&topo, &HealthSnapshot::default(), &intents, Timestamp(t_ms));
            b.services[0].regional[0].targets.iter().find(|t| t.pop.as_str() == "fra1").map_or(0, |t| t.weight)
        };
        let mut last = u32::MAX;
        for i in 0..=steps {
            let t = (ramp_s * 1000) as i64 * i as i64 / steps as i64;
            let w = weight(t);
            prop_assert!(w <= last);
            last = w;
        }
        prop_assert_eq!(weight((ramp_s * 1000) as i64), 0);
    }
}

/// Usable capacity = capacity × health factor × drain share: a PoP failing
/// 20% of requests and saying it is degraded keeps 40% of its weight.
#[test]
fn health_factor_scales_capacity() {
    let topo = topology(UnknownHealth::AssumeUp);
    let mut h = health(&[("fra1", TargetState::Up), ("ams1", TargetState::Up)]);
    if let Some(r) = h.pops.get_mut(&PopId::new("fra1")) {
        r.load.error_ratio = 0.2;
        r.load.degraded = true;
    }
    let body = compute(&topo, &h, &Intents::default(), Timestamp(0));
    let eu = &body.services[0].regional[0];
    let w = |pop: &str| {
        eu.targets
            .iter()
            .find(|t| t.pop.as_str() == pop)
            .unwrap()
            .weight
    };
    // 0.4 : 1.0 of the set.
    assert_eq!((w("fra1"), w("ams1")), (286, 714));
}

/// A drain of `scope` with the given mode, ramp (s) and start (s).
fn drain_at(id: usize, scope: DrainScope, hard: bool, ramp_s: u64, created_s: i64) -> Drain {
    Drain {
        id: format!("drain-{id}"),
        mode: if hard {
            DrainMode::Hard
        } else {
            DrainMode::Soft
        },
        ramp: Duration::from_secs(ramp_s),
        created: Timestamp(created_s * 1000),
        ..drain(scope)
    }
}

fn arb_scope() -> impl Strategy<Value = DrainScope> {
    prop_oneof![
        (0..POPS.len()).prop_map(|i| DrainScope::Pop {
            pop: PopId::new(POPS[i].0)
        }),
        prop_oneof![Just("eu-west"), Just("us-east"), Just("ap-south")].prop_map(|r| {
            DrainScope::Region {
                region: RegionId::new(r),
            }
        }),
        (0..POPS.len()).prop_map(|i| DrainScope::ServicePop {
            service: ServiceId::new("app"),
            pop: PopId::new(POPS[i].0),
        }),
    ]
}

/// Withdraw is stricter than prepend, which is stricter than announce.
fn strictness(state: AnnounceState) -> u8 {
    match state {
        AnnounceState::Announce => 0,
        AnnounceState::Prepend { .. } => 1,
        AnnounceState::Withdraw => 2,
    }
}

#[test]
fn a_hard_pop_drain_wins_over_an_older_soft_region_drain() {
    let mut topo = topology(UnknownHealth::AssumeUp);
    topo.policy.min_announce_share = 0.0;
    let soft_region = drain_at(
        1,
        DrainScope::Region {
            region: RegionId::new("eu-west"),
        },
        false,
        600,
        0,
    );
    let hard_pop = drain_at(
        2,
        DrainScope::Pop {
            pop: PopId::new("fra1"),
        },
        true,
        0,
        10,
    );
    let service_pop = drain_at(
        3,
        DrainScope::ServicePop {
            service: ServiceId::new("app"),
            pop: PopId::new("fra1"),
        },
        true,
        0,
        10,
    );
    for second in [hard_pop, service_pop] {
        for order in [
            vec![soft_region.clone(), second.clone()],
            vec![second.clone(), soft_region.clone()],
        ] {
            let intents = Intents {
                drains: order,
                ..Default::default()
            };
            let body = compute(
                &topo,
                &HealthSnapshot::default(),
                &intents,
                Timestamp(60_000),
            );
            assert!(
                !region_pops(&body, "eu-west").contains(&"fra1".to_owned()),
                "{:?}",
                body.services[0].regional[0]
            );
            let fra1 = body
                .announcements
                .iter()
                .find(|a| a.pop.as_str() == "fra1")
                .unwrap();
            assert_eq!(fra1.state, AnnounceState::Withdraw, "{:?}", fra1.reason);
            // ams1 is still only ramping under the soft region drain.
            let ams1 = body
                .announcements
                .iter()
                .find(|a| a.pop.as_str() == "ams1")
                .unwrap();
            assert_eq!(ams1.state, AnnounceState::Announce);
        }
    }
}

/// A soft-drained PoP still in its DNS ramp carries traffic: the plan
/// says it is usable (draining), not "not usable"; past the ramp it is not.
#[test]
fn a_soft_draining_pop_is_usable_until_its_ramp_ends() {
    let topo = topology(UnknownHealth::AssumeUp);
    let intents = Intents {
        drains: vec![soft(
            DrainScope::Region {
                region: RegionId::new("eu-west"),
            },
            600,
        )],
        ..Default::default()
    };
    let at = |s: i64| {
        compute(
            &topo,
            &HealthSnapshot::default(),
            &intents,
            Timestamp(s * 1000),
        )
    };
    let early = at(6);
    let fra1 = &early.pops[0];
    assert_eq!(fra1.drained_by.as_deref(), Some("drain-1"));
    assert!(fra1.usable && fra1.weight > 0, "{fra1:?}");
    assert_eq!(fra1.describe(None), "draining by drain-1");
    let late = at(600);
    assert!(!late.pops[0].usable, "{:?}", late.pops[0]);
    assert_eq!(late.pops[0].describe(None), "drained by drain-1");

    // Two soft drains of fra1 as a whole: out once either is past its ramp,
    // whichever the plan names.
    let mut both = intents.clone();
    both.drains.push(Drain {
        id: "drain-2".into(),
        ..soft(
            DrainScope::Pop {
                pop: PopId::new("fra1"),
            },
            0,
        )
    });
    for s in [6, 149, 150, 600] {
        let body = compute(
            &topo,
            &HealthSnapshot::default(),
            &both,
            Timestamp(s * 1000),
        );
        let fra1 = &body.pops[0];
        // drain-2's zero ramp is five TTLs: 150 s.
        assert_eq!(fra1.usable, s < 150, "at {s}s: {fra1:?}");
        assert_eq!(fra1.usable, fra1.weight > 0, "at {s}s: {fra1:?}");
    }
}

/// A service drain stricter than the PoP's own drain (or with none) is in
/// the plan, so status and explain can name it.
#[test]
fn a_service_drain_in_force_is_named_in_the_pop_plan() {
    let topo = topology(UnknownHealth::AssumeUp);
    let service = drain_at(
        2,
        DrainScope::ServicePop {
            service: ServiceId::new("app"),
            pop: PopId::new("fra1"),
        },
        true,
        0,
        10,
    );
    let soft_region = drain_at(
        1,
        DrainScope::Region {
            region: RegionId::new("eu-west"),
        },
        false,
        600,
        0,
    );
    let app = ServiceId::new("app");
    for drains in [
        vec![service.clone()],
        vec![soft_region.clone(), service.clone()],
    ] {
        let intents = Intents {
            drains,
            ..Default::default()
        };
        let body = compute(
            &topo,
            &HealthSnapshot::default(),
            &intents,
            Timestamp(60_000),
        );
        let fra1 = &body.pops[0];
        assert_eq!(
            fra1.service_drains,
            [ServiceDrain {
                service: app.clone(),
                drain: "drain-2".into()
            }]
        );
        assert_eq!(fra1.drain_for_service(&app), Some("drain-2"));
        assert!(body.pops[1].service_drains.is_empty());
    }
    // Under a hard PoP drain the PoP's own drain says it all.
    let hard_pop = drain_at(
        3,
        DrainScope::Pop {
            pop: PopId::new("fra1"),
        },
        true,
        0,
        0,
    );
    let intents = Intents {
        drains: vec![hard_pop, service],
        ..Default::default()
    };
    let body = compute(
        &topo,
        &HealthSnapshot::default(),
        &intents,
        Timestamp(60_000),
    );
    assert!(body.pops[0].service_drains.is_empty(), "{:?}", body.pops[0]);
    assert_eq!(body.pops[0].drain_for_service(&app), Some("drain-3"));
}

proptest! {
    /// Intents compose by the strictest: with any set of drains, in any
    /// order, each PoP keeps the least capacity share and the strictest
    /// announcement any one of the covering drains allows.
    #[test]
    fn the_strictest_covering_drain_wins(
        specs in proptest::collection::vec(
            (arb_scope(), proptest::bool::ANY, 0u64..400, 0i64..600), 1..6),
        now_s in 0i64..1200,
        reverse in proptest::bool::ANY,
    ) {
        let mut topo = topology(UnknownHealth::AssumeUp);
        topo.policy.min_announce_share = 0.0;
        let service = &topo.services[0];
        let now = Timestamp(now_s * 1000);
        let mut drains: Vec<Drain> = specs
            .into_iter()
            .enumerate()
            .map(|(i, (scope, hard, ramp, created))| {
                drain_at(i + 1, scope, hard, ramp, created.min(now_s))
            })
            .collect();
        if reverse {
            drains.reverse();
        }
        let all = Intents { drains: drains.clone(), ..Default::default() };
        let announced = |intents: &Intents| -> BTreeMap<String, u8> {
            announce::plan(&topo, intents, &|_: &Pop| -> &PopHealthReport {
                static UP: std::sync::OnceLock<PopHealthReport> = std::sync::OnceLock::new();
                UP.get_or_init(|| PopHealthReport { state: TargetState::Up, ..PopHealthReport::unknown() })
            }, now, &mut Vec::new())
            .into_iter()
            // The wish before the min-announce rail (which keeps at least
            // one PoP announcing whatever the intents say).
            .map(|a| {
                let wished = if a.reason.is_min_announce_rail() { 2 } else { strictness(a.state) };
                (a.pop.to_string(), wished)
            })
            .collect()
        };
        let together = announced(&all);
        for pop in &topo.pops {
            let singles: Vec<Intents> = drains
                .iter()
                .filter(|d| d.scope.covers(Some(&service.id), &pop.id, &pop.region))
                .map(|d| Intents { drains: vec![d.clone()], ..Default::default() })
                .collect();
            let least = singles
                .iter()
                .map(|one| drain_factor(service, pop, one, now))
                .fold(1.0f64, f64::min);
            prop_assert_eq!(drain_factor(service, pop, &all, now), least, "{}", pop.id);
            let strictest = singles
                .iter()
                .map(|one| announced(one)[pop.id.as_str()])
                .max()
                .unwrap_or(0);
            prop_assert_eq!(together[pop.id.as_str()], strictest, "{}", pop.id);
        }
    }
}

proptest! {
    /// An override composes with drains by the strictest too: a PoP that a
    /// drain is taking out never gets more share than the override pins,
    /// nor more than the drains alone leave it; a hard drain leaves none.
    #[test]
    fn an_override_never_lifts_a_drained_pop(
        specs in proptest::collection::vec(
            (arb_scope(), proptest::bool::ANY, 0u64..400, 0i64..600), 0..4),
        pin in 0u32..=1000,
        now_s in 0i64..1200,
    ) {
        let topo = topology(UnknownHealth::AssumeUp);
        let now = Timestamp(now_s * 1000);
        let drains: Vec<Drain> = specs
            .into_iter()
            .enumerate()
            .map(|(i, (scope, hard, ramp, created))| {
                drain_at(i + 1, scope, hard, ramp, created.min(now_s))
            })
            .collect();
        let drains_only = Intents { drains, ..Default::default() };
        let mut with_pin = drains_only.clone();
        with_pin.overrides.push(steer_types::WeightOverride {
            id: "override-9".into(),
            pop: PopId::new("fra1"),
            weight: pin,
            reason: "canary".into(),
            principal: "t".into(),
            created: Timestamp(0),
            expires: None,
        });
        // Per answer set: fra1's weight and whether others share the set,
        // or None where every PoP is drained (the documented exception:
        // answer them all rather than nothing).
        let fra1 = |intents: &Intents| -> Vec<Option<(u32, bool)>> {
            let body = compute(&topo, &HealthSnapshot::default(), intents, now);
            let service = &body.services[0];
            service
                .regional
                .iter()
                .chain(std::iter::once(&service.global))
                .map(|set| {
                    (set.reason.basis != steer_types::SetBasis::AllDrained).then(|| {
                        let w = set.targets.iter().find(|t| t.pop.as_str() == "fra1").map_or(0, |t| t.weight);
                        (w, set.targets.iter().any(|t| t.pop.as_str() != "fra1"))
                    })
                })
                .collect()
        };
        let service = &topo.services[0];
        let pop = &topo.pops[0];
        let factor = drain_factor(service, pop, &drains_only, now);
        if factor < 1.0 {
            for (pinned, alone) in fra1(&with_pin).iter().zip(fra1(&drains_only)) {
                let (Some((pinned, shared)), Some((alone, _))) = (pinned, alone) else { continue };
                // +1: per-mille rounding of the others' shares. A set is
                // never emptied: a PoP alone in it keeps it whatever the pin.
                if *shared {
                    prop_assert!(*pinned <= pin.max(1) + 1, "{pinned} > pin {pin}");
                }
                prop_assert!(*pinned <= alone + 1, "{pinned} > {alone} under the drains alone");
                if factor == 0.0 {
                    prop_assert_eq!(*pinned, 0);
                }
            }
        }
    }
}
