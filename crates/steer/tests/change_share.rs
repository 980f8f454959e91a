//! A change rolled out to a share of client subnets (a stage with
//! `share`): about that share of a region's subnets get the new config's
//! answers, each subnet always the same, with an ECS scope that keeps
//! resolvers from sharing one answer across the split; other regions do not
//! move; `explain` says which side a client is on; aborting ends it.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{
    Steerd,
    governed::{self, as_user, text},
    poll, temp_dir,
};

const CHANGES: &str = r#"
[changes]
approvals = 0

[[changes.stages]]
name = "half"
regions = ["ap-south"]
share = 0.5
bake = "10m"

[[changes.stages]]
name = "all"
regions = ["*"]
bake = "10m"
"#;

const BOTH: [&str; 2] = ["192.0.2.31", "192.0.2.32"];

#[test]
fn a_share_stage_moves_that_share_of_subnets_and_no_one_else() {
    let dir = temp_dir("change-share");
    let (config, original) = governed::config(&dir, CHANGES);
    let s = Steerd::start_with(config, dir.join("state"));
    assert_eq!(s.answers("app.example.test", "A", "10.3.7.0/24"), BOTH);

    // The change takes sin1 out of the service: its clients get bom1 only.
    let next = dir.join("next.toml");
    std::fs::write(
        &next,
        original.replacen(
            "pops = [\"fra1\", \"ams1\", \"iad1\", \"ord1\", \"sin1\", \"bom1\"]",
            "pops = [\"fra1\", \"ams1\", \"iad1\", \"ord1\", \"bom1\"]",
            1,
        ),
    )
    .unwrap();
    let out = as_user(
        &s,
        &dir,
        "alice",
        &[
            "change",
            "propose",
            "--config",
            next.to_str().unwrap(),
            "--reason",
            "sin1 leaves the app pool",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let doc = poll(Duration::from_secs(10), || {
        let out = as_user(&s, &dir, "bob", &["--output", "json", "status"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (doc["changes"][0]["state"] == "rolling").then_some(doc)
    })
    .unwrap_or_else(|| {
        panic!(
            "{}",
            text(&as_user(&s, &dir, "bob", &["change", "show", "c1"]))
        )
    });
    assert_eq!(
        doc["changes"][0]["stage"], "half (50% of client subnets of ap-south)",
        "{doc}"
    );

    // The canary's subnets get bom1 alone, the others both, each subnet
    // the same answer every time.
    let canary_subnet = poll(Duration::from_secs(10), || {
        (0..64u8)
            .map(|i| format!("10.3.{i}.0/24"))
            .find(|net| s.answers("app.example.test", "A", net) == ["192.0.2.32"])
    })
    .expect("no subnet ever took the canary's answer");
    let mut canary = 0;
    for i in 0..64u8 {
        let net = format!("10.3.{i}.0/24");
        let got = s.answers("app.example.test", "A", &net);
        if got == ["192.0.2.32"] {
            canary += 1;
        } else {
            assert_eq!(got, BOTH, "{net}");
        }
        assert_eq!(s.answers("app.example.test", "A", &net), got, "{net}");
    }
    assert!(
        (16..=48).contains(&canary),
        "{canary} of 64 subnets in a 50% canary"
    );
    // Resolvers may cache an answer for the /24 only.
    let full = s.dig(&["app.example.test", "A", &format!("+subnet={canary_subnet}")]);
    assert!(
        full.contains(&format!("CLIENT-SUBNET: {canary_subnet}/24")),
        "{full}"
    );
    // Other regions do not move.
    for i in 0..16u8 {
        let got = s.answers("app.example.test", "A", &format!("10.1.{i}.0/24"));
        assert_eq!(got, ["192.0.2.11", "192.0.2.12"]);
    }
    let why = text(&as_user(
        &s,
        &dir,
        "bob",
        &["explain", "app.example.test", "--client", &canary_subnet],
    ));
    assert!(
        why.contains("in the canary of a change rolled out to 50%"),
        "{why}"
    );

    // Aborted: every subnet gets the config in force again.
    let out = as_user(
        &s,
        &dir,
        "alice",
        &["change", "abort", "c1", "--reason", "not today"],
    );
    assert!(out.status.success(), "{}", text(&out));
    poll(Duration::from_secs(10), || {
        (s.answers("app.example.test", "A", &canary_subnet) == BOTH).then_some(())
    })
    .unwrap_or_else(|| panic!("the canary outlived its change"));
}
