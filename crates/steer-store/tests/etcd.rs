//! The etcd backend against a real three-member etcd cluster on loopback
//! (Debian's `etcd-server`, which `scripts/test` installs): fenced writes,
//! leader election and takeover, a leader paused past its lease, and
//! quorum loss and recovery.

#![cfg(feature = "etcd")]

use std::time::{Duration, Instant};

use steer_store::{
    AuditEntry, PersistedState, StateStore, StoreError,
    etcd::{Elector, EtcdOptions, EtcdStore},
};
use steer_types::{Intents, Timestamp};

#[path = "support/etcd_cluster.rs"]
mod etcd_cluster;
use etcd_cluster::{Cluster, runtime};

fn options(cluster: &Cluster, node: &str) -> EtcdOptions {
    let mut o = EtcdOptions::new(cluster.endpoints(), "test", node);
    // Long enough for the members to elect a new raft leader after one
    // is killed (election timeout 500 ms here).
    o.request_timeout = Duration::from_secs(3);
    o
}

fn state(version: u64) -> PersistedState {
    PersistedState {
        intents: Intents::default(),
        plan_version: version,
        ..PersistedState::default()
    }
}

fn entry(at: i64, reason: &str) -> AuditEntry {
    AuditEntry {
        at: Timestamp(at),
        principal: "tester".into(),
        action: "drain".into(),
        scope: "pop fra1".into(),
        reason: reason.into(),
        detail: String::new(),
        intent_id: None,
        plan_version: 1,
        dry_run: false,
        forced: false,
        outcome: "applied".into(),
    }
}

#[test]
fn leader_writes_are_fenced_and_a_paused_leader_cannot_write() {
    let cluster = Cluster::start();
    let rt = runtime();
    let a = EtcdStore::connect(options(&cluster, "a")).expect("store a");
    let b = EtcdStore::connect(options(&cluster, "b")).expect("store b");

    // Nobody leads yet: writes are refused and nothing is written.
    match a.save(&state(1)) {
        Err(StoreError::Fenced { reason }) => {
            assert!(reason.contains("not the leader"), "{reason}")
        }
        other => panic!("unfenced write: {other:?}"),
    }
    assert_eq!(a.load().expect("load"), None);

    let ttl = Duration::from_secs(2);
    let (elector_a, elector_b) = rt.block_on(async {
        (
            Elector::connect(a.options().clone(), ttl).await.expect("a"),
            Elector::connect(b.options().clone(), ttl).await.expect("b"),
        )
    });
    let lead_a = rt.block_on(elector_a.campaign()).expect("a leads");
    a.set_fence(Some(lead_a.fence().clone()));
    a.save(&state(7)).expect("leader save");
    a.append_audit(&entry(1_000, "first"))
        .expect("leader audit");
    assert_eq!(b.load().expect("load").map(|s| s.plan_version), Some(7));
    let leader = rt.block_on(elector_b.leader()).expect("leader query");
    assert_eq!(leader.as_ref().map(|(n, _)| n.as_str()), Some("a"));

    // b campaigns in the background; it must wait while a keeps its lease.
    let campaign_b = rt.spawn(async move {
        let lead = elector_b.campaign().await;
        (elector_b, lead)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!campaign_b.is_finished(), "b won while a still led");

    // a is "paused": its keep-alives stop (the task is aborted, as a
    // SIGSTOPped process would stop sending), so its lease expires.
    let epoch_a = lead_a.epoch();
    let fence_a = lead_a.fence().clone();
    drop(lead_a);
    let started = Instant::now();
    let (_elector_b, lead_b) = rt.block_on(campaign_b).expect("join");
    let lead_b = lead_b.expect("b leads");
    let took = started.elapsed();
    assert!(
        took < ttl + Duration::from_secs(2),
        "takeover took {took:?} with a {ttl:?} lease"
    );
    assert!(
        lead_b.epoch() > epoch_a,
        "new term orders after the old one"
    );
    b.set_fence(Some(lead_b.fence().clone()));
    b.save(&state(8)).expect("new leader save");

    // a wakes up still believing it leads: its fenced writes fail and
    // change nothing.
    a.set_fence(Some(fence_a));
    match a.save(&state(99)) {
        Err(StoreError::Fenced { reason }) => assert!(reason.contains("lost"), "{reason}"),
        other => panic!("deposed leader wrote: {other:?}"),
    }
    assert!(matches!(
        a.append_audit(&entry(2_000, "stale")),
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(b.load().expect("load").map(|s| s.plan_version), Some(8));
    assert!(matches!(
        a.save_document("slo", b"stale"),
        Err(StoreError::Fenced { .. })
    ));
    b.save_document("slo", b"{\"histories\":{}}")
        .expect("leader document");
    assert_eq!(
        a.load_document("slo").expect("read document").as_deref(),
        Some(&b"{\"histories\":{}}"[..])
    );
    let audit = b.read_audit(10).expect("audit");
    assert_eq!(
        audit.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>(),
        ["first"]
    );

    // Resigning hands over at once.
    rt.block_on(lead_b.resign());
}

#[test]
fn audit_reads_newest_entries_in_order_across_pages() {
    let cluster = Cluster::start();
    let rt = runtime();
    let store = EtcdStore::connect(options(&cluster, "a")).expect("store");
    let lead = rt
        .block_on(async {
            Elector::connect(store.options().clone(), Duration::from_secs(3))
                .await?
                .campaign()
                .await
        })
        .expect("leads");
    store.set_fence(Some(lead.fence().clone()));
    for i in 0..1_203i64 {
        store
            .append_audit(&entry(10_000 + i, &format!("e{i}")))
            .expect("append");
    }
    let last = store.read_audit(3).expect("read");
    assert_eq!(
        last.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>(),
        ["e1200", "e1201", "e1202"]
    );
    // A filter that matches every 100th entry needs more than two pages.
    let sparse = store
        .read_audit_matching(5, &|e| e.at.0 % 100 == 0)
        .expect("read");
    assert_eq!(
        sparse.iter().map(|e| e.at.0).collect::<Vec<_>>(),
        [10_800, 10_900, 11_000, 11_100, 11_200]
    );
    assert_eq!(store.read_audit(usize::MAX).expect("all").len(), 1_203);
}

#[test]
fn quorum_loss_refuses_writes_clearly_and_recovery_needs_nothing() {
    let mut cluster = Cluster::start();
    let rt = runtime();
    let store = EtcdStore::connect(options(&cluster, "a")).expect("store");
    let lead = rt
        .block_on(async {
            Elector::connect(store.options().clone(), Duration::from_secs(3))
                .await?
                .campaign()
                .await
        })
        .expect("leads");
    store.set_fence(Some(lead.fence().clone()));
    store.save(&state(1)).expect("save");

    // One member gone (kill -9): the other two still make a quorum (once
    // they have elected a raft leader, if the dead one led).
    cluster.kill(2);
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Err(e) = store.save(&state(2)) {
        assert!(
            Instant::now() < deadline,
            "no writes with two of three: {e}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Two of three stopped: no quorum. The write fails within the request
    // deadline with a message that says what is wrong.
    cluster.signal(1, "-STOP");
    let started = Instant::now();
    match store.save(&state(3)) {
        Err(e @ StoreError::Unavailable { .. }) => {
            let text = e.to_string();
            assert!(text.contains("quorum"), "{text}");
        }
        other => panic!(
            "write without quorum: {other:?}; logs in {}",
            cluster.dir.display()
        ),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Back: the next write applies, no operator action. The outage may
    // have outlived the lease; then the node campaigns again, as its
    // election loop does, and writes under the new term.
    cluster.signal(1, "-CONT");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lead = lead;
    loop {
        match store.save(&state(4)) {
            Ok(()) => break,
            Err(StoreError::Unavailable { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(StoreError::Fenced { .. }) if Instant::now() < deadline => {
                assert!(lead.is_lost(), "fenced while the lease is believed held");
                lead = rt
                    .block_on(async {
                        Elector::connect(store.options().clone(), Duration::from_secs(3))
                            .await?
                            .campaign()
                            .await
                    })
                    .expect("leads again");
                store.set_fence(Some(lead.fence().clone()));
            }
            Err(e) => panic!("no recovery: {e}"),
        }
    }
    assert_eq!(store.load().expect("load").map(|s| s.plan_version), Some(4));
    drop(lead);
}
