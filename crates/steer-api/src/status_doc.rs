//! The status document both steerd's `/status` and `steerctl --output
//! json status` print, built in one place from the `GetStatus` reply.

use steer_proto::v1::{self as pb, ScopeKind};
use steer_types::{
    Intents,
    status::StatusReport,
    status_doc::{
        BreakGlassDoc, ChangeDoc, FrozenDoc, IntentDoc, LoadDoc, PeerDoc, PopDoc, RegionDoc,
        STATUS_SCHEMA_VERSION, ServiceDrainDoc, StatusDocument,
    },
};

use crate::convert::status;

/// The status document ([`StatusDocument`], one schema) from a
/// `GetStatus` reply: steerd's `/status` and `steerctl --output json
/// status` both go through here, so they cannot differ.
pub fn status_document(s: &pb::GetStatusResponse) -> StatusDocument {
    StatusDocument {
        schema_version: STATUS_SCHEMA_VERSION,
        plan_version: s.plan_version,
        plan_computed_unix_ms: s.plan_computed_unix_ms,
        frozen: s.frozen.as_ref().map(|f| FrozenDoc {
            since_unix_ms: f.since_unix_ms,
            pops: f.pops.clone(),
            why: f.why.clone(),
        }),
        pops: s
            .pops
            .iter()
            .map(|p| PopDoc {
                pop: p.pop.clone(),
                region: p.region.clone(),
                health: p.health.clone(),
                phase: p.phase.clone(),
                usable: p.usable,
                drained: p.drained,
                drained_by: (!p.drained_by.is_empty()).then(|| p.drained_by.clone()),
                weight_permille: p.weight_permille,
                reason: p.reason.clone(),
                last_report_age_ms: (p.last_report_age_ms >= 0).then_some(p.last_report_age_ms),
                load_rps: p.load_rps,
                load: LoadDoc {
                    bandwidth_bps: p.bandwidth_bps,
                    error_ratio: p.error_ratio,
                    latency_p50_ms: p.latency_p50_ms,
                    latency_p99_ms: p.latency_p99_ms,
                    degraded: p.degraded,
                },
                announcements: p.announcements.clone(),
                evidence: p.evidence.clone(),
                peers: p
                    .peers
                    .iter()
                    .map(|v| PeerDoc {
                        observer: v.observer.clone(),
                        reachable: v.reachable,
                        detail: v.detail.clone(),
                        latency_ms: v.latency_ms,
                        at_unix_ms: v.at_unix_ms,
                    })
                    .collect(),
                service_drains: p
                    .service_drains
                    .iter()
                    .map(|d| ServiceDrainDoc {
                        service: d.service.clone(),
                        drain: d.drain.clone(),
                    })
                    .collect(),
            })
            .collect(),
        regions: s
            .regions
            .iter()
            .map(|r| RegionDoc {
                region: r.region.clone(),
                served_by: r.served_by.clone(),
                level: r.level.clone(),
                demand_rps: r.demand_rps,
                demand_source: r.demand_source_kind.clone(),
                demand_answers: r.demand_answers,
                demand_detail: r.demand_source.clone(),
            })
            .collect(),
        rails: s.rails.clone(),
        intents: s.intents.iter().map(intent_document).collect(),
        all_drained: s.all_drained.clone(),
        changes: s
            .changes
            .iter()
            .map(|c| ChangeDoc {
                id: c.id.clone(),
                state: c.state.clone(),
                stage: (!c.stage.is_empty()).then(|| c.stage.clone()),
                author: c.author.clone(),
                reason: c.reason.clone(),
                emergency: c.emergency,
                held: (!c.held.is_empty()).then(|| c.held.clone()),
                created_unix_ms: c.created_at_unix_ms,
            })
            .collect(),
        break_glass: s
            .break_glass
            .iter()
            .map(|b| BreakGlassDoc {
                at_unix_ms: b.at_unix_ms,
                principal: b.principal.clone(),
                reason: b.reason.clone(),
                what: b.what.clone(),
            })
            .collect(),
    }
}

fn intent_document(i: &pb::Intent) -> IntentDoc {
    let over = i.kind == "override";
    IntentDoc {
        id: i.id.clone(),
        kind: i.kind.clone(),
        scope: scope_text(i.scope.as_ref()),
        mode: (!over && !i.mode.is_empty()).then(|| i.mode.clone()),
        ramp_ms: i.ramp_ms,
        weight_permille: over.then_some(i.weight_permille),
        forced: i.forced,
        principal: i.principal.clone(),
        reason: i.reason.clone(),
        created_unix_ms: i.created_unix_ms,
        expires_unix_ms: (i.expires_unix_ms > 0).then_some(i.expires_unix_ms),
    }
}

/// `pop fra1`, `region eu-west`, `service app@fra1`.
pub fn scope_text(scope: Option<&pb::Scope>) -> String {
    scope.map_or_else(String::new, |s| match ScopeKind::try_from(s.kind) {
        Ok(ScopeKind::Pop) => format!("pop {}", s.id),
        Ok(ScopeKind::Region) => format!("region {}", s.id),
        Ok(ScopeKind::ServicePop) => format!("service {}@{}", s.service, s.id),
        _ => format!("? {}", s.id),
    })
}

/// The `GetStatus` reply for a published status snapshot (its drains and
/// overrides as the intents), as the operator API answers it.
pub fn status_response(s: &StatusReport) -> pb::GetStatusResponse {
    let intents = Intents {
        drains: s.drains.clone(),
        overrides: s.overrides.clone(),
        next_id: 0,
    };
    status(s, &intents)
}
