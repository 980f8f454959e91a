//! The audit log never lies: an entry is written only once the change it
//! reports is durable, a change that could not be stored is refused with
//! nothing half-applied, and an entry a failed append kept out of the log
//! is appended later from the state it was saved with.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use steer_command::{ApiCommand, ApiError};
use steer_store::{PersistedState, StateStore, StoreError};
use steer_types::{DrainMode, DrainScope, PopId, Timestamp, audit::AuditEntry};

use crate::{ControlLoop, MemStore, ReplayClock, test_world::topology};

/// A store whose state writes and audit appends fail on demand (a full
/// disk hits either).
#[derive(Clone, Default)]
struct Disk {
    inner: Arc<MemStore>,
    saves_fail: Arc<AtomicBool>,
    appends_fail: Arc<AtomicBool>,
}

fn full(op: &'static str) -> StoreError {
    StoreError::Io {
        op,
        path: "mem".into(),
        source: std::io::Error::other("No space left on device"),
    }
}

impl StateStore for Disk {
    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        self.inner.load()
    }
    fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        if self.saves_fail.load(Ordering::SeqCst) {
            return Err(full("write"));
        }
        self.inner.save(state)
    }
    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        if self.appends_fail.load(Ordering::SeqCst) {
            return Err(full("append"));
        }
        self.inner.append_audit(entry)
    }
    fn read_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.read_audit(limit)
    }
}

fn start(disk: &Disk) -> ControlLoop {
    let clock = ReplayClock::default();
    clock.set(Timestamp(1_000_000));
    ControlLoop::new(
        Arc::new(topology()),
        Box::new(disk.clone()),
        Box::new(clock),
    )
    .unwrap()
    .0
}

fn drain(c: &mut ControlLoop, pop: &str) -> Result<u64, ApiError> {
    crate::test_world::hard_drain(c, pop, "disk test")
}

fn applied(disk: &Disk) -> Vec<AuditEntry> {
    disk.read_audit(usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| e.outcome == "applied")
        .collect()
}

#[test]
fn a_change_that_cannot_be_stored_is_refused_and_never_audited_as_applied() {
    let disk = Disk::default();
    let mut c = start(&disk);
    let version = c.plan().version;
    disk.saves_fail.store(true, Ordering::SeqCst);
    let err = drain(&mut c, "fra1").unwrap_err();
    assert!(
        matches!(&err, ApiError::Unavailable(m) if m.contains("nothing was changed")),
        "{err:?}"
    );
    assert!(c.intents.drains.is_empty(), "half-applied");
    assert_eq!(c.plan().version, version, "published a refused change");
    assert!(
        applied(&disk).is_empty(),
        "audited a change that was refused"
    );

    // The disk has room again: the same drain goes through, audited once.
    disk.saves_fail.store(false, Ordering::SeqCst);
    drain(&mut c, "fra1").unwrap();
    assert_eq!(applied(&disk).len(), 1);
}

#[test]
fn an_entry_kept_out_of_the_log_is_appended_from_the_state_later() {
    let disk = Disk::default();
    let mut c = start(&disk);
    disk.appends_fail.store(true, Ordering::SeqCst);
    // The state holds the change (it is in force), the log cannot take it.
    drain(&mut c, "fra1").unwrap();
    assert_eq!(c.intents.drains.len(), 1);
    assert!(applied(&disk).is_empty());
    let saved = disk.load().unwrap().unwrap();
    assert_eq!(
        saved.pending_audit.len(),
        1,
        "entry not saved with the change"
    );

    // steerd dies and starts again with a working log: the entry is
    // appended once, and not again on the start after that.
    drop(c);
    disk.appends_fail.store(false, Ordering::SeqCst);
    let c = start(&disk);
    let log = applied(&disk);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].intent_id.as_deref(), Some("drain-1"));
    drop(c);
    let _c = start(&disk);
    assert_eq!(applied(&disk).len(), 1, "appended twice");
}

#[test]
fn a_pending_entry_is_flushed_by_the_next_write_without_a_restart() {
    let disk = Disk::default();
    let mut c = start(&disk);
    disk.appends_fail.store(true, Ordering::SeqCst);
    drain(&mut c, "fra1").unwrap();
    disk.appends_fail.store(false, Ordering::SeqCst);
    drain(&mut c, "ams1").unwrap();
    let log: Vec<Option<String>> = applied(&disk).into_iter().map(|e| e.intent_id).collect();
    assert_eq!(
        log,
        vec![Some("drain-1".to_owned()), Some("drain-2".to_owned())],
        "lost or reordered"
    );
}

#[test]
fn a_start_on_a_full_disk_still_serves_the_stored_state() {
    let disk = Disk::default();
    let mut c = start(&disk);
    drain(&mut c, "fra1").unwrap();
    drop(c);
    disk.saves_fail.store(true, Ordering::SeqCst);
    disk.appends_fail.store(true, Ordering::SeqCst);
    let c = start(&disk);
    assert_eq!(c.intents.drains.len(), 1);
    assert!(c.plan().pop("fra1").unwrap().drained_by.is_some());
}

/// `/status` and `GetStatus` read the snapshot the loop publishes, never
/// the loop itself: a drain is in it as soon as it is acknowledged.
#[test]
fn the_status_snapshot_follows_each_publication() {
    let clock = ReplayClock::default();
    clock.set(Timestamp(1_000_000));
    let (mut c, handles) = ControlLoop::new(
        Arc::new(topology()),
        Box::new(Disk::default()),
        Box::new(clock),
    )
    .unwrap();
    let before = handles.status.load_full();
    assert_eq!(before.plan_version, c.plan().version);
    assert_eq!(before.pops.len(), 4);
    assert!(before.drains.is_empty());
    let version = drain(&mut c, "fra1").unwrap();
    let after = handles.status.load_full();
    assert_eq!(after.plan_version, version);
    assert_eq!(after.drains.len(), 1);
    assert!(
        after
            .pops
            .iter()
            .any(|p| p.pop.as_str() == "fra1" && p.drained_by.is_some())
    );
}

fn stored_drain(id: &str, scope: DrainScope) -> steer_types::Drain {
    steer_types::Drain {
        id: id.into(),
        scope,
        mode: DrainMode::Hard,
        ramp: Duration::ZERO,
        reason: format!("why {id}"),
        principal: "alice".into(),
        created: Timestamp(1),
        expires: None,
        forced: false,
    }
}

fn dropped(disk: &Disk) -> Vec<AuditEntry> {
    disk.read_audit(usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "drop")
        .collect()
}

/// A config without a place for some intents (another config over the
/// same state, a PoP removed): each dropped intent gets its own audit
/// entry saying what the config lacks and what the intent was.
#[test]
fn intents_the_config_lost_are_each_audited_at_start() {
    let disk = Disk::default();
    let pop = |p: &str| DrainScope::Pop { pop: PopId::new(p) };
    disk.save(&PersistedState {
        intents: steer_types::Intents {
            drains: vec![
                stored_drain("drain-1", pop("zrh1")),
                stored_drain("drain-2", pop("fra1")),
                stored_drain(
                    "drain-3",
                    DrainScope::Region {
                        region: "ap-south".into(),
                    },
                ),
                stored_drain(
                    "drain-4",
                    DrainScope::ServicePop {
                        service: "web".into(),
                        pop: PopId::new("fra1"),
                    },
                ),
            ],
            overrides: vec![steer_types::WeightOverride {
                id: "override-5".into(),
                pop: PopId::new("zrh1"),
                weight: 700,
                reason: "canary".into(),
                principal: "bob".into(),
                created: Timestamp(1),
                expires: None,
            }],
            next_id: 5,
        },
        plan_version: 3,
        ..Default::default()
    })
    .unwrap();
    let c = start(&disk);
    assert_eq!(c.intents.drains.len(), 1, "{:?}", c.intents);
    let entries = dropped(&disk);
    let ids: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.intent_id.as_deref())
        .collect();
    assert_eq!(ids, ["drain-1", "drain-3", "drain-4", "override-5"]);
    let reasons: Vec<&str> = entries.iter().map(|e| e.reason.as_str()).collect();
    assert!(
        reasons[0].starts_with("pop zrh1 is not in the configuration at start; dropped drain-1")
            && reasons[0].contains("by alice: why drain-1"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("region ap-south is not"),
        "{reasons:?}"
    );
    assert!(reasons[2].starts_with("service web is not"), "{reasons:?}");
    assert!(
        reasons[3].contains("override 700‰ by bob: canary"),
        "{reasons:?}"
    );
    assert!(entries.iter().all(|e| e.principal == "steerd"));
    // Saved without them: a second start drops (and audits) nothing more.
    let saved = disk.load().unwrap().unwrap();
    assert_eq!(saved.intents.drains.len(), 1);
    assert!(saved.intents.overrides.is_empty());
    drop(c);
    let _again = start(&disk);
    assert_eq!(dropped(&disk).len(), 4);
}

/// A reload that removes a PoP audits each intent it drops, beside the
/// reload's own entry.
#[test]
fn intents_a_reload_drops_are_each_audited() {
    let disk = Disk::default();
    let mut c = start(&disk);
    drain(&mut c, "ord1").unwrap();
    let mut smaller = topology();
    smaller.pops.retain(|p| p.id.as_str() != "ord1");
    for s in &mut smaller.services {
        s.pops.retain(|p| p.as_str() != "ord1");
    }
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    c.handle(ApiCommand::Reload {
        changes: None,
        config_digest: String::new(),
        slos: None,
        topology: Arc::new(smaller),
        principal: "alice".into(),
        reason: "ord1 decommissioned".into(),
        emergency: false,
        reply: tx,
    });
    let version = rx.try_recv().unwrap().unwrap();
    // The state's identity follows the regions a reload applied (none was
    // recorded here, so none is invented).
    assert_eq!(disk.load().unwrap().unwrap().identity, None);
    let entries = dropped(&disk);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].intent_id.as_deref(), Some("drain-1"));
    assert_eq!(entries[0].plan_version, version);
    assert!(
        entries[0]
            .reason
            .starts_with("pop ord1 is not in the configuration after a reload"),
        "{entries:?}"
    );
    let reload = applied(&disk)
        .into_iter()
        .find(|e| e.action == "reload")
        .unwrap();
    assert!(
        reload
            .reason
            .contains("intents dropped, scope gone: drain-1"),
        "{reload:?}"
    );
}

/// The regions a reload applies identify the state from then on, so the
/// next start of the same deployment is not refused as a stranger.
#[test]
fn a_reload_moves_the_state_identity_with_the_regions() {
    let disk = Disk::default();
    let regions =
        |t: &steer_types::Topology| t.regions.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    let before = steer_store::StateIdentity::new(None, regions(&topology()));
    disk.save(&PersistedState {
        identity: Some(before),
        ..Default::default()
    })
    .unwrap();
    let mut c = start(&disk);
    let mut bigger = topology();
    bigger.regions.push(steer_types::Region {
        id: "ap-south".into(),
        fallback: vec![],
    });
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    c.handle(ApiCommand::Reload {
        changes: None,
        config_digest: String::new(),
        slos: None,
        topology: Arc::new(bigger.clone()),
        principal: "alice".into(),
        reason: "new region".into(),
        emergency: false,
        reply: tx,
    });
    rx.try_recv().unwrap().unwrap();
    assert_eq!(
        disk.load().unwrap().unwrap().identity,
        Some(steer_store::StateIdentity::new(None, regions(&bigger)))
    );
}

/// `--adopt-state`: the new identity and its audit entry are saved
/// together; on a full disk neither is, and the start fails.
#[test]
fn adopting_a_state_records_the_identity_with_its_audit_entry() {
    let disk = Disk::default();
    let prod = steer_store::StateIdentity::new(Some("prod".into()), ["eu-west".into()]);
    let lab = steer_store::StateIdentity::new(Some("lab".into()), ["eu-west".into()]);
    disk.save(&PersistedState {
        identity: Some(prod.clone()),
        ..Default::default()
    })
    .unwrap();
    let mut c = start(&disk);
    disk.saves_fail.store(true, Ordering::SeqCst);
    assert!(c.adopt_state(lab.clone(), &prod, "/var/lib/steer").is_err());
    assert_eq!(disk.load().unwrap().unwrap().identity, Some(prod.clone()));
    assert!(applied(&disk).is_empty());
    disk.saves_fail.store(false, Ordering::SeqCst);
    c.adopt_state(lab.clone(), &prod, "/var/lib/steer").unwrap();
    assert_eq!(disk.load().unwrap().unwrap().identity, Some(lab));
    let entries = applied(&disk);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].action, "adopt-state");
    assert_eq!(entries[0].scope, "state /var/lib/steer");
    assert!(entries[0].forced);
    assert!(
        entries[0].reason.contains("cluster \"prod\"")
            && entries[0].reason.contains("taken over by cluster \"lab\""),
        "{entries:?}"
    );
}
