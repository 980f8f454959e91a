//! Drains and overrides as change requests: which kinds `[changes]
//! reviewed_intents` puts through review, and the intent a change applies
//! once approved.

use std::fmt;

use serde::{Deserialize, Serialize};
use steer_types::{DrainMode, DrainScope, PopId};

/// A kind of operator intent that `[changes] reviewed_intents` may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntentKind {
    PopDrain,
    RegionDrain,
    ServiceDrain,
    Override,
}

impl IntentKind {
    pub const ALL: [Self; 4] = [
        Self::PopDrain,
        Self::RegionDrain,
        Self::ServiceDrain,
        Self::Override,
    ];

    /// The name used in the config: `pop-drain`, `region-drain`,
    /// `service-drain`, `override`.
    pub fn name(self) -> &'static str {
        match self {
            Self::PopDrain => "pop-drain",
            Self::RegionDrain => "region-drain",
            Self::ServiceDrain => "service-drain",
            Self::Override => "override",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == text)
    }

    pub fn of_drain(scope: &DrainScope) -> Self {
        match scope {
            DrainScope::Pop { .. } => Self::PopDrain,
            DrainScope::Region { .. } => Self::RegionDrain,
            DrainScope::ServicePop { .. } => Self::ServiceDrain,
        }
    }
}

/// The drain or override a change applies when it is approved (and its
/// release window allows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IntentSpec {
    Drain {
        scope: DrainScope,
        mode: DrainMode,
        ramp_ms: u64,
        expires_in_ms: Option<u64>,
        force: bool,
    },
    Override {
        pop: PopId,
        weight: u32,
        expires_in_ms: Option<u64>,
    },
}

impl IntentSpec {
    pub fn kind(&self) -> IntentKind {
        match self {
            Self::Drain { scope, .. } => IntentKind::of_drain(scope),
            Self::Override { .. } => IntentKind::Override,
        }
    }
}

impl fmt::Display for IntentSpec {
    /// `drain region eu-west (hard)`, `override pop fra1 to 200‰ for 3600s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expiry =
            |ms: &Option<u64>| ms.map_or(String::new(), |ms| format!(" for {}s", ms / 1000));
        match self {
            Self::Drain {
                scope,
                mode,
                expires_in_ms,
                force,
                ..
            } => {
                let mode = match mode {
                    DrainMode::Soft => "soft",
                    DrainMode::Hard => "hard",
                };
                write!(
                    f,
                    "drain {} ({mode}){}",
                    scope.describe(),
                    expiry(expires_in_ms)
                )?;
                if *force {
                    f.write_str(", forced")?;
                }
                Ok(())
            }
            Self::Override {
                pop,
                weight,
                expires_in_ms,
            } => write!(
                f,
                "override pop {pop} to {weight}‰{}",
                expiry(expires_in_ms)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_as_written_and_name_their_scope() {
        for k in IntentKind::ALL {
            assert_eq!(IntentKind::parse(k.name()), Some(k));
        }
        assert_eq!(IntentKind::parse("region_drain"), None);
        let spec = IntentSpec::Drain {
            scope: DrainScope::Region {
                region: "eu-west".into(),
            },
            mode: DrainMode::Hard,
            ramp_ms: 0,
            expires_in_ms: Some(3_600_000),
            force: false,
        };
        assert_eq!(spec.kind(), IntentKind::RegionDrain);
        assert_eq!(spec.to_string(), "drain region eu-west (hard) for 3600s");
        let o = IntentSpec::Override {
            pop: "fra1".into(),
            weight: 200,
            expires_in_ms: None,
        };
        assert_eq!(o.to_string(), "override pop fra1 to 200‰");
    }
}
