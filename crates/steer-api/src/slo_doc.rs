//! The SLO document both steerd's `/status` (under `slo`) and `steerctl
//! --output json slo` print, built in one place from the `GetSlos` reply.

use serde_json::{Value, json};
use steer_proto::v1 as pb;

/// A number, or null where the proto carries NaN (no events).
fn finite(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

fn text(s: &str) -> Value {
    if s.is_empty() { Value::Null } else { json!(s) }
}

/// The SLO document from a `GetSlos` reply.
pub fn slo_document(r: &pb::GetSlosResponse) -> Value {
    let slos: Vec<Value> = r
        .slos
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "service": s.service,
                "objective": s.objective,
                "kind": s.kind,
                "window": s.window,
                "region": text(&s.region),
                "pop": text(&s.pop),
                "events": s.events,
                "bad_events": s.bad_events,
                "sli": s.sli,
                "budget_remaining": finite(s.budget_remaining),
                "exhausted": s.exhausted,
                "burn_rates": s.burn_rates.iter().map(|b| json!({
                    "window": b.window,
                    "window_s": b.window_s,
                    "burn_rate": finite(b.burn_rate),
                    "events": b.events,
                    "bad_events": b.bad_events,
                })).collect::<Vec<_>>(),
                "alerts": s.alerts.iter().map(|a| json!({
                    "severity": a.severity,
                    "burn_rate": a.burn_rate,
                    "long": a.long_window,
                    "short": a.short_window,
                    "firing": a.firing,
                    "held_back": text(&a.held_back),
                })).collect::<Vec<_>>(),
                "firing": text(&s.firing),
                "pops": s.pops.iter().map(|p| json!({
                    "pop": p.pop,
                    "window_s": p.window_s,
                    "burn_rate": finite(p.burn_rate),
                    "events": p.events,
                    "shifted_share": p.shifted_share,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "evaluated_unix_ms": r.evaluated_unix_ms,
        "slos": slos,
        "corrections": r.corrections.iter().map(|c| json!({
            "slo": c.slo,
            "start_unix_ms": c.start_unix_ms,
            "end_unix_ms": c.end_unix_ms,
            "reason": c.reason,
            "principal": c.principal,
        })).collect::<Vec<_>>(),
    })
}
