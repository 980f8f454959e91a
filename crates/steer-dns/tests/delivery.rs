//! The shares a plan gives each PoP are the shares clients send it: with
//! many client subnets, each asking once and splitting its traffic over
//! the records it got, every PoP's measured share matches its weight,
//! including sets with fewer PoPs than records and skewed weights (which
//! need some single-record answers).

#![allow(clippy::unwrap_used)]

mod fixture;

use std::{collections::BTreeMap, net::IpAddr, str::FromStr};

use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, RecordType};
use steer_dns::{ClientInfo, DnsView, Question, answer};
use steer_types::{
    AnswerSet, ClientNetwork, DnsSettings, Plan, PlanBody, PopHealth, PopId, PopPlan, RegionId,
    RegionPlan, ServiceId, ServicePlan, Timestamp, WeightedTarget,
    answers::{ANSWER_UNIT, AnswerKey, AnswerTally},
};

const POPS: [&str; 5] = ["fra1", "ams1", "iad1", "ord1", "sin1"];

fn plan(weights: &[u32], max_records: usize) -> Plan {
    let targets = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| WeightedTarget {
            pop: PopId::new(POPS[i]),
            weight: w,
            ipv4: Some([192, 0, 2, i as u8 + 1].into()),
            ipv6: None,
        })
        .collect::<Vec<_>>();
    Plan {
        version: 1,
        computed_at: Timestamp::from_unix_ms(0),
        body: PlanBody {
            services: vec![ServicePlan {
                id: ServiceId::new("app"),
                fqdn: "app.example.test.".into(),
                ttl: 30,
                max_records,
                regional: vec![AnswerSet {
                    region: Some(RegionId::new("eu-west")),
                    targets: targets.clone(),
                    reason: steer_types::SetReason::default(),
                }],
                global: AnswerSet {
                    region: None,
                    targets,
                    reason: steer_types::SetReason::default(),
                },
                canary: None,
            }],
            pops: POPS
                .iter()
                .map(|p| PopPlan {
                    id: PopId::new(p),
                    region: RegionId::new("eu-west"),
                    health: PopHealth::Up,
                    usable: true,
                    drained_by: None,
                    service_drains: Vec::new(),
                    weight: 0,
                    at_target: false,
                    budget_moves: Vec::new(),
                })
                .collect(),
            regions: vec![RegionPlan {
                id: RegionId::new("eu-west"),
                served_by: vec![RegionId::new("eu-west")],
                level: Default::default(),
            }],
            announcements: Vec::new(),
            rails: Vec::new(),
        },
    }
}

/// Measured share per PoP over `subnets` distinct ECS /24s in 10/8
/// (mapped to eu-west), and what the answer tally counted.
fn measure(weights: &[u32], max_records: usize, subnets: u32) -> (Vec<f64>, Vec<f64>) {
    let nets = [ClientNetwork {
        prefix: "10.0.0.0/8".parse().unwrap(),
        region: RegionId::new("eu-west"),
    }];
    let tally = AnswerTally::default();
    let view = DnsView::compile_counted(
        &[fixture::zone(Vec::new())],
        &nets,
        &plan(weights, max_records),
        &DnsSettings::default(),
        &tally,
    )
    .unwrap();
    let name = LowerName::new(&Name::from_str("app.example.test.").unwrap());
    let q = Question {
        name: &name,
        qtype: RecordType::A,
        qclass: DNSClass::IN,
    };
    let mut traffic: BTreeMap<u8, f64> = BTreeMap::new();
    for i in 0..subnets {
        // Subnet i is the /24 10.x.y.0 with x.y = i.
        let client = ClientInfo {
            addr: IpAddr::from([10, (i >> 8) as u8, i as u8, 0]),
            source_prefix: 24,
            from_ecs: true,
            random: 0,
        };
        let a = answer(&view, &q, &client);
        // Sent: counted into the tally the control loop reads.
        a.record_served();
        let n = a.answers.len() as f64;
        assert!(n >= 1.0 && n <= max_records as f64);
        for r in &a.answers {
            if let RData::A(ip) = &r.data {
                *traffic.entry(ip.0.octets()[3]).or_default() += 1.0 / n;
            }
        }
    }
    let shares = (0..weights.len())
        .map(|i| traffic.get(&(i as u8 + 1)).copied().unwrap_or(0.0) / f64::from(subnets))
        .collect();
    let totals = tally.totals();
    let counted: BTreeMap<String, u64> = totals
        .0
        .iter()
        .filter(|(k, _)| k.region.is_some())
        .map(|(AnswerKey { pop, .. }, v)| (pop.to_string(), *v))
        .collect();
    let tallied = (0..weights.len())
        .map(|i| {
            counted.get(POPS[i]).copied().unwrap_or(0) as f64
                / ANSWER_UNIT as f64
                / f64::from(subnets)
        })
        .collect();
    (shares, tallied)
}

fn assert_delivered(weights: &[u32], max_records: usize) {
    let subnets = 60_000;
    let (got, tallied) = measure(weights, max_records, subnets);
    let total: u32 = weights.iter().sum();
    for (i, w) in weights.iter().enumerate() {
        let want = f64::from(*w) / f64::from(total);
        // Binomial noise over 60k subnets is under 0.5 points.
        assert!(
            (got[i] - want).abs() < 0.007,
            "{weights:?} with {max_records} records: {} got {:.4}, planned {want:.4} ({got:?})",
            POPS[i],
            got[i]
        );
        assert!(
            (tallied[i] - got[i]).abs() < 1e-9,
            "tally {tallied:?} vs {got:?}"
        );
    }
}

#[test]
fn two_records_two_pops_skewed() {
    // Full answers alone would give 50/50.
    assert_delivered(&[800, 200], 2);
}

#[test]
fn spill_set_with_a_dominant_pop() {
    assert_delivered(&[666, 167, 167], 2);
    assert_delivered(&[444, 444, 56, 56], 2);
}

#[test]
fn balanced_sets_and_more_records() {
    assert_delivered(&[250, 250, 250, 250], 2);
    assert_delivered(&[400, 300, 200, 50, 50], 3);
    assert_delivered(&[700, 100, 100, 100], 3);
    assert_delivered(&[500, 500], 1);
}
