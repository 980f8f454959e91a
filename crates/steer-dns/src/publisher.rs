//! Keeps the DNS view in step with its inputs: the published Plan, and the
//! static zones and client map (replaced on SIGHUP or through the operator
//! API). Either change compiles a new view off the query path and swaps it
//! in with one store; a candidate that does not compile is never stored, so
//! queries keep being answered from the last good view. A plan rebuilds the
//! steering tables only: the static zones are compiled again only when
//! their contents, the steered names in them or a zone's keys change.

use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use steer_types::{ClientNetwork, DnsSettings, Plan, Zone, answers::AnswerTally};

use crate::{
    calibrate::ClientSamples,
    geo::GeoMap,
    signers::{DsLookup, SignerCache},
    view::{DnsView, ViewError, ZoneCache},
};

/// Everything besides the Plan that a view is compiled from.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewInputs {
    pub zones: Vec<Zone>,
    pub client_networks: Vec<ClientNetwork>,
    pub settings: DnsSettings,
}

/// The single writer of the DNS view.
pub struct ViewPublisher {
    view: Arc<ArcSwap<DnsView>>,
    /// Answers served by every view this publisher compiled.
    tally: Arc<AnswerTally>,
    /// The subnets asking each answer set, which every compile calibrates
    /// selection on.
    samples: Arc<ClientSamples>,
    /// The open geo database, reused while its settings and file are
    /// unchanged (opening reads the whole file).
    geo: GeoCache,
    /// Signed zones' keys and signature caches, kept across recompiles.
    signers: SignerCache,
    /// The static zones, compiled on reload or key change only.
    zones: ZoneCache,
    // Writers only: serialises recompiles so a plan publication and a zone
    // reload cannot overwrite each other with stale inputs.
    current: Mutex<(Arc<ViewInputs>, Arc<Plan>)>,
}

impl ViewPublisher {
    pub fn new(inputs: ViewInputs, plan: Arc<Plan>) -> Result<Self, ViewError> {
        let geo = Mutex::new(None);
        let signers = SignerCache::default();
        let tally = Arc::new(AnswerTally::default());
        let samples = Arc::new(ClientSamples::default());
        metrics::counter!("steer_dns_selection_recalibrations_total").absolute(0);
        let zones = ZoneCache::default();
        let caches = Caches {
            geo: &geo,
            signers: &signers,
            zones: &zones,
        };
        let view = compile(caches, &inputs, &plan, &tally, &samples)?;
        Ok(Self {
            view: Arc::new(ArcSwap::from_pointee(view)),
            tally,
            samples,
            geo,
            signers,
            zones,
            current: Mutex::new((Arc::new(inputs), plan)),
        })
    }

    /// The answers served so far, per service, answer set and PoP (the
    /// control loop's demand estimate reads them).
    pub fn answers(&self) -> Arc<AnswerTally> {
        self.tally.clone()
    }

    /// The view the handler answers from.
    pub fn view(&self) -> Arc<ArcSwap<DnsView>> {
        self.view.clone()
    }

    fn lock(&self) -> MutexGuard<'_, (Arc<ViewInputs>, Arc<Plan>)> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Recompiles for a new plan; on error the previous view stays.
    pub fn publish_plan(&self, plan: Arc<Plan>) -> Result<(), ViewError> {
        let mut current = self.lock();
        self.rebuild(&current.0, &plan)?;
        current.1 = plan;
        Ok(())
    }

    /// Swaps in new zones / client map (a reload); on error nothing changes.
    pub fn replace_inputs(&self, inputs: ViewInputs) -> Result<(), ViewError> {
        let mut current = self.lock();
        self.rebuild(&inputs, &current.1)?;
        current.0 = Arc::new(inputs);
        Ok(())
    }

    /// Recompiles the current plan when the client samples changed since
    /// the view was compiled, so that selection is calibrated on the
    /// clients asking now; `rotate` first forgets clients gone quiet.
    /// Returns whether a new view was stored.
    pub fn recalibrate(&self, rotate: bool) -> Result<bool, ViewError> {
        if rotate {
            self.samples.rotate();
        }
        let current = self.lock();
        if !self.samples.changed() {
            return Ok(false);
        }
        self.samples.settle();
        self.rebuild(&current.0, &current.1)?;
        metrics::counter!("steer_dns_selection_recalibrations_total").increment(1);
        Ok(true)
    }

    /// Compiles a view from `inputs` and `plan` with this publisher's geo
    /// database, keys, tally and samples, and swaps it in (callers hold
    /// the lock, so compiles are serialised).
    fn rebuild(&self, inputs: &ViewInputs, plan: &Plan) -> Result<(), ViewError> {
        let caches = Caches {
            geo: &self.geo,
            signers: &self.signers,
            zones: &self.zones,
        };
        let view = compile(caches, inputs, plan, &self.tally, &self.samples)?;
        self.view.store(Arc::new(view));
        Ok(())
    }

    /// The client samples selection is calibrated on.
    pub fn samples(&self) -> Arc<ClientSamples> {
        self.samples.clone()
    }

    /// The view and the plan it was compiled from, consistently (explain).
    pub fn snapshot(&self) -> (Arc<DnsView>, Arc<Plan>) {
        let current = self.lock();
        (self.view.load_full(), current.1.clone())
    }

    /// Re-reads the signed zones' key directories and recompiles when a
    /// key was added, removed or changed, or one's timing (Publish,
    /// Activate, Inactive, Delete) was reached by `now` (Unix seconds).
    /// Returns whether a new view was stored; on error the current one
    /// stays (and keeps signing with the keys it has).
    pub fn refresh_keys(&self, now: i64) -> Result<bool, ViewError> {
        let current = self.lock();
        if !self.signers.refresh(&current.0.settings.dnssec, now)? {
            return Ok(false);
        }
        self.rebuild(&current.0, &current.1)?;
        Ok(true)
    }

    /// The DS records of `zone` (any case, trailing dot optional), from
    /// the keys the view signs with.
    pub fn dnssec_ds(&self, zone: &str) -> DsLookup {
        let mut origin = zone.trim().to_ascii_lowercase();
        if !origin.ends_with('.') {
            origin.push('.');
        }
        let inputs = self.inputs();
        if !inputs.zones.iter().any(|z| z.origin == origin) {
            return DsLookup::NotServed;
        }
        match self.signers.ds(&inputs.settings.dnssec, &origin) {
            Some(ds) => DsLookup::Signed(ds),
            None => DsLookup::NotSigned,
        }
    }

    /// The inputs the current view was compiled from.
    pub fn inputs(&self) -> Arc<ViewInputs> {
        self.lock().0.clone()
    }
}

type GeoCache = Mutex<Option<(Option<std::time::SystemTime>, Arc<GeoMap>)>>;

/// The open geo database, reopened only when its settings or file change.
fn geo_for(cache: &GeoCache, inputs: &ViewInputs) -> Result<Option<Arc<GeoMap>>, ViewError> {
    let Some(settings) = &inputs.settings.geo else {
        return Ok(None);
    };
    let mtime = std::fs::metadata(&settings.mmdb)
        .and_then(|m| m.modified())
        .ok();
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((when, map)) = cache.as_ref()
        && map.settings == *settings
        && *when == mtime
    {
        return Ok(Some(map.clone()));
    }
    let map = Arc::new(GeoMap::open(settings)?);
    *cache = Some((mtime, map.clone()));
    Ok(Some(map))
}

/// What a publisher keeps from one compile to the next.
#[derive(Clone, Copy)]
struct Caches<'a> {
    geo: &'a GeoCache,
    signers: &'a SignerCache,
    zones: &'a ZoneCache,
}

fn compile(
    caches: Caches<'_>,
    inputs: &ViewInputs,
    plan: &Plan,
    tally: &AnswerTally,
    samples: &ClientSamples,
) -> Result<DnsView, ViewError> {
    let signers = caches
        .signers
        .for_zones(&inputs.settings.dnssec, crate::sign::unix_now_secs())?;
    let mut view = DnsView::compile_signed(
        &inputs.zones,
        &inputs.client_networks,
        plan,
        &inputs.settings,
        tally,
        samples,
        &signers,
        caches.zones,
    )?;
    view.geo = geo_for(caches.geo, inputs)?;
    Ok(view)
}
