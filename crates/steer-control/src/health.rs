//! Health-side duties of the control loop: running the aggregator's
//! evaluation (transitions, correlated-failure guard) before each compute,
//! logging and counting what it found, and the operator's confirmation of a
//! frozen failure.

use steer_command::ApiError;
use steer_health::GuardEvent;
use steer_types::{Timestamp, health::TargetState, timeline::EventKind};
use tracing::{info, warn};

use crate::ControlLoop;

fn state_label(s: TargetState) -> &'static str {
    match s {
        TargetState::Unknown => "unknown",
        TargetState::Up => "up",
        TargetState::Down => "down",
        TargetState::Stale { .. } => "stale",
    }
}

impl ControlLoop {
    /// Runs before every compute, with the compute's `now`.
    /// Returns whether health state moved (a transition or a guard event),
    /// which a recording must capture even when no plan changes.
    pub(crate) fn evaluate_health(&mut self, now: Timestamp) -> bool {
        let (transitions, event) = self.aggregator.evaluate(now);
        let moved = !transitions.is_empty() || event.is_some();
        let snapshot = (!transitions.is_empty()).then(|| self.aggregator.snapshot(now));
        for t in transitions {
            info!(pop = %t.pop, from = ?t.from, to = ?t.to, phase = %t.phase, "health state changed");
            let evidence = snapshot
                .as_ref()
                .and_then(|s| s.pops.get(&t.pop))
                .map_or_else(String::new, |h| h.evidence.clone());
            let region = self
                .topology
                .pop(t.pop.as_str())
                .map(|p| p.region.to_string());
            self.note(
                EventKind::Health,
                std::iter::once(t.pop.to_string()).chain(region).collect(),
                None,
                format!(
                    "{} {} -> {} ({})",
                    t.pop,
                    state_label(t.from),
                    state_label(t.to),
                    t.phase
                ),
                evidence,
            );
            metrics::counter!(
                "steer_health_state_transitions_total",
                "pop" => t.pop.to_string(),
                "to" => state_label(t.to)
            )
            .increment(1);
        }
        match event {
            Some(GuardEvent::Froze(info)) => {
                warn!(pops = ?info.pops, why = %info.why, "correlated failure: health frozen (fail static)");
                metrics::counter!("steer_health_freezes_total").increment(1);
                let pops: Vec<String> = info.pops.iter().map(ToString::to_string).collect();
                self.note(
                    EventKind::Freeze,
                    pops.clone(),
                    None,
                    format!("health frozen (fail static): {}", pops.join(", ")),
                    info.why.clone(),
                );
            }
            Some(GuardEvent::Thawed) => {
                info!("every frozen PoP recovered by itself: health no longer frozen");
                self.note(
                    EventKind::Freeze,
                    Vec::new(),
                    None,
                    "health no longer frozen: every frozen PoP recovered by itself".into(),
                    String::new(),
                );
            }
            None => {}
        }
        let frozen = self.aggregator.frozen();
        metrics::gauge!("steer_health_frozen").set(f64::from(u8::from(frozen.is_some())));
        metrics::gauge!("steer_health_frozen_pops")
            .set(frozen.map_or(0.0, |f| f.pops.len() as f64));
        moved
    }

    /// Per-PoP health gauges: state (one series per state, 1 for the current
    /// one) and seconds since the last report.
    pub(crate) fn export_health_metrics(&self, now: Timestamp) {
        for (pop, h) in &self.aggregator.snapshot(now).pops {
            for phase in [
                "unknown",
                "up",
                "down",
                "stale-up",
                "stale-down",
                "suppressed",
                "gray-failure",
                "frozen",
            ] {
                metrics::gauge!("steer_health_pop_state", "pop" => pop.to_string(), "state" => phase)
                    .set(f64::from(u8::from(h.phase == phase)));
            }
            // Never reported: silent since steerd started, which an alert
            // on the age catches as it would a PoP that went quiet.
            let last = h.last_report.unwrap_or(self.started);
            metrics::gauge!("steer_health_last_report_age_seconds", "pop" => pop.to_string())
                .set(now.since(last).as_secs_f64());
        }
    }

    /// Registers the health series at zero for every configured PoP, so
    /// they exist from the first scrape (README: every documented series
    /// is there at start), not only after the first transition or freeze.
    pub(crate) fn register_health_metrics(&self) {
        metrics::counter!("steer_health_freezes_total").increment(0);
        metrics::gauge!("steer_health_frozen").set(0.0);
        metrics::gauge!("steer_health_frozen_pops").set(0.0);
        for pop in &self.topology.pops {
            for to in [
                TargetState::Unknown,
                TargetState::Up,
                TargetState::Down,
                TargetState::Stale {
                    last: steer_types::health::StaleLast::Up,
                },
            ] {
                metrics::counter!(
                    "steer_health_state_transitions_total",
                    "pop" => pop.id.to_string(),
                    "to" => state_label(to)
                )
                .increment(0);
            }
        }
        self.export_health_metrics(self.started);
    }

    /// The operator says the frozen failure is real: live health applies.
    pub(crate) fn confirm_failure(
        &mut self,
        reason: String,
        principal: String,
    ) -> Result<(Vec<String>, u64), ApiError> {
        let Some(info) = self.aggregator.frozen() else {
            return Err(ApiError::FailedPrecondition(
                "health is not frozen; nothing to confirm".into(),
            ));
        };
        let pops: Vec<String> = info.pops.iter().map(ToString::to_string).collect();
        // `commit` sets the plan version the confirmation produces.
        let mut entry = self.entry(principal, "confirm-failure", pops.join(","), reason);
        entry.detail = format!("frozen: {}", info.why);
        let mut snapshot = self.aggregator.clone();
        self.aggregator.confirm_failure();
        // Recorded only once stored: a refused confirmation is not an input.
        let outcome = self.commit_then_record(self.intents.clone(), vec![entry], |at| {
            Some(crate::Recorded::ConfirmFailure { at })
        });
        match outcome {
            Ok(version) => {
                warn!(
                    ?pops,
                    version, "operator confirmed the correlated failure; health unfrozen"
                );
                Ok((pops, version))
            }
            Err(e) => {
                // Not durable: keep the freeze as it was.
                std::mem::swap(&mut self.aggregator, &mut snapshot);
                Err(e)
            }
        }
    }
}
