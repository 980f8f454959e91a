//! RFC 1034 zone semantics from the answer function and the UDP fast
//! path, without sockets: wildcards, empty non-terminals, referrals with
//! glue, DS at a cut, CNAME chains (loops, the cap, NXDOMAIN at the end),
//! additional data and what gives way when a response is too big. The
//! same cases against NSD and Knot: `crates/steer/tests/dns_differential.rs`.

#![allow(clippy::unwrap_used)]

mod fixture;

use hickory_server::proto::{
    op::{Message, ResponseCode},
    rr::{DNSClass, LowerName, Name, RecordType},
};
use steer_dns::{Answer, ClientInfo, DnsView, MAX_CNAME_CHAIN, Question, UdpOutcome, answer};
use steer_types::{Plan, PlanBody, RecordData, StaticRecord, Timestamp};

fn rec(name: &str, data: RecordData) -> StaticRecord {
    StaticRecord {
        name: format!("{name}.example.test."),
        ttl: 300,
        data,
    }
}

fn a(name: &str, last: u8) -> StaticRecord {
    rec(name, RecordData::A([192, 0, 2, last].into()))
}

fn cname(name: &str, target: &str) -> StaticRecord {
    rec(name, RecordData::Cname(format!("{target}.example.test.")))
}

fn view() -> DnsView {
    let mut records = vec![
        a("www", 1),
        a("*.wild", 2),
        rec("sub.wild", RecordData::Txt("exists".into())),
        a("host.ent.wild", 3),
        rec("deleg", RecordData::Ns("ns1.deleg.example.test.".into())),
        rec("deleg", RecordData::Ns("ns.elsewhere.example.".into())),
        a("ns1.deleg", 4),
        a("*.deleg", 5),
        rec(
            "mx",
            RecordData::Mx {
                preference: 10,
                exchange: "www.example.test.".into(),
            },
        ),
        cname("loop1", "loop2"),
        cname("loop2", "loop1"),
        cname("dangling", "nothere"),
        cname("towild", "x.wild"),
        rec("dn", RecordData::Dname("wild.example.test.".into())),
        rec("dnl1", RecordData::Dname("dnl2.example.test.".into())),
        rec("dnl2", RecordData::Dname("dnl1.example.test.".into())),
        rec(
            "dnlong",
            RecordData::Dname(format!(
                "{}.example.test.",
                ["a".repeat(63), "b".repeat(63), "c".repeat(50)].join(".")
            )),
        ),
    ];
    // c0 -> c1 -> ... -> c7 -> www
    for i in 0..8 {
        records.push(cname(&format!("c{i}"), &format!("c{}", i + 1)));
    }
    records.push(cname("c8", "www"));
    // Too many MX targets' addresses for 512 bytes.
    for i in 0..12u8 {
        let host = format!("host-with-name-{i}");
        records.push(rec(
            "manymx",
            RecordData::Mx {
                preference: u16::from(i),
                exchange: format!("{host}.example.test."),
            },
        ));
        records.push(a(&host, 100 + i));
    }
    let zone = fixture::zone(records);
    let plan = Plan {
        version: 1,
        computed_at: Timestamp::from_unix_ms(0),
        body: PlanBody {
            services: Vec::new(),
            pops: Vec::new(),
            regions: Vec::new(),
            announcements: Vec::new(),
            rails: Vec::new(),
        },
    };
    DnsView::compile(&[zone], &[], &plan, 1232).unwrap()
}

fn ask<'v>(view: &'v DnsView, name: &str, qtype: RecordType) -> (Answer<'v>, Name) {
    // `from_ascii` keeps the case (`from_str` goes through IDNA).
    let qname = Name::from_ascii(name).unwrap();
    let lower = LowerName::new(&qname);
    let q = Question {
        name: &lower,
        qtype,
        qclass: DNSClass::IN,
    };
    let client = ClientInfo::resolver([192, 0, 2, 9].into());
    (answer(view, &q, &client), qname)
}

/// (owner, type) of each answer record as sent.
fn answers(view: &DnsView, name: &str, qtype: RecordType) -> Vec<(String, RecordType)> {
    let (a, qname) = ask(view, name, qtype);
    a.records(&qname)
        .map(|r| (r.name.to_string(), r.record_type()))
        .collect()
}

#[test]
fn wildcards_synthesize_only_for_names_that_do_not_exist() {
    let v = view();
    let (a, _) = ask(&v, "foo.wild.example.test.", RecordType::A);
    assert_eq!((a.rcode, a.authoritative), (ResponseCode::NoError, true));
    assert_eq!(
        answers(&v, "Foo.Bar.wild.example.test.", RecordType::A),
        [("Foo.Bar.wild.example.test.".to_string(), RecordType::A)]
    );
    // Wildcard NODATA: the SOA.
    let (a, _) = ask(&v, "foo.wild.example.test.", RecordType::AAAA);
    assert!(a.answers.is_empty() && a.soa.is_some());
    assert_eq!(a.rcode, ResponseCode::NoError);
    // An existing name and an empty non-terminal block synthesis.
    for name in ["sub.wild.example.test.", "ent.wild.example.test."] {
        let (a, _) = ask(&v, name, RecordType::A);
        assert!(a.answers.is_empty() && a.soa.is_some(), "{name}");
        assert_eq!(a.rcode, ResponseCode::NoError, "{name}");
    }
    // Below them, no `*.sub.wild` or `*.ent.wild`: NXDOMAIN.
    for name in ["x.sub.wild.example.test.", "y.ent.wild.example.test."] {
        let (a, _) = ask(&v, name, RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NXDomain, "{name}");
    }
}

#[test]
fn names_at_or_below_a_cut_get_a_referral_with_glue() {
    let v = view();
    for (name, qtype) in [
        ("deleg.example.test.", RecordType::A),
        ("deleg.example.test.", RecordType::NS),
        ("ns1.deleg.example.test.", RecordType::A),
        ("www.deleg.example.test.", RecordType::A),
        ("x.y.deleg.example.test.", RecordType::DS),
    ] {
        let (a, _) = ask(&v, name, qtype);
        assert_eq!(a.rcode, ResponseCode::NoError, "{name}");
        assert!(!a.authoritative, "{name}: AA clear");
        assert!(a.answers.is_empty() && a.soa.is_none(), "{name}");
        assert_eq!(a.referral.len(), 2, "{name}");
        assert_eq!(a.additional.len(), 1, "{name}: glue");
        assert_eq!(a.additional[0].name.to_string(), "ns1.deleg.example.test.");
    }
    // DS at the cut is the parent's: authoritative NODATA.
    let (a, _) = ask(&v, "deleg.example.test.", RecordType::DS);
    assert!(a.authoritative && a.soa.is_some() && a.referral.is_empty());
}

#[test]
fn cname_chains_end_at_data_loops_the_cap_or_nxdomain() {
    let v = view();
    let got = answers(&v, "towild.example.test.", RecordType::A);
    assert_eq!(
        got,
        [
            ("towild.example.test.".to_string(), RecordType::CNAME),
            ("x.wild.example.test.".to_string(), RecordType::A),
        ]
    );
    assert_eq!(answers(&v, "loop1.example.test.", RecordType::A).len(), 2);
    let (a, _) = ask(&v, "dangling.example.test.", RecordType::A);
    assert_eq!((a.rcode, a.answers.len()), (ResponseCode::NXDomain, 1));
    // QTYPE=CNAME: the CNAME alone.
    assert_eq!(answers(&v, "c0.example.test.", RecordType::CNAME).len(), 1);
    // c4 -> ... -> c8 -> www: five CNAMEs and the address.
    assert_eq!(
        answers(&v, "c4.example.test.", RecordType::A).len(),
        MAX_CNAME_CHAIN + 1
    );
    // Longer chains stop after five CNAMEs.
    let got = answers(&v, "c0.example.test.", RecordType::A);
    assert_eq!(got.len(), MAX_CNAME_CHAIN);
    assert!(got.iter().all(|(_, t)| *t == RecordType::CNAME));
}

#[test]
fn dnames_redirect_the_names_below_them() {
    let v = view();
    // The DNAME, the CNAME it makes for the name as asked, then the
    // target's data (here a wildcard's, owned by the made name).
    let (a, qname) = ask(&v, "Www.Dn.example.test.", RecordType::A);
    let sent: Vec<String> = a
        .records(&qname)
        .map(|rec| format!("{} {} {}", rec.name, rec.record_type(), rec.data))
        .collect();
    assert_eq!((a.rcode, a.authoritative), (ResponseCode::NoError, true));
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(sent[0].starts_with("dn.example.test. DNAME"), "{sent:?}");
    assert_eq!(sent[1], "Www.Dn.example.test. CNAME www.wild.example.test.");
    assert_eq!(sent[2], "www.wild.example.test. A 192.0.2.2");
    // At the owner the DNAME is data like any other.
    assert_eq!(
        answers(&v, "dn.example.test.", RecordType::DNAME),
        [("dn.example.test.".to_string(), RecordType::DNAME)]
    );
    let (a, _) = ask(&v, "dn.example.test.", RecordType::A);
    assert!(a.answers.is_empty() && a.soa.is_some() && a.rcode == ResponseCode::NoError);
    // QTYPE=CNAME: the DNAME and the CNAME, not followed.
    let got = answers(&v, "x.dn.example.test.", RecordType::CNAME);
    assert_eq!(
        got[1],
        ("x.dn.example.test.".to_string(), RecordType::CNAME)
    );
    assert_eq!(got.len(), 2);
    // Two DNAMEs into each other: the chain ends where it closes.
    let (a, _) = ask(&v, "x.dnl1.example.test.", RecordType::A);
    assert_eq!(a.answers.len(), 4);
    assert_eq!(a.rcode, ResponseCode::NoError);
    // A substitution longer than 255 octets: YXDOMAIN with the DNAME.
    let long = format!("{}.dnlong.example.test.", "x".repeat(63));
    let (a, _) = ask(&v, &long, RecordType::A);
    assert_eq!((a.rcode, a.answers.len()), (ResponseCode::YXDomain, 1));
    // The fast writer leaves made names to hickory's encoder; the reply
    // decodes with the synthesized CNAME in it.
    let mut out = Vec::new();
    let q = query("www.dn.example.test.", 1);
    steer_dns::respond_udp(&v, &q, [192, 0, 2, 9].into(), 0, &mut out);
    let msg = Message::from_vec(&out).unwrap();
    let types: Vec<RecordType> = msg.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::DNAME, RecordType::CNAME, RecordType::A]);
}

fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0xab, 0xcd, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

#[test]
fn additional_data_gives_way_before_the_answer_does() {
    let v = view();
    let mut out = Vec::new();
    let src = [192, 0, 2, 9].into();
    // MX with its target's address.
    let q = query("mx.example.test", 15);
    assert_eq!(
        steer_dns::respond_udp(&v, &q, src, 0, &mut out),
        UdpOutcome::Reply
    );
    let m = Message::from_vec(&out).unwrap();
    assert_eq!((m.answers.len(), m.additionals.len()), (1, 1));
    assert_eq!(m.additionals[0].name.to_string(), "www.example.test.");

    // Twelve MX: the answer fits in 512 bytes, not all the addresses.
    let q = query("manymx.example.test", 15);
    steer_dns::respond_udp(&v, &q, src, 0, &mut out);
    assert!(out.len() <= 512);
    let m = Message::from_vec(&out).unwrap();
    assert!(
        !m.metadata.truncation,
        "TC only when the answer does not fit"
    );
    assert_eq!(m.answers.len(), 12);
    assert!(m.additionals.len() < 12, "{}", m.additionals.len());
    // Over TCP, everything.
    steer_dns::respond_tcp(&v, &q, src, 0, &mut out);
    let m = Message::from_vec(&out).unwrap();
    assert_eq!((m.answers.len(), m.additionals.len()), (12, 12));
}

/// A referral whose glue below the cut does not all fit is TC with what
/// fits (RFC 9471; Knot answers the same), the other RRsets still tried.
#[test]
fn referrals_missing_glue_below_the_cut_are_truncated() {
    let mut records = Vec::new();
    for i in 1..=8u8 {
        let ns = format!("ns-with-a-longish-name-{i}.mid");
        records.push(rec("mid", RecordData::Ns(format!("{ns}.example.test."))));
        records.push(a(&ns, i));
        records.push(rec(
            &ns,
            RecordData::Aaaa(format!("2001:db8::{i}").parse().unwrap()),
        ));
    }
    let plan = Plan {
        version: 1,
        computed_at: Timestamp::from_unix_ms(0),
        body: PlanBody {
            services: Vec::new(),
            pops: Vec::new(),
            regions: Vec::new(),
            announcements: Vec::new(),
            rails: Vec::new(),
        },
    };
    let v = DnsView::compile(&[fixture::zone(records)], &[], &plan, 1232).unwrap();
    let mut out = Vec::new();
    let q = query("x.mid.example.test", 1);
    steer_dns::respond_udp(&v, &q, [192, 0, 2, 9].into(), 0, &mut out);
    assert!(out.len() <= 512, "{}", out.len());
    let m = Message::from_vec(&out).unwrap();
    eprintln!("{} bytes, {} additional", out.len(), m.additionals.len());
    for r in &m.additionals {
        eprintln!("{r}");
    }
    assert_eq!(m.authorities.len(), 8);
    assert!(m.metadata.truncation, "TC: glue left out");
    assert!(!m.additionals.is_empty());
}
