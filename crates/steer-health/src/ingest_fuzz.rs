//! The health-report decoder under fuzzing (issue 11, item 10): any bytes
//! through prost and [`validate`], and well-formed reports with arbitrary
//! field values. Never a panic; an accepted report holds only finite,
//! non-negative figures and PoPs and services the plan knows.
//!
//! `STEER_FUZZ_CASES` overrides the case count (default 100,000).

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use prost::Message;
use steer_proto::v1::{HealthReport, PeerObservation as ProtoPeer, ProbeResult, ServiceHealth};
use steer_types::Plan;

use super::{fuzz_plan::plan, validate};
use crate::wire::ReportView;

fn cases() -> u32 {
    std::env::var("STEER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Decodes `bytes` as the ingest stream would and validates the report.
/// The in-place reader must accept exactly what prost accepts, and read
/// the same report.
fn decode_and_check(plan: &Plan, bytes: &[u8]) {
    let decoded = super::decode_report(bytes, plan);
    let view = ReportView::parse(bytes);
    if let Ok(report) = HealthReport::decode(bytes) {
        let view = view.unwrap_or_else(|e| panic!("prost decodes {bytes:?}, the view says {e}"));
        assert_same(&super::super::wire::tests::to_proto(&view), &report);
        assert_eq!(decoded.is_ok(), validate(&view, plan).is_ok());
        check(plan, &report);
    } else {
        assert!(
            view.is_err(),
            "prost refuses {bytes:?}, the view reads {view:?}"
        );
        assert!(decoded.is_err());
    }
}

/// Field by field, NaN included; the map in any order.
fn assert_same(a: &HealthReport, b: &HealthReport) {
    let map = |r: &HealthReport| {
        let mut m: Vec<(String, u64)> = r
            .region_load_rps
            .iter()
            .map(|(k, v)| (k.clone(), v.to_bits()))
            .collect();
        m.sort();
        m
    };
    assert_eq!(map(a), map(b));
    let without_map = |r: &HealthReport| {
        let mut r = r.clone();
        r.region_load_rps.clear();
        r.encode_to_vec()
    };
    assert_eq!(without_map(a), without_map(b), "{a:?} vs {b:?}");
}

fn check(plan: &Plan, report: &HealthReport) {
    let bytes = report.encode_to_vec();
    let view = ReportView::parse(&bytes).unwrap();
    if let Ok(observed) = validate(&view, plan) {
        assert!(plan.pop(observed.pop.as_str()).is_some());
        for v in [
            observed.load_rps,
            observed.load.bandwidth_bps,
            observed.load.error_ratio,
            observed.load.latency_p50_ms,
            observed.load.latency_p99_ms,
        ] {
            assert!(v.is_finite() && v >= 0.0, "{report:?}");
        }
        assert!(observed.load.error_ratio <= 1.0);
        assert!(
            observed
                .capacity_rps
                .is_none_or(|c| c.is_finite() && c > 0.0)
        );
        assert!(observed.services.iter().all(|(s, _)| s.as_str() == "app"));
        let attributed: f64 = observed.region_load.values().sum();
        assert!(
            observed
                .region_load
                .values()
                .all(|v| v.is_finite() && *v >= 0.0),
            "{report:?}"
        );
        assert!(attributed <= observed.load_rps * 1.001 + 1e-6, "{report:?}");
        assert!(
            observed
                .region_load
                .keys()
                .all(|r| plan.body.regions.iter().any(|k| k.id == *r))
        );
    }
}

fn figure() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-0.0),
        0.0..2.0f64,
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("fra1".to_owned()),
        Just("ams1".to_owned()),
        Just("app".to_owned()),
        Just("eu-west".to_owned()),
        "\\PC{0,12}",
    ]
}

fn report() -> impl Strategy<Value = HealthReport> {
    let service = (name(), any::<i32>(), -1..5i32, name(), name()).prop_map(
        |(service, raw_status, status, probe, detail)| ServiceHealth {
            service,
            status: if raw_status % 2 == 0 {
                status
            } else {
                raw_status
            },
            probes: vec![ProbeResult {
                name: probe,
                kind: "exec".into(),
                ok: raw_status > 0,
                detail,
                latency_ms: raw_status.unsigned_abs(),
            }],
            ..Default::default()
        },
    );
    let peer = (name(), name(), any::<bool>()).prop_map(|(pop, detail, reachable)| ProtoPeer {
        pop,
        name: "vip".into(),
        kind: "tcp".into(),
        reachable,
        detail,
        latency_ms: 1,
    });
    (
        (
            name(),
            any::<u64>(),
            any::<u64>(),
            any::<i64>(),
            any::<i64>(),
        ),
        proptest::collection::vec(service, 0..4),
        proptest::collection::vec(figure(), 6),
        proptest::collection::vec(peer, 0..3),
        proptest::collection::hash_map(name(), figure(), 0..4),
    )
        .prop_map(
            |((pop, sequence, instance, at, started), services, f, peers, regions)| HealthReport {
                pop,
                sequence,
                agent_time_unix_ms: at,
                services,
                capacity_rps: f[0],
                load_rps: f[1],
                agent_instance: instance,
                bandwidth_bps: f[2],
                error_ratio: f[3],
                latency_p50_ms: f[4],
                latency_p99_ms: f[5],
                peers,
                agent_started_unix_ms: started,
                region_load_rps: regions,
                ack_interval_ms: instance as u32,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_health_report_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_and_check(&plan(), &bytes);
    }

    #[test]
    fn fuzz_health_report_fields(report in report(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3)) {
        let plan = plan();
        check(&plan, &report);
        // And the same report, encoded and bit-flipped, through the decoder.
        let mut bytes = report.encode_to_vec();
        if !bytes.is_empty() {
            for (at, bits) in flips {
                let i = at % bytes.len();
                bytes[i] ^= bits;
            }
        }
        decode_and_check(&plan, &bytes);
    }
}
