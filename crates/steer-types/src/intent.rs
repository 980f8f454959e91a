//! Operator intent: what humans asked for, as opposed to what health says.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{PopId, RegionId, ServiceId, Timestamp};

/// Stable identifier of one intent, e.g. `drain-7`.
pub type IntentId = String;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DrainScope {
    Pop {
        pop: PopId,
    },
    Region {
        region: RegionId,
    },
    /// One service at one PoP; other services there keep their traffic.
    ServicePop {
        service: ServiceId,
        pop: PopId,
    },
}

impl DrainScope {
    pub fn describe(&self) -> String {
        match self {
            Self::Pop { pop } => format!("pop {pop}"),
            Self::Region { region } => format!("region {region}"),
            Self::ServicePop { service, pop } => format!("service {service} at pop {pop}"),
        }
    }

    /// Whether this scope covers `service` at `pop` (which is in `region`).
    pub fn covers(&self, service: Option<&ServiceId>, pop: &PopId, region: &RegionId) -> bool {
        match self {
            Self::Pop { pop: p } => p == pop,
            Self::Region { region: r } => r == region,
            Self::ServicePop { service: s, pop: p } => {
                p == pop && service.is_none_or(|svc| svc == s)
            }
        }
    }
}

/// How a drain takes traffic away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainMode {
    /// Ramp DNS weight to zero over the ramp, then de-prefer and withdraw
    /// anycast in phases.
    #[default]
    Soft,
    /// Out of answers and withdrawn at once.
    Hard,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drain {
    pub id: IntentId,
    pub scope: DrainScope,
    #[serde(default)]
    pub mode: DrainMode,
    /// Soft drains ramp over this long (default 5 × the service TTL when
    /// zero).
    #[serde(default, with = "millis")]
    pub ramp: Duration,
    pub reason: String,
    /// Who asked: token principal, certificate subject, or `anonymous@addr`.
    pub principal: String,
    pub created: Timestamp,
    /// The drain lifts itself at this time.
    #[serde(default)]
    pub expires: Option<Timestamp>,
    /// Applied despite a capacity refusal.
    #[serde(default)]
    pub forced: bool,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Pins a PoP's share in every answer set it is part of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightOverride {
    pub id: IntentId,
    pub pop: PopId,
    /// Per-mille share, 0..=1000.
    pub weight: u32,
    pub reason: String,
    pub principal: String,
    pub created: Timestamp,
    #[serde(default)]
    pub expires: Option<Timestamp>,
}

/// The full set of live intents. Order is creation order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Intents {
    pub drains: Vec<Drain>,
    #[serde(default)]
    pub overrides: Vec<WeightOverride>,
    /// Next numeric suffix for intent ids; persisted so ids are never reused.
    pub next_id: u64,
}

impl Intents {
    /// The strictest drain covering this PoP as a whole (PoP or region
    /// scope): a hard drain before any soft one, then the soft drain whose
    /// ramp ends first; creation order breaks ties.
    pub fn drain_for(&self, pop: &PopId, region: &RegionId) -> Option<&Drain> {
        self.drains
            .iter()
            .filter(|d| {
                d.scope.covers(None, pop, region)
                    && !matches!(d.scope, DrainScope::ServicePop { .. })
            })
            .min_by_key(|d| match d.mode {
                DrainMode::Hard => (0, Timestamp(i64::MIN)),
                DrainMode::Soft => (1, d.created.saturating_add(d.ramp)),
            })
    }

    /// Every drain covering `service` at this PoP (any scope), in creation
    /// order. The policy applies the strictest of them.
    pub fn drains_for_service<'a, 'b>(
        &'a self,
        service: &'b ServiceId,
        pop: &'b PopId,
        region: &'b RegionId,
    ) -> impl Iterator<Item = &'a Drain> + use<'a, 'b> {
        self.drains
            .iter()
            .filter(move |d| d.scope.covers(Some(service), pop, region))
    }

    pub fn override_for(&self, pop: &PopId) -> Option<&WeightOverride> {
        self.overrides.iter().find(|o| &o.pop == pop)
    }

    /// The earliest expiry among all intents, if any.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.drains
            .iter()
            .filter_map(|d| d.expires)
            .chain(self.overrides.iter().filter_map(|o| o.expires))
            .min()
    }
}
