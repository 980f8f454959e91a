//! Query metrics with handles registered once per view compile, so the
//! query path only bumps atomics: no label formatting, no registry lookup,
//! and no client addresses in any label.

use std::sync::atomic::{AtomicU64, Ordering};

use hickory_server::proto::{op::ResponseCode, rr::RecordType};
use metrics::{Counter, Histogram, counter, histogram};
use smallvec::SmallVec;

use crate::{answer::Answer, calibrate::ClientSample};

const QTYPES: [(RecordType, &str); 11] = [
    (RecordType::A, "A"),
    (RecordType::AAAA, "AAAA"),
    (RecordType::ANY, "ANY"),
    (RecordType::CNAME, "CNAME"),
    (RecordType::MX, "MX"),
    (RecordType::TXT, "TXT"),
    (RecordType::SOA, "SOA"),
    (RecordType::NS, "NS"),
    (RecordType::SRV, "SRV"),
    (RecordType::CAA, "CAA"),
    (RecordType::PTR, "PTR"),
];

const RCODES: [(ResponseCode, &str); 8] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    // A DNAME substitution too long for a name (RFC 6672 2.2).
    (ResponseCode::YXDomain, "YXDOMAIN"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::BADVERS, "BADVERS"),
];

/// Where each per-query counter sits in [`QueryMetrics::per_query`] and
/// [`QueryCounts::n`]: the qtypes, OTHER; the rcodes, OTHER; ECS no, yes.
const RCODE_AT: usize = QTYPES.len() + 1;
const ECS_AT: usize = RCODE_AT + RCODES.len() + 1;
const PER_QUERY: usize = ECS_AT + 2;

pub(crate) struct QueryMetrics {
    /// `steer_dns_queries_total` by qtype, `steer_dns_responses_total` by
    /// rcode and `steer_dns_ecs_queries_total`, laid out as `RCODE_AT`
    /// and `ECS_AT` say: every query bumps one of each.
    per_query: Vec<Counter>,
    pub(crate) truncated: Counter,
    pub(crate) rrl_drop: Counter,
    pub(crate) rrl_slip: Counter,
    pub(crate) malformed: Counter,
    /// Queries from port 0, unspecified, broadcast or multicast sources.
    pub(crate) bad_source: Counter,
    /// Replies the kernel refused to send (the rest of the batch still goes).
    pub(crate) send_failed: Counter,
    pub(crate) fallback: Counter,
    pub(crate) latency: Histogram,
}

impl QueryMetrics {
    pub(crate) fn register() -> Self {
        Self {
            per_query: QTYPES
                .iter()
                .map(|(_, l)| *l)
                .chain(["OTHER"])
                .map(|l| counter!("steer_dns_queries_total", "qtype" => l))
                .chain(
                    RCODES
                        .iter()
                        .map(|(_, l)| *l)
                        .chain(["OTHER"])
                        .map(|l| counter!("steer_dns_responses_total", "rcode" => l)),
                )
                .chain(["no", "yes"].map(|l| counter!("steer_dns_ecs_queries_total", "ecs" => l)))
                .collect(),
            truncated: counter!("steer_dns_truncated_total"),
            rrl_drop: counter!("steer_dns_rrl_total", "action" => "drop"),
            rrl_slip: counter!("steer_dns_rrl_total", "action" => "slip"),
            malformed: counter!("steer_dns_malformed_total"),
            bad_source: counter!("steer_dns_dropped_total", "reason" => "bad_source"),
            send_failed: counter!("steer_dns_dropped_total", "reason" => "send_failed"),
            fallback: counter!("steer_dns_fallback_answers_total"),
            latency: histogram!("steer_dns_latency_seconds"),
        }
    }

    pub(crate) fn rcode(&self, rcode: ResponseCode) -> &Counter {
        &self.per_query[RCODE_AT + rcode_index(rcode)]
    }

    /// Counts an answer being sent, and records what it served (see
    /// [`Answer::record_served`]), into `counts`.
    pub(crate) fn record<'v>(
        &'v self,
        qtype: RecordType,
        a: &Answer<'v>,
        ecs: bool,
        counts: &mut Counts<'v>,
    ) {
        a.record_served_into(counts);
        if !counts.query.is_some_and(|q| std::ptr::eq(q, self)) {
            // Another view's metrics: theirs are applied first.
            counts.flush_query();
            counts.query = Some(self);
        }
        let qtype = QTYPES
            .iter()
            .position(|(t, _)| *t == qtype)
            .unwrap_or(QTYPES.len());
        let q = &mut counts.queries;
        q.add(qtype);
        q.add(RCODE_AT + rcode_index(a.rcode));
        q.add(ECS_AT + usize::from(ecs));
    }
}

/// `rcode`'s place in [`RCODES`], or OTHER's.
fn rcode_index(rcode: ResponseCode) -> usize {
    RCODES
        .iter()
        .position(|(r, _)| *r == rcode)
        .unwrap_or(RCODES.len())
}

/// Per-query counts by qtype, rcode and ECS, laid out as
/// [`QueryMetrics::per_query`], with a bit per slot in use: a batch's
/// flush visits only those.
#[derive(Default)]
struct QueryCounts {
    n: [u64; PER_QUERY],
    touched: u32,
}

impl QueryCounts {
    fn add(&mut self, slot: usize) {
        if let Some(n) = self.n.get_mut(slot) {
            *n += 1;
            self.touched |= 1 << slot;
        }
    }
}

const _: () = assert!(PER_QUERY <= 32, "QueryCounts::touched has a bit per slot");

/// The counter bumps of a batch of queries, added up and applied at once
/// by [`Counts::flush`]: a busy worker's batch of queries for one name
/// bumps each of its counters once, not once per query. A registered
/// counter costs two atomic additions and an indirect call per bump.
#[derive(Default)]
pub(crate) struct Counts<'v> {
    /// The metrics `queries` counts for.
    query: Option<&'v QueryMetrics>,
    queries: QueryCounts,
    counters: Tally<'v, Counter>,
    sums: Tally<'v, AtomicU64>,
    /// Subnets to note in selection samples, checked together at the end
    /// of the batch: each check is a load that usually misses the cache,
    /// and independent loads overlap.
    subnets: SmallVec<[(&'v ClientSample, u64); 96]>,
}

impl<'v> Counts<'v> {
    pub(crate) fn bump(&mut self, counter: &'v Counter, n: u64) {
        if !self.counters.add(counter, n) {
            counter.increment(n);
        }
    }

    /// Adds `n` to `sum` (a relaxed tally read by the control loop).
    pub(crate) fn add(&mut self, sum: &'v AtomicU64, n: u64) {
        if !self.sums.add(sum, n) {
            sum.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Notes that `key` asked the set whose sample this is.
    pub(crate) fn observe(&mut self, sample: &'v ClientSample, key: u64) {
        self.subnets.push((sample, key));
    }

    /// Applies the per-query counts to their metrics.
    fn flush_query(&mut self) {
        let Some(m) = self.query else {
            return;
        };
        let q = &mut self.queries;
        while q.touched != 0 {
            let slot = q.touched.trailing_zeros() as usize;
            q.touched &= q.touched - 1;
            if let (Some(counter), Some(n)) = (m.per_query.get(slot), q.n.get_mut(slot)) {
                counter.increment(std::mem::take(n));
            }
        }
    }

    /// Applies what was counted; `self` is then empty.
    pub(crate) fn flush(&mut self) {
        self.flush_query();
        // The checks' results as bits, 64 at a time: nothing to allocate.
        for chunk in self.subnets.chunks(64) {
            let mut noted = 0u64;
            for (i, &(sample, key)) in chunk.iter().enumerate() {
                noted |= u64::from(sample.noted(key)) << i;
            }
            for (i, &(sample, key)) in chunk.iter().enumerate() {
                if noted & (1 << i) == 0 {
                    sample.observe(key);
                }
            }
        }
        self.subnets.clear();
        self.counters.drain(|counter, n| counter.increment(n));
        self.sums.drain(|sum, n| {
            sum.fetch_add(n, Ordering::Relaxed);
        });
    }
}

/// Sums to add to counters (or tallies) until a flush, each found by its
/// address in a small open-addressed table: a steered answer bumps a few
/// of a view's many counters, and a linear search for each showed in the
/// query path's profile. When the table is full a sum is applied at once.
struct Tally<'v, T> {
    slots: [Option<(&'v T, u64)>; TALLY_SLOTS],
    /// Whether any slot is in use (a flush with none skips the table).
    used: bool,
}

const TALLY_BITS: u32 = 5;
const TALLY_SLOTS: usize = 1 << TALLY_BITS;

impl<T> Default for Tally<'_, T> {
    fn default() -> Self {
        Self {
            slots: [None; TALLY_SLOTS],
            used: false,
        }
    }
}

impl<'v, T> Tally<'v, T> {
    /// Adds `n` to `target`'s sum; false if the table has no room for it.
    fn add(&mut self, target: &'v T, n: u64) -> bool {
        let addr = std::ptr::from_ref(target) as usize as u64;
        // Multiplicative hashing; the top bits pick the slot.
        let home = (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - TALLY_BITS)) as usize;
        for probe in 0..TALLY_SLOTS {
            let Some(slot) = self.slots.get_mut((home + probe) % TALLY_SLOTS) else {
                break;
            };
            match slot {
                Some((t, sum)) if std::ptr::eq(*t, target) => {
                    *sum += n;
                    return true;
                }
                Some(_) => {}
                None => {
                    *slot = Some((target, n));
                    self.used = true;
                    return true;
                }
            }
        }
        false
    }

    /// Hands every sum to `apply`, leaving the table empty.
    fn drain(&mut self, mut apply: impl FnMut(&'v T, u64)) {
        if !std::mem::take(&mut self.used) {
            return;
        }
        for slot in &mut self.slots {
            if let Some((t, n)) = slot.take() {
                apply(t, n);
            }
        }
    }
}

impl Drop for Counts<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Per-service and per-PoP counters, held by the compiled service/target.
pub(crate) fn service_counter(service: &str) -> Counter {
    counter!("steer_dns_service_queries_total", "service" => service.to_owned())
}

pub(crate) fn pop_counter(pop: &str) -> Counter {
    counter!("steer_dns_answers_total", "pop" => pop.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_sums_per_target_and_overflows_to_the_caller() {
        let targets: Vec<AtomicU64> = (0..40).map(|_| AtomicU64::new(0)).collect();
        let mut tally = Tally::default();
        let mut refused = 0;
        for round in 0..3u64 {
            for t in &targets {
                if !tally.add(t, round + 1) {
                    refused += 1;
                    t.fetch_add(round + 1, Ordering::Relaxed);
                }
            }
        }
        assert_eq!(
            refused,
            3 * (40 - TALLY_SLOTS),
            "a full table refuses the rest"
        );
        tally.drain(|t, n| {
            t.fetch_add(n, Ordering::Relaxed);
        });
        assert!(targets.iter().all(|t| t.load(Ordering::Relaxed) == 6));
        assert!(tally.slots.iter().all(Option::is_none), "drained");
        assert!(tally.add(&targets[0], 1), "room again");
    }
}
