//! Proto ⇄ domain conversions, with validation on the way in.

use std::time::Duration;

use steer_proto::v1::{self as pb, ScopeKind};
use steer_types::{
    DrainMode, DrainScope, Intents, PopId, RegionId, ServiceId, audit::AuditEntry,
    projection::Projection, status::StatusReport,
};
use tonic::Status;

/// Longest PoP, region or service id the API accepts.
pub(crate) const MAX_ID_BYTES: usize = 64;
/// Longest free-text reason.
pub(crate) const MAX_REASON_BYTES: usize = 1024;
/// Longest principal, audit scope filter or explained name (a DNS name is
/// at most 255 bytes).
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// Counts a request refused for a field over its size or outside its
/// alphabet; `field` is the metric label.
fn refuse_field(field: &'static str, why: String) -> Status {
    metrics::counter!("steer_api_field_rejected_total", "field" => field).increment(1);
    Status::invalid_argument(why)
}

/// A PoP, region or service id: 1 to 64 bytes of `[A-Za-z0-9._-]`, with
/// surrounding whitespace trimmed. Ids end up in metric labels, DNS views
/// and audit lines, so nothing else gets past the boundary.
pub(crate) fn id<'a>(text: &'a str, field: &'static str) -> Result<&'a str, Status> {
    let t = text.trim();
    if t.is_empty() {
        return Err(refuse_field(field, format!("`{field}` is required")));
    }
    if t.len() > MAX_ID_BYTES {
        return Err(refuse_field(
            field,
            format!(
                "`{field}` is {} bytes long; ids are at most {MAX_ID_BYTES}",
                t.len()
            ),
        ));
    }
    if let Some(bad) = t
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(refuse_field(
            field,
            format!("`{field}` holds {bad:?}; ids use only letters, digits, '.', '_' and '-'"),
        ));
    }
    Ok(t)
}

/// A DNS name asked about (a zone): 1 to 255 bytes of letters, digits,
/// '-', '_' and dots, no empty label, each label at most 63 bytes;
/// returned lower case with the trailing dot.
pub(crate) fn dns_name(text: &str, field: &'static str) -> Result<String, Status> {
    let t = text.trim();
    if t.is_empty() {
        return Err(refuse_field(field, format!("`{field}` is required")));
    }
    let mut name = t.to_ascii_lowercase();
    if !name.ends_with('.') {
        name.push('.');
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(refuse_field(
            field,
            format!(
                "`{field}` is {} bytes long; at most {MAX_NAME_BYTES}",
                t.len()
            ),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(refuse_field(
            field,
            format!("`{field}` holds {bad:?}; a DNS name uses letters, digits, '-', '_' and '.'"),
        ));
    }
    let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
    if name != "." && labels.iter().any(|l| l.is_empty() || l.len() > 63) {
        return Err(refuse_field(
            field,
            format!("`{field}` {t:?} has an empty label or one over 63 bytes"),
        ));
    }
    Ok(name)
}

/// A DS record for GetDnssecDs.
pub(crate) fn dnssec_ds(ds: &steer_types::DnssecDs) -> pb::DnssecDs {
    use steer_types::DnssecKeyState as S;
    let key_state = match ds.key_state {
        S::Published => pb::DnssecKeyState::Published,
        S::Active => pb::DnssecKeyState::Active,
        S::Retired => pb::DnssecKeyState::Inactive,
        S::Generated | S::Removed => pb::DnssecKeyState::Unspecified,
    };
    pb::DnssecDs {
        zone: ds.zone.clone(),
        key_tag: u32::from(ds.key_tag),
        algorithm: u32::from(ds.algorithm),
        digest_type: u32::from(ds.digest_type),
        digest: ds.digest.clone(),
        key_state: key_state as i32,
    }
}

/// An optional free-text field (audit filters, explained names): at most
/// `max` bytes.
pub(crate) fn bounded<'a>(
    text: &'a str,
    field: &'static str,
    max: usize,
) -> Result<&'a str, Status> {
    if text.len() > max {
        return Err(refuse_field(
            field,
            format!("`{field}` is {} bytes long; at most {max}", text.len()),
        ));
    }
    Ok(text)
}

pub(crate) fn scope(scope: Option<&pb::Scope>) -> Result<DrainScope, Status> {
    let s = scope.ok_or_else(|| Status::invalid_argument("`scope` is required"))?;
    if s.id.trim().is_empty() {
        return Err(Status::invalid_argument(
            "`scope.id` must name a pop or region",
        ));
    }
    let scope_id = id(&s.id, "scope.id")?;
    match ScopeKind::try_from(s.kind) {
        Ok(ScopeKind::Pop) => Ok(DrainScope::Pop {
            pop: PopId::new(scope_id),
        }),
        Ok(ScopeKind::Region) => Ok(DrainScope::Region {
            region: RegionId::new(scope_id),
        }),
        Ok(ScopeKind::ServicePop) if !s.service.trim().is_empty() => Ok(DrainScope::ServicePop {
            service: ServiceId::new(id(&s.service, "scope.service")?),
            pop: PopId::new(scope_id),
        }),
        Ok(ScopeKind::ServicePop) => Err(Status::invalid_argument(
            "a service-at-pop scope needs `scope.service`",
        )),
        _ => Err(Status::invalid_argument(
            "`scope.kind` must be SCOPE_KIND_POP, SCOPE_KIND_REGION or SCOPE_KIND_SERVICE_POP",
        )),
    }
}

pub(crate) fn scope_to_proto(scope: &DrainScope) -> pb::Scope {
    match scope {
        DrainScope::Pop { pop } => pb::Scope {
            kind: ScopeKind::Pop.into(),
            id: pop.to_string(),
            service: String::new(),
        },
        DrainScope::Region { region } => pb::Scope {
            kind: ScopeKind::Region.into(),
            id: region.to_string(),
            service: String::new(),
        },
        DrainScope::ServicePop { service, pop } => pb::Scope {
            kind: ScopeKind::ServicePop.into(),
            id: pop.to_string(),
            service: service.to_string(),
        },
    }
}

pub(crate) fn reason(text: &str) -> Result<String, Status> {
    let t = text.trim();
    if t.is_empty() {
        return Err(Status::invalid_argument(
            "`reason` is required: say why, for the audit log and the next on-call",
        ));
    }
    if t.len() > MAX_REASON_BYTES {
        return Err(refuse_field(
            "reason",
            format!("`reason` is longer than {MAX_REASON_BYTES} bytes"),
        ));
    }
    Ok(t.to_owned())
}

pub(crate) fn mode(m: i32) -> Result<DrainMode, Status> {
    match pb::DrainMode::try_from(m) {
        Ok(pb::DrainMode::Soft) => Ok(DrainMode::Soft),
        Ok(pb::DrainMode::Unspecified | pb::DrainMode::Hard) => Ok(DrainMode::Hard),
        Err(_) => Err(Status::invalid_argument(format!("unknown drain mode {m}"))),
    }
}

/// Bounded durations: a week at most for ramps, a year for expiry.
pub(crate) fn duration(ms: u64, what: &str, max: Duration) -> Result<Option<Duration>, Status> {
    if ms == 0 {
        return Ok(None);
    }
    let d = Duration::from_millis(ms);
    if d > max {
        return Err(Status::invalid_argument(format!(
            "`{what}` is longer than {}s",
            max.as_secs()
        )));
    }
    Ok(Some(d))
}

pub(crate) fn projection(p: &Projection) -> pb::Projection {
    pb::Projection {
        pops: p
            .pops
            .iter()
            .map(|x| pb::PopProjection {
                pop: x.pop.to_string(),
                capacity_rps: x.capacity_rps,
                current_rps: x.current_rps,
                projected_rps: x.projected_rps,
                projected_utilisation: x.projected_utilisation,
            })
            .collect(),
        over_capacity: p.over_capacity,
        summary: p.summary.clone(),
    }
}

pub(crate) fn intents(i: &Intents) -> Vec<pb::Intent> {
    let drains = i.drains.iter().map(|d| pb::Intent {
        id: d.id.clone(),
        kind: "drain".into(),
        scope: Some(scope_to_proto(&d.scope)),
        reason: d.reason.clone(),
        principal: d.principal.clone(),
        created_unix_ms: d.created.unix_ms(),
        expires_unix_ms: d.expires.map_or(0, |t| t.unix_ms()),
        mode: match d.mode {
            DrainMode::Soft => "soft".into(),
            DrainMode::Hard => "hard".into(),
        },
        ramp_ms: u64::try_from(d.ramp.as_millis()).unwrap_or(u64::MAX),
        forced: d.forced,
        weight_permille: 0,
    });
    let overrides = i.overrides.iter().map(|o| pb::Intent {
        id: o.id.clone(),
        kind: "override".into(),
        scope: Some(scope_to_proto(&DrainScope::Pop { pop: o.pop.clone() })),
        reason: o.reason.clone(),
        principal: o.principal.clone(),
        created_unix_ms: o.created.unix_ms(),
        expires_unix_ms: o.expires.map_or(0, |t| t.unix_ms()),
        mode: String::new(),
        ramp_ms: 0,
        forced: false,
        weight_permille: o.weight,
    });
    drains.chain(overrides).collect()
}

pub(crate) fn status(s: &StatusReport, intents_list: &Intents) -> pb::GetStatusResponse {
    pb::GetStatusResponse {
        plan_version: s.plan_version,
        plan_computed_unix_ms: s.plan_computed_at.unix_ms(),
        pops: s
            .pops
            .iter()
            .map(|p| pb::PopStatus {
                pop: p.pop.to_string(),
                region: p.region.to_string(),
                health: p.health.clone(),
                drained: p.drained_by.is_some(),
                weight_permille: p.weight_permille,
                reason: p.reason.clone(),
                last_report_age_ms: p.last_report_age_ms.unwrap_or(-1),
                drained_by: p.drained_by.clone().unwrap_or_default(),
                usable: p.usable,
                load_rps: p.load_rps,
                announcements: p.announcements.clone(),
                phase: p.phase.clone(),
                evidence: p.evidence.clone(),
                peers: p
                    .peers
                    .iter()
                    .map(|v| pb::PeerView {
                        observer: v.observer.to_string(),
                        reachable: v.reachable,
                        detail: v.detail.clone(),
                        latency_ms: v.latency_ms,
                        at_unix_ms: v.at.unix_ms(),
                    })
                    .collect(),
                bandwidth_bps: p.load.bandwidth_bps,
                error_ratio: p.load.error_ratio,
                latency_p50_ms: p.load.latency_p50_ms,
                latency_p99_ms: p.load.latency_p99_ms,
                service_drains: p
                    .service_drains
                    .iter()
                    .map(|d| pb::ServiceDrain {
                        service: d.service.to_string(),
                        drain: d.drain.clone(),
                    })
                    .collect(),
                degraded: p.load.degraded,
            })
            .collect(),
        intents: intents(intents_list),
        regions: s
            .regions
            .iter()
            .map(|r| pb::RegionStatus {
                region: r.region.to_string(),
                served_by: r.served_by.iter().map(ToString::to_string).collect(),
                level: r.level.clone(),
                demand_rps: r.demand_rps,
                demand_source: r.demand_source.to_string(),
                demand_source_kind: r.demand_source.kind().to_owned(),
                demand_answers: match r.demand_source {
                    steer_types::DemandSource::Answers { answers, .. }
                    | steer_types::DemandSource::RegionLoad { answers, .. } => answers,
                    _ => 0,
                },
            })
            .collect(),
        rails: s.rails.clone(),
        frozen: s.frozen.as_ref().map(|f| pb::Freeze {
            since_unix_ms: f.since.unix_ms(),
            pops: f.pops.iter().map(ToString::to_string).collect(),
            why: f.why.clone(),
        }),
        all_drained: s.all_drained.iter().map(ToString::to_string).collect(),
        changes: s
            .changes
            .iter()
            .map(|c| pb::StatusChange {
                id: c.id.clone(),
                state: c.state.clone(),
                stage: c.stage.clone().unwrap_or_default(),
                author: c.author.clone(),
                reason: c.reason.clone(),
                emergency: c.emergency,
                held: c.held.clone().unwrap_or_default(),
                created_at_unix_ms: c.created_at.unix_ms(),
            })
            .collect(),
        break_glass: s
            .break_glass
            .iter()
            .map(|b| pb::BreakGlass {
                at_unix_ms: b.at.unix_ms(),
                principal: b.principal.clone(),
                reason: b.reason.clone(),
                what: b.what.clone(),
            })
            .collect(),
        ..Default::default()
    }
}

pub(crate) fn bgp_status(b: &steer_types::bgp::BgpStatus, resp: &mut pb::GetStatusResponse) {
    resp.bgp_peers = b
        .peers
        .iter()
        .map(|p| pb::BgpPeerStatus {
            pop: p.pop.to_string(),
            peer: p.peer.clone(),
            peer_as: p.peer_as,
            state: p.state.clone(),
            uptime_secs: p.uptime_secs.map_or(-1, |s| s as i64),
            flaps: p.flaps,
            prefixes_sent: p.prefixes_sent as u32,
            updates_sent: p.updates_sent,
            last_error: p.last_error.clone().unwrap_or_default(),
        })
        .collect();
    resp.bgp_routes = b
        .routes
        .iter()
        .map(|r| pb::BgpRouteStatus {
            pop: r.pop.to_string(),
            prefix: r.prefix.to_string(),
            state: r.state.clone(),
            reason: r.reason.clone(),
        })
        .collect();
    resp.bgp_refused_plan = b.refused_plan.clone().unwrap_or_default();
    resp.bgp_holding = b.holding.clone().unwrap_or_default();
}

pub(crate) fn audit(e: &AuditEntry) -> pb::AuditEntry {
    pb::AuditEntry {
        at_unix_ms: e.at.unix_ms(),
        principal: e.principal.clone(),
        action: e.action.clone(),
        scope: e.scope.clone(),
        reason: e.reason.clone(),
        intent_id: e.intent_id.clone().unwrap_or_default(),
        plan_version: e.plan_version,
        dry_run: e.dry_run,
        forced: e.forced,
        outcome: e.outcome.clone(),
        detail: e.detail.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pop_scope(id: &str) -> pb::Scope {
        pb::Scope {
            kind: ScopeKind::Pop.into(),
            id: id.into(),
            service: String::new(),
        }
    }

    #[test]
    fn ids_are_short_and_plain() {
        assert_eq!(id(" fra1 ", "pop").unwrap(), "fra1");
        assert_eq!(id("eu-west_2.a", "pop").unwrap(), "eu-west_2.a");
        let longest = "a".repeat(MAX_ID_BYTES);
        assert_eq!(id(&longest, "pop").unwrap(), longest);
        for bad in [
            "a".repeat(MAX_ID_BYTES + 1),
            "fra 1".into(),
            "fra1/../x".into(),
            "fra\n1".into(),
            "fra\u{0}1".into(),
            "fräa".into(),
            "".into(),
        ] {
            let e = id(&bad, "pop").unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn scopes_refuse_oversized_or_odd_ids() {
        assert!(scope(Some(&pop_scope("fra1"))).is_ok());
        let e = scope(Some(&pop_scope(&"x".repeat(1 << 20)))).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        // The message names the size, never echoes the megabyte back.
        assert!(e.message().len() < 200, "{}", e.message());
        let e = scope(Some(&pop_scope("fra1;rm"))).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let svc = pb::Scope {
            kind: ScopeKind::ServicePop.into(),
            id: "fra1".into(),
            service: "s".repeat(MAX_ID_BYTES + 1),
        };
        assert_eq!(
            scope(Some(&svc)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn reasons_and_names_are_capped() {
        assert!(reason(&"r".repeat(MAX_REASON_BYTES)).is_ok());
        assert_eq!(
            reason(&"r".repeat(MAX_REASON_BYTES + 1))
                .unwrap_err()
                .code(),
            tonic::Code::InvalidArgument
        );
        assert!(bounded(&"n".repeat(MAX_NAME_BYTES), "name", MAX_NAME_BYTES).is_ok());
        assert_eq!(
            bounded(&"n".repeat(MAX_NAME_BYTES + 1), "name", MAX_NAME_BYTES)
                .unwrap_err()
                .code(),
            tonic::Code::InvalidArgument
        );
    }
}
