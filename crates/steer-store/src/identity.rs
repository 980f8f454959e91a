//! Which deployment a state directory belongs to.
//!
//! Intents name PoPs, regions and services of one deployment. Pointed at
//! another deployment's state (a copied config, a shared working directory
//! with the quickstart's `.steer-state`), steerd would drop every intent the
//! new config has no place for, or worse, apply drains meant for another
//! network. So the state records an identity on first start, and a start
//! with a different one is refused unless the operator adopts the state.
//!
//! The identity is the configured `[server] cluster` name when there is one,
//! else the config's set of regions: two configs with the same cluster name
//! are the same deployment whatever their regions (regions come and go);
//! without a name on either side, the same regions make the same one.

use std::fmt;

use serde::{Deserialize, Serialize};
use steer_types::RegionId;

use crate::{PersistedState, StateStore, StoreError};

/// Who a state directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateIdentity {
    /// `[server] cluster`, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The config's region ids, sorted.
    pub regions: Vec<RegionId>,
}

impl StateIdentity {
    pub fn new(cluster: Option<String>, regions: impl IntoIterator<Item = RegionId>) -> Self {
        let mut regions: Vec<RegionId> = regions.into_iter().collect();
        regions.sort();
        regions.dedup();
        Self { cluster, regions }
    }

    /// Whether `self` and `other` name the same deployment: by cluster name
    /// when both have one, else by their regions.
    pub fn same_deployment(&self, other: &Self) -> bool {
        match (&self.cluster, &other.cluster) {
            (Some(a), Some(b)) => a == b,
            _ => self.regions == other.regions,
        }
    }
}

impl fmt::Display for StateIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let regions: Vec<&str> = self.regions.iter().map(RegionId::as_str).collect();
        match &self.cluster {
            Some(c) => write!(f, "cluster {c:?} (regions {})", regions.join(", ")),
            None => write!(f, "regions {}", regions.join(", ")),
        }
    }
}

/// How a start took the state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// No identity was recorded (first start, or state from before
    /// identities): this one is now.
    Recorded,
    /// The state belongs to this deployment.
    Same,
    /// The state belonged to `previous`; the operator adopted it.
    Adopted { previous: StateIdentity },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    #[error(
        "state directory {dir} belongs to {stored}, not to this config's {wanted}: \
         its drains and overrides were made for another deployment. Point \
         --state-dir (or [server] state_dir) at this deployment's own directory, \
         or, if this config is meant to take that state over, start once with \
         --adopt-state (intents this config has no place for are dropped, each \
         audited)"
    )]
    Foreign {
        dir: String,
        stored: StateIdentity,
        wanted: StateIdentity,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks that the state in `store` (at `dir`, for messages) belongs to
/// `wanted`, and records `wanted` in it on first start and when the same
/// deployment's identity moved (a cluster name set, regions added under a
/// name). Another deployment's state is refused unless `adopt`; then
/// nothing is written here: the control loop records the new identity
/// together with the adoption's audit entry.
pub fn claim(
    store: &dyn StateStore,
    dir: &str,
    wanted: &StateIdentity,
    adopt: bool,
) -> Result<Claim, ClaimError> {
    let mut state: PersistedState = store.load()?.unwrap_or_default();
    let claim = match &state.identity {
        None => Claim::Recorded,
        Some(stored) if stored.same_deployment(wanted) => Claim::Same,
        Some(stored) if adopt => Claim::Adopted {
            previous: stored.clone(),
        },
        Some(stored) => {
            return Err(ClaimError::Foreign {
                dir: dir.to_owned(),
                stored: stored.clone(),
                wanted: wanted.clone(),
            });
        }
    };
    if matches!(claim, Claim::Adopted { .. }) || state.identity.as_ref() == Some(wanted) {
        return Ok(claim);
    }
    state.identity = Some(wanted.clone());
    store.save(&state)?;
    Ok(claim)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::FileStore;

    fn id(cluster: Option<&str>, regions: &[&str]) -> StateIdentity {
        StateIdentity::new(
            cluster.map(str::to_owned),
            regions.iter().map(RegionId::new),
        )
    }

    fn store(name: &str) -> (FileStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("steer-claim-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (FileStore::open(&dir).unwrap(), dir)
    }

    #[test]
    fn same_deployment_by_name_else_by_regions() {
        let eu_us = id(None, &["us-east", "eu-west"]);
        assert!(eu_us.same_deployment(&id(None, &["eu-west", "us-east"])));
        assert!(!eu_us.same_deployment(&id(None, &["eu-west"])));
        // A name set later still matches by regions.
        assert!(eu_us.same_deployment(&id(Some("prod"), &["eu-west", "us-east"])));
        // Named on both sides: the name decides, regions may change.
        assert!(id(Some("prod"), &["a"]).same_deployment(&id(Some("prod"), &["a", "b"])));
        assert!(!id(Some("prod"), &["a"]).same_deployment(&id(Some("lab"), &["a"])));
    }

    #[test]
    fn a_foreign_state_is_refused_unless_adopted() {
        let (store, dir) = store("foreign");
        let prod = id(Some("prod"), &["eu-west", "us-east"]);
        let lab = id(Some("lab"), &["eu-west"]);
        assert_eq!(claim(&store, "d", &prod, false).unwrap(), Claim::Recorded);
        assert_eq!(claim(&store, "d", &prod, false).unwrap(), Claim::Same);
        let err = claim(&store, "/var/lib/steer", &lab, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("state directory /var/lib/steer belongs to cluster \"prod\"")
                && err.contains("not to this config's cluster \"lab\"")
                && err.contains("--adopt-state"),
            "{err}"
        );
        // Refused: nothing was written.
        assert_eq!(store.load().unwrap().unwrap().identity, Some(prod.clone()));

        // Adopted: left for the control loop to record with its audit entry.
        assert_eq!(
            claim(&store, "d", &lab, true).unwrap(),
            Claim::Adopted {
                previous: prod.clone()
            }
        );
        assert_eq!(store.load().unwrap().unwrap().identity, Some(prod));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_same_deployment_moving_its_identity_is_recorded() {
        let (store, dir) = store("moved");
        let unnamed = id(None, &["eu-west"]);
        claim(&store, "d", &unnamed, false).unwrap();
        let named = id(Some("prod"), &["eu-west"]);
        assert_eq!(claim(&store, "d", &named, false).unwrap(), Claim::Same);
        assert_eq!(store.load().unwrap().unwrap().identity, Some(named));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
