//! The audit trail: every change of intent, and every refused attempt.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// One audited change of intent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: Timestamp,
    pub principal: String,
    /// e.g. `drain`, `undrain`.
    pub action: String,
    /// e.g. `pop fra1`.
    pub scope: String,
    pub reason: String,
    pub intent_id: Option<String>,
    /// First plan version that reflects the change (current one if not applied).
    pub plan_version: u64,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub forced: bool,
    /// `applied`, `refused` (capacity rail or bad request) or `denied` (auth).
    #[serde(default = "applied")]
    pub outcome: String,
}

fn applied() -> String {
    "applied".to_owned()
}
