//! DNS listeners as an edge host runs them: a wildcard `[::]` bind serves
//! IPv4 and IPv6 over UDP and TCP, several addresses can be listed, replies
//! leave from the address each query arrived on, and DNS over TCP holds
//! under thousands of idle connections (caps, idle timeout) without
//! stopping UDP or burning a core. Loopback addresses only.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    process::Command,
    time::{Duration, Instant},
};

use common::*;

/// A query for www.example.test A.
fn query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(b"\x03www\x07example\x04test\x00\x00\x01\x00\x01");
    q
}

/// steerd on `dns` listen arguments (as given to `--dns-listen`) with
/// `extra` appended to the quickstart config; ready when 127.0.0.1 on the
/// first port answers. Retries with fresh ports when one was taken.
struct Edge {
    proc: Proc,
    http: u16,
}

fn start(name: &str, extra: &str, dns: impl Fn(u16) -> Vec<String>) -> (Edge, u16) {
    for attempt in 1..=3 {
        let dir = temp_dir(name);
        let config = dir.join("steerd.toml");
        let text = std::fs::read_to_string(quickstart()).unwrap() + extra;
        std::fs::write(&config, text).unwrap();
        let (port, grpc, http) = (free_port(), free_port(), free_port());
        let mut cmd = Command::new(STEERD);
        cmd.arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--grpc-listen", &format!("127.0.0.1:{grpc}")])
            .args(["--http-listen", &format!("127.0.0.1:{http}")]);
        for a in dns(port) {
            cmd.args(["--dns-listen", &a]);
        }
        let mut proc = Proc::spawn(&mut cmd, dir.join("steerd.log"));
        let ready = poll(Duration::from_secs(20), || {
            if let Ok(Some(_)) = proc.child.try_wait() {
                return Some(false);
            }
            let up = http_get(http, "/healthz").is_some_and(|(c, _)| c == 200);
            (up && dig(port, &["www.example.test", "A", "+short"]).contains("192.0.2.80"))
                .then_some(true)
        });
        match ready {
            Some(true) => return (Edge { proc, http }, port),
            _ if proc.log_text().contains("in use") && attempt < 3 => {
                proc.kill();
                continue;
            }
            _ => panic!("steerd not ready:\n{}", proc.log_text()),
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// dig at `server` (an address, either family) over UDP or TCP.
fn dig_at(server: &str, port: u16, tcp: bool) -> String {
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{server}"))
        .args(["-p", &port.to_string(), "+time=2", "+tries=1", "+short"])
        .args(["www.example.test", "A"]);
    if tcp {
        cmd.arg("+tcp");
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Sends one query to `to` from an unconnected socket and returns the
/// address the reply came from.
fn reply_source(to: SocketAddr) -> Option<SocketAddr> {
    let bind = if to.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let sock = UdpSocket::bind(bind).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&query(7), to).unwrap();
    let mut buf = [0u8; 1500];
    sock.recv_from(&mut buf).ok().map(|(_, from)| from)
}

#[test]
fn a_wildcard_ipv6_bind_serves_both_families_over_udp_and_tcp() {
    let (_s, port) = start("dual-stack", "", |p| vec![format!("[::]:{p}")]);
    for (server, tcp) in [
        ("127.0.0.1", false),
        ("127.0.0.1", true),
        ("::1", false),
        ("::1", true),
    ] {
        assert_eq!(
            dig_at(server, port, tcp),
            "192.0.2.80",
            "{server} tcp={tcp}"
        );
    }
}

#[test]
fn replies_leave_from_the_address_queried_on_wildcard_binds() {
    // One IPv4 wildcard and one dual-stack IPv6 wildcard, given as a
    // comma-separated list; a port for each.
    let other = free_port();
    let (_s, port) = start("pktinfo", "", move |p| {
        vec![format!("0.0.0.0:{p},[::]:{other}")]
    });
    for to in [
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from(([127, 0, 0, 2], port)),
        SocketAddr::from(([127, 0, 0, 3], port)),
        // IPv4 on the dual-stack socket: the reply's source is v4-mapped
        // on the way out and plain IPv4 on the wire.
        SocketAddr::from(([127, 0, 0, 2], other)),
        SocketAddr::from(([127, 0, 0, 1], other)),
        "[::1]:0"
            .parse::<SocketAddr>()
            .map(|mut a| {
                a.set_port(other);
                a
            })
            .unwrap(),
    ] {
        assert_eq!(reply_source(to), Some(to), "query to {to}");
    }
    // dig checks the source of the reply itself.
    assert_eq!(dig_at("127.0.0.2", port, false), "192.0.2.80");
    assert_eq!(dig_at("127.0.0.3", other, false), "192.0.2.80");
}

#[test]
fn dns_listen_takes_a_list_in_the_file() {
    let (a, b) = (free_port(), free_port());
    let dir = temp_dir("listen-list");
    let config = dir.join("steerd.toml");
    let text = std::fs::read_to_string(quickstart()).unwrap().replace(
        "dns_listen = \"127.0.0.1:5353\"",
        &format!("dns_listen = [\"127.0.0.1:{a}\", \"[::1]:{b}\"]"),
    );
    std::fs::write(&config, text).unwrap();
    let mut cmd = Command::new(STEERD);
    let (grpc, http) = (free_port(), free_port());
    cmd.arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--grpc-listen", &format!("127.0.0.1:{grpc}")])
        .args(["--http-listen", &format!("127.0.0.1:{http}")]);
    let _s = Proc::spawn(&mut cmd, dir.join("steerd.log"));
    let both = poll(Duration::from_secs(20), || {
        (dig_at("127.0.0.1", a, false) == "192.0.2.80" && dig_at("::1", b, true) == "192.0.2.80")
            .then_some(())
    });
    assert!(both.is_some(), "{}", _s.log_text());
}

fn metric(http: u16, line_start: &str) -> f64 {
    let (_, text) = http_get(http, "/metrics").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
}

/// CPU seconds (user + system) steerd used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; the split starts at field 3.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn idle_tcp_connections_are_capped_and_timed_out_and_udp_keeps_answering() {
    const OPEN: usize = 200;
    const PER_CLIENT: usize = 50;
    let extra = format!(
        "\n[dns]\ntcp_max_connections_per_client = {PER_CLIENT}\ntcp_idle_timeout = \"2s\"\n"
    );
    let (s, port) = start("tcp-limits", &extra, |p| vec![format!("127.0.0.1:{p}")]);
    // Registered at zero before anything happened.
    for name in [
        "steer_dns_tcp_rejected_total{reason=\"global_cap\"}",
        "steer_dns_tcp_rejected_total{reason=\"per_client_cap\"}",
        "steer_dns_tcp_idle_closed_total",
        "steer_dns_dropped_total{reason=\"bad_source\"}",
    ] {
        assert_eq!(metric(s.http, name), 0.0, "{name}");
    }

    let opened = Instant::now();
    let conns: Vec<TcpStream> = (0..OPEN)
        .map(|_| {
            let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.set_nonblocking(true).unwrap();
            c
        })
        .collect();
    // Excess connections are closed promptly (EOF or reset), well before
    // the idle timeout; the first PER_CLIENT stay open.
    let closed_early = poll(Duration::from_millis(1500), || {
        let closed = conns.iter().filter(|c| is_closed(c)).count();
        (closed == OPEN - PER_CLIENT).then_some(closed)
    });
    assert_eq!(
        closed_early,
        Some(OPEN - PER_CLIENT),
        "after {:?}",
        opened.elapsed()
    );
    assert!(opened.elapsed() < Duration::from_secs(2));
    assert_eq!(
        metric(
            s.http,
            "steer_dns_tcp_rejected_total{reason=\"per_client_cap\"}"
        ),
        (OPEN - PER_CLIENT) as f64
    );

    // While the peer holds its connections: UDP answers, and the server
    // is idle.
    let pid = s.proc.child.id();
    let before = cpu_seconds(pid);
    let window = Instant::now();
    let mut answered = 0;
    while window.elapsed() < Duration::from_millis(1000) {
        if dig_at("127.0.0.1", port, false) == "192.0.2.80" {
            answered += 1;
        }
    }
    let busy = (cpu_seconds(pid) - before) / window.elapsed().as_secs_f64();
    eprintln!("steerd CPU with {PER_CLIENT} idle TCP connections held: {busy:.3} of a core");
    assert!(answered >= 3, "UDP answered {answered} queries");
    assert!(busy < 0.5, "steerd used {busy:.2} of a core");

    // The held ones are closed after the idle timeout.
    let all_closed = poll(Duration::from_secs(6), || {
        conns.iter().all(is_closed).then_some(())
    });
    assert!(all_closed.is_some(), "idle connections still open");
    assert!(opened.elapsed() >= Duration::from_millis(1900));
    let idle = poll(Duration::from_secs(2), || {
        let n = metric(s.http, "steer_dns_tcp_idle_closed_total");
        (n == PER_CLIENT as f64).then_some(n)
    });
    assert_eq!(idle, Some(PER_CLIENT as f64));
    // And the places are free again: a TCP query is answered.
    assert_eq!(dig_at("127.0.0.1", port, true), "192.0.2.80");
}

/// Whether the server closed `c` (EOF or reset); false while it is open
/// and silent.
fn is_closed(mut c: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    match c.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn queries_over_one_tcp_connection_are_answered_in_order() {
    let (_s, port) = start("tcp-pipeline", "", |p| vec![format!("127.0.0.1:{p}")]);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut frames = Vec::new();
    for id in 1..=3u16 {
        let q = query(id);
        frames.extend_from_slice(&(q.len() as u16).to_be_bytes());
        frames.extend_from_slice(&q);
    }
    c.write_all(&frames).unwrap();
    for id in 1..=3u16 {
        let mut len = [0u8; 2];
        c.read_exact(&mut len).unwrap();
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        c.read_exact(&mut msg).unwrap();
        assert_eq!(u16::from_be_bytes([msg[0], msg[1]]), id);
        assert_eq!(msg[3] & 0x0f, 0, "rcode");
    }
}

#[test]
fn a_tcp_message_shorter_than_a_header_closes_the_connection() {
    let (s, port) = start("tcp-runt", "", |p| vec![format!("127.0.0.1:{p}")]);
    for runt in [&[][..], &[1, 2, 3, 4, 5][..]] {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut frame = (runt.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(runt);
        c.write_all(&frame).unwrap();
        // Closed at once, as NSD and Knot do: no reply, end of stream.
        let mut buf = [0u8; 16];
        let n = c.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "{runt:?}: expected the connection closed");
    }
    assert!(metric(s.http, "steer_dns_malformed_total") >= 2.0);
    // Others are still served.
    let out = dig_at("127.0.0.1", port, true);
    assert_eq!(out.trim(), "192.0.2.80");
}

/// Sends `query` to 127.0.0.1:`port` from source port 0 through a raw
/// socket (python3; needs root or CAP_NET_RAW). False if it could not.
fn send_from_port_zero(port: u16) -> bool {
    let script = format!(
        r#"
import socket, struct
q = bytes({q:?})
udp = struct.pack("!HHHH", 0, {port}, 8 + len(q), 0) + q
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(ip + udp, ("127.0.0.1", 0))
"#,
        q = query(9)
    );
    Command::new("python3")
        .args(["-c", &script])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn queries_from_port_zero_are_dropped_and_counted() {
    let (s, port) = start("bad-source", "", |p| vec![format!("127.0.0.1:{p}")]);
    let counter = "steer_dns_dropped_total{reason=\"bad_source\"}";
    assert_eq!(metric(s.http, counter), 0.0);
    if !send_from_port_zero(port) {
        eprintln!("skipped: no raw socket (run as root or with CAP_NET_RAW)");
        return;
    }
    let counted = poll(Duration::from_secs(3), || {
        (metric(s.http, counter) == 1.0).then_some(())
    });
    assert!(counted.is_some(), "{counter} not 1");
    // And the server goes on answering.
    assert_eq!(dig_at("127.0.0.1", port, false), "192.0.2.80");
}
