//! `[[slos]]`, `[alerting]` and `[cluster]`: what steerd promises, whom it
//! tells when a promise is at risk, and where a clustered controller keeps
//! its state.

use std::{collections::HashSet, time::Duration};

use serde::Deserialize;
use steer_slo::{AlertRule, Objective, Severity, SloSpec, Steering, default_alert_rules};
use steer_types::Topology;
use toml::Spanned;

use crate::{duration::parse_duration, error::Reporter};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlo {
    name: Spanned<String>,
    service: Spanned<String>,
    /// The promised share of good events, e.g. 0.999.
    objective: Spanned<f64>,
    /// `availability` (default) or `latency`.
    kind: Option<Spanned<String>>,
    /// For `latency`: a request is good when answered within this.
    threshold: Option<Spanned<String>>,
    /// Rolling window of the budget; 28d by default.
    window: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    pop: Option<Spanned<String>>,
    min_events: Option<Spanned<u64>>,
    runbook: Option<Spanned<String>>,
    #[serde(default)]
    alerts: Vec<Spanned<RawAlertRule>>,
    steering: Option<Spanned<RawSteering>>,
}

/// `[slos.steering]`: budget-aware steering for the SLO's service.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSteering {
    burn_rate: Spanned<f64>,
    release_below: Option<Spanned<f64>>,
    max_shift: Option<Spanned<f64>>,
    window: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlertRule {
    severity: Spanned<String>,
    burn_rate: Spanned<f64>,
    long: Spanned<String>,
    short: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlerting {
    #[serde(default)]
    alertmanagers: Vec<Spanned<String>>,
    evaluation_interval: Option<Spanned<String>>,
    resend_interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    etcd: Vec<Spanned<String>>,
    lease_ttl: Option<Spanned<String>>,
    node_id: Option<Spanned<String>>,
    advertise: Option<Spanned<String>>,
}

/// Where alerts go and how often SLOs are evaluated.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertingSettings {
    /// Base URLs of Alertmanagers (alerts go to `<url>/api/v2/alerts`).
    pub alertmanagers: Vec<String>,
    pub evaluation_interval: Duration,
    /// Firing alerts are sent again this often (Alertmanager forgets an
    /// alert not re-sent within its resolve timeout).
    pub resend_interval: Duration,
}

impl Default for AlertingSettings {
    fn default() -> Self {
        Self {
            alertmanagers: Vec::new(),
            evaluation_interval: Duration::from_secs(30),
            resend_interval: Duration::from_secs(60),
        }
    }
}

/// A controller's place in a cluster (`[cluster]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSettings {
    /// etcd client URLs.
    pub etcd: Vec<String>,
    /// How long a leader's lease outlives its last keep-alive.
    pub lease_ttl: Duration,
    /// This controller's name (the host name by default).
    pub node_id: Option<String>,
    /// Where other controllers' callers reach this one's operator API
    /// (`http://host:port`); by default the gRPC listen address.
    pub advertise: Option<String>,
}

fn duration(r: &mut Reporter<'_>, v: &Spanned<String>) -> Option<Duration> {
    match parse_duration(v.get_ref()) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            r.at(v.span(), "must be greater than zero");
            None
        }
        Err(e) => {
            r.at(v.span(), e);
            None
        }
    }
}

/// `http://host:port` (or https), nothing after the authority but a path.
fn http_url(text: &str) -> Result<(), String> {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or_else(|| format!("{text:?} must start with http:// or https://"))?;
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} needs a port (e.g. http://127.0.0.1:9093)"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("{text:?} is not host:port"));
    }
    Ok(())
}

pub(crate) fn slos(
    r: &mut Reporter<'_>,
    raw: &[Spanned<RawSlo>],
    topology: &Topology,
) -> Vec<SloSpec> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for s in raw {
        let s = s.get_ref();
        let name = s.name.get_ref();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            r.at(s.name.span(), "must be letters, digits, '-', '_' or '.'");
        } else if !names.insert(name.clone()) {
            r.at(s.name.span(), format!("SLO {name:?} is defined twice"));
        }
        if !topology
            .services
            .iter()
            .any(|x| x.id.as_str() == s.service.get_ref())
        {
            r.at(
                s.service.span(),
                format!("no service {:?} in [[services]]", s.service.get_ref()),
            );
        }
        let target = *s.objective.get_ref();
        if !(target > 0.0 && target < 1.0) {
            r.at(
                s.objective.span(),
                "must be a share between 0 and 1 (exclusive), e.g. 0.999",
            );
        }
        let objective = match s.kind.as_ref().map(|k| k.get_ref().as_str()) {
            None | Some("availability") => {
                if let Some(t) = &s.threshold {
                    r.at(t.span(), "only a latency SLO has a threshold");
                }
                Objective::Availability { target }
            }
            Some("latency") => match &s.threshold {
                Some(t) => Objective::Latency {
                    target,
                    threshold: duration(r, t).unwrap_or_default(),
                },
                None => {
                    if let Some(k) = &s.kind {
                        r.at(k.span(), "a latency SLO needs `threshold` (e.g. \"300ms\")");
                    }
                    Objective::Latency {
                        target,
                        threshold: Duration::ZERO,
                    }
                }
            },
            Some(other) => {
                if let Some(k) = &s.kind {
                    r.at(
                        k.span(),
                        format!("unknown kind {other:?} (use \"availability\" or \"latency\")"),
                    );
                }
                Objective::Availability { target }
            }
        };
        let mut spec = SloSpec::new(name, s.service.get_ref(), objective);
        if let Some(w) = &s.window
            && let Some(d) = duration(r, w)
        {
            spec.window = d;
        }
        if let Some(region) = &s.region {
            if !topology
                .regions
                .iter()
                .any(|x| x.id.as_str() == region.get_ref())
            {
                r.at(region.span(), format!("no region {:?}", region.get_ref()));
            }
            spec.region = Some(region.get_ref().clone());
        }
        if let Some(pop) = &s.pop {
            if !topology.pops.iter().any(|x| x.id.as_str() == pop.get_ref()) {
                r.at(pop.span(), format!("no PoP {:?}", pop.get_ref()));
            }
            spec.pop = Some(pop.get_ref().clone());
        }
        if let Some(m) = &s.min_events {
            spec.min_events = *m.get_ref();
        }
        if let Some(url) = &s.runbook {
            spec.runbook = Some(url.get_ref().clone());
        }
        if !s.alerts.is_empty() {
            spec.alerts = s.alerts.iter().filter_map(|a| alert_rule(r, a)).collect();
        } else {
            spec.alerts = default_alert_rules();
        }
        if let Some(st) = &s.steering {
            spec.steering = steering(r, st.get_ref(), &spec);
        }
        out.push(spec);
    }
    out
}

fn steering(r: &mut Reporter<'_>, raw: &RawSteering, spec: &SloSpec) -> Option<Steering> {
    let burn_rate = *raw.burn_rate.get_ref();
    if !(burn_rate.is_finite() && burn_rate > 0.0) {
        r.at(
            raw.burn_rate.span(),
            "must be a burn rate greater than zero, e.g. 10",
        );
        return None;
    }
    let mut st = Steering::new(burn_rate);
    if let Some(v) = &raw.release_below {
        let x = *v.get_ref();
        if !(x.is_finite() && x > 0.0 && x <= burn_rate) {
            r.at(
                v.span(),
                format!("must be greater than zero and at most burn_rate ({burn_rate})"),
            );
            return None;
        }
        st.release_below = x;
    }
    if let Some(v) = &raw.max_shift {
        let x = *v.get_ref();
        if !(x > 0.0 && x < 1.0) {
            r.at(
                v.span(),
                "must be a share between 0 and 1 (exclusive): some traffic stays to show recovery",
            );
            return None;
        }
        st.max_shift = x;
    }
    st.window = match &raw.window {
        Some(w) => duration(r, w)?,
        None => spec
            .alerts
            .iter()
            .map(|a| a.short)
            .min()
            .unwrap_or(st.window),
    };
    Some(st)
}

fn alert_rule(r: &mut Reporter<'_>, raw: &Spanned<RawAlertRule>) -> Option<AlertRule> {
    let a = raw.get_ref();
    let severity = match a.severity.get_ref().as_str() {
        "page" => Severity::Page,
        "ticket" => Severity::Ticket,
        other => {
            r.at(
                a.severity.span(),
                format!("unknown severity {other:?} (use \"page\" or \"ticket\")"),
            );
            return None;
        }
    };
    let burn_rate = *a.burn_rate.get_ref();
    if !(burn_rate.is_finite() && burn_rate > 0.0) {
        r.at(a.burn_rate.span(), "must be a number greater than zero");
        return None;
    }
    let long = duration(r, &a.long)?;
    let short = duration(r, &a.short)?;
    if short >= long {
        r.at(
            a.short.span(),
            "the short window must be shorter than the long one",
        );
        return None;
    }
    Some(AlertRule {
        severity,
        burn_rate,
        long,
        short,
    })
}

pub(crate) fn alerting(r: &mut Reporter<'_>, raw: Option<&RawAlerting>) -> AlertingSettings {
    let mut out = AlertingSettings::default();
    let Some(raw) = raw else {
        return out;
    };
    for url in &raw.alertmanagers {
        match http_url(url.get_ref()) {
            Ok(()) => out
                .alertmanagers
                .push(url.get_ref().trim_end_matches('/').to_owned()),
            Err(e) => r.at(url.span(), e),
        }
    }
    if let Some(v) = &raw.evaluation_interval
        && let Some(d) = duration(r, v)
    {
        out.evaluation_interval = d;
    }
    if let Some(v) = &raw.resend_interval
        && let Some(d) = duration(r, v)
    {
        out.resend_interval = d;
    }
    out
}

pub(crate) fn cluster(r: &mut Reporter<'_>, raw: &Spanned<RawCluster>) -> ClusterSettings {
    let c = raw.get_ref();
    if c.etcd.is_empty() {
        r.at(raw.span(), "`etcd` needs at least one client URL");
    }
    let mut etcd = Vec::new();
    for url in &c.etcd {
        match http_url(url.get_ref()) {
            Ok(()) => etcd.push(url.get_ref().clone()),
            Err(e) => r.at(url.span(), e),
        }
    }
    let mut lease_ttl = Duration::from_secs(3);
    if let Some(v) = &c.lease_ttl
        && let Some(d) = duration(r, v)
    {
        if d < Duration::from_secs(2) || d.subsec_nanos() != 0 {
            r.at(
                v.span(),
                "must be whole seconds, at least 2s (etcd leases count seconds)",
            );
        } else {
            lease_ttl = d;
        }
    }
    let node_id = c.node_id.as_ref().map(|n| {
        if n.get_ref().is_empty() || n.get_ref().contains('/') {
            r.at(n.span(), "must be a non-empty name without '/'");
        }
        n.get_ref().clone()
    });
    let advertise = c
        .advertise
        .as_ref()
        .and_then(|a| match http_url(a.get_ref()) {
            Ok(()) => Some(a.get_ref().clone()),
            Err(e) => {
                r.at(a.span(), e);
                None
            }
        });
    ClusterSettings {
        etcd,
        lease_ttl,
        node_id,
        advertise,
    }
}
