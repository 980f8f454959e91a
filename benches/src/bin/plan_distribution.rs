//! Plan distribution (issue 12). Two parts:
//!
//! 1. In memory, for the quickstart, the 200-PoP world and the 1,000-PoP ×
//!    500-region × 50-service world: full plan and one-PoP-drain delta as
//!    `PlanUpdate` wire bytes; the controller's work per publication
//!    (encode, hash, diff) and a follower's apply of the delta.
//! 2. Over gRPC, for the sized world: a tonic server running the real
//!    `OperatorService` SubscribePlan feed on 127.0.0.1 and N subscribers in
//!    the same process, each on its own connection with a
//!    `steer_plansync::Follower` (as an edge). Publishes the plan, then the
//!    one-PoP-drain plan, and reports full-sync and delta bytes, the time
//!    from publication until every subscriber holds the new version (p50 /
//!    max), and CPU over the delta's distribution: the whole process (it
//!    includes the subscribers) and the server runtime's threads alone.
//!
//! `cargo run --release -p steer-benches --bin plan-distribution [-- 200]`
//!
//! Bytes do not depend on the build; times do (use --release).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use prost::Message;
use steer_api::{ApiError, Explainer, OperatorService, interceptor, plan_feed};
use steer_benches::{quickstart_path, synthetic_topology};
use steer_plansync::{Applied, Follower, PlanContent, PlanVersion, Update, full_update};
use steer_proto::v1::{
    self as pb, SubscribePlanRequest, operator_client::OperatorClient,
    operator_server::OperatorServer,
};
use steer_types::{
    Drain, DrainMode, DrainScope, Intents, Plan, PlanBody, Timestamp, Topology,
    explain::Explanation, health::HealthSnapshot,
};
use tokio::sync::{mpsc, watch};

/// The plan before and after a hard drain of the topology's first PoP.
fn drain_pair(topology: &Topology) -> Option<(PlanBody, PlanBody)> {
    let health = HealthSnapshot::default();
    let before = steer_policy::compute(topology, &health, &Intents::default(), Timestamp(0));
    let pop = topology.pops.first()?.id.clone();
    let intents = Intents {
        drains: vec![Drain {
            id: "d1".into(),
            scope: DrainScope::Pop { pop },
            mode: DrainMode::Hard,
            ramp: Duration::ZERO,
            reason: "bench".into(),
            principal: "bench".into(),
            created: Timestamp(0),
            expires: None,
            forced: false,
        }],
        ..Intents::default()
    };
    let after = steer_policy::compute(topology, &health, &intents, Timestamp(1));
    Some((before, after))
}

fn wire(u: &Update) -> usize {
    pb::PlanUpdate {
        version: None,
        computed_unix_ms: 0,
        full: u.base.is_none(),
        base: None,
        entries: u
            .changed
            .iter()
            .map(|(k, v)| pb::PlanEntry {
                key: k.clone(),
                body: v.to_vec(),
            })
            .collect(),
        removed: u.removed.clone(),
        content_sha256: u.sha256.to_vec(),
    }
    .encoded_len()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn kib(bytes: usize) -> f64 {
    bytes as f64 / 1024.0
}

/// Part 1: bytes, and the controller's and a follower's work, in memory.
fn in_memory(id: &str, topology: &Topology, followers: usize) {
    let Some((before, after)) = drain_pair(topology) else {
        return;
    };
    let t = Instant::now();
    let full = PlanContent::encode(&before);
    let encode = t.elapsed();
    let t = Instant::now();
    let next = PlanContent::encode(&after);
    let sha = next.sha256();
    let delta = full.delta_to(&next);
    let publish = t.elapsed();
    let v1 = PlanVersion {
        epoch: 1,
        sequence: 1,
    };
    let v2 = PlanVersion {
        epoch: 1,
        sequence: 2,
    };
    let first = full_update(v1, Timestamp(0), &full);
    let update = Update {
        version: v2,
        computed_at: Timestamp(1),
        base: Some(v1),
        changed: delta.changed.clone(),
        removed: delta.removed.clone(),
        sha256: sha,
    };
    let (full_bytes, delta_bytes) = (wire(&first), wire(&update));

    let mut fs: Vec<Follower> = (0..followers).map(|_| Follower::default()).collect();
    let t = Instant::now();
    for f in &mut fs {
        if f.apply(&first).is_err() {
            eprintln!("{id}: full plan refused");
            return;
        }
    }
    let full_apply = t.elapsed() / followers.max(1) as u32;
    let t = Instant::now();
    for f in &mut fs {
        if f.apply(&update) != Ok(Applied::New) {
            eprintln!("{id}: delta refused");
            return;
        }
    }
    let apply = t.elapsed() / followers.max(1) as u32;
    let t = Instant::now();
    let plan = fs.first().and_then(Follower::plan);
    let copy = t.elapsed();
    if plan.map(|p| p.body) != Some(after) {
        eprintln!("{id}: the follower's plan differs from the controller's");
        return;
    }
    println!(
        "{id:<36} full {:>9.1} KiB, {:>6} entries; one PoP drain: delta {:>6.1} KiB, {:>3} entries ({:.2}% of full)",
        kib(full_bytes),
        full.entries.len(),
        kib(delta_bytes),
        delta.changed.len() + delta.removed.len(),
        100.0 * delta_bytes as f64 / full_bytes.max(1) as f64,
    );
    println!(
        "{:<36} controller: encode {:.1} ms, encode+hash+diff of the new plan {:.1} ms; follower: full apply {:.1} ms, delta apply {:.3} ms, plan copy {:.1} ms",
        "",
        ms(encode),
        ms(publish),
        ms(full_apply),
        ms(apply),
        ms(copy),
    );
}

/// Explain is not part of the feed.
struct NoExplainer;

impl Explainer for NoExplainer {
    fn explain(&self, _: &str, _: &str, _: ipnet::IpNet) -> Result<Explanation, ApiError> {
        Err(ApiError::Unavailable("not in this bench".into()))
    }
}

/// What a subscriber reports for each version it accepts.
struct Held {
    subscriber: usize,
    sequence: u64,
    bytes: usize,
    /// The follower verified and holds the version.
    held: Instant,
    /// ... and, when asked to, the plan to serve was copied out (as an
    /// edge publishes it).
    ready: Instant,
}

async fn subscriber(
    i: usize,
    addr: std::net::SocketAddr,
    copy_plan: Arc<AtomicBool>,
    report: mpsc::UnboundedSender<Held>,
) -> Result<(), String> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("subscriber {i}: cannot connect: {e}"))?;
    let mut client =
        OperatorClient::new(channel).max_decoding_message_size(plan_feed::MAX_PLAN_MESSAGE_BYTES);
    let mut stream = client
        .subscribe_plan(SubscribePlanRequest {
            subscriber: format!("edge-{i}"),
        })
        .await
        .map_err(|s| format!("subscriber {i}: {s}"))?
        .into_inner();
    let mut follower = Follower::default();
    while let Some(msg) = stream
        .message()
        .await
        .map_err(|s| format!("subscriber {i}: {s}"))?
    {
        let bytes = msg.encoded_len();
        let update = plan_feed::update_from_pb(msg)?;
        match follower.apply(&update) {
            Ok(Applied::New) => {}
            Ok(Applied::Same) => continue,
            Err(refusal) => return Err(format!("subscriber {i}: {refusal}")),
        }
        let held = Instant::now();
        if copy_plan.load(Ordering::Relaxed) {
            drop(follower.plan());
        }
        let ready = Instant::now();
        let _ = report.send(Held {
            subscriber: i,
            sequence: update.version.sequence,
            bytes,
            held,
            ready,
        });
    }
    Ok(())
}

/// User + system CPU of the whole process.
fn process_cpu() -> Duration {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec().max(0) as u64)
                    + Duration::from_micros(t.tv_usec().max(0) as u64)
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// On-CPU time of this process's threads whose name starts with `prefix`
/// (`/proc/self/task/*/schedstat`, nanoseconds).
fn threads_cpu(prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ns = 0u64;
    for task in tasks.flatten() {
        let path = task.path();
        let named = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|c| c.trim_end().starts_with(prefix));
        if !named {
            continue;
        }
        ns += std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0);
    }
    Duration::from_nanos(ns)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Waits for every subscriber to report `sequence`; returns the reports.
async fn wait_all(
    rx: &mut mpsc::UnboundedReceiver<Held>,
    subscribers: usize,
    sequence: u64,
) -> Result<Vec<Held>, String> {
    let mut got: Vec<Option<Held>> = (0..subscribers).map(|_| None).collect();
    let mut left = subscribers;
    while left > 0 {
        let h = tokio::time::timeout(Duration::from_secs(600), rx.recv())
            .await
            .map_err(|_| format!("{left} subscribers did not reach version {sequence}"))?
            .ok_or("every subscriber ended")?;
        if h.sequence != sequence {
            continue;
        }
        if let Some(slot) = got.get_mut(h.subscriber)
            && slot.is_none()
        {
            *slot = Some(h);
            left -= 1;
        }
    }
    Ok(got.into_iter().flatten().collect())
}

fn percentiles(mut d: Vec<Duration>) -> (Duration, Duration) {
    d.sort();
    let p50 = d.get(d.len() / 2).copied().unwrap_or_default();
    (p50, d.last().copied().unwrap_or_default())
}

/// Part 2: the real feed over gRPC to `subscribers` followers.
fn over_grpc(topology: &Topology, subscribers: usize) -> Result<(), String> {
    let (before, after) = drain_pair(topology).ok_or("no PoP to drain")?;
    let plan = |version, body| {
        Arc::new(Plan {
            version,
            computed_at: Timestamp::from_unix_ms(version as i64),
            body,
        })
    };
    let (plans_tx, plans_rx) = watch::channel(plan(1, before.clone()));
    // The controller: its own runtime, so its threads' CPU can be told
    // from the subscribers'.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ctl-rt")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (api_tx, _api_rx) = mpsc::channel(1);
    let operator = OperatorService::new(api_tx, plans_rx, Arc::new(NoExplainer), None);
    let server = tonic::transport::Server::builder()
        .add_service(tonic::service::interceptor::InterceptedService::new(
            OperatorServer::new(operator)
                .max_encoding_message_size(plan_feed::MAX_PLAN_MESSAGE_BYTES),
            interceptor(None),
        ))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    server_rt.spawn(server);

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("edge-rt")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    client_rt.block_on(async {
        let (report_tx, mut report_rx) = mpsc::unbounded_channel();
        let copy_plan = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        for i in 0..subscribers {
            let (report, copy_plan) = (report_tx.clone(), copy_plan.clone());
            tokio::spawn(async move {
                if let Err(e) = subscriber(i, addr, copy_plan, report).await {
                    eprintln!("{e}");
                }
            });
        }
        let full = wait_all(&mut report_rx, subscribers, 1).await?;
        let full_time = full.iter().map(|h| h.held - t0).max().unwrap_or_default();
        let full_bytes = full.first().map_or(0, |h| h.bytes);
        println!(
            "gRPC, {subscribers} subscribers: full sync {:.1} KiB each ({:.1} MiB in all), all held after {:.1} s; RSS {:.0} MiB",
            kib(full_bytes),
            (full_bytes * subscribers) as f64 / 1048576.0,
            full_time.as_secs_f64(),
            rss_mib(),
        );
        // The drain, then the undrain (the plan before): the first with
        // followers that only verify and hold, the second with each also
        // copying out the plan to serve, as an edge publishes it.
        for (sequence, body, copy) in [(2, after, false), (3, before, true)] {
            // Let connections settle before the measured publication.
            tokio::time::sleep(Duration::from_millis(500)).await;
            copy_plan.store(copy, Ordering::Relaxed);
            let (cpu0, ctl0) = (process_cpu(), threads_cpu("ctl-rt"));
            let t = Instant::now();
            plans_tx.send_replace(plan(sequence, body));
            let delta = wait_all(&mut report_rx, subscribers, sequence).await?;
            let (cpu, ctl) = (process_cpu() - cpu0, threads_cpu("ctl-rt") - ctl0);
            let delta_bytes = delta.first().map_or(0, |h| h.bytes);
            let (p50, max) = percentiles(
                delta
                    .iter()
                    .map(|h| if copy { h.ready } else { h.held } - t)
                    .collect(),
            );
            println!(
                "{}: delta {:.1} KiB each ({:.2}% of full); from publication until every subscriber {}: p50 {:.0} ms, max {:.0} ms; CPU: process {:.0} ms (controller and {subscribers} subscribers: one process), controller runtime threads {:.0} ms",
                if copy { "one PoP undrain" } else { "one PoP drain" },
                kib(delta_bytes),
                100.0 * delta_bytes as f64 / full_bytes.max(1) as f64,
                if copy {
                    "held it and copied out the plan to serve"
                } else {
                    "held it (verified)"
                },
                ms(p50),
                ms(max),
                ms(cpu),
                ms(ctl),
            );
        }
        Ok::<(), String>(())
    })?;
    // Subscribers first, so none reports the server going away.
    client_rt.shutdown_background();
    server_rt.shutdown_background();
    Ok(())
}

fn main() {
    let subscribers: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let config = match steer_config::load_steerd(&quickstart_path()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("quickstart config does not load: {e}");
            std::process::exit(2);
        }
    };
    let sized = synthetic_topology(&config.topology, 500, 2, 50);
    // A few followers suffice for a per-follower time; the gRPC part has
    // the real number.
    let followers = subscribers.clamp(1, 10);
    in_memory("quickstart", &config.topology, followers);
    in_memory(
        "synthetic_200pops_20regions_10svc",
        &synthetic_topology(&config.topology, 20, 10, 10),
        followers,
    );
    in_memory("sized_1000pops_500regions_50svc", &sized, followers);
    if let Err(e) = over_grpc(&sized, subscribers) {
        eprintln!("gRPC distribution: {e}");
        std::process::exit(1);
    }
}
