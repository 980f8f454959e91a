//! Every library scenario passes its expectations; runs are deterministic;
//! a bad policy knob makes the correlated-failure scenario fail.

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

const SIMLAB: &str = env!("CARGO_BIN_EXE_simlab");

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("simlab-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(scenario: &Path, out: &Path) -> std::process::Output {
    Command::new(SIMLAB)
        .arg("run")
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn every_library_scenario_holds() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    let out = out_dir("all");
    for f in &files {
        let o = run(f, &out);
        assert!(
            o.status.success(),
            "{} failed:\n{}{}",
            f.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        let svg = std::fs::read_to_string(out.join(format!("{name}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    }
}

/// Issue 17's acceptance: no hunting after a failure and no PoP past the
/// target once demand is steady, whatever the seed (resolver populations
/// and timing differ per seed).
#[test]
fn stability_holds_on_five_seeds() {
    let out = out_dir("seeds");
    for name in ["cascade-steer-long", "flash-crowd", "capacity-loss"] {
        let scenario = scenarios_dir().join(format!("{name}.toml"));
        for seed in 1..=5 {
            let o = Command::new(SIMLAB)
                .arg("run")
                .arg(&scenario)
                .arg("--seed")
                .arg(seed.to_string())
                .arg("--out")
                .arg(&out)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{name} seed {seed} failed:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

#[test]
fn same_seed_same_trace() {
    let f = scenarios_dir().join("pop-failure.toml");
    let (a, b) = (out_dir("det-a"), out_dir("det-b"));
    assert!(run(&f, &a).status.success());
    assert!(run(&f, &b).status.success());
    let read = |d: &Path| std::fs::read(d.join("pop-failure.json")).unwrap();
    assert_eq!(read(&a), read(&b), "reports differ byte for byte");
    let json: serde_json::Value = serde_json::from_slice(&read(&a)).unwrap();
    assert_eq!(json["summary"]["trace_hash"].as_str().unwrap().len(), 16);
    // Another seed is another run.
    let c = out_dir("det-c");
    let o = Command::new(SIMLAB)
        .args([
            "run",
            &f.to_string_lossy(),
            "--seed",
            "99",
            "--out",
            &c.to_string_lossy(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let other: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.join("pop-failure.json")).unwrap()).unwrap();
    assert_ne!(
        other["summary"]["trace_hash"],
        json["summary"]["trace_hash"]
    );
}

#[test]
fn removing_the_min_announce_rail_fails_the_correlated_scenario() {
    let text = std::fs::read_to_string(scenarios_dir().join("correlated-failure.toml")).unwrap();
    // The correlated-failure freeze would hide the missing rail: this
    // checks the rail alone.
    let bad = text.replace(
        "[world]\n",
        "[world]\nmin_announce_share = 0.0\ncorrelated_failure_guard = false\n",
    );
    let dir = out_dir("bad-knob");
    let path = dir.join("correlated-failure-no-rail.toml");
    // The world config path is relative to the scenario file.
    let bad = bad.replace(
        "config = \"../../configs/quickstart.toml\"",
        &format!(
            "config = \"{}\"",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../configs/quickstart.toml")
                .display()
        ),
    );
    std::fs::write(&path, bad).unwrap();
    let o = run(&path, &dir);
    assert_eq!(o.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&o.stdout);
    // Only the floor of one announcing PoP is left: below the scenario's 3.
    assert!(
        stdout.contains("FAILED: min_announced = 1, expected >= 3"),
        "{stdout}"
    );
}

#[test]
fn bad_scenario_files_are_refused_with_a_place() {
    let dir = out_dir("bad-file");
    let path = dir.join("typo.toml");
    std::fs::write(
        &path,
        "name = \"x\"\nduration_s = 10\ncolour = 1\n[world]\nconfig = \"a\"\ndemand_rps = {}\n",
    )
    .unwrap();
    let o = run(&path, &dir);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("typo.toml:3:1") && err.contains("colour"),
        "{err}"
    );
}

fn report(name: &str) -> serde_json::Value {
    let out = out_dir(&format!("cluster-{name}"));
    let o = run(&scenarios_dir().join(format!("{name}.toml")), &out);
    assert!(
        o.status.success(),
        "{name}:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&std::fs::read(out.join(format!("{name}.json"))).unwrap()).unwrap()
}

fn fault<'a>(json: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    json["summary"]["faults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == kind)
        .unwrap()
}

#[test]
fn leader_loss_serves_the_dead_leaders_plan_until_the_lease_expires() {
    let json = report("leader-loss");
    let s = &json["summary"];
    // Two deaths, a 3 s lease each: 6 s without a leader, answers still.
    assert_eq!(s["control_plane_gone"]["seconds"], 6.0);
    assert_eq!(s["control_plane_gone"]["answer_changes"], 0);
    assert_eq!(s["takeovers"], 2);
    // fra1 died 1 s after the leader: failed over by the standby's first
    // plan as leader, when the lease expired (63 s).
    assert_eq!(fault(&json, "pop_down")["time_to_detect_s"], 2.0);
}

#[test]
fn a_partition_holds_edges_on_their_plan_and_they_catch_up() {
    let json = report("controller-partition");
    let s = &json["summary"];
    assert_eq!(s["control_plane_gone"]["seconds"], 60.0);
    assert_eq!(s["control_plane_gone"]["answer_changes"], 0);
    assert!(s.get("commands_refused").is_none(), "{s}");
    // Accepted at 90 s, served when edges reach a controller at 120 s.
    assert_eq!(fault(&json, "drain")["time_to_detect_s"], 30.0);
}

#[test]
fn without_quorum_nothing_commits_and_changes_are_refused() {
    let json = report("quorum-loss");
    let s = &json["summary"];
    // 60-90 s without quorum, then the old lease's last TTL.
    assert_eq!(s["control_plane_gone"]["seconds"], 33.0);
    assert_eq!(s["control_plane_gone"]["answer_changes"], 0);
    assert_eq!(s["commands_refused"], 1);
    assert_eq!(s["takeovers"], 1);
    let drain = fault(&json, "drain");
    assert!(drain["time_to_detect_s"].is_null(), "{drain}");
    // sin1 died at 75 s; the plan failing it over commits at 93 s.
    assert_eq!(fault(&json, "pop_down")["time_to_detect_s"], 18.0);
}

#[test]
fn control_restart_is_refused_beside_cluster_faults() {
    let dir = out_dir("restart-in-cluster");
    let path = dir.join("mixed.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"mixed\"\nduration_s = 10\n[world]\nconfig = \"{}\"\ndemand_rps = {{}}\n\
             [[faults]]\nkind = \"control_restart\"\nat_s = 1\n\
             [[faults]]\nkind = \"quorum_loss\"\nat_s = 2\n",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../configs/quickstart.toml")
                .display()
        ),
    )
    .unwrap();
    let o = run(&path, &dir);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("control_restart at 1s models a single controller")
            && err.contains("quorum_loss at 2s needs duration_s"),
        "{err}"
    );
}

/// The same flapping world, the control plane lost at 100 s: a warm
/// standby takes over with fra1's damping penalty (fra1 stays out), a
/// cold restart forgets it and sends clients back to a flapping PoP.
#[test]
fn a_warm_standby_takes_over_where_a_cold_restart_starts_over() {
    let dir = out_dir("warm-cold");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/quickstart.toml");
    let after_100s = |kind: &str| {
        let path = dir.join(format!("{kind}.toml"));
        std::fs::write(
            &path,
            format!(
                "name = \"{kind}\"\nseed = 7\nduration_s = 240\n[world]\nconfig = \"{}\"\n\
                 demand_rps = {{ eu-west = 6000, us-east = 6000, ap-south = 6000 }}\n\
                 [[faults]]\nkind = \"flap\"\ntarget = \"fra1\"\nperiod_s = 5\nat_s = 20\nduration_s = 160\n\
                 [[faults]]\nkind = \"{kind}\"\nat_s = 100\nduration_s = 3\n",
                config.display()
            ),
        )
        .unwrap();
        assert!(run(&path, &dir).status.success());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{kind}.json"))).unwrap())
                .unwrap();
        let after: Vec<&serde_json::Value> = json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["t_s"].as_f64().unwrap() >= 100.0)
            .collect();
        let plans: u64 = after.iter().map(|s| s["published"].as_u64().unwrap()).sum();
        let unserved: f64 = after
            .iter()
            .map(|s| s["unserved_rps"].as_f64().unwrap())
            .sum();
        (plans, unserved)
    };
    // The standby had every report: its first plan as leader is the
    // dead leader's decision (the controller that restarts at 103 s,
    // cold, does not win: the standby has campaigned longer).
    assert_eq!(after_100s("leader_loss"), (0, 0.0));
    let (plans, unserved) = after_100s("control_restart");
    assert!(
        plans >= 10 && unserved > 0.0,
        "{plans} plans, {unserved} rps·s"
    );
}

/// The acceptance: the same bad change (every PoP's capacity ten
/// times too high) made at once and staged. Staged, it reaches only the
/// canary's clients (ap-south), steerd's judgement of the canary on the
/// SLO rolls it back, and users and the error budget pay a small fraction
/// of what the at-once reload costs them.
#[test]
fn a_bad_change_staged_is_caught_at_the_canary_and_costs_a_fraction() {
    let dir = out_dir("bad-change");
    let o = Command::new(SIMLAB)
        .arg("compare")
        .arg(scenarios_dir().join("bad-change.toml"))
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("at once vs staged"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("bad-change-compare.json")).unwrap())
            .unwrap();
    let (at_once, staged) = (&json["at_once"], &json["staged"]);

    // Staged: rolled back by steerd's judgement while the canary was in
    // force, after the canary's clients, and no one else, had it.
    let change = &staged["change"];
    assert_eq!(change["state"], "rolled-back", "{change}");
    assert_eq!(change["rolled_back_by"], "steerd", "{change}");
    assert_eq!(change["rolled_back_at_stage"], "canary", "{change}");
    assert!(
        change["why"]
            .as_str()
            .unwrap()
            .starts_with("stage canary failed: app-availability"),
        "{change}"
    );
    let scopes = change["in_force_by_scope"].as_array().unwrap();
    assert_eq!(scopes.len(), 1, "{change}");
    assert_eq!(scopes[0][0], "ap-south", "{change}");
    let canary_s = scopes[0][1].as_f64().unwrap();
    assert!(canary_s > 0.0 && canary_s <= 60.0, "{change}");
    // The step trace of the staged run says the same, second by second.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("bad-change.json")).unwrap()).unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .all(|s| s.get("proposed_config_in").is_none_or(|x| x == "ap-south")),
        "the proposed config was in force outside the canary"
    );
    assert!(steps.iter().any(|s| s.get("proposed_config_in").is_some()));

    // At once: everywhere, until the operator's revert 300 s later.
    let change = &at_once["change"];
    assert_eq!(change["state"], "reverted", "{change}");
    assert_eq!(
        change["in_force_by_scope"],
        serde_json::json!([["every region", 300.0]])
    );

    // What users and the budget paid: staged, a small fraction.
    let figure = |run: &serde_json::Value, key: &str| run[key].as_f64().unwrap();
    let burned = |run: &serde_json::Value| run["slo_budget"][0]["burned"].as_f64().unwrap();
    assert!(figure(at_once, "unserved_request_s") > 1.0e6, "{at_once}");
    assert!(burned(at_once) > 0.01, "{at_once}");
    assert!(
        figure(staged, "unserved_request_s") < 0.05 * figure(at_once, "unserved_request_s"),
        "{json}"
    );
    assert!(
        figure(staged, "failed_requests") < 0.05 * figure(at_once, "failed_requests"),
        "{json}"
    );
    assert!(burned(staged) < 0.05 * burned(at_once), "{json}");
    assert!(
        figure(staged, "unserved_peak_share") < figure(at_once, "unserved_peak_share"),
        "{json}"
    );
    assert_eq!(json["failed_expectations"], serde_json::json!([]));
}

#[test]
fn a_config_change_is_checked_before_it_runs() {
    let dir = out_dir("bad-config-change");
    let world = scenarios_dir().join("worlds/bad-change-world.toml");
    let write = |name: &str, fault: &str| {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "name = \"{name}\"\nduration_s = 10\n[world]\nconfig = \"{}\"\ndemand_rps = {{}}\n\
                 [[faults]]\nkind = \"config_change\"\nat_s = 1\n{fault}",
                world.display()
            ),
        )
        .unwrap();
        path
    };
    // Keys that make no sense on it, and a missing rollout.
    let o = run(
        &write(
            "keys",
            "config = \"x.toml\"\ntarget = \"fra1\"\nduration_s = 5\n",
        ),
        &dir,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("config_change at 1s needs rollout")
            && err.contains("no target, count, percent or duration_s"),
        "{err}"
    );
    // A proposed config for another world (a PoP more) is refused.
    let bigger = dir.join("bigger-world.toml");
    std::fs::write(
        &bigger,
        std::fs::read_to_string(&world).unwrap().replace(
            "[[services]]",
            "[[pops]]\nid = \"syd1\"\nregion = \"ap-south\"\nipv4 = \"192.0.2.33\"\ncapacity_rps = 10000\n\n[[services]]",
        ),
    )
    .unwrap();
    let o = run(
        &write(
            "bigger",
            &format!("config = \"{}\"\nrollout = \"staged\"\n", bigger.display()),
        ),
        &dir,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("must keep the world config's regions and PoPs"),
        "{err}"
    );
}
