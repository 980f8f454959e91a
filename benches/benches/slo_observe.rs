//! What SLI counters cost the controller, at the sizing target of 1,000
//! PoPs x 50 services with an SLO on every service (budget-aware steering
//! on): `observe` is the per-report work (one report carries every
//! service's counters), `evaluate` the per-interval work (budgets, burn
//! rates, every PoP's burn for steering). Compare with `policy_compute`,
//! the per-batch re-plan of the same world.

use std::{collections::BTreeMap, hint::black_box, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use steer_slo::{BudgetSteering, Objective, SliSample, SloEngine, SloSpec, Steering};
use steer_types::Timestamp;

const POPS: usize = 1000;
const SERVICES: usize = 50;

fn world() -> (SloEngine, Vec<String>, Vec<String>) {
    let pops: Vec<String> = (0..POPS).map(|p| format!("p{p:04}")).collect();
    let services: Vec<String> = (0..SERVICES).map(|s| format!("svc{s}")).collect();
    let specs = services
        .iter()
        .map(|s| {
            let mut spec = SloSpec::new(
                &format!("{s}-availability"),
                s,
                Objective::Availability { target: 0.999 },
            );
            spec.steering = Some(Steering::new(10.0));
            spec
        })
        .collect();
    let regions: BTreeMap<String, String> = pops
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), format!("r{}", i % 10)))
        .collect();
    (SloEngine::new(specs, regions), pops, services)
}

fn bench(c: &mut Criterion) {
    let (mut engine, pops, services) = world();
    // An hour of history for every PoP, a report a second.
    let start = 1_800_000_000_000i64;
    let mut t = start;
    let mut seq = 0u64;
    for _ in 0..60 {
        seq += 60;
        t += 60_000;
        for pop in &pops {
            for s in &services {
                engine.observe(
                    pop,
                    s,
                    SliSample {
                        total: seq * 100,
                        failed: seq / 10,
                        slow: None,
                    },
                    Timestamp(t),
                    &mut |_, _| {},
                );
            }
        }
    }
    let mut i = 0usize;
    c.bench_function("slo_observe/report_50_services_1000_pops", |b| {
        b.iter(|| {
            // The next PoP's report, a second later every full round.
            i += 1;
            if i.is_multiple_of(POPS) {
                seq += 1;
                t += 1000;
            }
            let pop = &pops[i % POPS];
            for s in &services {
                engine.observe(
                    black_box(pop),
                    black_box(s),
                    SliSample {
                        total: seq * 100,
                        failed: seq / 10,
                        slow: None,
                    },
                    Timestamp(t),
                    &mut |_, _| {},
                );
            }
        });
    });
    let now = Timestamp(t);
    c.bench_function("slo_observe/evaluate_50_slos_1000_pops", |b| {
        b.iter(|| black_box(engine.evaluate(black_box(now))));
    });
    let mut steering = BudgetSteering::default();
    c.bench_function("slo_observe/steering_50_slos_1000_pops", |b| {
        b.iter(|| {
            steering.update(engine.specs(), &|spec, window| {
                engine.pop_burn(&spec.name, window, now)
            })
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
