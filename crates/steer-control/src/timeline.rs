//! The control loop's side of the incident timeline: what it notes (audit
//! entries of applied steps, health transitions and freezes, published
//! plans; SLO alerts and BGP sessions come through the shared handle), and
//! the document it keeps in the store, written at most every couple of
//! seconds while there is something new.

use std::{sync::Arc, time::Duration};

use steer_store::StateStore;
use steer_types::{
    Timestamp,
    audit::AuditEntry,
    timeline::{EventKind, MAX_BYTES, Timeline, TimelineHandle},
};
use tracing::{error, warn};

use crate::ControlLoop;

/// The document the timeline is kept in.
const DOCUMENT: &str = "timeline";
/// Written at most this often (events in between go in one write).
const FLUSH_EVERY: Duration = Duration::from_secs(2);

pub(crate) struct TimelineBook {
    pub(crate) handle: TimelineHandle,
    /// `next_seq` of the last document written.
    saved: u64,
    last_write: Option<Timestamp>,
    /// Whether the last write failed (logged once per streak).
    failing: bool,
}

impl TimelineBook {
    /// The timeline saved in `store`, or an empty one (a document that
    /// does not read is logged and started over: the timeline is a record,
    /// not state the plan depends on).
    pub(crate) fn load(store: &dyn StateStore) -> Self {
        let mut size = 0;
        let timeline = match store.load_document(DOCUMENT) {
            Ok(Some(bytes)) => {
                size = bytes.len();
                decode(&bytes).unwrap_or_else(|e| {
                    error!(error = %e, "the timeline document does not read; starting a new one");
                    Timeline::default()
                })
            }
            Ok(None) => Timeline::default(),
            Err(e) => {
                error!(error = %e, "cannot read the timeline document; starting a new one");
                Timeline::default()
            }
        };
        let saved = timeline.next_seq;
        metrics::gauge!("steer_timeline_events").set(timeline.events.len() as f64);
        metrics::gauge!("steer_timeline_bytes").set(size as f64);
        Self {
            handle: Arc::new(std::sync::Mutex::new(timeline)),
            saved,
            last_write: None,
            failing: false,
        }
    }

    /// Makes the next flush write at once (at shutdown).
    pub(crate) fn flush_now(&mut self) {
        self.last_write = None;
    }

    /// Replaces the events with those of `fresh` (a new leader reads the
    /// shared timeline again), keeping the handle readers hold.
    pub(crate) fn take(&mut self, fresh: TimelineBook) {
        let events = match fresh.handle.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => return,
        };
        if let Ok(mut t) = self.handle.lock() {
            *t = events;
            self.saved = t.next_seq;
        }
    }
}

/// The document, under [`MAX_BYTES`] (the oldest events go first).
fn encode(t: &mut Timeline) -> Vec<u8> {
    loop {
        let bytes = serde_json::to_vec(&*t).unwrap_or_default();
        if bytes.len() <= MAX_BYTES || t.events.is_empty() {
            return bytes;
        }
        // Events are capped, so a tenth of them frees enough quickly.
        let drop = (t.events.len() / 10).max(1);
        t.events.drain(..drop);
    }
}

fn decode(bytes: &[u8]) -> Result<Timeline, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("timeline document: {e}"))
}

/// The ids an audit scope names: `pop fra1` → `fra1`, `service app@fra1`
/// → `app`, `fra1`; `change c4` → `c4`.
fn scope_ids(scope: &str) -> Vec<String> {
    scope
        .split(|c: char| c.is_whitespace() || c == '@' || c == ',')
        .filter(|w| {
            !w.is_empty()
                && !matches!(
                    *w,
                    "pop" | "region" | "service" | "change" | "at" | "config" | "health"
                )
        })
        .map(str::to_owned)
        .collect()
}

fn kind_of(action: &str) -> EventKind {
    match action {
        a if a.starts_with("change-") => EventKind::Change,
        "reload" => EventKind::Reload,
        "drain" | "undrain" | "override" | "clear-override" | "expire" | "drop" => {
            EventKind::Intent
        }
        _ => EventKind::Operator,
    }
}

impl ControlLoop {
    /// Adds an event to the timeline, timed by the wall clock (the feed
    /// sits beside other logs).
    pub(crate) fn note(
        &self,
        kind: EventKind,
        scope: Vec<String>,
        principal: Option<String>,
        summary: String,
        detail: String,
    ) {
        let at = self.clock.wall();
        if let Ok(mut t) = self.timeline.handle.lock() {
            t.push(at, kind, scope, principal, summary, detail);
        }
        metrics::counter!("steer_timeline_events_total", "kind" => kind.as_str()).increment(1);
    }

    /// The timeline's line for an applied step the audit log recorded.
    pub(crate) fn note_audit(&self, e: &AuditEntry) {
        let mut summary = format!("{} {}", e.action, e.scope);
        if !e.reason.is_empty() {
            summary.push_str(": ");
            summary.push_str(&e.reason);
        }
        let mut detail = e.detail.clone();
        if let Some(id) = &e.intent_id {
            detail = format!("{id}; {detail}");
        }
        if e.forced {
            detail.push_str(" (forced)");
        }
        let principal = (e.principal != "steerd").then(|| e.principal.clone());
        self.note(
            kind_of(&e.action),
            scope_ids(&e.scope),
            principal,
            summary,
            detail,
        );
    }

    /// A published plan that moved something: one line, the PoPs and
    /// regions it names as its scope.
    pub(crate) fn note_plan(&self, version: u64, changes: &[String]) {
        if changes.is_empty() {
            return;
        }
        let ids: Vec<String> = self
            .topology
            .pops
            .iter()
            .map(|p| p.id.to_string())
            .chain(self.topology.regions.iter().map(|r| r.id.to_string()))
            .filter(|id| {
                changes.iter().any(|c| {
                    c.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '-'))
                        .any(|w| w == id)
                })
            })
            .collect();
        let shown: Vec<&str> = changes.iter().take(3).map(String::as_str).collect();
        let more = changes.len().saturating_sub(shown.len());
        let mut summary = format!("plan v{version}: {}", shown.join("; "));
        if more > 0 {
            summary.push_str(&format!(" (+{more} more)"));
        }
        self.note(EventKind::Plan, ids, None, summary, changes.join("; "));
    }

    /// Writes the timeline when it has events the store has not, at most
    /// every [`FLUSH_EVERY`] (`now`: the loop's clock). Followers write
    /// nothing: the leader keeps the shared one.
    pub(crate) fn flush_timeline(&mut self, now: Timestamp) {
        if self.standby {
            return;
        }
        let recent = self
            .timeline
            .last_write
            .is_some_and(|t| now.since(t) < FLUSH_EVERY);
        let (seq, bytes, len) = {
            let Ok(mut t) = self.timeline.handle.lock() else {
                return;
            };
            if t.next_seq == self.timeline.saved || recent {
                return;
            }
            t.trim(self.clock.wall());
            (t.next_seq, encode(&mut t), t.events.len())
        };
        self.timeline.last_write = Some(now);
        match tokio::task::block_in_place(|| self.store.save_document(DOCUMENT, &bytes)) {
            Ok(()) => {
                // What the document holds, once it is written: a reader of
                // these gauges may count on the events surviving a crash.
                metrics::gauge!("steer_timeline_events").set(len as f64);
                metrics::gauge!("steer_timeline_bytes").set(bytes.len() as f64);
                self.timeline.saved = seq;
                self.timeline.failing = false;
            }
            Err(e) => {
                metrics::counter!("steer_state_write_errors_total").increment(1);
                if !self.timeline.failing {
                    warn!(error = %e, "cannot save the timeline; retried, events are kept in memory");
                }
                self.timeline.failing = true;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use steer_types::timeline::{MAX_DETAIL, MAX_EVENTS, MAX_SUMMARY};

    use super::*;

    #[test]
    fn the_document_stays_under_its_byte_bound_and_reads_back() {
        let mut big = Timeline::default();
        for i in 0..MAX_EVENTS as i64 {
            big.push(
                Timestamp(i),
                EventKind::Health,
                vec!["fra1".into()],
                None,
                "s".repeat(MAX_SUMMARY),
                "d".repeat(MAX_DETAIL),
            );
        }
        let bytes = encode(&mut big);
        assert!(bytes.len() <= MAX_BYTES, "{}", bytes.len());
        let back = decode(&bytes).unwrap();
        assert_eq!(back, big);
        assert!(back.events.len() < MAX_EVENTS, "the oldest went");
        assert_eq!(back.next_seq, MAX_EVENTS as u64, "sequence numbers go on");
        assert!(decode(b"{").is_err());
    }

    #[test]
    fn audit_scopes_name_their_ids() {
        assert_eq!(scope_ids("pop fra1"), ["fra1"]);
        assert_eq!(scope_ids("service app@fra1"), ["app", "fra1"]);
        assert_eq!(scope_ids("region eu-west"), ["eu-west"]);
        assert_eq!(scope_ids("change c4"), ["c4"]);
        assert!(scope_ids("config").is_empty());
        assert_eq!(kind_of("change-approve"), EventKind::Change);
        assert_eq!(kind_of("expire"), EventKind::Intent);
        assert_eq!(kind_of("confirm-failure"), EventKind::Operator);
    }
}
