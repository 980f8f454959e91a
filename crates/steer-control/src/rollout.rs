//! Rollouts: the control loop's side of a change in flight. Each tick it
//! starts the oldest approved change when it may start, judges the stage
//! in force on the SLOs, rolls back on Fail, moves on after the bake on
//! Pass and holds on Inconclusive; a completed change becomes the config
//! in force (the reloader applies the whole file).

use std::sync::Arc;

use steer_change::{Change, ChangeSettings, ChangeState, Verdict, Window, WindowVerdict};
use steer_command::ConfigApply;
use steer_types::{RegionId, Timestamp};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::ControlLoop;

/// What a tick needs of a change: its state and stages, and whether the
/// config in force is its base or its target. Not the change itself,
/// whose config files (up to 1 MiB each) and topologies a tick would
/// otherwise copy five times a second.
struct Tick {
    id: String,
    state: ChangeState,
    stages: Vec<steer_change::StageSpec>,
    emergency: bool,
    base_digest: String,
    base_in_force: bool,
    target_in_force: bool,
}

impl Tick {
    fn of(c: &Change, in_force: Option<&steer_types::Topology>) -> Self {
        Self {
            id: c.id.clone(),
            state: c.state.clone(),
            stages: c.stages.clone(),
            emergency: c.emergency,
            base_digest: c.base_digest.clone(),
            base_in_force: c.base_topology.as_ref() == in_force,
            target_in_force: c.new_topology.as_ref() == in_force,
        }
    }
}

impl ControlLoop {
    /// What a step changes beyond the book: a stage that moved or ended
    /// changes the plan now; a change that completed (or was rolled back
    /// after completing) changes the config in force.
    pub(crate) fn after_step(&mut self, change: &Change, was_completed: bool) {
        let now = self.clock.now();
        if change.intent.is_some() {
            // Drains and overrides commit their own plans; no config moves.
            return;
        }
        match change.state {
            ChangeState::Completed => self.complete(change),
            ChangeState::RolledBack if was_completed => {
                if let Some(base) = &change.base_topology {
                    self.swap_topology(Arc::new(base.clone()));
                }
                self.request_apply(change, &change.base_config, "rolled back");
            }
            _ => {}
        }
        self.recompute_and_publish_at(false, now);
    }

    /// The new config everywhere: the loop's topology at once (so no plan
    /// goes back to the old one), the rest of the file by the reloader.
    fn complete(&mut self, change: &Change) {
        if let Some(t) = &change.new_topology {
            self.swap_topology(Arc::new(t.clone()));
        }
        self.request_apply(change, &change.config, "completed");
    }

    fn request_apply(&self, change: &Change, config: &str, what: &str) {
        let Some(tx) = &self.changes.apply else {
            return;
        };
        let apply = ConfigApply {
            change: change.id.clone(),
            config: config.to_owned(),
            reason: format!("change {} {what}: {}", change.id, change.reason),
        };
        if tx.try_send(apply).is_err() {
            error!(change = %change.id, "the reloader is not taking configs: the file in force is not the change's");
        }
    }

    /// One rollout step per tick: start the oldest approved change when it
    /// may start, judge the stage in force, roll back on Fail, move on
    /// after the bake on Pass, hold on Inconclusive. Returns whether a
    /// stage began or ended (the plan changes).
    pub(crate) fn drive_rollout(&mut self) -> bool {
        if self.standby {
            return false;
        }
        let Ok(book) = self.changes.book() else {
            return false;
        };
        let now = self.clock.now();
        let over = Some(&*self.topology);
        if let Some(c) = book.in_flight().map(|c| Tick::of(c, over)) {
            if !c.base_in_force && !c.target_in_force {
                // A reload (or another config at restart) under a rollout:
                // hold, never jump ahead.
                if matches!(c.state, ChangeState::Rolling { .. }) {
                    let why = "the config in force is neither the change's base nor its target";
                    self.step_auto(&c.id, |c, at| c.pause("steerd", why, at), "pause", why);
                }
                return false;
            }
            if !self.changes.resumed {
                // A stage in force at start (steerd restarted mid-rollout):
                // it holds its stage and bakes again from now.
                self.changes.resumed = true;
                if matches!(c.state, ChangeState::Rolling { .. }) {
                    let why = "steerd restarted: the stage bakes again from now";
                    self.step_auto(&c.id, |c, at| c.rebake("steerd", why, at), "rebake", why);
                    return false;
                }
            }
            return self.judge_stage(&c, now);
        }
        let next = book
            .changes
            .iter()
            .filter(|c| c.state == ChangeState::Approved && c.intent.is_none())
            .min_by_key(|c| c.created_at)
            .map(|c| Tick::of(c, over));
        self.changes.resumed = true;
        match next {
            Some(c) => self.try_start(&c, now),
            None => false,
        }
    }

    /// Why a change may not start or move on now (window, budget freeze),
    /// unless it is an emergency.
    fn held_by(&self, c: &Tick, now: Timestamp) -> Option<String> {
        if c.emergency {
            return None;
        }
        let settings = self.changes.settings.as_ref();
        let windows = settings.map_or(&[][..], |s| &s.windows);
        if let WindowVerdict::Blocked { why } = Window::verdict(windows, now) {
            return Some(why);
        }
        if settings.is_none_or(|s| s.freeze_on_exhausted_budget) {
            let spent = self.slo.snapshot.load().exhausted_services();
            if !spent.is_empty() {
                let list: Vec<String> = spent.into_iter().collect();
                return Some(format!("error budget exhausted: {}", list.join(", ")));
            }
        }
        None
    }

    fn try_start(&mut self, c: &Tick, now: Timestamp) -> bool {
        if !c.base_in_force || !self.is_live(&c.base_digest) {
            let why = "the config in force changed since it was proposed: propose again against it";
            self.step_auto(&c.id, |c, at| c.abort("steerd", why, at), "abort", why);
            return false;
        }
        if let Some(why) = self.held_by(c, now) {
            self.note_waiting(&c.id, &why);
            return false;
        }
        let first = c.stages.first().map_or("all".to_owned(), |s| {
            format!("{}: {}", s.name, s.describe())
        });
        self.step_auto(
            &c.id,
            |c, at| c.start("steerd", &first, at),
            "start",
            &first,
        )
    }

    fn judge_stage(&mut self, c: &Tick, now: Timestamp) -> bool {
        let ChangeState::Rolling { stage, since } = c.state else {
            return false;
        };
        let Some(spec) = c.stages.get(stage).cloned() else {
            return false;
        };
        // PoPs the proposal adds are placed by its topology (the staged one).
        let target = self.changes.staged().map(|s| s.topology.clone());
        let regions = |pop: &str| -> Option<RegionId> {
            self.topology
                .pop(pop)
                .map(|p| p.region.clone())
                .or_else(|| target.as_ref()?.pop(pop).map(|p| p.region.clone()))
        };
        let scope = spec.scope();
        let in_scope = |pop: &str| scope.judges(&pop.into(), regions(pop).as_ref());
        // `since` is wall time (the book's); evidence is taken on the
        // loop's clock, which is wall time in steerd.
        let evidence = self.slo.stage_evidence(&in_scope, since, now);
        let judgement = self
            .changes
            .settings
            .as_ref()
            .map(|s| s.judgement.clone())
            .unwrap_or_default();
        let verdict = steer_change::judge(&evidence, &judgement);
        let baked = now.since(since) >= spec.bake;
        match verdict {
            Verdict::Fail(why) => {
                metrics::counter!("steer_change_rollbacks_total", "reason" => "judgement")
                    .increment(1);
                warn!(change = %c.id, stage = %spec.name, evidence = %why, "stage failed: rolling back");
                let detail = format!("stage {} failed: {why}", spec.name);
                self.step_auto(
                    &c.id,
                    |c, at| c.roll_back("steerd", &detail, at),
                    "rollback",
                    &detail,
                )
            }
            Verdict::Pass(why) if baked => {
                if let Some(hold) = self.held_by(c, now) {
                    self.note_waiting(&c.id, &hold);
                    return false;
                }
                let detail = format!("stage {} passed: {why}", spec.name);
                let stages = c.stages.len().max(1);
                let moved = self.step_auto(
                    &c.id,
                    |c, at| c.promote(stages, "steerd", &detail, at),
                    "promote",
                    &detail,
                );
                if moved
                    && let Some(done) = self.changes.book().ok().and_then(|b| b.get(&c.id).cloned())
                    && done.state == ChangeState::Completed
                {
                    self.complete(&done);
                }
                moved
            }
            Verdict::Inconclusive(why) if baked => {
                let detail = format!("stage {} inconclusive after its bake: {why}", spec.name);
                self.step_auto(
                    &c.id,
                    |c, at| c.pause("steerd", &detail, at),
                    "pause",
                    &detail,
                );
                false
            }
            Verdict::Pass(_) | Verdict::Inconclusive(_) => false,
        }
    }

    /// A step steerd takes itself, saved and audited like an operator's.
    /// Returns whether it was taken.
    pub(crate) fn step_auto(
        &mut self,
        id: &str,
        step: impl FnOnce(&mut Change, Timestamp) -> Result<(), steer_change::ChangeError>,
        action: &str,
        detail: &str,
    ) -> bool {
        let Ok(book) = self.changes.book() else {
            return false;
        };
        let mut book = book.clone();
        let at = self.clock.wall();
        let Some(change) = book.get_mut(id) else {
            return false;
        };
        let before = change.state.name();
        if step(change, at).is_err() {
            return false;
        }
        change.held = None;
        let after = change.state.name();
        book.compact();
        if let Err(e) = self.save_changes(book) {
            error!(change = %id, error = %e, "could not save a rollout step; it is retried");
            return false;
        }
        let mut entry = self.entry(
            "steerd".into(),
            &format!("change-{action}"),
            format!("change {id}"),
            detail.to_owned(),
        );
        entry.detail = format!("{before} -> {after}");
        self.audit_change(&entry);
        self.changes.waiting = None;
        info!(change = %id, action, detail, "rollout step");
        true
    }

    /// Says once (per reason) why a change waits, in the log and on the
    /// change.
    pub(crate) fn note_waiting(&mut self, id: &str, why: &str) {
        let key = format!("{id}: {why}");
        if self.changes.waiting.as_deref() == Some(key.as_str()) {
            return;
        }
        info!(change = %id, why, "change waits");
        self.changes.waiting = Some(key);
        let Ok(book) = self.changes.book() else {
            return;
        };
        let mut book = book.clone();
        if let Some(c) = book.get_mut(id) {
            c.held = Some(why.to_owned());
            if let Err(e) = self.save_changes(book) {
                error!(change = %id, error = %e, "could not save why a change waits");
            }
        }
    }

    /// `[changes]` of the config in force, and that file's
    /// `steer_change::config_digest`.
    pub fn configure_changes(&mut self, settings: Option<ChangeSettings>, digest: String) {
        self.changes.settings = settings;
        self.changes.live_digest = digest;
    }

    /// Whether `digest` is the config file in force (true when steerd was
    /// not told which file that is, e.g. in simlab).
    pub(crate) fn is_live(&self, digest: &str) -> bool {
        self.changes.live_digest.is_empty() || self.changes.live_digest == digest
    }

    /// Where completed changes' config files are sent to be applied. A
    /// change that completed over the config file steerd started with
    /// (the file was not updated since) is applied again now: a completed
    /// change survives a restart.
    pub fn apply_configs_with(&mut self, tx: mpsc::Sender<ConfigApply>) {
        self.changes.apply = Some(tx);
        let latest = self.changes.book().ok().and_then(|b| {
            b.changes
                .iter()
                .rev()
                .find(|c| c.state == ChangeState::Completed)
                .cloned()
        });
        if let Some(c) = latest
            && c.base_topology.as_ref() == Some(&*self.topology)
            && c.new_topology.as_ref() != Some(&*self.topology)
            && !c.config.is_empty()
        {
            warn!(
                change = %c.id,
                "the config file is behind completed change {}: serving its config; update the file",
                c.id
            );
            self.complete(&c);
        }
    }
}
