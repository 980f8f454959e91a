//! The signers of a publisher's signed zones: one per zone, made from the
//! zone's key files when first compiled (keys generated on first start),
//! kept across recompiles so its signature cache lives as long as its keys
//! and their states, and replaced when [`SignerCache::refresh`] finds a key
//! added, removed or changed in the directory, or a key's Publish, Activate,
//! Inactive or Delete time reached.
//!
//! Invariant: a candidate set of signers is made whole (every key of every
//! zone read, some key active in each) before any of it replaces the old.

use std::sync::{Arc, Mutex};

use steer_types::{DnssecDs, DnssecZone};

use crate::{
    keys::{KeyError, KeyFiles, ZoneKey},
    sign::Signer,
    view::ViewError,
};

#[derive(Default)]
pub(crate) struct SignerCache {
    /// Each signed zone's signer and its key files as they were read.
    signers: Mutex<Vec<Cached>>,
}

struct Cached {
    zone: DnssecZone,
    signer: Arc<Signer>,
    files: KeyFiles,
}

/// What [`crate::ViewPublisher::dnssec_ds`] found for a zone.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DsLookup {
    /// No zone of that name is served.
    NotServed,
    /// The zone is served unsigned.
    NotSigned,
    /// The zone's DS records (empty only if no KSK/CSK is published).
    Signed(Vec<DnssecDs>),
}

impl SignerCache {
    /// The signers of the zones `signed` lists, made (keys read or
    /// generated at `now`) for zones seen for the first time.
    pub(crate) fn for_zones(
        &self,
        signed: &[DnssecZone],
        now: i64,
    ) -> Result<Vec<(String, Arc<Signer>)>, ViewError> {
        let mut cache = self.signers.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for zone in signed {
            let signer = match cache.iter().find(|c| c.zone == *zone) {
                Some(c) => c.signer.clone(),
                None => {
                    let keys = ZoneKey::load_or_generate(&zone.origin, &zone.key_dir, now)?;
                    let files = ZoneKey::fingerprint(&zone.origin, &zone.key_dir)?;
                    let signer = Arc::new(make(zone, keys, now)?);
                    cache.push(Cached {
                        zone: zone.clone(),
                        signer: signer.clone(),
                        files,
                    });
                    signer
                }
            };
            out.push((zone.origin.clone(), signer));
        }
        Ok(out)
    }

    /// Re-reads the key directories of `signed` and replaces the signers
    /// whose keys or key states differ at `now`. Returns whether any did
    /// (the view must then be recompiled); on error nothing changes.
    pub(crate) fn refresh(&self, signed: &[DnssecZone], now: i64) -> Result<bool, ViewError> {
        let mut candidates = Vec::new();
        {
            let cache = self.signers.lock().unwrap_or_else(|e| e.into_inner());
            for Cached {
                zone,
                signer: current,
                files,
            } in cache.iter()
            {
                if !signed.contains(zone) {
                    continue;
                }
                // The same files and no key time reached: the same keys.
                let seen = ZoneKey::fingerprint(&zone.origin, &zone.key_dir)
                    .inspect_err(|_| key_error(zone))?;
                if seen == *files && current.states_hold_at(now) {
                    continue;
                }
                let keys = ZoneKey::load_all(&zone.origin, &zone.key_dir)
                    .inspect_err(|_| key_error(zone))?;
                if keys.is_empty() {
                    key_error(zone);
                    return Err(KeyError::NoKeys {
                        zone: zone.origin.clone(),
                        dir: zone.key_dir.display().to_string(),
                    }
                    .into());
                }
                let origin = crate::view::name(&zone.origin)?;
                let fresh = Signer::new(origin, keys, now).inspect_err(|_| key_error(zone))?;
                // Read whole: the files as they are now (one changed while
                // being read shows as changed at the next refresh).
                let changed = !fresh.same_keys(current);
                candidates.push((zone.clone(), changed.then_some(fresh), seen));
            }
        }
        let mut changed = false;
        let mut cache = self.signers.lock().unwrap_or_else(|e| e.into_inner());
        for (zone, fresh, files) in candidates {
            let Some(slot) = cache.iter_mut().find(|c| c.zone == zone) else {
                continue;
            };
            if let Some(fresh) = fresh {
                installed(&zone, &fresh)?;
                slot.signer = Arc::new(fresh);
                changed = true;
            }
            slot.files = files;
        }
        Ok(changed)
    }

    /// The DS records of `origin` if `signed` lists it.
    pub(crate) fn ds(&self, signed: &[DnssecZone], origin: &str) -> Option<Vec<DnssecDs>> {
        let cache = self.signers.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .iter()
            .find(|c| c.zone.origin == origin && signed.contains(&c.zone))
            .map(|c| c.signer.ds_records())
    }
}

fn make(zone: &DnssecZone, keys: Vec<ZoneKey>, now: i64) -> Result<Signer, ViewError> {
    let origin = crate::view::name(&zone.origin)?;
    let signer = Signer::new(origin, keys, now).inspect_err(|_| key_error(zone))?;
    installed(zone, &signer)?;
    Ok(signer)
}

/// Logs, counts and writes `dsset-<zone>` for a signer about to serve.
fn installed(zone: &DnssecZone, signer: &Signer) -> Result<(), ViewError> {
    signer.write_dsset(&zone.key_dir)?;
    tracing::info!(
        zone = %zone.origin,
        signing = ?signer.signing_tags(),
        keys = ?signer.key_states(),
        "DNSSEC keys"
    );
    for state in [
        steer_types::DnssecKeyState::Published,
        steer_types::DnssecKeyState::Active,
        steer_types::DnssecKeyState::Retired,
    ] {
        let n = signer
            .key_states()
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("steer_dnssec_keys", "zone" => zone.origin.clone(), "state" => state.label())
            .set(n as f64);
    }
    // On /metrics from the first signer on, not from the first error.
    metrics::counter!("steer_dnssec_key_errors_total", "zone" => zone.origin.clone()).increment(0);
    Ok(())
}

fn key_error(zone: &DnssecZone) {
    metrics::counter!("steer_dnssec_key_errors_total", "zone" => zone.origin.clone()).increment(1);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_read_again_only_when_they_or_a_key_time_change() {
        let dir = std::env::temp_dir().join(format!("steer-signers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let zone = DnssecZone {
            origin: "example.test.".into(),
            key_dir: dir.clone(),
        };
        let zones = std::slice::from_ref(&zone);
        let cache = SignerCache::default();
        let now = 1_800_000_000;
        cache.for_zones(zones, now).unwrap();
        let files = || -> Vec<std::path::PathBuf> {
            let mut f: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('K'))
                })
                .collect();
            f.sort();
            f
        };
        let first = files();
        assert_eq!(first.len(), 2, "a generated .key and .private");
        assert!(!cache.refresh(zones, now + 10).unwrap(), "nothing changed");
        // A second key, active from now + 100: new files, a new signer.
        ZoneKey::generate(&zone.origin, &dir, now + 100).unwrap();
        assert!(cache.refresh(zones, now + 20).unwrap(), "a key was added");
        assert!(!cache.refresh(zones, now + 30).unwrap(), "read once");
        // Its Activate time reached: no file changed, its state did.
        assert!(
            cache.refresh(zones, now + 150).unwrap(),
            "a key time reached"
        );
        assert!(!cache.refresh(zones, now + 160).unwrap());
        // A key's files removed are seen as well.
        for f in files().iter().filter(|f| !first.contains(f)) {
            std::fs::remove_file(f).unwrap();
        }
        assert!(
            cache.refresh(zones, now + 170).unwrap(),
            "a key was removed"
        );
        assert!(!cache.refresh(zones, now + 180).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
