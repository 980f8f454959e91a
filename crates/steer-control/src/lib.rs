//! The control loop: the one owner of mutable control-plane state.
//!
//! IO tasks (health ingest, operator API, a ticker) send it messages; it
//! applies them, recomputes the plan with `steer_policy::compute`, and
//! publishes a new version only when the plan body changed. Intent changes
//! are made durable (audit entry, then state) before they are published or
//! acknowledged, so a `kill -9` at any point loses nothing that was confirmed.

mod alertmanager;
mod changes;
mod clock;
mod cluster;
mod commands;
mod dry_run;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod durability;
mod health;
mod inputs;
mod intents;
mod record;
mod rollout;
mod slo;
mod status;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod test_world;
mod timeline;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod versions;

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use steer_command::{ApiCommand, ApiError};
use steer_health::{HealthAggregator, ObservedReport};
use steer_store::{PersistedState, StateIdentity, StateStore, StoreError};

use steer_types::{
    DrainScope, Intents, Plan, PlanBody, PlanEvidence, ServiceId, Timestamp, Topology,
    answers::{AnswerTally, AnswerTotals, AnswerWindow},
    audit::AuditEntry,
    health::{HealthSnapshot, ObservedDemand, TargetState},
    status::StatusReport,
};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

pub use alertmanager::run_sender as run_alertmanager_sender;
pub use clock::{Clock, MonotonicClock, SystemClock};
pub use dry_run::{DrainProjector, ProjectionInputs};
pub use record::{MemStore, Recorded, Recorder, ReplayClock, ReplayReport, digest, replay};
pub use slo::{PopBurn, SloSnapshot};

/// Reports queued for the control loop, and the most it applies at once.
const HEALTH_QUEUE: usize = 1024;

/// Channels and read handles the IO tasks use.
pub struct ControlHandles {
    /// The current plan, for lock-free readers.
    pub plan: Arc<ArcSwap<Plan>>,
    /// The live figures behind the current plan, refreshed on every
    /// compute (never versioned; see [`PlanEvidence`]).
    pub evidence: Arc<ArcSwap<PlanEvidence>>,
    /// Notified on every publication.
    pub plan_watch: watch::Receiver<Arc<Plan>>,
    /// Dry-run projections from the loop's latest inputs, off the loop.
    pub projector: Arc<DrainProjector>,
    /// What `/status` and `GetStatus` show, refreshed by the loop on every
    /// tick and publication: readers never wait on the loop.
    pub status: Arc<ArcSwap<StatusReport>>,
    pub health_tx: mpsc::Sender<ObservedReport>,
    pub api_tx: mpsc::Sender<ApiCommand>,
    /// The latest SLO evaluation, refreshed on the evaluation interval.
    pub slo: Arc<ArcSwap<SloSnapshot>>,
    /// The incident timeline: the loop writes it; anyone may add events
    /// (the BGP speaker's watcher) and read it (the API).
    pub timeline: steer_types::timeline::TimelineHandle,
}

pub struct ControlLoop {
    topology: Arc<Topology>,
    aggregator: HealthAggregator,
    intents: Intents,
    store: Box<dyn StateStore>,
    clock: Box<dyn Clock>,
    /// When this loop started: a PoP that never reported is "silent since
    /// start" in `steer_health_last_report_age_seconds`.
    started: Timestamp,
    plan: Arc<ArcSwap<Plan>>,
    evidence: Arc<ArcSwap<PlanEvidence>>,
    projector: Arc<DrainProjector>,
    plan_tx: watch::Sender<Arc<Plan>>,
    status: Arc<ArcSwap<StatusReport>>,
    health_rx: mpsc::Receiver<ObservedReport>,
    api_rx: mpsc::Receiver<ApiCommand>,
    /// Demand attributed from load reports; refreshed on reports, and only
    /// when it moved materially, so plans do not churn on noise.
    demand: BTreeMap<ServiceId, ObservedDemand>,
    /// When `demand` was last replaced, and the PoP health states then.
    demand_at: Timestamp,
    demand_states: Vec<TargetState>,
    recorder: Option<record::Recorder>,
    /// Answers the DNS data plane served, sampled once a second: where
    /// each PoP's load comes from (see `steer_policy::estimate_demand`).
    answers: AnswerFeed,
    /// Audit entries of changes already durable in the state but not yet
    /// in the audit log (a failed append); saved with every state write
    /// and retried until they are in the log.
    unflushed_audit: Vec<AuditEntry>,
    /// The deployment the state belongs to, kept in every save.
    identity: Option<StateIdentity>,
    /// SLOs: histories, evaluation, alerts.
    slo: slo::SloRuntime,
    slo_configured: bool,
    /// A clustered follower: the leader owns the shared state, so this
    /// loop computes plans (for reads, explain and a warm takeover) but
    /// writes nothing and refuses changes (see [`cluster`]).
    standby: bool,
    /// Plan versions continue above this (the shared state's last
    /// version, so a new leader's plans never repeat a sequence).
    version_floor: u64,
    /// What the last plan was computed from (see [`inputs`]), and when.
    planned_inputs: Option<inputs::PlanInputs>,
    computed_at: Timestamp,
    /// When demand was last estimated.
    estimated_at: Timestamp,
    /// Change requests (see [`changes`]).
    changes: changes::ChangeDesk,
    /// The incident timeline (see [`timeline`]).
    timeline: timeline::TimelineBook,
}

/// Where the loop samples answer counters from: cumulative totals.
pub type AnswerSource = Arc<dyn Fn() -> AnswerTotals + Send + Sync>;

/// Samples of the answer counters, newest last, kept for the longest TTL.
#[derive(Default)]
struct AnswerFeed {
    tally: Option<AnswerSource>,
    samples: std::collections::VecDeque<(Timestamp, AnswerTotals)>,
}

impl AnswerFeed {
    fn push(&mut self, topology: &Topology, at: Timestamp, totals: AnswerTotals) {
        self.samples.push_back((at, totals));
        let keep = Duration::from_secs(u64::from(longest_window(topology)) + 5);
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| at.since(*t) >= keep)
        {
            self.samples.pop_front();
        }
    }

    /// Answers served per set over each service's window (its TTL: what
    /// resolvers hold now), as far back as the samples go.
    fn window(&self, topology: &Topology) -> AnswerWindow {
        let mut out = AnswerWindow::default();
        let Some((last_at, last)) = self.samples.back() else {
            return out;
        };
        // Services with the same TTL share a base sample: one difference
        // of the counters per distinct base, not one per service.
        let mut deltas: Vec<(Timestamp, BTreeMap<steer_types::answers::AnswerKey, f64>)> =
            Vec::new();
        for service in &topology.services {
            let span = Duration::from_secs(u64::from(answer_window(service.ttl)));
            // The newest sample a window before the last, else the oldest:
            // one TTL of answers is each resolver's current one, once.
            let base = self
                .samples
                .iter()
                .rev()
                .find(|(t, _)| last_at.since(*t) >= span)
                .or(self.samples.front());
            let Some((base_at, base)) = base else {
                continue;
            };
            if base_at == last_at {
                continue;
            }
            out.window_s.insert(
                service.id.clone(),
                u32::try_from(last_at.since(*base_at).as_secs()).unwrap_or(u32::MAX),
            );
            let delta = match deltas.iter().position(|(at, _)| at == base_at) {
                Some(i) => &deltas[i].1,
                None => {
                    deltas.push((*base_at, last.since(base)));
                    &deltas[deltas.len() - 1].1
                }
            };
            for (k, n) in delta {
                if k.service == service.id {
                    out.counts.insert(k.clone(), *n);
                }
            }
        }
        out
    }
}

/// Seconds of answers that stand for what resolvers hold: one TTL, at
/// least 5 s so a short TTL still sees enough queries.
fn answer_window(ttl: u32) -> u32 {
    ttl.max(5)
}

fn longest_window(topology: &Topology) -> u32 {
    topology
        .services
        .iter()
        .map(|s| answer_window(s.ttl))
        .max()
        .unwrap_or(5)
}

/// Whether demand moved by more than `share` (and `floor` rps) on any set.
fn demand_moved(
    old: &BTreeMap<ServiceId, ObservedDemand>,
    new: &BTreeMap<ServiceId, ObservedDemand>,
    share: f64,
    floor: f64,
) -> bool {
    let far = |a: f64, b: f64| (a - b).abs() > (share * a.max(b)).max(floor);
    if old.len() != new.len() {
        return true;
    }
    new.iter().any(|(svc, n)| {
        let Some(o) = old.get(svc) else { return true };
        far(o.global, n.global)
            || n.regional
                .iter()
                .any(|(r, x)| far(o.regional.get(r).copied().unwrap_or(0.0), *x))
    })
}

/// Demand moves the plan at once when it changes by 5% (or 50 rps) on
/// any set; smaller lasting changes (over 1%) are taken up once a minute,
/// so an estimate is never stuck a few percent off and noise never
/// re-plans more than once a minute.
const DEMAND_STEP: (f64, f64) = (0.05, 50.0);
const DEMAND_DRIFT: (f64, f64) = (0.01, 10.0);
const DEMAND_DRIFT_EVERY: Duration = Duration::from_secs(60);
/// Demand is estimated at most this often while health holds (answers are
/// sampled once a second).
const DEMAND_ESTIMATE_EVERY: Duration = Duration::from_secs(1);
/// With nothing but time moving, a tick re-plans at most this often.
const TIME_REPLAN_EVERY: Duration = Duration::from_secs(1);

/// Whether a scope names things that exist in `topology`.
fn scope_known(topology: &Topology, scope: &DrainScope) -> bool {
    match scope {
        DrainScope::Pop { pop } => topology.pop(pop.as_str()).is_some(),
        DrainScope::Region { region } => topology.region(region.as_str()).is_some(),
        DrainScope::ServicePop { service, pop } => {
            topology.pop(pop.as_str()).is_some() && topology.service(service.as_str()).is_some()
        }
    }
}

/// An intent dropped because what it names left the config: each is
/// audited on its own, with why and what it was.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DroppedIntent {
    pub(crate) id: String,
    /// The intent's scope, e.g. `pop fra1`.
    pub(crate) scope: String,
    /// What the config lacks, e.g. `pop fra1`, `service app`.
    pub(crate) missing: String,
    /// What the intent was: mode or weight, who asked and why.
    pub(crate) was: String,
}

/// What of `scope` the topology lacks (None: all of it is known).
fn missing_from(topology: &Topology, scope: &DrainScope) -> Option<String> {
    let pop = |p: &steer_types::PopId| {
        topology
            .pop(p.as_str())
            .is_none()
            .then(|| format!("pop {p}"))
    };
    match scope {
        DrainScope::Pop { pop: p } => pop(p),
        DrainScope::Region { region } => topology
            .region(region.as_str())
            .is_none()
            .then(|| format!("region {region}")),
        DrainScope::ServicePop { service, pop: p } => {
            let service = topology
                .service(service.as_str())
                .is_none()
                .then(|| format!("service {service}"));
            match (service, pop(p)) {
                (Some(s), Some(p)) => Some(format!("{s} and {p}")),
                (s, p) => s.or(p),
            }
        }
    }
}

/// Drops intents whose scope left the config, loudly. Returns what was
/// dropped, for the audit log.
fn retain_known(topology: &Topology, intents: &mut Intents) -> Vec<DroppedIntent> {
    let mut dropped = Vec::new();
    intents.drains.retain(|d| {
        let Some(missing) = missing_from(topology, &d.scope) else {
            return true;
        };
        warn!(intent = %d.id, scope = %d.scope.describe(), %missing, "dropping a drain: its scope is no longer in the config");
        dropped.push(DroppedIntent {
            id: d.id.clone(),
            scope: d.scope.describe(),
            missing,
            was: format!("{:?} drain by {}: {}", d.mode, d.principal, d.reason),
        });
        false
    });
    intents.overrides.retain(|o| {
        let Some(missing) = missing_from(topology, &DrainScope::Pop { pop: o.pop.clone() }) else {
            return true;
        };
        warn!(intent = %o.id, pop = %o.pop, "dropping an override: its PoP is no longer in the config");
        dropped.push(DroppedIntent {
            id: o.id.clone(),
            scope: format!("pop {}", o.pop),
            missing,
            was: format!("override {}‰ by {}: {}", o.weight, o.principal, o.reason),
        });
        false
    });
    dropped
}

impl ControlLoop {
    /// Loads persisted intents and computes the first plan, so data planes
    /// can start serving before any IO task runs.
    pub fn new(
        topology: Arc<Topology>,
        store: Box<dyn StateStore>,
        clock: Box<dyn Clock>,
    ) -> Result<(Self, ControlHandles), StoreError> {
        Self::build(topology, store, clock, false)
    }

    /// As [`new`](Self::new), for a clustered controller that starts as a
    /// follower: it reads the shared state but writes nothing until
    /// [`ApiCommand::Lead`].
    pub fn new_standby(
        topology: Arc<Topology>,
        store: Box<dyn StateStore>,
        clock: Box<dyn Clock>,
    ) -> Result<(Self, ControlHandles), StoreError> {
        Self::build(topology, store, clock, true)
    }

    fn build(
        topology: Arc<Topology>,
        store: Box<dyn StateStore>,
        clock: Box<dyn Clock>,
        standby: bool,
    ) -> Result<(Self, ControlHandles), StoreError> {
        let saved = store.load()?.unwrap_or_default();
        // Entries saved with a change but kept out of the log by a crash or
        // a full disk: append the ones the log does not have.
        let unflushed_audit: Vec<AuditEntry> = saved
            .pending_audit
            .into_iter()
            .filter(|p| {
                !matches!(store.read_audit_matching(1, &|e| e == p), Ok(found) if !found.is_empty())
            })
            .collect();
        let identity = saved.identity;
        let mut intents = saved.intents;
        let dropped = retain_known(&topology, &mut intents);
        let aggregator = HealthAggregator::new(
            topology.health.clone(),
            topology.pops.iter().map(|p| p.id.clone()),
        );
        let now = clock.now();
        let (body, evidence) = steer_policy::compute_with_evidence(
            &topology,
            &aggregator.snapshot(now),
            &intents,
            None,
            now,
        );
        let evidence = Arc::new(ArcSwap::from_pointee(evidence));
        let projector = Arc::new(DrainProjector::new(ProjectionInputs {
            topology: topology.clone(),
            health: aggregator.snapshot(now),
            intents: intents.clone(),
            plan_version: saved.plan_version + 1,
            at: now,
        }));
        let plan = Arc::new(Plan {
            version: saved.plan_version + 1,
            computed_at: now,
            body,
        });
        let (plan_tx, plan_watch) = watch::channel(plan.clone());
        let plan_handle = Arc::new(ArcSwap::new(plan));
        let (health_tx, health_rx) = mpsc::channel(HEALTH_QUEUE);
        let (api_tx, api_rx) = mpsc::channel(64);
        // Filled in by `publish_status` below, before anyone can read it.
        let status = Arc::new(ArcSwap::from_pointee(StatusReport {
            plan_version: 0,
            plan_computed_at: now,
            pops: Vec::new(),
            regions: Vec::new(),
            drains: Vec::new(),
            overrides: Vec::new(),
            rails: Vec::new(),
            frozen: None,
            all_drained: Vec::new(),
            changes: Vec::new(),
            break_glass: Vec::new(),
        }));
        info!(
            drains = intents.drains.len(),
            overrides = intents.overrides.len(),
            plan_version = saved.plan_version + 1,
            "control loop restored state"
        );
        let mut slo_runtime = slo::SloRuntime::new(&topology);
        let changes = changes::ChangeDesk::load(&*store);
        let timeline = timeline::TimelineBook::load(&*store);
        slo_runtime.timeline = Some(timeline.handle.clone());
        let timeline_handle = timeline.handle.clone();
        let this = Self {
            changes,
            timeline,
            topology,
            aggregator,
            intents,
            store,
            clock,
            started: now,
            plan: plan_handle.clone(),
            evidence: evidence.clone(),
            projector: projector.clone(),
            plan_tx,
            status: status.clone(),
            health_rx,
            api_rx,
            demand: BTreeMap::new(),
            demand_at: now,
            demand_states: Vec::new(),
            recorder: None,
            answers: AnswerFeed::default(),
            unflushed_audit,
            slo: slo_runtime,
            slo_configured: false,
            identity,
            standby,
            version_floor: saved.plan_version,
            planned_inputs: None,
            computed_at: Timestamp(i64::MIN / 4),
            estimated_at: Timestamp(i64::MIN / 4),
        };
        // Alertable from the first scrape, not only after the first failure.
        metrics::counter!("steer_state_write_errors_total").increment(0);
        metrics::counter!("steer_audit_write_errors_total").increment(0);
        metrics::counter!("steer_plan_publications_total").increment(0);
        metrics::counter!("steer_plan_replans_skipped_total").increment(0);
        for kind in steer_types::timeline::EventKind::ALL {
            metrics::counter!("steer_timeline_events_total", "kind" => kind.as_str()).increment(0);
        }
        this.register_health_metrics();
        changes::register_metrics();
        this.export_change_metrics();
        let mut this = this;
        // Intents the config no longer has a place for: each audited, saved
        // with the state that lacks them, then appended to the log.
        for d in &dropped {
            let entry = this.dropped_entry(d, "at start");
            this.unflushed_audit.push(entry);
        }
        // A full disk must not stop steerd from serving the state it has:
        // the version is saved again with the next publication.
        if let Err(e) = this.persist(this.current().version) {
            metrics::counter!("steer_state_write_errors_total").increment(1);
            error!(error = %e, "could not save state at start; serving from the state read");
        }
        this.flush_audit();
        this.export_metrics();
        this.publish_status();
        let slo_snapshot = this.slo.snapshot.clone();
        Ok((
            this,
            ControlHandles {
                plan: plan_handle,
                evidence,
                plan_watch,
                projector,
                status,
                health_tx,
                api_tx,
                slo: slo_snapshot,
                timeline: timeline_handle,
            },
        ))
    }

    /// Takes over a state directory recorded for `previous` as `identity`
    /// (`steerd --adopt-state`): the identity and the adoption's audit
    /// entry are saved together, then the entry is appended to the log.
    pub fn adopt_state(
        &mut self,
        identity: StateIdentity,
        previous: &StateIdentity,
        dir: &str,
    ) -> Result<(), StoreError> {
        let entry = AuditEntry {
            forced: true,
            ..self.entry(
                "steerd".into(),
                "adopt-state",
                format!("state {dir}"),
                format!("--adopt-state: state of {previous} taken over by {identity}"),
            )
        };
        let before = self.identity.replace(identity);
        self.unflushed_audit.push(entry);
        if let Err(e) = self.persist(self.current().version) {
            self.identity = before;
            self.unflushed_audit.pop();
            return Err(e);
        }
        self.flush_audit();
        Ok(())
    }

    /// Records every plan-changing input from now on (see [`replay`]).
    pub fn record_to(&mut self, mut recorder: Recorder) {
        recorder.write(&Recorded::Start {
            at: self.clock.now(),
            topology: (*self.topology).clone(),
            intents: self.intents.clone(),
            plan: (*self.current()).clone(),
        });
        self.recorder = Some(recorder);
    }

    fn record(&mut self, event: &Recorded) {
        if let Some(r) = self.recorder.as_mut() {
            r.write(event);
        }
    }

    /// Applies a batch of reports observed at `now` and re-plans.
    pub(crate) fn observe_batch(&mut self, reports: &[ObservedReport], now: Timestamp) {
        for r in reports {
            self.aggregator.observe(r, now);
        }
        self.slo.observe(reports, now);
        let moved = self.evaluate_health(now);
        self.refresh_demand(now, moved);
        // Reports that moved nothing the policy decides on (live figures
        // only) cost no re-plan: at a thousand PoPs and fifty services one
        // costs far more than the reports; ticks re-plan on time anyway.
        let Some(health) = self.replan_from(now, moved, true) else {
            return;
        };
        let body = self.compute_from(now, health);
        if body != self.current().body {
            self.publish(body, now);
        }
    }

    /// The health to re-plan from, or `None` when a re-plan would decide
    /// nothing new: health did not move, no ramp runs, the inputs are
    /// those of the last plan, and `may_skip` (counted as skipped).
    fn replan_from(
        &mut self,
        now: Timestamp,
        moved: bool,
        may_skip: bool,
    ) -> Option<HealthSnapshot> {
        let health = self.snapshot(now);
        if may_skip
            && !moved
            && !self.ramping()
            && self.planned_inputs.as_ref() == Some(&inputs::PlanInputs::of(&health))
        {
            metrics::counter!("steer_plan_replans_skipped_total").increment(1);
            return None;
        }
        Some(health)
    }

    /// Adopts a new topology (config reload); no publication by itself.
    pub(crate) fn swap_topology(&mut self, topology: Arc<Topology>) -> Arc<Topology> {
        let previous = std::mem::replace(&mut self.topology, topology);
        self.aggregator.reconfigure(
            self.topology.health.clone(),
            self.topology.pops.iter().map(|p| p.id.clone()),
        );
        previous
    }

    fn current(&self) -> Arc<Plan> {
        self.plan.load_full()
    }

    // Synchronous driving, for simulation (simlab) and replay: the same
    // code paths as `run`, with time taken from the loop's clock.

    /// Applies reports received together, as the ingest path does.
    pub fn step_reports(&mut self, reports: &[ObservedReport]) {
        let now = self.clock.now();
        self.sample_answers(now);
        self.observe_batch(reports, now);
    }

    /// One ticker tick: expiry, staleness, ramps.
    pub fn step_tick(&mut self) {
        self.expire_intents();
        self.tick();
    }

    /// Handles one operator command, as the API path does.
    pub fn step_command(&mut self, cmd: ApiCommand) {
        self.handle(cmd);
    }

    /// Sets the SLOs (at start and on reload), with how often they are
    /// evaluated and how often firing alerts are re-sent. The first call
    /// reads the histories saved in the store.
    pub fn configure_slos(
        &mut self,
        specs: Vec<steer_slo::SloSpec>,
        evaluate_every: Duration,
        resend_every: Duration,
    ) {
        let first = !self.slo_configured;
        self.slo_configured = true;
        self.slo.configure(
            specs,
            &self.topology,
            (evaluate_every, resend_every),
            &*self.store,
            first,
            self.clock.now(),
        );
    }

    /// The SLO alerts due for Alertmanager, as JSON lists for its v2 API,
    /// for one sender task. `link` is what alerts point back to.
    pub fn slo_alerts(&mut self, link: String) -> mpsc::Receiver<Vec<serde_json::Value>> {
        self.slo.set_generator_url(link);
        self.slo.alerts()
    }

    /// Excludes a time range from an SLO's budget (planned maintenance).
    pub fn correct_slo(&mut self, correction: steer_slo::Correction) -> Result<(), String> {
        self.slo.correct(correction)
    }

    /// An operator's SLO correction: stored with the SLO histories, then
    /// audited. A follower refuses it (the leader's histories count).
    pub(crate) fn correct_slo_command(&mut self, c: steer_slo::Correction) -> Result<(), ApiError> {
        if self.standby {
            return Err(ApiError::Unavailable(
                "this controller is a follower: changes are made by the leader (nothing was changed)"
                    .into(),
            ));
        }
        let mut entry = self.entry(
            c.principal.clone(),
            "slo-correct",
            format!("slo {}", c.slo),
            c.reason.clone(),
        );
        entry.detail = format!(
            "excluded from the budget: {} to {}",
            c.start.rfc3339(),
            c.end.rfc3339()
        );
        let now = self.clock.now();
        tokio::task::block_in_place(|| self.slo.correct_durably(c, now, &*self.store))?;
        if let Err(e) = self.audit(&entry) {
            metrics::counter!("steer_audit_write_errors_total").increment(1);
            tracing::error!(error = %e, "SLO correction stored but its audit entry could not be written");
        }
        Ok(())
    }

    /// Saves the SLO histories now (before a clean shutdown).
    pub fn save_slo_state(&mut self) {
        if self.standby {
            return;
        }
        let now = self.clock.now();
        self.slo.save(now, &*self.store);
    }

    /// The plan in force.
    pub fn plan(&self) -> Arc<Plan> {
        self.current()
    }

    /// Runs until every sender is gone. `tick` bounds how late staleness,
    /// ramps and expiry are noticed.
    pub async fn run(mut self, tick: Duration) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Reused across batches: under load it holds hundreds of reports.
        let mut batch = Vec::with_capacity(HEALTH_QUEUE);
        loop {
            tokio::select! {
                received = self.health_rx.recv_many(&mut batch, HEALTH_QUEUE) => {
                    if received == 0 {
                        break;
                    }
                    // Let the ingest streams that are ready run first, so one
                    // re-plan covers their reports too: under load a batch
                    // grows instead of every few reports paying for a compute.
                    tokio::task::yield_now().await;
                    while batch.len() < HEALTH_QUEUE {
                        let Ok(more) = self.health_rx.try_recv() else { break };
                        batch.push(more);
                    }
                    let now = self.clock.now();
                    // Answers up to the moment the load is read, so the
                    // two describe the same resolver caches.
                    self.sample_answers(now);
                    if self.recorder.is_some() {
                        self.record(&Recorded::Reports { at: now, reports: batch.clone() });
                    }
                    self.observe_batch(&batch, now);
                    batch.clear();
                }
                cmd = self.api_rx.recv() => match cmd {
                    // Status reads what the command did (read your writes).
                    Some(cmd) => {
                        self.handle(cmd);
                        self.publish_status();
                    }
                    None => break,
                },
                _ = ticker.tick() => {
                    self.expire_intents();
                    self.tick();
                    self.export_health_metrics(self.clock.now());
                    self.publish_status();
                    self.flush_timeline(self.clock.now());
                }
            }
        }
        self.timeline.flush_now();
        self.flush_timeline(self.clock.now());
        info!("control loop stopped");
    }

    /// Re-estimates demand, adopting it when it moved a step (or drifted,
    /// or health changed: `health_moved`, or states differ from the last
    /// adoption's).
    fn refresh_demand(&mut self, now: Timestamp, health_moved: bool) {
        // Answers are sampled once a second and demand moves in steps: more
        // estimates than that only cost, unless health changed.
        if !health_moved && now.since(self.estimated_at) < DEMAND_ESTIMATE_EVERY {
            return;
        }
        self.estimated_at = now;
        let snapshot = self.aggregator.snapshot(now);
        let states: Vec<TargetState> = snapshot.pops.values().map(|h| h.state).collect();
        let window = self.answers.window(&self.topology);
        let fresh = steer_policy::estimate_demand(
            &self.topology,
            &self.current().body,
            &snapshot,
            &window,
            &self.demand,
        );
        let stale = now.since(self.demand_at) >= DEMAND_DRIFT_EVERY;
        // A health change re-plans anyway: take the freshest figures then.
        if demand_moved(&self.demand, &fresh, DEMAND_STEP.0, DEMAND_STEP.1)
            || (stale && demand_moved(&self.demand, &fresh, DEMAND_DRIFT.0, DEMAND_DRIFT.1))
            || states != self.demand_states
        {
            self.demand = fresh;
            self.demand_at = now;
            self.demand_states = states;
        }
    }

    /// Counts the answers `tally` records (the local DNS data plane's) into
    /// the demand estimate.
    pub fn count_answers_from(&mut self, tally: Arc<AnswerTally>) {
        self.answers.tally = Some(Arc::new(move || tally.totals()));
    }

    /// Counts the answers `source` reports (e.g. every edge's, merged, on a
    /// controller that serves no DNS) into the demand estimate. Its totals
    /// must only grow (see `steer_types::answers::MergedAnswers`).
    pub fn count_answers_with(&mut self, source: AnswerSource) {
        self.answers.tally = Some(source);
    }

    /// Takes a sample of the answer counters if a second has passed.
    fn sample_answers(&mut self, now: Timestamp) {
        let Some(tally) = self.answers.tally.clone() else {
            return;
        };
        if self
            .answers
            .samples
            .back()
            .is_some_and(|(at, _)| now.since(*at) < Duration::from_secs(1))
        {
            return;
        }
        let totals = tally();
        self.record(&Recorded::Answers {
            at: now,
            totals: totals.clone(),
        });
        self.answers.push(&self.topology, now, totals);
    }

    /// Health as of `now` with the cached demand attached.
    pub(crate) fn snapshot(&self, now: Timestamp) -> HealthSnapshot {
        let mut s = self.aggregator.snapshot(now);
        s.demand = self.demand.clone();
        s.budget = self.slo.shifts.clone();
        s
    }

    /// The next plan body under the intents in force; its evidence is
    /// published at once (it is never versioned), the body only if it is
    /// a new decision.
    fn compute_next(&mut self, now: Timestamp) -> PlanBody {
        let health = self.snapshot(now);
        self.compute_from(now, health)
    }

    /// As [`Self::compute_next`], from `health` taken at `now`.
    fn compute_from(&mut self, now: Timestamp, health: HealthSnapshot) -> PlanBody {
        let current = self.current();
        self.planned_inputs = Some(inputs::PlanInputs::of(&health));
        self.computed_at = now;
        let (body, evidence) = steer_policy::compute_with_evidence(
            &self.topology,
            &health,
            &self.intents,
            Some(&*current),
            now,
        );
        // A change in flight: its stage's scope takes the new config's
        // decisions (see `steer_change::merge_stage`).
        let body = match self.changes.staged().cloned() {
            Some(stage) => {
                let (next, _) = steer_policy::compute_with_evidence(
                    &stage.topology,
                    &health,
                    &self.intents,
                    Some(&*current),
                    now,
                );
                steer_change::merge_stage(&body, &next, &stage.scope, &stage.topology)
            }
            None => body,
        };
        self.evidence.store(Arc::new(evidence));
        self.projector.publish(ProjectionInputs {
            topology: self.topology.clone(),
            health,
            intents: self.intents.clone(),
            plan_version: current.version,
            at: now,
        });
        body
    }

    /// The live figures behind the plan in force.
    pub fn evidence(&self) -> Arc<PlanEvidence> {
        self.evidence.load_full()
    }

    /// Whether time alone moves the plan now: a rail holds a weight back
    /// (a recovering PoP ramping up), or a soft drain ramps down.
    fn ramping(&self) -> bool {
        !self.current().body.rails.is_empty()
            || self
                .intents
                .drains
                .iter()
                .any(|d| d.mode == steer_types::DrainMode::Soft)
    }

    /// A tick: staleness and ramps move with time. Recorded only if it
    /// published, since a tick that changes nothing changes no state.
    fn tick(&mut self) {
        let now = self.clock.now();
        self.sample_answers(now);
        if self.standby {
            self.slo.tick(now, &cluster::ReadOnly(&*self.store));
        } else {
            self.slo.tick(now, &*self.store);
        }
        let mut moved = self.evaluate_health(now);
        moved |= self.drive_rollout();
        moved |= self.apply_intent_changes();
        // Time moves a plan only through ramps. Without one and with
        // nothing else moved, re-plan at most once a second (for the live
        // figures; at a thousand PoPs and fifty services a plan costs tens
        // of ms).
        let recent = now.since(self.computed_at) < TIME_REPLAN_EVERY;
        let Some(health) = self.replan_from(now, moved, recent) else {
            return;
        };
        let body = self.compute_from(now, health);
        let changed = body != self.current().body;
        if moved || changed {
            self.record(&Recorded::Tick { at: now });
        }
        if changed {
            self.publish(body, now);
        }
    }

    /// Recomputes; publishes a new version if anything changed (or if
    /// `force`, e.g. after a config reload). Returns the current version.
    /// As `recompute_and_publish`, at a time the caller already recorded,
    /// so a replay computes at exactly the same instant.
    fn recompute_and_publish_at(&mut self, force: bool, now: Timestamp) -> u64 {
        self.evaluate_health(now);
        let body = self.compute_next(now);
        let current = self.current();
        if body == current.body && !force {
            return current.version;
        }
        self.publish(body, now)
    }

    fn publish(&mut self, body: PlanBody, now: Timestamp) -> u64 {
        let previous = self.current();
        let version = previous.version.max(self.version_floor) + 1;
        let plan = Arc::new(Plan {
            version,
            computed_at: now,
            body,
        });
        if let Err(e) = self.persist(version) {
            // Publishing anyway keeps answers fresh; the version may repeat
            // after a crash, which watchers tolerate by comparing bodies.
            metrics::counter!("steer_state_write_errors_total").increment(1);
            error!(error = %e, "could not persist plan version");
        } else if !self.unflushed_audit.is_empty() {
            self.flush_audit();
        }
        self.plan.store(plan.clone());
        if self.recorder.is_some() {
            self.record(&Recorded::Published {
                version,
                digest: record::digest(&plan),
            });
        }
        // Every version is a decision: say which, on one line.
        let changes = plan.changes_since(&previous);
        self.plan_tx.send_replace(plan);
        metrics::counter!("steer_plan_publications_total").increment(1);
        info!(version, changes = %changes.join("; "), "published plan");
        self.note_plan(version, &changes);
        self.export_metrics();
        self.publish_status();
        version
    }

    fn persist(&self, plan_version: u64) -> Result<(), StoreError> {
        if self.standby {
            // The leader owns the shared state.
            return Ok(());
        }
        let state = PersistedState {
            intents: self.intents.clone(),
            plan_version,
            pending_audit: self.unflushed_audit.clone(),
            identity: self.identity.clone(),
        };
        tokio::task::block_in_place(|| self.store.save(&state))
    }

    /// Appends the audit entries of durable changes that are not in the log
    /// yet, oldest first; stops at the first failure and keeps the rest.
    fn flush_audit(&mut self) {
        if self.standby {
            return;
        }
        while let Some(entry) = self.unflushed_audit.first() {
            if let Err(e) = self.audit(entry) {
                metrics::counter!("steer_audit_write_errors_total").increment(1);
                error!(
                    error = %e,
                    pending = self.unflushed_audit.len(),
                    "audit log append failed; the entries are kept in the state and retried"
                );
                return;
            }
            self.unflushed_audit.remove(0);
        }
    }

    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        tokio::task::block_in_place(|| self.store.append_audit(entry))?;
        self.note_audit(entry);
        Ok(())
    }

    /// Applies an intent change durably: the state with its audit entry
    /// (one atomic write), then the audit log line, then publish. On a
    /// storage failure before the state is durable nothing changes; the log
    /// line is written only once the change it reports is durable.
    fn commit(&mut self, next: Intents, entry: AuditEntry) -> Result<u64, ApiError> {
        self.commit_then_record(next, vec![entry], |_| None)
    }

    /// As [`commit`](Self::commit), with every audit entry of the change
    /// (saved together); once the change is durable, `first` may name an
    /// input to record ahead of the new intents (it gets the commit's
    /// timestamp), so a recording never holds a change that was refused.
    fn commit_then_record(
        &mut self,
        next: Intents,
        entries: Vec<AuditEntry>,
        first: impl FnOnce(Timestamp) -> Option<Recorded>,
    ) -> Result<u64, ApiError> {
        if self.standby {
            return Err(ApiError::Unavailable(
                "this controller is a follower: changes are made by the leader (nothing was changed)"
                    .into(),
            ));
        }
        let previous = std::mem::replace(&mut self.intents, next);
        let pending = self.unflushed_audit.len();
        let version = self.current().version + 1;
        let actions: Vec<String> = entries.iter().map(|e| e.action.clone()).collect();
        self.unflushed_audit
            .extend(entries.into_iter().map(|e| AuditEntry {
                plan_version: version,
                ..e
            }));
        if let Err(e) = self.persist(self.current().version) {
            self.intents = previous;
            self.unflushed_audit.truncate(pending);
            metrics::counter!("steer_state_write_errors_total").increment(1);
            error!(error = %e, "intent change not stored; rejected");
            return Err(ApiError::Unavailable(format!(
                "could not store the change durably, nothing was changed: {e}"
            )));
        }
        self.flush_audit();
        for action in actions {
            metrics::counter!("steer_intent_changes_total", "action" => action).increment(1);
        }
        let at = self.clock.now();
        if self.recorder.is_some() {
            if let Some(event) = first(at) {
                self.record(&event);
            }
            self.record(&Recorded::Intents {
                at,
                intents: self.intents.clone(),
            });
        }
        Ok(self.recompute_and_publish_at(true, at))
    }

    /// Records an attempt that changed nothing (refused, denied, dry run).
    fn audit_only(&self, entry: &AuditEntry) {
        let entry = entry.clone().capped();
        if let Err(e) = tokio::task::block_in_place(|| self.store.append_attempt_audit(&entry)) {
            error!(error = %e, action = %entry.action, "could not write audit entry");
        }
    }

    fn export_metrics(&self) {
        let plan = self.current();
        metrics::gauge!("steer_plan_version").set(plan.version as f64);
        metrics::gauge!("steer_drains_active").set(self.intents.drains.len() as f64);
        metrics::gauge!("steer_overrides_active").set(self.intents.overrides.len() as f64);
        metrics::gauge!("steer_plan_rails_clamped").set(plan.body.rails.len() as f64);
        for r in &plan.body.regions {
            // 0 normal, 1 spill, 2 shed, 3 panic: alert on >= 2.
            metrics::gauge!("steer_region_degradation", "region" => r.id.to_string())
                .set(f64::from(r.level as u8));
        }
        for p in &plan.body.pops {
            let pop = p.id.to_string();
            metrics::gauge!("steer_pop_usable", "pop" => pop.clone())
                .set(f64::from(u8::from(p.usable)));
            metrics::gauge!("steer_pop_drained", "pop" => pop.clone())
                .set(f64::from(u8::from(p.drained_by.is_some())));
            metrics::gauge!("steer_pop_weight_permille", "pop" => pop).set(f64::from(p.weight));
        }
    }
}
