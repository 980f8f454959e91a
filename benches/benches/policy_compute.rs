//! `steer_policy::compute` with empty health and no intents: the cost of one
//! control-loop recomputation, for the quickstart topology and for a
//! synthetic one of 200 PoPs in 20 regions serving 10 services.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use steer_benches::{quickstart_path, synthetic_topology};
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

fn bench_compute(c: &mut Criterion) {
    let config = steer_config::load_steerd(&quickstart_path())
        .unwrap_or_else(|e| panic!("quickstart config does not load: {e}"));
    bench_topology(c, "quickstart", &config.topology);
    bench_topology(
        c,
        "synthetic_200pops_20regions_10svc",
        &synthetic_topology(&config.topology, 20, 10, 10),
    );
}

criterion_group!(benches, bench_compute);
criterion_main!(benches);
