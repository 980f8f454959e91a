//! Demand per region comes from the DNS answers steerd served and the PoP
//! loads agents report, and status and explain say so: through the real
//! steerd, dig with ECS, the gRPC ingest and steerctl.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Steerd, http_get, poll};

/// One report per PoP with the given load, all at `sequence`.
fn report(s: &Steerd, sequence: u64, loads: &[(&str, f64)]) {
    common::report_up_at(&s.endpoint(), sequence, loads);
}

/// Asks for app's A record from `count` ECS /24s under `base` (a.b).
fn ask_from(s: &Steerd, base: &str, count: u32) {
    let subnets: Vec<String> = (0..count)
        .map(|i| format!("+subnet={base}.{i}.0/24"))
        .collect();
    // One dig process, one query per subnet.
    let mut args: Vec<&str> = Vec::new();
    for subnet in &subnets {
        args.extend(["app.example.test", "A", subnet.as_str(), "+short"]);
    }
    let out = s.dig(&args);
    assert!(out.lines().count() >= count as usize, "{out}");
}

const LOADS: [(&str, f64); 6] = [
    ("fra1", 3000.0),
    ("ams1", 3000.0),
    ("iad1", 2000.0),
    ("ord1", 2000.0),
    ("sin1", 1000.0),
    ("bom1", 1000.0),
];

#[test]
fn demand_comes_from_answers_served_and_status_says_so() {
    let s = Steerd::start("demand");
    report(&s, 1, &LOADS);
    // EU and US clients ask; nobody in ap-south does.
    ask_from(&s, "10.1", 20);
    ask_from(&s, "10.2", 20);
    // The answers are sampled once a second; later reports are explained
    // by them.
    let mut sequence = 1;
    let status = poll(Duration::from_secs(10), || {
        sequence += 1;
        report(&s, sequence, &LOADS);
        let (_, body) = http_get(s.http, "/status")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let eu = v["regions"]
            .as_array()?
            .iter()
            .find(|r| r["region"] == "eu-west")?
            .clone();
        if eu["demand_source"] == "answers" {
            Some(v)
        } else {
            std::thread::sleep(Duration::from_millis(300));
            None
        }
    })
    .unwrap_or_else(|| {
        panic!(
            "demand never came from answers: {:?}",
            http_get(s.http, "/status")
        )
    });
    let region = |id: &str| {
        status["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["region"] == id)
            .unwrap()
            .clone()
    };
    // EU clients hold fra1+ams1, US clients iad1+ord1: each region's
    // demand is its PoPs' load.
    let eu = region("eu-west");
    let us = region("us-east");
    assert!(
        (eu["demand_rps"].as_f64().unwrap() - 6000.0).abs() < 60.0,
        "{eu}"
    );
    assert!(
        (us["demand_rps"].as_f64().unwrap() - 4000.0).abs() < 40.0,
        "{us}"
    );
    assert!(eu["demand_answers"].as_u64().unwrap() >= 20, "{eu}");
    assert!(
        eu["demand_detail"]
            .as_str()
            .unwrap()
            .starts_with("PoP load reports attributed by"),
        "{eu}"
    );
    // ap-south's PoPs carry load nobody was answered for: it stays with
    // their own region, marked as not from answers.
    let ap = region("ap-south");
    assert_eq!(ap["demand_source"], "plan_shares", "{ap}");

    let text = String::from_utf8_lossy(&s.steerctl(&["status"]).stdout).into_owned();
    assert!(
        text.contains("demand eu-west: 6000 rps (PoP load reports attributed by"),
        "{text}"
    );
    let explain = String::from_utf8_lossy(
        &s.steerctl(&["explain", "app.example.test", "--client", "10.1.7.0/24"])
            .stdout,
    )
    .into_owned();
    assert!(
        explain.contains("6000 rps (PoP load reports attributed by")
            && explain.contains("answer(s) served to these clients"),
        "{explain}"
    );
}

/// Reports for `pop` with `load` attributed to client regions as given.
fn report_by_region(s: &Steerd, sequence: u64, pop: &str, load: f64, by: &[(&str, f64)]) -> bool {
    use steer_proto::v1::{HealthReport, health_ingest_client::HealthIngestClient};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = HealthIngestClient::connect(s.endpoint()).await.unwrap();
        let report = HealthReport {
            load_rps: load,
            agent_instance: 7,
            region_load_rps: by.iter().map(|(r, l)| ((*r).to_owned(), *l)).collect(),
            ..common::app_report(pop, sequence, true)
        };
        let mut acks = client
            .report(tokio_stream::iter([report]))
            .await
            .unwrap()
            .into_inner();
        match tokio_stream::StreamExt::next(&mut acks).await {
            Some(Ok(ack)) => ack.accepted,
            _ => false,
        }
    })
}

#[test]
fn agents_attribute_load_to_client_regions_and_demand_follows_it() {
    let s = Steerd::start("region-load");
    let dir = common::temp_dir("region-load-agent");
    // A real agent for fra1: its load_command says a third of fra1's load
    // comes from US clients (anycast, say), whatever DNS answered.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = dir.join("agent-fra1.toml");
    std::fs::write(
        &config,
        format!(
            "pop = \"fra1\"\nsteerd = [\"{}\"]\nreport_interval = \"300ms\"\ncapacity_rps = 10000\n\
             load_command = [\"sh\", \"-c\", \"echo load_rps=3000 region_load.eu-west=2000 \
             region_load.us-east=1000 region_load.mars=1\"]\nload_interval = \"300ms\"\n\
             [[probes]]\nname = \"app-tcp\"\nservice = \"app\"\nkind = \"tcp\"\n\
             target = \"{}\"\ninterval = \"300ms\"\ntimeout = \"200ms\"\n",
            s.endpoint(),
            probe.local_addr().unwrap()
        ),
    )
    .unwrap();
    let _agent = common::Proc::spawn(
        std::process::Command::new(common::AGENT)
            .arg("--config")
            .arg(&config),
        dir.join("agent.log"),
    );
    ask_from(&s, "10.1", 20);
    ask_from(&s, "10.2", 20);
    let mut sequence = 0;
    let status = poll(Duration::from_secs(15), || {
        sequence += 1;
        for (pop, load, by) in [
            ("ams1", 3000.0, &[("eu-west", 3000.0)][..]),
            ("iad1", 2000.0, &[("us-east", 2000.0)][..]),
            ("ord1", 2000.0, &[("us-east", 2000.0)][..]),
            ("sin1", 0.0, &[][..]),
            ("bom1", 0.0, &[][..]),
        ] {
            assert!(
                report_by_region(&s, sequence, pop, load, by),
                "{pop} refused"
            );
        }
        let (_, body) = http_get(s.http, "/status")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let regions = v["regions"].as_array()?.clone();
        // Until the agent's load_command has run, fra1 reports no load.
        let done = ["eu-west", "us-east"].iter().all(|id| {
            regions.iter().any(|r| {
                r["region"] == *id
                    && r["demand_source"] == "region_load"
                    && r["demand_rps"]
                        .as_f64()
                        .is_some_and(|d| (d - 5000.0).abs() < 50.0)
            })
        });
        if done {
            Some(regions)
        } else {
            std::thread::sleep(Duration::from_millis(300));
            None
        }
    })
    .unwrap_or_else(|| {
        panic!(
            "demand never came from region load: {:?}",
            http_get(s.http, "/status")
        )
    });
    let region = |id: &str| regions_find(&status, id);
    // EU clients sent fra1 2000 and ams1 3000; US clients 1000 at fra1 and
    // 2000 each at iad1 and ord1. By answers alone it would be 6000/4000.
    let (eu, us) = (region("eu-west"), region("us-east"));
    assert!(
        (eu["demand_rps"].as_f64().unwrap() - 5000.0).abs() < 50.0,
        "{eu}"
    );
    assert!(
        (us["demand_rps"].as_f64().unwrap() - 5000.0).abs() < 50.0,
        "{us}"
    );
    assert!(
        eu["demand_detail"]
            .as_str()
            .unwrap()
            .starts_with("load these clients sent, as agents at 2 PoP(s) attribute it"),
        "{eu}"
    );
    // A report claiming more by region than its load is refused.
    assert!(!report_by_region(
        &s,
        sequence + 1,
        "ams1",
        100.0,
        &[("eu-west", 300.0)]
    ));
    let explain = String::from_utf8_lossy(
        &s.steerctl(&["explain", "app.example.test", "--client", "10.2.7.0/24"])
            .stdout,
    )
    .into_owned();
    assert!(explain.contains("as agents at"), "{explain}");
}

fn regions_find(regions: &[serde_json::Value], id: &str) -> serde_json::Value {
    regions.iter().find(|r| r["region"] == id).unwrap().clone()
}
