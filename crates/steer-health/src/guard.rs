//! The correlated-failure guard: if more than a configured share of PoPs
//! turn down within one window, the signal is suspect (a broken probe
//! network, a bad agent rollout) rather than the PoPs. Their last good
//! health is held (fail static) until an operator confirms the failure or
//! every held PoP recovers by itself.

use std::collections::BTreeSet;

use steer_types::{PopId, Timestamp, health_guard::FreezeInfo};

/// State machine of the guard.
#[derive(Clone, Debug, PartialEq)]
pub enum Guard {
    /// Health is trusted and passed through.
    Watching,
    /// Event "correlated failure": `held` PoPs keep their last good state.
    Frozen {
        since: Timestamp,
        held: BTreeSet<PopId>,
        why: String,
    },
}

impl Guard {
    pub fn info(&self) -> Option<FreezeInfo> {
        match self {
            Self::Watching => None,
            Self::Frozen { since, held, why } => Some(FreezeInfo {
                since: *since,
                pops: held.iter().cloned().collect(),
                why: why.clone(),
            }),
        }
    }

    pub fn holds(&self, pop: &PopId) -> bool {
        matches!(self, Self::Frozen { held, .. } if held.contains(pop))
    }
}

/// What an evaluation changed, for the control loop to log and count.
#[derive(Clone, Debug, PartialEq)]
pub enum GuardEvent {
    Froze(FreezeInfo),
    /// Every held PoP is usable again; nothing to confirm.
    Thawed,
}
