//! Operator intent: what humans asked for, as opposed to what health says.

use serde::{Deserialize, Serialize};

use crate::{PopId, RegionId, Timestamp};

/// Stable identifier of one intent, e.g. `drain-7`.
pub type IntentId = String;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum DrainScope {
    Pop(PopId),
    Region(RegionId),
}

impl DrainScope {
    pub fn describe(&self) -> String {
        match self {
            Self::Pop(p) => format!("pop {p}"),
            Self::Region(r) => format!("region {r}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drain {
    pub id: IntentId,
    pub scope: DrainScope,
    pub reason: String,
    /// Who asked: token principal, certificate subject, or `anonymous`.
    pub principal: String,
    pub created: Timestamp,
}

/// The full set of live intents. Order is creation order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Intents {
    pub drains: Vec<Drain>,
    /// Next numeric suffix for intent ids; persisted so ids are never reused.
    pub next_id: u64,
}

impl Intents {
    /// The drain covering this PoP (directly or through its region), if any.
    pub fn drain_for(&self, pop: &PopId, region: &RegionId) -> Option<&Drain> {
        self.drains.iter().find(|d| match &d.scope {
            DrainScope::Pop(p) => p == pop,
            DrainScope::Region(r) => r == region,
        })
    }
}
