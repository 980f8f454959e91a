//! The loop's part in a clustered control plane: every controller runs the
//! loop on the same health (agents report to all of them), but only the
//! leader writes the shared state and its plans go to edges.
//!
//! A follower is a warm standby: it computes plans from its own health
//! view and the leader's intents ([`ApiCommand::AdoptState`]), so reads,
//! explain and dry runs answer on it, and a takeover starts from health
//! that is already settled (a new leader with cold damping state would
//! fail PoPs over prematurely). It refuses changes and writes nothing.
//!
//! [`ApiCommand::Lead`] re-reads the shared state (the previous leader may
//! have written after the follower last heard), appends what that state
//! still owes the audit log, and publishes at once; plan sequences continue
//! above the shared state's, and the epoch (the leader's term) orders the
//! new leader's plans after the old one's.
//!
//! [`ApiCommand::AdoptState`]: steer_command::ApiCommand::AdoptState
//! [`ApiCommand::Lead`]: steer_command::ApiCommand::Lead

use steer_command::ApiError;
use steer_store::{AuditEntry, PersistedState, StateStore, StoreError};
use steer_types::Intents;
use tracing::{info, warn};

use crate::{ControlLoop, retain_known};

/// A store seen by a follower: reads pass through, writes are dropped
/// (the leader makes them). Used for what the loop saves on its own
/// schedule (SLO histories); changes are refused before they get here.
pub(crate) struct ReadOnly<'a>(pub(crate) &'a dyn StateStore);

impl StateStore for ReadOnly<'_> {
    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        self.0.load()
    }
    fn save(&self, _: &PersistedState) -> Result<(), StoreError> {
        Ok(())
    }
    fn append_audit(&self, _: &AuditEntry) -> Result<(), StoreError> {
        Ok(())
    }
    fn read_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.0.read_audit(limit)
    }
    fn save_document(&self, _: &str, _: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
    fn load_document(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.load_document(name)
    }
}

impl ControlLoop {
    /// Whether this loop is a clustered follower.
    pub fn is_standby(&self) -> bool {
        self.standby
    }

    /// Takes leadership: the shared state as etcd has it now, then one
    /// fenced write and a publication. On failure the loop stays a
    /// follower (the caller resigns and campaigns again).
    pub(crate) fn lead(&mut self) -> Result<u64, ApiError> {
        let saved = tokio::task::block_in_place(|| self.store.load())
            .map_err(|e| ApiError::Unavailable(format!("cannot read the shared state: {e}")))?
            .unwrap_or_default();
        let pending: Vec<AuditEntry> = saved
            .pending_audit
            .into_iter()
            .filter(|p| {
                !matches!(
                    tokio::task::block_in_place(|| self.store.read_audit_matching(1, &|e| e == p)),
                    Ok(found) if !found.is_empty()
                )
            })
            .collect();
        let mut intents = saved.intents;
        let dropped = retain_known(&self.topology, &mut intents);
        let before = (
            std::mem::replace(&mut self.intents, intents),
            std::mem::replace(&mut self.unflushed_audit, pending),
            self.identity.clone(),
            self.version_floor,
        );
        if saved.identity.is_some() {
            self.identity = saved.identity;
        }
        for d in &dropped {
            let entry = self.dropped_entry(d, "when taking over");
            self.unflushed_audit.push(entry);
        }
        self.version_floor = self.version_floor.max(saved.plan_version);
        self.standby = false;
        let now = self.clock.now();
        // The first write of the term: if the fence does not hold (another
        // node won meanwhile), nothing is taken over.
        let version = self.current().version.max(self.version_floor) + 1;
        if let Err(e) = self.persist(version) {
            self.standby = true;
            (
                self.intents,
                self.unflushed_audit,
                self.identity,
                self.version_floor,
            ) = before;
            return Err(ApiError::Unavailable(format!(
                "cannot take over the shared state: {e}"
            )));
        }
        self.flush_audit();
        let version = self.recompute_and_publish_at(true, now);
        info!(
            version,
            drains = self.intents.drains.len(),
            overrides = self.intents.overrides.len(),
            "leading: shared state taken over"
        );
        Ok(version)
    }

    /// Gives up writing (leadership lost or never held).
    pub(crate) fn follow(&mut self) {
        if !self.standby {
            warn!("following: this controller no longer writes the shared state");
        }
        self.standby = true;
    }

    /// A follower takes the leader's intents; a leader ignores its own
    /// writes coming back.
    pub(crate) fn adopt_shared(&mut self, mut intents: Intents, plan_version: u64) {
        if !self.standby {
            return;
        }
        self.version_floor = self.version_floor.max(plan_version);
        retain_known(&self.topology, &mut intents);
        if intents == self.intents {
            return;
        }
        self.intents = intents;
        let now = self.clock.now();
        self.recompute_and_publish_at(false, now);
    }

    /// A follower's reload: applied to its own view, audited as an attempt
    /// (it changes no shared state), never written.
    pub(crate) fn apply_locally(&mut self, next: Intents, entries: &[AuditEntry]) -> u64 {
        self.intents = next;
        for entry in entries {
            let entry = entry.clone().capped();
            if let Err(e) = tokio::task::block_in_place(|| self.store.append_attempt_audit(&entry))
            {
                warn!(error = %e, action = %entry.action, "could not write audit entry");
            }
        }
        let now = self.clock.now();
        self.recompute_and_publish_at(true, now)
    }
}
