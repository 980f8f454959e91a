//! The plan the health-report decoder is fuzzed against (two PoPs, one
//! service): shared by the proptest in `ingest_fuzz.rs` and the cargo-fuzz
//! target `fuzz/fuzz_targets/health_report.rs`, which includes this file.

use steer_types::{
    AnswerSet, Plan, PlanBody, PopHealth, PopId, PopPlan, RegionId, ServiceId, ServicePlan,
    Timestamp,
};

pub(crate) fn plan() -> Plan {
    let pop = |id: &str| PopPlan {
        id: PopId::new(id),
        region: RegionId::new("eu"),
        health: PopHealth::Unknown,
        usable: true,
        drained_by: None,
        weight: 500,
        service_drains: Vec::new(),
        at_target: false,
        budget_moves: Vec::new(),
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
                canary: None,
            }],
            pops: vec![pop("fra1"), pop("ams1")],
            regions: vec![steer_types::RegionPlan {
                id: steer_types::RegionId::new("eu-west"),
                served_by: Vec::new(),
                level: steer_types::Degradation::default(),
            }],
            announcements: Vec::new(),
            rails: Vec::new(),
        },
    }
}
