//! What an edge receives (issue 12): the full plan, and the delta for one
//! PoP drain, in the 1,000-PoP × 500-region × 50-service world and the
//! smaller bench worlds; and the cost of encoding once and of `subscribers`
//! followers each applying and verifying that delta.
//!
//! `cargo run --release -p steer-benches --bin plan-distribution [-- 200]`
//!
//! Bytes do not depend on the build; times do (use --release).

use std::time::Instant;

use prost::Message;
use steer_benches::{quickstart_path, synthetic_topology};
use steer_plansync::{Follower, PlanContent, PlanVersion, Update, full_update};
use steer_types::{
    Drain, DrainMode, DrainScope, Intents, Timestamp, Topology, health::HealthSnapshot,
};

fn measure(id: &str, topology: &Topology, subscribers: usize) {
    let health = HealthSnapshot::default();
    let before = steer_policy::compute(topology, &health, &Intents::default(), Timestamp(0));
    let Some(pop) = topology.pops.first().map(|p| p.id.clone()) else {
        return;
    };
    let intents = Intents {
        drains: vec![Drain {
            id: "d1".into(),
            scope: DrainScope::Pop { pop },
            mode: DrainMode::Hard,
            ramp: std::time::Duration::ZERO,
            reason: "bench".into(),
            principal: "bench".into(),
            created: Timestamp(0),
            expires: None,
            forced: false,
        }],
        ..Intents::default()
    };
    let after = steer_policy::compute(topology, &health, &intents, Timestamp(1));

    let t = Instant::now();
    let full = PlanContent::encode(&before);
    let encode = t.elapsed();
    let next = PlanContent::encode(&after);
    let delta = full.delta_to(&next);
    let v1 = PlanVersion {
        epoch: 1,
        sequence: 1,
    };
    let v2 = PlanVersion {
        epoch: 1,
        sequence: 2,
    };
    let first = full_update(v1, Timestamp(0), &full);
    let update = Update {
        version: v2,
        computed_at: Timestamp(1),
        base: Some(v1),
        changed: delta.changed.clone(),
        removed: delta.removed.clone(),
        sha256: next.sha256(),
    };
    // Wire sizes: the proto messages a subscriber is sent.
    let wire = |u: &Update| {
        steer_proto::v1::PlanUpdate {
            version: None,
            computed_unix_ms: 0,
            full: u.base.is_none(),
            base: None,
            entries: u
                .changed
                .iter()
                .map(|(k, v)| steer_proto::v1::PlanEntry {
                    key: k.clone(),
                    body: v.to_vec(),
                })
                .collect(),
            removed: u.removed.clone(),
            content_sha256: u.sha256.to_vec(),
        }
        .encoded_len()
    };
    let (full_bytes, delta_bytes) = (wire(&first), wire(&update));

    let mut followers: Vec<Follower> = (0..subscribers).map(|_| Follower::default()).collect();
    for f in &mut followers {
        if f.apply(&first).is_err() {
            eprintln!("{id}: full plan refused");
            return;
        }
    }
    let t = Instant::now();
    for f in &mut followers {
        if f.apply(&update).is_err() {
            eprintln!("{id}: delta refused");
            return;
        }
    }
    let apply = t.elapsed();
    println!(
        "{id:<36} full {:>9.1} KiB in {:>6} entries; one PoP drain: delta {:>7.1} KiB, {:>4} entries ({:.3}% of full); encode {:>7.1} ms; {subscribers} followers apply+verify {:>7.1} ms",
        full_bytes as f64 / 1024.0,
        full.entries.len(),
        delta_bytes as f64 / 1024.0,
        delta.changed.len() + delta.removed.len(),
        100.0 * delta_bytes as f64 / full_bytes.max(1) as f64,
        encode.as_secs_f64() * 1e3,
        apply.as_secs_f64() * 1e3,
    );
}

fn main() {
    let subscribers: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let config = match steer_config::load_steerd(&quickstart_path()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("quickstart config does not load: {e}");
            std::process::exit(2);
        }
    };
    measure("quickstart", &config.topology, subscribers);
    measure(
        "synthetic_200pops_20regions_10svc",
        &synthetic_topology(&config.topology, 20, 10, 10),
        subscribers,
    );
    measure(
        "sized_1000pops_500regions_50svc",
        &synthetic_topology(&config.topology, 500, 2, 50),
        subscribers,
    );
}
