//! Change requests in the control loop: it owns the [`ChangeBook`], writes
//! it to the store as one document before answering (a step that is not
//! durable did not happen), audits every step, and computes a proposal's
//! projected effect from the health, demand and intents in force.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use steer_change::{
    Change, ChangeBook, ChangeSettings, ChangeState, DiffItem, DiffKind, Draft, IntentSpec,
    StageScope, StageSpec,
};
use steer_change::{Window, WindowVerdict};
use steer_command::{ApiError, ChangeAction, ChangeCommand, ConfigApply, DrainCommand, Proposal};
use steer_types::{
    AnswerSet, PlanBody, RegionId, ServiceId, Topology,
    audit::AuditEntry,
    status::{BREAK_GLASS_SHOWN_MS, BreakGlass, ChangeBrief},
};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::{ControlLoop, intents::OverrideRequest};

/// The store document the book is saved as.
const DOCUMENT: &str = "changes";

/// Open changes (not finished) at once: a bound on what callers can make
/// steerd keep and rewrite at every step.
const MAX_OPEN: usize = 32;

/// Every state a change can be in, for `steer_change_state`.
const STATES: [&str; 8] = [
    "proposed",
    "approved",
    "rolling",
    "paused",
    "completed",
    "rejected",
    "aborted",
    "rolled-back",
];

/// The loop's changes; `None` while the saved document cannot be read
/// (then nothing is written over it).
pub(crate) struct ChangeDesk {
    book: Option<ChangeBook>,
    /// Why the saved document could not be read.
    unreadable: Option<String>,
    /// `[changes]` of the config in force (`None`: not governed; changes
    /// already made still roll out or back).
    pub(crate) settings: Option<ChangeSettings>,
    /// The change in flight: its id, proposed topology and stage scope.
    staged: Option<Staged>,
    /// Where completed changes' config files go to be applied.
    pub(crate) apply: Option<mpsc::Sender<ConfigApply>>,
    /// The last reason an approved change was said to wait (logged once).
    pub(crate) waiting: Option<String>,
    /// `config_digest` of the config file in force (empty: not known).
    pub(crate) live_digest: String,
    /// Whether the stage in force was re-baked since the book was loaded.
    pub(crate) resumed: bool,
}

/// What compute needs of the change in flight.
#[derive(Clone)]
pub(crate) struct Staged {
    pub(crate) id: String,
    pub(crate) topology: Arc<Topology>,
    pub(crate) scope: StageScope,
}

impl ChangeDesk {
    /// The book saved in `store`, or an empty one on first start.
    pub(crate) fn load(store: &dyn steer_store::StateStore) -> Self {
        match store.load_document(DOCUMENT) {
            Ok(None) => Self::with(ChangeBook::default()),
            Ok(Some(bytes)) => match ChangeBook::from_bytes(&bytes) {
                Ok(book) => Self::with(book),
                Err(e) => Self::broken(e),
            },
            Err(e) => Self::broken(format!("cannot read the changes document: {e}")),
        }
    }

    fn with(book: ChangeBook) -> Self {
        let mut desk = Self {
            book: Some(book),
            unreadable: None,
            settings: None,
            staged: None,
            apply: None,
            waiting: None,
            resumed: false,
            live_digest: String::new(),
        };
        desk.restage();
        desk
    }

    fn broken(why: String) -> Self {
        error!(error = %why, "change requests are unavailable until the changes document is readable");
        Self {
            book: None,
            unreadable: Some(why),
            settings: None,
            staged: None,
            apply: None,
            waiting: None,
            resumed: false,
            live_digest: String::new(),
        }
    }

    /// Keeps what compute needs in step with the book.
    fn restage(&mut self) {
        let flight = self.book.as_ref().and_then(ChangeBook::in_flight);
        let Some(c) = flight else {
            self.staged = None;
            return;
        };
        let stage = match c.state {
            ChangeState::Rolling { stage, .. } | ChangeState::Paused { stage, .. } => stage,
            _ => return,
        };
        let scope = c
            .stages
            .get(stage)
            .map_or_else(StageScope::all, StageSpec::scope);
        let topology = match &self.staged {
            Some(s) if s.id == c.id => s.topology.clone(),
            _ => match &c.new_topology {
                Some(t) => Arc::new(t.clone()),
                None => {
                    self.staged = None;
                    return;
                }
            },
        };
        self.staged = Some(Staged {
            id: c.id.clone(),
            topology,
            scope,
        });
    }

    /// The book (and its readability) of `fresh`, keeping this desk's
    /// settings and channel: a new leader reads the shared changes again.
    pub(crate) fn take_book(&mut self, fresh: ChangeDesk) {
        self.book = fresh.book;
        self.unreadable = fresh.unreadable;
        self.waiting = None;
        self.resumed = false;
        self.restage();
    }

    /// The stage in force, for compute.
    pub(crate) fn staged(&self) -> Option<&Staged> {
        self.staged.as_ref()
    }

    pub(crate) fn book(&self) -> Result<&ChangeBook, ApiError> {
        self.book.as_ref().ok_or_else(|| {
            ApiError::Unavailable(format!(
                "change requests are unavailable: {}",
                self.unreadable.as_deref().unwrap_or("no changes document")
            ))
        })
    }
}

/// Registers the change metrics: documented, so alerts see them at zero.
pub(crate) fn register_metrics() {
    for reason in ["judgement", "operator"] {
        metrics::counter!("steer_change_rollbacks_total", "reason" => reason).absolute(0);
    }
    metrics::counter!("steer_change_emergencies_total").absolute(0);
    metrics::counter!("steer_change_apply_failures_total").absolute(0);
    metrics::gauge!("steer_change_stage").set(-1.0);
    metrics::gauge!("steer_changes_open").set(0.0);
}

impl ControlLoop {
    pub(crate) fn handle_change(&mut self, cmd: ChangeCommand) {
        match cmd {
            ChangeCommand::Propose { proposal, reply } => {
                let _ = reply.send(self.propose(proposal));
            }
            ChangeCommand::List { reply } => {
                let _ = reply.send(self.changes.book().map(|b| b.changes.clone()));
            }
            ChangeCommand::Get { id, reply } => {
                let found = self.changes.book().and_then(|b| {
                    b.get(&id)
                        .cloned()
                        .ok_or_else(|| ApiError::NotFound(format!("no change {id:?}")))
                });
                let _ = reply.send(found);
            }
            ChangeCommand::Act {
                id,
                action,
                principal,
                reason,
                reply,
            } => {
                let _ = reply.send(self.act_on_change(&id, action, &principal, &reason));
            }
            ChangeCommand::Applied { id, result } => self.note_applied(&id, result),
        }
    }

    /// Records on the change what came of applying its config file; a
    /// failure is counted and logged as an error (it needs a person).
    fn note_applied(&mut self, id: &str, result: Result<u64, String>) {
        if let Err(why) = &result {
            metrics::counter!("steer_change_apply_failures_total").increment(1);
            error!(change = %id, error = %why, "a change's config file did not apply: its steering is in force, its zones and DNS settings are not");
        }
        let Ok(book) = self.changes.book() else {
            return;
        };
        let mut book = book.clone();
        let Some(change) = book.get_mut(id) else {
            return;
        };
        change.note_apply(result, self.clock.wall());
        if let Err(e) = self.save_changes(book) {
            error!(change = %id, error = %e, "could not record the outcome of applying a change's config");
        }
    }

    fn propose(&mut self, p: Proposal) -> Result<Change, ApiError> {
        self.refuse_if_follower()?;
        let mut book = self.changes.book()?.clone();
        if book.open() >= MAX_OPEN {
            return Err(ApiError::FailedPrecondition(format!(
                "{MAX_OPEN} changes are open already: approve, reject or abort some first"
            )));
        }
        let now = self.clock.now();
        let current = self.current();
        let health = self.snapshot(now);
        let (proposed, projection) =
            steer_policy::project_change(&p.topology, &health, &self.intents, &current.body, now);
        let mut effect = vec![projection.summary.clone()];
        effect.extend(moved_sets(&current.body, &proposed));
        effect.extend(
            proposed
                .rails
                .iter()
                .map(|r| format!("rail would fire: {r}")),
        );
        let id = book.next_id();
        let change = Change::propose(
            Draft {
                id: id.clone(),
                author: p.principal.clone(),
                reason: p.reason.clone(),
                config: p.config,
                base_config: p.base_config,
                base_digest: p.base_digest,
                diff: p.diff,
                effect,
                required_approvals: p.settings.approvals,
                emergency: p.emergency,
                stages: p.settings.stages.clone(),
                base_topology: Some((*self.topology).clone()),
                new_topology: Some((*p.topology).clone()),
                intent: None,
            },
            self.clock.wall(),
        );
        if p.emergency {
            book.note_break_glass(BreakGlass {
                at: self.clock.wall(),
                principal: p.principal.clone(),
                reason: p.reason.clone(),
                what: format!("change {id}"),
            });
        }
        book.add(change.clone());
        self.save_changes(book)?;
        let mut entry = self.entry(
            p.principal,
            "change-propose",
            format!("change {id}"),
            p.reason,
        );
        entry.detail = format!(
            "{} difference(s); {}{}",
            change.diff.len(),
            projection.summary,
            if p.emergency { "; EMERGENCY" } else { "" }
        );
        entry.forced = p.emergency;
        self.audit_change(&entry);
        if p.emergency {
            metrics::counter!("steer_change_emergencies_total").increment(1);
        }
        info!(change = %id, state = change.state.name(), "change proposed");
        Ok(change)
    }

    fn act_on_change(
        &mut self,
        id: &str,
        action: ChangeAction,
        principal: &str,
        reason: &str,
    ) -> Result<Change, ApiError> {
        self.refuse_if_follower()?;
        let mut book = self.changes.book()?.clone();
        let at = self.clock.wall();
        let Some(change) = book.get_mut(id) else {
            return Err(ApiError::NotFound(format!("no change {id:?}")));
        };
        let stages = change.stages.len().max(1);
        let before = change.state.name();
        let completed = change.state == ChangeState::Completed;
        if action == ChangeAction::Rollback
            && completed
            && let Some(spec) = &change.intent
        {
            // Lift what it applied (if nothing replaced or lifted it since).
            let why = format!("rollback of change {id}: {reason}");
            self.lift_intent(spec, change.applied_intent.as_deref(), principal, &why)?;
        } else if action == ChangeAction::Rollback && completed {
            let current = Some(&*self.topology);
            // Its file in force, or its file failed to apply (the loop
            // serves its steering; the base file is the one in force).
            let made_it = self.is_live(&steer_change::config_digest(&change.config))
                || change.apply_error.is_some();
            if change.new_topology.as_ref() != current || change.base_config.is_empty() || !made_it
            {
                return Err(ApiError::FailedPrecondition(format!(
                    "change {id} cannot be rolled back: the config in force is no longer the one it made \
                     (a later change or reload); propose the config you want as a new change"
                )));
            }
        }
        let done = match action {
            ChangeAction::Approve => change.approve(principal, reason, at).map(|_| ()),
            ChangeAction::Reject => change.reject(principal, reason, at),
            ChangeAction::Pause => change.pause(principal, reason, at),
            ChangeAction::Resume => change.resume(principal, reason, at),
            ChangeAction::Promote => change.promote(stages, principal, reason, at),
            ChangeAction::Abort => change.abort(principal, reason, at),
            ChangeAction::Rollback => change.roll_back(principal, reason, at),
        };
        if let Err(e) = done {
            let mut entry = self.entry(
                principal.to_owned(),
                &format!("change-{}", action.name()),
                format!("change {id}"),
                reason.to_owned(),
            );
            entry.outcome = "refused".into();
            entry.detail = e.to_string();
            self.audit_only(&entry);
            let mut why = e.to_string();
            if matches!(e, steer_change::ChangeError::SelfApproval { .. })
                && principal.starts_with("anonymous@")
            {
                why.push_str(
                    " (with [auth] mode = \"none\" every caller is anonymous: give reviewers tokens, or set [changes] approvals = 0)",
                );
            }
            return Err(ApiError::FailedPrecondition(why));
        }
        let change = change.clone();
        book.compact();
        self.save_changes(book)?;
        self.after_step(&change, completed);
        let mut entry = self.entry(
            principal.to_owned(),
            &format!("change-{}", action.name()),
            format!("change {id}"),
            reason.to_owned(),
        );
        entry.detail = format!("{before} -> {}", change.state.name());
        self.audit_change(&entry);
        if action == ChangeAction::Rollback {
            metrics::counter!("steer_change_rollbacks_total", "reason" => "operator").increment(1);
        }
        info!(change = %id, action = action.name(), state = change.state.name(), "change step");
        Ok(change)
    }

    fn refuse_if_follower(&self) -> Result<(), ApiError> {
        if self.standby {
            return Err(ApiError::Unavailable(
                "this controller is a follower: change requests go to the leader (nothing was changed)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Makes `book` durable, then the one in force. A failed write changes
    /// nothing and says so.
    pub(crate) fn save_changes(&mut self, book: ChangeBook) -> Result<(), ApiError> {
        let bytes = book.to_bytes();
        tokio::task::block_in_place(|| self.store.save_document(DOCUMENT, &bytes)).map_err(
            |e| {
                metrics::counter!("steer_state_write_errors_total").increment(1);
                ApiError::Unavailable(format!("cannot save the change (nothing was changed): {e}"))
            },
        )?;
        export_metrics(&book);
        self.changes.book = Some(book);
        self.changes.restage();
        Ok(())
    }

    pub(crate) fn audit_change(&self, entry: &AuditEntry) {
        if let Err(e) = self.audit(&entry.clone().capped()) {
            metrics::counter!("steer_audit_write_errors_total").increment(1);
            error!(error = %e, action = %entry.action, "change saved but its audit entry could not be written");
        }
    }

    /// Records a break-glass step past the change rules (`what`: `reload`,
    /// `drain region eu-west (hard)`): counted, and shown on status for a
    /// day. The step itself is audited by its caller; a failed write here
    /// is logged, not returned.
    pub(crate) fn note_break_glass(&mut self, what: &str, principal: &str, reason: &str) {
        metrics::counter!("steer_change_emergencies_total").increment(1);
        let Ok(book) = self.changes.book() else {
            return;
        };
        let mut book = book.clone();
        book.note_break_glass(BreakGlass {
            at: self.clock.wall(),
            principal: principal.to_owned(),
            reason: reason.to_owned(),
            what: what.to_owned(),
        });
        if let Err(e) = self.save_changes(book) {
            error!(error = %e, what, "break-glass step applied but not recorded in the changes document");
        }
    }

    /// A drain or override put through review: a change request that
    /// applies it once approved (see `rollout::apply_intent_changes`).
    /// Returns its id.
    pub(crate) fn propose_intent(
        &mut self,
        spec: IntentSpec,
        principal: &str,
        reason: &str,
        effect: Vec<String>,
    ) -> Result<String, ApiError> {
        self.refuse_if_follower()?;
        let mut book = self.changes.book()?.clone();
        if book.open() >= MAX_OPEN {
            return Err(ApiError::FailedPrecondition(format!(
                "{MAX_OPEN} changes are open already: approve, reject or abort some first"
            )));
        }
        let approvals = self.changes.settings.as_ref().map_or(1, |s| s.approvals);
        let id = book.next_id();
        let what = spec.to_string();
        let change = Change::propose(
            Draft {
                id: id.clone(),
                author: principal.to_owned(),
                reason: reason.to_owned(),
                diff: vec![DiffItem {
                    kind: DiffKind::Added,
                    subject: what.clone(),
                    fields: Vec::new(),
                }],
                effect,
                required_approvals: approvals,
                intent: Some(spec),
                ..Draft::default()
            },
            self.clock.wall(),
        );
        book.add(change.clone());
        self.save_changes(book)?;
        let mut entry = self.entry(
            principal.to_owned(),
            "change-propose",
            format!("change {id}"),
            reason.to_owned(),
        );
        entry.detail = format!("{what}: put through review ([changes] reviewed_intents)");
        self.audit_change(&entry);
        info!(change = %id, what, state = change.state.name(), "intent proposed as a change");
        Ok(id)
    }

    /// Lifts the drain or override `applied` (its intent id) that a change
    /// made, if it is still in force.
    fn lift_intent(
        &mut self,
        spec: &IntentSpec,
        applied: Option<&str>,
        principal: &str,
        reason: &str,
    ) -> Result<(), ApiError> {
        let Some(applied) = applied else {
            return Ok(());
        };
        match spec {
            IntentSpec::Drain { scope, .. } => {
                if self.intents.drains.iter().any(|d| d.id == applied) {
                    self.undrain(scope.clone(), reason.to_owned(), principal.to_owned())?;
                }
            }
            IntentSpec::Override { pop, .. } => {
                if self.intents.overrides.iter().any(|o| o.id == applied) {
                    self.clear_override(pop.clone(), reason.to_owned(), principal.to_owned())?;
                }
            }
        }
        Ok(())
    }

    /// Applies an approved drain or override change (one per tick, oldest
    /// first) when no release window blocks it; the budget freeze does not
    /// hold them (a drain is often what stops the burn). One the loop
    /// cannot apply (its scope is gone, the capacity rail refuses it) is
    /// aborted with the reason. Returns whether the plan changed.
    pub(crate) fn apply_intent_changes(&mut self) -> bool {
        if self.standby {
            return false;
        }
        let Ok(book) = self.changes.book() else {
            return false;
        };
        // The book is in the order changes were proposed.
        let Some((id, spec, author, reason, emergency)) = book
            .changes
            .iter()
            .filter(|c| c.state == ChangeState::Approved)
            .find_map(|c| {
                let spec = c.intent.clone()?;
                Some((
                    c.id.clone(),
                    spec,
                    c.author.clone(),
                    c.reason.clone(),
                    c.emergency,
                ))
            })
        else {
            return false;
        };
        if !emergency {
            let windows = self
                .changes
                .settings
                .as_ref()
                .map_or(&[][..], |s| &s.windows);
            if let WindowVerdict::Blocked { why } = Window::verdict(windows, self.clock.now()) {
                self.note_waiting(&id, &why);
                return false;
            }
        }
        let why = format!("{reason} (change {id})");
        let applied = match spec {
            IntentSpec::Drain {
                scope,
                mode,
                ramp_ms,
                expires_in_ms,
                force,
            } => self
                .drain_with(
                    DrainCommand {
                        scope,
                        mode,
                        ramp: Duration::from_millis(ramp_ms),
                        expires_in: expires_in_ms.map(Duration::from_millis),
                        reason: why,
                        principal: author,
                        dry_run: false,
                        force,
                        emergency: false,
                    },
                    false,
                )
                .map(|o| (o.intent_id, o.plan_version)),
            IntentSpec::Override {
                pop,
                weight,
                expires_in_ms,
            } => self
                .set_override(
                    OverrideRequest {
                        pop,
                        weight,
                        expires_in: expires_in_ms.map(Duration::from_millis),
                        reason: why,
                        principal: author,
                        emergency: false,
                    },
                    false,
                )
                .map(|o| (o.intent_id, o.plan_version)),
        };
        match applied {
            Ok((intent, version)) => {
                let detail = format!("{intent} in force from plan v{version}");
                self.step_auto(
                    &id,
                    |c, at| c.apply_intent(&intent, &detail, at),
                    "apply",
                    &detail,
                );
                true
            }
            Err(e) => {
                let detail = format!("could not apply: {e}");
                warn!(change = %id, error = %e, "approved intent change not applied; aborted");
                self.step_auto(
                    &id,
                    |c, at| c.abort("steerd", &detail, at),
                    "abort",
                    &detail,
                );
                false
            }
        }
    }

    /// Open changes, one line each, for status.
    pub(crate) fn change_briefs(&self) -> Vec<ChangeBrief> {
        let Some(book) = &self.changes.book else {
            return Vec::new();
        };
        book.changes
            .iter()
            .filter(|c| c.state.is_open() || c.apply_error.is_some())
            .map(|c| ChangeBrief {
                id: c.id.clone(),
                state: c.state.name().to_owned(),
                stage: match c.state {
                    ChangeState::Rolling { stage, .. } | ChangeState::Paused { stage, .. } => c
                        .stages
                        .get(stage)
                        .map(|s| format!("{} ({})", s.name, s.describe())),
                    _ => None,
                },
                author: c.author.clone(),
                reason: c.reason.clone(),
                emergency: c.emergency,
                held: c
                    .apply_error
                    .as_ref()
                    .map(|e| format!("its config file did not apply: {e}"))
                    .or_else(|| c.held.clone()),
                created_at: c.created_at,
            })
            .collect()
    }

    /// Break-glass steps of the last day, newest first.
    pub(crate) fn break_glass_shown(&self) -> Vec<BreakGlass> {
        let Some(book) = &self.changes.book else {
            return Vec::new();
        };
        let since = self.clock.wall().unix_ms() - BREAK_GLASS_SHOWN_MS;
        book.break_glass
            .iter()
            .rev()
            .filter(|b| b.at.unix_ms() >= since)
            .cloned()
            .collect()
    }

    /// Publishes the change gauges for the book as loaded.
    pub(crate) fn export_change_metrics(&self) {
        if let Some(book) = &self.changes.book {
            export_metrics(book);
        }
    }
}

fn export_metrics(book: &ChangeBook) {
    let open = book
        .changes
        .iter()
        .filter(|c| !c.state.is_final() && c.state != ChangeState::Completed)
        .count();
    metrics::gauge!("steer_changes_open").set(open as f64);
    let stage = book.in_flight().map_or(-1.0, |c| match c.state {
        ChangeState::Rolling { stage, .. } | ChangeState::Paused { stage, .. } => stage as f64,
        _ => -1.0,
    });
    metrics::gauge!("steer_change_stage").set(stage);
    for c in &book.changes {
        for s in STATES {
            let v = if c.state.name() == s { 1.0 } else { 0.0 };
            metrics::gauge!("steer_change_state", "id" => c.id.clone(), "state" => s).set(v);
        }
    }
}

/// One line per answer set whose targets differ between the plan in force
/// and the proposed one: `app ap-south: sin1 60%, bom1 40% -> sin1 100%`.
fn moved_sets(current: &PlanBody, proposed: &PlanBody) -> Vec<String> {
    let key_sets = |b: &PlanBody| -> BTreeMap<(ServiceId, Option<RegionId>), String> {
        b.services
            .iter()
            .flat_map(|s| {
                s.regional
                    .iter()
                    .chain(std::iter::once(&s.global))
                    .map(move |set| ((s.id.clone(), set.region.clone()), shares(set)))
            })
            .collect()
    };
    let (before, after) = (key_sets(current), key_sets(proposed));
    let mut out = Vec::new();
    for (key, new) in &after {
        let old = before.get(key).map_or("(none)", String::as_str);
        if old != new {
            let region = key.1.as_ref().map_or("unmapped clients", |r| r.as_str());
            out.push(format!("{} {region}: {old} -> {new}", key.0));
        }
    }
    for key in before.keys().filter(|k| !after.contains_key(*k)) {
        let region = key.1.as_ref().map_or("unmapped clients", |r| r.as_str());
        out.push(format!("{} {region}: no longer answered", key.0));
    }
    out
}

fn shares(set: &AnswerSet) -> String {
    if set.targets.is_empty() {
        return "(no PoP)".into();
    }
    set.targets
        .iter()
        .map(|t| format!("{} {:.0}%", t.pop, f64::from(t.weight) / 10.0))
        .collect::<Vec<_>>()
        .join(", ")
}
