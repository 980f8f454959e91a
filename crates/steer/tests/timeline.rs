//! The incident timeline through the binaries: health transitions, drains
//! and the plans they made land in one feed that `steerctl timeline`
//! filters and renders (table, Markdown, JSON) and `steerctl handoff`
//! summarises; the feed survives kill -9; bad queries are refused clearly.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Steerd, poll, report_up};

fn stdout(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn events(s: &Steerd, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--output", "json", "timeline", "--since", "1h"];
    all.extend_from_slice(args);
    serde_json::from_str(&stdout(&s.steerctl(&all))).unwrap()
}

#[test]
fn what_happened_is_one_feed_filtered_rendered_and_kept_across_kill9() {
    let s = Steerd::start("timeline");
    // fra1 reports: unknown -> up, with its evidence.
    report_up(&s.endpoint(), &[("fra1", 100.0)]);
    let health = poll(Duration::from_secs(10), || {
        events(&s, &["--kind", "health"]).into_iter().find(|e| {
            e["summary"]
                .as_str()
                .unwrap()
                .starts_with("fra1 unknown -> up")
        })
    })
    .unwrap_or_else(|| panic!("{:#?}", events(&s, &[])));
    assert_eq!(health["scope"], serde_json::json!(["fra1", "eu-west"]));
    assert_eq!(health["principal"], serde_json::Value::Null);

    stdout(&s.steerctl(&["drain", "pop", "ams1", "--reason", "disk swap INC-42"]));
    let feed = events(&s, &["--scope", "ams1"]);
    let drain = feed
        .iter()
        .find(|e| e["kind"] == "intent")
        .unwrap_or_else(|| panic!("{feed:#?}"));
    assert!(
        drain["summary"]
            .as_str()
            .unwrap()
            .contains("drain pop ams1: disk swap INC-42"),
        "{drain}"
    );
    assert!(
        drain["principal"].as_str().unwrap().contains("anonymous"),
        "{drain}"
    );
    // The plan it made, with what moved.
    assert!(
        feed.iter()
            .any(|e| e["kind"] == "plan" && e["summary"].as_str().unwrap().contains("ams1")),
        "{feed:#?}"
    );
    // Scope filters whole ids; kinds filter kinds.
    assert!(events(&s, &["--scope", "ams"]).is_empty());
    assert!(
        events(&s, &["--kind", "intent"])
            .iter()
            .all(|e| e["kind"] == "intent")
    );

    // Markdown for the postmortem, a table for the terminal.
    let md = stdout(&s.steerctl(&[
        "--output", "markdown", "timeline", "--since", "1h", "--scope", "ams1",
    ]));
    assert!(md.starts_with("## Timeline"), "{md}");
    assert!(
        md.contains("`intent`") && md.contains("disk swap INC-42"),
        "{md}"
    );
    let table = stdout(&s.steerctl(&["timeline", "--since", "1h"]));
    assert!(
        table.contains("KIND") && table.contains("fra1 unknown -> up"),
        "{table}"
    );

    // The handoff: what is in force, and what happened.
    let handoff = stdout(&s.steerctl(&["handoff", "--since", "1h"]));
    for want in [
        "# Handoff",
        "## Drains and overrides in force",
        "disk swap INC-42",
        "no expiry",
        "## What happened this shift",
        "fra1 unknown -> up",
    ] {
        assert!(handoff.contains(want), "{want} missing:\n{handoff}");
    }

    // Bad queries get a clear refusal.
    let out = s.steerctl(&["timeline", "--kind", "weather"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected one of health"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Kept across kill -9 once written (within a couple of seconds).
    let seen = events(&s, &[]).len() as f64;
    poll(Duration::from_secs(10), || {
        (s.metric("steer_timeline_events")? >= seen).then_some(())
    })
    .expect("the timeline was never written");
    let s = s.restart_after_kill9();
    let after = events(&s, &["--scope", "ams1", "--kind", "intent"]);
    assert_eq!(after.len(), 1, "{after:#?}");
    assert!(
        s.metric("steer_timeline_events").is_some_and(|n| n >= seen),
        "{:?} of {seen}",
        s.metric("steer_timeline_events")
    );
}
