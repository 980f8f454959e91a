//! The baseline Steer is compared with: nearest-first failover, as most
//! GSLBs do it. Each region is answered by its own healthy PoPs, equally
//! weighted; if none, by the first fallback region with healthy PoPs. It
//! knows nothing of capacity or load. It uses the real health aggregator,
//! so only the placement differs.

use std::sync::Arc;

use steer_health::{HealthAggregator, ObservedReport};
use steer_types::{
    AnswerSet, Plan, PlanBody, PopHealth, PopPlan, RegionPlan, ServicePlan, Timestamp, Topology,
    WeightedTarget,
    health::{StaleLast, TargetState},
};

pub(crate) struct Naive {
    topology: Arc<Topology>,
    aggregator: HealthAggregator,
    version: u64,
    last: Option<Arc<Plan>>,
}

impl Naive {
    pub(crate) fn new(topology: Arc<Topology>) -> Self {
        let mut aggregator = HealthAggregator::new(
            topology.health.clone(),
            topology.pops.iter().map(|p| p.id.clone()),
        );
        // The naive baseline believes every report: no damping, no freeze.
        let mut guards = steer_types::health_guard::HealthGuards::default();
        guards.damping.enabled = false;
        guards.correlation.enabled = false;
        aggregator.set_guards(guards);
        Self {
            topology,
            aggregator,
            version: 0,
            last: None,
        }
    }

    pub(crate) fn observe(&mut self, reports: &[ObservedReport], now: Timestamp) {
        for r in reports {
            self.aggregator.observe(r, now);
        }
    }

    pub(crate) fn plan(&mut self, now: Timestamp) -> Arc<Plan> {
        let snapshot = self.aggregator.snapshot(now);
        let topo = &self.topology;
        let up = |i: usize| {
            matches!(
                snapshot.pops.get(&topo.pops[i].id).map(|h| h.state),
                None | Some(TargetState::Up | TargetState::Unknown)
                    | Some(TargetState::Stale {
                        last: StaleLast::Up
                    })
            )
        };
        let equal = |pops: &[usize], region| {
            let n = u32::try_from(pops.len()).unwrap_or(1).max(1);
            let weights = steer_policy_weights(n);
            AnswerSet {
                region,
                targets: pops
                    .iter()
                    .zip(weights)
                    .map(|(&i, weight)| WeightedTarget {
                        pop: topo.pops[i].id.clone(),
                        weight,
                        ipv4: topo.pops[i].ipv4,
                        ipv6: topo.pops[i].ipv6,
                    })
                    .collect(),
                reason: steer_types::SetReason::default(),
            }
        };
        let services = topo
            .services
            .iter()
            .map(|s| {
                let regional = topo
                    .regions
                    .iter()
                    .map(|r| {
                        let order = std::iter::once(&r.id).chain(r.fallback.iter());
                        let mut chosen = Vec::new();
                        for region in order {
                            chosen = (0..topo.pops.len())
                                .filter(|&i| &topo.pops[i].region == region && up(i))
                                .collect();
                            if !chosen.is_empty() {
                                break;
                            }
                        }
                        equal(&chosen, Some(r.id.clone()))
                    })
                    .collect();
                let all: Vec<usize> = (0..topo.pops.len()).filter(|&i| up(i)).collect();
                ServicePlan {
                    id: s.id.clone(),
                    fqdn: s.fqdn.clone(),
                    ttl: s.ttl,
                    max_records: s.max_records,
                    regional,
                    global: equal(&all, None),
                    canary: None,
                }
            })
            .collect();
        let body = PlanBody {
            services,
            pops: topo
                .pops
                .iter()
                .enumerate()
                .map(|(i, p)| PopPlan {
                    id: p.id.clone(),
                    region: p.region.clone(),
                    health: if up(i) {
                        PopHealth::Up
                    } else {
                        PopHealth::Down
                    },
                    usable: up(i),
                    drained_by: None,
                    weight: 0,
                    service_drains: Vec::new(),
                    at_target: false,
                    budget_moves: Vec::new(),
                })
                .collect(),
            regions: topo
                .regions
                .iter()
                .map(|r| RegionPlan {
                    id: r.id.clone(),
                    served_by: vec![],
                    level: Default::default(),
                })
                .collect(),
            announcements: vec![],
            rails: vec![],
        };
        if let Some(last) = &self.last
            && last.body == body
        {
            return last.clone();
        }
        self.version += 1;
        let plan = Arc::new(Plan {
            version: self.version,
            computed_at: now,
            body,
        });
        self.last = Some(plan.clone());
        plan
    }
}

/// Equal per-mille weights that sum to 1000.
fn steer_policy_weights(n: u32) -> Vec<u32> {
    let base = 1000 / n;
    let extra = 1000 % n;
    (0..n).map(|i| base + u32::from(i < extra)).collect()
}
