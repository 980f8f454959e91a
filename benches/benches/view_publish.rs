//! What a new plan costs the DNS view: `ViewPublisher::publish_plan` with
//! the quickstart config plus 5,000 static records in its zone, against
//! compiling the whole view from scratch (what every plan cost before
//! static zones were compiled on reload only), measured in the same run.

use std::{hint::black_box, net::Ipv4Addr, sync::Arc};

use criterion::{Criterion, criterion_group, criterion_main};
use steer_dns::{DnsView, ViewInputs, ViewPublisher};
use steer_types::{Intents, Plan, RecordData, StaticRecord, Timestamp, health::HealthSnapshot};

const STATIC_RECORDS: u32 = 5_000;

fn inputs_and_plan() -> (ViewInputs, Plan) {
    let config = steer_config::load_steerd(&steer_benches::quickstart_path())
        .unwrap_or_else(|e| panic!("quickstart config does not load: {e}"));
    let body = steer_policy::compute(
        &config.topology,
        &HealthSnapshot::default(),
        &Intents::default(),
        Timestamp(0),
    );
    let mut zones = config.zones.clone();
    let zone = zones
        .first_mut()
        .unwrap_or_else(|| panic!("the quickstart config has no zone"));
    for i in 0..STATIC_RECORDS {
        zone.records.push(StaticRecord {
            name: format!("host{i}.{}", zone.origin),
            ttl: 300,
            data: RecordData::A(Ipv4Addr::from(0x0a00_0000 + i)),
        });
    }
    let inputs = ViewInputs {
        zones,
        client_networks: config.topology.client_networks.clone(),
        settings: config.dns.clone(),
    };
    let plan = Plan {
        version: 1,
        computed_at: Timestamp(0),
        body,
    };
    (inputs, plan)
}

fn bench(c: &mut Criterion) {
    let (inputs, plan) = inputs_and_plan();
    let publisher = ViewPublisher::new(inputs.clone(), Arc::new(plan.clone()))
        .unwrap_or_else(|e| panic!("view does not compile: {e}"));
    let mut group = c.benchmark_group("view_publish");
    let mut version = plan.version;
    group.bench_function("publish_plan (zones compiled on reload)", |b| {
        b.iter(|| {
            version += 1;
            let next = Plan {
                version,
                ..plan.clone()
            };
            publisher
                .publish_plan(Arc::new(next))
                .unwrap_or_else(|e| panic!("publish failed: {e}"));
        });
    });
    let first = publisher.view().load_full();
    publisher
        .publish_plan(Arc::new(Plan {
            version: version + 1,
            ..plan.clone()
        }))
        .unwrap_or_else(|e| panic!("publish failed: {e}"));
    assert!(
        publisher.view().load_full().shares_zones_with(&first),
        "a plan recompiled the static zones"
    );
    group.bench_function("whole view compiled (every zone, every plan)", |b| {
        b.iter(|| {
            black_box(
                DnsView::compile_with(
                    &inputs.zones,
                    &inputs.client_networks,
                    &plan,
                    &inputs.settings,
                )
                .unwrap_or_else(|e| panic!("view does not compile: {e}")),
            )
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
