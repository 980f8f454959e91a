//! A change request and the steps it may take. Every step is a method that
//! either moves the change and records who did it, when and why, or says
//! why it may not (and changes nothing), so the history reads as one story.

use serde::{Deserialize, Serialize};
use steer_types::Timestamp;

use crate::diff::DiffItem;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ChangeState {
    /// Waiting for approvals.
    Proposed,
    /// Approved; waits for its release window and for the live config to
    /// be the one it was proposed against.
    Approved,
    /// Stage `stage` (index into the stages) in force since `since`.
    Rolling {
        stage: usize,
        since: Timestamp,
    },
    /// Held at `stage` by an operator or an Inconclusive judgement.
    Paused {
        stage: usize,
        since: Timestamp,
    },
    /// Every stage passed: the new config is in force everywhere.
    Completed,
    Rejected,
    /// Stopped before completion; the old config is in force.
    Aborted,
    /// Taken back (by a failed judgement or an operator); the old config
    /// is in force.
    RolledBack,
}

impl ChangeState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Proposed => "proposed",
            Self::Approved => "approved",
            Self::Rolling { .. } => "rolling",
            Self::Paused { .. } => "paused",
            Self::Completed => "completed",
            Self::Rejected => "rejected",
            Self::Aborted => "aborted",
            Self::RolledBack => "rolled-back",
        }
    }

    /// Whether nothing more can happen to it (a completed change can
    /// still be rolled back).
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Rejected | Self::Aborted | Self::RolledBack)
    }

    /// Whether it still waits for a step (proposed, approved, rolling,
    /// paused): not finished and not completed.
    pub fn is_open(&self) -> bool {
        !self.is_final() && *self != Self::Completed
    }

    /// Whether it is being rolled out (some scope serves its config).
    pub fn in_flight(&self) -> bool {
        matches!(self, Self::Rolling { .. } | Self::Paused { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub principal: String,
    pub at: Timestamp,
}

/// One step in a change's story.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub at: Timestamp,
    pub principal: String,
    /// `proposed`, `approved`, `rejected`, `stage started`, ...
    pub action: String,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub id: String,
    pub author: String,
    pub reason: String,
    pub created_at: Timestamp,
    /// The proposed config file, as submitted (emptied once the change
    /// is finished, see `ChangeBook::add`).
    pub config: String,
    /// The config file in force when it was proposed: what a rollback of
    /// the change puts back.
    #[serde(default)]
    pub base_config: String,
    /// Digest of the live config file it was proposed against: a change
    /// made against another config is not applied over this one.
    pub base_digest: String,
    pub diff: Vec<DiffItem>,
    /// The projected effect, one line each (answer sets that move, PoPs
    /// pushed past their target, rails that would fire).
    pub effect: Vec<String>,
    pub required_approvals: u32,
    pub approvals: Vec<Approval>,
    pub state: ChangeState,
    /// Proposed with `--emergency` (admin, reason required): skips
    /// approvals and windows; flagged in audit, status and metrics.
    pub emergency: bool,
    pub history: Vec<ChangeEvent>,
    /// The stages it rolls out in: those in force when it was proposed, so
    /// a reload during a rollout does not reshape it.
    #[serde(default)]
    pub stages: Vec<crate::StageSpec>,
    /// The topology in force when it was proposed: it starts only over
    /// that one (a config changed meanwhile makes it stale).
    #[serde(default)]
    pub base_topology: Option<steer_types::Topology>,
    /// The proposed config's topology, which stages compute from.
    #[serde(default)]
    pub new_topology: Option<steer_types::Topology>,
    /// Why it does not move on now (a release window, a spent error
    /// budget), while that holds.
    #[serde(default)]
    pub held: Option<String>,
    /// A drain or override put through review (`[changes]
    /// reviewed_intents`) instead of a config file.
    #[serde(default)]
    pub intent: Option<crate::IntentSpec>,
    /// The intent it applied (`drain-7`), once completed.
    #[serde(default)]
    pub applied_intent: Option<String>,
    /// Why its config file (completed) or base file (rolled back after
    /// completing) did not apply, until one does: the steering is in
    /// force, zones and DNS settings are not.
    #[serde(default)]
    pub apply_error: Option<String>,
}

/// What a new change is made of (see [`Change`] for each field).
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub id: String,
    pub author: String,
    pub reason: String,
    pub config: String,
    pub base_config: String,
    pub base_digest: String,
    pub diff: Vec<DiffItem>,
    pub effect: Vec<String>,
    pub required_approvals: u32,
    pub emergency: bool,
    pub stages: Vec<crate::StageSpec>,
    pub base_topology: Option<steer_types::Topology>,
    pub new_topology: Option<steer_types::Topology>,
    pub intent: Option<crate::IntentSpec>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("change {id} is {state}: cannot {action}")]
    WrongState {
        id: String,
        state: &'static str,
        action: &'static str,
    },
    #[error("{principal} proposed change {id} and cannot approve it; another operator must")]
    SelfApproval { id: String, principal: String },
    #[error("{principal} has already approved change {id}")]
    AlreadyApproved { id: String, principal: String },
}

impl Change {
    /// A new change, approved at once when it needs no approvals (or is
    /// an emergency).
    pub fn propose(draft: Draft, at: Timestamp) -> Self {
        let Draft {
            id,
            author,
            reason,
            config,
            base_config,
            base_digest,
            diff,
            effect,
            required_approvals,
            emergency,
            stages,
            base_topology,
            new_topology,
            intent,
        } = draft;
        let mut change = Self {
            id,
            author: author.clone(),
            reason: reason.clone(),
            created_at: at,
            config,
            base_config,
            base_digest,
            diff,
            effect,
            required_approvals,
            approvals: Vec::new(),
            state: ChangeState::Proposed,
            emergency,
            history: Vec::new(),
            stages,
            base_topology,
            new_topology,
            held: None,
            intent,
            applied_intent: None,
            apply_error: None,
        };
        let what = if emergency {
            "proposed (emergency)"
        } else {
            "proposed"
        };
        change.event(at, &author, what, &reason);
        if emergency || required_approvals == 0 {
            change.state = ChangeState::Approved;
            let why = if emergency {
                "emergency: no approval needed"
            } else {
                "no approvals required"
            };
            change.event(at, &author, "approved", why);
        }
        change
    }

    fn event(&mut self, at: Timestamp, principal: &str, action: &str, detail: &str) {
        self.history.push(ChangeEvent {
            at,
            principal: principal.to_owned(),
            action: action.to_owned(),
            detail: detail.to_owned(),
        });
    }

    fn wrong(&self, action: &'static str) -> ChangeError {
        ChangeError::WrongState {
            id: self.id.clone(),
            state: self.state.name(),
            action,
        }
    }

    /// Records `principal`'s approval; the change is approved once it has
    /// as many as it needs. Returns whether that happened now.
    pub fn approve(
        &mut self,
        principal: &str,
        comment: &str,
        at: Timestamp,
    ) -> Result<bool, ChangeError> {
        if self.state != ChangeState::Proposed {
            return Err(self.wrong("approve"));
        }
        if principal == self.author {
            return Err(ChangeError::SelfApproval {
                id: self.id.clone(),
                principal: principal.to_owned(),
            });
        }
        if self.approvals.iter().any(|a| a.principal == principal) {
            return Err(ChangeError::AlreadyApproved {
                id: self.id.clone(),
                principal: principal.to_owned(),
            });
        }
        self.approvals.push(Approval {
            principal: principal.to_owned(),
            at,
        });
        let count = self.approvals.len();
        let detail = format!(
            "{count} of {} approvals{}",
            self.required_approvals,
            if comment.is_empty() {
                String::new()
            } else {
                format!(": {comment}")
            }
        );
        self.event(at, principal, "approved", &detail);
        let done = count >= self.required_approvals as usize;
        if done {
            self.state = ChangeState::Approved;
        }
        Ok(done)
    }

    pub fn reject(
        &mut self,
        principal: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<(), ChangeError> {
        if !matches!(self.state, ChangeState::Proposed | ChangeState::Approved) {
            return Err(self.wrong("reject"));
        }
        self.state = ChangeState::Rejected;
        self.event(at, principal, "rejected", reason);
        Ok(())
    }

    /// Stops a change that has not completed; the old config stays (or
    /// goes back) in force everywhere.
    pub fn abort(
        &mut self,
        principal: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<(), ChangeError> {
        if self.state.is_final() || self.state == ChangeState::Completed {
            return Err(self.wrong("abort"));
        }
        self.state = ChangeState::Aborted;
        self.event(at, principal, "aborted", reason);
        Ok(())
    }

    /// Starts stage 0 of an approved change.
    pub fn start(
        &mut self,
        principal: &str,
        detail: &str,
        at: Timestamp,
    ) -> Result<(), ChangeError> {
        if self.state != ChangeState::Approved {
            return Err(self.wrong("start"));
        }
        self.state = ChangeState::Rolling {
            stage: 0,
            since: at,
        };
        self.event(at, principal, "stage started", detail);
        Ok(())
    }

    /// Moves on from the current stage: to the next one, or to Completed
    /// after the last of `stages`.
    pub fn promote(
        &mut self,
        stages: usize,
        principal: &str,
        detail: &str,
        at: Timestamp,
    ) -> Result<(), ChangeError> {
        let stage = match self.state {
            ChangeState::Rolling { stage, .. } | ChangeState::Paused { stage, .. } => stage,
            _ => return Err(self.wrong("promote")),
        };
        if stage + 1 >= stages {
            self.state = ChangeState::Completed;
            self.event(at, principal, "completed", detail);
        } else {
            self.state = ChangeState::Rolling {
                stage: stage + 1,
                since: at,
            };
            self.event(at, principal, "stage started", detail);
        }
        Ok(())
    }

    pub fn pause(
        &mut self,
        principal: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<(), ChangeError> {
        let ChangeState::Rolling { stage, .. } = self.state else {
            return Err(self.wrong("pause"));
        };
        self.state = ChangeState::Paused { stage, since: at };
        self.event(at, principal, "paused", reason);
        Ok(())
    }

    /// Resumes a paused stage; its bake starts again.
    pub fn resume(
        &mut self,
        principal: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<(), ChangeError> {
        let ChangeState::Paused { stage, .. } = self.state else {
            return Err(self.wrong("resume"));
        };
        self.state = ChangeState::Rolling { stage, since: at };
        self.event(at, principal, "resumed", reason);
        Ok(())
    }

    /// Starts the bake of the stage in force again (steerd restarted: the
    /// evidence gathered before may be incomplete). Never moves ahead.
    pub fn rebake(
        &mut self,
        principal: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<(), ChangeError> {
        let ChangeState::Rolling { stage, .. } = self.state else {
            return Err(self.wrong("re-bake"));
        };
        self.state = ChangeState::Rolling { stage, since: at };
        self.event(at, principal, "stage resumed", reason);
        Ok(())
    }

    /// Takes the change back everywhere: while rolling, paused, or after
    /// it completed.
    /// An approved intent change applied: it is complete at once (an
    /// intent has no stages), recording the intent it made.
    pub fn apply_intent(
        &mut self,
        intent_id: &str,
        detail: &str,
        at: Timestamp,
    ) -> Result<(), ChangeError> {
        if self.state != ChangeState::Approved || self.intent.is_none() {
            return Err(self.wrong("apply"));
        }
        self.state = ChangeState::Completed;
        self.applied_intent = Some(intent_id.to_owned());
        self.event(at, "steerd", "applied", detail);
        Ok(())
    }

    /// What came of applying its config file (after it completed, or its
    /// base file after a rollback): recorded in its story either way.
    pub fn note_apply(&mut self, result: Result<u64, String>, at: Timestamp) {
        match result {
            Ok(version) => {
                self.apply_error = None;
                let detail = format!("config file in force (plan v{version})");
                self.event(at, "steerd", "config applied", &detail);
            }
            Err(why) => {
                let detail = format!(
                    "{why}; the steering is in force, zones and DNS settings are not: \
                     fix the file and propose it, or roll back"
                );
                self.event(at, "steerd", "config not applied", &detail);
                self.apply_error = Some(why);
            }
        }
    }

    pub fn roll_back(
        &mut self,
        principal: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<(), ChangeError> {
        if !(self.state.in_flight() || self.state == ChangeState::Completed) {
            return Err(self.wrong("roll back"));
        }
        self.state = ChangeState::RolledBack;
        self.event(at, principal, "rolled back", reason);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn change(approvals: u32) -> Change {
        Change::propose(
            Draft {
                id: "c1".into(),
                author: "alice".into(),
                reason: "raise fra1 capacity".into(),
                required_approvals: approvals,
                ..Draft::default()
            },
            Timestamp(1),
        )
    }

    #[test]
    fn an_author_cannot_approve_their_own_change() {
        let mut c = change(1);
        assert!(matches!(
            c.approve("alice", "", Timestamp(2)),
            Err(ChangeError::SelfApproval { .. })
        ));
        assert_eq!(c.state, ChangeState::Proposed);
        assert!(c.approve("bob", "looks right", Timestamp(3)).unwrap());
        assert_eq!(c.state, ChangeState::Approved);
        assert!(matches!(
            c.approve("carol", "", Timestamp(4)),
            Err(ChangeError::WrongState { .. })
        ));
    }

    #[test]
    fn two_approvals_need_two_people() {
        let mut c = change(2);
        assert!(!c.approve("bob", "", Timestamp(2)).unwrap());
        assert!(matches!(
            c.approve("bob", "", Timestamp(3)),
            Err(ChangeError::AlreadyApproved { .. })
        ));
        assert!(c.approve("carol", "", Timestamp(4)).unwrap());
        assert_eq!(c.state, ChangeState::Approved);
        let actions: Vec<&str> = c.history.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["proposed", "approved", "approved"]);
    }

    #[test]
    fn stages_run_in_order_and_a_completed_change_can_still_be_rolled_back() {
        let mut c = change(0);
        assert_eq!(c.state, ChangeState::Approved);
        c.start("steerd", "canary", Timestamp(10)).unwrap();
        c.pause("bob", "looking", Timestamp(11)).unwrap();
        assert!(c.pause("bob", "again", Timestamp(12)).is_err());
        c.resume("bob", "fine", Timestamp(13)).unwrap();
        assert_eq!(
            c.state,
            ChangeState::Rolling {
                stage: 0,
                since: Timestamp(13)
            }
        );
        c.promote(2, "steerd", "pass", Timestamp(20)).unwrap();
        assert_eq!(
            c.state,
            ChangeState::Rolling {
                stage: 1,
                since: Timestamp(20)
            }
        );
        c.promote(2, "steerd", "pass", Timestamp(30)).unwrap();
        assert_eq!(c.state, ChangeState::Completed);
        assert!(c.abort("bob", "too late", Timestamp(31)).is_err());
        c.roll_back("bob", "error rate up", Timestamp(40)).unwrap();
        assert_eq!(c.state, ChangeState::RolledBack);
        assert!(c.roll_back("bob", "twice", Timestamp(41)).is_err());
    }

    #[test]
    fn an_intent_change_applies_once_approved_and_can_be_rolled_back() {
        let mut c = Change::propose(
            Draft {
                id: "c2".into(),
                author: "alice".into(),
                reason: "eu-west maintenance".into(),
                required_approvals: 1,
                intent: Some(crate::IntentSpec::Override {
                    pop: "fra1".into(),
                    weight: 100,
                    expires_in_ms: None,
                }),
                ..Draft::default()
            },
            Timestamp(1),
        );
        assert!(
            c.apply_intent("override-3", "applied", Timestamp(2))
                .is_err()
        );
        c.approve("bob", "", Timestamp(3)).unwrap();
        c.apply_intent("override-3", "override-3, plan v9", Timestamp(4))
            .unwrap();
        assert_eq!(c.state, ChangeState::Completed);
        assert_eq!(c.applied_intent.as_deref(), Some("override-3"));
        assert!(c.apply_intent("override-4", "again", Timestamp(5)).is_err());
        c.roll_back("bob", "done", Timestamp(6)).unwrap();
        // Applying a config file is part of the story, failed or not.
        c.note_apply(Err("zone file gone".into()), Timestamp(7));
        assert_eq!(c.apply_error.as_deref(), Some("zone file gone"));
        c.note_apply(Ok(12), Timestamp(8));
        assert_eq!(c.apply_error, None);
        let last: Vec<&str> = c
            .history
            .iter()
            .rev()
            .take(2)
            .map(|e| e.action.as_str())
            .collect();
        assert_eq!(last, ["config applied", "config not applied"]);
        // A config change has no intent to apply.
        let mut cfg = change(0);
        assert!(cfg.apply_intent("x", "", Timestamp(2)).is_err());
    }

    #[test]
    fn emergencies_need_no_approval_and_say_so() {
        let c = Change::propose(
            Draft {
                id: "c2".into(),
                author: "root".into(),
                reason: "stop the bleeding".into(),
                required_approvals: 2,
                emergency: true,
                ..Draft::default()
            },
            Timestamp(1),
        );
        assert_eq!(c.state, ChangeState::Approved);
        assert_eq!(c.history[0].action, "proposed (emergency)");
    }

    #[test]
    fn rejected_and_aborted_changes_stay_so() {
        let mut c = change(1);
        c.reject("bob", "wrong region", Timestamp(2)).unwrap();
        assert!(c.approve("carol", "", Timestamp(3)).is_err());
        assert!(c.start("steerd", "", Timestamp(3)).is_err());
        let mut c = change(0);
        c.abort("alice", "not needed", Timestamp(2)).unwrap();
        assert!(c.start("steerd", "", Timestamp(3)).is_err());
        assert!(c.state.is_final());
    }
}
