//! Fuzzes the health-report decoder: prost decoding of a `HealthReport` and
//! its validation into the aggregator's `ObservedReport`, as the ingest
//! stream does for every message. It must never panic.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use steer_types::Plan;

#[path = "../../crates/steer-health/src/fuzz_plan.rs"]
mod fuzz_plan;

fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(fuzz_plan::plan)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(observed) = steer_health::ingest::decode_report(data, plan()) {
        assert!(observed.load_rps.is_finite() && observed.load_rps >= 0.0);
        assert!(plan().pop(observed.pop.as_str()).is_some());
    }
});
