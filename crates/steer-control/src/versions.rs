//! Plan versions mean decisions: live figures (silence ages, damping
//! penalties, probe latencies in the agents' evidence) move the evidence
//! published beside the plan, never the version.

use std::sync::Arc;

use steer_health::ObservedReport;
use steer_types::{PopHealth, Timestamp};

use crate::{
    ControlLoop, MemStore, ReplayClock,
    test_world::{report, topology},
};

const START: i64 = 1_000_000;

fn new_loop() -> (ControlLoop, ReplayClock) {
    let clock = ReplayClock::default();
    clock.set(Timestamp(START));
    let (c, _h) = ControlLoop::new(
        Arc::new(topology()),
        Box::new(MemStore::default()),
        Box::new(clock.clone()),
    )
    .unwrap();
    (c, clock)
}

/// A report whose evidence carries a figure that changes every time, as a
/// real probe's latency does.
fn noisy(pop: &str, up: bool, second: i64) -> ObservedReport {
    ObservedReport {
        evidence: format!("app: http 200 in {} ms", 3 + second % 17),
        ..report(pop, up, 0.0)
    }
}

fn fra1_health(c: &ControlLoop) -> PopHealth {
    c.plan().pop("fra1").unwrap().health
}

/// One second of the loop: the listed PoPs report, then a tick.
fn second(c: &mut ControlLoop, clock: &ReplayClock, t: i64, reports: Vec<ObservedReport>) {
    clock.set(Timestamp(START + t * 1000));
    if !reports.is_empty() {
        c.step_reports(&reports);
    }
    clock.set(Timestamp(START + t * 1000 + 500));
    c.step_tick();
}

#[test]
fn a_silent_pop_moves_the_version_only_when_its_state_changes() {
    let (mut c, clock) = new_loop();
    let all = ["fra1", "ams1", "iad1", "ord1"];
    for t in 0..5 {
        let reports = all.iter().map(|p| noisy(p, true, t)).collect();
        second(&mut c, &clock, t, reports);
    }
    assert_eq!(fra1_health(&c), PopHealth::Up);
    let quiet_from = c.plan().version;

    // fra1 goes silent for 90 s (stale after 10 s, down after 10 + 60 s);
    // the others keep reporting, with evidence that changes every second.
    let mut transitions = 0;
    let mut bumps = 0;
    let mut evidence_seen = std::collections::BTreeSet::new();
    let mut prev = c.plan();
    for t in 5..95 {
        let reports = all[1..].iter().map(|p| noisy(p, true, t)).collect();
        second(&mut c, &clock, t, reports);
        let now = c.plan();
        if now.version != prev.version {
            bumps += 1;
            let changes = now.changes_since(&prev);
            assert!(
                !changes.is_empty(),
                "v{} published with no visible change",
                now.version
            );
        }
        if now.pop("fra1").unwrap().health != prev.pop("fra1").unwrap().health {
            transitions += 1;
        }
        evidence_seen.insert(c.evidence().pop("fra1").unwrap_or("").to_owned());
        prev = now;
    }
    assert_eq!(fra1_health(&c), PopHealth::Down);
    // up -> stale-up -> down: two decisions, two versions.
    assert_eq!(transitions, 2);
    assert_eq!(bumps, 2, "versions {} -> {}", quiet_from, c.plan().version);
    // The evidence did move (the silence is counted, beside the plan).
    assert!(
        evidence_seen.len() > 60,
        "evidence did not follow the silence: {evidence_seen:?}"
    );
}

#[test]
fn a_damped_pops_decaying_penalty_moves_nothing() {
    let (mut c, clock) = new_loop();
    let others = ["ams1", "iad1", "ord1"];
    let mut t = 0;
    // fra1 flaps: two reports per settled flip (rise = fall = 2).
    for flip in 0..10 {
        for _ in 0..2 {
            let mut reports: Vec<_> = others.iter().map(|p| noisy(p, true, t)).collect();
            reports.push(noisy("fra1", flip % 2 == 1, t));
            second(&mut c, &clock, t, reports);
            t += 1;
        }
    }
    // Then fra1 is steadily up, but held down while its penalty decays.
    let mut suppressed_versions = std::collections::BTreeSet::new();
    let mut penalties = std::collections::BTreeSet::new();
    let mut released_at = None;
    while t < 600 {
        let reports = others
            .iter()
            .chain(["fra1"].iter())
            .map(|p| noisy(p, true, t))
            .collect();
        second(&mut c, &clock, t, reports);
        let evidence = c.evidence().pop("fra1").unwrap_or("").to_owned();
        if evidence.contains("suppressed") {
            assert_eq!(fra1_health(&c), PopHealth::Down, "suppressed but usable");
            suppressed_versions.insert(c.plan().version);
            penalties.insert(evidence);
        } else if released_at.is_none() {
            released_at = Some(t);
            assert_eq!(fra1_health(&c), PopHealth::Up);
        }
        t += 1;
    }
    assert!(released_at.is_some(), "fra1 never came back");
    assert!(
        penalties.len() > 30,
        "the penalty was not seen decaying: {penalties:?}"
    );
    assert_eq!(
        suppressed_versions.len(),
        1,
        "the decaying penalty moved the plan: versions {suppressed_versions:?}"
    );
}
