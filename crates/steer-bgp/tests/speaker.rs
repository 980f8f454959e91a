//! The speaker task against a plan channel, on tokio's paused clock: it
//! follows plans, refuses one that withdraws too much (and says so), times
//! the graceful-shutdown linger, and keeps everything when plans stop
//! arriving (fail static).

#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use steer_bgp::BgpSpeaker;
use steer_types::{
    AnnounceState, Announcement, Plan, PlanBody, PopId, Timestamp,
    bgp::{BgpSettings, BgpShutdownAction, RouteTags},
};
use tokio::sync::watch;

fn plan(version: u64, states: &[(&str, AnnounceState)]) -> Arc<Plan> {
    Arc::new(Plan {
        version,
        computed_at: Timestamp::from_unix_ms(0),
        body: PlanBody {
            services: vec![],
            pops: vec![],
            regions: vec![],
            rails: vec![],
            announcements: states
                .iter()
                .map(|(pop, state)| Announcement {
                    pop: PopId::new(pop),
                    prefix: "203.0.113.0/24".parse().unwrap(),
                    state: *state,
                    reason: steer_types::AnnounceReason::Healthy,
                })
                .collect(),
        },
    })
}

fn settings() -> BgpSettings {
    BgpSettings {
        peers: vec![],
        reconnect_min: Duration::from_secs(1),
        reconnect_max: Duration::from_secs(5),
        graceful_restart: true,
        restart_time: 120,
        on_shutdown: BgpShutdownAction::GracefulRestart,
        graceful_shutdown: Duration::from_secs(5),
        startup_hold: Duration::ZERO,
        add_path: false,
        announce: RouteTags::default(),
        prepend: RouteTags::default(),
    }
}

const A: AnnounceState = AnnounceState::Announce;
const P: AnnounceState = AnnounceState::Prepend { count: 3 };
const W: AnnounceState = AnnounceState::Withdraw;

async fn settle() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

fn states(s: &steer_types::bgp::BgpStatus) -> Vec<String> {
    s.routes.iter().map(|r| r.state.clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn follows_refuses_lingers_and_fails_static() {
    let (tx, rx) = watch::channel(plan(1, &[("fra1", A), ("ams1", A)]));
    let speaker = BgpSpeaker::spawn(settings(), 0.5, rx);
    let status = speaker.status();
    settle().await;
    assert_eq!(status.snapshot().plan_version, Some(1));
    assert_eq!(states(&status.snapshot()), ["announce", "announce"]);

    // Withdrawing from both PoPs breaks the 50 % rail: refused, kept.
    tx.send_replace(plan(2, &[("fra1", W), ("ams1", W)]));
    settle().await;
    let s = status.snapshot();
    assert_eq!(s.plan_version, Some(1));
    assert!(
        s.refused_plan.as_deref().unwrap().contains("plan 2"),
        "{s:?}"
    );
    assert_eq!(states(&s), ["announce", "announce"]);

    // Soft drain of fra1: prepend, then a planned withdraw that lingers
    // with GRACEFUL_SHUTDOWN for 5 s before it goes.
    tx.send_replace(plan(3, &[("fra1", P), ("ams1", A)]));
    settle().await;
    assert_eq!(states(&status.snapshot()), ["prepend 3", "announce"]);
    assert_eq!(status.snapshot().refused_plan, None);
    tx.send_replace(plan(4, &[("fra1", W), ("ams1", A)]));
    settle().await;
    assert_eq!(
        states(&status.snapshot()),
        ["graceful-shutdown", "announce"]
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(states(&status.snapshot()), ["withdraw", "announce"]);

    // The control plane goes away: nothing changes.
    drop(tx);
    tokio::time::sleep(Duration::from_secs(600)).await;
    let s = status.snapshot();
    assert_eq!(s.plan_version, Some(4));
    assert_eq!(states(&s), ["withdraw", "announce"]);
    speaker.shutdown(Duration::from_secs(1)).await;
}
