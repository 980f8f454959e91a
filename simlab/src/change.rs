//! A config change in a run (`config_change`). `at_once`: the proposed
//! config is reloaded, as a plain reload applies a file, everywhere in one
//! step. `staged`: it goes through the real change flow: proposed by one
//! principal, approved by another, rolled out by the control loop through
//! the world config's `[changes]` stages, each judged on the world's SLOs;
//! a failing stage is rolled back by the loop itself, and a completed
//! change's config is applied as steerd's reloader applies it. simlab
//! only plays the people and the reloader; the loop decides.
//!
//! The world's truth stays the world config's: PoPs have the capacity it
//! says, whatever the config in force believes.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::{anyhow, bail};
use serde::Serialize;
use steer_change::{Change, ChangeState, DiffItem, DiffKind, RegionScope, config_digest};
use steer_command::{
    ApiCommand, ChangeAction, ChangeCommand, ConfigApply, Proposal, Reply, SloReload,
};
use steer_config::SteerConfig;
use steer_control::ControlLoop;
use tokio::sync::{mpsc, oneshot};

use crate::{engine::EPOCH_MS, scenario::Scenario};

/// The people simlab plays (the loop audits their steps under these names).
const AUTHOR: &str = "sim-author";
const REVIEWER: &str = "sim-reviewer";
const OPERATOR: &str = "sim-operator";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rollout {
    /// A plain reload: everywhere at once.
    AtOnce,
    /// A change request, rolled out stage by stage.
    Staged,
}

impl Rollout {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "at_once" => Some(Self::AtOnce),
            "staged" => Some(Self::Staged),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::AtOnce => "at_once",
            Self::Staged => "staged",
        }
    }
}

/// The config the scenario's `config_change` proposes, validated as steerd
/// validates a file, and checked to describe the same world: simlab's
/// PoPs, regions, zones and client networks are the world config's.
pub(crate) fn load_proposed(
    scenario: &Scenario,
    world: &SteerConfig,
) -> anyhow::Result<Option<SteerConfig>> {
    let Some(fault) = scenario.faults.iter().find(|f| f.kind == "config_change") else {
        return Ok(None);
    };
    let what = format!("config_change at {}s", fault.at_s);
    let Some(path) = &fault.config else {
        bail!("{what} needs config");
    };
    let next = steer_config::load_steerd(path).map_err(|e| anyhow!("{what}: {e}"))?;
    if next.source_text == world.source_text {
        bail!(
            "{what}: {} is the world config: there is nothing to change",
            path.display()
        );
    }
    let shape = |c: &SteerConfig| {
        let regions: Vec<String> = c
            .topology
            .regions
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        let pops: Vec<(String, String)> = c
            .topology
            .pops
            .iter()
            .map(|p| (p.id.to_string(), p.region.to_string()))
            .collect();
        (regions, pops)
    };
    if shape(&next) != shape(world) {
        bail!(
            "{what}: {} must keep the world config's regions and PoPs (the same ids, in the same order): \
             simlab's world is made from {}; change their settings, not the set",
            path.display(),
            world.source.display()
        );
    }
    if next.zones != world.zones || next.topology.client_networks != world.topology.client_networks
    {
        bail!(
            "{what}: {} must keep the world config's zones and client networks: simlab's edges serve {}'s",
            path.display(),
            world.source.display()
        );
    }
    Ok(Some(next))
}

/// Where the run's change stands on simlab's side (the change itself is
/// the control loop's).
enum Phase {
    /// Before `at_s`.
    Waiting,
    /// at_once: reloaded at `since_ms`, everywhere.
    Reloaded { since_ms: u64 },
    /// staged: change `id` is in the control loop's hands; `everywhere_ms`
    /// once it completed.
    Governed {
        id: String,
        everywhere_ms: Option<u64>,
    },
    /// The old config is back everywhere (or the change never started).
    Over,
}

/// What happened to the change, for the report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ChangeResult {
    pub(crate) rollout: &'static str,
    pub(crate) at_s: u64,
    /// The change request's id (staged).
    pub(crate) change: Option<String>,
    /// The change's state at the end (`rolled-back`, `completed`, ...); at
    /// once: `reverted` or `in force`.
    pub(crate) state: String,
    /// Who rolled it back (`steerd`: its judgement of a stage).
    pub(crate) rolled_back_by: Option<String>,
    /// The stage in force when it was rolled back.
    pub(crate) rolled_back_at_stage: Option<String>,
    /// Why it was rolled back, or why it waits.
    pub(crate) why: Option<String>,
    /// Seconds the proposed config was in force anywhere, and per scope
    /// (`every region`, `ap-south`).
    pub(crate) in_force_s: f64,
    pub(crate) in_force_by_scope: Vec<(String, f64)>,
    /// From `at_s` until the proposed config was in force nowhere again;
    /// `None` if it still was at the end.
    pub(crate) stopped_after_s: Option<f64>,
    /// The change's history and the reloads, in order: `t=121s steerd:
    /// stage started: canary: ap-south`.
    pub(crate) timeline: Vec<String>,
}

/// Plays the people and the reloader around the control loop for the
/// scenario's `config_change`, and keeps account of where the proposed
/// config is in force.
pub(crate) struct Driver<'a> {
    scenario: &'a Scenario,
    world: &'a SteerConfig,
    proposed: &'a SteerConfig,
    rollout: Rollout,
    at_ms: u64,
    revert_after_ms: Option<u64>,
    /// Configs the loop asks the reloader to make the ones in force.
    applies: mpsc::Receiver<ConfigApply>,
    phase: Phase,
    /// Where the proposed config is in force after this step.
    in_force: Option<RegionScope>,
    /// The change as last read from the loop.
    change: Option<Change>,
    /// The last stage seen in force.
    stage: Option<String>,
    first_ms: Option<u64>,
    stopped_ms: Option<u64>,
    by_scope: BTreeMap<String, u64>,
    reverted: bool,
    /// simlab's own steps (reloads), with their time.
    log: Vec<(u64, String)>,
}

impl<'a> Driver<'a> {
    /// Wires the loop as steerd does for a config with `[changes]` (the
    /// governance in force, the reloader's channel), if the scenario has a
    /// `config_change`.
    pub(crate) fn attach(
        scenario: &'a Scenario,
        world: &'a SteerConfig,
        proposed: Option<&'a SteerConfig>,
        c: &mut ControlLoop,
    ) -> anyhow::Result<Option<Self>> {
        let Some(fault) = scenario.faults.iter().find(|f| f.kind == "config_change") else {
            return Ok(None);
        };
        let what = format!("config_change at {}s", fault.at_s);
        let Some(proposed) = proposed else {
            bail!("{what}: its config was not loaded");
        };
        let rollout = fault
            .rollout
            .as_deref()
            .and_then(Rollout::parse)
            .ok_or_else(|| anyhow!("{what} needs rollout = \"at_once\" or \"staged\""))?;
        if rollout == Rollout::Staged && world.changes.is_none() {
            bail!(
                "{what}: a staged rollout is a change request, which needs a [changes] table in the world config {}",
                world.source.display()
            );
        }
        c.configure_changes(world.changes.clone(), config_digest(&world.source_text));
        let (tx, applies) = mpsc::channel(4);
        c.apply_configs_with(tx);
        Ok(Some(Self {
            scenario,
            world,
            proposed,
            rollout,
            at_ms: fault.at_s * 1000,
            revert_after_ms: fault.revert_after_s.map(|s| s * 1000),
            applies,
            phase: Phase::Waiting,
            in_force: None,
            change: None,
            stage: None,
            first_ms: None,
            stopped_ms: None,
            by_scope: BTreeMap::new(),
            reverted: false,
            log: Vec::new(),
        }))
    }

    /// After the loop's tick: applies what it asks to, takes this step's
    /// actions (propose and approve, reload, revert) and reads where the
    /// change stands.
    pub(crate) fn step(&mut self, c: &mut ControlLoop, t_ms: u64) -> anyhow::Result<()> {
        self.apply_requested(c, t_ms)?;
        self.phase = match std::mem::replace(&mut self.phase, Phase::Over) {
            Phase::Waiting if t_ms >= self.at_ms => self.begin(c, t_ms)?,
            Phase::Reloaded { since_ms } if self.revert_due(since_ms, t_ms) => {
                let world = self.world;
                self.reload(c, world, OPERATOR, "revert: the old config back")?;
                self.log
                    .push((t_ms, format!("{OPERATOR}: reloaded the old config")));
                self.reverted = true;
                Phase::Over
            }
            Phase::Governed { id, everywhere_ms } => self.follow(c, id, everywhere_ms, t_ms)?,
            other => other,
        };
        // A rollback after completion asks for the old file at once.
        self.apply_requested(c, t_ms)?;
        self.in_force = match &self.phase {
            Phase::Reloaded { .. } => Some(RegionScope::All),
            Phase::Governed { .. } => self.change.as_ref().and_then(scope_in_force),
            Phase::Waiting | Phase::Over => None,
        };
        Ok(())
    }

    /// Where the proposed config is in force this step.
    pub(crate) fn in_force(&self) -> Option<String> {
        self.in_force.as_ref().map(RegionScope::describe)
    }

    /// Counts this step (`step_ms` from `t_ms`) toward the scope in force.
    pub(crate) fn account(&mut self, t_ms: u64, step_ms: u64) {
        match &self.in_force {
            Some(scope) => {
                self.first_ms.get_or_insert(t_ms);
                self.stopped_ms = None;
                *self.by_scope.entry(scope.describe()).or_default() += step_ms;
            }
            None => {
                if self.first_ms.is_some() && self.stopped_ms.is_none() {
                    self.stopped_ms = Some(t_ms);
                }
            }
        }
    }

    pub(crate) fn finish(self) -> ChangeResult {
        let secs = |ms: u64| ms as f64 / 1000.0;
        let change = self.change.as_ref();
        let rollback =
            change.and_then(|c| c.history.iter().rev().find(|e| e.action == "rolled back"));
        let state = match (self.rollout, change) {
            (Rollout::Staged, Some(c)) => c.state.name().to_owned(),
            (Rollout::Staged, None) | (Rollout::AtOnce, _) if self.first_ms.is_none() => {
                "not made".to_owned()
            }
            _ if self.reverted => "reverted".to_owned(),
            _ => "in force".to_owned(),
        };
        let at_ms = |t: steer_types::Timestamp| u64::try_from(t.0 - EPOCH_MS).unwrap_or(0);
        let mut timeline: Vec<(u64, String)> = change
            .map(|c| {
                c.history
                    .iter()
                    .map(|e| {
                        let detail = if e.detail.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", e.detail)
                        };
                        (at_ms(e.at), format!("{} {}{detail}", e.principal, e.action))
                    })
                    .collect()
            })
            .unwrap_or_default();
        timeline.extend(self.log);
        timeline.sort_by_key(|(t, _)| *t);
        ChangeResult {
            rollout: self.rollout.name(),
            at_s: self.at_ms / 1000,
            change: change.map(|c| c.id.clone()),
            state,
            rolled_back_by: rollback.map(|e| e.principal.clone()),
            // A completed change is rolled back from no stage.
            rolled_back_at_stage: rollback
                .filter(|_| {
                    !change.is_some_and(|c| c.history.iter().any(|e| e.action == "completed"))
                })
                .and(self.stage),
            why: rollback
                .map(|e| e.detail.clone())
                .or_else(|| change.and_then(|c| c.held.clone())),
            in_force_s: secs(self.by_scope.values().sum()),
            in_force_by_scope: self
                .by_scope
                .iter()
                .map(|(scope, ms)| (scope.clone(), secs(*ms)))
                .collect(),
            stopped_after_s: self.stopped_ms.map(|t| secs(t.saturating_sub(self.at_ms))),
            timeline: timeline
                .into_iter()
                .map(|(t, line)| format!("t={}s {line}", t / 1000))
                .collect(),
        }
    }

    /// steerd's reloader: each config the loop asks for is applied as a
    /// reload of that file.
    fn apply_requested(&mut self, c: &mut ControlLoop, t_ms: u64) -> anyhow::Result<()> {
        while let Ok(apply) = self.applies.try_recv() {
            let next = steer_config::parse_steerd(&self.world.source, &apply.config)
                .map_err(|e| anyhow!("the config of change {} does not load: {e}", apply.change))?;
            let principal = format!("change:{}", apply.change);
            self.reload(c, &next, &principal, &apply.reason)?;
            self.log
                .push((t_ms, format!("reloader applied: {}", apply.reason)));
        }
        Ok(())
    }

    fn begin(&mut self, c: &mut ControlLoop, t_ms: u64) -> anyhow::Result<Phase> {
        let what = format!("config_change at {}s", self.at_ms / 1000);
        match self.rollout {
            Rollout::AtOnce => {
                let proposed = self.proposed;
                self.reload(c, proposed, OPERATOR, &format!("{what}, at once"))?;
                self.log.push((
                    t_ms,
                    format!("{OPERATOR}: reloaded the proposed config (at once)"),
                ));
                Ok(Phase::Reloaded { since_ms: t_ms })
            }
            Rollout::Staged => {
                let proposal = self.proposal(&what);
                let change = ask(c, |reply| {
                    ApiCommand::Change(ChangeCommand::Propose { proposal, reply })
                })
                .map_err(|e| anyhow!("{what}: the control loop refused the proposal: {e}"))?;
                let change = ask(c, |reply| {
                    ApiCommand::Change(ChangeCommand::Act {
                        id: change.id.clone(),
                        action: ChangeAction::Approve,
                        principal: REVIEWER.into(),
                        reason: "reviewed in simlab".into(),
                        reply,
                    })
                })
                .map_err(|e| anyhow!("{what}: the approval was refused: {e}"))?;
                let id = change.id.clone();
                self.change = Some(change);
                Ok(Phase::Governed {
                    id,
                    everywhere_ms: None,
                })
            }
        }
    }

    /// Reads the change from the loop; an operator rolls back a completed
    /// change when `revert_after_s` says so.
    fn follow(
        &mut self,
        c: &mut ControlLoop,
        id: String,
        everywhere_ms: Option<u64>,
        t_ms: u64,
    ) -> anyhow::Result<Phase> {
        let get = |c: &mut ControlLoop, id: &str| {
            ask(c, |reply| {
                ApiCommand::Change(ChangeCommand::Get {
                    id: id.to_owned(),
                    reply,
                })
            })
            .map_err(|e| anyhow!("change {id}: {e}"))
        };
        let mut change = get(c, &id)?;
        if let ChangeState::Rolling { stage, .. } | ChangeState::Paused { stage, .. } = change.state
        {
            self.stage = change.stages.get(stage).map(|s| s.name.clone());
        }
        let phase = match change.state {
            ChangeState::Completed => {
                let since = everywhere_ms.unwrap_or(t_ms);
                if self.revert_due(since, t_ms) {
                    change = ask(c, |reply| {
                        ApiCommand::Change(ChangeCommand::Act {
                            id: id.clone(),
                            action: ChangeAction::Rollback,
                            principal: OPERATOR.into(),
                            reason: "revert: the old config back".into(),
                            reply,
                        })
                    })
                    .map_err(|e| anyhow!("change {id}: the rollback was refused: {e}"))?;
                    self.reverted = true;
                    Phase::Over
                } else {
                    Phase::Governed {
                        id,
                        everywhere_ms: Some(since),
                    }
                }
            }
            ref s if s.is_final() => Phase::Over,
            _ => Phase::Governed { id, everywhere_ms },
        };
        self.change = Some(change);
        Ok(phase)
    }

    fn revert_due(&self, since_ms: u64, t_ms: u64) -> bool {
        self.revert_after_ms
            .is_some_and(|after| t_ms >= since_ms.saturating_add(after))
    }

    /// The proposal as steerd's reloader makes it from a proposed file:
    /// validated (at load), described against the config in force.
    fn proposal(&self, reason: &str) -> Proposal {
        let mut topology = self.proposed.topology.clone();
        self.scenario.world.shape(&mut topology);
        Proposal {
            config: self.proposed.source_text.clone(),
            topology: Arc::new(topology),
            settings: self.world.changes.clone().unwrap_or_default(),
            base_config: self.world.source_text.clone(),
            base_digest: config_digest(&self.world.source_text),
            diff: describe(self.world, self.proposed),
            reason: reason.to_owned(),
            principal: AUTHOR.into(),
            emergency: false,
        }
    }

    /// A reload of `config`, as steerd's reloader sends it to the loop
    /// (the world's knobs applied, as to the world config).
    fn reload(
        &self,
        c: &mut ControlLoop,
        config: &SteerConfig,
        principal: &str,
        reason: &str,
    ) -> anyhow::Result<()> {
        let world = &self.scenario.world;
        let mut topology = config.topology.clone();
        world.shape(&mut topology);
        let slos = SloReload {
            specs: crate::sli::slo_specs(world, &config.slos),
            evaluate_every: Duration::from_secs(world.slo_evaluate_s),
            resend_every: Duration::from_secs(60),
        };
        ask(c, |reply| ApiCommand::Reload {
            topology: Arc::new(topology),
            slos: Some(slos),
            changes: config.changes.clone(),
            config_digest: config_digest(&config.source_text),
            principal: principal.to_owned(),
            reason: reason.to_owned(),
            emergency: false,
            reply,
        })
        .map(|_| ())
        .map_err(|e| anyhow!("the control loop refused the reload by {principal}: {e}"))
    }
}

/// Sends `cmd` as the API does and takes the loop's answer, which it
/// gives before `step_command` returns.
fn ask<T>(c: &mut ControlLoop, cmd: impl FnOnce(Reply<T>) -> ApiCommand) -> Result<T, String> {
    let (reply, mut rx) = oneshot::channel();
    c.step_command(cmd(reply));
    match rx.try_recv() {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the control loop did not answer".into()),
    }
}

/// Where a change's config is in force: the stage's regions while it
/// rolls out (or is paused), everywhere once completed.
fn scope_in_force(change: &Change) -> Option<RegionScope> {
    match change.state {
        ChangeState::Rolling { stage, .. } | ChangeState::Paused { stage, .. } => Some(
            change
                .stages
                .get(stage)
                .map_or(RegionScope::All, |s| s.regions.clone()),
        ),
        ChangeState::Completed => Some(RegionScope::All),
        _ => None,
    }
}

/// What a proposal changes, as steerd's reloader describes it.
fn describe(base: &SteerConfig, next: &SteerConfig) -> Vec<DiffItem> {
    let mut diff = steer_change::diff_topology(&base.topology, &next.topology);
    diff.extend(steer_change::diff_serialized(
        "zones",
        &base.zones,
        &next.zones,
    ));
    diff.extend(steer_change::diff_serialized("dns", &base.dns, &next.dns));
    if base.slos != next.slos {
        diff.push(DiffItem {
            kind: DiffKind::Changed,
            subject: "slos".into(),
            fields: vec![format!("{} SLO(s) -> {}", base.slos.len(), next.slos.len())],
        });
    }
    if base.changes != next.changes {
        diff.push(DiffItem {
            kind: DiffKind::Changed,
            subject: "changes (governance)".into(),
            fields: vec!["[changes] differs".into()],
        });
    }
    diff
}
