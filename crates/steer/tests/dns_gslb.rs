//! GSLB answers through the real binary: sticky per subnet across 1,000
//! queries and moved only when the plan changes, ECS scope equal to what
//! the decision depended on, random selection, CNAME-style names.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeSet, net::UdpSocket, path::PathBuf, time::Duration};

use common::*;

const EXTRA_SERVICES: &str = r#"
[[services]]
id = "rnd"
name = "rnd.example.test."
ttl = 30
max_records = 1
selection = "random"
fallback = ["192.0.2.99"]
pops = ["fra1", "ams1", "iad1", "ord1", "sin1", "bom1"]

[[services]]
id = "edge"
name = "edge.example.test."
ttl = 60
max_records = 1
cname = "{region}.cdn.example.net."
pops = ["fra1", "ams1", "iad1", "ord1", "sin1", "bom1"]
"#;

fn start(name: &str) -> Steerd {
    let dir = temp_dir(name);
    let text = std::fs::read_to_string(quickstart()).unwrap() + EXTRA_SERVICES;
    let path: PathBuf = dir.join("steerd.toml");
    std::fs::write(&path, text).unwrap();
    Steerd::start_with(path, dir.join("state"))
}

/// A query for app.example.test A with ECS `addr/prefix` (IPv4).
fn ecs_query(id: u16, name: &str, addr: [u8; 4], prefix: u8) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let bytes = usize::from(prefix).div_ceil(8);
    let opt_len = 4 + 4 + bytes as u16;
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    q.extend_from_slice(&opt_len.to_be_bytes());
    q.extend_from_slice(&[0, 8]);
    q.extend_from_slice(&(4 + bytes as u16).to_be_bytes());
    q.extend_from_slice(&[0, 1, prefix, 0]);
    q.extend_from_slice(&addr[..bytes]);
    q
}

fn skip_name(m: &[u8], mut i: usize) -> usize {
    loop {
        let len = m[i];
        if len & 0xc0 == 0xc0 {
            return i + 2;
        }
        if len == 0 {
            return i + 1;
        }
        i += 1 + usize::from(len);
    }
}

/// The A records of a reply, sorted.
fn a_records(m: &[u8]) -> BTreeSet<[u8; 4]> {
    let ancount = u16::from_be_bytes([m[6], m[7]]);
    let mut i = skip_name(m, 12) + 4;
    let mut out = BTreeSet::new();
    for _ in 0..ancount {
        i = skip_name(m, i);
        let rtype = u16::from_be_bytes([m[i], m[i + 1]]);
        let rdlen = usize::from(u16::from_be_bytes([m[i + 8], m[i + 9]]));
        i += 10;
        if rtype == 1 {
            out.insert([m[i], m[i + 1], m[i + 2], m[i + 3]]);
        }
        i += rdlen;
    }
    out
}

struct Client {
    sock: UdpSocket,
    port: u16,
    id: u16,
}

impl Client {
    fn new(port: u16) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        Self { sock, port, id: 0 }
    }

    fn ask(&mut self, addr: [u8; 4], prefix: u8) -> BTreeSet<[u8; 4]> {
        self.id = self.id.wrapping_add(1);
        // The subnet as resolvers send it: address bits past the prefix
        // cleared (RFC 7871 6; others are refused with FORMERR).
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let addr = (u32::from_be_bytes(addr) & mask).to_be_bytes();
        let q = ecs_query(self.id, "app.example.test", addr, prefix);
        self.sock.send_to(&q, ("127.0.0.1", self.port)).unwrap();
        let mut buf = [0u8; 1500];
        loop {
            let (n, _) = self.sock.recv_from(&mut buf).expect("reply");
            if buf[..2] == self.id.to_be_bytes() {
                return a_records(&buf[..n]);
            }
        }
    }

    /// The answer every host of `net.0/24` gets over 1,000 queries, if
    /// they all agree.
    fn sticky_answer(&mut self, net: [u8; 3]) -> BTreeSet<[u8; 4]> {
        let first = self.ask([net[0], net[1], net[2], 0], 24);
        assert_eq!(first.len(), 2, "{first:?}");
        for i in 0..1000u32 {
            let host = (i % 256) as u8;
            let prefix = if i % 2 == 0 { 32 } else { 24 + (i % 8) as u8 };
            let got = self.ask([net[0], net[1], net[2], host], prefix);
            assert_eq!(got, first, "query {i} from {net:?}.{host}/{prefix} moved");
        }
        first
    }
}

#[test]
fn sticky_for_a_subnet_across_1000_queries_and_moved_only_by_a_plan_change() {
    let s = start("sticky");
    let mut c = Client::new(s.dns);
    // Unmapped clients are hashed over all six PoPs (two records each).
    let before: Vec<([u8; 3], BTreeSet<[u8; 4]>)> = (0..16u8)
        .map(|n| ([198, 51, n], c.sticky_answer([198, 51, n])))
        .collect();
    let fra1 = [192, 0, 2, 11];
    let (with_fra1, _) = before
        .iter()
        .find(|(_, a)| a.contains(&fra1))
        .expect("some /24 answered with fra1");
    let (without, kept) = before
        .iter()
        .find(|(_, a)| !a.contains(&fra1))
        .expect("some /24 answered without fra1");

    let out = s.steerctl(&["drain", "pop", "fra1", "--reason", "sticky test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let moved = poll(Duration::from_secs(3), || {
        let a = c.ask([with_fra1[0], with_fra1[1], with_fra1[2], 1], 32);
        (!a.contains(&fra1)).then_some(a)
    });
    assert!(
        moved.is_some(),
        "answer did not change after the plan changed"
    );
    // The new answer is sticky again, and clients that never had fra1 kept
    // theirs (rendezvous hashing moves only what it must).
    let after = c.sticky_answer(*with_fra1);
    assert!(!after.contains(&fra1));
    assert_eq!(&c.sticky_answer(*without), kept);
}

#[test]
fn ecs_scope_is_what_the_answer_depended_on() {
    let s = start("scope");
    // EU clients: two EU PoPs, both answered: depends on the /16 mapping only.
    for (tool, out) in [
        (
            "dig",
            s.dig(&["app.example.test", "A", "+subnet=10.1.2.0/24"]),
        ),
        (
            "kdig",
            kdig(s.dns, &["app.example.test", "A", "+subnet=10.1.2.0/24"]),
        ),
    ] {
        assert!(out.contains("10.1.2.0/24/16"), "{tool}:\n{out}");
    }
    // Unmapped clients are hashed per /24 over six PoPs: scope 24.
    let out = s.dig(&["app.example.test", "A", "+subnet=198.51.100.0/24"]);
    assert!(out.contains("198.51.100.0/24/24"), "{out}");
    // Random selection depends on the region mapping only.
    let out = kdig(s.dns, &["rnd.example.test", "A", "+subnet=10.2.3.0/24"]);
    assert!(out.contains("10.2.3.0/24/16"), "{out}");
    // Static data is the same for everyone: scope 0.
    let out = s.dig(&["www.example.test", "A", "+subnet=10.1.2.0/24"]);
    assert!(out.contains("10.1.2.0/24/0"), "{out}");
}

#[test]
fn random_selection_and_cname_style_names() {
    let s = start("random-cname");
    let mut seen = BTreeSet::new();
    let spread = poll(Duration::from_secs(10), || {
        let a = s.answers("rnd.example.test", "A", "10.1.2.0/24");
        assert_eq!(a.len(), 1, "{a:?}");
        seen.extend(a);
        (seen.len() == 2).then_some(())
    });
    assert!(spread.is_some(), "random never changed: {seen:?}");
    assert!(
        seen.iter().all(|a| a == "192.0.2.11" || a == "192.0.2.12"),
        "{seen:?}"
    );

    let out = s.dig(&["edge.example.test", "A", "+subnet=10.3.0.0/24"]);
    assert!(
        out.contains("status: NOERROR") && out.contains(" aa"),
        "{out}"
    );
    assert!(
        out.contains("edge.example.test.\t60\tIN\tCNAME\tap-south.cdn.example.net."),
        "{out}"
    );
    let out = kdig(
        s.dns,
        &["edge.example.test", "AAAA", "+subnet=10.1.0.0/24", "+short"],
    );
    assert_eq!(out.trim(), "eu-west.cdn.example.net.");
}

#[test]
fn metrics_by_qtype_rcode_service_pop_ecs_and_latency_without_addresses() {
    let s = start("metrics");
    let mut c = Client::new(s.dns);
    for n in 0..20u8 {
        c.ask([10, 1, n, 0], 24);
    }
    s.dig(&["nope.example.test", "AAAA"]);
    s.dig(&["www.example.test", "A", "+tcp"]);
    let wanted = [
        "steer_dns_queries_total{qtype=\"A\"}",
        "steer_dns_queries_total{qtype=\"AAAA\"}",
        "steer_dns_responses_total{rcode=\"NOERROR\"}",
        "steer_dns_responses_total{rcode=\"NXDOMAIN\"}",
        "steer_dns_service_queries_total{service=\"app\"} 20",
        "steer_dns_answers_total{pop=\"fra1\"} 20",
        "steer_dns_answers_total{pop=\"ams1\"} 20",
        "steer_dns_ecs_queries_total{ecs=\"yes\"} 20",
        "steer_dns_ecs_queries_total{ecs=\"no\"}",
        "steer_dns_latency_seconds_bucket{le=",
    ];
    // A UDP worker applies its counts within 20 ms of falling idle.
    let metrics = poll(Duration::from_secs(5), || {
        let (_, metrics) = http_get(s.http, "/metrics")?;
        wanted
            .iter()
            .all(|m| metrics.contains(m))
            .then_some(metrics)
    });
    let Some(metrics) = metrics else {
        let (_, metrics) = http_get(s.http, "/metrics").unwrap();
        let missing: Vec<_> = wanted.iter().filter(|m| !metrics.contains(*m)).collect();
        panic!("{missing:?} missing:\n{metrics}");
    };
    let leaks: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("steer_dns") && (l.contains("127.0.0.1") || l.contains("10.1.")))
        .collect();
    assert!(leaks.is_empty(), "client addresses in labels: {leaks:?}");
}

/// Each PoP's share of the record answers `subnets` get, by A record.
fn shares(c: &mut Client, subnets: &[[u8; 3]]) -> std::collections::BTreeMap<[u8; 4], f64> {
    let mut out = std::collections::BTreeMap::new();
    let each = 1.0 / subnets.len() as f64;
    for net in subnets {
        let a = c.ask([net[0], net[1], net[2], 1], 24);
        for ip in &a {
            *out.entry(*ip).or_insert(0.0) += each / a.len() as f64;
        }
    }
    out
}

/// The planned share of each PoP address in the global set, from explain.
fn planned(s: &Steerd) -> std::collections::BTreeMap<[u8; 4], f64> {
    let out = s.steerctl(&["explain", "app.example.test", "--client", "198.51.0.1"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let ip = |pop: &str| -> [u8; 4] {
        match pop {
            "fra1" => [192, 0, 2, 11],
            "ams1" => [192, 0, 2, 12],
            "iad1" => [192, 0, 2, 21],
            "ord1" => [192, 0, 2, 22],
            "sin1" => [192, 0, 2, 31],
            _ => [192, 0, 2, 32],
        }
    };
    let weights: Vec<([u8; 4], f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.split("candidate ").nth(1)?;
            let mut words = rest.split_whitespace();
            let pop = words.next()?;
            let w: f64 = words.nth(1)?.trim_end_matches('‰').parse().ok()?;
            Some((ip(pop), w))
        })
        .collect();
    assert_eq!(weights.len(), 6, "{text}");
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    weights.into_iter().map(|(ip, w)| (ip, w / total)).collect()
}

fn worst(
    got: &std::collections::BTreeMap<[u8; 4], f64>,
    want: &std::collections::BTreeMap<[u8; 4], f64>,
) -> f64 {
    want.iter()
        .map(|(ip, w)| (got.get(ip).copied().unwrap_or(0.0) - w).abs())
        .fold(0.0, f64::max)
}

#[test]
fn selection_is_calibrated_on_the_subnets_that_ask() {
    let dir = temp_dir("calibrate");
    let base = std::fs::read_to_string(quickstart()).unwrap();
    let path: PathBuf = dir.join("steerd.toml");
    std::fs::write(&path, format!("{base}\n[dns]\ncalibrate_every = \"off\"\n")).unwrap();
    let s = Steerd::start_with(path.clone(), dir.join("state"));
    let mut c = Client::new(s.dns);
    // 600 unmapped /24s: the global set, six PoPs, two records each.
    let subnets: Vec<[u8; 3]> = (0..600u32)
        .map(|i| [198, 49 + (i / 256) as u8, (i % 256) as u8])
        .collect();
    let want = planned(&s);
    let before = shares(&mut c, &subnets);
    assert_eq!(
        shares(&mut c, &subnets),
        before,
        "sticky while nothing changes"
    );
    let metric = |name: &str| -> f64 {
        let (_, body) = http_get(s.http, "/metrics").unwrap();
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(
        metric("steer_dns_selection_recalibrations_total"),
        0.0,
        "off means off"
    );

    // Turned on by a reload: the next round calibrates on what was sampled.
    std::fs::write(&path, format!("{base}\n[dns]\ncalibrate_every = \"1s\"\n")).unwrap();
    let out = s.steerctl(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calibrated = poll(Duration::from_secs(10), || {
        (metric("steer_dns_selection_recalibrations_total") >= 1.0).then_some(())
    });
    assert!(calibrated.is_some(), "no recalibration");
    assert!(metric("steer_dns_selection_sample_keys") >= 600.0);
    let after = shares(&mut c, &subnets);
    let grain = 1.0 / subnets.len() as f64;
    let (err_before, err_after) = (worst(&before, &want), worst(&after, &want));
    eprintln!("worst PoP share error: uncalibrated {err_before:.4}, calibrated {err_after:.4}");
    assert!(
        err_after <= grain + 1e-9,
        "calibrated shares {after:?} miss {want:?} by {err_after}"
    );
    assert!(err_after <= err_before, "{err_after} > {err_before}");
    let residual = metric("steer_dns_selection_residual");
    assert!(
        (residual - err_after).abs() < 1e-6,
        "residual {residual} vs {err_after}"
    );
    // The same clients, the same plan: answers stay put across rounds (a
    // round is due every second; over 1.5 s none finds anything to redo).
    let rounds = metric("steer_dns_selection_recalibrations_total");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        metric("steer_dns_selection_recalibrations_total"),
        rounds,
        "nothing changed"
    );
    assert_eq!(shares(&mut c, &subnets), after);
    let explained = s.steerctl(&["explain", "app.example.test", "--client", "198.51.0.1"]);
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(
        text.contains("selection calibrated on 600 client subnet(s)"),
        "{text}"
    );
}
