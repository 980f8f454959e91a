//! Fuzzes the health-report decoder: prost decoding of a `HealthReport` and
//! its validation into the aggregator's `ObservedReport`, as the ingest
//! stream does for every message. It must never panic.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use steer_types::{
    AnswerSet, Plan, PlanBody, PopHealth, PopId, PopPlan, RegionId, ServiceId, ServicePlan,
    Timestamp,
};

fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let pop = |id: &str| PopPlan {
            id: PopId::new(id),
            region: RegionId::new("eu"),
            health: PopHealth::Unknown,
            usable: true,
            drained_by: None,
            weight: 500,
        };
        Plan {
            version: 1,
            computed_at: Timestamp::from_unix_ms(0),
            body: PlanBody {
                services: vec![ServicePlan {
                    id: ServiceId::new("app"),
                    fqdn: "app.example.test.".into(),
                    ttl: 30,
                    max_records: 2,
                    regional: Vec::new(),
                    global: AnswerSet {
                        region: None,
                        targets: Vec::new(),
                        reason: steer_types::SetReason::default(),
                    },
                }],
                pops: vec![pop("fra1"), pop("ams1")],
                regions: Vec::new(),
                announcements: Vec::new(),
                rails: Vec::new(),
            },
        }
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(observed) = steer_health::ingest::decode_report(data, plan()) {
        assert!(observed.load_rps.is_finite() && observed.load_rps >= 0.0);
        assert!(plan().pop(observed.pop.as_str()).is_some());
    }
});
