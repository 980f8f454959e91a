//! The control loop's SLO snapshot as the `GetSlos` reply: what steerctl
//! reads over gRPC and `/status` renders (through
//! [`steer_api::slo_document`]), from one conversion.

use steer_control::SloSnapshot;
use steer_proto::v1 as pb;
use steer_slo::{Objective, rules::duration_text};

pub(crate) fn slo_response(snapshot: &SloSnapshot) -> pb::GetSlosResponse {
    pb::GetSlosResponse {
        evaluated_unix_ms: snapshot.at.0,
        slos: snapshot
            .evaluations
            .iter()
            .map(|e| {
                let spec = snapshot.specs.iter().find(|s| s.name == e.slo);
                pb::SloStatus {
                    name: e.slo.clone(),
                    service: spec.map(|s| s.service.to_string()).unwrap_or_default(),
                    kind: spec
                        .map(|s| match s.objective {
                            Objective::Availability { .. } => "availability",
                            Objective::Latency { .. } => "latency",
                        })
                        .unwrap_or_default()
                        .to_owned(),
                    objective: spec.map_or(0.0, |s| s.objective.target()),
                    window: spec.map(|s| duration_text(s.window)).unwrap_or_default(),
                    region: spec
                        .and_then(|s| s.region.as_ref().map(ToString::to_string))
                        .unwrap_or_default(),
                    pop: spec
                        .and_then(|s| s.pop.as_ref().map(ToString::to_string))
                        .unwrap_or_default(),
                    events: e.window_counts.total,
                    bad_events: e.window_counts.bad,
                    sli: e.sli,
                    budget_remaining: e.budget_remaining,
                    exhausted: e.exhausted(),
                    burn_rates: e
                        .burns
                        .iter()
                        .map(|b| pb::SloBurn {
                            window: duration_text(b.window),
                            window_s: b.window.as_secs(),
                            burn_rate: b.burn_rate,
                            events: b.counts.total,
                            bad_events: b.counts.bad,
                        })
                        .collect(),
                    alerts: e
                        .alerts
                        .iter()
                        .map(|a| pb::SloAlert {
                            severity: a.severity.to_string(),
                            burn_rate: a.burn_rate,
                            long_window: duration_text(a.long.window),
                            short_window: duration_text(a.short.window),
                            firing: a.firing,
                            held_back: a.held_back.clone().unwrap_or_default(),
                        })
                        .collect(),
                    firing: e.firing().map(|s| s.to_string()).unwrap_or_default(),
                    pops: snapshot
                        .pop_burn
                        .get(&e.slo)
                        .map(|pops| {
                            pops.iter()
                                .map(|p| pb::SloPopBurn {
                                    pop: p.pop.clone(),
                                    window_s: p.window_s,
                                    burn_rate: p.burn_rate,
                                    events: p.events,
                                    shifted_share: p.shifted_share,
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect(),
        corrections: snapshot
            .corrections
            .iter()
            .map(|c| pb::SloCorrection {
                slo: c.slo.clone(),
                start_unix_ms: c.start.0,
                end_unix_ms: c.end.0,
                reason: c.reason.clone(),
                principal: c.principal.clone(),
            })
            .collect(),
    }
}
