//! The in-place reader against prost on the cases that differ between
//! decoders; `ingest_fuzz` compares them on arbitrary bytes.

#![allow(clippy::unwrap_used)]

use prost::Message;
use steer_proto::v1::{HealthReport, PeerObservation, ProbeResult, ServiceHealth};

use super::*;

/// The view as the message prost would decode (for comparisons).
pub(crate) fn to_proto(view: &ReportView<'_>) -> HealthReport {
    HealthReport {
        pop: view.pop.into(),
        sequence: view.sequence,
        agent_time_unix_ms: view.agent_time_unix_ms,
        services: view
            .services()
            .map(|s| ServiceHealth {
                service: s.service.into(),
                status: s.status,
                probes: s
                    .probes()
                    .map(|p| ProbeResult {
                        name: p.name.into(),
                        kind: p.kind.into(),
                        ok: p.ok,
                        detail: p.detail.into(),
                        latency_ms: p.latency_ms,
                    })
                    .collect(),
                requests_total: s.requests_total,
                requests_failed: s.requests_failed,
                sli_present: s.sli_present,
                requests_slow: s.requests_slow,
                slow_present: s.slow_present,
            })
            .collect(),
        capacity_rps: view.capacity_rps,
        load_rps: view.load_rps,
        agent_instance: view.agent_instance,
        bandwidth_bps: view.bandwidth_bps,
        error_ratio: view.error_ratio,
        latency_p50_ms: view.latency_p50_ms,
        latency_p99_ms: view.latency_p99_ms,
        peers: view
            .peers()
            .map(|p| PeerObservation {
                pop: p.pop.into(),
                name: p.name.into(),
                kind: p.kind.into(),
                reachable: p.reachable,
                detail: p.detail.into(),
                latency_ms: p.latency_ms,
            })
            .collect(),
        agent_started_unix_ms: view.agent_started_unix_ms,
        region_load_rps: view.region_load().map(|(k, v)| (k.into(), v)).collect(),
        ack_interval_ms: view.ack_interval_ms,
    }
}

fn agree(bytes: &[u8]) -> bool {
    let ours = ReportView::parse(bytes);
    let theirs = HealthReport::decode(bytes);
    assert_eq!(
        ours.is_ok(),
        theirs.is_ok(),
        "{bytes:?}: {ours:?} vs {theirs:?}"
    );
    if let (Ok(v), Ok(m)) = (ours, theirs) {
        assert_eq!(to_proto(&v), m);
    }
    ours.is_ok()
}

/// A field key, varint-encoded.
fn key(tag: u32, wire_type: u32) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(u64::from(tag << 3 | wire_type), &mut out);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn a_full_report_reads_as_prost_decodes_it() {
    let report = HealthReport {
        pop: "fra1".into(),
        sequence: 7,
        agent_time_unix_ms: -5,
        services: vec![ServiceHealth {
            service: "app".into(),
            status: 2,
            probes: vec![
                ProbeResult {
                    name: "app-http".into(),
                    kind: "http".into(),
                    ok: true,
                    detail: "HTTP 200".into(),
                    latency_ms: 3,
                },
                ProbeResult::default(),
            ],
            requests_total: 10,
            requests_failed: 1,
            sli_present: true,
            requests_slow: 2,
            slow_present: true,
        }],
        capacity_rps: 1e4,
        load_rps: 900.0,
        agent_instance: u64::MAX,
        bandwidth_bps: 1.5,
        error_ratio: 0.25,
        latency_p50_ms: 4.0,
        latency_p99_ms: 40.0,
        peers: vec![PeerObservation {
            pop: "iad1".into(),
            name: "iad1-vip".into(),
            kind: "tcp".into(),
            reachable: true,
            detail: "connected".into(),
            latency_ms: 9,
        }],
        agent_started_unix_ms: 1_700_000_000_000,
        region_load_rps: [("eu".to_owned(), 500.0)].into(),
        ack_interval_ms: 5000,
    };
    assert!(agree(&report.encode_to_vec()));
}

#[test]
fn unknown_fields_and_groups_are_skipped_and_repeats_follow_protobuf() {
    let mut bytes = HealthReport {
        pop: "fra1".into(),
        sequence: 1,
        ..Default::default()
    }
    .encode_to_vec();
    // Unknown varint, fixed32, fixed64, bytes and a nested group.
    bytes.extend(cat(&[&key(99, 0), &[5], &key(98, 5), &[1, 2, 3, 4]]));
    bytes.extend(cat(&[&key(97, 1), &[0; 8], &key(96, 2), &[2, 0xff, 0xff]]));
    bytes.extend(cat(&[
        &key(95, 3),
        &key(94, 3),
        &key(93, 0),
        &[1],
        &key(94, 4),
        &key(95, 4),
    ]));
    // A second `pop` and `sequence`: the last wins.
    bytes.extend(cat(&[&key(1, 2), &[4], b"ams1", &key(2, 0), &[9]]));
    // The same region twice: the later value.
    for rps in [1.0f64, 2.0] {
        let entry = cat(&[&key(1, 2), &[2], b"eu", &key(2, 1), &rps.to_le_bytes()]);
        bytes.extend(cat(&[
            &key(14, 2),
            &[u8::try_from(entry.len()).unwrap()],
            &entry,
        ]));
    }
    assert!(agree(&bytes));
    let view = ReportView::parse(&bytes).unwrap();
    assert_eq!((view.pop, view.sequence), ("ams1", 9));
    let regions: Vec<_> = view.region_load().collect();
    assert_eq!(regions.last(), Some(&("eu", 2.0)));
}

#[test]
fn malformed_bytes_are_refused_as_prost_refuses_them() {
    let cases: Vec<Vec<u8>> = vec![
        // pop (a string) sent as a varint.
        cat(&[&key(1, 0), &[1]]),
        // A string that is not UTF-8.
        cat(&[&key(1, 2), &[1, 0xff]]),
        // Length past the end.
        cat(&[&key(1, 2), &[5, b'a']]),
        // Tag 0, wire types 6 and 7.
        vec![0],
        vec![6],
        vec![7],
        // A lone end group, and a group closed by another tag.
        key(99, 4),
        cat(&[&key(99, 3), &key(98, 4)]),
        // An unterminated group.
        key(99, 3),
        // An 11-byte varint, and a 10th byte above 1.
        cat(&[&key(2, 0), &[0xff; 10], &[0]]),
        cat(&[&key(2, 0), &[0xff; 9], &[2]]),
        // A service whose probes field holds a truncated message.
        cat(&[&key(4, 2), &[3], &key(3, 2), &[5, 0]]),
        // A double field cut short.
        cat(&[&key(5, 1), &[0, 0, 0]]),
    ];
    for bytes in &cases {
        assert!(!agree(bytes), "{bytes:?}");
    }
}

#[test]
fn groups_nest_only_as_deep_as_prost_allows() {
    for depth in [98usize, 99, 100, 101] {
        let mut bytes = Vec::new();
        for _ in 0..depth {
            bytes.extend(key(99, 3));
        }
        for _ in 0..depth {
            bytes.extend(key(99, 4));
        }
        agree(&bytes);
        // The same inside a service (one level deeper).
        let mut nested = key(4, 2);
        let mut len = Vec::new();
        prost::encoding::encode_varint(bytes.len() as u64, &mut len);
        nested.extend(len);
        nested.extend(&bytes);
        agree(&nested);
    }
}
