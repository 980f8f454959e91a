//! The loop's command handler: each operator command to the step that
//! carries it out, and config reloads.

use std::sync::Arc;

use steer_command::{ApiCommand, ApiError};
use steer_store::StateIdentity;
use steer_types::{Topology, audit::AuditEntry};

use crate::{ControlLoop, intents, record::Recorded, retain_known};

impl ControlLoop {
    pub(crate) fn handle(&mut self, cmd: ApiCommand) {
        match cmd {
            ApiCommand::Drain { cmd, reply } => {
                let _ = reply.send(self.drain(cmd));
            }
            ApiCommand::Undrain {
                scope,
                reason,
                principal,
                reply,
            } => {
                let _ = reply.send(self.undrain(scope, reason, principal));
            }
            ApiCommand::ListIntents { reply } => {
                let _ = reply.send(self.intents.clone());
            }
            ApiCommand::SetOverride {
                pop,
                weight,
                expires_in,
                reason,
                principal,
                emergency,
                reply,
            } => {
                let o = intents::OverrideRequest {
                    pop,
                    weight,
                    expires_in,
                    reason,
                    principal,
                    emergency,
                };
                let _ = reply.send(self.set_override(o, true));
            }
            ApiCommand::ClearOverride {
                pop,
                reason,
                principal,
                reply,
            } => {
                let _ = reply.send(self.clear_override(pop, reason, principal));
            }
            ApiCommand::Status { reply } => {
                let _ = reply.send(self.status());
            }
            ApiCommand::Audit { filter, reply } => {
                let result = tokio::task::block_in_place(|| {
                    self.store
                        .read_audit_matching(filter.limit, &|e| filter.matches(e))
                })
                .map_err(|e| ApiError::Unavailable(format!("cannot read the audit log: {e}")));
                let _ = reply.send(result);
            }
            ApiCommand::RecordDenied {
                principal,
                action,
                scope,
                reason,
            } => {
                let entry = AuditEntry {
                    outcome: "denied".into(),
                    ..self.entry(principal, &action, scope, reason)
                };
                self.audit_only(&entry);
            }
            ApiCommand::ConfirmFailure {
                reason,
                principal,
                reply,
            } => {
                let _ = reply.send(self.confirm_failure(reason, principal));
            }
            ApiCommand::CorrectSlo { correction, reply } => {
                let _ = reply.send(self.correct_slo_command(correction));
            }
            ApiCommand::Lead { basis, reply } => {
                let _ = reply.send(self.lead(basis));
            }
            ApiCommand::Follow => self.follow(),
            ApiCommand::Change(cmd) => self.handle_change(cmd),
            ApiCommand::AdoptState {
                intents,
                plan_version,
            } => self.adopt_shared(intents, plan_version),
            ApiCommand::Reload {
                topology,
                slos,
                changes,
                config_digest,
                principal,
                reason,
                emergency,
                reply,
            } => {
                let who = emergency.then(|| (principal.clone(), reason.clone()));
                let reason = if emergency {
                    format!("[emergency] {reason}")
                } else {
                    reason
                };
                let result = self.reload(topology, principal, reason);
                if result.is_ok() {
                    self.configure_changes(changes, config_digest);
                    if let Some((principal, reason)) = who {
                        self.note_break_glass("reload", &principal, &reason);
                    }
                }
                if result.is_ok()
                    && let Some(s) = slos
                {
                    self.configure_slos(s.specs, s.evaluate_every, s.resend_every);
                }
                let _ = reply.send(result);
            }
        }
    }

    fn reload(
        &mut self,
        topology: Arc<Topology>,
        principal: String,
        reason: String,
    ) -> Result<u64, ApiError> {
        let mut next = self.intents.clone();
        let dropped = retain_known(&topology, &mut next);
        if self.recorder.is_some() {
            let at = self.clock.now();
            self.record(&Recorded::Topology {
                at,
                topology: (*topology).clone(),
            });
        }
        // A reload the operator applied to this state is this deployment:
        // its regions now identify it (else the next start would refuse
        // its own state after a region was added).
        let identity = self.identity.clone();
        if let Some(id) = &mut self.identity {
            *id = StateIdentity::new(
                id.cluster.clone(),
                topology.regions.iter().map(|r| r.id.clone()),
            );
        }
        let previous = self.swap_topology(topology);
        let mut why = reason;
        if !dropped.is_empty() {
            let ids: Vec<&str> = dropped.iter().map(|d| d.id.as_str()).collect();
            why.push_str(&format!(
                " (intents dropped, scope gone: {})",
                ids.join(", ")
            ));
        }
        let mut entries = vec![self.entry(principal, "reload", "config".into(), why)];
        entries.extend(
            dropped
                .iter()
                .map(|d| self.dropped_entry(d, "after a reload")),
        );
        if self.standby {
            return Ok(self.apply_locally(next, &entries));
        }
        match self.commit_then_record(next, entries, |_| None) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.swap_topology(previous);
                self.identity = identity;
                Err(e)
            }
        }
    }
}
