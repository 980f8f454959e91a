//! `steer_policy::compute` with empty health and no intents: the cost of one
//! control-loop recomputation, for the quickstart topology, a synthetic one
//! of 200 PoPs in 20 regions serving 10 services, and the sizing
//! target of 1,000 PoPs x 500 client regions x 50 services (capacity-only
//! and water-filling with demand in every region). Also prints the Plan's
//! serialized size as a proxy for its memory.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use steer_benches::{quickstart_path, synthetic_topology, with_demand};
use steer_types::{Intents, Timestamp, Topology, health::HealthSnapshot};

fn bench_topology(c: &mut Criterion, id: &str, topology: &Topology) {
    let health = HealthSnapshot::default();
    let intents = Intents::default();
    let body = steer_policy::compute(topology, &health, &intents, Timestamp(0));
    assert_eq!(
        body.services.len(),
        topology.services.len(),
        "{id}: every service planned"
    );
    let json = serde_json::to_vec(&body).unwrap_or_default();
    eprintln!(
        "{id}: plan body {} KiB as JSON ({} answer sets)",
        json.len() / 1024,
        body.services
            .iter()
            .map(|s| s.regional.len() + 1)
            .sum::<usize>()
    );
    c.bench_function(&format!("policy_compute/{id}"), |b| {
        b.iter(|| {
            steer_policy::compute(
                black_box(topology),
                black_box(&health),
                black_box(&intents),
                Timestamp(0),
            )
        });
    });
}

/// `steer_policy::estimate_demand` on the water-filled sizing world: every
/// regional set's answers counted, every PoP's load reported, the previous
/// estimate as the starting point (what the control loop does per report
/// batch).
fn bench_estimate(c: &mut Criterion, id: &str, topology: &Topology) {
    use steer_types::{
        answers::{AnswerKey, AnswerWindow},
        health::{PopHealthReport, TargetState},
    };
    let health = HealthSnapshot::default();
    let body = steer_policy::compute(topology, &health, &Intents::default(), Timestamp(0));
    let mut window = AnswerWindow::default();
    let mut load: std::collections::BTreeMap<steer_types::PopId, f64> = Default::default();
    for s in &body.services {
        window.window_s.insert(s.id.clone(), 30);
        for set in &s.regional {
            for t in &set.targets {
                let share = f64::from(t.weight) / 1000.0;
                window.counts.insert(
                    AnswerKey {
                        service: s.id.clone(),
                        region: set.region.clone(),
                        pop: t.pop.clone(),
                    },
                    100.0 * share,
                );
                *load.entry(t.pop.clone()).or_default() += 300.0 * share;
            }
        }
    }
    let mut observed = HealthSnapshot::default();
    for p in &topology.pops {
        let mut r = PopHealthReport::unknown();
        r.state = TargetState::Up;
        r.load_rps = load.get(&p.id).copied().unwrap_or(0.0);
        observed.pops.insert(p.id.clone(), r);
    }
    let previous =
        steer_policy::estimate_demand(topology, &body, &observed, &window, &Default::default());
    eprintln!(
        "{id}: {} answer cells over {} PoPs",
        window.counts.len(),
        topology.pops.len()
    );
    c.bench_function(&format!("estimate_demand/{id}"), |b| {
        b.iter(|| {
            steer_policy::estimate_demand(
                black_box(topology),
                black_box(&body),
                black_box(&observed),
                black_box(&window),
                black_box(&previous),
            )
        });
    });
}

fn bench_compute(c: &mut Criterion) {
    let config = steer_config::load_steerd(&quickstart_path())
        .unwrap_or_else(|e| panic!("quickstart config does not load: {e}"));
    bench_topology(c, "quickstart", &config.topology);
    bench_topology(
        c,
        "synthetic_200pops_20regions_10svc",
        &synthetic_topology(&config.topology, 20, 10, 10),
    );
    let big = synthetic_topology(&config.topology, 500, 2, 50);
    bench_topology(c, "sized_1000pops_500regions_50svc", &big);
    let big = with_demand(big, 300.0);
    bench_topology(c, "sized_1000pops_500regions_50svc_waterfill", &big);
    bench_estimate(c, "sized_1000pops_500regions_50svc", &big);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench_compute
}
criterion_main!(benches);
