//! Output for humans (tables that fit 100 columns) and for scripts (JSON).

use std::fmt::Write;

use crate::{output::outln, table::Table};

pub(crate) use chrono_free::format_ms;
use steer_proto::v1::{self as pb, GetStatusResponse, ScopeKind};

pub(crate) fn json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => outln!("{s}"),
        Err(e) => eprintln!("steerctl: cannot render JSON: {e}"),
    }
}

pub(crate) fn json_line(value: &serde_json::Value) {
    outln!("{value}");
}

pub(crate) fn scope_text(scope: Option<&pb::Scope>) -> String {
    scope.map_or_else(String::new, |s| match ScopeKind::try_from(s.kind) {
        Ok(ScopeKind::Pop) => format!("pop {}", s.id),
        Ok(ScopeKind::Region) => format!("region {}", s.id),
        Ok(ScopeKind::ServicePop) => format!("service {}@{}", s.service, s.id),
        _ => format!("? {}", s.id),
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

/// UTC time as `YYYY-MM-DD HH:MM:SSZ`, `-` for none.
mod chrono_free {
    pub(crate) fn format_ms(ms: i64) -> String {
        if ms <= 0 {
            return "-".to_owned();
        }
        // `YYYY-MM-DDTHH:MM:SS.mmmZ`, shared with every RFC 3339 writer.
        let t = steer_types::Timestamp(ms).rfc3339();
        format!("{} {}Z", &t[..10], &t[11..19])
    }
}

pub(crate) fn projection_table(p: &pb::Projection) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "projection: {}", p.summary);
    let _ = writeln!(
        out,
        "{:<8} {:>10} {:>10} {:>10} {:>6}",
        "POP", "CAPACITY", "NOW", "PROJECTED", "UTIL"
    );
    for x in &p.pops {
        let _ = writeln!(
            out,
            "{:<8} {:>10.0} {:>10.0} {:>10.0} {:>5.0}%{}",
            truncate(&x.pop, 8),
            x.capacity_rps,
            x.current_rps,
            x.projected_rps,
            x.projected_utilisation * 100.0,
            if x.projected_utilisation > 1.0 {
                "  OVER"
            } else {
                ""
            }
        );
    }
    out
}

fn projection_json(p: &pb::Projection) -> serde_json::Value {
    serde_json::json!({
        "summary": p.summary,
        "over_capacity": p.over_capacity,
        "pops": p.pops.iter().map(|x| serde_json::json!({
            "pop": x.pop,
            "capacity_rps": x.capacity_rps,
            "current_rps": x.current_rps,
            "projected_rps": x.projected_rps,
            "projected_utilisation": x.projected_utilisation,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn drain_json(r: &pb::DrainResponse) -> serde_json::Value {
    serde_json::json!({
        "intent_id": r.intent_id,
        "plan_version": r.plan_version,
        "applied": r.applied,
        "projection": r.projection.as_ref().map(projection_json),
        "change_id": (!r.change_id.is_empty()).then_some(&r.change_id),
    })
}

/// A drain or override that `[changes] reviewed_intents` made a change
/// request: nothing applied yet, and what to do next.
pub(crate) fn proposed_text(what: &str, change: &str) -> String {
    format!(
        "{what} not applied: [changes] reviewed_intents puts it through review as change {change}\n\
         it applies once approved by another operator (steerctl change approve {change}); \
         break glass: --emergency (admin)\n"
    )
}

pub(crate) fn drain_text(r: &pb::DrainResponse) -> String {
    let mut out = String::new();
    if !r.change_id.is_empty() {
        out.push_str(&proposed_text("drain", &r.change_id));
    } else if r.applied {
        let _ = writeln!(
            out,
            "drain {} applied; plan version {}",
            r.intent_id, r.plan_version
        );
    } else {
        let _ = writeln!(
            out,
            "dry run: nothing changed (plan version {})",
            r.plan_version
        );
    }
    if let Some(p) = &r.projection {
        out.push_str(&projection_table(p));
    }
    out
}

fn intent_json(i: &pb::Intent) -> serde_json::Value {
    serde_json::json!({
        "id": i.id,
        "kind": i.kind,
        "scope": scope_text(i.scope.as_ref()),
        "mode": i.mode,
        "ramp_ms": i.ramp_ms,
        "weight_permille": i.weight_permille,
        "reason": i.reason,
        "principal": i.principal,
        "created_unix_ms": i.created_unix_ms,
        "expires_unix_ms": (i.expires_unix_ms > 0).then_some(i.expires_unix_ms),
        "forced": i.forced,
    })
}

pub(crate) fn intents_json(intents: &[pb::Intent]) -> serde_json::Value {
    serde_json::Value::Array(intents.iter().map(intent_json).collect())
}

pub(crate) fn intents_table(intents: &[pb::Intent]) -> String {
    if intents.is_empty() {
        return "no drains or overrides\n".to_owned();
    }
    let mut t = Table::new(&["ID", "SCOPE", "WHAT", "BY", "EXPIRES", "REASON"]);
    for i in intents {
        let what = if i.kind == "override" {
            format!("pin {}‰", i.weight_permille)
        } else if i.forced {
            format!("{}!", i.mode)
        } else {
            i.mode.clone()
        };
        t.row(vec![
            i.id.clone(),
            scope_text(i.scope.as_ref()),
            what,
            i.principal.clone(),
            format_ms(i.expires_unix_ms),
            i.reason.clone(),
        ]);
    }
    t.render()
}

/// The status document: the same type, and so the same shape, as
/// steerd's `/status` ([`steer_types::status_doc::StatusDocument`]).
pub(crate) fn status_json(s: &GetStatusResponse) -> serde_json::Value {
    serde_json::to_value(steer_api::status_document(s)).unwrap_or_default()
}

pub(crate) fn status_table(s: &GetStatusResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan version {} (computed {})",
        s.plan_version,
        format_ms(s.plan_computed_unix_ms)
    );
    out.push_str(&frozen_text(s));
    out.push_str(&all_drained_text(s));
    out.push_str(&break_glass_text(s));
    let mut t = Table::new(&[
        "POP", "REGION", "HEALTH", ">WEIGHT", "DRAINED", ">REPORT", "REASON",
    ]);
    for p in &s.pops {
        let age = if p.last_report_age_ms < 0 {
            "never".to_owned()
        } else {
            format!("{:.1}s", p.last_report_age_ms as f64 / 1000.0)
        };
        t.row(vec![
            p.pop.clone(),
            p.region.clone(),
            p.health.clone(),
            format!("{:.1}%", f64::from(p.weight_permille) / 10.0),
            drained_text(p),
            age,
            p.reason.clone(),
        ]);
    }
    out.push_str(&t.render());
    let regions: Vec<String> = s
        .regions
        .iter()
        .map(|r| {
            if r.served_by.iter().any(|b| b != &r.region) {
                format!("{} {} -> {}", r.region, r.level, r.served_by.join("+"))
            } else {
                format!("{} {}", r.region, r.level)
            }
        })
        .collect();
    let _ = writeln!(out, "\nregions: {}", regions.join(", "));
    for r in s.regions.iter().filter(|r| r.demand_rps > 0.0) {
        let _ = writeln!(
            out,
            "demand {}: {:.0} rps ({})",
            r.region, r.demand_rps, r.demand_source
        );
    }
    for rail in &s.rails {
        let _ = writeln!(out, "rail: {rail}");
    }
    if !s.intents.is_empty() {
        let _ = writeln!(out);
        out.push_str(&intents_table(&s.intents));
    }
    out.push_str(&changes_text(s));
    out
}

/// Break-glass steps of the last day: the next shift must see them.
fn break_glass_text(s: &GetStatusResponse) -> String {
    let mut out = String::new();
    for b in &s.break_glass {
        let _ = writeln!(
            out,
            "BREAK GLASS {}: {} by {}: {}",
            format_ms(b.at_unix_ms),
            b.what,
            b.principal,
            b.reason
        );
    }
    out
}

/// Change requests not finished, one line each.
fn changes_text(s: &GetStatusResponse) -> String {
    let mut out = String::new();
    if s.changes.is_empty() {
        return out;
    }
    let _ = writeln!(out);
    for c in &s.changes {
        let mut line = format!("change {} {}", c.id, c.state);
        if !c.stage.is_empty() {
            line.push_str(&format!(" at {}", c.stage));
        }
        if c.emergency {
            line.push_str(" EMERGENCY");
        }
        line.push_str(&format!(" by {}: {}", c.author, c.reason));
        if !c.held.is_empty() {
            line.push_str(&format!(" (held: {})", c.held));
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

pub(crate) fn pop_detail(s: &GetStatusResponse, pop: &str) -> Option<String> {
    let p = s.pops.iter().find(|p| p.pop == pop)?;
    let mut out = String::new();
    let _ = writeln!(out, "pop        {} ({})", p.pop, p.region);
    let weight = f64::from(p.weight_permille) / 10.0;
    let health = match (p.usable, p.drained) {
        // A soft drain in its DNS ramp: still serving, less and less.
        (true, true) => format!("{}, draining ({weight:.1}% of its region)", p.health),
        (true, false) => p.health.clone(),
        (false, _) => format!("{} (not usable)", p.health),
    };
    let _ = writeln!(out, "health     {health}");
    let _ = writeln!(out, "weight     {weight:.1}% of its region");
    let _ = writeln!(out, "drained    {}", drained_text(p));
    let _ = writeln!(out, "load       {:.0} rps", p.load_rps);
    let age = if p.last_report_age_ms < 0 {
        "never".to_owned()
    } else {
        format!("{:.1}s ago", p.last_report_age_ms as f64 / 1000.0)
    };
    let _ = writeln!(out, "report     {age}");
    let _ = writeln!(out, "evidence   {}", p.reason);
    for a in &p.announcements {
        let _ = writeln!(out, "anycast    {a}");
    }
    out.push_str(&health_detail(p));
    out.push_str(&frozen_text(s));
    out.push_str(&all_drained_text(s));
    Some(out)
}

/// The drains in force at a PoP: the PoP's own, then per service
/// (`app:drain-3`); `no` when none.
fn drained_text(p: &pb::PopStatus) -> String {
    let mut parts: Vec<String> = Vec::new();
    if p.drained {
        parts.push(p.drained_by.clone());
    }
    parts.extend(
        p.service_drains
            .iter()
            .map(|d| format!("{}:{}", d.service, d.drain)),
    );
    if parts.is_empty() {
        "no".to_owned()
    } else {
        parts.join(",")
    }
}

/// Every PoP of a service drained: DNS still answers them (rather than
/// nothing), which the operator must see at a glance.
fn all_drained_text(s: &GetStatusResponse) -> String {
    if s.all_drained.is_empty() {
        return String::new();
    }
    format!(
        "ALL DRAINED ({}): every PoP is drained, so DNS answers the drained PoPs\n  \
         rather than nothing (an empty answer is worse); undrain one to steer again\n",
        s.all_drained.join(", ")
    )
}

/// The aggregator's view of one PoP: phase, probe evidence, peer probes.
fn health_detail(p: &pb::PopStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "phase      {}", p.phase);
    let _ = writeln!(out, "probes     {}", p.evidence);
    let _ = writeln!(
        out,
        "quality    {:.0} bit/s, {:.2}% errors, p50 {:.1} ms, p99 {:.1} ms",
        p.bandwidth_bps,
        p.error_ratio * 100.0,
        p.latency_p50_ms,
        p.latency_p99_ms
    );
    for v in &p.peers {
        let _ = writeln!(
            out,
            "seen by    {:<8} {:<11} {} ({} ms, {})",
            v.observer,
            if v.reachable {
                "reachable"
            } else {
                "UNREACHABLE"
            },
            v.detail,
            v.latency_ms,
            format_ms(v.at_unix_ms)
        );
    }
    out
}

fn frozen_text(s: &GetStatusResponse) -> String {
    s.frozen.as_ref().map_or_else(String::new, |f| {
        format!(
            "HEALTH FROZEN since {} (pops {}): {}\n",
            format_ms(f.since_unix_ms),
            f.pops.join(", "),
            f.why
        )
    })
}

/// The entries as `audit.jsonl` holds them: one type, one schema
/// ([`steer_types::audit::AuditEntry`]).
pub(crate) fn audit_json(entries: &[pb::AuditEntry]) -> serde_json::Value {
    let entries: Vec<steer_types::audit::AuditEntry> = entries
        .iter()
        .map(|e| steer_types::audit::AuditEntry {
            at: steer_types::Timestamp::from_unix_ms(e.at_unix_ms),
            principal: e.principal.clone(),
            action: e.action.clone(),
            scope: e.scope.clone(),
            reason: e.reason.clone(),
            detail: e.detail.clone(),
            intent_id: (!e.intent_id.is_empty()).then(|| e.intent_id.clone()),
            plan_version: e.plan_version,
            dry_run: e.dry_run,
            forced: e.forced,
            outcome: e.outcome.clone(),
        })
        .collect();
    serde_json::to_value(entries).unwrap_or_default()
}

/// One row per entry, the operator's reason whole (wrapped); what steerd
/// added (mode, projection, replaced intents) on indented lines below it.
pub(crate) fn audit_table(entries: &[pb::AuditEntry]) -> String {
    let mut t = Table::new(&[
        "TIME", "WHO", "ACTION", "SCOPE", "OUTCOME", ">PLAN", "REASON",
    ]);
    for e in entries {
        let outcome = match (e.forced, e.dry_run) {
            (true, _) => format!("{}!", e.outcome),
            _ => e.outcome.clone(),
        };
        let note = if e.detail.is_empty() {
            String::new()
        } else {
            format!("steerd: {}", e.detail)
        };
        t.row_with_note(
            vec![
                format_ms(e.at_unix_ms),
                e.principal.clone(),
                e.action.clone(),
                e.scope.clone(),
                outcome,
                e.plan_version.to_string(),
                e.reason.clone(),
            ],
            note,
        );
    }
    t.render()
}

pub(crate) fn bgp_json(s: &GetStatusResponse) -> serde_json::Value {
    serde_json::json!({
        "plan_version": s.plan_version,
        "refused_plan": (!s.bgp_refused_plan.is_empty()).then_some(&s.bgp_refused_plan),
        "holding": (!s.bgp_holding.is_empty()).then_some(&s.bgp_holding),
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
        let _ = writeln!(out, "REFUSED {}", s.bgp_refused_plan);
    }
    if !s.bgp_holding.is_empty() {
        let _ = writeln!(out, "HOLDING {}", s.bgp_holding);
    }
    let mut peers = Table::new(&[
        "POP",
        "PEER",
        ">AS",
        "STATE",
        ">UPTIME",
        ">FLAPS",
        ">PFX",
        "LAST ERROR",
    ]);
    for p in &s.bgp_peers {
        let up = if p.uptime_secs < 0 {
            "-".to_owned()
        } else {
            format!("{}s", p.uptime_secs)
        };
        peers.row(vec![
            p.pop.clone(),
            p.peer.clone(),
            p.peer_as.to_string(),
            p.state.clone(),
            up,
            p.flaps.to_string(),
            p.prefixes_sent.to_string(),
            p.last_error.clone(),
        ]);
    }
    out.push_str(&peers.render());
    let _ = writeln!(out);
    let mut routes = Table::new(&["POP", "PREFIX", "STATE", "REASON"]);
    for r in &s.bgp_routes {
        routes.row(vec![
            r.pop.clone(),
            r.prefix.clone(),
            r.state.clone(),
            r.reason.clone(),
        ]);
    }
    out.push_str(&routes.render());
    out
}

/// Every SLO on one line each: objective, SLI, budget left, burn rate per
/// alert window (shortest first), the firing alert; then corrections.
pub(crate) fn slo_table(r: &pb::GetSlosResponse) -> String {
    if r.slos.is_empty() {
        return "no SLOs configured ([[slos]] in steerd's config)\n".to_owned();
    }
    let number = |v: f64, digits: usize| {
        if v.is_finite() {
            format!("{v:.digits$}")
        } else {
            "-".to_owned()
        }
    };
    let mut t = Table::new(&[
        "SLO",
        "SERVICE",
        ">OBJECTIVE",
        "WINDOW",
        ">SLI",
        ">BUDGET",
        "ALERT",
        "BURN RATE",
    ]);
    for s in &r.slos {
        let budget = if s.budget_remaining.is_finite() {
            format!("{:.1}%", s.budget_remaining * 100.0)
        } else {
            "-".to_owned()
        };
        let burns: Vec<String> = s
            .burn_rates
            .iter()
            .map(|b| format!("{} {}x", b.window, number(b.burn_rate, 1)))
            .collect();
        t.row(vec![
            s.name.clone(),
            s.service.clone(),
            format!("{}%", number(s.objective * 100.0, 3)),
            s.window.clone(),
            format!("{}%", number(s.sli * 100.0, 3)),
            budget,
            if s.firing.is_empty() {
                "-".to_owned()
            } else {
                s.firing.to_uppercase()
            },
            burns.join("  "),
        ]);
    }
    let mut out = t.render();
    // PoPs burning faster than the budget allows, and what budget-aware
    // steering moved off them.
    let mut pops = Table::new(&["SLO", "POP", ">BURN RATE", ">EVENTS", ">SHIFTED"]);
    let mut any = false;
    for s in &r.slos {
        for p in &s.pops {
            if p.shifted_share > 0.0 || (p.burn_rate.is_finite() && p.burn_rate >= 1.0) {
                any = true;
                pops.row(vec![
                    s.name.clone(),
                    p.pop.clone(),
                    format!("{}x ({}s)", number(p.burn_rate, 1), p.window_s),
                    p.events.to_string(),
                    if p.shifted_share > 0.0 {
                        format!("{:.0}%", p.shifted_share * 100.0)
                    } else {
                        "-".to_owned()
                    },
                ]);
            }
        }
    }
    if any {
        out.push('\n');
        out.push_str(&pops.render());
    }
    if !r.corrections.is_empty() {
        let mut c = Table::new(&["CORRECTION", "FROM", "TO", "BY", "REASON"]);
        for x in &r.corrections {
            c.row(vec![
                x.slo.clone(),
                format_ms(x.start_unix_ms),
                format_ms(x.end_unix_ms),
                x.principal.clone(),
                x.reason.clone(),
            ]);
        }
        out.push('\n');
        out.push_str(&c.render());
    }
    out
}

/// A time for `steerctl slo correct`: `now`, `-<duration>` (that long
/// before `now_ms`), or RFC 3339 UTC / with an offset
/// (`2026-12-01T06:00:00Z`, `2026-12-01T08:00:00+02:00`).
pub(crate) fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    let t = text.trim();
    if t == "now" {
        return Ok(now_ms);
    }
    if let Some(ago) = t.strip_prefix('-') {
        let d = steer_config::parse_duration(ago)?;
        return Ok(now_ms - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2));
    }
    steer_types::Timestamp::parse_rfc3339(t)
        .map(|t| t.unix_ms())
        .ok_or_else(|| {
            format!(
                "{t:?} is not `now`, `-<duration>` (e.g. -2h) or RFC 3339 (2026-12-01T06:00:00Z)"
            )
        })
}

fn key_state(state: i32) -> &'static str {
    match pb::DnssecKeyState::try_from(state) {
        Ok(pb::DnssecKeyState::Published) => "published",
        Ok(pb::DnssecKeyState::Active) => "active",
        Ok(pb::DnssecKeyState::Inactive) => "inactive",
        _ => "unknown",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `steerctl dnssec ds`: one DS line per key, as a parent's zone file or a
/// resolver's trust anchor file takes it, the key's state as a comment.
pub(crate) fn dnssec_ds_lines(resp: &pb::GetDnssecDsResponse) -> String {
    resp.ds
        .iter()
        .map(|d| {
            format!(
                "{} IN DS {} {} {} {} ; {}\n",
                d.zone,
                d.key_tag,
                d.algorithm,
                d.digest_type,
                hex(&d.digest),
                key_state(d.key_state)
            )
        })
        .collect()
}

pub(crate) fn dnssec_ds_json(resp: &pb::GetDnssecDsResponse) -> serde_json::Value {
    serde_json::Value::Array(
        resp.ds
            .iter()
            .map(|d| {
                serde_json::json!({
                    "zone": d.zone,
                    "key_tag": d.key_tag,
                    "algorithm": d.algorithm,
                    "digest_type": d.digest_type,
                    "digest": hex(&d.digest),
                    "key_state": key_state(d.key_state),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_operators_write_them() {
        assert_eq!(parse_time("now", 5_000), Ok(5_000));
        assert_eq!(parse_time("-2h", 10_000_000), Ok(10_000_000 - 7_200_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", 0), Ok(1_000));
        assert_eq!(parse_time("2026-12-01T06:00:00Z", 0), Ok(1_796_104_800_000));
        assert_eq!(
            parse_time("2026-12-01T08:00:00.5+02:00", 0),
            Ok(1_796_104_800_500)
        );
        // Round trip with the writer every RFC 3339 output uses.
        let t = 1_796_104_800_123;
        assert_eq!(parse_time(&steer_types::Timestamp(t).rfc3339(), 0), Ok(t));
        for bad in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-12-01T06:00:00",
            "-2x",
        ] {
            assert!(parse_time(bad, 0).is_err(), "{bad}");
        }
    }
}
