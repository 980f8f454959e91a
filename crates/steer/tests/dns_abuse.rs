//! Abuse: a flood of random, truncated and oversized packets leaves the
//! server answering; response rate limiting is on by default for every
//! client outside its exempt list (loopback by default), drops or slips
//! (TC) per client prefix over UDP only, and limits error replies too.
//! Tests here clear the exempt list to be limited from 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::Write,
    net::{TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use common::*;

/// xorshift64*: deterministic junk without a dependency.
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}

/// A valid query for www.example.test A.
fn valid(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(b"\x03www\x07example\x04test\x00\x00\x01\x00\x01");
    q
}

#[test]
fn a_flood_of_100k_malformed_packets_leaves_the_server_answering() {
    let s = Steerd::start("flood");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut junk = Junk(0x5eed_1234_dead_beef);
    let mut buf = vec![0u8; 65_000];
    let start = Instant::now();
    for i in 0..100_000u32 {
        let packet: Vec<u8> = match i % 5 {
            // Random bytes of random small length.
            0 => {
                let n = (junk.next() % 600) as usize;
                junk.fill(&mut buf[..n]);
                buf[..n].to_vec()
            }
            // A valid query cut short anywhere.
            1 => {
                let q = valid(i as u16);
                let cut = (junk.next() as usize) % q.len();
                q[..cut].to_vec()
            }
            // A valid header with random counts and random body.
            2 => {
                let mut q = valid(i as u16);
                let n = 12 + (junk.next() % 200) as usize;
                q.resize(n, 0);
                junk.fill(&mut q[4..n]);
                q
            }
            // Oversized datagrams.
            3 => {
                let n = if i % 50 == 3 { 65_000 } else { 4_096 };
                junk.fill(&mut buf[..n]);
                buf[..n].to_vec()
            }
            // A valid query with bit flips.
            _ => {
                let mut q = valid(i as u16);
                let at = (junk.next() as usize) % q.len();
                q[at] ^= 1 << (junk.next() % 8);
                q
            }
        };
        // The kernel may drop when the server's buffer is full; that is fine.
        let _ = sock.send_to(&packet, ("127.0.0.1", s.dns));
    }
    let sent_in = start.elapsed();
    // Junk over TCP too: a length prefix that lies, then garbage.
    for n in [0u16, 1, 12, 512, 65_535] {
        if let Ok(mut t) = TcpStream::connect(("127.0.0.1", s.dns)) {
            let mut body = vec![0u8; usize::from(n.min(4096))];
            junk.fill(&mut body);
            let _ = t.write_all(&n.to_be_bytes());
            let _ = t.write_all(&body);
        }
    }
    let answering = poll(Duration::from_secs(10), || {
        (s.dig(&["www.example.test", "A", "+short"]).trim() == "192.0.2.80").then_some(())
    });
    assert!(
        answering.is_some(),
        "not answering after the flood (sent in {sent_in:?}):\n{}",
        s.proc.log_text()
    );
    assert_eq!(
        s.dig(&["www.example.test", "A", "+tcp", "+short"]).trim(),
        "192.0.2.80"
    );
    assert!(s.proc.child.id() > 0);
    let log = s.proc.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

/// Sends `n` valid queries back to back, then collects replies until two
/// seconds pass without one; returns (answered, truncated).
fn burst(port: u16, n: u16) -> (usize, usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for id in 0..n {
        sock.send_to(&valid(id), ("127.0.0.1", port)).unwrap();
    }
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let (mut answered, mut truncated) = (0, 0);
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((len, _)) if len >= 12 => {
                if buf[2] & 0x02 != 0 {
                    truncated += 1;
                } else {
                    answered += 1;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (answered, truncated)
}

#[test]
fn rrl_spares_loopback_by_default_and_reloads_retune_it() {
    let dir = temp_dir("rrl-reload");
    let plain = std::fs::read_to_string(quickstart()).unwrap();
    let config = dir.join("steerd.toml");
    std::fs::write(&config, &plain).unwrap();
    let s = Steerd::start_with(config.clone(), dir.join("state"));
    // On by default, but 127.0.0.0/8 is exempt.
    let (answered, truncated) = burst(s.dns, 200);
    assert_eq!((answered, truncated), (200, 0));

    // Loopback made subject to it by a reload, no restart: the next burst
    // is limited.
    let limited = plain.clone()
        + "\n[dns.rrl]\nresponses_per_second = 10\nslip = 2\nwindow = \"60s\"\nexempt = []\n";
    std::fs::write(&config, limited).unwrap();
    let out = s.steerctl(&["reload", "--reason", "rrl on"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (answered, truncated) = burst(s.dns, 200);
    assert!(answered <= 10, "answered {answered}");
    assert!(truncated >= 80, "truncated {truncated}");

    // And off again.
    std::fs::write(
        &config,
        plain + "\n[dns.rrl]\nenabled = false\nexempt = []\n",
    )
    .unwrap();
    let out = s.steerctl(&["reload", "--reason", "rrl off"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (answered, truncated) = burst(s.dns, 200);
    assert_eq!((answered, truncated), (200, 0));
}

#[test]
fn rrl_drops_and_slips_per_prefix_and_spares_tcp() {
    let dir = temp_dir("rrl-on");
    let text = std::fs::read_to_string(quickstart()).unwrap()
        + "\n[dns.rrl]\nresponses_per_second = 10\nslip = 2\nwindow = \"60s\"\nexempt = []\n";
    let config = dir.join("steerd.toml");
    std::fs::write(&config, text).unwrap();
    let s = Steerd::start_with(config, dir.join("state"));
    // start_with already used part of the budget; the burst uses the rest.
    let (answered, truncated) = burst(s.dns, 200);
    assert!(answered <= 10, "answered {answered}");
    // Of the ~190 limited responses, every second one slips (TC).
    assert!((80..=100).contains(&truncated), "truncated {truncated}");
    // TCP is not limited: the slip sends real clients there.
    assert_eq!(
        s.dig(&["www.example.test", "A", "+tcp", "+short"]).trim(),
        "192.0.2.80"
    );
    let (_, metrics) = http_get(s.http, "/metrics").unwrap();
    assert!(
        metrics.contains("steer_dns_rrl_total{action=\"drop\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("steer_dns_rrl_total{action=\"slip\"}"),
        "{metrics}"
    );
}

/// A query with opcode 2 (STATUS), answered NOTIMP.
fn notimp(id: u16) -> Vec<u8> {
    let mut q = valid(id);
    q[2] = 2 << 3;
    q
}

/// A query whose OPT record asks for EDNS version 1, answered BADVERS.
fn badvers(id: u16) -> Vec<u8> {
    let mut q = valid(id);
    q[11] = 1; // ARCOUNT
    q.extend_from_slice(&[0, 0, 41, 4, 208, 0, 1, 0, 0, 0, 0]);
    q
}

/// A header promising a question that is not there, answered FORMERR.
fn formerr(id: u16) -> Vec<u8> {
    let mut q = valid(id);
    q.truncate(12);
    q
}

/// Sends `n` packets made by `make` and counts every reply.
fn replies_to(port: u16, n: u16, make: fn(u16) -> Vec<u8>) -> usize {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for id in 0..n {
        sock.send_to(&make(id), ("127.0.0.1", port)).unwrap();
    }
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut replies = 0;
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((len, _)) if len >= 12 => replies += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    replies
}

#[test]
fn error_replies_pass_through_rrl_too() {
    let dir = temp_dir("rrl-errors");
    let text = std::fs::read_to_string(quickstart()).unwrap()
        + "\n[dns.rrl]\nresponses_per_second = 10\nslip = 0\nwindow = \"60s\"\nexempt = []\n";
    let config = dir.join("steerd.toml");
    std::fs::write(&config, text).unwrap();
    let s = Steerd::start_with(config, dir.join("state"));
    // Each kind alone would have the whole budget; all share the /24's.
    let mut total = 0;
    for (what, make) in [
        ("NOTIMP", notimp as fn(u16) -> Vec<u8>),
        ("BADVERS", badvers),
        ("FORMERR", formerr),
    ] {
        let replies = replies_to(s.dns, 100, make);
        assert!(replies <= 10, "{what}: {replies} replies to 100 queries");
        total += replies;
    }
    assert!(total <= 10, "{total} error replies in all");
    // Exempt again by default: a server without [dns.rrl] answers them all.
    let t = Steerd::start("rrl-errors-default");
    assert_eq!(replies_to(t.dns, 100, notimp), 100);
}
