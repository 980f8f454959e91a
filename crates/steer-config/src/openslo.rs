//! OpenSLO v1 import (`openslo = ["slos.yaml"]` in steerd's config):
//! `SLO` documents become SLOs exactly like `[[slos]]` ones.
//!
//! What Steer takes from a document: `metadata.name`, `spec.service` (a
//! `[[services]]` id), the first objective's `target` (or
//! `targetPercent`), a rolling `timeWindow` and an indicator that is a
//! `ratioMetric` (inline, or an `SLI` document named by `indicatorRef` in
//! the same files). The ratio's metric queries are not run: Steer's SLI is
//! what the agents count at the edge (`[[sli]]`: requests and failures),
//! so the import keeps the promise and measures it Steer's way. What Steer
//! cannot honour is refused with the file, line and column: timeslice
//! budgeting, calendar windows, threshold metrics, several objectives.
//! Other kinds (`Service`, `AlertPolicy`, ...) are skipped.

use std::{path::Path, time::Duration};

use serde::Deserialize;
use steer_slo::{Objective, SloSpec, default_alert_rules};
use steer_types::Topology;

use crate::error::ConfigError;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<Metadata>,
    spec: Option<yaml_serde::Value>,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SloDoc {
    service: String,
    indicator: Option<InlineIndicator>,
    indicator_ref: Option<String>,
    #[serde(default)]
    time_window: Vec<TimeWindow>,
    budgeting_method: Option<String>,
    #[serde(default)]
    objectives: Vec<ObjectiveDoc>,
}

#[derive(Deserialize)]
struct InlineIndicator {
    spec: IndicatorSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndicatorSpec {
    ratio_metric: Option<yaml_serde::Value>,
    threshold_metric: Option<yaml_serde::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimeWindow {
    duration: String,
    is_rolling: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectiveDoc {
    target: Option<f64>,
    target_percent: Option<f64>,
}

/// One YAML document of a file: its text and where it starts.
struct Chunk<'a> {
    text: &'a str,
    /// Byte offset in the file.
    start: usize,
}

/// Splits a multi-document stream at `---` lines.
fn documents(src: &str) -> Vec<Chunk<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in src.split_inclusive('\n') {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") {
            if !src[start..offset].trim().is_empty() {
                out.push(Chunk {
                    text: &src[start..offset],
                    start,
                });
            }
            start = offset + line.len();
        }
        offset += line.len();
    }
    if !src[start..].trim().is_empty() {
        out.push(Chunk {
            text: &src[start..],
            start,
        });
    }
    out
}

/// Errors of one file, placed by byte offset.
struct FileErrors<'a> {
    file: String,
    src: &'a str,
    errors: Vec<ConfigError>,
}

impl FileErrors<'_> {
    fn at(&mut self, offset: usize, key: &str, message: impl Into<String>) {
        let before = &self.src[..offset.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// At the first `key:` in `chunk`, else at the chunk's start.
    fn at_key(&mut self, chunk: &Chunk<'_>, key: &str, message: impl Into<String>) {
        let needle = format!("{key}:");
        let offset = chunk
            .text
            .match_indices(&needle)
            .find(|(i, _)| {
                // A key, not the tail of a longer one.
                chunk.text[..*i]
                    .chars()
                    .next_back()
                    .is_none_or(|c| c.is_whitespace() || matches!(c, '-' | '{' | ','))
            })
            .map_or(chunk.start, |(i, _)| chunk.start + i);
        self.at(offset, key, message);
    }
}

/// `28d`, `4w`, `12h`...: OpenSLO's duration shorthand, in units of a
/// fixed length (months, quarters and years are calendar lengths).
fn window(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Some(weeks) = t.strip_suffix('w') {
        let n: u64 = weeks
            .parse()
            .map_err(|_| format!("duration {t:?} must be a whole number of weeks"))?;
        return Ok(Duration::from_secs(n * 7 * 86_400));
    }
    if t.ends_with(['M', 'Q', 'Y']) {
        return Err(format!(
            "duration {t:?} is a calendar length; write it in days (e.g. \"28d\" or \"30d\")"
        ));
    }
    crate::duration::parse_duration(t)
}

/// What the import found.
#[derive(Default)]
pub(crate) struct Imported {
    pub(crate) slos: Vec<SloSpec>,
    /// Errors in the YAML files (their file, line and column).
    pub(crate) errors: Vec<ConfigError>,
    /// Files that could not be read: the config entry's span and why.
    pub(crate) unreadable: Vec<(std::ops::Range<usize>, String)>,
}

/// The SLOs of every file in `files` (relative to `base`), checked against
/// `topology`.
pub(crate) fn import(
    files: &[(String, std::ops::Range<usize>)],
    base: &Path,
    topology: &Topology,
) -> Imported {
    let mut out = Imported::default();
    for (name, span) in files {
        let path = base.join(name);
        let src = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) => {
                out.unreadable
                    .push((span.clone(), format!("cannot read {}: {e}", path.display())));
                continue;
            }
        };
        let (slos, mut errs) = parse(&path.display().to_string(), &src, topology);
        out.slos.extend(slos);
        out.errors.append(&mut errs);
    }
    out
}

/// The SLOs in one file's text.
fn parse(file: &str, src: &str, topology: &Topology) -> (Vec<SloSpec>, Vec<ConfigError>) {
    let mut e = FileErrors {
        file: file.to_owned(),
        src,
        errors: Vec::new(),
    };
    let chunks = documents(src);
    let mut docs = Vec::new();
    for chunk in &chunks {
        match yaml_serde::from_str::<Doc>(chunk.text) {
            Ok(doc) => docs.push((chunk, doc)),
            Err(err) => {
                let offset = err.location().map_or(0, |l| l.index());
                // The place is ours (file-wide), not the document's.
                let text = err.to_string();
                let what = text.split(" at line ").next().unwrap_or(&text);
                e.at(
                    chunk.start + offset,
                    "",
                    format!("not OpenSLO YAML: {what}"),
                );
            }
        }
    }
    // Named indicators (kind SLI) for indicatorRef.
    let mut indicators = std::collections::HashMap::new();
    for (chunk, doc) in &docs {
        if doc.kind.as_deref() == Some("SLI")
            && let (Some(m), Some(spec)) = (&doc.metadata, &doc.spec)
        {
            match yaml_serde::from_value::<IndicatorSpec>(spec.clone()) {
                Ok(s) => {
                    indicators.insert(m.name.clone(), s);
                }
                Err(err) => e.at_key(chunk, "spec", format!("SLI {}: {err}", m.name)),
            }
        }
    }
    let mut out = Vec::new();
    for (chunk, doc) in &docs {
        if doc.kind.as_deref() != Some("SLO") {
            continue;
        }
        if doc.api_version.as_deref() != Some("openslo/v1") {
            e.at_key(
                chunk,
                "apiVersion",
                format!(
                    "apiVersion {:?}: Steer reads openslo/v1",
                    doc.api_version.as_deref().unwrap_or("")
                ),
            );
            continue;
        }
        let Some(name) = doc.metadata.as_ref().map(|m| m.name.clone()) else {
            e.at_key(chunk, "metadata", "an SLO needs metadata.name");
            continue;
        };
        let spec = match doc
            .spec
            .clone()
            .map(yaml_serde::from_value::<SloDoc>)
            .transpose()
        {
            Ok(Some(s)) => s,
            Ok(None) => {
                e.at_key(chunk, "kind", format!("SLO {name} has no spec"));
                continue;
            }
            Err(err) => {
                e.at_key(chunk, "spec", format!("SLO {name}: {err}"));
                continue;
            }
        };
        if topology.service(&spec.service).is_none() {
            e.at_key(
                chunk,
                "service",
                format!("SLO {name}: no service {:?} in [[services]]", spec.service),
            );
            continue;
        }
        if let Some(m) = spec.budgeting_method.as_deref()
            && m != "Occurrences"
        {
            e.at_key(
                chunk,
                "budgetingMethod",
                format!("SLO {name}: budgetingMethod {m:?}; Steer budgets Occurrences"),
            );
            continue;
        }
        let indicator = match (&spec.indicator, &spec.indicator_ref) {
            (Some(i), _) => Some(&i.spec),
            (None, Some(r)) => match indicators.get(r) {
                Some(i) => Some(i),
                None => {
                    e.at_key(
                        chunk,
                        "indicatorRef",
                        format!("SLO {name}: no SLI {r:?} in the imported files"),
                    );
                    continue;
                }
            },
            (None, None) => None,
        };
        match indicator {
            Some(i) if i.ratio_metric.is_some() => {}
            Some(i) if i.threshold_metric.is_some() => {
                e.at_key(
                    chunk,
                    "thresholdMetric",
                    format!(
                        "SLO {name}: a thresholdMetric indicator is not imported; write a \
                         [[slos]] with kind = \"latency\" (agents count slow requests)"
                    ),
                );
                continue;
            }
            _ => {
                e.at_key(
                    chunk,
                    "indicator",
                    format!("SLO {name}: needs an indicator with a ratioMetric"),
                );
                continue;
            }
        }
        let objective = match spec.objectives.as_slice() {
            [o] => o,
            [] => {
                e.at_key(chunk, "objectives", format!("SLO {name}: no objective"));
                continue;
            }
            _ => {
                e.at_key(
                    chunk,
                    "objectives",
                    format!("SLO {name}: several objectives; import one per SLO"),
                );
                continue;
            }
        };
        let target = match (objective.target, objective.target_percent) {
            (Some(t), _) => t,
            (None, Some(p)) => p / 100.0,
            (None, None) => {
                e.at_key(
                    chunk,
                    "objectives",
                    format!("SLO {name}: the objective needs target or targetPercent"),
                );
                continue;
            }
        };
        if !(target > 0.0 && target < 1.0) {
            e.at_key(
                chunk,
                "target",
                format!("SLO {name}: target {target} must be a share between 0 and 1"),
            );
            continue;
        }
        let mut slo = SloSpec::new(&name, &spec.service, Objective::Availability { target });
        match spec.time_window.as_slice() {
            [] => {}
            [w] => {
                if w.is_rolling == Some(false) {
                    e.at_key(
                        chunk,
                        "isRolling",
                        format!(
                            "SLO {name}: calendar windows are not supported; use isRolling: true"
                        ),
                    );
                    continue;
                }
                match window(&w.duration) {
                    Ok(d) if !d.is_zero() => slo.window = d,
                    Ok(_) => {
                        e.at_key(chunk, "duration", format!("SLO {name}: an empty window"));
                        continue;
                    }
                    Err(why) => {
                        e.at_key(chunk, "duration", format!("SLO {name}: {why}"));
                        continue;
                    }
                }
            }
            _ => {
                e.at_key(
                    chunk,
                    "timeWindow",
                    format!("SLO {name}: one time window only"),
                );
                continue;
            }
        }
        slo.alerts = default_alert_rules();
        out.push(slo);
    }
    (out, e.errors)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The quickstart's world (it has the service `app`).
    fn topology() -> Topology {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/quickstart.toml");
        crate::load_steerd(std::path::Path::new(path))
            .unwrap()
            .topology
    }

    const TWO: &str = "\
apiVersion: openslo/v1
kind: SLI
metadata:
  name: edge-errors
spec:
  ratioMetric:
    counter: true
    good:
      metricSource:
        type: Prometheus
        spec:
          query: sum(rate(http_requests_total{code!~\"5..\"}[1m]))
    total:
      metricSource:
        type: Prometheus
        spec:
          query: sum(rate(http_requests_total[1m]))
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: app-availability
  displayName: App availability
spec:
  service: app
  indicatorRef: edge-errors
  timeWindow:
    - duration: 4w
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: good
      target: 0.995
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: app-inline
spec:
  service: app
  indicator:
    metadata:
      name: inline
    spec:
      ratioMetric:
        counter: true
        bad: {metricSource: {type: Prometheus, spec: {query: x}}}
        total: {metricSource: {type: Prometheus, spec: {query: y}}}
  timeWindow:
    - duration: 7d
      isRolling: true
  objectives:
    - targetPercent: 99.9
---
apiVersion: openslo/v1
kind: Service
metadata:
  name: app
spec:
  description: skipped
";

    #[test]
    fn ratio_metric_slos_are_imported_with_their_window_and_target() {
        let (slos, errors) = parse("slos.yaml", TWO, &topology());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(slos.len(), 2);
        assert_eq!(slos[0].name, "app-availability");
        assert_eq!(slos[0].window, Duration::from_secs(28 * 86_400));
        assert_eq!(slos[0].objective.target(), 0.995);
        assert_eq!(slos[1].name, "app-inline");
        assert!((slos[1].objective.target() - 0.999).abs() < 1e-12);
        assert_eq!(slos[1].window, Duration::from_secs(7 * 86_400));
        assert!(!slos[1].alerts.is_empty());
    }

    #[test]
    fn what_steer_cannot_honour_is_refused_at_its_line() {
        let src = "\
apiVersion: openslo/v1
kind: SLO
metadata:
  name: a
spec:
  service: nope
  indicatorRef: x
  objectives: [{target: 0.99}]
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: b
spec:
  service: app
  budgetingMethod: Timeslices
  indicator: {spec: {ratioMetric: {}}}
  objectives: [{target: 0.99}]
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: c
spec:
  service: app
  indicator: {spec: {ratioMetric: {}}}
  timeWindow: [{duration: 1M, isRolling: true}]
  objectives: [{target: 0.99}]
---
kind: SLO
spec: [unclosed
";
        let (slos, errors) = parse("bad.yaml", src, &topology());
        assert!(slos.is_empty());
        let at: Vec<(usize, &str)> = errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert!(
            at.iter()
                .any(|(l, m)| *l == 6 && m.contains("no service \"nope\"")),
            "{at:?}"
        );
        assert!(
            at.iter().any(|(l, m)| *l == 16 && m.contains("Timeslices")),
            "{at:?}"
        );
        assert!(
            at.iter()
                .any(|(l, m)| *l == 27 && m.contains("calendar length")),
            "{at:?}"
        );
        assert!(
            at.iter()
                .any(|(l, m)| *l >= 29 && m.contains("not OpenSLO YAML")),
            "{at:?}"
        );
        assert!(errors.iter().all(|e| e.file == "bad.yaml"));
    }
}
