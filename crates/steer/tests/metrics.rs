//! Every metric the README documents is on steerd's `/metrics` from the
//! first scrape, registered at zero, not only after its first event: an
//! alert or a dashboard written from the README must find its series
//! (issue 18, item 5).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::*;

/// A metric the README names, with the one label value it pins, if any
/// (`steer_dns_dropped_total{reason="bad_source"}`).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Documented {
    name: String,
    label: Option<(String, String)>,
}

/// Every `steer_*` name in the README (the bare `steer_` of
/// `grep ^steer_` is a prefix, not a metric).
fn documented(readme: &str) -> BTreeSet<Documented> {
    let mut found = BTreeSet::new();
    let mut rest = readme;
    while let Some(at) = rest.find("steer_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..len];
        // Not the tail of a longer identifier such as `cargo_steer_x`.
        let standalone = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        // `steer_types::...` is a Rust path, not a metric.
        let rust_path = tail[len..].starts_with("::");
        if standalone && !rust_path && name.len() > "steer_".len() {
            let label = tail[len..].strip_prefix('{').and_then(|l| {
                let (key, value) = l.split_once("=\"")?;
                let value = &value[..value.find('"')?];
                let plain = |s: &str| {
                    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                };
                (plain(key) && plain(value)).then(|| (key.to_owned(), value.to_owned()))
            });
            found.insert(Documented {
                name: name.to_owned(),
                label,
            });
        }
        rest = &tail[len.max(1)..];
    }
    found
}

/// Whether the exposition has a sample of `m` (histograms: `_bucket`,
/// `_sum`, `_count`).
fn exposed(metrics: &str, m: &Documented) -> bool {
    metrics.lines().filter(|l| !l.starts_with('#')).any(|line| {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let name_matches = name == m.name
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name.strip_suffix(s) == Some(m.name.as_str()));
        name_matches
            && m.label
                .as_ref()
                .is_none_or(|(k, v)| line[name_end..].contains(&format!("{k}=\"{v}\"")))
    })
}

#[test]
fn readme_parser_finds_names_and_pinned_labels() {
    let text = "`steer_a_total{pop}`, `steer_b{reason=\"bad_source\"}` and \
                `curl | grep ^steer_`; `steer_c_total{action=\"drop\"\\|\"slip\"}`; `steer_types::status_doc`";
    let got: Vec<String> = documented(text)
        .into_iter()
        .map(|d| format!("{} {:?}", d.name, d.label))
        .collect();
    assert_eq!(
        got,
        [
            "steer_a_total None",
            "steer_b Some((\"reason\", \"bad_source\"))",
            "steer_c_total Some((\"action\", \"drop\"))",
        ]
    );
}

/// The quickstart (whose `[bgp]` peers have no router listening) is
/// started and scraped once, before any agent, query beyond the readiness
/// check, reload, drain or denial.
#[test]
fn every_metric_in_the_readme_is_exposed_at_start() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let wanted = documented(&readme);
    assert!(
        wanted.len() > 40,
        "the README's metric lists were not found: {wanted:?}"
    );
    let s = Steerd::start("metrics-at-start");
    let (code, body) = http_get(s.http, "/metrics").unwrap();
    assert_eq!(code, 200, "{body}");
    let missing: Vec<String> = wanted
        .iter()
        .filter(|m| !only_in_other_setups(&m.name))
        .filter(|m| !exposed(&body, m))
        .map(|m| match &m.label {
            Some((k, v)) => format!("{}{{{k}=\"{v}\"}}", m.name),
            None => m.name.clone(),
        })
        .collect();
    assert!(
        missing.is_empty(),
        "documented in README.md but not on /metrics at start: {missing:?}\n\n{body}"
    );
}
