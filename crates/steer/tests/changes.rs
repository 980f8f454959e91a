//! Change requests through the binaries (issue 15): a config file proposed
//! with steerctl is validated, described (semantic diff, projected effect)
//! and reviewed under the approval rules; a plain reload is refused while
//! `[changes]` governs the config; change requests survive kill -9.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{
    Steerd,
    governed::{self, as_user, text},
    quickstart, temp_dir,
};

const CHANGES: &str = r#"
[changes]
approvals = 1

[[changes.stages]]
name = "canary"
regions = ["ap-south"]
bake = "10m"

[[changes.stages]]
name = "all"
regions = ["*"]
bake = "10m"
"#;

/// The quickstart with token auth and `[changes]`, in `dir`.
fn governed_config(dir: &Path) -> (PathBuf, String) {
    governed::config(dir, CHANGES)
}

#[test]
fn a_change_is_proposed_described_and_approved_by_someone_else() {
    let dir = temp_dir("changes-review");
    let (config, original) = governed_config(&dir);
    let s = Steerd::start_with(config, dir.join("state"));

    // fra1's capacity halved (the first PoP in the file).
    let proposed = dir.join("proposed.toml");
    std::fs::write(
        &proposed,
        original.replacen("capacity_rps = 10000", "capacity_rps = 5000", 1),
    )
    .unwrap();
    let p = proposed.to_str().unwrap();

    // A viewer cannot propose.
    let out = as_user(
        &s,
        &dir,
        "carol",
        &["change", "propose", "--config", p, "--reason", "x"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("permission denied"), "{}", text(&out));

    let out = as_user(
        &s,
        &dir,
        "bob",
        &[
            "change",
            "propose",
            "--config",
            p,
            "--reason",
            "fra1 loses a rack",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let id = stdout.lines().next().unwrap().trim().to_owned();
    assert_eq!(id, "c1", "{stdout}");
    assert!(
        stdout.contains("~ pop fra1: capacity_rps 10000.0 -> 5000.0"),
        "{stdout}"
    );
    assert!(stdout.contains("projected effect:"), "{stdout}");
    assert!(stdout.contains("approvals: 0 of 1"), "{stdout}");
    assert!(
        stdout.contains("0. canary: ap-south, bake 600s"),
        "{stdout}"
    );

    // The author cannot approve; a viewer may not; another operator can.
    let out = as_user(&s, &dir, "bob", &["change", "approve", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot approve it"), "{}", text(&out));
    let out = as_user(&s, &dir, "carol", &["change", "approve", &id]);
    assert!(text(&out).contains("permission denied"), "{}", text(&out));
    let out = as_user(
        &s,
        &dir,
        "dave",
        &["change", "approve", &id, "--comment", "checked the rack"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("change c1 (approved)"),
        "{}",
        text(&out)
    );
    // Approved, or already rolling: the rollout may start at once.
    let out = as_user(&s, &dir, "alice", &["change", "approve", &id]);
    assert!(
        text(&out).contains("is approved: cannot approve")
            || text(&out).contains("is rolling: cannot approve"),
        "{}",
        text(&out)
    );

    // Listed and shown, as a viewer, in JSON too.
    let out = as_user(&s, &dir, "carol", &["change", "list", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], "c1");
    assert!(
        list[0]["state"] == "approved" || list[0]["state"] == "rolling",
        "{list}"
    );
    assert_eq!(list[0]["approved_by"][0], "dave");
    let out = as_user(&s, &dir, "carol", &["change", "show", &id]);
    let story = text(&out);
    assert!(
        story.contains("bob") && story.contains("proposed: fra1 loses a rack"),
        "{story}"
    );
    assert!(
        story.contains("dave") && story.contains("1 of 1 approvals: checked the rack"),
        "{story}"
    );
    let out = as_user(&s, &dir, "carol", &["change", "show", "c99"]);
    assert!(text(&out).contains("not found"), "{}", text(&out));

    // Each step is in the audit log; the gauges say where c1 stands.
    let out = as_user(&s, &dir, "carol", &["audit", "--scope", "change c1"]);
    let audit = text(&out);
    assert!(
        audit.contains("change-propose") && audit.contains("change-approve"),
        "{audit}"
    );
    // Approved, or already rolling (the rollout may start at once), as
    // the list above allows: one of the two, never both.
    let state = |st: &str| {
        s.metric(&format!("steer_change_state{{id=\"c1\",state=\"{st}\"}}"))
            .unwrap_or(0.0)
    };
    common::poll(std::time::Duration::from_secs(10), || {
        (state("approved") + state("rolling") == 1.0).then_some(())
    })
    .expect("c1 is neither approved nor rolling in steer_change_state");
    assert_eq!(s.metric("steer_changes_open"), Some(1.0));

    // Reject needs a reason; a rejected change stays rejected.
    let out = as_user(&s, &dir, "dave", &["change", "reject", &id, "--reason", ""]);
    assert!(text(&out).contains("needs a reason"), "{}", text(&out));

    // kill -9: the change and its story come back, in the same stage.
    let s = s.restart_after_kill9();
    let out = as_user(&s, &dir, "carol", &["change", "show", &id]);
    assert!(
        text(&out).contains("change c1 (rolling@0)"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("checked the rack"), "{}", text(&out));
    // Ids are not reused after a restart.
    let out = as_user(
        &s,
        &dir,
        "bob",
        &["change", "propose", "--config", p, "--reason", "again"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("c2\n"),
        "{}",
        text(&out)
    );
}

#[test]
fn governed_configs_refuse_plain_reloads_and_bad_proposals() {
    let dir = temp_dir("changes-refuse");
    let (config, original) = governed_config(&dir);
    let s = Steerd::start_with(config.clone(), dir.join("state"));

    // A reload is break glass once [changes] governs the config.
    let out = as_user(&s, &dir, "alice", &["reload", "--reason", "routine"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("steerctl change propose"),
        "{}",
        text(&out)
    );
    let out = as_user(&s, &dir, "bob", &["reload", "--emergency", "--reason", "x"]);
    assert!(text(&out).contains("permission denied"), "{}", text(&out));
    let out = as_user(&s, &dir, "alice", &["reload", "--emergency"]);
    assert!(text(&out).contains("needs a reason"), "{}", text(&out));
    let out = as_user(
        &s,
        &dir,
        "alice",
        &["reload", "--emergency", "--reason", "pager storm"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = as_user(&s, &dir, "alice", &["audit", "--scope", "config"]);
    assert!(
        text(&out).contains("[emergency] pager storm"),
        "{}",
        text(&out)
    );
    assert_eq!(s.metric("steer_change_emergencies_total"), Some(1.0));
    // Status shows the break glass to the next shift, who did it and why.
    let out = as_user(&s, &dir, "bob", &["--output", "json", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = &v["break_glass"][0];
    assert_eq!(
        (b["what"].as_str(), b["reason"].as_str()),
        (Some("reload"), Some("pager storm")),
        "{v}"
    );
    assert!(b["principal"].as_str().unwrap().contains("alice"), "{v}");
    let out = as_user(&s, &dir, "bob", &["status"]);
    assert!(
        text(&out).contains("BREAK GLASS") && text(&out).contains("reload by"),
        "{}",
        text(&out)
    );

    // A file that does not load is refused at its line, and recorded nowhere.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        original.replacen("capacity_rps = 10000", "capacity_rps = \"lots\"", 1),
    )
    .unwrap();
    let out = as_user(
        &s,
        &dir,
        "bob",
        &[
            "change",
            "propose",
            "--config",
            bad.to_str().unwrap(),
            "--reason",
            "typo",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let line = original
        .lines()
        .position(|l| l.contains("capacity_rps = 10000"))
        .unwrap()
        + 1;
    let at = format!("steerd.toml:{line}:");
    assert!(text(&out).contains(&at), "not at {at}: {}", text(&out));
    // The config in force is not a change; no reason is no change.
    let out = as_user(
        &s,
        &dir,
        "bob",
        &[
            "change",
            "propose",
            "--config",
            config.to_str().unwrap(),
            "--reason",
            "same",
        ],
    );
    assert!(
        text(&out).contains("is the config in force"),
        "{}",
        text(&out)
    );
    let out = as_user(
        &s,
        &dir,
        "bob",
        &[
            "change",
            "propose",
            "--config",
            config.to_str().unwrap(),
            "--reason",
            " ",
        ],
    );
    assert!(text(&out).contains("needs a reason"), "{}", text(&out));
    let out = as_user(&s, &dir, "carol", &["change", "list"]);
    assert!(text(&out).contains("no changes"), "{}", text(&out));

    // An emergency change is admin-only and needs no approval.
    let next = dir.join("next.toml");
    std::fs::write(
        &next,
        original.replacen("capacity_rps = 10000", "capacity_rps = 12000", 1),
    )
    .unwrap();
    let n = next.to_str().unwrap();
    let out = as_user(
        &s,
        &dir,
        "bob",
        &[
            "change",
            "propose",
            "--config",
            n,
            "--reason",
            "x",
            "--emergency",
        ],
    );
    assert!(text(&out).contains("permission denied"), "{}", text(&out));
    let out = as_user(
        &s,
        &dir,
        "alice",
        &[
            "change",
            "propose",
            "--config",
            n,
            "--reason",
            "fra1 grew",
            "--emergency",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("(approved) EMERGENCY"),
        "{}",
        text(&out)
    );
    assert_eq!(s.metric("steer_change_emergencies_total"), Some(2.0));
}

/// Every PoP's agent, reporting from a thread every 200 ms: app up, 2,000
/// rps from its own region, no capacity of its own (the config's counts),
/// and cumulative request counters; the canary PoPs (sin1, bom1) fail 10%
/// of requests while `failing` is set.
struct Agents {
    /// Where they report (steerd may come back on other ports).
    endpoint: std::sync::Arc<std::sync::Mutex<String>>,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const POPS: [(&str, &str); 6] = [
    ("fra1", "eu-west"),
    ("ams1", "eu-west"),
    ("iad1", "us-east"),
    ("ord1", "us-east"),
    ("sin1", "ap-south"),
    ("bom1", "ap-south"),
];

impl Agents {
    fn start(endpoint: String) -> Self {
        use std::sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        };
        use steer_proto::v1::{HealthReport, health_ingest_client::HealthIngestClient};
        let failing = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let endpoint = Arc::new(std::sync::Mutex::new(endpoint));
        let (f, st, to) = (failing.clone(), stop.clone(), endpoint.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut total = 0u64;
            let mut failed = 0u64;
            let mut sequence = 0u64;
            while !st.load(Ordering::Relaxed) {
                sequence += 1;
                total += 100;
                if f.load(Ordering::Relaxed) {
                    failed += 10;
                }
                for (pop, region) in POPS {
                    let mut r = HealthReport {
                        load_rps: 2000.0,
                        agent_instance: 5,
                        region_load_rps: [(region.to_owned(), 2000.0)].into(),
                        ..common::app_report(pop, sequence, true)
                    };
                    r.capacity_rps = 0.0;
                    let service = &mut r.services[0];
                    service.sli_present = true;
                    service.requests_total = total;
                    service.requests_failed = if region == "ap-south" { failed } else { 0 };
                    let endpoint = to.lock().unwrap().clone();
                    // Bounded: a report sent as steerd is killed must not
                    // hang the agent.
                    let send = async move {
                        let mut client = HealthIngestClient::connect(endpoint).await.ok()?;
                        let mut acks = client
                            .report(tokio_stream::iter([r]))
                            .await
                            .ok()?
                            .into_inner();
                        tokio_stream::StreamExt::next(&mut acks).await
                    };
                    let _ = rt.block_on(async move {
                        tokio::time::timeout(std::time::Duration::from_secs(1), send).await
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        });
        Self {
            endpoint,
            failing,
            stop,
            thread: Some(thread),
        }
    }

    fn report_to(&self, endpoint: String) {
        *self.endpoint.lock().unwrap() = endpoint;
    }

    fn fail(&self, on: bool) {
        self.failing.store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Staged rollouts: `[changes]` with a canary stage (ap-south) and an
/// "all" stage, short bakes, and an SLO the stages are judged by.
/// Auth is off here (agents report without tokens), so the change needs no
/// approval: approvals are tested above.
fn staged_config(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("steerd.toml");
    let text = (std::fs::read_to_string(quickstart()).unwrap() + CHANGES)
        .replace("bake = \"10m\"", "bake = \"3s\"")
        .replace(
            "approvals = 1\n",
            "approvals = 0\n\n[changes.judgement]\nmin_events = 50\n",
        );
    std::fs::write(&path, &text).unwrap();
    (path, text)
}

fn weights(s: &Steerd) -> std::collections::BTreeMap<String, u64> {
    let out = s.steerctl(&["--output", "json", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["pops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pop"].as_str().unwrap().to_owned(),
                p["weight_permille"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn change_state(s: &Steerd, id: &str) -> String {
    let out = s.steerctl(&["--output", "json", "change", "show", id]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    match (v["state"].as_str(), v["stage"].as_u64()) {
        (Some(st), Some(i)) => format!("{st}@{i}"),
        (Some(st), None) => st.to_owned(),
        _ => format!("? {}", text(&out)),
    }
}

fn wait_state(s: &Steerd, id: &str, want: &str, within: u64) -> String {
    common::poll(std::time::Duration::from_secs(within), || {
        let st = change_state(s, id);
        (st == want).then_some(st)
    })
    .unwrap_or_else(|| {
        let out = s.steerctl(&["change", "show", id]);
        let metrics = common::http_get(s.http, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let counts: Vec<&str> = metrics
            .lines()
            .filter(|l| {
                l.starts_with("steer_slo_events_total") || l.starts_with("steer_health_reports")
            })
            .collect();
        panic!("change {id} never {want}:\n{}\n{counts:#?}", text(&out))
    })
}

#[test]
fn a_good_change_promotes_everywhere_and_a_bad_one_is_caught_at_the_canary() {
    let dir = temp_dir("changes-rollout");
    let (config, original) = staged_config(&dir);
    let s = Steerd::start_with(config, dir.join("state"));
    let agents = Agents::start(s.endpoint());
    common::poll(std::time::Duration::from_secs(10), || {
        let w = weights(&s);
        (w.get("sin1") == Some(&500) && w.get("fra1") == Some(&500)).then_some(w)
    })
    .unwrap_or_else(|| panic!("weights never settled: {:?}", weights(&s)));

    // A good change: bom1 gets more capacity. It passes the canary, then
    // everywhere, and becomes the config in force.
    let good_text = original.replacen(BOM1, &BOM1.replace("10000", "12000"), 1);
    let good = dir.join("good.toml");
    std::fs::write(&good, &good_text).unwrap();
    let g = good.to_str().unwrap();
    let out = s.steerctl(&[
        "change",
        "propose",
        "--config",
        g,
        "--reason",
        "bom1 upgrade",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    wait_state(&s, "c1", "rolling@0", 10);
    // kill -9 mid-rollout: it resumes where it was, never ahead.
    let s = s.restart_after_kill9();
    agents.report_to(s.endpoint());
    let st = change_state(&s, "c1");
    assert!(
        st == "rolling@0" || st == "rolling@1",
        "after kill -9: {st}"
    );
    wait_state(&s, "c1", "completed", 40);
    let story = text(&s.steerctl(&["change", "show", "c1"]));
    assert!(
        story.contains("stage canary passed") && story.contains("stage all passed"),
        "{story}"
    );
    // In force: proposing the same file again is no change.
    let out = s.steerctl(&["change", "propose", "--config", g, "--reason", "again"]);
    assert!(
        text(&out).contains("is the config in force"),
        "{}",
        text(&out)
    );
    // bom1 takes more of ap-south now; the plan settles on it.
    let before = common::poll(std::time::Duration::from_secs(10), || {
        let w = weights(&s);
        std::thread::sleep(std::time::Duration::from_millis(500));
        (w.get("bom1").copied().unwrap_or(0) > 500 && weights(&s) == w).then_some(w)
    })
    .unwrap_or_else(|| panic!("the good change never settled: {:?}", weights(&s)));

    // A typo: sin1's capacity loses two zeros.
    let typo = dir.join("typo.toml");
    std::fs::write(
        &typo,
        good_text.replacen(SIN1, &SIN1.replace("10000", "100"), 1),
    )
    .unwrap();
    let out = s.steerctl(&[
        "change",
        "propose",
        "--config",
        typo.to_str().unwrap(),
        "--reason",
        "sin1 capacity",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("~ pop sin1: capacity_rps 10000.0 -> 100.0"),
        "{}",
        text(&out)
    );

    // The canary (ap-south) takes the new config; eu-west does not move.
    wait_state(&s, "c2", "rolling@0", 10);
    let canary = common::poll(std::time::Duration::from_secs(10), || {
        let w = weights(&s);
        (w.get("sin1").copied().unwrap_or(500) + 20 < before.get("sin1").copied().unwrap_or(0))
            .then_some(w)
    })
    .unwrap_or_else(|| panic!("the canary never moved: {:?}", weights(&s)));
    for pop in ["fra1", "ams1", "iad1", "ord1"] {
        assert_eq!(
            canary.get(pop),
            before.get(pop),
            "{pop} moved outside the canary: {canary:?}"
        );
    }

    // The canary's PoPs report errors: the stage fails and is rolled back
    // everywhere, with the evidence.
    agents.fail(true);
    wait_state(&s, "c2", "rolled-back", 20);
    let story = text(&s.steerctl(&["change", "show", "c2"]));
    assert!(
        story.contains("stage canary failed: app-availability"),
        "{story}"
    );
    assert_eq!(
        s.metric("steer_change_rollbacks_total{reason=\"judgement\"}"),
        Some(1.0)
    );
    // The old plan's weights come back at the rails' ramp.
    common::poll(std::time::Duration::from_secs(15), || {
        (weights(&s) == before).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the rollback did not restore the old plan: {:?}",
            weights(&s)
        )
    });
    agents.fail(false);
}

#[test]
fn a_blocked_window_holds_a_change_and_an_emergency_goes_through() {
    let dir = temp_dir("changes-window");
    let (config, original) = staged_config(&dir);
    // Blocked all week, every week.
    let text = original.clone()
        + "\n[[changes.windows]]\nname = \"freeze\"\nkind = \"block\"\nweekly = \"Mon 00:00 - Sun 23:59\"\n";
    std::fs::write(&config, &text).unwrap();
    let s = Steerd::start_with(config, dir.join("state"));
    let next = dir.join("next.toml");
    std::fs::write(
        &next,
        text.replacen(BOM1, &BOM1.replace("10000", "12000"), 1),
    )
    .unwrap();
    let n = next.to_str().unwrap();
    let out = s.steerctl(&[
        "change",
        "propose",
        "--config",
        n,
        "--reason",
        "bom1 upgrade",
    ]);
    assert!(out.status.success(), "{}", self::text(&out));
    let held = common::poll(std::time::Duration::from_secs(10), || {
        let story = self::text(&s.steerctl(&["change", "show", "c1"]));
        story
            .contains("waiting: inside block window \"freeze\"")
            .then_some(story)
    });
    assert!(
        held.is_some(),
        "{}",
        self::text(&s.steerctl(&["change", "show", "c1"]))
    );
    assert_eq!(change_state(&s, "c1"), "approved");
    // Status lists it, with why it waits.
    let doc = status_doc(&s);
    assert_eq!(doc["changes"][0]["id"], "c1", "{doc}");
    assert!(
        doc["changes"][0]["held"]
            .as_str()
            .is_some_and(|h| h.contains("freeze")),
        "{doc}"
    );
    assert!(doc["break_glass"].as_array().unwrap().is_empty(), "{doc}");
    // Break glass: an emergency starts at once, flagged.
    let out = s.steerctl(&["change", "abort", "c1", "--reason", "superseded"]);
    assert!(out.status.success(), "{}", self::text(&out));
    let out = s.steerctl(&[
        "change",
        "propose",
        "--config",
        n,
        "--reason",
        "capacity now",
        "--emergency",
    ]);
    assert!(
        self::text(&out).contains("EMERGENCY"),
        "{}",
        self::text(&out)
    );
    wait_state(&s, "c2", "rolling@0", 10);
    let doc = status_doc(&s);
    let c2 = &doc["changes"][0];
    assert_eq!(
        (c2["id"].as_str(), c2["emergency"].as_bool()),
        (Some("c2"), Some(true)),
        "{doc}"
    );
    assert_eq!(c2["stage"], "canary (ap-south)", "{doc}");
    assert_eq!(doc["break_glass"][0]["what"], "change c2", "{doc}");
    let table = self::text(&s.steerctl(&["status"]));
    assert!(
        table.contains("BREAK GLASS")
            && table.contains("change c2 rolling at canary (ap-south) EMERGENCY"),
        "{table}"
    );
}

/// steerd's `/status` document.
fn status_doc(s: &Steerd) -> serde_json::Value {
    let (code, body) = common::http_get(s.http, "/status").unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

const SIN1: &str = "id = \"sin1\"\nregion = \"ap-south\"\nipv4 = \"192.0.2.31\"\nipv6 = \"2001:db8::31\"\ncapacity_rps = 10000";
const BOM1: &str = "id = \"bom1\"\nregion = \"ap-south\"\nipv4 = \"192.0.2.32\"\nipv6 = \"2001:db8::32\"\ncapacity_rps = 10000";
