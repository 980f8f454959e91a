//! What steerctl prints says everything it was given (issue 18, item 3):
//! tables never cut a reason, a principal or an action, and the audit
//! keeps the operator's words apart from what steerd adds.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tables_keep_whole_reasons_and_the_audit_keeps_the_operators_words_apart() {
    let s = Steerd::start("operator-output");
    let reason = "replacing the second power feed in hall 3 after the UPS alarm; \
                  ticket OPS-4711, call Dana before undraining";
    stdout(&s.steerctl(&["drain", "pop", "fra1", "--reason", reason]));
    stdout(&s.steerctl(&["drain", "pop", "fra1", "--reason", "again, the same"]));

    let status = stdout(&s.steerctl(&["status"]));
    let fra1 = status.lines().find(|l| l.starts_with("fra1 ")).unwrap();
    assert!(!status.contains('…'), "{status}");
    assert!(fra1.contains("drain-2"), "{status}");
    let intents = stdout(&s.steerctl(&["intents"]));
    assert!(intents.contains("again, the same"), "{intents}");
    assert!(intents.contains("anonymous@127.0.0.1"), "{intents}");

    let audit = stdout(&s.steerctl(&["audit"]));
    assert!(!audit.contains('…'), "{audit}");
    // Wrapped onto lines of its own column, every word kept, in order.
    let flat = audit.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains(reason), "the reason was cut:\n{audit}");
    assert!(audit.lines().all(|l| l.chars().count() <= 120), "{audit}");
    assert!(audit.contains("anonymous@127.0.0.1"), "{audit}");
    assert!(audit.contains("steerd: Hard; "), "{audit}");
    assert!(audit.contains("replaces drain-1"), "{audit}");

    // JSON: the operator's words alone in `reason`, steerd's in `detail`,
    // and the same field names as the audit file.
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&s.steerctl(&["--output", "json", "audit"]))).unwrap();
    let entries = json.as_array().unwrap();
    assert_eq!(entries[0]["reason"], reason, "{json:#}");
    assert_eq!(entries[1]["reason"], "again, the same", "{json:#}");
    let detail = entries[1]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("Hard; ") && detail.ends_with("; replaces drain-1"),
        "{json:#}"
    );
    let file = std::fs::read_to_string(s.state_dir.join("audit.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(file.lines().next().unwrap()).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&line),
        keys(&entries[0]),
        "file {line}\nsteerctl {json:#}"
    );
    assert!(line["at_unix_ms"].as_i64().unwrap() > 0, "{line}");
    assert_eq!(line, entries[0]);
}

/// Issue 18, item 3: one undrain printed dozens of `watch` lines of small
/// weight steps. The ramp is now its first step plus one line saying how
/// many steps it took; `--verbose` prints each.
#[test]
fn watch_folds_an_undrain_ramp_into_a_few_lines() {
    let s = Steerd::start("watch-ramp");
    stdout(&s.steerctl(&["drain", "pop", "fra1", "--reason", "ramp test"]));
    s.wait_answers(
        "10.1.0.0/24",
        &["192.0.2.12"],
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let dir = s.state_dir.parent().unwrap().to_path_buf();
    let watch = |name: &str, verbose: bool| {
        let mut cmd = std::process::Command::new(STEERCTL);
        cmd.args(["--endpoint", &s.endpoint(), "watch"]);
        if verbose {
            cmd.arg("--verbose");
        }
        Proc::spawn(&mut cmd, dir.join(name))
    };
    let folded = watch("watch.log", false);
    let verbose = watch("watch-verbose.log", true);
    for w in [&folded, &verbose] {
        poll(std::time::Duration::from_secs(5), || {
            w.log_text().contains("current plan").then_some(())
        })
        .unwrap_or_else(|| panic!("watch did not start:\n{}", w.log_text()));
    }
    stdout(&s.steerctl(&["undrain", "pop", "fra1"]));
    // The ramp ends with fra1 and ams1 sharing eu-west, 500‰ each.
    poll(std::time::Duration::from_secs(30), || {
        let log = folded.log_text();
        let last = log.lines().last().unwrap_or_default().to_owned();
        (last.contains("done in") && last.contains("fra1 weight") && last.contains("-> 500‰"))
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no ramp summary:\n{}\nverbose:\n{}",
            folded.log_text(),
            verbose.log_text()
        )
    });
    let lines = folded.log_text().lines().count();
    let steps = verbose
        .log_text()
        .lines()
        .filter(|l| l.contains("weight"))
        .count();
    assert!(
        steps >= 5,
        "the ramp was expected to take several steps:\n{}",
        verbose.log_text()
    );
    assert!(
        lines <= 5,
        "{lines} lines for one undrain:\n{}",
        folded.log_text()
    );
}

/// Every key path of a JSON value (array elements under `[]`).
fn key_paths(v: &serde_json::Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let path = format!("{at}.{k}");
                out.insert(path.clone());
                key_paths(x, &path, out);
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                key_paths(x, &format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

/// Issue 18, item 3: `/status` and `steerctl --output json status` said
/// the same thing in different shapes (`drains`/`overrides` vs `intents`,
/// `plan_computed_at` vs `plan_computed_unix_ms`, nested vs flat `load`,
/// no `drained` in `/status`). Now one versioned document.
#[test]
fn status_json_is_one_versioned_schema_on_http_and_in_steerctl() {
    let s = Steerd::start("status-schema");
    stdout(&s.steerctl(&["drain", "pop", "fra1", "--reason", "schema"]));
    stdout(&s.steerctl(&["override", "set", "iad1", "700", "--reason", "canary"]));
    let (code, body) = http_get(s.http, "/status").unwrap();
    assert_eq!(code, 200, "{body}");
    let mut http: serde_json::Value = serde_json::from_str(&body).unwrap();
    // The BGP speaker's part rides along on /status (steerctl status --bgp).
    assert!(
        http.as_object_mut().unwrap().remove("bgp").is_some(),
        "{body}"
    );
    // So do the SLOs' evaluations (the quickstart has one): the same
    // document as `steerctl --output json slo`.
    let slo_http = http.as_object_mut().unwrap().remove("slo").unwrap();
    let slo_cli: serde_json::Value =
        serde_json::from_str(&stdout(&s.steerctl(&["--output", "json", "slo"]))).unwrap();
    let (mut a, mut b) = (Default::default(), Default::default());
    key_paths(&slo_http, "", &mut a);
    key_paths(&slo_cli, "", &mut b);
    assert_eq!(a, b, "/status slo and steerctl slo differ in shape");
    assert_eq!(slo_cli["slos"][0]["name"], "app-availability");
    assert_eq!(slo_cli["slos"][0]["objective"], 0.999);
    let cli: serde_json::Value =
        serde_json::from_str(&stdout(&s.steerctl(&["--output", "json", "status"]))).unwrap();

    let (mut a, mut b) = (Default::default(), Default::default());
    key_paths(&http, "", &mut a);
    key_paths(&cli, "", &mut b);
    assert_eq!(a, b, "/status: {http:#}\nsteerctl: {cli:#}");
    for must in [
        ".schema_version",
        ".plan_computed_unix_ms",
        ".intents",
        ".pops[].drained",
        ".pops[].load.error_ratio",
        ".intents[].scope",
    ] {
        assert!(a.contains(must), "{must} missing: {http:#}");
    }
    for gone in [
        ".drains",
        ".overrides",
        ".plan_computed_at",
        ".pops[].error_ratio",
    ] {
        assert!(!a.contains(gone), "{gone} still there: {http:#}");
    }
    assert_eq!(http["schema_version"], 1);
    for field in ["schema_version", "intents", "rails", "regions"] {
        assert_eq!(http[field], cli[field], "{field}");
    }
    assert_eq!(http["pops"][0]["drained_by"], "drain-1");
    assert_eq!(cli["pops"][0]["drained"], true);
    let kinds: Vec<&str> = cli["intents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["drain", "override"], "{cli:#}");

    // The README's example document has exactly these fields.
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme.find("```json\n{\n  \"schema_version\"").unwrap();
    let block = &readme[start + "```json\n".len()..];
    let block: String = block[..block.find("```").unwrap()]
        .lines()
        .map(|l| l.split(" //").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let example: serde_json::Value = serde_json::from_str(&block).unwrap();
    let mut documented = Default::default();
    key_paths(&example, "", &mut documented);
    let mut real = a.clone();
    // The example shows a PoP seen by a peer, no freeze, a change rolling
    // and a break-glass reload (their fields: `status_doc::ChangeDoc`,
    // `BreakGlassDoc`, checked through the binaries in tests/changes.rs).
    key_paths(
        &serde_json::json!({"pops": [{"peers": [{"observer": "", "reachable": true, "detail": "",
            "latency_ms": 0, "at_unix_ms": 0}]}],
            "changes": [serde_json::to_value(steer_types::status_doc::ChangeDoc {
                id: String::new(), state: String::new(), stage: None, author: String::new(),
                reason: String::new(), emergency: false, held: None, created_unix_ms: 0,
            }).unwrap()],
            "break_glass": [serde_json::to_value(steer_types::status_doc::BreakGlassDoc {
                at_unix_ms: 0, principal: String::new(), reason: String::new(), what: String::new(),
            }).unwrap()]}),
        "",
        &mut real,
    );
    assert_eq!(documented, real, "README example vs /status");
}

#[test]
fn slo_view_and_audited_corrections() {
    let s = Steerd::start("slo-correct");
    let table = stdout(&s.steerctl(&["slo"]));
    let line = table
        .lines()
        .find(|l| l.starts_with("app-availability"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("99.900%") && line.contains("28d"), "{table}");

    stdout(&s.steerctl(&[
        "slo",
        "correct",
        "app-availability",
        "--from",
        "-2h",
        "--to",
        "-1h",
        "--reason",
        "planned failover drill, CHG-42",
    ]));
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&s.steerctl(&["--output", "json", "slo"]))).unwrap();
    let c = &json["corrections"][0];
    assert_eq!(c["slo"], "app-availability", "{json:#}");
    assert_eq!(c["reason"], "planned failover drill, CHG-42");
    let span = c["end_unix_ms"].as_i64().unwrap() - c["start_unix_ms"].as_i64().unwrap();
    assert_eq!(span, 3_600_000);
    let table = stdout(&s.steerctl(&["slo"]));
    assert!(table.contains("CHG-42"), "{table}");
    let audit = stdout(&s.steerctl(&["audit"]));
    assert!(
        audit.contains("slo-correct") && audit.contains("CHG-42"),
        "{audit}"
    );

    // Refusals say what is wrong and change nothing.
    let unknown = s.steerctl(&[
        "slo", "correct", "nope", "--from", "-1h", "--reason", "typo",
    ]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("not found"),
        "{unknown:?}"
    );
    let inverted = s.steerctl(&[
        "slo",
        "correct",
        "app-availability",
        "--from",
        "now",
        "--to",
        "-1h",
        "--reason",
        "backwards",
    ]);
    assert!(!inverted.status.success());
    assert!(
        String::from_utf8_lossy(&inverted.stderr).contains("end after its start"),
        "{inverted:?}"
    );
    let bad_time = s.steerctl(&[
        "slo",
        "correct",
        "app-availability",
        "--from",
        "yesterday",
        "--reason",
        "x",
    ]);
    assert_eq!(bad_time.status.code(), Some(2), "{bad_time:?}");

    // The correction is durable: it survives kill -9.
    let s = s.restart_after_kill9();
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&s.steerctl(&["--output", "json", "slo"]))).unwrap();
    assert_eq!(
        json["corrections"][0]["reason"], "planned failover drill, CHG-42",
        "{json:#}"
    );
}
