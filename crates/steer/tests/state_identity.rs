//! A state directory belongs to one deployment: steerd records who on
//! first start, refuses another deployment's state (naming the directory,
//! both identities and the flag), and with `--adopt-state` takes it over,
//! auditing the adoption and each intent the new config has no place for.

#![allow(clippy::unwrap_used)]

mod common;

use std::{path::Path, time::Duration};

use common::*;

/// The quickstart with `[server] cluster = name` and the edit applied.
fn config(
    dir: &Path,
    file: &str,
    cluster: &str,
    edit: impl Fn(String) -> String,
) -> std::path::PathBuf {
    let text = std::fs::read_to_string(quickstart()).unwrap();
    assert!(text.contains("[server]\n"), "quickstart lacks [server]");
    let text = edit(text.replace(
        "[server]\n",
        &format!("[server]\ncluster = \"{cluster}\"\n"),
    ));
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs steerd expecting it to refuse to start; returns its output.
fn refused(config: &Path, state: &Path) -> String {
    let log = state.with_extension("refused.log");
    let ports = [free_port(), free_port(), free_port()];
    let mut p = Proc::spawn(&mut steerd_command(config, state, ports), log);
    let status = poll(Duration::from_secs(10), || p.child.try_wait().unwrap());
    let text = p.log_text();
    assert!(
        status.is_some_and(|s| !s.success()),
        "steerd started:\n{text}"
    );
    text
}

#[test]
fn another_deployments_state_is_refused_unless_adopted() {
    let dir = temp_dir("state-identity");
    let state = dir.join("state");
    let prod = config(&dir, "prod.toml", "prod", |t| t);
    let s = Steerd::start_with(prod.clone(), state.clone());
    let out = s.steerctl(&["drain", "pop", "fra1", "--reason", "fibre cut"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(s);

    // Another deployment (its fra1 is called fra2) over the same state.
    let lab = config(&dir, "lab.toml", "lab", |t| {
        t.replace("\"fra1\"", "\"fra2\"")
    });
    let text = refused(&lab, &state);
    assert!(
        text.contains(&format!(
            "state directory {} belongs to cluster \"prod\"",
            state.display()
        )) && text.contains("not to this config's cluster \"lab\"")
            && text.contains("--adopt-state"),
        "{text}"
    );
    // Nothing was dropped by the refused start: prod still has its drain.
    let s = Steerd::start_with(prod.clone(), state.clone());
    let intents = String::from_utf8_lossy(&s.steerctl(&["intents"]).stdout).into_owned();
    assert!(intents.contains("drain-1"), "{intents}");
    drop(s);

    // Adopted: audited, and the drain lab has no place for is dropped,
    // audited on its own with what it was.
    let s = Steerd::start_with_args(lab, state.clone(), &["--adopt-state"]);
    let audit: serde_json::Value =
        serde_json::from_slice(&s.steerctl(&["--output", "json", "audit"]).stdout).unwrap();
    let entries = audit.as_array().unwrap();
    let adopt = entries.iter().find(|e| e["action"] == "adopt-state");
    assert!(
        adopt.is_some_and(|e| e["reason"].as_str().unwrap().contains("cluster \"prod\"")),
        "{audit:#}"
    );
    let drop_entry = entries
        .iter()
        .find(|e| e["action"] == "drop")
        .unwrap_or_else(|| panic!("no drop entry: {audit:#}"));
    assert_eq!(drop_entry["intent_id"], "drain-1", "{drop_entry}");
    let reason = drop_entry["reason"].as_str().unwrap();
    assert!(
        reason.contains("pop fra1 is not in the configuration at start")
            && reason.contains("fibre cut"),
        "{reason}"
    );
    let intents = String::from_utf8_lossy(&s.steerctl(&["intents"]).stdout).into_owned();
    assert!(intents.contains("no drains"), "{intents}");
    drop(s);

    // Now the state is lab's: prod is the stranger.
    let text = refused(&prod, &state);
    assert!(text.contains("belongs to cluster \"lab\""), "{text}");
}
