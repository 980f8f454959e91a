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

const RCODES: [(ResponseCode, &str); 7] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::BADVERS, "BADVERS"),
];

pub(crate) struct QueryMetrics {
    qtype: Vec<Counter>,
    qtype_other: Counter,
    rcode: Vec<Counter>,
    rcode_other: Counter,
    ecs_yes: Counter,
    ecs_no: Counter,
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
            qtype: QTYPES
                .iter()
                .map(|(_, l)| counter!("steer_dns_queries_total", "qtype" => *l))
                .collect(),
            qtype_other: counter!("steer_dns_queries_total", "qtype" => "OTHER"),
            rcode: RCODES
                .iter()
                .map(|(_, l)| counter!("steer_dns_responses_total", "rcode" => *l))
                .collect(),
            rcode_other: counter!("steer_dns_responses_total", "rcode" => "OTHER"),
            ecs_yes: counter!("steer_dns_ecs_queries_total", "ecs" => "yes"),
            ecs_no: counter!("steer_dns_ecs_queries_total", "ecs" => "no"),
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
        RCODES
            .iter()
            .position(|(r, _)| *r == rcode)
            .and_then(|i| self.rcode.get(i))
            .unwrap_or(&self.rcode_other)
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
        let rcode = RCODES
            .iter()
            .position(|(r, _)| *r == a.rcode)
            .unwrap_or(RCODES.len());
        let q = &mut counts.queries;
        q.qtype[qtype] += 1;
        q.rcode[rcode] += 1;
        q.ecs[usize::from(ecs)] += 1;
    }
}

/// Per-query counts by qtype, rcode and ECS (each table's last slot is
/// OTHER), added up by index: every query bumps all three.
#[derive(Default)]
struct QueryCounts {
    qtype: [u64; QTYPES.len() + 1],
    rcode: [u64; RCODES.len() + 1],
    /// No, yes.
    ecs: [u64; 2],
}

/// The counter bumps of a batch of queries, added up and applied at once
/// by [`Counts::flush`]: a busy worker's batch of queries for one name
/// bumps each of its counters once, not once per query. A registered
/// counter costs two atomic additions and an indirect call per bump.
#[derive(Default)]
pub(crate) struct Counts<'v> {
    /// The metrics `queries` counts for.
    query: Option<&'v QueryMetrics>,
    queries: QueryCounts,
    counters: SmallVec<[(&'v Counter, u64); 16]>,
    sums: SmallVec<[(&'v AtomicU64, u64); 8]>,
    /// Subnets to note in selection samples, checked together at the end
    /// of the batch: each check is a load that usually misses the cache,
    /// and independent loads overlap.
    subnets: SmallVec<[(&'v ClientSample, u64); 32]>,
}

impl<'v> Counts<'v> {
    pub(crate) fn bump(&mut self, counter: &'v Counter, n: u64) {
        match self
            .counters
            .iter_mut()
            .find(|(c, _)| std::ptr::eq(*c, counter))
        {
            Some((_, sum)) => *sum += n,
            None => self.counters.push((counter, n)),
        }
    }

    /// Adds `n` to `sum` (a relaxed tally read by the control loop).
    pub(crate) fn add(&mut self, sum: &'v AtomicU64, n: u64) {
        match self.sums.iter_mut().find(|(s, _)| std::ptr::eq(*s, sum)) {
            Some((_, total)) => *total += n,
            None => self.sums.push((sum, n)),
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
        let q = std::mem::take(&mut self.queries);
        let counters = m.qtype.iter().chain([&m.qtype_other]);
        let counters = counters.chain(&m.rcode).chain([&m.rcode_other]);
        let counters = counters.chain([&m.ecs_no, &m.ecs_yes]);
        let counts = q.qtype.iter().chain(&q.rcode).chain(&q.ecs);
        for (counter, &n) in counters.zip(counts) {
            if n > 0 {
                counter.increment(n);
            }
        }
    }

    /// Applies what was counted; `self` is then empty.
    pub(crate) fn flush(&mut self) {
        self.flush_query();
        let noted: SmallVec<[bool; 32]> = self
            .subnets
            .iter()
            .map(|&(sample, key)| sample.noted(key))
            .collect();
        for (&(sample, key), noted) in self.subnets.iter().zip(noted) {
            if !noted {
                sample.observe(key);
            }
        }
        self.subnets.clear();
        for (counter, n) in self.counters.drain(..) {
            counter.increment(n);
        }
        for (sum, n) in self.sums.drain(..) {
            sum.fetch_add(n, Ordering::Relaxed);
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
