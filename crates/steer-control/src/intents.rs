//! Intent changes: drains, undrains, overrides and expiry. Each goes through
//! `commit` (audit, persist, publish) or is audited as not applied.

use std::time::Duration;

use steer_change::{IntentKind, IntentSpec};
use steer_command::{ApiError, DrainCommand, DrainOutcome, OverrideOutcome, UndrainOutcome};
use steer_types::{
    Drain, DrainScope, Intents, PopId, Timestamp, WeightOverride, audit::AuditEntry,
};
use tracing::info;

use crate::{ControlLoop, DroppedIntent, scope_known};

/// A weight override as asked for.
pub(crate) struct OverrideRequest {
    pub(crate) pop: PopId,
    pub(crate) weight: u32,
    pub(crate) expires_in: Option<Duration>,
    pub(crate) reason: String,
    pub(crate) principal: String,
    pub(crate) emergency: bool,
}

impl ControlLoop {
    fn check_scope(&self, scope: &DrainScope) -> Result<(), ApiError> {
        if scope_known(&self.topology, scope) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!(
                "{} is not in the configuration",
                scope.describe()
            )))
        }
    }

    /// An audit entry for an applied change now; callers adjust the rest.
    pub(crate) fn entry(
        &self,
        principal: String,
        action: &str,
        scope: String,
        reason: String,
    ) -> AuditEntry {
        AuditEntry {
            // Wall time: the audit log is read by people, beside other logs.
            at: self.clock.wall(),
            principal,
            action: action.to_owned(),
            scope,
            reason,
            detail: String::new(),
            intent_id: None,
            plan_version: self.current().version,
            dry_run: false,
            forced: false,
            outcome: "applied".into(),
        }
    }

    /// The audit entry of an intent dropped because the config lacks what
    /// it names (`when`: at start, after a reload), as `steerd`.
    pub(crate) fn dropped_entry(&self, d: &DroppedIntent, when: &str) -> AuditEntry {
        AuditEntry {
            intent_id: Some(d.id.clone()),
            ..self.entry(
                "steerd".into(),
                "drop",
                d.scope.clone(),
                format!(
                    "{} is not in the configuration {when}; dropped {} ({})",
                    d.missing, d.id, d.was
                ),
            )
        }
        .capped()
    }

    /// A drain as an operator asks for it: applied, or proposed as a change
    /// request where `[changes] reviewed_intents` names its kind.
    pub(crate) fn drain(&mut self, cmd: DrainCommand) -> Result<DrainOutcome, ApiError> {
        self.drain_with(cmd, true)
    }

    /// `review`: false when an approved change applies it.
    pub(crate) fn drain_with(
        &mut self,
        cmd: DrainCommand,
        review: bool,
    ) -> Result<DrainOutcome, ApiError> {
        self.check_scope(&cmd.scope)?;
        let now = self.clock.now();
        let mut next = self.intents.clone();
        // Re-draining the same scope replaces the old drain (e.g. soft → hard).
        let replaced: Vec<String> = next
            .drains
            .iter()
            .filter(|d| d.scope == cmd.scope)
            .map(|d| d.id.clone())
            .collect();
        next.drains.retain(|d| d.scope != cmd.scope);
        next.next_id += 1;
        let id = format!("drain-{}", next.next_id);
        let drain = Drain {
            id: id.clone(),
            scope: cmd.scope.clone(),
            mode: cmd.mode,
            ramp: cmd.ramp,
            reason: cmd.reason.clone(),
            principal: cmd.principal.clone(),
            created: now,
            expires: cmd.expires_in.map(|d| now.saturating_add(d)),
            forced: false,
        };

        // Project the end state (as if the ramp were over).
        let projection = steer_policy::project_drain(
            &self.topology,
            &self.snapshot(now),
            &self.intents,
            &cmd.scope,
            now,
        );

        let mut entry = self.entry(
            cmd.principal.clone(),
            "drain",
            cmd.scope.describe(),
            cmd.reason.clone(),
        );
        entry.detail = format!("{:?}; {}", cmd.mode, projection.summary);
        entry.dry_run = cmd.dry_run;
        entry.forced = cmd.force && projection.over_capacity;
        if cmd.dry_run {
            entry.outcome = "dry-run".into();
            self.audit_only(&entry);
            return Ok(DrainOutcome {
                intent_id: String::new(),
                plan_version: self.current().version,
                applied: false,
                projection,
                proposed: None,
            });
        }
        if projection.over_capacity && !cmd.force {
            entry.outcome = "refused".into();
            self.audit_only(&entry);
            metrics::counter!("steer_drains_refused_total").increment(1);
            info!(scope = %cmd.scope.describe(), summary = %projection.summary, "drain refused by the capacity rail");
            return Err(ApiError::Refused(projection));
        }
        let kind = IntentKind::of_drain(&cmd.scope);
        if review && self.reviews(kind) {
            let spec = IntentSpec::Drain {
                scope: cmd.scope.clone(),
                mode: cmd.mode,
                ramp_ms: u64::try_from(cmd.ramp.as_millis()).unwrap_or(u64::MAX),
                expires_in_ms: cmd
                    .expires_in
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                force: cmd.force,
            };
            if cmd.emergency {
                entry.detail.push_str("; EMERGENCY: applied past review");
                self.note_break_glass(&spec.to_string(), &cmd.principal, &cmd.reason);
            } else {
                let id = self.propose_intent(
                    spec,
                    &cmd.principal,
                    &cmd.reason,
                    vec![projection.summary.clone()],
                )?;
                return Ok(DrainOutcome {
                    intent_id: String::new(),
                    plan_version: self.current().version,
                    applied: false,
                    projection,
                    proposed: Some(id),
                });
            }
        }
        next.drains.push(Drain {
            forced: entry.forced,
            ..drain
        });
        entry.intent_id = Some(id.clone());
        if !replaced.is_empty() {
            entry
                .detail
                .push_str(&format!("; replaces {}", replaced.join(", ")));
        }
        let version = self.commit(next, entry)?;
        info!(intent = %id, scope = %cmd.scope.describe(), mode = ?cmd.mode, "drain applied");
        Ok(DrainOutcome {
            intent_id: id,
            plan_version: version,
            applied: true,
            projection,
            proposed: None,
        })
    }

    /// Whether `[changes] reviewed_intents` puts this kind through review.
    fn reviews(&self, kind: IntentKind) -> bool {
        self.changes
            .settings
            .as_ref()
            .is_some_and(|s| s.reviews(kind))
    }

    pub(crate) fn undrain(
        &mut self,
        scope: DrainScope,
        reason: String,
        principal: String,
    ) -> Result<UndrainOutcome, ApiError> {
        self.check_scope(&scope)?;
        let mut next = self.intents.clone();
        let lifted_ids: Vec<String> = next
            .drains
            .iter()
            .filter(|d| d.scope == scope)
            .map(|d| d.id.clone())
            .collect();
        next.drains.retain(|d| d.scope != scope);
        let still_covered_by = self.covering(&next, &scope);
        if lifted_ids.is_empty() {
            return Ok(UndrainOutcome {
                lifted: 0,
                plan_version: self.current().version,
                still_covered_by,
            });
        }
        let mut entry = self.entry(principal, "undrain", scope.describe(), reason);
        entry.intent_id = Some(lifted_ids.join(","));
        let version = self.commit(next, entry)?;
        info!(scope = %scope.describe(), "undrain applied");
        Ok(UndrainOutcome {
            lifted: u32::try_from(lifted_ids.len()).unwrap_or(u32::MAX),
            plan_version: version,
            still_covered_by,
        })
    }

    /// Drains in `intents` that cover any PoP of `scope` (for a service at
    /// a PoP, that PoP), one line each, for an operator who expected the
    /// scope to be free after an undrain.
    fn covering(&self, intents: &Intents, scope: &DrainScope) -> Vec<String> {
        let pops: Vec<&steer_types::Pop> = self
            .topology
            .pops
            .iter()
            .filter(|p| match scope {
                DrainScope::Pop { pop } | DrainScope::ServicePop { pop, .. } => &p.id == pop,
                DrainScope::Region { region } => &p.region == region,
            })
            .collect();
        let service = match scope {
            DrainScope::ServicePop { service, .. } => Some(service),
            _ => None,
        };
        intents
            .drains
            .iter()
            .filter(|d| {
                pops.iter().any(|p| match (&d.scope, service) {
                    // A drain of another service at the PoP leaves this one.
                    (DrainScope::ServicePop { service: s, .. }, Some(want)) if s != want => false,
                    _ => d.scope.covers(None, &p.id, &p.region),
                })
            })
            .map(|d| {
                format!(
                    "{} ({}, {:?}) by {}: {}",
                    d.id,
                    d.scope.describe(),
                    d.mode,
                    d.principal,
                    d.reason
                )
            })
            .collect()
    }

    /// An override as an operator asks for it (see [`Self::drain`]);
    /// `review`: false when an approved change applies it.
    pub(crate) fn set_override(
        &mut self,
        o: OverrideRequest,
        review: bool,
    ) -> Result<OverrideOutcome, ApiError> {
        let OverrideRequest {
            pop,
            weight,
            expires_in,
            reason,
            principal,
            emergency,
        } = o;
        self.check_scope(&DrainScope::Pop { pop: pop.clone() })?;
        let mut past_review = false;
        if review && self.reviews(IntentKind::Override) {
            let spec = IntentSpec::Override {
                pop: pop.clone(),
                weight,
                expires_in_ms: expires_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            };
            if !emergency {
                let effect = vec![format!(
                    "pop {pop} pinned at {weight}‰ of its region's answers"
                )];
                let id = self.propose_intent(spec, &principal, &reason, effect)?;
                return Ok(OverrideOutcome {
                    intent_id: String::new(),
                    plan_version: self.current().version,
                    proposed: Some(id),
                });
            }
            self.note_break_glass(&spec.to_string(), &principal, &reason);
            past_review = true;
        }
        let now = self.clock.now();
        let mut next = self.intents.clone();
        next.overrides.retain(|o| o.pop != pop);
        next.next_id += 1;
        let id = format!("override-{}", next.next_id);
        next.overrides.push(WeightOverride {
            id: id.clone(),
            pop: pop.clone(),
            weight,
            reason: reason.clone(),
            principal: principal.clone(),
            created: now,
            expires: expires_in.map(|d| now.saturating_add(d)),
        });
        let mut entry = self.entry(principal, "override", format!("pop {pop}"), reason);
        entry.detail = format!("weight {weight}‰");
        if past_review {
            entry.detail.push_str("; EMERGENCY: applied past review");
        }
        entry.intent_id = Some(id.clone());
        let version = self.commit(next, entry)?;
        Ok(OverrideOutcome {
            intent_id: id,
            plan_version: version,
            proposed: None,
        })
    }

    pub(crate) fn clear_override(
        &mut self,
        pop: PopId,
        reason: String,
        principal: String,
    ) -> Result<(u32, u64), ApiError> {
        self.check_scope(&DrainScope::Pop { pop: pop.clone() })?;
        let mut next = self.intents.clone();
        let before = next.overrides.len();
        next.overrides.retain(|o| o.pop != pop);
        let cleared = u32::try_from(before - next.overrides.len()).unwrap_or(u32::MAX);
        if cleared == 0 {
            return Ok((0, self.current().version));
        }
        let entry = self.entry(principal, "clear-override", format!("pop {pop}"), reason);
        let version = self.commit(next, entry)?;
        Ok((cleared, version))
    }

    /// Lifts intents whose expiry has passed, each audited as `steerd`.
    pub(crate) fn expire_intents(&mut self) {
        if self.standby {
            // The leader lifts them; its state comes back through the watch.
            return;
        }
        let now = self.clock.now();
        if self.intents.next_expiry().is_none_or(|t| t > now) {
            return;
        }
        let expired = |t: Option<Timestamp>| t.is_some_and(|t| t <= now);
        let mut next: Intents = self.intents.clone();
        let mut lifted = Vec::new();
        next.drains.retain(|d| {
            let gone = expired(d.expires);
            if gone {
                lifted.push(format!("{} ({})", d.id, d.scope.describe()));
            }
            !gone
        });
        next.overrides.retain(|o| {
            let gone = expired(o.expires);
            if gone {
                lifted.push(format!("{} (pop {})", o.id, o.pop));
            }
            !gone
        });
        let entry = self.entry(
            "steerd".into(),
            "expire",
            lifted.join(", "),
            "intent expired".into(),
        );
        match self.commit(next, entry) {
            Ok(version) => info!(lifted = ?lifted, version, "expired intents lifted"),
            Err(e) => tracing::error!(error = %e, "could not lift expired intents; will retry"),
        }
    }
}
