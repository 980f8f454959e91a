//! The fuzz target's property, run in CI with proptest: the UDP request
//! path never panics on any bytes, answers with the query's ID, and never
//! sends a UDP reply larger than the client allowed. TCP answers through
//! the same pipeline: the same reply whenever UDP's was not truncated.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use steer_dns::{DnsView, UdpOutcome, respond_tcp, respond_udp, respond_udp_general};

mod fixture;

use fixture::view;

/// The fixture's view with `example.test.` signed (a key generated into a
/// directory removed once it is loaded), shared by every case so its
/// signature cache is warm as a server's is.
fn signed_view() -> &'static DnsView {
    use std::sync::{Arc, LazyLock};
    use steer_types::{DnsSettings, DnssecZone};
    static VIEW: LazyLock<Arc<DnsView>> = LazyLock::new(|| {
        let (zone, plan) = fixture::zone_and_plan();
        let dir = std::env::temp_dir().join(format!("steer-dns-respond-{}", std::process::id()));
        let settings = DnsSettings {
            udp_payload: 1232,
            dnssec: vec![DnssecZone {
                origin: "example.test.".into(),
                key_dir: dir.clone(),
            }],
            ..DnsSettings::default()
        };
        let inputs = steer_dns::ViewInputs {
            zones: vec![zone],
            client_networks: Vec::new(),
            settings,
        };
        let publisher = steer_dns::ViewPublisher::new(inputs, Arc::new(plan)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        publisher.view().load_full()
    });
    &VIEW
}

/// Sets the DO bit of a query made by [`query`] with EDNS.
fn set_do(q: &mut [u8]) {
    let mut i = 12;
    while q[i] != 0 {
        i += 1 + usize::from(q[i]);
    }
    // The name's root label, type and class; then the OPT's owner, type,
    // class and extended rcode and version: the flags' first byte.
    q[i + 1 + 4 + 7] |= 0x80;
}

fn query(name: &str, qtype: u16, edns: Option<(u16, Vec<u8>)>) -> Vec<u8> {
    let mut q = vec![
        0xab,
        0xcd,
        1,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(edns.is_some()),
    ];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some((size, rdata)) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, 0, 0]);
        q.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        q.extend_from_slice(&rdata);
    }
    q
}

fn check(view: &DnsView, packet: &[u8]) {
    let mut out = Vec::new();
    let outcome = respond_udp(view, packet, [192, 0, 2, 9].into(), 7, &mut out);
    // The plain-query reader and the general path give the same reply.
    let mut general = Vec::new();
    let general_outcome = respond_udp_general(view, packet, [192, 0, 2, 9].into(), 7, &mut general);
    assert_eq!(
        (outcome, &out),
        (general_outcome, &general),
        "plain and general paths differ for {packet:?}"
    );
    if outcome == UdpOutcome::Reply {
        assert!(out.len() >= 12);
        assert_eq!(out[..2], packet[..2], "reply ID");
        assert_ne!(out[2] & 0x80, 0, "QR set");
        assert!(out.len() <= 1232, "{} bytes", out.len());
        // Every reply is a well-formed message.
        let reply = hickory_server::proto::op::Message::from_vec(&out);
        assert!(reply.is_ok(), "undecodable reply {out:?}: {reply:?}");
    }
    let mut tcp = Vec::new();
    let tcp_outcome = respond_tcp(view, packet, [192, 0, 2, 9].into(), 7, &mut tcp);
    // AXFR is the one question the transports answer differently: NOTIMP
    // over UDP (RFC 5936 4.2), REFUSED over TCP.
    let axfr = hickory_server::proto::op::Message::from_vec(packet).is_ok_and(|m| {
        m.queries
            .iter()
            .any(|q| q.query_type() == hickory_server::proto::rr::RecordType::AXFR)
    });
    if !out.is_empty() && out[2] & 0x02 == 0 && !axfr {
        assert_eq!(tcp_outcome, UdpOutcome::Reply);
        assert_eq!(tcp, out, "TCP and UDP differ for {packet:?}");
    }
}

#[test]
fn pre_encoded_replies_decode_to_the_right_answer() {
    use hickory_server::proto::{
        op::{Message, ResponseCode},
        rr::{
            RData,
            rdata::opt::{EdnsCode, EdnsOption},
        },
    };
    let v = view();
    let mut out = Vec::new();
    // GSLB with ECS 10.1.2.0/24 and a mixed-case name.
    let ecs = vec![0, 8, 0, 7, 0, 1, 24, 0, 10, 1, 2];
    let q = query("ApP.example.TEST", 1, Some((4096, ecs)));
    assert_eq!(
        respond_udp(&v, &q, [192, 0, 2, 9].into(), 0, &mut out),
        UdpOutcome::Reply
    );
    let m = Message::from_vec(&out).unwrap();
    assert_eq!(m.metadata.id, 0xabcd);
    assert!(m.metadata.authoritative && !m.metadata.recursion_available);
    assert_eq!(m.queries[0].name().to_string(), "ApP.example.TEST.");
    assert_eq!(m.answers.len(), 2);
    assert!(
        m.answers
            .iter()
            .all(|r| matches!(r.data, RData::A(_)) && r.ttl == 30)
    );
    assert!(
        m.answers
            .iter()
            .all(|r| r.name.to_string().eq_ignore_ascii_case("app.example.test."))
    );
    let edns = m.edns.unwrap();
    assert_eq!(edns.max_payload(), 1232);
    match edns.option(EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(cs)) => {
            assert_eq!(cs.addr().to_string(), "10.1.2.0");
            assert_eq!((cs.source_prefix(), cs.scope_prefix()), (24, 24));
        }
        other => panic!("no ECS echoed: {other:?}"),
    }
    // NXDOMAIN with the SOA (negative TTL) and no EDNS.
    let q = query("nope.example.test", 1, None);
    assert_eq!(
        respond_udp(&v, &q, [192, 0, 2, 9].into(), 0, &mut out),
        UdpOutcome::Reply
    );
    let m = Message::from_vec(&out).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.edns.is_none() && m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].ttl, 60);
    assert!(matches!(m.authorities[0].data, RData::SOA(_)));
    assert_eq!(m.authorities[0].name.to_string(), "example.test.");
}

/// RFC 7871 6 and 7.2.1: a Client Subnet with address bits past its
/// prefix, a scope, the wrong number of address octets, or an unknown
/// family is refused with FORMERR, as gdnsd does: the question and an OPT
/// (our payload size, DO copied) come back, no subnet is echoed, and
/// every path and transport says the same.
#[test]
fn a_malformed_client_subnet_is_formerr_with_the_question_and_opt() {
    use hickory_server::proto::{
        op::{Message, ResponseCode},
        rr::rdata::opt::EdnsCode,
    };
    let v = view();
    let ask = |ecs: Vec<u8>, dnssec_ok: bool| {
        let mut q = query("app.example.test", 1, Some((4096, ecs)));
        if dnssec_ok {
            set_do(&mut q);
        }
        let mut out = Vec::new();
        assert_eq!(
            respond_udp(&v, &q, [192, 0, 2, 9].into(), 0, &mut out),
            UdpOutcome::Reply
        );
        check(&v, &q);
        Message::from_vec(&out).unwrap()
    };
    for subnet in 0..32u8 {
        let clean = ask(vec![0, 8, 0, 7, 0, 1, 23, 0, 10, 1, subnet & 0xfe], false);
        assert_eq!(clean.metadata.response_code, ResponseCode::NoError);
        let dirty = ask(
            vec![0, 8, 0, 7, 0, 1, 23, 0, 10, 1, subnet | 1],
            subnet % 2 == 0,
        );
        assert_eq!(
            dirty.metadata.response_code,
            ResponseCode::FormErr,
            "10.1.{subnet}.1/23"
        );
        assert_eq!(dirty.queries.len(), 1);
        assert!(dirty.answers.is_empty());
        let edns = dirty.edns.as_ref().expect("OPT in the FORMERR");
        assert_eq!(edns.max_payload(), 1232);
        assert_eq!(edns.flags().dnssec_ok, subnet % 2 == 0);
        assert!(edns.option(EdnsCode::Subnet).is_none());
    }
    for ecs in [
        vec![0, 8, 0, 11, 0, 2, 52, 0, 0x20, 1, 0x0d, 0xb8, 0, 1, 0xff],
        vec![0, 8, 0, 7, 0, 1, 24, 8, 10, 1, 2],
        vec![0, 8, 0, 6, 0, 1, 24, 0, 10, 1],
        vec![0, 8, 0, 8, 0, 1, 8, 0, 10, 0, 0, 0],
        vec![0, 8, 0, 7, 0, 3, 24, 0, 10, 1, 2],
    ] {
        let m = ask(ecs.clone(), false);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "{ecs:?}");
        assert!(m.edns.is_some(), "{ecs:?}");
    }
}

#[test]
fn signed_answers_carry_their_rrsigs_as_the_general_path_sends_them() {
    use hickory_server::proto::{op::Message, rr::RecordType};
    let v = signed_view();
    let ecs = vec![0, 8, 0, 7, 0, 1, 24, 0, 10, 1, 2];
    for (name, qtype, records) in [
        ("ApP.example.test", 1, 2),
        ("app.example.test", 1, 2),
        ("mx.example.test", 15, 1),
        ("example.test", 2, 1),
    ] {
        let mut q = query(name, qtype, Some((1232, ecs.clone())));
        set_do(&mut q);
        check(v, &q);
        let mut out = Vec::new();
        assert_eq!(
            respond_udp(v, &q, [192, 0, 2, 9].into(), 0, &mut out),
            UdpOutcome::Reply
        );
        let m = Message::from_vec(&out).unwrap();
        let sigs = m
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::RRSIG)
            .count();
        assert_eq!((m.answers.len() - sigs, sigs), (records, 1), "{name}");
        assert!(m.edns.unwrap().flags().dnssec_ok, "DO echoed");
        // Without DO: no signatures.
        let q = query(name, qtype, Some((1232, ecs.clone())));
        respond_udp(v, &q, [192, 0, 2, 9].into(), 0, &mut out);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.answers.len(), records, "{name} unsigned");
    }
}

#[test]
fn big_answers_fit_or_truncate() {
    let v = view();
    for edns in [None, Some((512, vec![])), Some((4096, vec![]))] {
        let limit = edns
            .as_ref()
            .map_or(512, |(s, _)| usize::from((*s).clamp(512, 1232)));
        let q = query("big.example.test", 16, edns);
        let mut out = Vec::new();
        assert_eq!(
            respond_udp(&v, &q, [192, 0, 2, 9].into(), 0, &mut out),
            UdpOutcome::Reply
        );
        assert!(out.len() <= limit);
        assert_ne!(out[2] & 0x02, 0, "TC");
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), 0, "no partial RRset");
        // Over TCP the whole RRset.
        assert_eq!(
            respond_tcp(&v, &q, [192, 0, 2, 9].into(), 0, &mut out),
            UdpOutcome::Reply
        );
        assert_eq!(out[2] & 0x02, 0, "TC over TCP");
        assert!(u16::from_be_bytes([out[6], out[7]]) > 0);
    }
}

/// Fuzzing in CI (issue 11, item 10): 100,000 cases per property unless
/// `STEER_FUZZ_CASES` says otherwise; each case runs both transports.
fn cases() -> u32 {
    std::env::var("STEER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// What resolvers send, with every ECS and header variation near the
    /// plain shape: both paths must agree (through `check`).
    #[test]
    fn plain_queries_answer_as_the_general_path(
        name in prop_oneof![
            Just("app.example.test"), Just("APP.Example.TEST"), Just("big.example.test"),
            Just("x.example.test"), Just("example.com"), Just("a.b.wild.example.test"),
            Just("x.deleg.example.test"), Just("alias.example.test"), Just("mx.example.test"),
            // Names that do not exist, denied from the name index or not:
            // below a steered name, an alias, glue, an empty non-terminal
            // with a wildcard child, two labels down, another zone.
            Just("x.app.example.test"), Just("X.Alias.example.test"), Just("x.ns.deleg.example.test"),
            Just("wild.example.test"), Just("x.y.example.test"), Just("x.example.com"),
            // CHAOS names (asked in every class).
            Just("version.bind"), Just("ID.Server"),
        ],
        qtype in prop_oneof![Just(1u16), Just(28), Just(15), Just(16), Just(6), Just(2), Just(255), Just(252), Just(251), any::<u16>()],
        qclass in prop_oneof![Just(1u16), Just(1), Just(1), Just(3), Just(255), any::<u16>()],
        flags in any::<u8>(),
        size in any::<u16>(),
        family in prop_oneof![Just(1u16), Just(2), Just(3)],
        source in 0u8..=130,
        scope in prop_oneof![Just(0u8), Just(0), Just(24)],
        address in proptest::collection::vec(any::<u8>(), 17),
        slack in prop_oneof![Just(0i8), Just(0), Just(-1), Just(1)],
        edns in any::<bool>(),
        dnssec_ok in any::<bool>(),
        signed in any::<bool>(),
    ) {
        let want = usize::from(source).div_ceil(8);
        let len = (want as isize + isize::from(slack)).clamp(0, 17) as usize;
        let mut ecs = vec![0, 8, 0, (4 + len) as u8];
        ecs.extend_from_slice(&family.to_be_bytes());
        ecs.extend_from_slice(&[source, scope]);
        ecs.extend_from_slice(&address[..len]);
        let mut q = query(name, qtype, edns.then_some((size, ecs)));
        let class_at = 12 + name.len() + 2 + 2;
        q[class_at..class_at + 2].copy_from_slice(&qclass.to_be_bytes());
        // RD, CD, AD and the Z bit as resolvers (and others) set them.
        q[2] |= flags & 0x01;
        q[3] |= flags & 0x70;
        if edns && dnssec_ok {
            set_do(&mut q);
        }
        if signed {
            check(signed_view(), &q);
        } else {
            check(&view(), &q);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        check(&view(), &bytes);
    }

    #[test]
    fn mutated_queries_never_panic(
        name in prop_oneof![
            Just("app.example.test"), Just("big.example.test"), Just("x.example.test"),
            Just("example.com"), Just("a.b.wild.example.test"), Just("x.deleg.example.test"),
            Just("loop1.example.test"), Just("alias.example.test"), Just("mx.example.test"),
        ],
        qtype in any::<u16>(),
        size in any::<u16>(),
        opt in proptest::collection::vec(any::<u8>(), 0..40),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let mut q = query(name, qtype, Some((size, opt)));
        for (at, bits) in flips {
            let i = at % q.len();
            q[i] ^= bits;
        }
        q.truncate(12.max(cut % (q.len() + 1)));
        check(&view(), &q);
    }
}
