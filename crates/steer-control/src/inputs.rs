//! What a plan's decisions depend on that reports can move: compared
//! before re-planning for a batch of reports, so reports that only move
//! live figures (load wiggles, evidence text, peer latencies) cost no
//! compute. Health transitions, demand the loop adopted (see
//! `refresh_demand`: it moves in steps), reported capacity, load-derived
//! health factors and budget shifts all count. Intents re-plan where they
//! change, and time-driven decisions (ramps, staleness) on every tick.

use steer_types::{
    ServiceId,
    health::{BudgetShift, HealthSnapshot, ObservedDemand, TargetState},
};

type PopInputs = (TargetState, Vec<(ServiceId, TargetState)>, Option<u64>, u64);

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PlanInputs {
    /// Per PoP (snapshot order): state, per-service states, reported
    /// capacity and health factor (as bits: exact comparison).
    pops: Vec<PopInputs>,
    demand: Vec<(ServiceId, ObservedDemand)>,
    budget: Vec<BudgetShift>,
}

impl PlanInputs {
    pub(crate) fn of(health: &HealthSnapshot) -> Self {
        Self {
            pops: health
                .pops
                .values()
                .map(|r| {
                    (
                        r.state,
                        r.services.iter().map(|(s, t)| (s.clone(), *t)).collect(),
                        r.reported_capacity_rps.map(f64::to_bits),
                        r.load.health_factor().to_bits(),
                    )
                })
                .collect(),
            demand: health
                .demand
                .iter()
                .map(|(s, d)| (s.clone(), d.clone()))
                .collect(),
            budget: health.budget.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use steer_types::{PopId, health::PopHealthReport};

    use super::*;

    #[test]
    fn live_figures_do_not_count_decisions_do() {
        let mut h = HealthSnapshot::default();
        let mut r = PopHealthReport::unknown();
        r.state = TargetState::Up;
        r.load_rps = 100.0;
        r.evidence = "probe ok in 3 ms".into();
        h.pops.insert(PopId::new("fra1"), r);
        let base = PlanInputs::of(&h);
        let mut wiggle = h.clone();
        if let Some(p) = wiggle.pops.get_mut(&PopId::new("fra1")) {
            p.load_rps = 130.0;
            p.evidence = "probe ok in 4 ms".into();
        }
        assert_eq!(PlanInputs::of(&wiggle), base);
        for change in [
            |p: &mut PopHealthReport| p.state = TargetState::Down,
            |p: &mut PopHealthReport| p.reported_capacity_rps = Some(5000.0),
            |p: &mut PopHealthReport| p.load.error_ratio = 0.5,
        ] {
            let mut moved = h.clone();
            if let Some(p) = moved.pops.get_mut(&PopId::new("fra1")) {
                change(p);
            }
            assert_ne!(PlanInputs::of(&moved), base);
        }
        let mut demand = h.clone();
        demand
            .demand
            .insert(ServiceId::new("app"), ObservedDemand::default());
        assert_ne!(PlanInputs::of(&demand), base);
    }
}
