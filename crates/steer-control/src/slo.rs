//! The control loop's SLO runtime: agents' request counters into the SLO
//! engine, evaluation on a fixed interval, the snapshot `/status` and
//! `steerctl slo` read, the metrics operators alert on, the alerts due for
//! Alertmanager (handed to an IO task), and the histories persisted as the
//! store's `slo` document so a restart or failover keeps the budget.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use serde::Serialize;
use steer_health::ObservedReport;
use steer_slo::{
    BudgetSteering, Correction, Evaluation, SliSample, SloEngine, SloSpec, SloState,
    alerts::Alerter, rules::duration_text,
};
use steer_store::StateStore;
use steer_types::{PopId, ServiceId, Timestamp, Topology, health::BudgetShift};
use tokio::sync::mpsc;
use tracing::{error, warn};

/// The store document holding [`SloState`].
pub(crate) const SLO_DOCUMENT: &str = "slo";

/// How often the histories are saved (and on shutdown by the caller).
const SAVE_EVERY: Duration = Duration::from_secs(60);

/// Alerts queued for the sender; more than this and the oldest batch
/// would be stale anyway, so new ones are dropped and counted.
const ALERT_QUEUE: usize = 16;

/// `steer_slo_events_total{slo}` for `total` and `bad`, looked up once per
/// SLO rather than per report.
#[derive(Default)]
struct EventCounters(BTreeMap<String, [metrics::Counter; 2]>);

impl EventCounters {
    /// Counts what one observation added to an SLO.
    fn count(&mut self, slo: &str, counts: steer_slo::Counts) {
        let pair = match self.0.get(slo) {
            Some(pair) => pair,
            None => self.0.entry(slo.to_owned()).or_insert_with(|| {
                ["total", "bad"].map(|kind| {
                    metrics::counter!("steer_slo_events_total", "slo" => slo.to_owned(), "kind" => kind)
                })
            }),
        };
        for (counter, n) in pair.iter().zip([counts.total, counts.bad]) {
            if n > 0 {
                counter.increment(n);
            }
        }
    }
}

/// What readers see: the latest evaluation of every SLO.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SloSnapshot {
    pub at: Timestamp,
    pub specs: Vec<SloSpec>,
    pub evaluations: Vec<Evaluation>,
    /// Per SLO: each PoP's burn rate over the shortest alert window, with
    /// its event count (which PoP is burning).
    pub pop_burn: BTreeMap<String, Vec<PopBurn>>,
    pub corrections: Vec<Correction>,
}

impl SloSnapshot {
    /// Services with an SLO whose error budget is spent: what the change
    /// process blocks risky changes on.
    pub fn exhausted_services(&self) -> std::collections::BTreeSet<String> {
        self.evaluations
            .iter()
            .filter(|e| e.exhausted())
            .filter_map(|e| self.specs.iter().find(|s| s.name == e.slo))
            .map(|s| s.service.to_string())
            .collect()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PopBurn {
    pub pop: String,
    pub window_s: u64,
    pub burn_rate: f64,
    pub events: u64,
    /// Budget-aware steering: share of the PoP's traffic moved elsewhere.
    pub shifted_share: f64,
}

pub(crate) struct SloRuntime {
    engine: SloEngine,
    alerter: Alerter,
    interval: Duration,
    resend: Duration,
    last_eval: Option<Timestamp>,
    last_save: Option<Timestamp>,
    dirty: bool,
    pub(crate) snapshot: Arc<ArcSwap<SloSnapshot>>,
    alerts_tx: Option<mpsc::Sender<Vec<serde_json::Value>>>,
    steering: BudgetSteering,
    events: EventCounters,
    /// Budget-aware steering's shifts as of the last evaluation, for the
    /// policy.
    pub(crate) shifts: Vec<BudgetShift>,
    /// Where alerts that fire or resolve are noted.
    pub(crate) timeline: Option<steer_types::timeline::TimelineHandle>,
    /// (SLO, severity) alerts firing at the last evaluation.
    firing: std::collections::BTreeSet<(String, String)>,
}

fn pop_regions(topology: &Topology) -> BTreeMap<String, String> {
    topology
        .pops
        .iter()
        .map(|p| (p.id.to_string(), p.region.to_string()))
        .collect()
}

impl SloRuntime {
    pub(crate) fn new(topology: &Topology) -> Self {
        Self {
            engine: SloEngine::new(Vec::new(), pop_regions(topology)),
            alerter: Alerter::default(),
            interval: Duration::from_secs(30),
            resend: Duration::from_secs(60),
            last_eval: None,
            last_save: None,
            dirty: false,
            snapshot: Arc::new(ArcSwap::from_pointee(SloSnapshot::default())),
            alerts_tx: None,
            steering: BudgetSteering::default(),
            events: EventCounters::default(),
            shifts: Vec::new(),
            timeline: None,
            firing: std::collections::BTreeSet::new(),
        }
    }

    /// New SLOs (start or reload), keeping the history of those that stay;
    /// on first configuration the persisted histories are read back.
    /// `cadence` is (evaluate every, re-send firing alerts every).
    pub(crate) fn configure(
        &mut self,
        specs: Vec<SloSpec>,
        topology: &Topology,
        (interval, resend): (Duration, Duration),
        store: &dyn StateStore,
        first: bool,
        now: Timestamp,
    ) {
        self.engine.reconfigure(specs, pop_regions(topology));
        self.interval = interval.max(Duration::from_secs(1));
        self.resend = resend.max(self.interval);
        if first {
            match store.load_document(SLO_DOCUMENT) {
                Ok(Some(bytes)) => match serde_json::from_slice::<SloState>(&bytes) {
                    Ok(state) => self.engine.restore(state),
                    Err(e) => {
                        metrics::counter!("steer_slo_state_errors_total").increment(1);
                        error!(error = %e, "the saved SLO histories do not parse; starting them empty");
                    }
                },
                Ok(None) => {}
                Err(e) => {
                    metrics::counter!("steer_slo_state_errors_total").increment(1);
                    error!(error = %e, "cannot read the saved SLO histories; starting them empty");
                }
            }
        }
        for spec in self.engine.specs() {
            for kind in ["total", "bad"] {
                metrics::counter!("steer_slo_events_total", "slo" => spec.name.clone(), "kind" => kind)
                    .increment(0);
            }
        }
        // Budget-aware steering's gauge, per PoP of each steering SLO's
        // service, from the first scrape.
        for spec in self.engine.specs().iter().filter(|s| s.steering.is_some()) {
            let service = topology
                .services
                .iter()
                .find(|s| s.id.as_str() == spec.service);
            for pop in service.iter().flat_map(|s| &s.pops) {
                let share = self
                    .shifts
                    .iter()
                    .find(|b| b.slo == spec.name && &b.pop == pop)
                    .map_or(0.0, |b| b.share);
                metrics::gauge!("steer_slo_steering_shift_ratio", "slo" => spec.name.clone(), "pop" => pop.to_string())
                    .set(share);
            }
        }
        metrics::counter!("steer_slo_state_errors_total").increment(0);
        metrics::counter!("steer_slo_alerts_dropped_total").increment(0);
        for result in ["ok", "error"] {
            metrics::counter!("steer_alertmanager_posts_total", "result" => result).increment(0);
        }
        // Judged at once, so the gauges and /status have every SLO from
        // the first scrape.
        self.last_eval = Some(now);
        self.evaluate(now);
    }

    /// The alerts the loop decides to send, for the Alertmanager sender.
    /// Per SLO, the events of the PoPs `in_scope` says are the canary's
    /// and of the others, from `since` to `now`. With every PoP in scope,
    /// the baseline is every PoP over as long a span before `since`.
    pub(crate) fn stage_evidence(
        &self,
        in_scope: &dyn Fn(&str) -> bool,
        since: Timestamp,
        now: Timestamp,
    ) -> Vec<steer_change::Evidence> {
        let span = now.since(since);
        let before = |t: Timestamp| {
            Timestamp(t.0.saturating_sub(i64::try_from(span.as_millis()).unwrap_or(0)))
        };
        let events = |from: Timestamp,
                      at: Timestamp,
                      slo: &str|
         -> std::collections::BTreeMap<String, steer_change::Events> {
            self.engine
                .pop_events(slo, from, at)
                .into_iter()
                .map(|(pop, c)| {
                    (
                        pop,
                        steer_change::Events {
                            total: c.total,
                            bad: c.bad,
                        },
                    )
                })
                .collect()
        };
        self.engine
            .specs()
            .iter()
            .map(|spec| {
                let during = events(since, now, &spec.name);
                let everywhere = during.keys().all(|p| in_scope(p)) && !during.is_empty();
                let (canary, rest) = steer_change::split_events(&during, in_scope);
                let baseline = if everywhere {
                    let earlier = events(before(since), since, &spec.name);
                    steer_change::split_events(&earlier, |_| true).0
                } else {
                    rest
                };
                steer_change::Evidence {
                    slo: spec.name.clone(),
                    canary,
                    baseline,
                }
            })
            .collect()
    }

    pub(crate) fn alerts(&mut self) -> mpsc::Receiver<Vec<serde_json::Value>> {
        let (tx, rx) = mpsc::channel(ALERT_QUEUE);
        self.alerts_tx = Some(tx);
        rx
    }

    pub(crate) fn set_generator_url(&mut self, url: String) {
        self.alerter.generator_url = url;
    }

    pub(crate) fn observe(&mut self, reports: &[ObservedReport], now: Timestamp) {
        if self.engine.specs().is_empty() {
            return;
        }
        for r in reports {
            for c in &r.sli {
                let sample = SliSample {
                    total: c.total,
                    failed: c.failed,
                    slow: c.slow,
                };
                let events = &mut self.events;
                self.engine.observe(
                    r.pop.as_str(),
                    c.service.as_str(),
                    sample,
                    now,
                    &mut |slo, counts| events.count(slo, counts),
                );
                self.dirty = true;
            }
        }
    }

    pub(crate) fn correct(&mut self, c: Correction) -> Result<(), String> {
        self.engine.correct(c)?;
        self.dirty = true;
        self.last_eval = None;
        Ok(())
    }

    /// Evaluates when due; saves the histories when due.
    pub(crate) fn tick(&mut self, now: Timestamp, store: &dyn StateStore) {
        if self.engine.specs().is_empty() {
            return;
        }
        if self.last_eval.is_none_or(|t| now.since(t) >= self.interval) {
            self.last_eval = Some(now);
            self.evaluate(now);
        }
        if self.dirty && self.last_save.is_none_or(|t| now.since(t) >= SAVE_EVERY) {
            self.save(now, store);
        }
    }

    /// Saves the histories now (also before a clean shutdown).
    pub(crate) fn save(&mut self, now: Timestamp, store: &dyn StateStore) {
        if let Err(e) = self.try_save(now, store) {
            warn!(error = %e, "could not save the SLO histories; retrying in a minute");
        }
    }

    fn try_save(&mut self, now: Timestamp, store: &dyn StateStore) -> Result<(), String> {
        self.engine.expire_corrections(now);
        let bytes = serde_json::to_vec(self.engine.state()).map_err(|e| {
            error!(error = %e, "cannot encode the SLO histories");
            format!("cannot encode the SLO histories: {e}")
        })?;
        self.last_save = Some(now);
        match store.save_document(SLO_DOCUMENT, &bytes) {
            Ok(()) => {
                self.dirty = false;
                Ok(())
            }
            Err(e) => {
                metrics::counter!("steer_slo_state_errors_total").increment(1);
                Err(e.to_string())
            }
        }
    }

    /// A correction from an operator: in force only once it is stored with
    /// the histories (a restart or failover keeps it); otherwise taken back.
    pub(crate) fn correct_durably(
        &mut self,
        c: Correction,
        now: Timestamp,
        store: &dyn StateStore,
    ) -> Result<(), steer_command::ApiError> {
        use steer_command::ApiError;
        if !self.engine.specs().iter().any(|s| s.name == c.slo) {
            return Err(ApiError::NotFound(format!("no SLO {:?}", c.slo)));
        }
        self.engine
            .correct(c.clone())
            .map_err(ApiError::InvalidArgument)?;
        self.dirty = true;
        self.last_eval = None;
        if let Err(e) = self.try_save(now, store) {
            self.engine.withdraw_correction(&c);
            return Err(ApiError::Unavailable(format!(
                "could not store the correction, nothing was changed: {e}"
            )));
        }
        // Readers see the corrected budget at once, not at the next
        // evaluation.
        self.last_eval = Some(now);
        self.evaluate(now);
        Ok(())
    }

    /// Budget-aware steering's shifts at `now`, into `shifts` and the
    /// `steer_slo_steering_shift_ratio` gauges (a released shift reads 0).
    fn steer(&mut self, now: Timestamp) {
        let engine = &self.engine;
        let next = self.steering.update(engine.specs(), &|spec, window| {
            engine.pop_burn(&spec.name, window, now)
        });
        for old in &self.shifts {
            if !next
                .iter()
                .any(|n| n.slo == old.slo && n.pop.as_str() == old.pop.as_str())
            {
                metrics::gauge!("steer_slo_steering_shift_ratio", "slo" => old.slo.clone(), "pop" => old.pop.to_string())
                    .set(0.0);
            }
        }
        self.shifts = next
            .into_iter()
            .map(|s| {
                metrics::gauge!("steer_slo_steering_shift_ratio", "slo" => s.slo.clone(), "pop" => s.pop.clone())
                    .set(s.share);
                BudgetShift {
                    service: ServiceId::from(s.service.as_str()),
                    pop: PopId::from(s.pop.as_str()),
                    slo: s.slo,
                    share: s.share,
                    burn_rate: s.burn_rate,
                    events: s.events,
                    window_s: s.window.as_secs(),
                }
            })
            .collect();
    }

    /// Notes an alert that started or stopped firing on the timeline.
    fn note_alert(
        &mut self,
        e: &steer_slo::Evaluation,
        severity: steer_slo::Severity,
        firing: bool,
        now: Timestamp,
    ) {
        let key = (e.slo.clone(), severity.to_string());
        let was = self.firing.contains(&key);
        if firing == was {
            return;
        }
        if firing {
            self.firing.insert(key);
        } else {
            self.firing.remove(&key);
        }
        let Some(handle) = &self.timeline else {
            return;
        };
        let service = self
            .engine
            .specs()
            .iter()
            .find(|s| s.name == e.slo)
            .map(|s| s.service.to_string());
        let burns: Vec<String> = e
            .burns
            .iter()
            .map(|b| format!("{:.1}x over {}", b.burn_rate, duration_text(b.window)))
            .collect();
        let summary = format!(
            "SLO {} {severity} alert {}",
            e.slo,
            if firing { "firing" } else { "resolved" }
        );
        let detail = format!(
            "burn {}; SLI {:.4}; budget left {:.1}%",
            burns.join(", "),
            e.sli,
            e.budget_remaining * 100.0
        );
        if let Ok(mut t) = handle.lock() {
            t.push(
                now,
                steer_types::timeline::EventKind::Slo,
                std::iter::once(e.slo.clone()).chain(service).collect(),
                None,
                summary,
                detail,
            );
        }
        metrics::counter!("steer_timeline_events_total", "kind" => "slo").increment(1);
    }

    fn evaluate(&mut self, now: Timestamp) {
        self.steer(now);
        let evaluations = self.engine.evaluate(now);
        let mut pop_burn = BTreeMap::new();
        for spec in self.engine.specs() {
            let window = spec
                .alerts
                .iter()
                .map(|r| r.short)
                .min()
                .unwrap_or(Duration::from_secs(300));
            let burns = self
                .engine
                .pop_burn(&spec.name, window, now)
                .into_iter()
                .map(|(pop, burn_rate, events)| PopBurn {
                    shifted_share: self
                        .shifts
                        .iter()
                        .find(|s| s.slo == spec.name && s.pop.as_str() == pop)
                        .map_or(0.0, |s| s.share),
                    pop,
                    window_s: window.as_secs(),
                    burn_rate,
                    events,
                })
                .collect::<Vec<_>>();
            pop_burn.insert(spec.name.clone(), burns);
        }
        let due = self
            .alerter
            .due(self.engine.specs(), &evaluations, now, self.resend);
        if !due.is_empty()
            && let Some(tx) = &self.alerts_tx
            && tx.try_send(due).is_err()
        {
            metrics::counter!("steer_slo_alerts_dropped_total").increment(1);
            warn!("Alertmanager sender is behind; this round of SLO alerts was dropped");
        }
        for e in &evaluations {
            let slo = e.slo.clone();
            metrics::gauge!("steer_slo_budget_remaining_ratio", "slo" => slo.clone()).set(
                if e.budget_remaining.is_finite() {
                    e.budget_remaining
                } else {
                    -1e9
                },
            );
            metrics::gauge!("steer_slo_sli_ratio", "slo" => slo.clone()).set(e.sli);
            if let Some(spec) = self.engine.specs().iter().find(|s| s.name == e.slo) {
                metrics::gauge!(
                    "steer_slo_budget_exhausted",
                    "slo" => slo.clone(),
                    "service" => spec.service.to_string()
                )
                .set(if e.exhausted() { 1.0 } else { 0.0 });
            }
            for b in &e.burns {
                metrics::gauge!("steer_slo_burn_rate", "slo" => slo.clone(), "window" => duration_text(b.window))
                    .set(if b.burn_rate.is_finite() { b.burn_rate } else { 1e9 });
            }
            for severity in [steer_slo::Severity::Page, steer_slo::Severity::Ticket] {
                let firing = self.alerter.firing(&e.slo, severity);
                metrics::gauge!("steer_slo_alert", "slo" => slo.clone(), "severity" => severity.to_string())
                    .set(if firing { 1.0 } else { 0.0 });
                self.note_alert(e, severity, firing, now);
            }
        }
        self.snapshot.store(Arc::new(SloSnapshot {
            at: now,
            specs: self.engine.specs().to_vec(),
            evaluations,
            pop_burn,
            corrections: self.engine.state().corrections.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use steer_health::SliCounters;
    use steer_slo::{Objective, Severity};
    use steer_types::{ServiceId, Timestamp};

    use crate::{
        ControlLoop, MemStore, ReplayClock,
        test_world::{report, topology},
    };

    #[derive(Clone, Default)]
    struct Shared(Arc<MemStore>);

    impl steer_store::StateStore for Shared {
        fn load(&self) -> Result<Option<steer_store::PersistedState>, steer_store::StoreError> {
            self.0.load()
        }
        fn save(&self, s: &steer_store::PersistedState) -> Result<(), steer_store::StoreError> {
            self.0.save(s)
        }
        fn append_audit(&self, e: &steer_store::AuditEntry) -> Result<(), steer_store::StoreError> {
            self.0.append_audit(e)
        }
        fn read_audit(
            &self,
            l: usize,
        ) -> Result<Vec<steer_store::AuditEntry>, steer_store::StoreError> {
            self.0.read_audit(l)
        }
        fn save_document(&self, n: &str, b: &[u8]) -> Result<(), steer_store::StoreError> {
            self.0.save_document(n, b)
        }
        fn load_document(&self, n: &str) -> Result<Option<Vec<u8>>, steer_store::StoreError> {
            self.0.load_document(n)
        }
    }

    const START: i64 = 1_800_000_000_000;

    fn start(store: &Shared, clock: &ReplayClock) -> ControlLoop {
        start_with(store, clock, None)
    }

    /// A loop with one SLO on `app` (99.9%, 10 events), steering as given.
    fn start_with(
        store: &Shared,
        clock: &ReplayClock,
        steering: Option<steer_slo::Steering>,
    ) -> ControlLoop {
        let (mut c, _) = ControlLoop::new(
            Arc::new(topology()),
            Box::new(store.clone()),
            Box::new(clock.clone()),
        )
        .expect("loop");
        let mut spec =
            steer_slo::SloSpec::new("app", "app", Objective::Availability { target: 0.999 });
        spec.min_events = 10;
        spec.steering = steering;
        c.configure_slos(
            vec![spec],
            std::time::Duration::from_secs(10),
            std::time::Duration::from_secs(60),
        );
        c
    }

    fn with_sli(pop: &str, total: u64, failed: u64) -> steer_health::ObservedReport {
        let mut r = report(pop, true, 100.0);
        r.sli.push(SliCounters {
            service: ServiceId::new("app"),
            total,
            failed,
            slow: None,
        });
        r
    }

    #[test]
    fn counters_burn_the_budget_page_and_survive_a_restart() {
        let store = Shared::default();
        let clock = ReplayClock::default();
        clock.set(Timestamp(START));
        let mut c = start(&store, &clock);
        let mut alerts = c.slo_alerts("http://127.0.0.1:9/status".into());
        // fra1 serves 100 rps with 10% failing (100x the budget); ams1 is
        // clean. Counters are cumulative.
        for s in 0..=600i64 {
            clock.set(Timestamp(START + s * 1000));
            let t = 100 * s as u64;
            c.step_reports(&[with_sli("fra1", t, t / 10), with_sli("ams1", t, 0)]);
            c.step_tick();
        }
        let snap = c.slo.snapshot.load_full();
        let e = &snap.evaluations[0];
        assert_eq!(e.firing(), Some(Severity::Page), "{e:?}");
        assert!(e.budget_remaining < 0.0);
        // The change process can block on it.
        assert_eq!(
            snap.exhausted_services().into_iter().collect::<Vec<_>>(),
            ["app"]
        );
        let burns = &snap.pop_burn["app"];
        let fra = burns.iter().find(|b| b.pop == "fra1").expect("fra1");
        let ams = burns.iter().find(|b| b.pop == "ams1").expect("ams1");
        assert!(fra.burn_rate > 90.0 && ams.burn_rate == 0.0, "{burns:?}");
        let sent = alerts.try_recv().expect("alerts due");
        assert!(
            sent.iter().any(|a| a["labels"]["severity"] == "page"),
            "{sent:?}"
        );

        // Saved (the minute passed), and read back by a new loop.
        drop(c);
        let c2 = start(&store, &clock);
        let mut c2 = c2;
        c2.step_tick();
        let again = c2.slo.snapshot.load_full();
        assert_eq!(again.evaluations[0].window_counts, e.window_counts);
    }

    #[test]
    fn budget_steering_moves_a_burning_pops_traffic_and_gives_it_back() {
        let store = Shared::default();
        let clock = ReplayClock::default();
        clock.set(Timestamp(START));
        let mut c = start_with(
            &store,
            &clock,
            Some(steer_slo::Steering {
                window: std::time::Duration::from_secs(60),
                ..steer_slo::Steering::new(10.0)
            }),
        );
        let weights = |c: &ControlLoop| -> (u32, u32) {
            let plan = c.plan();
            let set =
                plan.body.services[0].for_region(Some(&steer_types::RegionId::new("eu-west")));
            let w = |p: &str| {
                set.targets
                    .iter()
                    .find(|t| t.pop.as_str() == p)
                    .map_or(0, |t| t.weight)
            };
            (w("fra1"), w("ams1"))
        };
        let moves = |c: &ControlLoop| -> Vec<u32> {
            c.plan()
                .pop("fra1")
                .map(|p| p.budget_moves.iter().map(|m| m.permille).collect())
                .unwrap_or_default()
        };
        // fra1's probes pass but 5% of its requests fail (50x the budget);
        // ams1 is clean.
        let (mut fra_total, mut fra_failed, mut ams_total) = (0u64, 0u64, 0u64);
        let mut run = |c: &mut ControlLoop, from: i64, to: i64, failing: bool| {
            for s in from..to {
                clock.set(Timestamp(START + s * 1000));
                fra_total += 100;
                ams_total += 100;
                if failing {
                    fra_failed += 5;
                }
                c.step_reports(&[
                    with_sli("fra1", fra_total, fra_failed),
                    with_sli("ams1", ams_total, 0),
                ]);
                c.step_tick();
            }
        };
        run(&mut c, 0, 30, false);
        let (fra, ams) = weights(&c);
        assert_eq!(fra, ams, "clean PoPs share alike");
        assert!(moves(&c).is_empty());
        run(&mut c, 30, 90, true);
        assert_eq!(moves(&c), [500], "{:?}", c.slo.shifts);
        let (fra, ams) = weights(&c);
        assert!(fra < ams, "fra1 {fra} ams1 {ams}");
        let snap = c.slo.snapshot.load_full();
        let burn = snap.pop_burn["app"]
            .iter()
            .find(|b| b.pop == "fra1")
            .expect("fra1");
        assert_eq!(burn.shifted_share, 0.5);
        // Fixed: once the window is clean the share comes back, a quarter
        // per evaluation.
        run(&mut c, 90, 100, false);
        assert_eq!(moves(&c), [500], "the window still burns");
        let mut seen = Vec::new();
        for t in 0..14 {
            run(&mut c, 100 + t * 10, 110 + t * 10, false);
            seen.push(moves(&c).first().copied().unwrap_or(0));
        }
        assert!(seen.windows(2).all(|w| w[1] <= w[0]), "{seen:?}");
        assert!(seen.contains(&250), "gradual: {seen:?}");
        assert_eq!(seen.last(), Some(&0));
        let (fra, ams) = weights(&c);
        assert_eq!(fra, ams);
    }
}
