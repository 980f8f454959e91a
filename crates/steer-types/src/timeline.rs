//! The incident timeline: one chronological, bounded feed of what happened
//! (health transitions with their evidence, plan decisions, intents, BGP
//! sessions, freezes, reloads, SLO alerts, change steps), for the person
//! on call now and for the postmortem later. Pure: the control loop owns
//! one, persists it as a document and serves queries from it.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The timeline shared by what writes to it (the control loop, the BGP
/// speaker's watcher) and what reads it (the API).
pub type TimelineHandle = Arc<Mutex<Timeline>>;

/// Most events kept; older ones go first.
pub const MAX_EVENTS: usize = 5_000;
/// Events older than this go (14 days: two weeks of shifts).
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
/// The persisted document stays under this (an etcd request is 1.5 MiB at
/// most); the oldest events go first.
pub const MAX_BYTES: usize = 1 << 20;
pub const MAX_SUMMARY: usize = 300;
pub const MAX_DETAIL: usize = 1_000;
const MAX_SCOPES: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A PoP's health state changed (with the evidence).
    Health,
    /// The correlated-failure guard froze or thawed health.
    Freeze,
    /// A published plan moved answers or announcements.
    Plan,
    /// A drain, undrain, override or expiry.
    Intent,
    /// A BGP session came up or went down.
    Bgp,
    /// A config reload.
    Reload,
    /// An SLO alert fired or resolved.
    Slo,
    /// A change request step.
    Change,
    /// An operator confirmed a frozen failure, or another operator step.
    Operator,
}

impl EventKind {
    pub const ALL: [Self; 9] = [
        Self::Health,
        Self::Freeze,
        Self::Plan,
        Self::Intent,
        Self::Bgp,
        Self::Reload,
        Self::Slo,
        Self::Change,
        Self::Operator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Freeze => "freeze",
            Self::Plan => "plan",
            Self::Intent => "intent",
            Self::Bgp => "bgp",
            Self::Reload => "reload",
            Self::Slo => "slo",
            Self::Change => "change",
            Self::Operator => "operator",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// Increases by one per event, never reused: a reader that saw up to
    /// `seq` asks for what came after.
    pub seq: u64,
    pub at: Timestamp,
    pub kind: EventKind,
    /// What it concerns: PoP, region and service ids (`fra1`, `eu-west`,
    /// `app`), change ids (`c4`), SLO names.
    pub scope: Vec<String>,
    /// Who did it (operators' steps); `None` for what steerd saw.
    pub principal: Option<String>,
    /// One line.
    pub summary: String,
    /// The evidence or the reason, when there is more to say.
    pub detail: String,
}

impl TimelineEvent {
    /// Whether it concerns `scope` (an id, matched whole), or mentions it.
    pub fn concerns(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope)
            || mentions(&self.summary, scope)
            || mentions(&self.detail, scope)
    }
}

/// `id` as a whole word of `text` (ids are `[a-z0-9-]`).
fn mentions(text: &str, id: &str) -> bool {
    !id.is_empty()
        && text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .any(|w| w == id)
}

/// What a query asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimelineQuery {
    /// Events at or after this time.
    pub since: Option<Timestamp>,
    /// Events after this sequence number (a live follower's cursor).
    pub after_seq: Option<u64>,
    /// Events that concern this id.
    pub scope: Option<String>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<EventKind>,
    /// The newest this many (0: all that match).
    pub limit: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub next_seq: u64,
    pub events: VecDeque<TimelineEvent>,
}

fn cap(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

impl Timeline {
    /// Appends an event now (its fields capped), then forgets what is past
    /// the bounds. Returns its sequence number.
    pub fn push(
        &mut self,
        at: Timestamp,
        kind: EventKind,
        scope: Vec<String>,
        principal: Option<String>,
        summary: String,
        detail: String,
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut scope = scope;
        scope.truncate(MAX_SCOPES);
        for s in &mut scope {
            *s = cap(std::mem::take(s), 64);
        }
        self.events.push_back(TimelineEvent {
            seq,
            at,
            kind,
            scope,
            principal: principal.map(|p| cap(p, 128)),
            summary: cap(summary, MAX_SUMMARY),
            detail: cap(detail, MAX_DETAIL),
        });
        self.trim(at);
        seq
    }

    /// Drops events past the count and the age bounds.
    pub fn trim(&mut self, now: Timestamp) {
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
        while self
            .events
            .front()
            .is_some_and(|e| now.unix_ms() - e.at.unix_ms() > MAX_AGE_MS)
        {
            self.events.pop_front();
        }
    }

    /// Matching events, oldest first (the newest `limit` of them).
    pub fn query(&self, q: &TimelineQuery) -> Vec<TimelineEvent> {
        let matching = self.events.iter().filter(|e| {
            q.since.is_none_or(|t| e.at >= t)
                && q.after_seq.is_none_or(|s| e.seq > s)
                && (q.kinds.is_empty() || q.kinds.contains(&e.kind))
                && q.scope.as_deref().is_none_or(|s| e.concerns(s))
        });
        let mut out: Vec<TimelineEvent> = matching.cloned().collect();
        if q.limit > 0 && out.len() > q.limit {
            out.drain(..out.len() - q.limit);
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn push(t: &mut Timeline, at: i64, kind: EventKind, scope: &[&str], summary: &str) -> u64 {
        t.push(
            Timestamp(at),
            kind,
            scope.iter().map(|s| (*s).to_owned()).collect(),
            None,
            summary.to_owned(),
            String::new(),
        )
    }

    #[test]
    fn queries_filter_by_time_scope_kind_and_cursor() {
        let mut t = Timeline::default();
        push(
            &mut t,
            1_000,
            EventKind::Health,
            &["fra1"],
            "fra1 up -> down",
        );
        push(
            &mut t,
            2_000,
            EventKind::Plan,
            &[],
            "plan v3: fra1 weight 500‰ -> 0‰",
        );
        push(
            &mut t,
            3_000,
            EventKind::Intent,
            &["ams1"],
            "drain pop ams1",
        );
        let fra1 = t.query(&TimelineQuery {
            scope: Some("fra1".into()),
            ..TimelineQuery::default()
        });
        assert_eq!(fra1.len(), 2, "by scope and by mention");
        // A whole word only: `fra` is not `fra1`.
        let fra = t.query(&TimelineQuery {
            scope: Some("fra".into()),
            ..TimelineQuery::default()
        });
        assert!(fra.is_empty());
        let since = t.query(&TimelineQuery {
            since: Some(Timestamp(2_000)),
            kinds: vec![EventKind::Intent],
            ..TimelineQuery::default()
        });
        assert_eq!(since.len(), 1);
        let after = t.query(&TimelineQuery {
            after_seq: Some(0),
            limit: 1,
            ..TimelineQuery::default()
        });
        assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn bounded_by_count_and_age_and_fields_are_capped() {
        let mut t = Timeline::default();
        for i in 0..MAX_EVENTS as i64 + 10 {
            push(&mut t, i, EventKind::Plan, &[], "x");
        }
        assert_eq!(t.events.len(), MAX_EVENTS);
        assert_eq!(t.events.front().unwrap().seq, 10);
        // Two weeks later, the old ones are gone.
        push(
            &mut t,
            MAX_AGE_MS + 5_000_000,
            EventKind::Plan,
            &[],
            "later",
        );
        assert_eq!(t.events.len(), 1);
        // Long fields are cut, on a character boundary.
        let long = "é".repeat(1_000);
        t.push(
            Timestamp(MAX_AGE_MS + 5_000_001),
            EventKind::Reload,
            vec![],
            Some("p".repeat(500)),
            long.clone(),
            long,
        );
        let e = t.events.back().unwrap();
        assert!(e.summary.len() <= MAX_SUMMARY + 3 && e.detail.len() <= MAX_DETAIL + 3);
    }
}
