//! Heap memory of a computed Plan, measured by counting allocations
//! (dhat): the bytes a plan keeps alive once `compute` returns, and the
//! peak heap during `compute` (its working set included), for the same
//! worlds as the `policy_compute` bench.
//!
//! `cargo run --release -p steer-benches --bin plan-memory`

use steer_benches::{quickstart_path, synthetic_topology, with_demand};
use steer_types::{Intents, Timestamp, Topology, health::HealthSnapshot};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn measure(id: &str, topology: &Topology) {
    let health = HealthSnapshot::default();
    let intents = Intents::default();
    // Counting starts here: the topology and inputs are not included.
    let profiler = dhat::Profiler::builder().testing().build();
    let body = steer_policy::compute(topology, &health, &intents, Timestamp(0));
    let stats = dhat::HeapStats::get();
    let sets: usize = body.services.iter().map(|s| s.regional.len() + 1).sum();
    let json = serde_json::to_vec(&body).map_or(0, |j| j.len());
    println!(
        "{id:<44} plan {:>8.1} MiB in {:>7} blocks ({:>5} B per answer set), peak during compute {:>8.1} MiB; JSON {:>8.1} MiB",
        mib(stats.curr_bytes),
        stats.curr_blocks,
        stats.curr_bytes / sets.max(1),
        mib(stats.max_bytes),
        mib(json),
    );
    drop(body);
    drop(profiler);
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let config = match steer_config::load_steerd(&quickstart_path()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("quickstart config does not load: {e}");
            std::process::exit(2);
        }
    };
    measure("quickstart", &config.topology);
    measure(
        "synthetic_200pops_20regions_10svc",
        &synthetic_topology(&config.topology, 20, 10, 10),
    );
    let big = synthetic_topology(&config.topology, 500, 2, 50);
    measure("sized_1000pops_500regions_50svc", &big);
    measure(
        "sized_1000pops_500regions_50svc_waterfill",
        &with_demand(big, 300.0),
    );
}
