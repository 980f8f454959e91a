//! RFC conformance of the authoritative DNS, through the real binary with
//! real clients (dig and kdig) and hand-built packets where the clients
//! cannot express the case (duplicate or broken OPT records).

#![allow(clippy::unwrap_used)]

mod common;

use std::{net::UdpSocket, path::PathBuf, time::Duration};

use common::*;

/// The quickstart config plus a name whose TXT RRset cannot fit in 512 or
/// 1232 bytes.
fn big_config(dir: &std::path::Path) -> PathBuf {
    let big: String = (0..12)
        .map(|i| {
            format!(
                "  {{ name = \"big\", type = \"TXT\", value = \"t{i:02}-{}\" }},\n",
                "x".repeat(200)
            )
        })
        .collect();
    let www = "  { name = \"www\", type = \"A\", value = \"192.0.2.80\" },\n";
    let text = std::fs::read_to_string(quickstart())
        .unwrap()
        .replace(www, &format!("{www}{big}"));
    let path = dir.join("steerd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start(name: &str) -> Steerd {
    let dir = temp_dir(name);
    Steerd::start_with(big_config(&dir), dir.join("state"))
}

/// The same server with UDP on the runtime (`udp_workers = 0`), not the
/// fast path's threads.
fn start_hickory_udp(name: &str) -> Steerd {
    let dir = temp_dir(name);
    let config = big_config(&dir);
    let text = std::fs::read_to_string(&config).unwrap() + "\n[dns]\nudp_workers = 0\n";
    std::fs::write(&config, text).unwrap();
    Steerd::start_with(config, dir.join("state"))
}

fn kdig(s: &Steerd, args: &[&str]) -> String {
    common::kdig(s.dns, args)
}

/// The header of a query for `name` (labels given as is, so case survives)
/// with one question of `qtype`/`qclass`, and `arcount` additional records.
fn query(id: u16, name: &str, qtype: u16, qclass: u16, arcount: u16) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0]);
    q.extend_from_slice(&arcount.to_be_bytes());
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&qclass.to_be_bytes());
    q
}

/// An OPT pseudo-record with the given RDATA.
fn opt(rdata: &[u8]) -> Vec<u8> {
    let mut o = vec![0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0];
    o.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    o.extend_from_slice(rdata);
    o
}

/// Sends one datagram and returns the reply, if any within two seconds.
fn exchange(port: u16, packet: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(packet, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

#[test]
fn flags_no_recursion_and_question_case_preserved() {
    let s = start("flags");
    let out = s.dig(&["WwW.ExAmPlE.TeSt", "A"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("flags: qr aa rd;"), "AA set, RA clear:\n{out}");
    assert!(out.contains(";WwW.ExAmPlE.TeSt.\t"), "case lost:\n{out}");
    assert!(out.contains("192.0.2.80"), "{out}");

    let out = kdig(&s, &["WwW.ExAmPlE.TeSt", "A", "+rec"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("Flags: qr aa rd;"), "AA set, RA clear:\n{out}");
    assert!(!out.contains("WARNING"), "{out}");

    // The question comes back byte for byte.
    let q = query(0x1234, "WwW.ExAmPlE.TeSt", 1, 1, 0);
    let reply = exchange(s.dns, &q).unwrap();
    assert_eq!(reply[..2], [0x12, 0x34]);
    assert_eq!(reply[12..q.len()], q[12..], "question changed");
    assert_eq!(reply[2] & 0x04, 0x04, "AA");
    assert_eq!(reply[3] & 0x80, 0, "RA must be clear");
}

#[test]
fn negative_answers_carry_the_soa_with_the_negative_ttl() {
    let s = start("negative-ttl");
    // RFC 2308: the SOA's TTL is min(SOA TTL, SOA minimum) = min(3600, 60).
    let soa_ttl_60 = |out: &str| {
        out.split("AUTHORITY SECTION:")
            .nth(1)
            .and_then(|a| a.lines().find(|l| l.contains("SOA")))
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("60"))
    };
    for (client, out) in [
        ("dig", s.dig(&["nope.example.test", "A"])),
        ("kdig", kdig(&s, &["nope.example.test", "A"])),
    ] {
        assert!(out.contains("NXDOMAIN"), "{client}:\n{out}");
        assert!(soa_ttl_60(&out), "{client}: negative TTL:\n{out}");
    }
    for (client, out) in [
        ("dig", s.dig(&["www.example.test", "MX"])),
        ("kdig", kdig(&s, &["www.example.test", "MX"])),
    ] {
        assert!(
            out.contains("NOERROR") && out.contains("ANSWER: 0"),
            "{client}:\n{out}"
        );
        assert!(soa_ttl_60(&out), "{client}: NODATA SOA:\n{out}");
    }
    let out = kdig(&s, &["example.com", "A"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    assert!(
        !out.contains("Flags: qr aa"),
        "no AA outside our zones:\n{out}"
    );
}

#[test]
fn edns_payload_badvers_and_malformed_opt() {
    let s = start("edns");
    let out = s.dig(&["www.example.test", "A", "+bufsize=4096"]);
    assert!(out.contains("udp: 1232"), "{out}");
    let out = kdig(&s, &["www.example.test", "A", "+bufsize=4096"]);
    assert!(out.contains("UDP size: 1232 B"), "{out}");
    // RFC 3225 3: DO is copied into the response, in an unsigned zone too.
    for name in ["www.example.test", "nope.example.test", "www.example.org"] {
        let out = s.dig(&[name, "A", "+dnssec", "+norec"]);
        assert!(
            out.contains("; EDNS: version: 0, flags: do; udp: 1232"),
            "{out}"
        );
        let out = s.dig(&[name, "A", "+dnssec", "+norec", "+tcp"]);
        assert!(out.contains("flags: do;"), "{out}");
    }
    let out = s.dig(&["www.example.test", "A"]);
    assert!(
        out.contains("; EDNS: version: 0, flags:; udp: 1232"),
        "{out}"
    );
    // The reply advertises our size, not an echo of a smaller one (RFC
    // 6891 6.2.3), and a size under 512 counts as 512 (6.2.5).
    let out = s.dig(&["www.example.test", "A", "+bufsize=512"]);
    assert!(out.contains("udp: 1232"), "{out}");
    let mut q = query(6, "www.example.test", 1, 1, 1);
    q.extend([0, 0, 41, 0, 100, 0, 0, 0, 0, 0, 0]);
    let reply = exchange(s.dns, &q).unwrap();
    assert_eq!(rcode(&reply), 0);
    let at = reply.len() - 11;
    assert_eq!(reply[at..at + 5], [0, 0, 41, 0x04, 0xd0], "OPT: {reply:?}");

    let out = kdig(&s, &["www.example.test", "A", "+edns=1"]);
    assert!(out.contains("status: BADVERS"), "{out}");
    assert!(
        out.contains("Version: 0;"),
        "must answer with version 0:\n{out}"
    );

    // RFC 6891 6.1.1: more than one OPT is FORMERR.
    let mut q = query(7, "www.example.test", 1, 1, 2);
    q.extend(opt(&[]));
    q.extend(opt(&[]));
    assert_eq!(rcode(&exchange(s.dns, &q).unwrap()), 1, "two OPTs");

    // An option whose length runs past the OPT RDATA.
    let mut q = query(8, "www.example.test", 1, 1, 1);
    q.extend(opt(&[0, 8, 0, 40, 0, 1]));
    assert_eq!(rcode(&exchange(s.dns, &q).unwrap()), 1, "overlong option");

    // A client subnet option that claims more bits than the address has.
    let mut q = query(9, "app.example.test", 1, 1, 1);
    q.extend(opt(&[0, 8, 0, 8, 0, 1, 33, 0, 10, 1, 0, 0]));
    assert_eq!(rcode(&exchange(s.dns, &q).unwrap()), 1, "bad ECS");

    // And the server still answers normally.
    assert_eq!(
        s.dig(&["www.example.test", "A", "+short"]).trim(),
        "192.0.2.80"
    );
}

#[test]
fn truncated_over_udp_and_complete_over_tcp() {
    let s = start("truncation");
    for extra in [&["+noedns"][..], &["+bufsize=1232"][..]] {
        let mut args = vec!["big.example.test", "TXT", "+ignore"];
        args.extend_from_slice(extra);
        let out = s.dig(&args);
        assert!(out.contains("flags: qr aa tc rd;"), "{extra:?}:\n{out}");
        // No partial RRset: the whole answer section is dropped.
        assert!(out.contains("ANSWER: 0,"), "{extra:?}:\n{out}");
        assert!(!out.contains("WARNING: Message has"), "{out}");
    }
    let out = s.dig(&["big.example.test", "TXT"]);
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains("ANSWER: 12,"), "{out}");
    let out = s.dig(&["big.example.test", "TXT", "+tcp"]);
    assert!(out.contains("ANSWER: 12,") && !out.contains(" tc"), "{out}");

    let out = kdig(&s, &["big.example.test", "TXT", "+ignore"]);
    assert!(out.contains("Flags: qr aa tc rd;"), "{out}");
    let out = kdig(&s, &["big.example.test", "TXT", "+tcp"]);
    assert!(out.contains("ANSWER: 12;"), "{out}");
    // A small answer still fits in a small buffer.
    let out = kdig(&s, &["www.example.test", "A", "+bufsize=512"]);
    assert!(out.contains("ANSWER: 1;") && !out.contains(" tc"), "{out}");
}

#[test]
fn any_is_answered_minimally() {
    let s = start("any");
    // RFC 8482: one RRset, not everything at the name.
    let out = s.dig(&["example.test", "ANY", "+notcp"]);
    assert!(
        out.contains("status: NOERROR") && out.contains("ANSWER: 1,"),
        "{out}"
    );
    let out = kdig(&s, &["example.test", "ANY"]);
    assert!(
        out.contains("status: NOERROR") && out.contains("ANSWER: 1;"),
        "{out}"
    );
    let out = kdig(&s, &["app.example.test", "ANY", "+subnet=10.1.0.0/24"]);
    assert!(
        out.contains("status: NOERROR") && out.contains(" aa"),
        "{out}"
    );
}

#[test]
fn chaos_identity_class_any_and_other_classes() {
    let s = start("classes");
    // CHAOS TXT: the version and the identity (the host name by default),
    // as NSD and Knot answer them (RFC 4892): class CH, TTL 0, no AA.
    for name in ["version.bind", "version.server"] {
        let out = s.dig(&["-c", "CH", "-t", "TXT", name]);
        assert!(out.contains("status: NOERROR"), "{name}:\n{out}");
        assert!(out.contains("flags: qr rd;"), "not authoritative:\n{out}");
        assert!(
            out.contains(&format!("{name}.\t\t0\tCH\tTXT\t\"Steer ")),
            "{name}:\n{out}"
        );
    }
    for name in ["id.server", "hostname.bind"] {
        let out = kdig(&s, &["-c", "CH", "-t", "TXT", name]);
        assert!(out.contains("status: NOERROR"), "{name}:\n{out}");
        assert!(out.contains("ANSWER: 1;"), "{name}:\n{out}");
    }
    // Any other CH question, and the other classes: REFUSED.
    let out = s.dig(&["-c", "CH", "-t", "A", "version.bind"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    for class in ["CH", "HS", "CLASS9"] {
        let out = s.dig(&["-c", class, "-t", "A", "www.example.test"]);
        assert!(out.contains("status: REFUSED"), "dig {class}:\n{out}");
        let out = s.dig(&["-c", class, "-t", "TXT", "authors.bind"]);
        assert!(out.contains("status: REFUSED"), "dig {class}:\n{out}");
    }
    let out = kdig(&s, &["-c", "CLASS4", "-t", "TXT", "version.bind"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    // QCLASS NONE (254).
    let reply = exchange(s.dns, &query(3, "www.example.test", 1, 254, 0)).unwrap();
    assert_eq!(rcode(&reply), 5, "class NONE");
    // QCLASS * (255): the zones' class IN data, authoritative, as Knot.
    let out = s.dig(&["-c", "ANY", "-t", "A", "www.example.test"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("flags: qr aa rd;"), "{out}");
    assert!(out.contains("IN\tA\t192.0.2.80"), "{out}");
    let out = s.dig(&["-c", "ANY", "-t", "A", "nope.example.test"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
}

#[test]
fn identity_version_and_nsid_follow_the_config() {
    let dir = temp_dir("identity");
    let config = big_config(&dir);
    let text = std::fs::read_to_string(&config).unwrap()
        + "\n[dns]\nidentity = \"edge-test-1\"\nversion = \"\"\nnsid = \"edge-test-1\"\n";
    std::fs::write(&config, text).unwrap();
    let s = Steerd::start_with(config, dir.join("state"));
    let out = s.dig(&["-c", "CH", "-t", "TXT", "id.server", "+short"]);
    assert_eq!(out.trim(), "\"edge-test-1\"");
    // An empty version hides it.
    let out = s.dig(&["-c", "CH", "-t", "TXT", "version.bind"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    // NSID (RFC 5001): sent to queries that ask, over UDP and TCP, and
    // only to them.
    for transport in ["+notcp", "+tcp"] {
        let out = kdig(&s, &["www.example.test", "A", "+nsid", transport]);
        assert!(
            out.contains("NSID: 656467652D746573742D31 \"edge-test-1\""),
            "{out}"
        );
        assert!(out.contains("192.0.2.80"), "{out}");
    }
    let out = s.dig(&["app.example.test", "A", "+nsid", "+subnet=10.1.0.0/24"]);
    assert!(out.contains("NSID: 65 64 67 65"), "{out}");
    assert!(out.contains("CLIENT-SUBNET: 10.1.0.0/24/16"), "{out}");
    let out = kdig(&s, &["www.example.test", "A"]);
    assert!(!out.contains("NSID"), "{out}");
}

#[test]
fn zone_transfers_are_refused_and_foreign_names_say_why() {
    let s = start("transfers");
    // AXFR over UDP is not a thing (RFC 5936 4.2): NOTIMP, as NSD and Knot.
    let reply = exchange(s.dns, &query(4, "example.test", 252, 1, 0)).unwrap();
    assert_eq!(rcode(&reply), 4, "AXFR over UDP");
    // No transfers are offered: REFUSED over TCP, and IXFR either way.
    let out = s.dig(&["example.test", "AXFR", "+comments"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    assert!(out.contains("Transfer failed"), "{out}");
    for transport in ["+tcp", "+notcp"] {
        let out = s.dig(&["example.test", "IXFR=1", transport, "+norec", "+comments"]);
        assert!(out.contains("status: REFUSED"), "{transport}:\n{out}");
    }
    // A name outside every zone: REFUSED with Extended DNS Error 20 (Not
    // Authoritative, RFC 8914) when the query has EDNS, as NSD and Knot.
    for transport in ["+notcp", "+tcp"] {
        let out = s.dig(&["www.example.org", "A", transport]);
        assert!(out.contains("status: REFUSED"), "{out}");
        assert!(out.contains("EDE: 20 (Not Authoritative)"), "{out}");
    }
    let out = s.dig(&["www.example.org", "A", "+subnet=10.1.0.0/24"]);
    assert!(out.contains("EDE: 20 (Not Authoritative)"), "{out}");
    let out = s.dig(&["www.example.org", "A", "+noedns"]);
    assert!(
        out.contains("status: REFUSED") && !out.contains("EDE"),
        "{out}"
    );
}

#[test]
fn cookies_are_ignored_safely() {
    let s = start("cookies");
    let out = s.dig(&["www.example.test", "A", "+cookie"]);
    assert!(
        out.contains("status: NOERROR") && out.contains("192.0.2.80"),
        "{out}"
    );
    assert!(!out.contains("WARNING: invalid"), "{out}");
    let out = kdig(&s, &["www.example.test", "A", "+cookie"]);
    assert!(
        out.contains("status: NOERROR") && out.contains("192.0.2.80"),
        "{out}"
    );
    // A cookie of an impossible length (RFC 7873: 8, or 16 to 40 bytes).
    let out = s.dig(&["www.example.test", "A", "+ednsopt=10:0102"]);
    assert!(
        out.contains("status: NOERROR") || out.contains("status: FORMERR"),
        "{out}"
    );
    let out = kdig(
        &s,
        &[
            "www.example.test",
            "A",
            "+cookie=0102030405060708aabbccddeeff0011",
        ],
    );
    assert!(out.contains("status: NOERROR"), "{out}");
    assert_eq!(
        s.dig(&["www.example.test", "A", "+short"]).trim(),
        "192.0.2.80"
    );
}

#[test]
fn other_opcodes_are_not_implemented() {
    let s = start("opcodes");
    let out = s.dig(&["example.test", "SOA", "+opcode=notify"]);
    assert!(out.contains("status: NOTIMP"), "{out}");
    let out = s.dig(&["example.test", "SOA", "+opcode=update"]);
    assert!(out.contains("status: NOTIMP"), "{out}");
}

#[test]
fn hickory_udp_loop_behaves_the_same() {
    let s = start_hickory_udp("hickory-udp");
    let out = s.dig(&["WwW.ExAmPlE.TeSt", "A"]);
    assert!(
        out.contains(";WwW.ExAmPlE.TeSt.\t") && out.contains("flags: qr aa rd;"),
        "{out}"
    );
    let out = s.dig(&["big.example.test", "TXT", "+ignore", "+noedns"]);
    assert!(
        out.contains("flags: qr aa tc rd;") && out.contains("ANSWER: 0,"),
        "{out}"
    );
    assert!(!out.contains("WARNING: Message has"), "{out}");
    let out = kdig(&s, &["big.example.test", "TXT"]);
    assert!(out.contains("ANSWER: 12;"), "{out}");
    let mut q = query(7, "www.example.test", 1, 1, 2);
    q.extend(opt(&[]));
    q.extend(opt(&[]));
    assert_eq!(rcode(&exchange(s.dns, &q).unwrap()), 1, "two OPTs");
    let out = kdig(&s, &["-c", "CH", "-t", "TXT", "version.bind"]);
    assert!(
        out.contains("status: NOERROR") && out.contains("Steer "),
        "{out}"
    );
    let out = s.dig(&["www.example.org", "A"]);
    assert!(out.contains("EDE: 20 (Not Authoritative)"), "{out}");
    let reply = exchange(s.dns, &query(4, "example.test", 252, 1, 0)).unwrap();
    assert_eq!(rcode(&reply), 4, "AXFR over UDP");
}
