//! Output for humans (tables that fit 100 columns) and for scripts (JSON).

use std::fmt::Write;

use steer_proto::v1::{GetStatusResponse, ScopeKind};

pub(crate) fn json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("steerctl: cannot render JSON: {e}"),
    }
}

fn scope_text(scope: Option<&steer_proto::v1::Scope>) -> String {
    scope.map_or_else(String::new, |s| {
        let kind = match ScopeKind::try_from(s.kind) {
            Ok(ScopeKind::Pop) => "pop",
            Ok(ScopeKind::Region) => "region",
            _ => "?",
        };
        format!("{kind} {}", s.id)
    })
}

pub(crate) fn status_json(s: &GetStatusResponse) -> serde_json::Value {
    serde_json::json!({
        "plan_version": s.plan_version,
        "plan_computed_unix_ms": s.plan_computed_unix_ms,
        "pops": s.pops.iter().map(|p| serde_json::json!({
            "pop": p.pop,
            "region": p.region,
            "health": p.health,
            "drained": p.drained,
            "weight_permille": p.weight_permille,
            "reason": p.reason,
            "last_report_age_ms": (p.last_report_age_ms >= 0).then_some(p.last_report_age_ms),
        })).collect::<Vec<_>>(),
        "intents": s.intents.iter().map(|i| serde_json::json!({
            "id": i.id,
            "scope": scope_text(i.scope.as_ref()),
            "reason": i.reason,
            "principal": i.principal,
            "created_unix_ms": i.created_unix_ms,
        })).collect::<Vec<_>>(),
    })
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

pub(crate) fn status_table(s: &GetStatusResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "plan version {}", s.plan_version);
    let _ = writeln!(
        out,
        "{:<8} {:<10} {:<10} {:>6} {:<8} {:>7}  REASON",
        "POP", "REGION", "HEALTH", "WEIGHT", "DRAINED", "REPORT"
    );
    for p in &s.pops {
        let age = if p.last_report_age_ms < 0 {
            "never".to_owned()
        } else {
            format!("{:.1}s", p.last_report_age_ms as f64 / 1000.0)
        };
        let _ = writeln!(
            out,
            "{:<8} {:<10} {:<10} {:>5.1}% {:<8} {:>7}  {}",
            truncate(&p.pop, 8),
            truncate(&p.region, 10),
            truncate(&p.health, 10),
            f64::from(p.weight_permille) / 10.0,
            if p.drained { "yes" } else { "no" },
            age,
            truncate(&p.reason, 40),
        );
    }
    if !s.intents.is_empty() {
        let _ = writeln!(out, "\nDRAINS");
        for i in &s.intents {
            let _ = writeln!(
                out,
                "{:<10} {:<18} {:<24} {}",
                truncate(&i.id, 10),
                truncate(&scope_text(i.scope.as_ref()), 18),
                truncate(&i.principal, 24),
                truncate(&i.reason, 44),
            );
        }
    }
    out
}

pub(crate) fn bgp_json(s: &GetStatusResponse) -> serde_json::Value {
    serde_json::json!({
        "plan_version": s.plan_version,
        "refused_plan": (!s.bgp_refused_plan.is_empty()).then_some(&s.bgp_refused_plan),
        "peers": s.bgp_peers.iter().map(|p| serde_json::json!({
            "pop": p.pop,
            "peer": p.peer,
            "peer_as": p.peer_as,
            "state": p.state,
            "uptime_secs": (p.uptime_secs >= 0).then_some(p.uptime_secs),
            "flaps": p.flaps,
            "prefixes_sent": p.prefixes_sent,
            "updates_sent": p.updates_sent,
            "last_error": (!p.last_error.is_empty()).then_some(&p.last_error),
        })).collect::<Vec<_>>(),
        "routes": s.bgp_routes.iter().map(|r| serde_json::json!({
            "pop": r.pop,
            "prefix": r.prefix,
            "state": r.state,
            "reason": r.reason,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn bgp_table(s: &GetStatusResponse) -> String {
    let mut out = String::new();
    if s.bgp_peers.is_empty() && s.bgp_routes.is_empty() {
        let _ = writeln!(out, "no BGP speaker configured (add a [bgp] table)");
        return out;
    }
    if !s.bgp_refused_plan.is_empty() {
        let _ = writeln!(out, "REFUSED {}", truncate(&s.bgp_refused_plan, 90));
    }
    let _ = writeln!(
        out,
        "{:<8} {:<22} {:>10} {:<12} {:>8} {:>5} {:>5}  LAST ERROR",
        "POP", "PEER", "AS", "STATE", "UPTIME", "FLAPS", "PFX"
    );
    for p in &s.bgp_peers {
        let up = if p.uptime_secs < 0 {
            "-".to_owned()
        } else {
            format!("{}s", p.uptime_secs)
        };
        let _ = writeln!(
            out,
            "{:<8} {:<22} {:>10} {:<12} {:>8} {:>5} {:>5}  {}",
            truncate(&p.pop, 8),
            truncate(&p.peer, 22),
            p.peer_as,
            truncate(&p.state, 12),
            up,
            p.flaps,
            p.prefixes_sent,
            truncate(&p.last_error, 20),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<8} {:<20} {:<17}  REASON", "POP", "PREFIX", "STATE");
    for r in &s.bgp_routes {
        let _ = writeln!(
            out,
            "{:<8} {:<20} {:<17}  {}",
            truncate(&r.pop, 8),
            truncate(&r.prefix, 20),
            truncate(&r.state, 17),
            truncate(&r.reason, 50),
        );
    }
    out
}
