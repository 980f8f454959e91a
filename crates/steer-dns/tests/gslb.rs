//! GSLB answers from a hand-built plan: fallback when every candidate is
//! out, sticky vs random selection, CNAME-style names, ECS scope.

#![allow(clippy::unwrap_used)]

mod fixture;

use std::{net::IpAddr, str::FromStr};

use hickory_server::proto::{
    op::ResponseCode,
    rr::{DNSClass, LowerName, Name, RData, RecordType},
};
use steer_dns::{ClientInfo, DnsView, Question, answer};
use steer_types::{
    AnswerSet, ClientNetwork, DnsSettings, GslbSettings, Plan, PlanBody, PopHealth, PopId, PopPlan,
    RegionId, RegionPlan, Selection, ServiceId, ServicePlan, Timestamp, WeightedTarget, Zone,
};

fn target(pop: &str, n: u8) -> WeightedTarget {
    WeightedTarget {
        pop: PopId::new(pop),
        weight: 100,
        ipv4: Some([192, 0, 2, n].into()),
        ipv6: None,
    }
}

fn plan(version: u64, eu: Vec<WeightedTarget>, global: Vec<WeightedTarget>) -> Plan {
    let pops = ["fra1", "ams1", "iad1", "ord1"]
        .iter()
        .map(|p| PopPlan {
            id: PopId::new(p),
            region: RegionId::new(if p.starts_with('f') || p.starts_with('a') {
                "eu-west"
            } else {
                "us-east"
            }),
            health: PopHealth::Up,
            usable: true,
            drained_by: None,
            weight: 250,
            service_drains: Vec::new(),
            at_target: false,
            budget_moves: Vec::new(),
        })
        .collect();
    let svc = |fqdn: &str, id: &str| ServicePlan {
        id: ServiceId::new(id),
        fqdn: fqdn.into(),
        ttl: 30,
        max_records: 1,
        regional: vec![AnswerSet {
            region: Some(RegionId::new("eu-west")),
            targets: eu.clone(),
            reason: steer_types::SetReason::default(),
        }],
        global: AnswerSet {
            region: None,
            targets: global.clone(),
            reason: steer_types::SetReason::default(),
        },
        canary: None,
    };
    Plan {
        version,
        computed_at: Timestamp::from_unix_ms(0),
        body: PlanBody {
            services: vec![
                svc("app.example.test.", "app"),
                svc("rnd.example.test.", "rnd"),
                svc("edge.example.test.", "edge"),
            ],
            pops,
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

/// The `example.test.` zone with no static records.
fn zone() -> Zone {
    fixture::zone(Vec::new())
}

fn settings() -> DnsSettings {
    let g = |id: &str, selection, cname: Option<&str>| GslbSettings {
        service: ServiceId::new(id),
        fqdn: format!("{id}.example.test."),
        selection,
        fallback: vec![
            IpAddr::from_str("192.0.2.99").unwrap(),
            IpAddr::from_str("2001:db8::99").unwrap(),
        ],
        cname: cname.map(String::from),
    };
    DnsSettings {
        services: vec![
            g("app", Selection::Sticky, None),
            g("rnd", Selection::Random, None),
            g("edge", Selection::Sticky, Some("{region}.cdn.example.net.")),
        ],
        ..DnsSettings::default()
    }
}

fn view(plan: &Plan) -> DnsView {
    let nets = [ClientNetwork {
        prefix: "10.1.0.0/16".parse().unwrap(),
        region: RegionId::new("eu-west"),
    }];
    DnsView::compile_with(&[zone()], &nets, plan, &settings()).unwrap()
}

fn ask(
    view: &DnsView,
    name: &str,
    qtype: RecordType,
    client: ClientInfo,
) -> (ResponseCode, Vec<String>, u8) {
    let name = LowerName::new(&Name::from_str(name).unwrap());
    let q = Question {
        name: &name,
        qtype,
        qclass: DNSClass::IN,
    };
    let a = answer(view, &q, &client);
    let data = a
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.to_string(),
            RData::AAAA(a) => a.to_string(),
            other => other.to_string(),
        })
        .collect();
    (a.rcode, data, a.ecs_scope)
}

fn ecs(addr: &str, prefix: u8, random: u64) -> ClientInfo {
    ClientInfo {
        addr: addr.parse().unwrap(),
        source_prefix: prefix,
        from_ecs: true,
        random,
    }
}

#[test]
fn fallback_when_every_candidate_is_out() {
    let v = view(&plan(1, vec![], vec![]));
    let (rcode, a, _) = ask(
        &v,
        "app.example.test.",
        RecordType::A,
        ecs("10.1.2.0", 24, 0),
    );
    assert_eq!(
        (rcode, a),
        (ResponseCode::NoError, vec!["192.0.2.99".to_string()])
    );
    let (rcode, a, _) = ask(
        &v,
        "app.example.test.",
        RecordType::AAAA,
        ecs("10.1.2.0", 24, 0),
    );
    assert_eq!(
        (rcode, a),
        (ResponseCode::NoError, vec!["2001:db8::99".to_string()])
    );
    // The regional set is empty but the global one is not: use it first.
    let v = view(&plan(2, vec![], vec![target("iad1", 21)]));
    let (_, a, _) = ask(
        &v,
        "app.example.test.",
        RecordType::A,
        ecs("10.1.2.0", 24, 0),
    );
    assert_eq!(a, ["192.0.2.21"]);
}

#[test]
fn sticky_per_subnet_and_scope_matches_the_decision() {
    let eu = vec![target("fra1", 11), target("ams1", 12)];
    let v = view(&plan(1, eu.clone(), eu.clone()));
    let first = ask(
        &v,
        "app.example.test.",
        RecordType::A,
        ecs("10.1.2.0", 24, 0),
    );
    for host in 0..=255u8 {
        let got = ask(
            &v,
            "app.example.test.",
            RecordType::A,
            ecs(&format!("10.1.2.{host}"), 32, 0),
        );
        assert_eq!(got.1, first.1);
        // Hashed on the /24 within a uniform plan: scope /24.
        assert_eq!(got.2, 24);
    }
    // Some /24 in the same region gets the other PoP.
    let other = (0..=255u8).any(|n| {
        ask(
            &v,
            "app.example.test.",
            RecordType::A,
            ecs(&format!("10.1.{n}.0"), 24, 0),
        )
        .1 != first.1
    });
    assert!(other);
}

#[test]
fn random_selection_spreads_and_scope_is_the_region() {
    let eu = vec![target("fra1", 11), target("ams1", 12)];
    let v = view(&plan(1, eu, vec![target("iad1", 21)]));
    let mut seen = std::collections::HashSet::new();
    for r in 0..200u64 {
        let (_, a, scope) = ask(
            &v,
            "rnd.example.test.",
            RecordType::A,
            ecs("10.1.2.0", 24, r.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        );
        assert_eq!(scope, 16, "depends only on the 10.1/16 mapping");
        seen.extend(a);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[test]
fn cname_style_names_point_to_the_region() {
    let v = view(&plan(1, vec![target("fra1", 11)], vec![target("iad1", 21)]));
    let (rcode, a, _) = ask(
        &v,
        "edge.example.test.",
        RecordType::A,
        ecs("10.1.2.0", 24, 0),
    );
    assert_eq!(
        (rcode, a),
        (
            ResponseCode::NoError,
            vec!["eu-west.cdn.example.net.".to_string()]
        )
    );
    let (_, a, _) = ask(
        &v,
        "edge.example.test.",
        RecordType::TXT,
        ecs("198.51.100.0", 24, 0),
    );
    assert_eq!(a, ["us-east.cdn.example.net."]);
}

/// A static CNAME (or a chain of them) to a steered name answers the
/// chain plus the steered records, owned by the steered name, with the
/// ECS scope of the steered part; the fast path writes the same.
#[test]
fn cnames_to_steered_names_carry_the_steered_answer_and_its_scope() {
    use steer_types::{RecordData, StaticRecord};
    let cname = |name: &str, target: &str| StaticRecord {
        name: name.into(),
        ttl: 300,
        data: RecordData::Cname(target.into()),
    };
    let zone = fixture::zone(vec![
        cname("alias.example.test.", "app.example.test."),
        cname("deep.example.test.", "alias.example.test."),
    ]);
    let nets = [ClientNetwork {
        prefix: "10.1.0.0/16".parse().unwrap(),
        region: RegionId::new("eu-west"),
    }];
    let p = plan(
        1,
        vec![target("fra1", 11), target("ams1", 12)],
        vec![target("iad1", 21)],
    );
    let v = DnsView::compile_with(&[zone], &nets, &p, &settings()).unwrap();
    let client = ecs("10.1.2.0", 24, 0);
    let (_, direct, direct_scope) = ask(&v, "app.example.test.", RecordType::A, client);
    for name in ["alias.example.test.", "deep.example.test."] {
        let (rcode, data, scope) = ask(&v, name, RecordType::A, client);
        assert_eq!(rcode, ResponseCode::NoError);
        assert_eq!(scope, direct_scope, "{name}");
        assert!(scope > 0, "the steered part depends on the client");
        assert_eq!(data.last(), direct.last(), "{name}: {data:?}");
        assert!(data.contains(&"app.example.test.".to_string()), "{data:?}");
    }
    // Owners: the query name, then each CNAME's target.
    let qname = Name::from_str("deep.example.test.").unwrap();
    let lower = LowerName::new(&qname);
    let q = Question {
        name: &lower,
        qtype: RecordType::A,
        qclass: DNSClass::IN,
    };
    let a = answer(&v, &q, &client);
    let owners: Vec<String> = a.records(&qname).map(|r| r.name.to_string()).collect();
    assert_eq!(
        owners,
        [
            "deep.example.test.",
            "alias.example.test.",
            "app.example.test."
        ]
    );
    // And on the wire, from the pre-encoded path.
    let mut query = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x04deep\x07example\x04test\x00\x00\x01\x00\x01");
    let mut out = Vec::new();
    steer_dns::respond_udp(&v, &query, [10, 1, 2, 3].into(), 0, &mut out);
    let m = hickory_server::proto::op::Message::from_vec(&out).unwrap();
    let wire: Vec<String> = m.answers.iter().map(|r| r.name.to_string()).collect();
    assert_eq!(wire, owners);
    assert!(m.metadata.authoritative);
}

/// Steered names exist in their zone: a wildcard beside them does not
/// answer for them or below them.
#[test]
fn steered_names_block_wildcards() {
    use steer_types::{RecordData, StaticRecord};
    let zone = fixture::zone(vec![StaticRecord {
        name: "*.example.test.".into(),
        ttl: 300,
        data: RecordData::A([192, 0, 2, 200].into()),
    }]);
    let p = plan(1, vec![target("fra1", 11)], vec![target("iad1", 21)]);
    let v = DnsView::compile_with(&[zone], &[], &p, &settings()).unwrap();
    let client = ecs("198.51.100.0", 24, 0);
    let (rcode, data, _) = ask(&v, "other.example.test.", RecordType::A, client);
    assert_eq!(
        (rcode, data),
        (ResponseCode::NoError, vec!["192.0.2.200".into()])
    );
    let (rcode, data, _) = ask(&v, "app.example.test.", RecordType::A, client);
    assert_eq!(
        (rcode, data),
        (ResponseCode::NoError, vec!["192.0.2.21".into()])
    );
    let (rcode, data, _) = ask(&v, "x.app.example.test.", RecordType::A, client);
    assert_eq!(
        (rcode, data),
        (ResponseCode::NXDomain, Vec::<String>::new())
    );
}

/// A CNAME-style name whose target is in our zones is followed like any
/// other CNAME, keeping the scope of the steered choice.
#[test]
fn cname_style_targets_in_our_zones_are_followed() {
    use steer_types::{RecordData, StaticRecord};
    let host = |pop: &str, n: u8| StaticRecord {
        name: format!("{pop}.pops.example.test."),
        ttl: 300,
        data: RecordData::A([192, 0, 2, n].into()),
    };
    let zone = fixture::zone(vec![host("fra1", 111), host("iad1", 121)]);
    let mut s = settings();
    for g in &mut s.services {
        if g.cname.is_some() {
            g.cname = Some("{pop}.pops.example.test.".into());
        }
    }
    let nets = [ClientNetwork {
        prefix: "10.1.0.0/16".parse().unwrap(),
        region: RegionId::new("eu-west"),
    }];
    let p = plan(1, vec![target("fra1", 11)], vec![target("iad1", 21)]);
    let v = DnsView::compile_with(&[zone], &nets, &p, &s).unwrap();
    let (rcode, data, scope) = ask(
        &v,
        "edge.example.test.",
        RecordType::A,
        ecs("10.1.2.0", 24, 0),
    );
    assert_eq!(rcode, ResponseCode::NoError);
    assert_eq!(data, ["fra1.pops.example.test.", "192.0.2.111"]);
    assert_eq!(scope, 16, "the region decided");
    // Asked for the CNAME itself: not followed.
    let (_, data, _) = ask(
        &v,
        "edge.example.test.",
        RecordType::CNAME,
        ecs("10.1.2.0", 24, 0),
    );
    assert_eq!(data, ["fra1.pops.example.test."]);
    // No AAAA there: NODATA after the CNAME.
    let (rcode, data, _) = ask(
        &v,
        "edge.example.test.",
        RecordType::AAAA,
        ecs("198.51.100.0", 24, 0),
    );
    assert_eq!(
        (rcode, data),
        (
            ResponseCode::NoError,
            vec!["iad1.pops.example.test.".to_string()]
        )
    );
}

/// Deciding an answer records nothing: explain and other dry runs leave
/// the demand tally alone; the answer counts once it is sent.
#[test]
fn an_answer_counts_only_when_sent() {
    let eu = vec![target("fra1", 11), target("ams1", 12)];
    let p = plan(1, eu.clone(), eu);
    let nets = [ClientNetwork {
        prefix: "10.1.0.0/16".parse().unwrap(),
        region: RegionId::new("eu-west"),
    }];
    let tally = steer_types::answers::AnswerTally::default();
    let v = DnsView::compile_counted(&[zone()], &nets, &p, &settings(), &tally).unwrap();
    let total = |t: &steer_types::answers::AnswerTally| -> u64 {
        t.totals().0.iter().map(|(_, n)| n).sum()
    };
    let name = LowerName::new(&Name::from_str("app.example.test.").unwrap());
    let q = Question {
        name: &name,
        qtype: RecordType::A,
        qclass: DNSClass::IN,
    };
    let client = ecs("10.1.2.0", 24, 0);
    let a = answer(&v, &q, &client);
    assert!(!a.answers.is_empty());
    let e = steer_dns::explain(
        &v,
        &p,
        &steer_types::PlanEvidence::default(),
        &[],
        "app.example.test",
        "A",
        "10.1.2.0/24".parse().unwrap(),
    )
    .unwrap();
    assert!(!e.answers.is_empty());
    assert_eq!(total(&tally), 0, "decided and explained, not sent");
    a.record_served();
    assert_eq!(total(&tally), steer_types::answers::ANSWER_UNIT);
}

/// A change rolled out to a share of client subnets: about that share of
/// subnets get the canary's set, each subnet always the same one, the rest
/// the plan's; the ECS scope then covers the subnet (resolvers must not
/// share one answer across the split), even where the answer would not
/// otherwise depend on it.
#[test]
fn a_canary_by_client_subnets_takes_its_share_and_scopes_to_the_subnet() {
    let one = vec![target("fra1", 11)];
    let mut p = plan(1, one.clone(), one.clone());
    let canary_eu = AnswerSet {
        region: Some(RegionId::new("eu-west")),
        targets: vec![target("ams1", 12)],
        reason: steer_types::SetReason::default(),
    };
    for svc in &mut p.body.services {
        svc.canary = Some(steer_types::Canary {
            share_ppm: 250_000,
            regional: vec![Some(canary_eu.clone())],
            global: None,
        });
    }
    let v = view(&p);
    let mut canary = 0;
    for third in 0..=255u8 {
        for fourth in [0u8, 77, 200] {
            let client = ecs(&format!("10.1.{third}.{fourth}"), 24, u64::from(fourth));
            let (_, a, scope) = ask(&v, "app.example.test.", RecordType::A, client);
            // One answer per subnet, whatever host in it asks.
            let first = ask(
                &v,
                "app.example.test.",
                RecordType::A,
                ecs(&format!("10.1.{third}.0"), 24, 0),
            );
            assert_eq!(a, first.1, "10.1.{third}.{fourth}");
            assert_eq!(scope, 24);
            if fourth == 0 && a == ["192.0.2.12"] {
                canary += 1;
            }
        }
    }
    // 25% of 256 subnets: well inside 40..=90 unless the hash is biased.
    assert!((40..=90).contains(&canary), "{canary} of 256 in the canary");
    // Random selection follows the subnet's canary too.
    let (_, a, _) = ask(
        &v,
        "rnd.example.test.",
        RecordType::A,
        ecs("10.1.9.0", 24, 1),
    );
    let (_, b, _) = ask(
        &v,
        "rnd.example.test.",
        RecordType::A,
        ecs("10.1.9.0", 24, 99),
    );
    assert_eq!(a, b);
    // Unmapped clients keep the plan's global set (the canary has none).
    let (_, a, _) = ask(
        &v,
        "app.example.test.",
        RecordType::A,
        ecs("198.51.100.0", 24, 0),
    );
    assert_eq!(a, ["192.0.2.11"]);
    // Without the canary the answer does not depend on the subnet: scope 0.
    let v = view(&plan(2, one.clone(), one));
    let (_, _, scope) = ask(
        &v,
        "app.example.test.",
        RecordType::A,
        ecs("10.1.2.0", 24, 0),
    );
    assert_eq!(scope, 0);
}
