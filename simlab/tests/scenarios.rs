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
