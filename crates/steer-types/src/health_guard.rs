//! Settings and state of the aggregator's guards against bad signals:
//! flap damping (RFC 2439 style), peer quorum (gray failure) and the
//! correlated-failure freeze.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{PopId, Timestamp};

/// RFC 2439-style flap damping of a PoP's state. Each flip of the settled
/// state adds `penalty`; the penalty halves every `half_life`; above
/// `suppress` the PoP is held down until it decays below `reuse`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DampingSettings {
    pub enabled: bool,
    pub penalty: f64,
    pub half_life: Duration,
    pub suppress: f64,
    pub reuse: f64,
    /// Ceiling of the penalty, so a long flapping spell does not hold a PoP
    /// down for hours (RFC 2439's maximum suppress time).
    pub max_penalty: f64,
}

impl Default for DampingSettings {
    /// Four flips in quick succession (or five spread over a minute)
    /// suppress; a single fail-and-recover (two flips) never does.
    fn default() -> Self {
        Self {
            enabled: true,
            penalty: 1000.0,
            half_life: Duration::from_secs(60),
            suppress: 3000.0,
            reuse: 750.0,
            max_penalty: 6000.0,
        }
    }
}

/// When many PoPs turn down at once, the signal is more likely broken than
/// the PoPs: freeze the last good health until an operator confirms.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorrelationGuardSettings {
    pub enabled: bool,
    /// Freeze when more than this share of PoPs turn down within `window`.
    pub max_down_share: f64,
    pub window: Duration,
}

impl Default for CorrelationGuardSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_down_share: 0.3,
            window: Duration::from_secs(5),
        }
    }
}

/// Everything the aggregator needs beyond [`crate::HealthSettings`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthGuards {
    pub damping: DampingSettings,
    pub correlation: CorrelationGuardSettings,
}

/// Why and since when health is frozen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FreezeInfo {
    pub since: Timestamp,
    /// PoPs whose turn to down was held back.
    pub pops: Vec<PopId>,
    pub why: String,
}
