//! Controllers on etcd (issue 12): a real three-member etcd on loopback,
//! two `--role controller` steerds and two `--role edge` steerds, driven
//! with steerctl and dig. Leader loss (kill -9 and SIGSTOP past the
//! lease), etcd quorum loss, the whole control plane gone, and how fast
//! a hundred drains reach every edge.

#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../steer-store/tests/support/etcd_cluster.rs"]
mod etcd_cluster;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{STEERCTL, dig, free_port, node::Node, poll, temp_dir};
use etcd_cluster::Cluster;

const BOTH: [&str; 2] = ["192.0.2.11", "192.0.2.12"];
const AMS_ONLY: [&str; 1] = ["192.0.2.12"];
/// `[cluster] lease_ttl` in these tests.
const LEASE_TTL: Duration = Duration::from_secs(2);

/// The quickstart plus `[cluster]` (this etcd) and `[edge]` (these
/// controllers): controllers and edges all run from this one file.
fn cluster_config(dir: &Path, etcd: &[String], controllers: &[u16]) -> PathBuf {
    let quickstart = std::fs::read_to_string(common::quickstart()).unwrap();
    let quoted = |items: Vec<String>| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let controllers = quoted(
        controllers
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect(),
    );
    let path = dir.join("steer.toml");
    std::fs::write(
        &path,
        format!(
            "{quickstart}\n[cluster]\netcd = [{}]\nlease_ttl = \"{}s\"\n\n[edge]\ncontrollers = [{controllers}]\n",
            quoted(etcd.to_vec()),
            LEASE_TTL.as_secs()
        ),
    )
    .unwrap();
    path
}

fn role(node: &Node) -> String {
    node.status()["cluster"]["role"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `epoch.sequence` as a pair.
fn version(text: &serde_json::Value) -> Option<(u64, u64)> {
    let (e, s) = text.as_str()?.split_once('.')?;
    Some((e.parse().ok()?, s.parse().ok()?))
}

/// The plan version a controller serves its edges.
fn served(node: &Node) -> Option<(u64, u64)> {
    version(&node.status()["cluster"]["plan_version"])
}

/// The plan version an edge holds.
fn held(edge: &Node) -> Option<(u64, u64)> {
    common::http_get(edge.http, "/status")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| version(&v["edge"]["plan_version"]))
}

/// Which of `nodes` leads, once exactly one says so.
fn wait_leader(nodes: &[&Node], within: Duration) -> usize {
    let found = poll(within, || {
        let leaders: Vec<usize> = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| role(n) == "leader")
            .map(|(i, _)| i)
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    });
    found.unwrap_or_else(|| {
        panic!(
            "no single leader within {within:?}:\n{}",
            nodes
                .iter()
                .map(|n| n.proc.log_text())
                .collect::<Vec<_>>()
                .join("\n----\n")
        )
    })
}

fn steerctl(grpc: u16, args: &[&str]) -> std::process::Output {
    Command::new(STEERCTL)
        .arg("--endpoint")
        .arg(format!("http://127.0.0.1:{grpc}"))
        .args(args)
        .output()
        .unwrap()
}

/// Queries every edge in a loop while it runs: every query must be
/// answered, and no edge's plan version may ever go backwards.
struct Watch {
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Watch {
    fn start(edges: Vec<(u16, u16)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, f) = (stop.clone(), failures.clone());
        let thread = std::thread::spawn(move || {
            let mut queries = 0u64;
            let mut last: Vec<Option<(u64, u64)>> = vec![None; edges.len()];
            while !s.load(Ordering::Relaxed) {
                for (i, (dns, http)) in edges.iter().enumerate() {
                    let out = dig(
                        *dns,
                        &["app.example.test", "A", "+subnet=10.1.0.0/24", "+short"],
                    );
                    queries += 1;
                    if !out.lines().any(|l| l.starts_with("192.0.2.")) {
                        f.lock()
                            .unwrap()
                            .push(format!("edge {i}: no answer: {out:?}"));
                    }
                    let now = common::http_get(*http, "/status")
                        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
                        .and_then(|v| version(&v["edge"]["plan_version"]));
                    if let (Some(before), Some(now)) = (last[i], now)
                        && now < before
                    {
                        f.lock().unwrap().push(format!(
                            "edge {i}: plan went back from {before:?} to {now:?}"
                        ));
                    }
                    if now.is_some() {
                        last[i] = now;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            queries
        });
        Self {
            stop,
            failures,
            thread: Some(thread),
        }
    }

    /// Stops; returns how many queries were made, panics on any failure.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let queries = self.thread.take().map_or(0, |t| t.join().unwrap());
        let failures = self.failures.lock().unwrap().clone();
        assert!(failures.is_empty(), "{failures:#?}");
        queries
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn signal(node: &Node, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &node.proc.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig}");
}

#[test]
fn a_new_leader_takes_over_and_a_deposed_one_reaches_no_edge() {
    let etcd = Cluster::start();
    let dir = temp_dir("cluster-failover");
    let ports = [free_port(), free_port()];
    let config = cluster_config(&dir, &etcd.endpoints(), &ports);
    let mut controllers: Vec<Option<Node>> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| Some(Node::controller(&config, &dir.join(format!("c{i}")), *p)))
        .collect();
    let all = |c: &[Option<Node>]| -> Vec<usize> {
        c.iter()
            .enumerate()
            .filter(|(_, n)| n.is_some())
            .map(|(i, _)| i)
            .collect()
    };
    let leader = {
        let nodes: Vec<&Node> = controllers.iter().flatten().collect();
        wait_leader(&nodes, Duration::from_secs(20))
    };
    let follower = 1 - leader;
    let edges = [
        Node::edge(&config, &dir.join("edge-a")),
        Node::edge(&config, &dir.join("edge-b")),
    ];
    for e in &edges {
        e.wait_answers(&BOTH, Duration::from_secs(15));
    }

    // A drain through the follower: it says who leads, steerctl goes there.
    let out = steerctl(
        ports[follower],
        &["drain", "pop", "fra1", "--reason", "cluster test"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("sending to the leader"), "{stderr}");
    for e in &edges {
        e.wait_answers(&AMS_ONLY, Duration::from_secs(5));
    }
    let first_epoch = held(&edges[0]).unwrap().0;
    let watch = Watch::start(edges.iter().map(|e| (e.dns, e.http)).collect());

    // kill -9 the leader: the follower publishes under a new term within
    // lease_ttl + 2 s.
    let killed = Instant::now();
    drop(controllers[leader].take());
    let survivor = controllers[follower].as_ref().unwrap();
    let took_over = poll(LEASE_TTL + Duration::from_secs(2), || {
        served(survivor)
            .filter(|(epoch, _)| *epoch > first_epoch)
            .map(|_| killed.elapsed())
    });
    assert!(
        took_over.is_some(),
        "no new leader's plan within {:?}:\n{}",
        LEASE_TTL + Duration::from_secs(2),
        survivor.proc.log_text()
    );
    eprintln!(
        "new leader published {:?} after the kill",
        took_over.unwrap()
    );
    assert_eq!(role(survivor), "leader");
    // A drain through the survivor reaches both edges (each fails over to
    // it from the dead controller if it was there).
    survivor.steerctl(&["undrain", "pop", "fra1", "--reason", "after failover"]);
    for e in &edges {
        e.wait_answers(&BOTH, Duration::from_secs(15));
        assert!(held(e).unwrap().0 > first_epoch);
    }

    // The killed controller comes back as a follower.
    controllers[leader] = Some(Node::controller(
        &config,
        &dir.join(format!("c{leader}")),
        ports[leader],
    ));
    let returned = controllers[leader].as_ref().unwrap();
    assert_eq!(role(returned), "follower");
    assert_eq!(all(&controllers).len(), 2);

    // SIGSTOP the leader past its lease: the other takes over.
    let paused = controllers[follower].as_ref().unwrap();
    let paused_epoch = served(paused).unwrap().0;
    signal(paused, "-STOP");
    let resumed_term = poll(Duration::from_secs(15), || {
        served(returned).filter(|(e, _)| *e > paused_epoch)
    });
    assert!(
        resumed_term.is_some(),
        "no takeover from a paused leader:\n{}",
        returned.proc.log_text()
    );
    returned.steerctl(&["drain", "pop", "fra1", "--reason", "while paused"]);
    for e in &edges {
        // Edges on the paused controller notice it is hung (HTTP/2 pings)
        // and fail over.
        e.wait_answers(&AMS_ONLY, Duration::from_secs(25));
    }
    // SIGCONT: the deposed leader notices and follows; none of its plans
    // (older epoch) reaches an edge, which the watch checks throughout.
    signal(paused, "-CONT");
    let follows = poll(Duration::from_secs(10), || {
        (role(paused) == "follower").then_some(())
    });
    assert!(follows.is_some(), "{}", paused.proc.log_text());
    let knows = poll(Duration::from_secs(5), || {
        paused.status()["cluster"]["leader"]["node"]
            .as_str()
            .is_some_and(|n| n.ends_with(&format!(":{}", returned.grpc)))
            .then_some(())
    });
    assert!(knows.is_some(), "{}", paused.status());
    assert!(
        paused
            .metric("steer_cluster_leadership_lost_total")
            .unwrap_or(0.0)
            >= 1.0
    );
    // A change sent to it is not made by it: it names the leader.
    let out = steerctl(
        paused.grpc,
        &[
            "undrain",
            "pop",
            "fra1",
            "--reason",
            "via the deposed leader",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("sending to the leader"), "{stderr}");
    for e in &edges {
        e.wait_answers(&BOTH, Duration::from_secs(15));
        assert_eq!(held(e).unwrap().0, resumed_term.unwrap().0);
    }
    let queries = watch.finish();
    eprintln!("{queries} queries to the edges during failovers, all answered");
}

#[test]
fn edges_serve_through_quorum_loss_and_without_any_controller() {
    let mut etcd = Cluster::start();
    let dir = temp_dir("cluster-static");
    let ports = [free_port(), free_port()];
    let config = cluster_config(&dir, &etcd.endpoints(), &ports);
    let c0 = Node::controller(&config, &dir.join("c0"), ports[0]);
    let c1 = Node::controller(&config, &dir.join("c1"), ports[1]);
    let leader = wait_leader(&[&c0, &c1], Duration::from_secs(20));
    let edges = [
        Node::edge(&config, &dir.join("edge-a")),
        Node::edge(&config, &dir.join("edge-b")),
    ];
    for e in &edges {
        e.wait_answers(&BOTH, Duration::from_secs(15));
    }
    c0.steerctl(&["drain", "pop", "fra1", "--reason", "before the outage"]);
    for e in &edges {
        e.wait_answers(&AMS_ONLY, Duration::from_secs(5));
    }
    let watch = Watch::start(edges.iter().map(|e| (e.dns, e.http)).collect());

    // Two of three etcd members gone: changes are refused, saying why;
    // edges keep serving what they have.
    etcd.kill(1);
    etcd.kill(2);
    let target = [&c0, &c1][leader];
    let refused = steerctl(
        target.grpc,
        &["undrain", "pop", "fra1", "--reason", "during quorum loss"],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a change applied without quorum");
    eprintln!("refused without quorum: {}", stderr.trim());
    assert!(
        stderr.contains("etcd") && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    // Once the lease is surely gone, neither controller claims to lead,
    // and both refuse with etcd named.
    let none_lead = poll(Duration::from_secs(15), || {
        (role(&c0) != "leader" && role(&c1) != "leader").then_some(())
    });
    assert!(
        none_lead.is_some(),
        "a controller still leads without quorum"
    );
    for c in [&c0, &c1] {
        let out = steerctl(c.grpc, &["undrain", "pop", "fra1", "--reason", "no quorum"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "applied without quorum");
        assert!(stderr.contains("unavailable"), "{stderr}");
    }
    for e in &edges {
        assert_eq!(e.answers(), AMS_ONLY);
    }

    // etcd comes back: nobody acts, a leader is elected and the next
    // change applies.
    etcd.spawn(1);
    etcd.spawn(2);
    let applied = poll(Duration::from_secs(30), || {
        let out = steerctl(
            c1.grpc,
            &["undrain", "pop", "fra1", "--reason", "recovered"],
        );
        out.status.success().then_some(())
    });
    assert!(
        applied.is_some(),
        "no change applied after etcd recovered:\n{}",
        c1.proc.log_text()
    );
    for e in &edges {
        e.wait_answers(&BOTH, Duration::from_secs(10));
    }

    // Every controller gone: edges answer unchanged for 60 s.
    drop(c0);
    drop(c1);
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        for e in &edges {
            assert_eq!(e.answers(), BOTH);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let queries = watch.finish();
    eprintln!("{queries} queries answered through quorum loss and controller loss");
    // An edge restarted with no controller answers from its saved plan.
    let [a, _b] = edges;
    let a = a.restart("edge");
    a.wait_answers(&BOTH, Duration::from_secs(5));
    assert_eq!(a.status()["edge"]["plan_source"], "saved");
}

#[test]
fn a_hundred_drains_each_reach_every_edge_quickly() {
    let etcd = Cluster::start();
    let dir = temp_dir("cluster-converge");
    let ports = [free_port(), free_port()];
    let config = cluster_config(&dir, &etcd.endpoints(), &ports);
    let c0 = Node::controller(&config, &dir.join("c0"), ports[0]);
    let c1 = Node::controller(&config, &dir.join("c1"), ports[1]);
    let leader = [&c0, &c1][wait_leader(&[&c0, &c1], Duration::from_secs(20))];
    let edges = [
        Node::edge(&config, &dir.join("edge-a")),
        Node::edge(&config, &dir.join("edge-b")),
    ];
    for e in &edges {
        e.wait_answers(&BOTH, Duration::from_secs(15));
    }
    let mut took = Vec::with_capacity(100);
    for i in 0..100 {
        let verb = if i % 2 == 0 { "drain" } else { "undrain" };
        let out = steerctl(
            leader.grpc,
            &[
                "--output",
                "json",
                verb,
                "pop",
                "fra1",
                "--reason",
                "convergence",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let wanted = reply["plan_version"].as_u64().unwrap();
        let sent = Instant::now();
        // Polled every 2 ms (not `poll`'s 50): this is the measurement.
        let mut reached = None;
        while sent.elapsed() < Duration::from_secs(10) {
            if edges
                .iter()
                .all(|e| held(e).is_some_and(|(_, seq)| seq >= wanted))
            {
                reached = Some(sent.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        took.push(
            reached.unwrap_or_else(|| panic!("drain {i} (v{wanted}) never reached both edges")),
        );
    }
    took.sort();
    let p50 = took[49];
    let p99 = took[98];
    eprintln!(
        "convergence of 100 changes to 2 edges: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        took[99].as_secs_f64() * 1e3
    );
    assert!(p50 < Duration::from_secs(1), "p50 {p50:?}");
    assert!(p99 < Duration::from_secs(2), "p99 {p99:?}");
}

#[test]
fn a_controller_waits_for_etcd_and_role_all_refuses_a_cluster() {
    let mut etcd = Cluster::start();
    let dir = temp_dir("cluster-start");
    let port = free_port();
    let config = cluster_config(&dir, &etcd.endpoints(), &[port]);

    // --role all keeps its own state: a [cluster] table is a mistake.
    let out = Command::new(common::STEERD)
        .args(["--role", "all", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.join("all"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("[cluster] is for controllers") && stderr.contains("steer.toml"),
        "{stderr}"
    );

    // etcd is down when the controller starts: it waits, then leads once
    // etcd is back, with nobody restarting it.
    for i in 0..3 {
        etcd.kill(i);
    }
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        for i in 0..3 {
            etcd.spawn(i);
        }
        etcd
    });
    let c = Node::controller(&config, &dir.join("c0"), port);
    let _etcd = restarter.join().unwrap();
    wait_leader(&[&c], Duration::from_secs(20));
    assert!(
        c.proc.log_text().contains("cannot"),
        "no word about waiting for etcd:\n{}",
        c.proc.log_text()
    );
    c.steerctl(&["drain", "pop", "fra1", "--reason", "after a late etcd"]);
}
