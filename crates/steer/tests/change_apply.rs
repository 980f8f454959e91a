//! A completed change whose config file no longer applies (a zone file it
//! names was removed meanwhile) says so on the change and on status, counts
//! in `steer_change_apply_failures_total`, and can still be rolled back.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{
    Steerd,
    governed::{self, as_user, text},
    poll, temp_dir,
};

const CHANGES: &str = r#"
[[zones]]
origin = "static.test."
file = "static.zone"

[changes]
approvals = 1

[[changes.stages]]
name = "all"
regions = ["*"]
bake = "1s"
"#;

const ZONE: &str = "$ORIGIN static.test.\n$TTL 300\n@ IN SOA ns1.static.test. hostmaster.static.test. 1 3600 600 86400 300\n@ IN NS ns1\nns1 IN A 127.0.0.1\nwww IN A 192.0.2.80\n";

fn state(s: &Steerd, dir: &std::path::Path, id: &str) -> String {
    let out = as_user(s, dir, "bob", &["--output", "json", "change", "show", id]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["state"].as_str().unwrap_or("?").to_owned()
}

#[test]
fn a_config_that_no_longer_applies_is_surfaced_and_can_be_rolled_back() {
    let dir = temp_dir("change-apply");
    std::fs::write(dir.join("static.zone"), ZONE).unwrap();
    let (config, original) = governed::config(&dir, CHANGES);
    let s = Steerd::start_with(config, dir.join("state"));

    let next = dir.join("next.toml");
    std::fs::write(
        &next,
        original.replacen("capacity_rps = 10000", "capacity_rps = 12000", 1),
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
            next.to_str().unwrap(),
            "--reason",
            "fra1 racks",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = as_user(&s, &dir, "dave", &["change", "approve", "c1"]);
    assert!(out.status.success(), "{}", text(&out));
    // No SLI events: after its bake the stage is Inconclusive and pauses.
    poll(Duration::from_secs(15), || {
        (state(&s, &dir, "c1") == "paused").then_some(())
    })
    .unwrap_or_else(|| panic!("never paused: {}", state(&s, &dir, "c1")));

    // Meanwhile the zone file goes; promoting completes the change, whose
    // file then does not load.
    std::fs::remove_file(dir.join("static.zone")).unwrap();
    let out = as_user(
        &s,
        &dir,
        "dave",
        &["change", "promote", "c1", "--reason", "checked by hand"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let story = poll(Duration::from_secs(10), || {
        let story = text(&as_user(&s, &dir, "bob", &["change", "show", "c1"]));
        story.contains("config not applied").then_some(story)
    })
    .unwrap_or_else(|| {
        panic!(
            "{}",
            text(&as_user(&s, &dir, "bob", &["change", "show", "c1"]))
        )
    });
    assert!(story.contains("static.zone"), "{story}");
    assert_eq!(s.metric("steer_change_apply_failures_total"), Some(1.0));
    let out = as_user(&s, &dir, "bob", &["--output", "json", "status"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c1 = &doc["changes"][0];
    assert_eq!(c1["id"], "c1", "{doc}");
    assert_eq!(c1["state"], "completed", "{doc}");
    assert!(
        c1["held"]
            .as_str()
            .is_some_and(|h| h.contains("did not apply")),
        "{doc}"
    );

    // With the file back, rolling back puts the base config in force and
    // clears the warning.
    std::fs::write(dir.join("static.zone"), ZONE).unwrap();
    let out = as_user(
        &s,
        &dir,
        "dave",
        &["change", "rollback", "c1", "--reason", "redo it properly"],
    );
    assert!(out.status.success(), "{}", text(&out));
    poll(Duration::from_secs(10), || {
        let out = as_user(&s, &dir, "bob", &["--output", "json", "status"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        doc["changes"].as_array()?.is_empty().then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{}",
            text(&as_user(&s, &dir, "bob", &["change", "show", "c1"]))
        )
    });
    let story = text(&as_user(&s, &dir, "bob", &["change", "show", "c1"]));
    assert!(story.contains("config applied"), "{story}");
}
