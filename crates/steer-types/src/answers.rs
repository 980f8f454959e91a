//! Counting the answers the DNS data plane serves, per service, client
//! region and PoP: what resolvers hold right now, which the control loop
//! uses to tell where each PoP's load comes from without trusting the plan
//! (see `steer_policy::estimate_demand`).

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};

use crate::{PopId, RegionId, ServiceId};

/// One answer in fixed point. An answer with `n` records adds
/// `ANSWER_UNIT / n` to each record's PoP (clients split their traffic
/// over the records they got); 720720 is divisible by every `n` up to 16.
pub const ANSWER_UNIT: u64 = 720_720;

/// Whose answers a counter counts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AnswerKey {
    pub service: ServiceId,
    /// The answer set's client region; `None` for unmapped clients.
    pub region: Option<RegionId>,
    pub pop: PopId,
}

/// Cumulative answer counters, shared by the DNS views (which add, one
/// relaxed atomic per record) and the control loop (which samples). The
/// map is only locked when a view is compiled or a sample taken, never on
/// the query path.
#[derive(Debug, Default)]
pub struct AnswerTally {
    cells: Mutex<BTreeMap<AnswerKey, Arc<AtomicU64>>>,
}

impl AnswerTally {
    /// The counter for `key`, created at zero on first use.
    pub fn cell(&self, key: AnswerKey) -> Arc<AtomicU64> {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells.entry(key).or_default().clone()
    }

    /// Every counter's cumulative value, in key order.
    pub fn totals(&self) -> AnswerTotals {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        AnswerTotals(
            cells
                .iter()
                .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
                .collect(),
        )
    }
}

/// A sample of cumulative counters (in [`ANSWER_UNIT`]s), as the control
/// loop records it. Several data planes' samples add up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnswerTotals(pub Vec<(AnswerKey, u64)>);

impl AnswerTotals {
    /// Counts between `earlier` and `self`, in answers. A counter that went
    /// backwards (a restarted data plane) counts from zero.
    pub fn since(&self, earlier: &AnswerTotals) -> BTreeMap<AnswerKey, f64> {
        let before: BTreeMap<&AnswerKey, u64> = earlier.0.iter().map(|(k, v)| (k, *v)).collect();
        self.0
            .iter()
            .filter_map(|(k, now)| {
                let then = before.get(k).copied().unwrap_or(0);
                let delta = if *now >= then { now - then } else { *now };
                (delta > 0).then(|| (k.clone(), delta as f64 / ANSWER_UNIT as f64))
            })
            .collect()
    }
}

/// Answer counters from several data planes (edges), merged into one
/// monotonic set: each edge's counters are cumulative and restart from
/// zero when the edge does, so the merge adds each edge's increase since
/// its previous report (the whole value after a restart) and never goes
/// backwards. Bounded by the caller: it validates keys and caps edges.
#[derive(Debug, Default)]
pub struct MergedAnswers {
    edges: BTreeMap<String, EdgeCounters>,
    merged: BTreeMap<AnswerKey, u64>,
}

#[derive(Debug)]
struct EdgeCounters {
    instance: u64,
    counters: BTreeMap<AnswerKey, u64>,
}

impl MergedAnswers {
    /// Takes one edge's report. Returns whether the edge was new.
    pub fn apply(&mut self, edge: &str, instance: u64, counters: Vec<(AnswerKey, u64)>) -> bool {
        let fresh = EdgeCounters {
            instance,
            counters: BTreeMap::new(),
        };
        let is_new = !self.edges.contains_key(edge);
        let held = self.edges.entry(edge.to_owned()).or_insert(fresh);
        if held.instance != instance {
            // Restarted: its counters count from zero again.
            held.instance = instance;
            held.counters.clear();
        }
        for (key, now) in counters {
            let before = held.counters.get(&key).copied().unwrap_or(0);
            let increase = if now >= before { now - before } else { now };
            if increase > 0 {
                let m = self.merged.entry(key.clone()).or_default();
                *m = m.saturating_add(increase);
            }
            held.counters.insert(key, now);
        }
        is_new
    }

    /// Whether `edge` has reported before.
    pub fn knows(&self, edge: &str) -> bool {
        self.edges.contains_key(edge)
    }

    /// Edges heard from.
    pub fn edges(&self) -> usize {
        self.edges.len()
    }

    /// The merged counters.
    pub fn totals(&self) -> AnswerTotals {
        AnswerTotals(self.merged.iter().map(|(k, v)| (k.clone(), *v)).collect())
    }
}

impl AnswerTotals {
    /// Key by key sum of two samples (a local data plane's and the edges').
    pub fn plus(&self, other: &AnswerTotals) -> AnswerTotals {
        let mut sum: BTreeMap<AnswerKey, u64> = self.0.iter().cloned().collect();
        for (k, v) in &other.0 {
            let s = sum.entry(k.clone()).or_default();
            *s = s.saturating_add(*v);
        }
        AnswerTotals(sum.into_iter().collect())
    }
}

/// Answers served per (service, region, PoP) over a recent window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnswerWindow {
    pub counts: BTreeMap<AnswerKey, f64>,
    /// Seconds the window spans, per service.
    pub window_s: BTreeMap<ServiceId, u32>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(pop: &str) -> AnswerKey {
        AnswerKey {
            service: ServiceId::new("app"),
            region: Some(RegionId::new("eu-west")),
            pop: PopId::new(pop),
        }
    }

    #[test]
    fn merged_edge_counters_only_grow_and_count_restarts_from_zero() {
        let mut m = MergedAnswers::default();
        assert!(m.apply("edge-a", 1, vec![(key("fra1"), 10)]));
        assert!(!m.apply("edge-a", 1, vec![(key("fra1"), 15)]));
        m.apply("edge-b", 7, vec![(key("fra1"), 4), (key("ams1"), 2)]);
        let t = m.totals();
        assert_eq!(t.0, vec![(key("ams1"), 2), (key("fra1"), 19)]);
        // edge-a restarts: its 3 are new answers, nothing is taken back.
        m.apply("edge-a", 2, vec![(key("fra1"), 3)]);
        // A resend of the same figures adds nothing.
        m.apply("edge-b", 7, vec![(key("fra1"), 4), (key("ams1"), 2)]);
        assert_eq!(m.totals().0, vec![(key("ams1"), 2), (key("fra1"), 22)]);
        assert_eq!(m.edges(), 2);
        let local = AnswerTotals(vec![(key("fra1"), 1)]);
        assert_eq!(local.plus(&m.totals()).0[1], (key("fra1"), 23));
    }

    #[test]
    fn window_counts_are_differences_and_survive_a_reset() {
        let tally = AnswerTally::default();
        let fra1 = tally.cell(key("fra1"));
        fra1.fetch_add(ANSWER_UNIT, Ordering::Relaxed);
        let first = tally.totals();
        fra1.fetch_add(ANSWER_UNIT / 2 * 3, Ordering::Relaxed);
        tally
            .cell(key("ams1"))
            .fetch_add(ANSWER_UNIT / 2, Ordering::Relaxed);
        let second = tally.totals();
        let d = second.since(&first);
        assert_eq!(d[&key("fra1")], 1.5);
        assert_eq!(d[&key("ams1")], 0.5);
        // A restarted data plane starts from zero again.
        let reset = AnswerTotals(vec![(key("fra1"), ANSWER_UNIT)]);
        assert_eq!(reset.since(&second)[&key("fra1")], 1.0);
    }
}
