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

use std::sync::Arc;

use steer_command::ApiError;
use steer_store::{AuditEntry, PersistedState, StateStore, StoreError};
use steer_types::{Intents, Plan};
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
    pub(crate) fn lead(&mut self, basis: Option<Arc<Plan>>) -> Result<u64, ApiError> {
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
        // The previous leader may have moved change requests too.
        let fresh = tokio::task::block_in_place(|| crate::changes::ChangeDesk::load(&*self.store));
        self.changes.take_book(fresh);
        let fresh =
            tokio::task::block_in_place(|| crate::timeline::TimelineBook::load(&*self.store));
        self.timeline.take(fresh);
        self.export_change_metrics();
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
        // Plan from what edges serve, not from this follower's own last
        // plan: the step rails then bound what edges see change.
        let own = self.plan.load_full();
        if let Some(basis) = basis {
            self.version_floor = self.version_floor.max(basis.version);
            self.plan.store(basis);
        }
        self.standby = false;
        let now = self.clock.now();
        // The first write of the term: if the fence does not hold (another
        // node won meanwhile), nothing is taken over.
        let version = self.current().version.max(self.version_floor) + 1;
        if let Err(e) = self.persist(version) {
            self.standby = true;
            self.plan.store(own);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use steer_command::{ApiCommand, ApiError};
    use steer_store::{AuditEntry, PersistedState, StateStore, StoreError};
    use steer_types::Timestamp;

    use crate::{ControlLoop, MemStore, ReplayClock, test_world::topology};

    /// One store two controllers share (etcd, in a cluster).
    #[derive(Clone, Default)]
    struct Shared(Arc<MemStore>);

    impl StateStore for Shared {
        fn load(&self) -> Result<Option<PersistedState>, StoreError> {
            self.0.load()
        }
        fn save(&self, s: &PersistedState) -> Result<(), StoreError> {
            self.0.save(s)
        }
        fn append_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
            self.0.append_audit(e)
        }
        fn read_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
            self.0.read_audit(limit)
        }
    }

    fn controller(store: &Shared, standby: bool) -> ControlLoop {
        let clock = ReplayClock::default();
        clock.set(Timestamp(1_000_000));
        let build = if standby {
            ControlLoop::new_standby
        } else {
            ControlLoop::new
        };
        build(
            Arc::new(topology()),
            Box::new(store.clone()),
            Box::new(clock),
        )
        .unwrap()
        .0
    }

    fn drain(c: &mut ControlLoop, pop: &str) -> Result<u64, ApiError> {
        crate::test_world::hard_drain(c, pop, "cluster test")
    }

    fn lead(c: &mut ControlLoop) -> Result<u64, ApiError> {
        let (reply, mut rx) = tokio::sync::oneshot::channel();
        c.handle(ApiCommand::Lead { basis: None, reply });
        rx.try_recv().unwrap()
    }

    fn weight(c: &ControlLoop, pop: &str) -> u32 {
        c.plan()
            .body
            .pops
            .iter()
            .find(|p| p.id.as_str() == pop)
            .map_or(0, |p| p.weight)
    }

    #[test]
    fn a_follower_writes_nothing_takes_the_leaders_intents_and_takes_over() {
        let store = Shared::default();
        let mut a = controller(&store, false);
        let mut b = controller(&store, true);
        assert!(b.is_standby());

        // The follower refuses changes and writes nothing.
        let refused = drain(&mut b, "fra1").unwrap_err();
        assert!(
            matches!(&refused, ApiError::Unavailable(m) if m.contains("follower")),
            "{refused:?}"
        );
        assert!(b.intents.drains.is_empty());
        let before = store.load().unwrap();
        b.handle(ApiCommand::Reload {
            changes: None,
            config_digest: String::new(),
            topology: Arc::new(topology()),
            slos: None,
            principal: "bob".into(),
            reason: "local reload".into(),
            emergency: false,
            reply: tokio::sync::oneshot::channel().0,
        });
        assert_eq!(store.load().unwrap(), before, "a follower wrote the state");

        // The leader drains; the follower takes the intents from the
        // shared state and plans the same.
        let v = drain(&mut a, "fra1").unwrap();
        let shared = store.load().unwrap().unwrap();
        assert_eq!(shared.plan_version, v);
        b.handle(ApiCommand::AdoptState {
            intents: shared.intents.clone(),
            plan_version: shared.plan_version,
        });
        assert_eq!(b.intents, a.intents);
        assert_eq!(weight(&b, "fra1"), 0);
        assert_eq!(weight(&b, "ams1"), weight(&a, "ams1"));

        // The leader goes; the follower takes over with what the store
        // holds (including a change it never heard about) and writes.
        drain(&mut a, "iad1").unwrap();
        a.handle(ApiCommand::Follow);
        assert!(drain(&mut a, "ord1").is_err(), "a deposed leader changed");
        let first = lead(&mut b).unwrap();
        assert!(!b.is_standby());
        let shared = store.load().unwrap().unwrap();
        assert_eq!(shared.plan_version, first);
        assert!(
            first >= v + 2,
            "sequences continue above the shared state's: {first}"
        );
        assert_eq!(b.intents.drains.len(), 2, "took over the shared intents");
        assert_eq!(weight(&b, "iad1"), 0);
        let next = drain(&mut b, "ams1").unwrap();
        assert!(next > first);
        assert_eq!(store.load().unwrap().unwrap().intents.drains.len(), 3);

        // A leader ignores its own writes coming back.
        b.handle(ApiCommand::AdoptState {
            intents: steer_types::Intents::default(),
            plan_version: 0,
        });
        assert_eq!(b.intents.drains.len(), 3);
    }
}
