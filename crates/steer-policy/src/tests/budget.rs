//! Budget-aware steering in the policy: a burning PoP's shift moves that
//! share of its traffic, only into other PoPs' headroom under the target.

use steer_types::health::BudgetShift;

use super::*;

fn shift(h: &mut HealthSnapshot, pop: &str, share: f64) {
    h.budget.push(BudgetShift {
        service: ServiceId::new("app"),
        pop: PopId::new(pop),
        slo: "app-availability".into(),
        share,
        burn_rate: 50.0,
        events: 1000,
        window_s: 300,
    });
}

fn loads(h: &HealthSnapshot) -> (BTreeMap<String, f64>, PlanBody, PlanEvidence) {
    let computed = compute_with_evidence(
        &topology(UnknownHealth::AssumeUp),
        h,
        &Intents::default(),
        None,
        Timestamp(0),
    );
    let load = implied_load(&computed);
    (load, computed.0, computed.1)
}

fn near(a: f64, b: f64) -> bool {
    // Weights are per-mille of a set's demand: 14,000 rps rounds by 14.
    (a - b).abs() <= 30.0
}

#[test]
fn a_burning_pops_share_moves_to_its_neighbour_and_is_recorded() {
    let mut h = HealthSnapshot::default();
    with_demand(
        &mut h,
        &[
            ("eu-west", 6000.0),
            ("us-east", 3000.0),
            ("ap-south", 3000.0),
        ],
        0.0,
    );
    let (before, body, _) = loads(&h);
    assert!(
        near(before["fra1"], 3000.0) && near(before["ams1"], 3000.0),
        "{before:?}"
    );
    assert!(body.pops.iter().all(|p| p.budget_moves.is_empty()));
    // Half of fra1's traffic moves, though fra1 is far under the target:
    // the shift is of its traffic, not of its capacity.
    shift(&mut h, "fra1", 0.5);
    let (after, body, evidence) = loads(&h);
    assert!(near(after["fra1"], 1500.0), "{after:?}");
    assert!(near(after["ams1"], 4500.0), "{after:?}");
    for p in ["iad1", "ord1", "sin1", "bom1"] {
        assert!(near(after[p], before[p]), "{p}: {after:?}");
    }
    let fra1 = body.pops.iter().find(|p| p.id.as_str() == "fra1").unwrap();
    assert_eq!(
        fra1.budget_moves,
        [steer_types::BudgetMove {
            service: ServiceId::new("app"),
            slo: "app-availability".into(),
            permille: 500,
        }]
    );
    assert_eq!(evidence.budget.len(), 1);
    assert_eq!(evidence.budget[0].burn_rate, 50.0);
}

#[test]
fn the_shift_goes_only_into_headroom_under_the_target() {
    let mut h = HealthSnapshot::default();
    // eu-west at 70%: ams1 has 10 points of room, us-east (eu-west's
    // first fallback) plenty.
    with_demand(
        &mut h,
        &[
            ("eu-west", 14_000.0),
            ("us-east", 3000.0),
            ("ap-south", 3000.0),
        ],
        0.0,
    );
    shift(&mut h, "fra1", 0.5);
    let (after, _, _) = loads(&h);
    assert!(near(after["fra1"], 3500.0), "{after:?}");
    assert!(near(after["ams1"], 8000.0), "{after:?}");
    assert!(
        near(after["iad1"] + after["ord1"], 3000.0 + 2500.0),
        "{after:?}"
    );
    for (p, l) in &after {
        assert!(*l <= 8000.0 + 1.0, "{p} pushed past the target: {after:?}");
    }
    // Nobody has room: nothing moves, nobody goes past the target for it.
    let mut full = HealthSnapshot::default();
    with_demand(
        &mut full,
        &[
            ("eu-west", 16_000.0),
            ("us-east", 16_000.0),
            ("ap-south", 16_000.0),
        ],
        0.0,
    );
    let (unshifted, _, _) = loads(&full);
    shift(&mut full, "fra1", 0.9);
    let (shifted, _, _) = loads(&full);
    for (p, l) in &shifted {
        assert!(near(*l, unshifted[p]), "{p}: {shifted:?} vs {unshifted:?}");
    }
}

#[test]
fn without_demand_figures_the_shift_scales_the_capacity_split() {
    let mut h = HealthSnapshot::default();
    shift(&mut h, "fra1", 0.5);
    // A shift for a PoP the service does not use is ignored.
    h.budget.push(BudgetShift {
        pop: PopId::new("nosuch"),
        ..h.budget[0].clone()
    });
    let (_, body, evidence) = loads(&h);
    let eu = body.services[0].for_region(Some(&RegionId::new("eu-west")));
    let w = |p: &str| {
        eu.targets
            .iter()
            .find(|t| t.pop.as_str() == p)
            .unwrap()
            .weight
    };
    assert_eq!((w("fra1"), w("ams1")), (334, 666));
    assert_eq!(evidence.budget.len(), 1);
}
