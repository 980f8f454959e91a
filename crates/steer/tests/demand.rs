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
