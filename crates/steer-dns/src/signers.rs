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
    keys::{KeyError, ZoneKey},
    sign::Signer,
    view::ViewError,
};

#[derive(Default)]
pub(crate) struct SignerCache {
    signers: Mutex<Vec<(DnssecZone, Arc<Signer>)>>,
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
            let signer = match cache.iter().find(|(z, _)| z == zone) {
                Some((_, s)) => s.clone(),
                None => {
                    let keys = ZoneKey::load_or_generate(&zone.origin, &zone.key_dir, now)?;
                    let signer = Arc::new(make(zone, keys, now)?);
                    cache.push((zone.clone(), signer.clone()));
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
            for (zone, current) in cache.iter() {
                if !signed.contains(zone) {
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
                if !fresh.same_keys(current) {
                    candidates.push((zone.clone(), fresh));
                }
            }
        }
        if candidates.is_empty() {
            return Ok(false);
        }
        let mut cache = self.signers.lock().unwrap_or_else(|e| e.into_inner());
        for (zone, fresh) in candidates {
            installed(&zone, &fresh)?;
            if let Some(slot) = cache.iter_mut().find(|(z, _)| *z == zone) {
                slot.1 = Arc::new(fresh);
            }
        }
        Ok(true)
    }

    /// The DS records of `origin` if `signed` lists it.
    pub(crate) fn ds(&self, signed: &[DnssecZone], origin: &str) -> Option<Vec<DnssecDs>> {
        let cache = self.signers.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .iter()
            .find(|(z, _)| z.origin == origin && signed.contains(z))
            .map(|(_, s)| s.ds_records())
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
