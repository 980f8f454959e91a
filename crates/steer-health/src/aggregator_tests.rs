#![allow(clippy::unwrap_used)]

use std::time::Duration;

use steer_types::health_guard::DampingSettings;

use super::*;

fn report(pop: &str, up: bool) -> ObservedReport {
    ObservedReport {
        pop: PopId::new(pop),
        services: vec![(
            ServiceId::new("app"),
            if up {
                Observation::Up
            } else {
                Observation::Down
            },
        )],
        load_rps: 0.0,
        capacity_rps: None,
        evidence: String::new(),
        load: LoadFigures::default(),
        peers: Vec::new(),
        sli: Vec::new(),
        region_load: Default::default(),
    }
}

fn settings(rise: u32, fall: u32) -> AggregatorSettings {
    AggregatorSettings {
        rise,
        fall,
        stale_after: Duration::from_secs(10),
        max_stale: Duration::from_secs(60),
        unknown_health: steer_types::UnknownHealth::AssumeDown,
        guards: HealthGuards::default(),
    }
}

fn agg(rise: u32, fall: u32) -> HealthAggregator {
    HealthAggregator::new(settings(rise, fall), [PopId::new("fra1")])
}

const SIX: [&str; 6] = ["fra1", "ams1", "iad1", "ord1", "sin1", "bom1"];

fn six() -> HealthAggregator {
    HealthAggregator::new(settings(1, 1), SIX.iter().map(PopId::new))
}

fn state(a: &HealthAggregator, now: i64) -> TargetState {
    a.snapshot(Timestamp(now)).pops[&PopId::new("fra1")].state
}

fn state_of(a: &HealthAggregator, pop: &str, now: i64) -> TargetState {
    a.snapshot(Timestamp(now)).pops[&PopId::new(pop)].state
}

#[test]
fn first_report_is_taken_at_face_value() {
    let mut a = agg(3, 3);
    assert_eq!(state(&a, 0), TargetState::Unknown);
    a.observe(&report("fra1", false), Timestamp(0));
    assert_eq!(state(&a, 0), TargetState::Down);
}

#[test]
fn fall_needs_consecutive_failures() {
    let mut a = agg(2, 3);
    a.observe(&report("fra1", true), Timestamp(0));
    a.observe(&report("fra1", false), Timestamp(1));
    a.observe(&report("fra1", false), Timestamp(2));
    assert_eq!(state(&a, 2), TargetState::Up);
    a.observe(&report("fra1", true), Timestamp(3));
    a.observe(&report("fra1", false), Timestamp(4));
    a.observe(&report("fra1", false), Timestamp(5));
    assert_eq!(state(&a, 5), TargetState::Up, "an up resets the count");
    a.observe(&report("fra1", false), Timestamp(6));
    assert_eq!(state(&a, 6), TargetState::Down);
    a.observe(&report("fra1", true), Timestamp(7));
    assert_eq!(state(&a, 7), TargetState::Down);
    a.observe(&report("fra1", true), Timestamp(8));
    assert_eq!(state(&a, 8), TargetState::Up);
}

#[test]
fn silence_is_stale_then_down() {
    let mut a = agg(1, 1);
    a.observe(&report("fra1", true), Timestamp(0));
    assert_eq!(state(&a, 9_999), TargetState::Up);
    assert_eq!(
        state(&a, 10_000),
        TargetState::Stale {
            last: StaleLast::Up
        }
    );
    assert_eq!(state(&a, 70_000), TargetState::Down);
}

#[test]
fn unknown_pop_is_ignored() {
    let mut a = agg(1, 1);
    assert!(!a.observe(&report("nope", true), Timestamp(0)));
}

#[test]
fn a_flapping_pop_is_suppressed_then_reused() {
    let mut a = agg(1, 1);
    let mut up = true;
    a.observe(&report("fra1", up), Timestamp(0));
    // 5 flaps in one minute.
    for i in 1..=5 {
        up = !up;
        a.observe(&report("fra1", up), Timestamp(i * 12_000));
    }
    a.observe(&report("fra1", true), Timestamp(60_500));
    let snap = a.snapshot(Timestamp(60_500));
    let fra1 = &snap.pops[&PopId::new("fra1")];
    assert_eq!(fra1.state, TargetState::Down, "{fra1:?}");
    assert_eq!(fra1.phase, "suppressed");
    assert_eq!(fra1.services[&ServiceId::new("app")], TargetState::Down);
    // Reports keep coming, all up: after the penalty decays it is back.
    let mut t = 60_500;
    while t < 400_000 {
        t += 5_000;
        a.observe(&report("fra1", true), Timestamp(t));
    }
    assert_eq!(state(&a, t), TargetState::Up);
}

#[test]
fn a_reload_changes_the_guards_and_keeps_state() {
    // Damping on: five flaps suppress fra1.
    let mut a = agg(1, 1);
    for i in 0..6 {
        a.observe(&report("fra1", i % 2 == 0), Timestamp(i * 1000));
    }
    a.observe(&report("fra1", true), Timestamp(6_500));
    assert_eq!(state(&a, 6_500), TargetState::Down, "not suppressed");
    // Reloaded with damping off: the next up report is believed at once,
    // and what fra1 went through so far is not forgotten by the reload.
    let mut reloaded = settings(1, 1);
    reloaded.guards.damping.enabled = false;
    a.reconfigure(reloaded, [PopId::new("fra1")]);
    a.observe(&report("fra1", true), Timestamp(7_000));
    assert_eq!(state(&a, 7_000), TargetState::Up);
}

#[test]
fn damping_can_be_disabled() {
    let mut a = agg(1, 1);
    a.set_guards(HealthGuards {
        damping: DampingSettings {
            enabled: false,
            ..DampingSettings::default()
        },
        ..HealthGuards::default()
    });
    for i in 0..10 {
        a.observe(&report("fra1", i % 2 == 0), Timestamp(i * 1000));
    }
    a.observe(&report("fra1", true), Timestamp(10_000));
    assert_eq!(state(&a, 10_000), TargetState::Up);
}

fn peer(observer: &str, target: &str, reachable: bool) -> ObservedReport {
    let mut r = report(observer, true);
    r.peers.push(PeerObservation {
        target: PopId::new(target),
        reachable,
        detail: if reachable {
            "connected".into()
        } else {
            "timed out".into()
        },
        latency_ms: 3,
    });
    r
}

#[test]
fn gray_failure_needs_a_majority_of_observers() {
    let mut a = six();
    a.observe(&report("fra1", true), Timestamp(0));
    a.observe(&peer("ams1", "fra1", false), Timestamp(0));
    a.observe(&peer("iad1", "fra1", true), Timestamp(0));
    a.observe(&peer("ord1", "fra1", true), Timestamp(0));
    assert_eq!(
        state_of(&a, "fra1", 10),
        TargetState::Up,
        "1 of 3 changes nothing"
    );
    a.observe(&peer("iad1", "fra1", false), Timestamp(100));
    let snap = a.snapshot(Timestamp(100));
    let fra1 = &snap.pops[&PopId::new("fra1")];
    assert_eq!(fra1.state, TargetState::Down);
    assert_eq!(fra1.phase, "gray-failure");
    assert!(
        fra1.evidence.contains("2 of 3 observers"),
        "{}",
        fra1.evidence
    );
    assert_eq!(fra1.peers.len(), 3);
    // Observations go stale with the observers' silence.
    a.observe(&report("fra1", true), Timestamp(20_000));
    assert_eq!(state_of(&a, "fra1", 20_000), TargetState::Up);
}

#[test]
fn a_single_failing_observer_never_decides() {
    let mut a = six();
    a.observe(&report("fra1", true), Timestamp(0));
    a.observe(&peer("ams1", "fra1", false), Timestamp(0));
    assert_eq!(state_of(&a, "fra1", 10), TargetState::Up);
}

#[test]
fn all_agents_silent_is_stale_not_down_and_no_freeze() {
    let mut a = six();
    for p in SIX {
        a.observe(&report(p, true), Timestamp(0));
    }
    a.evaluate(Timestamp(0));
    let (_, event) = a.evaluate(Timestamp(15_000));
    assert_eq!(event, None);
    for p in SIX {
        assert_eq!(
            state_of(&a, p, 15_000),
            TargetState::Stale {
                last: StaleLast::Up
            }
        );
    }
}

#[test]
fn correlated_failure_freezes_until_confirmed() {
    let mut a = six();
    for p in SIX {
        a.observe(&report(p, true), Timestamp(0));
    }
    a.evaluate(Timestamp(0));
    for (i, p) in SIX[..4].iter().enumerate() {
        let now = Timestamp(1_000 + i as i64 * 200);
        a.observe(&report(p, false), now);
        a.evaluate(now);
    }
    let now = Timestamp(2_000);
    let (_, event) = a.evaluate(now);
    assert_eq!(event, None, "froze already");
    let info = a.frozen().unwrap();
    assert_eq!(info.pops.len(), 4, "{info:?}");
    for p in SIX {
        assert_eq!(state_of(&a, p, 2_000), TargetState::Up, "{p} held");
    }
    assert_eq!(a.snapshot(now).pops[&PopId::new("fra1")].phase, "frozen");
    let confirmed = a.confirm_failure().unwrap();
    assert_eq!(confirmed.pops.len(), 4);
    a.evaluate(Timestamp(2_100));
    assert!(a.frozen().is_none());
    for p in &SIX[..4] {
        assert_eq!(state_of(&a, p, 2_100), TargetState::Down);
    }
}

#[test]
fn one_pop_down_does_not_freeze() {
    let mut a = six();
    for p in SIX {
        a.observe(&report(p, true), Timestamp(0));
    }
    a.evaluate(Timestamp(0));
    a.observe(&report("fra1", false), Timestamp(1_000));
    let (transitions, event) = a.evaluate(Timestamp(1_000));
    assert_eq!(event, None);
    assert_eq!(transitions.len(), 1);
    assert_eq!(state(&a, 1_000), TargetState::Down);
}

#[test]
fn a_frozen_signal_thaws_when_every_held_pop_recovers() {
    let mut a = six();
    for p in SIX {
        a.observe(&report(p, true), Timestamp(0));
    }
    a.evaluate(Timestamp(0));
    for p in &SIX[..3] {
        a.observe(&report(p, false), Timestamp(1_000));
    }
    assert!(matches!(
        a.evaluate(Timestamp(1_000)).1,
        Some(GuardEvent::Froze(_))
    ));
    for p in &SIX[..3] {
        a.observe(&report(p, true), Timestamp(2_000));
    }
    assert_eq!(a.evaluate(Timestamp(2_000)).1, Some(GuardEvent::Thawed));
}

proptest::proptest! {
    /// Whatever the sequence, a target never changes state on fewer
    /// consecutive disagreeing observations than rise/fall demand.
    #[test]
    fn hysteresis_holds(rise in 1u32..5, fall in 1u32..5, obs in proptest::collection::vec(proptest::bool::ANY, 1..60)) {
        let mut a = agg(rise, fall);
        let mut prev = TargetState::Unknown;
        let mut run = 0u32;
        let mut last_obs: Option<bool> = None;
        for (i, up) in obs.iter().enumerate() {
            run = if last_obs == Some(*up) { run + 1 } else { 1 };
            last_obs = Some(*up);
            a.observe(&report("fra1", *up), Timestamp(i as i64));
            let now = state(&a, i as i64);
            if now != prev && prev != TargetState::Unknown {
                let need = if *up { rise } else { fall };
                proptest::prop_assert!(run >= need, "flipped after {run} < {need}");
            }
            prev = now;
        }
    }

    /// Five flaps within a minute, at any spacing, leave the PoP held down
    /// even though its agent now says up.
    #[test]
    fn five_flaps_in_a_minute_suppress(gaps in proptest::collection::vec(1i64..12_000, 5)) {
        let mut a = agg(1, 1);
        a.observe(&report("fra1", true), Timestamp(0));
        let mut t = 0;
        let mut up = true;
        for g in gaps {
            t += g;
            up = !up;
            a.observe(&report("fra1", up), Timestamp(t));
        }
        proptest::prop_assert!(t <= 60_000);
        t += 1;
        a.observe(&report("fra1", true), Timestamp(t));
        let snap = a.snapshot(Timestamp(t));
        let fra1 = &snap.pops[&PopId::new("fra1")];
        proptest::prop_assert_eq!(fra1.state, TargetState::Down);
        proptest::prop_assert_eq!(fra1.phase.as_str(), "suppressed");
    }
}
