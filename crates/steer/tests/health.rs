//! Health aggregation end to end: real steer-agent processes probing HTTP
//! and TCP listeners the test owns, peer probes and gray failure, fail
//! static when every agent stops, and the correlated-failure freeze.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::*;
use steer_proto::v1::{HealthReport, health_ingest_client::HealthIngestClient};

const EU: &str = "10.1.0.0/24";
const US: &str = "10.2.0.0/24";
const AP: &str = "10.3.0.0/24";
const POPS: [&str; 6] = ["fra1", "ams1", "iad1", "ord1", "sin1", "bom1"];

/// A tiny HTTP server answering 200 to everything until stopped; stopping
/// closes the listener, so connects are refused.
struct HttpServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    fn start(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
                        let mut buf = [0u8; 1024];
                        let _ = conn.read(&mut buf);
                        let _ = conn.write_all(
                            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhealthy\n",
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes an agent config for `pop` reporting to `grpc`.
fn agent_config(dir: &Path, pop: &str, grpc: u16, body: &str) -> PathBuf {
    let path = dir.join(format!("agent-{pop}.toml"));
    std::fs::write(
        &path,
        format!(
            "pop = \"{pop}\"\nsteerd = [\"http://127.0.0.1:{grpc}\"]\nreport_interval = \"500ms\"\n\
             capacity_rps = 10000\n{body}"
        ),
    )
    .unwrap();
    path
}

fn start_agent(dir: &Path, config: &Path, pop: &str) -> Proc {
    Proc::spawn(
        Command::new(AGENT).arg("--config").arg(config),
        dir.join(format!("agent-{pop}.log")),
    )
}

fn status(s: &Steerd) -> serde_json::Value {
    let (_, body) = http_get(s.http, "/status").unwrap();
    serde_json::from_str(&body).unwrap()
}

fn pop_status(s: &Steerd, pop: &str) -> serde_json::Value {
    status(s)["pops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pop"] == pop)
        .cloned()
        .unwrap()
}

/// Metrics are exported on the control loop's tick: poll for a line.
fn wait_metric(s: &Steerd, line: &str) {
    poll(Duration::from_secs(2), || {
        http_get(s.http, "/metrics")
            .is_some_and(|(_, m)| m.contains(line))
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "metric {line:?} not seen:\n{}",
            http_get(s.http, "/metrics").unwrap_or_default().1
        )
    });
}

/// The quickstart world with `[health]` keys replaced.
fn config_with(dir: &Path, replace: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(quickstart()).unwrap();
    for (from, to) in replace {
        assert!(text.contains(from), "{from} not in quickstart.toml");
        text = text.replace(from, to);
    }
    let path = dir.join("steerd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn killed_http_service_leaves_answers_within_3s_and_returns_after_rise() {
    let dir = temp_dir("health-http");
    let s = Steerd::start_with(quickstart(), dir.join("state"));
    let port = free_port();
    let mut server = HttpServer::start(port);
    let config = agent_config(
        &dir,
        "fra1",
        s.grpc,
        &format!(
            "[[probes]]\nname = \"app-http\"\nservice = \"app\"\nkind = \"http\"\n\
             url = \"http://127.0.0.1:{port}/healthz\"\nbody_contains = \"healthy\"\n\
             interval = \"500ms\"\ntimeout = \"400ms\"\nrise = 2\nfall = 3\n"
        ),
    );
    let agent = start_agent(&dir, &config, "fra1");
    poll(Duration::from_secs(10), || {
        (pop_status(&s, "fra1")["phase"] == "up").then_some(())
    })
    .unwrap_or_else(|| panic!("fra1 never reported up:\n{}", agent.log_text()));
    s.wait_answers(EU, &["192.0.2.11", "192.0.2.12"], Duration::from_secs(1))
        .unwrap();

    let killed = Instant::now();
    server.stop();
    s.wait_answers(EU, &["192.0.2.12"], Duration::from_secs(3))
        .unwrap_or_else(|got| {
            panic!(
                "fra1 still answered 3 s after its service died: {got:?}\n{}",
                agent.log_text()
            )
        });
    let took = killed.elapsed();
    // fall 3 at 500 ms: never before the third failed probe.
    assert!(took >= Duration::from_millis(900), "too fast: {took:?}");
    let fra1 = pop_status(&s, "fra1");
    assert_eq!(fra1["health"], "down");
    assert!(
        fra1["evidence"].as_str().unwrap().contains("app-http"),
        "{fra1}"
    );

    let _server = HttpServer::start(port);
    let restarted = Instant::now();
    s.wait_answers(EU, &["192.0.2.11", "192.0.2.12"], Duration::from_secs(3))
        .unwrap_or_else(|got| panic!("fra1 not back 3 s after restart: {got:?}"));
    // rise 2 at 500 ms: at least one interval after the first success.
    assert!(restarted.elapsed() >= Duration::from_millis(400));
}

/// Observers probe fra1's "VIP" over separate listeners, so each observer's
/// path can be cut on its own while fra1 itself stays healthy.
#[test]
fn gray_failure_needs_a_majority_of_observers() {
    let dir = temp_dir("health-gray");
    let s = Steerd::start_with(quickstart(), dir.join("state"));
    let service = HttpServer::start(free_port());
    let probe = format!(
        "[[probes]]\nname = \"app\"\nservice = \"app\"\nkind = \"tcp\"\n\
         target = \"127.0.0.1:{}\"\ninterval = \"300ms\"\ntimeout = \"250ms\"\n",
        service.port
    );
    let mut agents = vec![start_agent(
        &dir,
        &agent_config(&dir, "fra1", s.grpc, &probe),
        "fra1",
    )];
    let mut paths = Vec::new();
    for observer in ["ams1", "iad1", "ord1"] {
        let path = HttpServer::start(free_port());
        let body = format!(
            "{probe}\n[[peers]]\nname = \"fra1-vip\"\npop = \"fra1\"\nkind = \"tcp\"\n\
             target = \"127.0.0.1:{}\"\ninterval = \"300ms\"\ntimeout = \"250ms\"\n",
            path.port
        );
        let config = agent_config(&dir, observer, s.grpc, &body);
        agents.push(start_agent(&dir, &config, observer));
        paths.push(path);
    }
    let observers_agree = |want_unreachable: usize| {
        poll(Duration::from_secs(10), || {
            let fra1 = pop_status(&s, "fra1");
            let peers = fra1["peers"].as_array().unwrap().clone();
            let down = peers.iter().filter(|p| p["reachable"] == false).count();
            (peers.len() == 3 && down == want_unreachable).then_some(fra1)
        })
        .unwrap_or_else(|| {
            panic!(
                "observers never showed {want_unreachable} unreachable: {}",
                pop_status(&s, "fra1")
            )
        })
    };
    observers_agree(0);
    s.wait_answers(EU, &["192.0.2.11", "192.0.2.12"], Duration::from_secs(2))
        .unwrap();

    // One observer loses its path: nothing changes.
    paths[0].stop();
    let fra1 = observers_agree(1);
    assert_eq!(fra1["phase"], "up", "{fra1}");
    std::thread::sleep(Duration::from_millis(600)); // one more report round from everyone
    assert_eq!(
        s.answers("app.example.test", "A", EU),
        ["192.0.2.11", "192.0.2.12"]
    );

    // A second one: the majority cannot reach fra1, whatever fra1 says.
    paths[1].stop();
    s.wait_answers(EU, &["192.0.2.12"], Duration::from_secs(3))
        .unwrap_or_else(|got| panic!("fra1 not removed on gray failure: {got:?}"));
    let fra1 = pop_status(&s, "fra1");
    assert_eq!(fra1["phase"], "gray-failure", "{fra1}");
    assert!(
        fra1["evidence"]
            .as_str()
            .unwrap()
            .contains("2 of 3 observers"),
        "{fra1}"
    );
    let out = s.steerctl(&["status", "--pop", "fra1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("gray-failure"), "{text}");
    assert_eq!(text.matches("UNREACHABLE").count(), 2, "{text}");
    assert!(text.contains("seen by    ams1"), "{text}");
    wait_metric(
        &s,
        "steer_health_pop_state{pop=\"fra1\",state=\"gray-failure\"} 1",
    );
    for a in &mut agents {
        a.kill();
    }
}

#[test]
fn all_agents_stopping_at_once_is_fail_static() {
    let dir = temp_dir("health-stale");
    let config = config_with(&dir, &[("stale_after = \"10s\"", "stale_after = \"2s\"")]);
    let s = Steerd::start_with(config, dir.join("state"));
    let service = HttpServer::start(free_port());
    let mut agents: Vec<Proc> = POPS
        .iter()
        .map(|pop| {
            let body = format!(
                "[[probes]]\nname = \"app\"\nservice = \"app\"\nkind = \"tcp\"\n\
                 target = \"127.0.0.1:{}\"\ninterval = \"300ms\"\nfall = 3\n",
                service.port
            );
            start_agent(&dir, &agent_config(&dir, pop, s.grpc, &body), pop)
        })
        .collect();
    poll(Duration::from_secs(10), || {
        status(&s)["pops"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["phase"] == "up")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("not every PoP reported up: {}", status(&s)));
    let before: Vec<Vec<String>> = [EU, US, AP]
        .iter()
        .map(|n| s.answers("app.example.test", "A", n))
        .collect();

    for a in &mut agents {
        a.kill();
    }
    poll(Duration::from_secs(6), || {
        let now: Vec<Vec<String>> = [EU, US, AP]
            .iter()
            .map(|n| s.answers("app.example.test", "A", n))
            .collect();
        assert_eq!(now, before, "answers changed while agents were silent");
        status(&s)["pops"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["health"] == "stale-up")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("PoPs never shown stale: {}", status(&s)));
    assert!(status(&s)["frozen"].is_null());
}

fn report(pop: &str, sequence: u64, up: bool) -> HealthReport {
    HealthReport {
        agent_instance: 11,
        ..app_report(pop, sequence, up)
    }
}

fn send(s: &Steerd, reports: Vec<HealthReport>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut client = HealthIngestClient::connect(s.endpoint()).await.unwrap();
            for r in reports {
                let mut acks = client
                    .report(tokio_stream::iter([r]))
                    .await
                    .unwrap()
                    .into_inner();
                let ack = acks.message().await.unwrap().unwrap();
                assert!(ack.accepted, "{ack:?}");
            }
        });
}

#[test]
fn four_of_six_down_at_once_freezes_until_confirmed() {
    let dir = temp_dir("health-freeze");
    let s = Steerd::start_with(quickstart(), dir.join("state"));
    send(&s, POPS.iter().map(|p| report(p, 1, true)).collect());
    let all = [
        ("fra1", "192.0.2.11"),
        ("ams1", "192.0.2.12"),
        ("iad1", "192.0.2.21"),
        ("ord1", "192.0.2.22"),
    ];
    s.wait_answers(EU, &["192.0.2.11", "192.0.2.12"], Duration::from_secs(2))
        .unwrap();
    let out = s.steerctl(&["confirm-failure", "--reason", "nothing frozen"]);
    assert_eq!(out.status.code(), Some(1), "nothing to confirm yet");

    send(&s, all.iter().map(|(p, _)| report(p, 2, false)).collect());
    let frozen = poll(Duration::from_secs(3), || {
        let st = status(&s);
        (!st["frozen"].is_null()).then_some(st)
    })
    .unwrap_or_else(|| panic!("not frozen: {}", status(&s)));
    assert!(
        frozen["frozen"]["why"]
            .as_str()
            .unwrap()
            .contains("turned down within"),
        "{frozen}"
    );
    // The reports before the freeze took effect may have taken a PoP out
    // for a moment; the freeze puts it back at its last good state, which
    // the weight-step rail ramps in (100‰/s). Then answers hold still.
    s.wait_answers(EU, &["192.0.2.11", "192.0.2.12"], Duration::from_secs(15))
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            s.answers("app.example.test", "A", EU),
            ["192.0.2.11", "192.0.2.12"],
            "{}",
            String::from_utf8_lossy(
                &s.steerctl(&["explain", "app.example.test", "--client", EU])
                    .stdout
            )
        );
        assert_eq!(
            s.answers("app.example.test", "A", US),
            ["192.0.2.21", "192.0.2.22"]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_metric(&s, "steer_health_frozen 1");
    let text = String::from_utf8_lossy(&s.steerctl(&["status"]).stdout).into_owned();
    assert!(text.contains("HEALTH FROZEN"), "{text}");
    assert!(s.proc.log_text().contains("correlated failure"));

    let out = s.steerctl(&["confirm-failure", "--reason", "real outage in eu and us"]);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("fra1"), "{printed}");
    // Live health applies again (what answers then do is the policy's
    // business: with a whole region down, its panic mode may serve it).
    poll(Duration::from_secs(2), || {
        let st = status(&s);
        let pops = st["pops"].as_array().unwrap();
        (st["frozen"].is_null()
            && all.iter().all(|(pop, _)| {
                pops.iter()
                    .any(|p| p["pop"] == *pop && p["health"] == "down" && p["phase"] == "down")
            }))
        .then_some(())
    })
    .unwrap_or_else(|| panic!("confirmed failure not applied: {}", status(&s)));
    wait_metric(&s, "steer_health_frozen 0");
    let audit =
        String::from_utf8_lossy(&s.steerctl(&["--output", "json", "audit"]).stdout).into_owned();
    assert!(audit.contains("confirm-failure"), "{audit}");
}

/// Plan versions mean decisions: an agent that goes silent moves the plan
/// when fra1 turns stale and when it is finally treated as down, not on
/// every tick in between while "silent for Ns" counts up (that figure is
/// evidence, shown by /status, never versioned). `steerctl watch` prints
/// exactly those changes.
#[test]
fn a_silent_agent_moves_the_plan_only_when_its_state_changes() {
    let dir = temp_dir("health-silent-versions");
    let config = config_with(
        &dir,
        &[
            ("stale_after = \"10s\"", "stale_after = \"2s\""),
            ("max_stale = \"5m\"", "max_stale = \"6s\""),
        ],
    );
    let s = Steerd::start_with(config, dir.join("state"));
    let port = free_port();
    let _server = HttpServer::start(port);
    let agent_cfg = agent_config(
        &dir,
        "fra1",
        s.grpc,
        &format!(
            "[[probes]]\nname = \"app-http\"\nservice = \"app\"\nkind = \"http\"\n\
             url = \"http://127.0.0.1:{port}/healthz\"\ninterval = \"500ms\"\n\
             timeout = \"400ms\"\nrise = 1\nfall = 3\n"
        ),
    );
    let mut agent = start_agent(&dir, &agent_cfg, "fra1");
    poll(Duration::from_secs(10), || {
        (pop_status(&s, "fra1")["phase"] == "up").then_some(())
    })
    .unwrap_or_else(|| panic!("fra1 never reported up:\n{}", agent.log_text()));

    let watch_log = dir.join("watch.log");
    let mut watch = Proc::spawn(
        Command::new(STEERCTL)
            .arg("--endpoint")
            .arg(s.endpoint())
            .arg("watch"),
        watch_log.clone(),
    );
    poll(Duration::from_secs(5), || {
        watch.log_text().contains("current plan").then_some(())
    })
    .expect("watch printed nothing");
    let before = status(&s)["plan_version"].as_u64().unwrap();
    agent.kill();

    // Stale after 2 s, down after 2 + 6 s; give it a few seconds beyond,
    // during which the silence keeps counting.
    poll(Duration::from_secs(20), || {
        (pop_status(&s, "fra1")["health"] == "down").then_some(())
    })
    .unwrap_or_else(|| panic!("fra1 never went down: {}", pop_status(&s, "fra1")));
    let evidence_then = pop_status(&s, "fra1")["evidence"].clone();
    let down_version = status(&s)["plan_version"].as_u64().unwrap();
    poll(Duration::from_secs(10), || {
        (pop_status(&s, "fra1")["evidence"] != evidence_then).then_some(())
    })
    .unwrap_or_else(|| panic!("evidence did not move: {evidence_then}"));
    let evidence_later = pop_status(&s, "fra1")["evidence"].clone();
    poll(Duration::from_secs(10), || {
        (pop_status(&s, "fra1")["evidence"] != evidence_later).then_some(())
    })
    .unwrap_or_else(|| panic!("evidence did not move: {evidence_later}"));
    let after = status(&s)["plan_version"].as_u64().unwrap();
    assert_eq!(after, down_version, "the plan moved while fra1 stayed down");
    watch.kill();

    let text = watch.log_text();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('v')).collect();
    assert!(
        !text.contains("no visible change"),
        "a version without a decision:\n{text}"
    );
    // current plan, stale-up, down (weights move with it): a handful of
    // versions, not one per tick.
    assert!(
        (3..=5).contains(&lines.len()),
        "{} versions from v{before} while fra1 went silent:\n{text}",
        lines.len()
    );
    assert!(text.contains("fra1 health up -> stale-up"), "{text}");
    assert!(text.contains("fra1 health stale-up -> down"), "{text}");
}
