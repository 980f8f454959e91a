//! Drains and overrides through change requests (issue 15): with `[changes]
//! reviewed_intents`, the kinds it names become change requests that apply
//! once another operator approves them, and roll back as an undrain; other
//! kinds stay immediate; break glass (`--emergency`) is admin-only and shows
//! on status.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{
    Steerd,
    governed::{self, as_user, text},
    poll, temp_dir,
};
use std::time::Duration;

const CHANGES: &str = r#"
[changes]
approvals = 1
reviewed_intents = ["region-drain", "override"]
"#;

/// `/status` as bob (an operator) sees it.
fn status(s: &Steerd, dir: &Path) -> serde_json::Value {
    let out = as_user(s, dir, "bob", &["--output", "json", "status"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)))
}

fn drained_by(doc: &serde_json::Value, pop: &str) -> Option<String> {
    doc["pops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pop"] == pop)
        .and_then(|p| p["drained_by"].as_str().map(str::to_owned))
}

fn change_state(s: &Steerd, dir: &Path, id: &str) -> String {
    let out = as_user(s, dir, "bob", &["--output", "json", "change", "show", id]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["state"].as_str().unwrap_or("?").to_owned()
}

#[test]
fn reviewed_drains_wait_for_approval_and_roll_back_as_undrains() {
    let dir = temp_dir("reviewed-intents");
    let (config, _) = governed::config(&dir, CHANGES);
    let s = Steerd::start_with(config, dir.join("state"));

    // A region drain becomes change c1; nothing is drained yet.
    let out = as_user(
        &s,
        &dir,
        "bob",
        &[
            "drain",
            "region",
            "eu-west",
            "--reason",
            "eu-west rack move",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("through review as change c1")
            && text(&out).contains("steerctl change approve c1"),
        "{}",
        text(&out)
    );
    let doc = status(&s, &dir);
    assert_eq!(drained_by(&doc, "fra1"), None, "{doc}");
    assert_eq!(doc["changes"][0]["id"], "c1", "{doc}");
    let story = text(&as_user(&s, &dir, "bob", &["change", "show", "c1"]));
    assert!(story.contains("+ drain region eu-west (hard)"), "{story}");

    // A PoP drain is not reviewed here: it applies at once.
    let out = as_user(
        &s,
        &dir,
        "bob",
        &["drain", "pop", "iad1", "--reason", "disk swap"],
    );
    assert!(text(&out).contains("applied"), "{}", text(&out));

    // The author cannot approve it; another operator can, and it applies.
    let out = as_user(&s, &dir, "bob", &["change", "approve", "c1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = as_user(
        &s,
        &dir,
        "dave",
        &["change", "approve", "c1", "--comment", "window agreed"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let doc = poll(Duration::from_secs(10), || {
        let doc = status(&s, &dir);
        (drained_by(&doc, "fra1").is_some() && drained_by(&doc, "ams1").is_some()).then_some(doc)
    })
    .unwrap_or_else(|| panic!("the approved drain never applied: {}", status(&s, &dir)));
    let drain = drained_by(&doc, "fra1").unwrap();
    assert_eq!(change_state(&s, &dir, "c1"), "completed");
    let story = text(&as_user(&s, &dir, "bob", &["change", "show", "c1"]));
    assert!(story.contains(&format!("{drain} in force")), "{story}");
    // The drain is bob's, with his reason, and says which change made it.
    let intents = text(&as_user(&s, &dir, "bob", &["intents"]));
    assert!(
        intents.contains("eu-west rack move (change c1)") && intents.contains("bob"),
        "{intents}"
    );

    // Rolling the change back lifts its drain (and only it).
    let out = as_user(
        &s,
        &dir,
        "dave",
        &["change", "rollback", "c1", "--reason", "rack move done"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let doc = status(&s, &dir);
    assert_eq!(drained_by(&doc, "fra1"), None, "{doc}");
    assert!(drained_by(&doc, "iad1").is_some(), "{doc}");
    let audit = text(&as_user(
        &s,
        &dir,
        "bob",
        &["audit", "--scope", "region eu-west"],
    ));
    assert!(audit.contains("rollback of change c1"), "{audit}");

    // An override is reviewed too; a rejected one never applies.
    let out = as_user(
        &s,
        &dir,
        "bob",
        &["override", "set", "sin1", "200", "--reason", "canary"],
    );
    assert!(
        text(&out).contains("override not applied") && text(&out).contains("change c2"),
        "{}",
        text(&out)
    );
    let out = as_user(
        &s,
        &dir,
        "dave",
        &["change", "reject", "c2", "--reason", "not now"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let intents = text(&as_user(&s, &dir, "bob", &["--output", "json", "intents"]));
    assert!(!intents.contains("\"override\""), "{intents}");

    // Break glass: operators may not; an admin's applies at once, flagged.
    let emergency = [
        "drain",
        "region",
        "us-east",
        "--reason",
        "us-east on fire",
        "--emergency",
    ];
    let out = as_user(&s, &dir, "bob", &emergency);
    assert!(text(&out).contains("permission denied"), "{}", text(&out));
    let out = as_user(&s, &dir, "alice", &emergency);
    assert!(
        out.status.success() && text(&out).contains("applied"),
        "{}",
        text(&out)
    );
    let doc = status(&s, &dir);
    assert!(drained_by(&doc, "ord1").is_some(), "{doc}");
    assert_eq!(
        doc["break_glass"][0]["what"], "drain region us-east (hard)",
        "{doc}"
    );
    assert_eq!(s.metric("steer_change_emergencies_total"), Some(1.0));
    let audit = text(&as_user(
        &s,
        &dir,
        "bob",
        &["audit", "--scope", "region us-east"],
    ));
    assert!(audit.contains("EMERGENCY"), "{audit}");
}
