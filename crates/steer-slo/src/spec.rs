//! What an SLO promises, and when to alert on it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use steer_types::Timestamp;

/// What counts as a good event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Objective {
    /// Share of requests that did not fail.
    Availability { target: f64 },
    /// Share of requests answered within `threshold` (counted by the edge
    /// proxy's latency histogram bucket at the threshold).
    Latency { target: f64, threshold: Duration },
}

impl Objective {
    /// The promised share of good events, in (0, 1).
    pub fn target(&self) -> f64 {
        match self {
            Self::Availability { target } | Self::Latency { target, .. } => *target,
        }
    }

    /// The share of events allowed to be bad: `1 − target`.
    pub fn budget_share(&self) -> f64 {
        (1.0 - self.target()).max(0.0)
    }
}

/// One SLO as configured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SloSpec {
    pub name: String,
    pub service: String,
    pub objective: Objective,
    /// Rolling window of the budget (28 days by default).
    pub window: Duration,
    /// Only this region's clients, if set.
    pub region: Option<String>,
    /// Only this PoP's traffic, if set.
    pub pop: Option<String>,
    /// Alert when these rules fire; [`default_alert_rules`] unless
    /// configured.
    pub alerts: Vec<AlertRule>,
    /// The long window of a rule needs at least this many events before
    /// the rule may fire, so one error on a quiet SLO does not page.
    pub min_events: u64,
    /// Linked from alerts.
    pub runbook: Option<String>,
    /// Budget-aware steering (opt-in): move traffic off a PoP whose
    /// errors burn this SLO's budget while other PoPs serve well.
    #[serde(default)]
    pub steering: Option<Steering>,
}

/// When and how far budget-aware steering moves a burning PoP's traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Steering {
    /// A PoP burning the budget at least this fast (over `window`) loses
    /// traffic, e.g. 10.
    pub burn_rate: f64,
    /// ... and gets it back, a quarter of `max_shift` per evaluation, once
    /// it burns slower than this (`burn_rate / 2` unless set).
    pub release_below: f64,
    /// Share of the PoP's traffic that moves at most, in (0, 1): what is
    /// left keeps measuring the PoP, so recovery shows.
    pub max_shift: f64,
    /// Burn measured over this window (the SLO's shortest alert window
    /// unless set).
    pub window: Duration,
}

impl Steering {
    pub fn new(burn_rate: f64) -> Self {
        Self {
            burn_rate,
            release_below: burn_rate / 2.0,
            max_shift: DEFAULT_MAX_SHIFT,
            window: DEFAULT_STEERING_WINDOW,
        }
    }
}

/// Share of a burning PoP's traffic budget-aware steering moves unless
/// configured.
pub const DEFAULT_MAX_SHIFT: f64 = 0.5;

/// Burn window of budget-aware steering for an SLO without alert rules.
pub const DEFAULT_STEERING_WINDOW: Duration = Duration::from_secs(300);

impl SloSpec {
    pub fn new(name: &str, service: &str, objective: Objective) -> Self {
        Self {
            name: name.to_owned(),
            service: service.to_owned(),
            objective,
            window: DEFAULT_WINDOW,
            region: None,
            pop: None,
            alerts: default_alert_rules(),
            min_events: DEFAULT_MIN_EVENTS,
            runbook: None,
            steering: None,
        }
    }
}

/// 28 days.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(28 * 86_400);

/// Events a rule's long window needs before it may fire.
pub const DEFAULT_MIN_EVENTS: u64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Page,
    Ticket,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Page => "page",
            Self::Ticket => "ticket",
        })
    }
}

/// Fires when the burn rate exceeds `burn_rate` over both windows: the long
/// one shows the budget really is going, the short one that it still is
/// (so the alert resolves soon after the burn stops).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    pub severity: Severity,
    pub burn_rate: f64,
    pub long: Duration,
    pub short: Duration,
}

/// The SRE Workbook's multi-window, multi-burn-rate table for a 30-day
/// window: page at 14.4× over 1 h and 5 m (2% of the budget in an hour)
/// and 6× over 6 h and 30 m (5% in six hours); ticket at 1× over 3 d and
/// 6 h (10% in three days).
pub fn default_alert_rules() -> Vec<AlertRule> {
    let m = |minutes: u64| Duration::from_secs(minutes * 60);
    vec![
        AlertRule {
            severity: Severity::Page,
            burn_rate: 14.4,
            long: m(60),
            short: m(5),
        },
        AlertRule {
            severity: Severity::Page,
            burn_rate: 6.0,
            long: m(360),
            short: m(30),
        },
        AlertRule {
            severity: Severity::Ticket,
            burn_rate: 1.0,
            long: m(3 * 24 * 60),
            short: m(360),
        },
    ]
}

/// A time range excluded from the budget (planned maintenance, a known
/// bad client), with who asked and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Correction {
    pub slo: String,
    pub start: Timestamp,
    pub end: Timestamp,
    pub reason: String,
    pub principal: String,
}

impl Correction {
    /// Milliseconds of `[start, end)` inside the correction.
    pub fn overlap_ms(&self, start: i64, end: i64) -> i64 {
        (end.min(self.end.0) - start.max(self.start.0)).max(0)
    }
}
