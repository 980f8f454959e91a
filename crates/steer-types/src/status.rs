//! The operator-facing status view: the plan joined with health and intents.
//! Served as JSON on `/status` and over gRPC `GetStatus`.

use serde::{Deserialize, Serialize};

use crate::{Drain, PopId, RegionId, Timestamp, WeightOverride};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopStatus {
    pub pop: PopId,
    pub region: RegionId,
    /// `up`, `down`, `unknown`, `stale-up`, `stale-down`.
    pub health: String,
    pub usable: bool,
    pub drained_by: Option<String>,
    /// Share of its own region's answers (first service), per-mille.
    pub weight_permille: u32,
    pub reason: String,
    /// Milliseconds since the last accepted report; `None` if never.
    pub last_report_age_ms: Option<i64>,
    pub load_rps: f64,
    /// One line per anycast prefix, e.g. `203.0.113.0/24 announce`.
    #[serde(default)]
    pub announcements: Vec<String>,
    /// The aggregator's state name, finer than `health` (e.g. `suppressed`).
    #[serde(default)]
    pub phase: String,
    /// Why the aggregator holds this state (probe results, staleness).
    #[serde(default)]
    pub evidence: String,
    /// Peer probe evidence: who saw this PoP, what, and when.
    #[serde(default)]
    pub peers: Vec<crate::health::PeerView>,
    #[serde(default)]
    pub load: crate::health::LoadFigures,
    /// Services taken out here by a drain narrower than the PoP, stricter
    /// than `drained_by` (see [`PopPlan`](crate::PopPlan)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_drains: Vec<crate::ServiceDrain>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionStatus {
    pub region: RegionId,
    pub served_by: Vec<RegionId>,
    /// `normal`, `spill`, `shed` or `panic`.
    #[serde(default)]
    pub level: String,
    /// The region's demand (first service), rps; 0 when unknown.
    #[serde(default)]
    pub demand_rps: f64,
    /// Where that figure came from.
    #[serde(default)]
    pub demand_source: crate::DemandSource,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub plan_version: u64,
    pub plan_computed_at: Timestamp,
    pub pops: Vec<PopStatus>,
    pub regions: Vec<RegionStatus>,
    pub drains: Vec<Drain>,
    #[serde(default)]
    pub overrides: Vec<WeightOverride>,
    /// Safety rails that clamped the current plan.
    #[serde(default)]
    pub rails: Vec<String>,
    /// Set while the correlated-failure guard holds health frozen.
    #[serde(default)]
    pub frozen: Option<crate::health_guard::FreezeInfo>,
    /// Services whose every PoP is drained: DNS answers the drained PoPs
    /// anyway rather than nothing (fail static over intent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all_drained: Vec<crate::ServiceId>,
    /// Change requests not finished (proposed, approved, rolling, paused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ChangeBrief>,
    /// Break-glass steps (emergency reloads and changes) of the last
    /// [`BREAK_GLASS_SHOWN_MS`], newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub break_glass: Vec<BreakGlass>,
}

/// How long `/status` shows a break-glass step: a day, so the next shift
/// sees it.
pub const BREAK_GLASS_SHOWN_MS: i64 = 24 * 3600 * 1000;

/// A change request in one line, for status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeBrief {
    pub id: String,
    /// `proposed`, `approved`, `rolling`, `paused`.
    pub state: String,
    /// The stage in force and what it covers, while rolling or paused.
    pub stage: Option<String>,
    pub author: String,
    pub reason: String,
    pub emergency: bool,
    /// Why it does not move on now (a window, a spent budget).
    pub held: Option<String>,
    pub created_at: Timestamp,
}

/// A break-glass step: a config applied past the change rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BreakGlass {
    pub at: Timestamp,
    pub principal: String,
    pub reason: String,
    /// `reload` or `change c7`.
    pub what: String,
}
