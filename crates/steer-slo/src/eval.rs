//! Budget, burn rates and alert states of one SLO at one instant.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use steer_types::Timestamp;

pub use crate::spec::Severity;
use crate::{
    history::{Counts, History},
    spec::{Correction, SloSpec},
};

/// Burn rate over one window: how many times faster than "exactly the
/// budget over the SLO window" errors arrive. 1.0 spends the budget in
/// exactly the window; 14.4 spends 2% of a 30-day budget in an hour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowBurn {
    pub window: Duration,
    pub counts: Counts,
    pub burn_rate: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub severity: Severity,
    pub burn_rate: f64,
    pub long: WindowBurn,
    pub short: WindowBurn,
    pub firing: bool,
    /// Why a rule whose burn rates are over the threshold does not fire
    /// (too few events in the long window), if so.
    pub held_back: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub slo: String,
    pub at: Timestamp,
    /// Events over the SLO window (less corrections).
    pub window_counts: Counts,
    /// Good share over the SLO window; 1.0 without events.
    pub sli: f64,
    /// Bad events the window allows at the current traffic.
    pub budget_events: f64,
    /// 1.0 untouched, 0.0 spent, negative overspent.
    pub budget_remaining: f64,
    /// Burn rate per distinct window of the alert rules, shortest first.
    pub burns: Vec<WindowBurn>,
    pub alerts: Vec<AlertState>,
}

impl Evaluation {
    /// The most severe firing alert.
    pub fn firing(&self) -> Option<Severity> {
        self.alerts
            .iter()
            .filter(|a| a.firing)
            .map(|a| a.severity)
            .min()
    }

    /// Whether the budget is spent (the change process can block on it).
    pub fn exhausted(&self) -> bool {
        self.budget_remaining <= 0.0
    }
}

fn burn(spec: &SloSpec, counts: Counts, window: Duration) -> WindowBurn {
    let share = spec.objective.budget_share();
    let burn_rate = if share > 0.0 {
        counts.bad_ratio() / share
    } else if counts.bad > 0 {
        f64::INFINITY
    } else {
        0.0
    };
    WindowBurn {
        window,
        counts,
        burn_rate,
    }
}

/// Evaluates `spec` over `history` at `now`.
pub fn evaluate(
    spec: &SloSpec,
    history: &History,
    corrections: &[Correction],
    now: Timestamp,
) -> Evaluation {
    let mine: Vec<&Correction> = corrections.iter().filter(|c| c.slo == spec.name).collect();
    let window_counts = history.window(now, spec.window, &mine);
    let budget_events = window_counts.total as f64 * spec.objective.budget_share();
    let budget_remaining = if window_counts.total == 0 {
        1.0
    } else if budget_events > 0.0 {
        1.0 - window_counts.bad as f64 / budget_events
    } else if window_counts.bad > 0 {
        f64::NEG_INFINITY
    } else {
        1.0
    };
    let mut windows: Vec<Duration> = spec.alerts.iter().flat_map(|r| [r.short, r.long]).collect();
    windows.sort();
    windows.dedup();
    let burns: Vec<WindowBurn> = windows
        .iter()
        .map(|w| burn(spec, history.window(now, *w, &mine), *w))
        .collect();
    let find = |w: Duration| {
        burns
            .iter()
            .find(|b| b.window == w)
            .cloned()
            .unwrap_or_else(|| burn(spec, Counts::default(), w))
    };
    let alerts = spec
        .alerts
        .iter()
        .map(|rule| {
            let long = find(rule.long);
            let short = find(rule.short);
            // Within rounding: 1 − 0.999 is not exactly 0.001.
            let threshold = rule.burn_rate * (1.0 - 1e-9);
            let over = long.burn_rate >= threshold && short.burn_rate >= threshold;
            let enough = long.counts.total >= spec.min_events;
            let held_back = (over && !enough).then(|| {
                format!(
                    "{} events over {}, fewer than the {} needed to alert",
                    long.counts.total,
                    crate::rules::duration_text(rule.long),
                    spec.min_events
                )
            });
            AlertState {
                severity: rule.severity,
                burn_rate: rule.burn_rate,
                firing: over && enough,
                long,
                short,
                held_back,
            }
        })
        .collect();
    Evaluation {
        slo: spec.name.clone(),
        at: now,
        window_counts,
        sli: 1.0 - window_counts.bad_ratio(),
        budget_events,
        budget_remaining,
        burns,
        alerts,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::spec::Objective;

    const MIN: i64 = 60_000;

    fn spec() -> SloSpec {
        SloSpec::new("app", "app", Objective::Availability { target: 0.999 })
    }

    fn history() -> History {
        History::new(
            Duration::from_secs(6 * 3600 + 600),
            Duration::from_secs(29 * 86_400),
        )
    }

    /// `rps` requests per second with `bad_share` failing, for `minutes`
    /// ending at `end_min`.
    fn traffic(h: &mut History, end_min: i64, minutes: i64, rps: u64, bad_share: f64) {
        for m in (end_min - minutes)..end_min {
            let total = rps * 60;
            h.record(
                Timestamp(m * MIN),
                Counts::new(total, (total as f64 * bad_share).round() as u64),
            );
        }
    }

    #[test]
    fn a_steady_error_rate_at_the_budget_burns_at_one() {
        let mut h = history();
        traffic(&mut h, 4 * 24 * 60, 4 * 24 * 60, 100, 0.001);
        let e = evaluate(&spec(), &h, &[], Timestamp(4 * 24 * 60 * MIN));
        for b in &e.burns {
            assert!((b.burn_rate - 1.0).abs() < 1e-9, "{b:?}");
        }
        assert!(e.budget_remaining.abs() < 1e-9, "{}", e.budget_remaining);
        // 1× over 3 d and 6 h: the ticket fires, no page.
        assert_eq!(e.firing(), Some(Severity::Ticket));
    }

    #[test]
    fn an_error_burst_pages_then_resolves_when_it_stops() {
        let mut h = history();
        // Clean for a day, then 20% errors (200× the budget) for 10
        // minutes: over the hour, 33×.
        traffic(&mut h, 24 * 60, 24 * 60, 100, 0.0);
        traffic(&mut h, 24 * 60 + 10, 10, 100, 0.2);
        let now = Timestamp((24 * 60 + 10) * MIN);
        let e = evaluate(&spec(), &h, &[], now);
        assert_eq!(e.firing(), Some(Severity::Page));
        let fast = &e.alerts[0];
        assert!(fast.firing && fast.short.burn_rate > 14.4 && fast.long.burn_rate > 14.4);
        // Clean again for 5 minutes: the short window clears; the page
        // resolves though the hour still holds the burst.
        traffic(&mut h, 24 * 60 + 16, 6, 100, 0.0);
        let later = evaluate(&spec(), &h, &[], Timestamp((24 * 60 + 16) * MIN));
        assert!(later.alerts[0].long.burn_rate > 1.0);
        assert!(
            later
                .alerts
                .iter()
                .all(|a| a.severity != Severity::Page || !a.firing)
        );
        // The burst spent enough of the budget for a ticket (1× over 3 d
        // and 6 h): someone should look, nobody need wake up.
        assert_eq!(later.firing(), Some(Severity::Ticket));
    }

    #[test]
    fn a_quiet_slo_does_not_page_on_one_error() {
        let mut h = history();
        h.record(Timestamp(10 * MIN), Counts::new(3, 1));
        let e = evaluate(&spec(), &h, &[], Timestamp(11 * MIN));
        assert_eq!(e.firing(), None);
        assert!(
            e.alerts[0]
                .held_back
                .as_deref()
                .is_some_and(|r| r.contains("3 events"))
        );
    }

    #[test]
    fn corrections_give_the_budget_back() {
        let mut h = history();
        traffic(&mut h, 120, 120, 10, 0.0);
        traffic(&mut h, 130, 10, 10, 0.5);
        let now = Timestamp(130 * MIN);
        let spent = evaluate(&spec(), &h, &[], now);
        assert!(spent.budget_remaining < 0.0);
        let maintenance = Correction {
            slo: "app".into(),
            start: Timestamp(120 * MIN),
            end: Timestamp(130 * MIN),
            reason: "planned upgrade".into(),
            principal: "alice".into(),
        };
        let corrected = evaluate(&spec(), &h, &[maintenance], now);
        assert_eq!(corrected.budget_remaining, 1.0);
        assert_eq!(corrected.firing(), None);
    }

    #[test]
    fn no_traffic_leaves_the_budget_whole() {
        let e = evaluate(&spec(), &history(), &[], Timestamp(1_000 * MIN));
        assert_eq!(e.budget_remaining, 1.0);
        assert_eq!(e.sli, 1.0);
        assert_eq!(e.firing(), None);
    }

    proptest! {
        /// Budget remaining and burn rate over the SLO window agree: the
        /// window's burn rate b leaves 1 − b of the budget.
        #[test]
        fn budget_and_burn_agree(
            minutes in proptest::collection::vec((1u64..1000, 0u64..1000), 1..300),
            target in 0.9f64..0.9999,
        ) {
            let mut s = spec();
            s.objective = Objective::Availability { target };
            s.window = Duration::from_secs(6 * 3600);
            let mut h = history();
            for (i, (total, bad)) in minutes.iter().enumerate() {
                h.record(Timestamp(i as i64 * MIN), Counts::new(*total, bad % (total + 1)));
            }
            let now = Timestamp(minutes.len() as i64 * MIN);
            let e = evaluate(&s, &h, &[], now);
            let b = burn(&s, e.window_counts, s.window);
            prop_assert!((e.budget_remaining - (1.0 - b.burn_rate)).abs() < 1e-9);
            prop_assert!((0.0..=1.0).contains(&e.sli));
        }
    }
}
