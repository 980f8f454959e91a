//! `steer_dns::answer` on a view compiled from the quickstart config: the
//! per-query work of the DNS hot path, without sockets or wire encoding.
//! Each case checks its answer once before timing it, so a config change
//! that turns a case into something else fails loudly instead of silently
//! benchmarking the wrong path.

use std::{hint::black_box, net::IpAddr};

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_server::proto::{
    op::ResponseCode,
    rr::{DNSClass, LowerName, Name, RecordType},
};
use steer_dns::{ClientInfo, DnsView, Question, answer};
use steer_types::{Intents, Plan, Timestamp, health::HealthSnapshot};

fn quickstart_view() -> DnsView {
    let config = steer_config::load_steerd(&steer_benches::quickstart_path())
        .unwrap_or_else(|e| panic!("quickstart config does not load: {e}"));
    let body = steer_policy::compute(
        &config.topology,
        &HealthSnapshot::default(),
        &Intents::default(),
        Timestamp(0),
    );
    let plan = Plan {
        version: 1,
        computed_at: Timestamp(0),
        body,
    };
    DnsView::compile(
        &config.zones,
        &config.topology.client_networks,
        &plan,
        steer_dns::DEFAULT_UDP_PAYLOAD,
    )
    .unwrap_or_else(|e| panic!("quickstart view does not compile: {e}"))
}

fn name(s: &str) -> LowerName {
    LowerName::new(&Name::from_ascii(s).unwrap_or_else(|e| panic!("bad name {s}: {e}")))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("bad address {s}: {e}"))
}

struct Case {
    id: &'static str,
    name: LowerName,
    qtype: RecordType,
    client: ClientInfo,
    rcode: ResponseCode,
    answers: usize,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            // ECS 10.1.2.0/24 lies in eu-west's 10.1.0.0/16.
            id: "gslb_a_ecs_mapped",
            name: name("app.example.test."),
            qtype: RecordType::A,
            client: ClientInfo {
                addr: ip("10.1.2.0"),
                source_prefix: 24,
                from_ecs: true,
                random: 0,
            },
            rcode: ResponseCode::NoError,
            answers: 2,
        },
        Case {
            // A resolver outside every client network: global weights.
            id: "gslb_aaaa_unmapped",
            name: name("app.example.test."),
            qtype: RecordType::AAAA,
            client: ClientInfo::resolver(ip("2001:db8:99::53")),
            rcode: ResponseCode::NoError,
            answers: 2,
        },
        Case {
            id: "static_a",
            name: name("www.example.test."),
            qtype: RecordType::A,
            client: ClientInfo::resolver(ip("192.0.2.53")),
            rcode: ResponseCode::NoError,
            answers: 1,
        },
        Case {
            id: "nxdomain",
            name: name("nope.example.test."),
            qtype: RecordType::A,
            client: ClientInfo::resolver(ip("192.0.2.53")),
            rcode: ResponseCode::NXDomain,
            answers: 0,
        },
    ]
}

fn bench_answer(c: &mut Criterion) {
    let view = quickstart_view();
    let mut group = c.benchmark_group("dns_answer");
    for case in cases() {
        let q = Question {
            name: &case.name,
            qtype: case.qtype,
            qclass: DNSClass::IN,
        };
        let got = answer(&view, &q, &case.client);
        assert_eq!(got.rcode, case.rcode, "{}: rcode", case.id);
        assert_eq!(got.answers.len(), case.answers, "{}: answer count", case.id);
        group.bench_function(case.id, |b| {
            // Decided and recorded as sent, as the servers do.
            b.iter(|| {
                let a = answer(black_box(&view), black_box(&q), black_box(&case.client));
                a.record_served();
                a
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_answer);
criterion_main!(benches);
