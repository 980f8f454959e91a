//! Health-ingest load generator: opens N concurrent agent streams (one TCP
//! connection each, like real agents) to steerd and sends reports at a fixed
//! rate per stream, while a DNS prober measures answer latency on the same
//! steerd. Prints reports/s acknowledged, steerd CPU (from /proc) and DNS
//! latency during the load.
//!
//! `health-load --endpoint http://127.0.0.1:50051 --dns 127.0.0.1:5353 \
//!   --streams 1000 --rate 50 --duration 10 --steerd-pid PID`

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use clap::Parser;
use prost::Message;
use steer_proto::v1::{
    HealthReport, PeerObservation, ProbeResult, ReportAck, ServiceHealth, ServiceStatus,
};
use tokio::sync::Semaphore;
use tokio_stream::{Stream, StreamExt};
use tonic::{
    Request, Status,
    client::Grpc,
    codec::{Codec, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
    transport::Channel,
};
use tonic_prost::ProstDecoder;

#[derive(Parser, Debug)]
#[command(
    name = "health-load",
    about = "Load generator for steerd's health ingest"
)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    endpoint: String,
    /// steerd's DNS listener, probed during the load (empty: no DNS probe).
    #[arg(long, default_value = "127.0.0.1:5353")]
    dns: String,
    /// Concurrent agent streams (each on its own connection).
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Reports per second per stream.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Measured seconds, after all streams are open and `warmup` has passed.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// PoP ids to report for, round-robin over the streams.
    #[arg(long, default_value = "fra1,ams1,iad1,ord1,sin1,bom1")]
    pops: String,
    /// steerd's pid, to read its CPU time from /proc.
    #[arg(long)]
    steerd_pid: Option<u32>,
    /// DNS queries per second of the latency prober.
    #[arg(long, default_value_t = 200)]
    dns_rate: u32,
    /// Services per report: `app` for 1, else `svc0` .. `svc<N-1>`.
    #[arg(long, default_value_t = 1)]
    services: usize,
    /// Leave out the SLI counters (the baseline for their cost).
    #[arg(long)]
    no_sli: bool,
    /// Cumulative acks: steerd acks accepted reports at most this often per
    /// stream (0: an ack per report, as older agents get). steer-agent asks
    /// for 5000; the default here keeps the count's lag under 1 s.
    #[arg(long, default_value_t = 1000)]
    ack_interval_ms: u32,
    /// steerd's HTTP listener (`127.0.0.1:9100`): reports accepted and plan
    /// versions published during the window are read from its /metrics.
    #[arg(long)]
    metrics: Option<SocketAddr>,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    accepted: AtomicU64,
    ignored: AtomicU64,
    errors: AtomicU64,
    open: AtomicU64,
}

/// What every report carries besides its PoP and sequence.
#[derive(Clone, Copy)]
struct Shape {
    services: usize,
    sli: bool,
    ack_interval_ms: u32,
}

/// A realistic report: `shape.services` services with two probes' evidence
/// each (and SLI counters unless left out), load figures and two peer
/// observations.
fn report(pop: &str, sequence: u64, instance: u64, shape: Shape) -> HealthReport {
    let probe = |name: &str| ProbeResult {
        name: name.into(),
        kind: "http".into(),
        ok: true,
        detail: "HTTP 200".into(),
        latency_ms: 2,
    };
    HealthReport {
        pop: pop.into(),
        sequence,
        agent_time_unix_ms: 0,
        services: (0..shape.services.max(1))
            .map(|i| {
                let name = if shape.services <= 1 {
                    "app".to_owned()
                } else {
                    format!("svc{i}")
                };
                ServiceHealth {
                    probes: vec![
                        probe(&format!("{name}-http")),
                        probe(&format!("{name}-tcp")),
                    ],
                    service: name,
                    status: ServiceStatus::Up.into(),
                    // The SLI counters an [[sli]] source adds to every report.
                    requests_total: if shape.sli { sequence * 100 } else { 0 },
                    requests_failed: if shape.sli { sequence / 10 } else { 0 },
                    sli_present: shape.sli,
                    requests_slow: 0,
                    slow_present: false,
                }
            })
            .collect(),
        capacity_rps: 10_000.0,
        load_rps: 1_000.0,
        agent_instance: instance,
        agent_started_unix_ms: 0,
        bandwidth_bps: 8e8,
        error_ratio: 0.001,
        latency_p50_ms: 4.0,
        latency_p99_ms: 40.0,
        peers: ["fra1", "iad1"]
            .iter()
            .map(|p| PeerObservation {
                pop: (*p).into(),
                name: format!("{p}-vip"),
                kind: "tcp".into(),
                reachable: true,
                detail: "connected".into(),
                latency_ms: 1,
            })
            .collect(),
        region_load_rps: Default::default(),
        ack_interval_ms: shape.ack_interval_ms,
    }
}

/// Encodes one stream's reports from a template it owns: the request stream
/// yields only sequence numbers, so a report costs the generator no
/// allocation (the bytes on the wire are what [`report`] would encode).
#[derive(Clone)]
struct ReportCodec {
    template: HealthReport,
}

impl Codec for ReportCodec {
    type Encode = u64;
    type Decode = ReportAck;
    type Encoder = Self;
    type Decoder = ProstDecoder<ReportAck>;

    fn encoder(&mut self) -> Self::Encoder {
        self.clone()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

impl Encoder for ReportCodec {
    type Item = u64;
    type Error = Status;

    fn encode(&mut self, sequence: u64, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        self.template.sequence = sequence;
        for s in self.template.services.iter_mut().filter(|s| s.sli_present) {
            s.requests_total = sequence * 100;
            s.requests_failed = sequence / 10;
        }
        self.template
            .encode(dst)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// Sequence 1 at once, then one per tick; counts what it hands to the
/// transport. Drives the request body directly, without a channel.
struct ReportTicks {
    ticker: tokio::time::Interval,
    next: u64,
    counters: Arc<Counters>,
}

impl Stream for ReportTicks {
    type Item = u64;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u64>> {
        if self.next > 1 {
            std::task::ready!(self.ticker.poll_tick(cx));
        }
        let seq = self.next;
        self.next += 1;
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Some(seq))
    }
}

async fn agent_stream(
    endpoint: String,
    pop: String,
    instance: u64,
    rate: f64,
    shape: Shape,
    counters: Arc<Counters>,
    connect_gate: Arc<Semaphore>,
) {
    let channel = {
        let _permit = connect_gate.acquire().await;
        match Channel::from_shared(endpoint).map(|e| e.connect_timeout(Duration::from_secs(10))) {
            Ok(e) => match e.connect().await {
                Ok(c) => c,
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            Err(_) => return,
        }
    };
    let period = Duration::from_secs_f64(1.0 / rate);
    // Spread the first ticks so streams do not send in lockstep.
    let offset = period.mul_f64((instance % 1000) as f64 / 1000.0);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let ticks = ReportTicks {
        ticker,
        next: 1,
        counters: counters.clone(),
    };
    let codec = ReportCodec {
        template: report(&pop, 0, instance, shape),
    };
    let mut client = Grpc::new(channel);
    if client.ready().await.is_err() {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let path = PathAndQuery::from_static("/steer.v1.HealthIngest/Report");
    let mut acks = match client.streaming(Request::new(ticks), path, codec).await {
        Ok(r) => r.into_inner(),
        Err(_) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    counters.open.fetch_add(1, Ordering::Relaxed);
    // Acks are cumulative: reports between two acks that got none of their
    // own were accepted.
    let mut acked = 0u64;
    while let Some(ack) = acks.next().await {
        match ack {
            Ok(a) => {
                let silent = a.sequence.saturating_sub(acked + 1);
                let (accepted, ignored) = if a.accepted {
                    (silent + 1, 0)
                } else {
                    (silent, 1)
                };
                counters.accepted.fetch_add(accepted, Ordering::Relaxed);
                counters.ignored.fetch_add(ignored, Ordering::Relaxed);
                acked = acked.max(a.sequence);
            }
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// utime + stime of a process, in seconds (clock ticks of 100 Hz).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Resident and peak resident memory of a process, in KiB (from
/// /proc/PID/status).
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Per CPU (`cpuN` lines of /proc/stat): (steal, total) clock ticks.
fn cpu_steal() -> Vec<(u64, u64)> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    stat.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let ticks: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|t| t.parse().ok())
                .collect();
            (ticks.get(7).copied().unwrap_or(0), ticks.iter().sum())
        })
        .collect()
}

/// Steal time per CPU over a window, in percent: CPU time the hypervisor
/// gave to other guests (a busy host makes every figure here smaller).
fn steal_pct(before: &[(u64, u64)], after: &[(u64, u64)]) -> String {
    let pcts: Vec<String> = before
        .iter()
        .zip(after)
        .map(|((s0, t0), (s1, t1))| {
            let total = t1.saturating_sub(*t0).max(1) as f64;
            format!("{:.1}", s1.saturating_sub(*s0) as f64 / total * 100.0)
        })
        .collect();
    if pcts.is_empty() {
        "?".into()
    } else {
        pcts.join("/")
    }
}

/// The CPUs a process may run on (`Cpus_allowed_list` in /proc/PID/status).
fn cpus_allowed(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list:"))?;
    Some(line["Cpus_allowed_list:".len()..].trim().to_owned())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// From steerd's /metrics: reports accepted (all PoPs) and the plan
/// version. Plain HTTP/1.0 over loopback; `None` when unreachable.
fn steerd_counts(addr: SocketAddr) -> Option<(f64, f64)> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: steerd\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    conn.read_to_string(&mut body).ok()?;
    let value = |line: &str| -> f64 {
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let mut accepted = 0.0;
    let mut version = None;
    for line in body.lines() {
        if line.starts_with("steer_health_reports_total") {
            accepted += value(line);
        } else if line.starts_with("steer_plan_version ") {
            version = Some(value(line));
        }
    }
    Some((accepted, version?))
}

/// A DNS query for app.example.test A with ECS 10.1.2.0/24.
fn dns_query(id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in ["app", "example", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    // OPT with ECS (family 1, source /24, scope 0, 10.1.2).
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11]);
    q.extend_from_slice(&[0, 8, 0, 7, 0, 1, 24, 0, 10, 1, 2]);
    q
}

/// Sends `rate` queries/s until `stop`; returns sorted latencies and losses.
async fn dns_probe(addr: SocketAddr, rate: u32, until: Instant) -> (Vec<Duration>, u64) {
    let Ok(sock) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else {
        return (Vec::new(), 0);
    };
    let mut latencies = Vec::new();
    let mut lost = 0;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    let mut id: u16 = 0;
    let mut buf = [0u8; 1500];
    while Instant::now() < until {
        ticker.tick().await;
        id = id.wrapping_add(1);
        let started = Instant::now();
        if sock.send_to(&dns_query(id), addr).await.is_err() {
            lost += 1;
            continue;
        }
        let got = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                let n = sock.recv(&mut buf).await.ok()?;
                if n >= 12 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                    return Some(buf[3] & 0x0f == 0 && buf[7] > 0);
                }
            }
        })
        .await;
        match got {
            Ok(Some(true)) => latencies.push(started.elapsed()),
            _ => lost += 1,
        }
    }
    latencies.sort();
    (latencies, lost)
}

fn pct(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

/// What the figure means. accepted/s is steerd's capacity only when steerd
/// ran out of CPU while the generator still had room to offer more; a
/// saturated generator makes it a lower bound at best.
fn verdict(steerd_pct: f64, loadgen_pct: f64, offered: f64, sent: f64, accepted: f64) -> String {
    const SATURATED: f64 = 90.0;
    let generator_short = sent < offered * 0.97;
    match (
        steerd_pct >= SATURATED,
        loadgen_pct >= SATURATED && generator_short,
    ) {
        (true, false) => {
            format!("steerd-bound: {accepted:.0} reports/s is its capacity on one core")
        }
        (true, true) => format!(
            "steerd-bound and generator-bound: both cores saturated; {accepted:.0} reports/s is a lower bound"
        ),
        (false, true) => format!(
            "generator-bound: it sent {sent:.0} of {offered:.0} offered/s; not a steerd capacity"
        ),
        (false, false) => format!(
            "not saturated: steerd kept up with {sent:.0}/s using {steerd_pct:.0}% of its core"
        ),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let pops: Vec<String> = args.pops.split(',').map(str::to_owned).collect();
    let counters = Arc::new(Counters::default());
    let gate = Arc::new(Semaphore::new(256));
    let opening = Instant::now();
    for i in 0..args.streams {
        tokio::spawn(agent_stream(
            args.endpoint.clone(),
            pops[i % pops.len()].clone(),
            1_000_000 + i as u64,
            args.rate,
            Shape {
                services: args.services,
                sli: !args.no_sli,
                ack_interval_ms: args.ack_interval_ms,
            },
            counters.clone(),
            gate.clone(),
        ));
    }
    // Wait until every stream is open (or failed).
    let deadline = Instant::now() + Duration::from_secs(120);
    while (counters.open.load(Ordering::Relaxed) + counters.errors.load(Ordering::Relaxed))
        < args.streams as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open = counters.open.load(Ordering::Relaxed);
    eprintln!(
        "{open} streams open in {:.1}s; warming up {}s",
        opening.elapsed().as_secs_f64(),
        args.warmup
    );
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;

    let dns_until = Instant::now() + Duration::from_secs(args.duration);
    // The prober gets its own thread and runtime, so it measures steerd,
    // not the queue of stream tasks in this process.
    let dns = match args.dns.parse::<SocketAddr>() {
        Ok(addr) if !args.dns.is_empty() => {
            let rate = args.dns_rate;
            Some(std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| rt.block_on(dns_probe(addr, rate, dns_until)))
                    .unwrap_or_default()
            }))
        }
        _ => None,
    };
    let counts0 = args.metrics.and_then(steerd_counts);
    let steal0 = cpu_steal();
    let cpu0 = args.steerd_pid.and_then(cpu_seconds);
    let self0 = cpu_seconds(std::process::id());
    let accepted0 = counters.accepted.load(Ordering::Relaxed);
    let sent0 = counters.sent.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let counts1 = args.metrics.and_then(steerd_counts);
    let steal = steal_pct(&steal0, &cpu_steal());
    // steerd's own count when it can be read; else the acks' (cumulative
    // acks lag by up to one ack interval per stream).
    let acked = counters.accepted.load(Ordering::Relaxed) - accepted0;
    let (accepted, plans) = match (counts0, counts1) {
        (Some((a0, v0)), Some((a1, v1))) => ((a1 - a0) as u64, Some(v1 - v0)),
        _ => (acked, None),
    };
    let sent = counters.sent.load(Ordering::Relaxed) - sent0;
    let cpu = match (cpu0, args.steerd_pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let self_cpu = match (self0, cpu_seconds(std::process::id())) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let (lat, lost) = match dns {
        Some(h) => h.join().unwrap_or_default(),
        None => (Vec::new(), 0),
    };
    let rps = accepted as f64 / elapsed;
    let offered = args.streams as f64 * args.rate;
    let sent_rps = sent as f64 / elapsed;
    println!(
        "conditions: cpu_model={:?} steerd_cpus={} loadgen_cpus={} ack_interval_ms={} \
         plan_versions_published={} steal_pct_per_cpu={steal}",
        cpu_model(),
        args.steerd_pid
            .and_then(cpus_allowed)
            .unwrap_or_else(|| "?".into()),
        cpus_allowed(std::process::id()).unwrap_or_else(|| "?".into()),
        args.ack_interval_ms,
        plans.map_or_else(|| "?".into(), |p| format!("{p:.0}")),
    );
    println!(
        "streams={} open={open} offered_rps={offered:.0} sent_rps={:.0} accepted_rps={rps:.0} \
         acked_rps={:.0} ignored={} errors={}",
        args.streams,
        sent_rps,
        acked as f64 / elapsed,
        counters.ignored.load(Ordering::Relaxed),
        counters.errors.load(Ordering::Relaxed),
    );
    if let Some(cpu) = cpu {
        let steerd_pct = cpu / elapsed * 100.0;
        let loadgen_pct = self_cpu / elapsed * 100.0;
        println!(
            "steerd_cpu_pct={steerd_pct:.1} steerd_us_per_report={:.2} loadgen_cpu_pct={loadgen_pct:.1}",
            cpu / accepted.max(1) as f64 * 1e6,
        );
        println!(
            "verdict: {}",
            verdict(steerd_pct, loadgen_pct, offered, sent_rps, rps)
        );
    }
    if let Some((rss, peak)) = args.steerd_pid.and_then(rss_kib) {
        println!(
            "steerd_rss_mib={:.0} steerd_peak_rss_mib={:.0} rss_kib_per_stream={:.1}",
            rss as f64 / 1024.0,
            peak as f64 / 1024.0,
            rss as f64 / args.streams.max(1) as f64
        );
    }
    if !lat.is_empty() || lost > 0 {
        println!(
            "dns_answers={} dns_lost={lost} dns_p50_us={:.0} dns_p99_us={:.0} dns_max_us={:.0}",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lat, 1.0)
        );
    }
    Ok(())
}
