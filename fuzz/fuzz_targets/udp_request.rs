//! Fuzzes the whole UDP request path: hickory-proto parsing, EDNS/ECS
//! handling, the answer function and response encoding. It must never
//! panic, and every reply must carry the query's ID.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use steer_dns::{DnsView, UdpOutcome, respond_udp};
use steer_types::{
    AnswerSet, ClientNetwork, Plan, PlanBody, PopId, RecordData, ServiceId, ServicePlan, Soa,
    StaticRecord, Timestamp, WeightedTarget, Zone,
};

fn view() -> &'static DnsView {
    static VIEW: OnceLock<DnsView> = OnceLock::new();
    VIEW.get_or_init(|| {
        let zone = Zone {
            origin: "example.test.".into(),
            soa: Soa {
                mname: "ns1.example.test.".into(),
                rname: "hostmaster.example.test.".into(),
                serial: 1,
                refresh: 3600,
                retry: 600,
                expire: 604_800,
                minimum: 60,
            },
            soa_ttl: 3600,
            ns: vec!["ns1.example.test.".into()],
            ns_ttl: 3600,
            records: (0..20)
                .map(|i| StaticRecord {
                    name: "big.example.test.".into(),
                    ttl: 60,
                    data: RecordData::Txt(format!("{i}-{}", "x".repeat(200))),
                })
                .collect(),
        };
        let target = |pop: &str, n: u8| WeightedTarget {
            pop: PopId::new(pop),
            weight: 500,
            ipv4: Some([192, 0, 2, n].into()),
            ipv6: Some(
                format!("2001:db8::{n}")
                    .parse()
                    .unwrap_or(std::net::Ipv6Addr::LOCALHOST),
            ),
        };
        let set = AnswerSet {
            region: None,
            targets: vec![target("a", 1), target("b", 2), target("c", 3)],
            reason: String::new(),
        };
        let plan = Plan {
            version: 1,
            computed_at: Timestamp::from_unix_ms(0),
            body: PlanBody {
                services: vec![ServicePlan {
                    id: ServiceId::new("app"),
                    fqdn: "app.example.test.".into(),
                    ttl: 30,
                    max_records: 2,
                    regional: Vec::new(),
                    global: set,
                }],
                pops: Vec::new(),
                regions: Vec::new(),
                announcements: Vec::new(),
            },
        };
        let nets: [ClientNetwork; 0] = [];
        match DnsView::compile(&[zone], &nets, &plan, 1232) {
            Ok(v) => v,
            Err(e) => panic!("fixture: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let src = std::net::IpAddr::from([192, 0, 2, 7]);
    if respond_udp(view(), data, src, 42, &mut out) == UdpOutcome::Reply {
        assert!(out.len() >= 12);
        assert_eq!(out[..2], data[..2]);
    }
});
