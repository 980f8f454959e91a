//! The audit trail: every change of intent, and every refused attempt.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// One audited change of intent. One schema everywhere: a line of
/// `audit.jsonl` and an entry of `steerctl --output json audit` are this
/// type serialized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Wall time, ms since the Unix epoch (`at` in logs written before).
    #[serde(rename = "at_unix_ms", alias = "at")]
    pub at: Timestamp,
    pub principal: String,
    /// e.g. `drain`, `undrain`.
    pub action: String,
    /// e.g. `pop fra1`.
    pub scope: String,
    /// The operator's words, as given.
    pub reason: String,
    /// What steerd adds: the drain mode and capacity projection, the
    /// intents a change replaced, the frozen failure confirmed. Kept apart
    /// from `reason` so neither is mistaken for the other.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
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

/// Longest text field an audit entry keeps (bytes); the rest is cut and
/// the cut says how much was dropped. A caller controls these fields, so
/// they are bounded before anything is written.
pub const MAX_AUDIT_FIELD: usize = 512;

impl AuditEntry {
    /// The entry with every caller-controlled text field cut to
    /// [`MAX_AUDIT_FIELD`] bytes.
    pub fn capped(mut self) -> Self {
        for field in [
            &mut self.principal,
            &mut self.action,
            &mut self.scope,
            &mut self.reason,
            &mut self.detail,
        ] {
            cap_field(field);
        }
        if let Some(id) = self.intent_id.as_mut() {
            cap_field(id);
        }
        self
    }
}

fn cap_field(text: &mut String) {
    if text.len() <= MAX_AUDIT_FIELD {
        return;
    }
    let mut cut = MAX_AUDIT_FIELD;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = text.len() - cut;
    text.truncate(cut);
    text.push_str(&format!("…[{dropped} more bytes]"));
}

fn applied() -> String {
    "applied".to_owned()
}
