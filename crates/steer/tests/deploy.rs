//! The deployment files under configs/ work as shipped (issue 16): every
//! series the Grafana dashboard and the Prometheus rules read is on a
//! quickstart steerd's /metrics; promtool accepts the Prometheus config,
//! the rules and their unit tests; systemd-analyze accepts the units;
//! kubernetes-validate accepts the manifests, and the configs they carry
//! pass `steerd --check` / `steer-agent --check`.
//!
//! The tools come from Debian (`prometheus`, `systemd`) and PyPI
//! (`kubernetes-validate`); scripts/test installs them. A missing tool fails
//! its test, saying what to install.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "deploy/promql.rs"]
mod promql;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::*;
use serde::Deserialize;

fn configs() -> PathBuf {
    repo_root().join("configs")
}

/// `name` on PATH, or a failure that says which package brings it.
fn tool(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{name} is not installed: `{package}` (scripts/test installs it)")
        })
}

/// Runs `cmd`; panics with its output unless it succeeded and, when
/// `quiet`, printed nothing on stderr (systemd-analyze only warns there).
fn run(mut cmd: Command, quiet: bool) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr),
    );
    assert!(
        status.success() && (!quiet || stderr.trim().is_empty()),
        "{cmd:?} failed ({status}):\n{stdout}{stderr}"
    );
    format!("{stdout}{stderr}")
}

// ---------------------------------------------------------------- queries

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    record: Option<String>,
    alert: Option<String>,
    expr: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn rule_file() -> RuleFile {
    let text = std::fs::read_to_string(configs().join("prometheus/steer-rules.yml")).unwrap();
    yaml_serde::from_str(&text).unwrap()
}

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(configs().join("grafana/steer.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every panel, those inside collapsed rows included.
fn panels(dash: &serde_json::Value) -> Vec<&serde_json::Value> {
    fn walk<'a>(list: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// (where, PromQL) for every query of the dashboard: panel targets,
/// annotation queries and the selectors of `label_values` variables.
fn dashboard_queries(dash: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            out.push((
                format!("panel {title:?}"),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for a in dash["annotations"]["list"].as_array().unwrap() {
        if let Some(expr) = a["expr"].as_str() {
            out.push((format!("annotation {}", a["name"]), expr.to_owned()));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            let q = v["definition"].as_str().unwrap();
            assert_eq!(
                v["query"]["query"].as_str(),
                Some(q),
                "variable {}",
                v["name"]
            );
            let selector = promql::label_values_selector(q)
                .unwrap_or_else(|| panic!("variable {}: not label_values(...): {q}", v["name"]));
            out.push((format!("variable {}", v["name"]), selector.to_owned()));
        }
    }
    out
}

/// (where, PromQL) for every rule expression.
fn rule_queries(rules: &RuleFile) -> Vec<(String, String)> {
    rules
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .map(|r| {
            let name = r.alert.as_deref().or(r.record.as_deref()).unwrap();
            (format!("rule {name}"), r.expr.clone())
        })
        .collect()
}

/// Series Prometheus makes itself for every target.
const PROMETHEUS_SERIES: &[&str] = &["up"];

/// Labels Prometheus attaches to what it scrapes (prometheus.yml), not on
/// /metrics.
const TARGET_LABELS: &[&str] = &["job", "instance", "role", "pod", "namespace"];

/// Whether the exposition has a sample named `name` (a histogram's
/// `_bucket`, `_sum` and `_count` are its own names) with every label pair.
fn exposed(metrics: &str, name: &str, labels: &[(String, String)]) -> bool {
    metrics.lines().filter(|l| !l.starts_with('#')).any(|line| {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        line[..end] == *name
            && labels
                .iter()
                .all(|(k, v)| line[end..].contains(&format!("{k}=\"{v}\"")))
    })
}

#[test]
fn dashboard_and_rules_read_only_metrics_steerd_exports() {
    let dash = dashboard();
    let rules = rule_file();
    let recorded: BTreeSet<&str> = rules
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter_map(|r| r.record.as_deref())
        .collect();
    let mut queries = dashboard_queries(&dash);
    queries.extend(rule_queries(&rules));
    assert!(queries.len() > 100, "{} queries", queries.len());

    let s = Steerd::start("deploy-metrics");
    let (code, metrics) = http_get(s.http, "/metrics").unwrap();
    assert_eq!(code, 200, "{metrics}");

    let mut problems = BTreeSet::new();
    let mut checked = BTreeSet::new();
    for (whence, expr) in &queries {
        let selectors = promql::selectors(expr).unwrap_or_else(|e| panic!("{whence}: {e}"));
        assert!(!selectors.is_empty(), "{whence} reads no metric: {expr}");
        for sel in selectors {
            let name = sel.name.as_str();
            if recorded.contains(name) || PROMETHEUS_SERIES.contains(&name) {
                continue;
            }
            // Another role or configuration's metrics (the list
            // tests/metrics.rs uses): the prefix must still be Steer's.
            if only_in_other_setups(name) {
                checked.insert(name.to_owned());
                continue;
            }
            if !name.starts_with("steer_") {
                problems.insert(format!("{whence}: {name} is not a Steer metric"));
                continue;
            }
            let labels: Vec<(String, String)> = sel
                .equal
                .into_iter()
                .filter(|(k, v)| !TARGET_LABELS.contains(&k.as_str()) && !v.contains('$'))
                .collect();
            if !exposed(&metrics, name, &[]) {
                problems.insert(format!("{whence}: {name} is not on /metrics"));
            } else if !exposed(&metrics, name, &labels) {
                problems.insert(format!("{whence}: no {name} series has {labels:?}"));
            }
            checked.insert(name.to_owned());
        }
    }
    assert!(
        problems.is_empty(),
        "queries read series steerd does not export:\n{}\n\n{metrics}",
        problems.into_iter().collect::<Vec<_>>().join("\n")
    );
    assert!(checked.len() > 60, "only {} metrics checked", checked.len());
}

#[test]
fn dashboard_is_importable() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "steer-overview");
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36);
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "job", "instance", "pop", "region"]);
    assert_eq!(dash["templating"]["list"][0]["type"], "datasource");
    let mut ids = BTreeSet::new();
    for p in panels(&dash) {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate id {}",
            p["id"]
        );
        let pos = &p["gridPos"];
        assert!(
            pos["x"].as_u64().unwrap() + pos["w"].as_u64().unwrap() <= 24,
            "{p}"
        );
        if p["type"] != "row" {
            // Every query goes to the chosen data source, none to a fixed one.
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{} has no query", p["title"]);
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            }
        }
    }
    let titles: BTreeSet<&str> = panels(&dash)
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for row in [
        "Overview", "PoPs", "Regions", "DNS", "BGP", "SLOs", "Changes",
    ] {
        assert!(titles.contains(row), "no row {row}: {titles:?}");
    }
}

#[test]
fn every_alert_says_how_bad_and_what_happened() {
    let rules = rule_file();
    let mut alerts = BTreeSet::new();
    for g in &rules.groups {
        for r in &g.rules {
            assert!(
                r.alert.is_some() != r.record.is_some(),
                "{}: a rule is a record or an alert",
                g.name
            );
            let Some(alert) = &r.alert else { continue };
            assert!(alerts.insert(alert.as_str()), "{alert} twice");
            assert!(
                matches!(
                    r.labels.get("severity").map(String::as_str),
                    Some("page" | "ticket")
                ),
                "{alert}: severity must be page or ticket (as SteerSloBurn's): {:?}",
                r.labels
            );
            for key in ["summary", "description"] {
                assert!(
                    r.annotations.get(key).is_some_and(|t| !t.trim().is_empty()),
                    "{alert}: no {key}"
                );
            }
        }
    }
    for wanted in [
        "SteerdDown",
        "SteerdNotScraped",
        "SteerControlLoopStalled",
        "SteerHealthFrozen",
        "SteerManyPopsUnhealthy",
        "SteerRegionShedding",
        "SteerRegionPanic",
        "SteerBgpSessionDown",
        "SteerChangeRolledBackByJudgement",
        "SteerBreakGlassUsed",
        "SteerStateWriteErrors",
        "SteerAuditWriteErrors",
        "SteerDnsServfailRatioHigh",
    ] {
        assert!(alerts.contains(wanted), "no alert {wanted}");
    }
}

// ---------------------------------------------------------------- promtool

#[test]
fn promtool_accepts_config_rules_and_their_tests() {
    let promtool = tool("promtool", "apt-get install prometheus");
    let dir = temp_dir("deploy-promtool");
    for f in ["prometheus.yml", "steer-rules.yml", "steer-rules.test.yml"] {
        std::fs::copy(configs().join("prometheus").join(f), dir.join(f)).unwrap();
    }
    // The SLO rules prometheus.yml loads beside ours, as README says to
    // make them.
    let slo = Command::new(STEERCTL)
        .args(["slo", "rules", "--config"])
        .arg(quickstart())
        .output()
        .unwrap();
    assert!(slo.status.success(), "{slo:?}");
    std::fs::write(dir.join("steer-slo-rules.yml"), &slo.stdout).unwrap();

    let promtool_in = |args: &[&str]| {
        let mut cmd = Command::new(&promtool);
        cmd.args(args).current_dir(&dir);
        run(cmd, false)
    };
    let out = promtool_in(&["check", "config", "prometheus.yml"]);
    assert!(out.contains("2 rule files found"), "{out}");
    assert!(!out.contains("WARNING"), "{out}");
    promtool_in(&["check", "rules", "steer-rules.yml"]);
    promtool_in(&["test", "rules", "steer-rules.test.yml"]);

    // Every dashboard query is valid PromQL: promtool parses them as
    // recording rules, with Grafana's variables filled in.
    let mut text = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, (_, expr)) in dashboard_queries(&dashboard()).iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$job", "steerd")
            .replace("$instance", ".*")
            .replace("$pop", ".*")
            .replace("$region", ".*");
        text.push_str(&format!(
            "      - record: dashboard_query_{n}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    std::fs::write(dir.join("dashboard-queries.yml"), text).unwrap();
    promtool_in(&["check", "rules", "dashboard-queries.yml"]);
}

// ---------------------------------------------------------------- systemd

#[test]
fn systemd_units_verify_and_stay_hardened() {
    let analyze = tool("systemd-analyze", "apt-get install systemd");
    let sysusers = tool("systemd-sysusers", "apt-get install systemd");
    let dir = temp_dir("deploy-systemd");
    // `verify` wants the programs the units start to exist: point them at
    // the binaries under test.
    let installed = [
        ("/usr/local/bin/steerd", STEERD),
        ("/usr/local/bin/steer-agent", AGENT),
    ];
    let mut units = Vec::new();
    for unit in ["steerd.service", "steer-agent.service"] {
        let mut text = std::fs::read_to_string(configs().join("systemd").join(unit)).unwrap();
        assert!(
            text.contains("--log-format json"),
            "{unit}: structured logs"
        );
        for (path, built) in installed {
            text = text.replace(path, built);
        }
        std::fs::write(dir.join(unit), text).unwrap();
        units.push(dir.join(unit));
    }
    let mut verify = Command::new(&analyze);
    verify.arg("verify").args(&units);
    run(verify, true);
    // The sandbox as systemd scores it (0 best, 10 worst, in tenths here):
    // both score 1.6-1.7 now; over 2.0 is a hardening setting lost.
    for unit in &units {
        let mut security = Command::new(&analyze);
        security
            .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
            .arg(unit);
        run(security, false);
    }
    let mut users = Command::new(sysusers);
    users
        .arg("--dry-run")
        .arg(format!("--root={}", dir.display()))
        .arg(configs().join("systemd/sysusers.d/steer.conf"));
    // It reports what it would do on stderr; a bad line fails it.
    let out = run(users, false);
    for user in ["'steer'", "'steer-agent'"] {
        assert!(out.contains(&format!("Creating user {user}")), "{out}");
    }
}

// ---------------------------------------------------------------- Kubernetes

/// Kubernetes releases the manifests are checked against (schemas that
/// kubernetes-validate ships, so no network): the oldest we claim and a
/// current one.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.34.0"];

#[test]
fn kubernetes_manifests_validate() {
    let python = tool("python3", "apt-get install python3");
    let probe = Command::new(&python)
        .args(["-c", "import kubernetes_validate"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "kubernetes-validate is not installed: `python3 -m pip install kubernetes-validate` \
         (scripts/test installs it)"
    );
    let manifests = k8s_manifests();
    assert!(manifests.len() >= 3, "{manifests:?}");
    for version in KUBERNETES_VERSIONS {
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "kubernetes_validate", "--strict", "--quiet"])
            .args(["--kubernetes-version", version])
            .args(&manifests);
        run(cmd, false);
    }
}

fn k8s_manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(configs().join("k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// `data[key]` of the ConfigMap in a manifest file.
fn config_map_entry(manifest: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(manifest).unwrap();
    text.split("\n---\n")
        .map(|doc| yaml_serde::from_str::<yaml_serde::Value>(doc).unwrap())
        .find(|doc| doc["kind"].as_str() == Some("ConfigMap"))
        .and_then(|doc| doc["data"][key].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no ConfigMap with {key} in {}", manifest.display()))
}

/// The configs in the ConfigMaps are valid for the binaries, with the
/// Secrets' files in place (a self-signed certificate, 0600 secrets): the
/// paths the pods mount are rewritten to a temporary directory.
#[test]
fn kubernetes_configs_pass_check() {
    let dir = temp_dir("deploy-k8s-check");
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["steerd.steer.svc".to_owned()]).unwrap();
    std::fs::write(secrets.join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(secrets.join("ca.crt"), cert.cert.pem()).unwrap();
    write_private(&secrets.join("tls.key"), cert.signing_key.serialize_pem());
    let token = "k8s-agent-fra1-token-0123456789";
    write_private(&secrets.join("agent.token"), format!("{token}\n"));
    write_private(
        &secrets.join("tokens.toml"),
        format!("[[tokens]]\nprincipal = \"agent-fra1\"\npop = \"fra1\"\ntoken = \"{token}\"\n"),
    );
    let localise = |text: String| {
        text.replace("/run/steer/secrets/", &format!("{}/", secrets.display()))
            .replace("/var/lib/steer", &dir.join("state").display().to_string())
    };
    let k8s = configs().join("k8s");
    for (binary, manifest, key) in [
        (STEERD, "steerd.yaml", "steerd.toml"),
        (AGENT, "steer-agent.yaml", "agent.toml"),
    ] {
        let config = dir.join(key);
        std::fs::write(
            &config,
            localise(config_map_entry(&k8s.join(manifest), key)),
        )
        .unwrap();
        let mut check = Command::new(binary);
        check.arg("--config").arg(&config).arg("--check");
        run(check, false);
    }
}
