//! `steerctl timeline` (what happened, for the incident channel and the
//! postmortem) and `steerctl handoff` (what the next on-call must know).

use std::{fmt::Write, time::Duration};

use steer_proto::v1 as pb;

use crate::{
    Answer, Client, Failure, Output,
    output::{out, outln},
    render::{self, format_ms},
    table::Table,
};

/// Events a handoff lists by name (more are counted).
const HANDOFF_EVENTS: usize = 40;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn since_ms(since: Duration) -> i64 {
    now_ms().saturating_sub(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn event_json(e: &pb::TimelineEvent) -> serde_json::Value {
    serde_json::json!({
        "seq": e.seq,
        "at_unix_ms": e.at_unix_ms,
        "kind": e.kind,
        "scope": e.scope,
        "principal": (!e.principal.is_empty()).then_some(&e.principal),
        "summary": e.summary,
        "detail": e.detail,
    })
}

fn who(e: &pb::TimelineEvent) -> &str {
    if e.principal.is_empty() {
        "steerd"
    } else {
        &e.principal
    }
}

/// One Markdown bullet per event: time, kind, who, what, and the evidence.
fn markdown_line(e: &pb::TimelineEvent) -> String {
    let mut line = format!(
        "- **{}** `{}` {} — {}",
        format_ms(e.at_unix_ms),
        e.kind,
        who(e),
        md_escape(&e.summary)
    );
    let detail = e.detail.trim();
    if !detail.is_empty() {
        let _ = write!(line, "  \n  _{}_", md_escape(detail));
    }
    line
}

/// Keeps operator-written text from turning into Markdown structure.
fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '_' | '`' | '[' | ']' | '<' | '|' | '\\') {
            out.push('\\');
        }
        out.push(if c == '\n' { ' ' } else { c });
    }
    out
}

pub(crate) fn timeline_markdown(events: &[pb::TimelineEvent], title: &str) -> String {
    let mut out = format!("## {title}\n\n");
    if events.is_empty() {
        out.push_str("Nothing happened in this span.\n");
    }
    for e in events {
        out.push_str(&markdown_line(e));
        out.push('\n');
    }
    out
}

pub(crate) fn timeline_table(events: &[pb::TimelineEvent]) -> String {
    let mut t = Table::new(&["TIME", "KIND", "WHO", "WHAT"]);
    for e in events {
        let mut what = e.summary.clone();
        if !e.detail.is_empty() {
            let _ = write!(what, " [{}]", e.detail);
        }
        t.row(vec![
            format_ms(e.at_unix_ms),
            e.kind.clone(),
            who(e).to_owned(),
            what,
        ]);
    }
    t.render()
}

pub(crate) struct TimelineArgs<'a> {
    pub(crate) since: Duration,
    pub(crate) scope: Option<&'a str>,
    pub(crate) kinds: &'a [String],
    pub(crate) limit: u32,
}

pub(crate) async fn run_timeline(
    client: &mut Client,
    args: TimelineArgs<'_>,
    output: Output,
) -> Result<(), Failure> {
    let resp = client
        .get_timeline(pb::GetTimelineRequest {
            since_unix_ms: since_ms(args.since),
            scope: args.scope.unwrap_or_default().to_owned(),
            kinds: args.kinds.to_vec(),
            limit: args.limit,
            after_seq: None,
        })
        .await
        .answer()?;
    match output {
        Output::Json => render::json(&serde_json::Value::Array(
            resp.events.iter().map(event_json).collect(),
        )),
        Output::Markdown => {
            let mut title = format!(
                "Timeline, {} to {} UTC",
                format_ms(since_ms(args.since)),
                format_ms(now_ms())
            );
            if let Some(s) = args.scope {
                let _ = write!(title, ", {s}");
            }
            out!("{}", timeline_markdown(&resp.events, &title));
        }
        Output::Table => out!("{}", timeline_table(&resp.events)),
    }
    Ok(())
}

/// What the next on-call must know, from status, SLOs and the timeline.
pub(crate) struct Handoff {
    pub(crate) status: pb::GetStatusResponse,
    pub(crate) slos: pb::GetSlosResponse,
    pub(crate) events: Vec<pb::TimelineEvent>,
    pub(crate) since_ms: i64,
    pub(crate) now_ms: i64,
}

impl Handoff {
    pub(crate) fn markdown(&self) -> String {
        let s = &self.status;
        let mut out = format!(
            "# Handoff: {} to {} UTC\n\nPlan version {} (computed {}).\n",
            format_ms(self.since_ms),
            format_ms(self.now_ms),
            s.plan_version,
            format_ms(s.plan_computed_unix_ms)
        );
        let mut attention = Vec::new();
        if let Some(f) = &s.frozen {
            attention.push(format!(
                "**Health frozen** since {} ({}): {}. Live health applies again when they recover or after `steerctl confirm-failure`.",
                format_ms(f.since_unix_ms),
                f.pops.join(", "),
                md_escape(&f.why)
            ));
        }
        for svc in &s.all_drained {
            attention.push(format!(
                "**Every PoP of {svc} is drained**: DNS answers them anyway."
            ));
        }
        for b in &s.break_glass {
            attention.push(format!(
                "**Break glass** {}: {} by {}: {}",
                format_ms(b.at_unix_ms),
                md_escape(&b.what),
                b.principal,
                md_escape(&b.reason)
            ));
        }
        for slo in self.slos.slos.iter().filter(|x| !x.firing.is_empty()) {
            attention.push(format!(
                "**SLO {} {} alert firing**: budget left {:.1}%",
                slo.name,
                slo.firing,
                slo.budget_remaining * 100.0
            ));
        }
        for slo in self.slos.slos.iter().filter(|x| x.exhausted) {
            attention.push(format!(
                "**SLO {} budget exhausted** (changes wait for it unless emergencies)",
                slo.name
            ));
        }
        section(&mut out, "Needs attention", &attention);

        let intents: Vec<String> = s
            .intents
            .iter()
            .map(|i| {
                let what = if i.kind == "override" {
                    format!(
                        "override {} to {}‰",
                        render::scope_text(i.scope.as_ref()),
                        i.weight_permille
                    )
                } else {
                    format!(
                        "{} drain of {}",
                        i.mode,
                        render::scope_text(i.scope.as_ref())
                    )
                };
                let expiry = if i.expires_unix_ms > 0 {
                    format!("expires {}", format_ms(i.expires_unix_ms))
                } else {
                    "no expiry".to_owned()
                };
                format!(
                    "`{}` {what} by {} since {} ({expiry}): {}",
                    i.id,
                    i.principal,
                    format_ms(i.created_unix_ms),
                    md_escape(&i.reason)
                )
            })
            .collect();
        section(&mut out, "Drains and overrides in force", &intents);

        let pops: Vec<String> = s
            .pops
            .iter()
            .filter(|p| p.health != "up" || !p.usable)
            .map(|p| {
                format!(
                    "{} ({}): {}: {}",
                    p.pop,
                    p.region,
                    p.health,
                    md_escape(&p.reason)
                )
            })
            .collect();
        section(&mut out, "PoPs not up or not serving", &pops);

        let regions: Vec<String> = s
            .regions
            .iter()
            .filter(|r| r.level != "normal")
            .map(|r| {
                format!(
                    "{} {}: served by {}",
                    r.region,
                    r.level,
                    r.served_by.join(", ")
                )
            })
            .collect();
        section(&mut out, "Degraded regions", &regions);

        let bgp: Vec<String> = s
            .bgp_peers
            .iter()
            .filter(|p| p.state != "established")
            .map(|p| {
                format!(
                    "{} peer {} (AS{}): {}{}",
                    p.pop,
                    p.peer,
                    p.peer_as,
                    p.state,
                    if p.last_error.is_empty() {
                        String::new()
                    } else {
                        format!(", last error: {}", md_escape(&p.last_error))
                    }
                )
            })
            .collect();
        section(&mut out, "BGP sessions down", &bgp);

        let changes: Vec<String> = s
            .changes
            .iter()
            .map(|c| {
                let mut line = format!("`{}` {}", c.id, c.state);
                if !c.stage.is_empty() {
                    let _ = write!(line, " at {}", c.stage);
                }
                if c.emergency {
                    line.push_str(" (emergency)");
                }
                let _ = write!(line, " by {}: {}", c.author, md_escape(&c.reason));
                if !c.held.is_empty() {
                    let _ = write!(line, "; waiting: {}", md_escape(&c.held));
                }
                line
            })
            .collect();
        section(&mut out, "Changes in flight", &changes);

        // The shift's events, newest first; plan publications are counted
        // (each one is also in the events that caused it).
        let plans = self.events.iter().filter(|e| e.kind == "plan").count();
        let notable: Vec<&pb::TimelineEvent> = self
            .events
            .iter()
            .rev()
            .filter(|e| e.kind != "plan")
            .collect();
        let _ = writeln!(out, "\n## What happened this shift\n");
        if notable.is_empty() {
            out.push_str("Nothing but routine plan updates.\n");
        }
        for e in notable.iter().take(HANDOFF_EVENTS) {
            out.push_str(&markdown_line(e));
            out.push('\n');
        }
        if notable.len() > HANDOFF_EVENTS {
            let _ = writeln!(
                out,
                "- … {} earlier events (`steerctl timeline --since …`)",
                notable.len() - HANDOFF_EVENTS
            );
        }
        let _ = writeln!(out, "\n{plans} plan version(s) published in the span.");
        out
    }
}

fn section(out: &mut String, title: &str, lines: &[String]) {
    let _ = writeln!(out, "\n## {title}\n");
    if lines.is_empty() {
        out.push_str("None.\n");
    }
    for l in lines {
        let _ = writeln!(out, "- {l}");
    }
}

pub(crate) async fn run_handoff(
    client: &mut Client,
    since: Duration,
    output: Output,
) -> Result<(), Failure> {
    let status = client.get_status(pb::GetStatusRequest {}).await.answer()?;
    let slos = client.get_slos(pb::GetSlosRequest {}).await.answer()?;
    let from = since_ms(since);
    let events = client
        .get_timeline(pb::GetTimelineRequest {
            since_unix_ms: from,
            scope: String::new(),
            kinds: Vec::new(),
            limit: 2_000,
            after_seq: None,
        })
        .await
        .answer()?
        .events;
    let handoff = Handoff {
        status,
        slos,
        events,
        since_ms: from,
        now_ms: now_ms(),
    };
    if output == Output::Json {
        render::json(&serde_json::json!({
            "since_unix_ms": handoff.since_ms,
            "status": render::status_json(&handoff.status),
            "slos": steer_api::slo_document(&handoff.slos),
            "events": handoff.events.iter().map(event_json).collect::<Vec<_>>(),
        }));
    } else {
        outln!("{}", handoff.markdown());
    }
    Ok(())
}
