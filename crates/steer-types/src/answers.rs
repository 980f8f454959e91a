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
