//! Which SLO alerts to send to Alertmanager, and in what form (its v2 API:
//! `POST /api/v2/alerts` with a JSON list).
//!
//! Firing alerts are sent when they start and again every resend interval
//! with `endsAt` a few intervals ahead, so Alertmanager resolves them by
//! itself if Steer goes away; an alert that stops is sent once more with
//! `endsAt` now (resolved). Label sets are stable, so Alertmanager groups
//! and deduplicates the re-sends.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};
use steer_types::Timestamp;

use crate::{
    eval::Evaluation,
    rules::duration_text,
    spec::{Severity, SloSpec},
};

/// One alert instance's identity.
type Key = (String, Severity, Duration);

#[derive(Clone, Debug)]
struct Firing {
    since: Timestamp,
    last_sent: Timestamp,
}

/// Tracks firing alerts between evaluations.
#[derive(Debug, Default)]
pub struct Alerter {
    firing: BTreeMap<Key, Firing>,
    /// Where alert links point (steerd's `/status`).
    pub generator_url: String,
}

/// How far ahead a firing alert's `endsAt` is set, in resend intervals.
const ENDS_AFTER_RESENDS: u32 = 4;

impl Alerter {
    /// The alerts to post after `evals` (empty when nothing is due).
    pub fn due(
        &mut self,
        specs: &[SloSpec],
        evals: &[Evaluation],
        now: Timestamp,
        resend: Duration,
    ) -> Vec<Value> {
        let mut out = Vec::new();
        let mut still = std::collections::BTreeSet::new();
        for eval in evals {
            let Some(spec) = specs.iter().find(|s| s.name == eval.slo) else {
                continue;
            };
            for alert in eval.alerts.iter().filter(|a| a.firing) {
                let key: Key = (spec.name.clone(), alert.severity, alert.long.window);
                still.insert(key.clone());
                let entry = self.firing.entry(key).or_insert(Firing {
                    since: now,
                    last_sent: Timestamp(i64::MIN / 2),
                });
                if now.since(entry.last_sent) < resend {
                    continue;
                }
                entry.last_sent = now;
                let since = entry.since;
                let ends = now.saturating_add(resend * ENDS_AFTER_RESENDS);
                out.push(self.payload(spec, eval, alert, since, ends));
            }
        }
        let stopped: Vec<Key> = self
            .firing
            .keys()
            .filter(|k| !still.contains(*k))
            .cloned()
            .collect();
        for key in stopped {
            let Some(f) = self.firing.remove(&key) else {
                continue;
            };
            let spec = specs.iter().find(|s| s.name == key.0);
            let eval = evals.iter().find(|e| e.slo == key.0);
            if let (Some(spec), Some(eval)) = (spec, eval)
                && let Some(alert) = eval
                    .alerts
                    .iter()
                    .find(|a| a.severity == key.1 && a.long.window == key.2)
            {
                out.push(self.payload(spec, eval, alert, f.since, now));
            }
        }
        out
    }

    /// Whether any alert is firing (for the metric and `/status`).
    pub fn firing(&self, slo: &str, severity: Severity) -> bool {
        self.firing.keys().any(|k| k.0 == slo && k.1 == severity)
    }

    fn payload(
        &self,
        spec: &SloSpec,
        eval: &Evaluation,
        alert: &crate::eval::AlertState,
        since: Timestamp,
        ends: Timestamp,
    ) -> Value {
        let long = duration_text(alert.long.window);
        let short = duration_text(alert.short.window);
        let mut labels = json!({
            "alertname": "SteerSloBurn",
            "slo": spec.name,
            "service": spec.service,
            "severity": alert.severity.to_string(),
            "long_window": long,
        });
        if let Some(region) = &spec.region {
            labels["region"] = json!(region);
        }
        if let Some(pop) = &spec.pop {
            labels["pop"] = json!(pop);
        }
        let mut annotations = json!({
            "summary": format!(
                "SLO {} burning its error budget at over {}x ({} and {})",
                spec.name, alert.burn_rate, long, short
            ),
            "burn_rate_long": format!("{:.2}", alert.long.burn_rate),
            "burn_rate_short": format!("{:.2}", alert.short.burn_rate),
            "budget_remaining": format!("{:.4}", eval.budget_remaining),
        });
        if let Some(url) = &spec.runbook {
            annotations["runbook_url"] = json!(url);
        }
        let mut alert_json = json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": since.rfc3339(),
            "endsAt": ends.rfc3339(),
        });
        if !self.generator_url.is_empty() {
            alert_json["generatorURL"] = json!(self.generator_url);
        }
        alert_json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Objective,
        eval::evaluate,
        history::{Counts, History},
    };

    const MIN: i64 = 60_000;

    #[test]
    fn fires_resends_and_resolves() {
        let spec = SloSpec::new("app", "app", Objective::Availability { target: 0.999 });
        let specs = vec![spec.clone()];
        let mut h = History::new(
            Duration::from_secs(7 * 3600),
            Duration::from_secs(30 * 86_400),
        );
        for m in 0..60 {
            h.record(Timestamp(m * MIN), Counts::new(6000, 0));
        }
        for m in 60..70 {
            h.record(Timestamp(m * MIN), Counts::new(6000, 1200));
        }
        let mut alerter = Alerter::default();
        let resend = Duration::from_secs(60);
        let at = |m: i64| Timestamp(m * MIN);
        let eval = |h: &History, m: i64| vec![evaluate(&spec, h, &[], at(m))];

        let first = alerter.due(&specs, &eval(&h, 70), at(70), resend);
        let pages: Vec<&Value> = first
            .iter()
            .filter(|a| a["labels"]["severity"] == "page")
            .collect();
        assert!(!pages.is_empty(), "{first:?}");
        assert_eq!(pages[0]["labels"]["alertname"], "SteerSloBurn");
        assert_eq!(pages[0]["startsAt"], at(70).rfc3339());
        assert_eq!(pages[0]["endsAt"], at(74).rfc3339());
        assert!(alerter.firing("app", Severity::Page));
        // Within the resend interval: nothing new.
        let n = first.len();
        assert!(
            alerter
                .due(&specs, &eval(&h, 70), Timestamp(70 * MIN + 30_000), resend)
                .is_empty()
        );
        // A minute later: re-sent, same start.
        let again = alerter.due(&specs, &eval(&h, 71), at(71), resend);
        assert_eq!(again.len(), n);
        assert_eq!(again[0]["startsAt"], at(70).rfc3339());
        // The burn stops: the fast page (1 h and 5 m) resolves once
        // (endsAt now); the slow one (6 h and 30 m) still holds the burst.
        for m in 71..80 {
            h.record(Timestamp(m * MIN), Counts::new(6000, 0));
        }
        let resolved = alerter.due(&specs, &eval(&h, 80), at(80), resend);
        let page_resolved: Vec<&Value> = resolved
            .iter()
            .filter(|a| a["labels"]["long_window"] == "1h")
            .collect();
        assert_eq!(page_resolved.len(), 1, "{resolved:?}");
        assert_eq!(page_resolved[0]["endsAt"], at(80).rfc3339());
        // Once the slow page's short window is clean too, no page is left.
        for m in 80..111 {
            h.record(Timestamp(m * MIN), Counts::new(6000, 0));
        }
        alerter.due(&specs, &eval(&h, 111), at(111), resend);
        assert!(!alerter.firing("app", Severity::Page));
    }
}
