//! What `/status` and `GetStatus` show: the plan joined with health,
//! intents, changes and break-glass steps, published for lock-free readers.

use std::sync::Arc;

use steer_types::{
    AnnounceReason, SetBasis,
    status::{PopStatus, RegionStatus, StatusReport},
};

use crate::ControlLoop;

impl ControlLoop {
    /// Refreshes the status snapshot readers load (ages move every tick,
    /// so it is stored each time rather than diffed).
    pub(crate) fn publish_status(&self) {
        self.status.store(Arc::new(self.status()));
    }

    pub(crate) fn status(&self) -> StatusReport {
        let plan = self.current();
        let evidence = self.evidence();
        let now = self.clock.now();
        let snapshot = self.aggregator.snapshot(now);
        StatusReport {
            plan_version: plan.version,
            plan_computed_at: plan.computed_at,
            pops: plan
                .body
                .pops
                .iter()
                .map(|p| {
                    let h = snapshot.pops.get(&p.id);
                    PopStatus {
                        pop: p.id.clone(),
                        region: p.region.clone(),
                        health: p.health.as_str().to_owned(),
                        usable: p.usable,
                        drained_by: p.drained_by.clone(),
                        weight_permille: p.weight,
                        reason: self.pop_reason(p, h.map(|h| h.evidence.as_str())),
                        last_report_age_ms: h
                            .and_then(|h| h.last_report)
                            .map(|t| now.unix_ms() - t.unix_ms()),
                        load_rps: h.map_or(0.0, |h| h.load_rps),
                        announcements: plan
                            .body
                            .announcements
                            .iter()
                            .filter(|a| a.pop == p.id)
                            .map(|a| match (&a.reason, h) {
                                (AnnounceReason::Unhealthy { .. }, Some(h)) => format!(
                                    "{} {}: {}: {}",
                                    a.prefix,
                                    a.state.describe(),
                                    a.reason,
                                    h.evidence
                                ),
                                _ => format!("{} {}: {}", a.prefix, a.state.describe(), a.reason),
                            })
                            .collect(),
                        phase: h.map_or_else(String::new, |h| h.phase.clone()),
                        evidence: h.map_or_else(String::new, |h| h.evidence.clone()),
                        peers: h.map_or_else(Vec::new, |h| h.peers.clone()),
                        load: h.map(|h| h.load).unwrap_or_default(),
                        service_drains: p.service_drains.clone(),
                    }
                })
                .collect(),
            regions: plan
                .body
                .regions
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let figures = evidence.services.first().and_then(|s| s.regional.get(i));
                    RegionStatus {
                        region: r.id.clone(),
                        served_by: r.served_by.clone(),
                        level: r.level.as_str().to_owned(),
                        demand_rps: figures.map_or(0.0, |f| f.demand_rps),
                        demand_source: figures.map(|f| f.source).unwrap_or_default(),
                    }
                })
                .collect(),
            drains: self.intents.drains.clone(),
            overrides: self.intents.overrides.clone(),
            rails: plan
                .body
                .rails
                .iter()
                .enumerate()
                .map(|(i, r)| match evidence.rail_wanted.get(i).copied() {
                    Some(w) if w > 0 => format!("{r} (wants {w}‰)"),
                    _ => r.to_string(),
                })
                .collect(),
            frozen: self.aggregator.frozen(),
            all_drained: plan
                .body
                .services
                .iter()
                .filter(|s| {
                    std::iter::once(&s.global)
                        .chain(&s.regional)
                        .any(|set| set.reason.basis == SetBasis::AllDrained)
                })
                .map(|s| s.id.clone())
                .collect(),
            changes: self.change_briefs(),
            break_glass: self.break_glass_shown(),
        }
    }

    /// Why a PoP carries the traffic it does, for operators: the drains
    /// in force (who, why; draining while a soft drain still leaves it
    /// traffic, per service when narrower), else its health evidence.
    fn pop_reason(&self, p: &steer_types::PopPlan, evidence: Option<&str>) -> String {
        let drain = |id: &str| self.intents.drains.iter().find(|d| d.id == id);
        let mut parts = Vec::new();
        if let Some(id) = &p.drained_by {
            let verb = if p.usable { "draining" } else { "drained" };
            parts.push(match drain(id) {
                Some(d) => format!("{verb} by {} ({}): {}", d.id, d.principal, d.reason),
                None => format!("{verb} by {id}"),
            });
        }
        for sd in &p.service_drains {
            parts.push(match drain(&sd.drain) {
                Some(d) => format!(
                    "{} drained by {} ({}): {}",
                    sd.service, d.id, d.principal, d.reason
                ),
                None => format!("{} drained by {}", sd.service, sd.drain),
            });
        }
        if p.drained_by.is_none() {
            parts.push(p.describe(evidence));
        }
        for m in &p.budget_moves {
            let burn = self
                .slo
                .shifts
                .iter()
                .find(|b| b.pop == p.id && b.service == m.service && b.slo == m.slo);
            parts.push(match burn {
                Some(b) => format!(
                    "{}: up to {}% of its traffic moved, budget burn {:.1}x (SLO {})",
                    m.service,
                    m.permille / 10,
                    b.burn_rate,
                    m.slo
                ),
                None => format!(
                    "{}: up to {}% of its traffic moved (SLO {})",
                    m.service,
                    m.permille / 10,
                    m.slo
                ),
            });
        }
        parts.join("; ")
    }
}
