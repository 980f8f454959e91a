//! Budget-aware steering through the real steerd: agents' SLI counters say
//! fra1 fails 5% of requests while its probes pass; steerd moves half of
//! fra1's traffic to ams1, says why in `/status`, `steerctl explain` and
//! `steerctl slo`, and gives it back once fra1 is clean again.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use steer_proto::v1::{HealthReport, health_ingest_client::HealthIngestClient};

const POPS: [(&str, &str); 6] = [
    ("fra1", "eu-west"),
    ("ams1", "eu-west"),
    ("iad1", "us-east"),
    ("ord1", "us-east"),
    ("sin1", "ap-south"),
    ("bom1", "ap-south"),
];

/// Every PoP's agent, as the gRPC ingest sees it: up, 2,000 rps from its
/// own region's clients, cumulative request counters.
struct Agents {
    rt: tokio::runtime::Runtime,
    client: HealthIngestClient<tonic::transport::Channel>,
    sequence: u64,
    total: u64,
    fra1_failed: u64,
}

impl Agents {
    fn connect(endpoint: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt
            .block_on(HealthIngestClient::connect(endpoint.to_owned()))
            .unwrap();
        Self {
            rt,
            client,
            sequence: 0,
            total: 0,
            fra1_failed: 0,
        }
    }

    /// One report per PoP: 200 more requests each since the last, of which
    /// fra1 fails 10 (5%) when `failing`.
    fn report(&mut self, failing: bool) {
        self.sequence += 1;
        self.total += 200;
        if failing {
            self.fra1_failed += 10;
        }
        for (pop, region) in POPS {
            let mut r = HealthReport {
                load_rps: 2000.0,
                agent_instance: 11,
                region_load_rps: [(region.to_owned(), 2000.0)].into(),
                ..app_report(pop, self.sequence, true)
            };
            let service = &mut r.services[0];
            service.sli_present = true;
            service.requests_total = self.total;
            service.requests_failed = if pop == "fra1" { self.fra1_failed } else { 0 };
            let mut client = self.client.clone();
            let accepted = self.rt.block_on(async move {
                let mut acks = client
                    .report(tokio_stream::iter([r]))
                    .await
                    .ok()?
                    .into_inner();
                tokio_stream::StreamExt::next(&mut acks).await?.ok()
            });
            assert!(
                accepted.is_some_and(|a| a.accepted),
                "report for {pop} refused"
            );
        }
    }
}

fn status(s: &Steerd) -> serde_json::Value {
    let (_, body) = http_get(s.http, "/status").unwrap();
    serde_json::from_str(&body).unwrap()
}

fn pop<'a>(status: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    status["pops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pop"] == id)
        .unwrap()
}

fn shift(s: &Steerd) -> Option<f64> {
    let (_, body) = http_get(s.http, "/metrics")?;
    body.lines()
        .filter(|l| l.starts_with("steer_slo_steering_shift_ratio{"))
        .find(|l| l.contains("pop=\"fra1\"") && l.contains("slo=\"app-steer\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
}

/// Reports every 200 ms until `done` holds (or the deadline passes).
fn report_until<T>(
    agents: &mut Agents,
    failing: bool,
    limit: Duration,
    mut done: impl FnMut() -> Option<T>,
) -> Option<T> {
    poll(limit, || {
        agents.report(failing);
        let got = done();
        if got.is_none() {
            std::thread::sleep(Duration::from_millis(200));
        }
        got
    })
}

#[test]
fn a_pop_burning_the_budget_loses_traffic_until_it_recovers() {
    let dir = temp_dir("slo-steering");
    let config = std::fs::read_to_string(quickstart()).unwrap()
        + "\n[[slos]]\nname = \"app-steer\"\nservice = \"app\"\nobjective = 0.999\nmin_events = 20\n\
           [slos.steering]\nburn_rate = 10\nmax_shift = 0.5\nwindow = \"10s\"\n\n\
           [alerting]\nevaluation_interval = \"1s\"\n";
    std::fs::write(dir.join("steerd.toml"), config).unwrap();
    let s = Steerd::start_with(dir.join("steerd.toml"), dir.join("state"));
    // Registered from the first scrape, at zero.
    assert_eq!(shift(&s), Some(0.0));
    let mut agents = Agents::connect(&s.endpoint());

    // Clean: fra1 and ams1 share eu-west alike.
    let even = report_until(&mut agents, false, Duration::from_secs(15), || {
        let st = status(&s);
        let (f, a) = (
            pop(&st, "fra1")["weight_permille"].as_u64()?,
            pop(&st, "ams1")["weight_permille"].as_u64()?,
        );
        (f == a && f > 0).then_some(f)
    });
    assert_eq!(even, Some(500), "{}", status(&s));

    // fra1 fails 5% of its requests (50x the 0.1% budget); its probes pass.
    let moved = report_until(&mut agents, true, Duration::from_secs(30), || {
        let st = status(&s);
        let f = pop(&st, "fra1")["weight_permille"].as_u64()?;
        (shift(&s) == Some(0.5) && f < 500).then_some(st)
    })
    .unwrap_or_else(|| {
        let metrics = http_get(s.http, "/metrics")
            .map(|m| m.1)
            .unwrap_or_default();
        let lines: Vec<&str> = metrics.lines().filter(|l| l.contains("steering")).collect();
        panic!("no shift: {lines:?}\n{}", status(&s))
    });
    let fra1 = pop(&moved, "fra1");
    assert_eq!(fra1["health"], "up", "probes pass: {fra1}");
    assert!(
        pop(&moved, "ams1")["weight_permille"].as_u64().unwrap() > 500,
        "{moved}"
    );
    let reason = fra1["reason"].as_str().unwrap();
    assert!(
        reason.contains("up to 50% of its traffic moved") && reason.contains("app-steer"),
        "{reason}"
    );
    let explain = String::from_utf8_lossy(
        &s.steerctl(&["explain", "app.example.test", "--client", "10.1.7.0/24"])
            .stdout,
    )
    .into_owned();
    assert!(
        explain.contains("budget burn") && explain.contains("at fra1 (SLO app-steer"),
        "{explain}"
    );
    let slo = String::from_utf8_lossy(&s.steerctl(&["slo"]).stdout).into_owned();
    assert!(
        slo.lines()
            .any(|l| l.contains("app-steer") && l.contains("fra1") && l.ends_with("50%")),
        "{slo}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&s.steerctl(&["--output", "json", "slo"]).stdout).unwrap();
    let steer = json["slos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "app-steer")
        .unwrap();
    let fra1_burn = steer["pops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pop"] == "fra1")
        .unwrap();
    assert_eq!(fra1_burn["shifted_share"], 0.5, "{fra1_burn}");
    assert!(
        fra1_burn["burn_rate"].as_f64().unwrap() > 10.0,
        "{fra1_burn}"
    );

    // Fixed: once the window is clean the share comes back, gradually.
    let mut seen = Vec::new();
    let back = report_until(&mut agents, false, Duration::from_secs(40), || {
        let now = shift(&s)?;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        let st = status(&s);
        (now == 0.0 && pop(&st, "fra1")["weight_permille"].as_u64()? == 500).then_some(())
    });
    assert!(back.is_some(), "not given back: {seen:?} {}", status(&s));
    assert!(
        seen.iter().any(|x| *x > 0.0 && *x < 0.5),
        "given back in steps: {seen:?}"
    );
}
