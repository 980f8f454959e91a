//! The status document: what steerd's `/status` serves and what
//! `steerctl --output json status` prints. One type, so the two cannot
//! drift apart; `schema_version` changes when a field changes meaning or
//! goes away (fields may be added within a version).

use serde::{Deserialize, Serialize};

/// Version of [`StatusDocument`]'s shape.
pub const STATUS_SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusDocument {
    pub schema_version: u32,
    pub plan_version: u64,
    pub plan_computed_unix_ms: i64,
    /// Set while the correlated-failure guard holds health frozen.
    pub frozen: Option<FrozenDoc>,
    pub pops: Vec<PopDoc>,
    pub regions: Vec<RegionDoc>,
    /// Safety rails that clamped the current plan, one line each.
    pub rails: Vec<String>,
    /// Live drains and weight overrides.
    pub intents: Vec<IntentDoc>,
    /// Services whose every PoP is drained: DNS answers them anyway
    /// rather than nothing.
    pub all_drained: Vec<String>,
    /// Change requests not finished (proposed, approved, rolling, paused).
    #[serde(default)]
    pub changes: Vec<ChangeDoc>,
    /// Break-glass steps (emergency reloads and changes) of the last day,
    /// newest first.
    #[serde(default)]
    pub break_glass: Vec<BreakGlassDoc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeDoc {
    pub id: String,
    pub state: String,
    /// The stage in force and its scope, while rolling or paused.
    pub stage: Option<String>,
    pub author: String,
    pub reason: String,
    pub emergency: bool,
    /// Why it does not move on now.
    pub held: Option<String>,
    pub created_unix_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BreakGlassDoc {
    pub at_unix_ms: i64,
    pub principal: String,
    pub reason: String,
    /// `reload` or `change c7`.
    pub what: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrozenDoc {
    pub since_unix_ms: i64,
    pub pops: Vec<String>,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopDoc {
    pub pop: String,
    pub region: String,
    /// What the policy acts on: `up`, `down`, `unknown`, `stale-up`,
    /// `stale-down`.
    pub health: String,
    /// The aggregator's finer state (`suppressed`, `gray-failure`, ...).
    pub phase: String,
    pub usable: bool,
    pub drained: bool,
    /// The drain intent covering the PoP.
    pub drained_by: Option<String>,
    /// Share of its own region's answers (first service), per-mille.
    pub weight_permille: u32,
    pub reason: String,
    /// Since the last accepted report; `null` if none yet.
    pub last_report_age_ms: Option<i64>,
    pub load_rps: f64,
    pub load: LoadDoc,
    /// One line per anycast prefix, e.g. `203.0.113.0/24 announce`.
    pub announcements: Vec<String>,
    /// Why health is what it is (probe results, staleness, damping).
    pub evidence: String,
    /// Peer probe evidence: who saw this PoP, what, and when.
    pub peers: Vec<PeerDoc>,
    /// Services taken out here by a drain narrower than the PoP.
    pub service_drains: Vec<ServiceDrainDoc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceDrainDoc {
    pub service: String,
    pub drain: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadDoc {
    pub bandwidth_bps: f64,
    pub error_ratio: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub degraded: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerDoc {
    pub observer: String,
    pub reachable: bool,
    pub detail: String,
    pub latency_ms: u32,
    pub at_unix_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionDoc {
    pub region: String,
    pub served_by: Vec<String>,
    /// `normal`, `spill`, `shed` or `panic`.
    pub level: String,
    /// The region's demand (first service), rps; 0 when unknown.
    pub demand_rps: f64,
    /// Where it came from: `answers` (DNS answers served, with PoP load),
    /// `plan_shares` (load split by the plan: no answers counted),
    /// `configured` (`demand_rps` in the config) or `none`.
    pub demand_source: String,
    /// For `answers`: how many were served to the region in the window.
    pub demand_answers: u64,
    /// The source in words, for people.
    pub demand_detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntentDoc {
    pub id: String,
    /// `drain` or `override`.
    pub kind: String,
    /// e.g. `pop fra1`, `region eu-west`, `service app@fra1`.
    pub scope: String,
    /// Drains: `hard` or `soft`; overrides: `null`.
    pub mode: Option<String>,
    pub ramp_ms: u64,
    /// Overrides: the pinned weight; drains: `null`.
    pub weight_permille: Option<u32>,
    pub forced: bool,
    pub principal: String,
    pub reason: String,
    pub created_unix_ms: i64,
    pub expires_unix_ms: Option<i64>,
}
