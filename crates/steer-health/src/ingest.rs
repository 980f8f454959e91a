//! gRPC health ingest: one bidirectional stream per agent.
//!
//! Each report is read in place from its bytes ([`crate::wire::ReportView`]),
//! validated into an [`ObservedReport`] and sent to the control loop, which
//! owns the aggregator. Sequence numbers are checked here, per PoP and agent
//! instance, so duplicates and reordering never reach the core. Agents that
//! ask for cumulative acks get one per interval, and at once whenever it
//! matters (an ignored report, a new desired state).

use std::{collections::BTreeMap, pin::Pin, sync::Arc};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use futures::Stream;
use prost::bytes::Bytes;
use steer_proto::v1::{
    HealthReport, PopDesiredState, ReportAck, ServiceStatus, health_ingest_server::HealthIngest,
};
use steer_types::{Plan, PopId, RegionId, auth::Caller, health::LoadFigures};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::{
    aggregator::{Observation, ObservedReport, PeerObservation, SliCounters},
    sequence::{ReportOrigin, SequenceTracker, SequenceVerdict},
    wire::{ReportView, WireError},
};

/// Last accepted report origin per PoP.
type SequenceTable = DashMap<PopId, SequenceTracker>;

/// Takes an edge's answer counters (edge, instance, counters); `Err`
/// names what it refused (an unknown service, region or PoP).
pub type AnswerSink = Arc<
    dyn Fn(&str, u64, Vec<(steer_types::answers::AnswerKey, u64)>) -> Result<(), String>
        + Send
        + Sync,
>;

/// Most counters one answer report may carry (edges split larger sets).
pub const MAX_ANSWER_COUNTERS: usize = 10_000;

#[derive(Clone)]
pub struct IngestService {
    plan: Arc<ArcSwap<Plan>>,
    to_control: mpsc::Sender<ObservedReport>,
    sequences: Arc<SequenceTable>,
    answers: Option<AnswerSink>,
}

impl IngestService {
    pub fn new(plan: Arc<ArcSwap<Plan>>, to_control: mpsc::Sender<ObservedReport>) -> Self {
        Self {
            plan,
            to_control,
            sequences: Arc::new(DashMap::new()),
            answers: None,
        }
    }

    /// Takes edges' answer reports into `sink` (without one they are
    /// refused UNIMPLEMENTED).
    pub fn with_answer_sink(mut self, sink: AnswerSink) -> Self {
        self.answers = Some(sink);
        self
    }
}

/// Registers ingest's series at zero (one per configured PoP for the
/// accepted count, one per refusal reason), so a dashboard or an alert sees
/// them from the first scrape, not only after the first report.
pub fn register_metrics<'a>(pops: impl IntoIterator<Item = &'a PopId>) {
    metrics::gauge!("steer_health_streams").set(0.0);
    for result in [
        "accepted",
        "invalid",
        "permission_denied",
        "unauthenticated",
        "unimplemented",
    ] {
        metrics::counter!("steer_answer_reports_total", "result" => result).absolute(0);
    }
    for pop in pops {
        metrics::counter!("steer_health_reports_total", "pop" => pop.to_string()).absolute(0);
    }
    for reason in [
        "invalid",
        "unknown_pop",
        "permission_denied",
        "unauthenticated",
        SequenceVerdict::StaleSequence.label(),
        SequenceVerdict::SupersededInstance.label(),
    ] {
        metrics::counter!("steer_health_reports_rejected_total", "reason" => reason).absolute(0);
    }
}

/// Why a report was rejected; each maps to a metric label and a status.
#[derive(Debug)]
enum Rejection {
    Invalid(String),
    UnknownPop(String),
}

impl Rejection {
    fn label(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::UnknownPop(_) => "unknown_pop",
        }
    }

    fn into_status(self) -> Status {
        match self {
            Self::Invalid(msg) => Status::invalid_argument(msg),
            Self::UnknownPop(pop) => Status::not_found(format!(
                "pop {pop:?} is not in steerd's configuration; check the agent's `pop` key"
            )),
        }
    }
}

/// Proto → domain, with every check a malformed report could fail.
///
/// Runs once per report, so it borrows ids from the plan (cheap `Arc`
/// clones) and builds the evidence line in one string.
fn validate(report: &ReportView<'_>, plan: &Plan) -> Result<ObservedReport, Rejection> {
    if report.pop.is_empty() {
        return Err(Rejection::Invalid("report has an empty `pop`".into()));
    }
    let Some(pop) = plan.pop(report.pop) else {
        return Err(Rejection::UnknownPop(report.pop.to_owned()));
    };
    if report.sequence == 0 {
        return Err(Rejection::Invalid("`sequence` must start at 1".into()));
    }
    for (name, v) in [
        ("capacity_rps", report.capacity_rps),
        ("load_rps", report.load_rps),
        ("bandwidth_bps", report.bandwidth_bps),
        ("latency_p50_ms", report.latency_p50_ms),
        ("latency_p99_ms", report.latency_p99_ms),
        ("error_ratio", report.error_ratio),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(Rejection::Invalid(format!(
                "`{name}` must be a finite, non-negative number, got {v}"
            )));
        }
    }
    if report.error_ratio > 1.0 {
        return Err(Rejection::Invalid(format!(
            "`error_ratio` must be between 0 and 1, got {}",
            report.error_ratio
        )));
    }
    let peers = validate_peers(report, plan)?;
    let region_load = validate_region_load(report, plan)?;
    let mut services = Vec::with_capacity(report.service_count);
    let mut sli = Vec::new();
    // `app: http app-http HTTP 200, tcp app-tcp ok; api: ...`
    let mut evidence = String::new();
    for s in report.services() {
        let Some(steered) = plan
            .body
            .services
            .iter()
            .find(|p| p.id.as_str() == s.service)
        else {
            // Agents may probe services this steerd does not steer; skip them.
            continue;
        };
        let obs = match ServiceStatus::try_from(s.status) {
            Ok(ServiceStatus::Up | ServiceStatus::Degraded) => Observation::Up,
            Ok(ServiceStatus::Down) => Observation::Down,
            Ok(ServiceStatus::Unspecified) | Err(_) => {
                return Err(Rejection::Invalid(format!(
                    "service {:?} has no valid status ({})",
                    s.service, s.status
                )));
            }
        };
        if !evidence.is_empty() {
            evidence.push_str("; ");
        }
        evidence.push_str(s.service);
        evidence.push_str(": ");
        for (i, p) in s.probes().enumerate() {
            if i > 0 {
                evidence.push_str(", ");
            }
            for (j, part) in [p.kind, p.name, p.detail].into_iter().enumerate() {
                if j > 0 {
                    evidence.push(' ');
                }
                evidence.push_str(part);
            }
        }
        if s.sli_present {
            sli.push(SliCounters {
                service: steered.id.clone(),
                total: s.requests_total,
                failed: s.requests_failed.min(s.requests_total),
                slow: s
                    .slow_present
                    .then_some(s.requests_slow.min(s.requests_total)),
            });
        }
        services.push((steered.id.clone(), obs));
    }
    let degraded = report
        .services()
        .any(|s| s.status == i32::from(ServiceStatus::Degraded));
    Ok(ObservedReport {
        pop: pop.id.clone(),
        services,
        load_rps: report.load_rps,
        capacity_rps: (report.capacity_rps > 0.0).then_some(report.capacity_rps),
        evidence,
        load: LoadFigures {
            bandwidth_bps: report.bandwidth_bps,
            error_ratio: report.error_ratio,
            latency_p50_ms: report.latency_p50_ms,
            latency_p99_ms: report.latency_p99_ms,
            degraded,
        },
        peers,
        sli,
        region_load,
    })
}

/// Load by client region: finite, non-negative, and no more in total than
/// the PoP's load; regions this steerd does not know are skipped (like
/// unknown services), and there can be no more of them than it has
/// regions plus a margin for a config being rolled out.
fn validate_region_load(
    report: &ReportView<'_>,
    plan: &Plan,
) -> Result<BTreeMap<RegionId, f64>, Rejection> {
    let limit = plan.body.regions.len() + 64;
    let too_many = || {
        Rejection::Invalid(format!(
            "`region_load_rps` has more than {limit} regions; steerd knows {} (at most {limit} accepted)",
            plan.body.regions.len()
        ))
    };
    if report.region_entries == 0 {
        return Ok(BTreeMap::new());
    }
    // A map: a later entry for a region replaces an earlier one.
    let mut entries: Vec<(&str, f64)> = Vec::with_capacity(report.region_entries.min(limit));
    for (region, rps) in report.region_load() {
        if let Some(entry) = entries.iter_mut().find(|(r, _)| *r == region) {
            entry.1 = rps;
        } else if entries.len() == limit {
            return Err(too_many());
        } else {
            entries.push((region, rps));
        }
    }
    let mut out = BTreeMap::new();
    let mut sum = 0.0;
    for (region, rps) in entries {
        if !rps.is_finite() || rps < 0.0 {
            return Err(Rejection::Invalid(format!(
                "`region_load_rps[{region:?}]` must be a finite, non-negative number, got {rps}"
            )));
        }
        sum += rps;
        if let Some(known) = plan.body.regions.iter().find(|r| r.id.as_str() == region) {
            out.insert(known.id.clone(), rps);
        }
    }
    // Rounding in the agent's sums is not a lie; 0.1% over is.
    if sum > report.load_rps * 1.001 + 1e-6 {
        return Err(Rejection::Invalid(format!(
            "`region_load_rps` adds up to {sum} rps, more than `load_rps` ({})",
            report.load_rps
        )));
    }
    Ok(out)
}

/// What ingest makes of one report's bytes, before the sequence check:
/// decode, then [`validate`]. For the fuzz targets; never panics.
pub fn decode_report(bytes: &[u8], plan: &Plan) -> Result<ObservedReport, Status> {
    let report = ReportView::parse(bytes).map_err(undecodable)?;
    validate(&report, plan).map_err(Rejection::into_status)
}

fn undecodable(e: WireError) -> Status {
    Status::invalid_argument(format!("undecodable health report: {e}"))
}

/// Peer observations about PoPs this steerd does not know are skipped, like
/// unknown services; an observation without a PoP is malformed.
fn validate_peers(report: &ReportView<'_>, plan: &Plan) -> Result<Vec<PeerObservation>, Rejection> {
    let mut peers = Vec::with_capacity(report.peer_count);
    for p in report.peers() {
        if p.pop.is_empty() {
            return Err(Rejection::Invalid(format!(
                "peer observation {:?} has an empty `pop`",
                p.name
            )));
        }
        let Some(target) = plan.pop(p.pop) else {
            continue;
        };
        // `tcp fra1-vip: connected`
        let mut detail = String::with_capacity(p.kind.len() + p.name.len() + p.detail.len() + 3);
        detail.push_str(p.kind);
        detail.push(' ');
        detail.push_str(p.name);
        detail.push_str(": ");
        detail.push_str(p.detail);
        peers.push(PeerObservation {
            target: target.id.clone(),
            reachable: p.reachable,
            detail,
            latency_ms: p.latency_ms,
        });
    }
    Ok(peers)
}

fn desired_state(plan: &Plan, pop: &str) -> Option<PopDesiredState> {
    plan.pop(pop).map(|p| PopDesiredState {
        drained: p.drained_by.is_some(),
        weight_permille: p.weight,
        plan_version: plan.version,
    })
}

pub(crate) type AckStream = Pin<Box<dyn Stream<Item = Result<ReportAck, Status>> + Send>>;

/// One agent's stream, handled where its acks are polled (no task or
/// channel of its own): each reply is produced when the transport asks for
/// the next one. Dropping it (stream ended, or the agent went away) closes
/// the stream's books.
struct AgentStream<S> {
    service: IngestService,
    /// The agent's reports, each one message's bytes.
    inbound: S,
    peer: String,
    /// The PoP this caller may report for; `None` when auth is off.
    bound_pop: Option<PopId>,
    /// `steer_health_reports_total` of the PoP last accepted, so a report
    /// costs an atomic add instead of a label allocation and registry lookup.
    accepted: Option<(PopId, metrics::Counter)>,
    /// The desired state last sent, by (plan version, PoP).
    desired: Option<(u64, PopId, Option<PopDesiredState>)>,
    /// When the last ack went out and the desired state it carried, for
    /// cumulative acks (`HealthReport.ack_interval_ms`).
    last_ack: Option<(tokio::time::Instant, Option<PopDesiredState>)>,
    /// Whether this stream's reports were said to come from a superseded
    /// agent instance (said once a stream; counted every time).
    warned_superseded: bool,
    /// The ack interval the agent's newest report asked for (0: every report).
    ack_interval_ms: u32,
}

/// The longest an agent may ask steerd to hold back acks of accepted reports.
pub const MAX_ACK_INTERVAL_MS: u32 = 10_000;

impl<S> Drop for AgentStream<S> {
    fn drop(&mut self) {
        metrics::gauge!("steer_health_streams").decrement(1.0);
        info!(peer = %self.peer, "health stream closed");
    }
}

impl<S: Stream<Item = Result<Bytes, Status>> + Unpin> AgentStream<S> {
    /// The reply to the agent's next report that needs one: an ack, or a
    /// status that ends the stream. `None` once the agent closed its side.
    /// With cumulative acks, accepted reports inside the agent's ack
    /// interval are taken without a reply (no write to the agent's socket).
    async fn next_reply(&mut self) -> Option<Result<ReportAck, Status>> {
        loop {
            let report = match self.inbound.next().await? {
                Ok(r) => r,
                Err(status) => {
                    // An oversized or undecodable frame: the agent hears why
                    // (OUT_OF_RANGE, ...); the stream ends either way.
                    debug!(peer = %self.peer, %status, "health stream ended with error");
                    return Some(Err(status));
                }
            };
            let now = tokio::time::Instant::now();
            let reply = self.take(&report, now).await;
            if let Ok(ack) = &reply {
                if ack.accepted && self.may_hold(ack, now) {
                    continue;
                }
                self.last_ack = Some((now, ack.desired));
            }
            return Some(reply);
        }
    }

    /// Whether an accepted report's ack may wait for a later one: the agent
    /// asked for cumulative acks, an ack went out within its interval, and
    /// the desired state is what that ack said.
    fn may_hold(&self, ack: &ReportAck, now: tokio::time::Instant) -> bool {
        let interval = std::time::Duration::from_millis(u64::from(
            self.ack_interval_ms.min(MAX_ACK_INTERVAL_MS),
        ));
        match &self.last_ack {
            Some((at, desired)) if !interval.is_zero() => {
                now.saturating_duration_since(*at) < interval && *desired == ack.desired
            }
            _ => false,
        }
    }

    /// Takes one report: the ack (or the status ending the stream) it earns.
    async fn take(&mut self, bytes: &[u8], now: tokio::time::Instant) -> Result<ReportAck, Status> {
        let report = match ReportView::parse(bytes) {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!("steer_health_reports_rejected_total", "reason" => "invalid")
                    .increment(1);
                warn!(peer = %self.peer, error = %e, "undecodable health report");
                return Err(undecodable(e));
            }
        };
        self.ack_interval_ms = report.ack_interval_ms;
        if let Some(pop) = &self.bound_pop
            && pop.as_str() != report.pop
        {
            metrics::counter!("steer_health_reports_rejected_total", "reason" => "permission_denied").increment(1);
            warn!(peer = %self.peer, allowed = %pop, claimed = %report.pop, "report for another PoP refused");
            return Err(Status::permission_denied(format!(
                "this identity may only report for {pop}, not {:?}",
                report.pop
            )));
        }
        let plan = self.service.plan.load();
        let observed = match validate(&report, &plan) {
            Ok(o) => o,
            Err(rej) => {
                metrics::counter!("steer_health_reports_rejected_total", "reason" => rej.label())
                    .increment(1);
                warn!(peer = %self.peer, pop = %report.pop, ?rej, "rejected health report");
                return Err(rej.into_status());
            }
        };
        let pop = observed.pop.clone();
        let origin = ReportOrigin {
            instance: report.agent_instance,
            started_unix_ms: report.agent_started_unix_ms,
            sequence: report.sequence,
        };
        let verdict = match self.service.sequences.entry(pop.clone()) {
            dashmap::mapref::entry::Entry::Occupied(mut e) => e.get_mut().check(origin, now),
            dashmap::mapref::entry::Entry::Vacant(e) => {
                e.insert(SequenceTracker::new(origin, now));
                SequenceVerdict::Fresh
            }
        };
        if verdict != SequenceVerdict::Fresh {
            metrics::counter!("steer_health_reports_rejected_total", "reason" => verdict.label())
                .increment(1);
            let detail = match verdict {
                SequenceVerdict::SupersededInstance => {
                    if !self.warned_superseded {
                        warn!(peer = %self.peer, %pop, instance = report.agent_instance,
                            started_unix_ms = report.agent_started_unix_ms,
                            "reports from a superseded agent instance ignored (said once per stream; steer_health_reports_rejected_total counts them); is an old agent still running?");
                    }
                    self.warned_superseded = true;
                    "a newer agent instance reports for this PoP; ignored"
                }
                _ => "duplicate or out-of-order sequence; ignored",
            };
            return Ok(ReportAck {
                sequence: report.sequence,
                accepted: false,
                detail: detail.into(),
                desired: self.desired_state(&plan, &pop),
            });
        }
        self.count_accepted(&pop);
        if self.service.to_control.send(observed).await.is_err() {
            return Err(Status::unavailable("control loop stopped"));
        }
        // The plan may have moved while the control loop took the report.
        let plan = self.service.plan.load();
        Ok(ReportAck {
            sequence: report.sequence,
            accepted: true,
            detail: String::new(),
            desired: self.desired_state(&plan, &pop),
        })
    }

    fn count_accepted(&mut self, pop: &PopId) {
        match &self.accepted {
            Some((cached, counter)) if cached == pop => counter.increment(1),
            _ => {
                let counter =
                    metrics::counter!("steer_health_reports_total", "pop" => pop.to_string());
                counter.increment(1);
                self.accepted = Some((pop.clone(), counter));
            }
        }
    }

    fn desired_state(&mut self, plan: &Plan, pop: &PopId) -> Option<PopDesiredState> {
        match &self.desired {
            Some((version, cached, desired)) if *version == plan.version && cached == pop => {
                *desired
            }
            _ => {
                let desired = desired_state(plan, pop.as_str());
                self.desired = Some((plan.version, pop.clone(), desired));
                desired
            }
        }
    }
}

#[tonic::async_trait]
impl HealthIngest for IngestService {
    type ReportStream = AckStream;

    async fn report_answers(
        &self,
        request: Request<steer_proto::v1::ReportAnswersRequest>,
    ) -> Result<Response<steer_proto::v1::ReportAnswersResponse>, Status> {
        use steer_types::{RegionId, ServiceId, answers::AnswerKey, auth::Role};
        let refuse = |reason: &'static str, status: Status| {
            metrics::counter!("steer_answer_reports_total", "result" => reason).increment(1);
            Err(status)
        };
        // Answer counts steer like health does: a PoP-bound identity (an
        // edge's token with `pop`) or an operator.
        match request.extensions().get::<Caller>() {
            Some(Caller::Open { .. }) => {}
            Some(Caller::Known(id))
                if id.pop.is_some() || id.role.is_some_and(|r| r >= Role::Operator) => {}
            Some(Caller::Known(id)) => {
                let why = format!(
                    "{} may not report answers: give the edge a token with its `pop` (or the operator role)",
                    id.principal
                );
                return refuse("permission_denied", Status::permission_denied(why));
            }
            Some(Caller::Unknown { why }) => {
                return refuse("unauthenticated", Status::unauthenticated(*why));
            }
            None => {
                return refuse(
                    "unauthenticated",
                    Status::unauthenticated("no caller identity"),
                );
            }
        }
        let Some(sink) = &self.answers else {
            return refuse(
                "unimplemented",
                Status::unimplemented("this steerd takes no answer reports"),
            );
        };
        let body = request.into_inner();
        let edge = body.edge.trim();
        if edge.is_empty() || edge.len() > 256 {
            return refuse(
                "invalid",
                Status::invalid_argument("`edge` must name the edge (1 to 256 bytes)"),
            );
        }
        if body.counters.len() > MAX_ANSWER_COUNTERS {
            return refuse(
                "invalid",
                Status::invalid_argument(format!(
                    "{} counters in one report; at most {MAX_ANSWER_COUNTERS} (split them)",
                    body.counters.len()
                )),
            );
        }
        let counters = body
            .counters
            .into_iter()
            .map(|c| {
                (
                    AnswerKey {
                        service: ServiceId::new(&c.service),
                        region: (!c.region.is_empty()).then(|| RegionId::new(&c.region)),
                        pop: PopId::new(&c.pop),
                    },
                    c.value,
                )
            })
            .collect();
        match sink(edge, body.instance, counters) {
            Ok(()) => {
                metrics::counter!("steer_answer_reports_total", "result" => "accepted")
                    .increment(1);
                Ok(Response::new(steer_proto::v1::ReportAnswersResponse {}))
            }
            Err(why) => refuse("invalid", Status::invalid_argument(why)),
        }
    }

    /// Served by [`crate::ingest_route::HealthIngestRoutes`] from the
    /// reports' bytes; this generated entry point (not routed by steerd)
    /// re-encodes each decoded report and takes the same path.
    async fn report(
        &self,
        request: Request<Streaming<HealthReport>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        let request = request.map(|reports| {
            reports.map(|r| r.map(|m| Bytes::from(prost::Message::encode_to_vec(&m))))
        });
        self.open(request)
    }
}

impl IngestService {
    /// Opens one agent's report stream, each item one report's bytes: binds
    /// it to the caller's PoP (or refuses the caller) and answers with acks.
    pub(crate) fn open<S>(&self, request: Request<S>) -> Result<Response<AckStream>, Status>
    where
        S: Stream<Item = Result<Bytes, Status>> + Unpin + Send + 'static,
    {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        // A PoP may only report for itself: bind the stream to the caller.
        let bound_pop: Option<PopId> = match request.extensions().get::<Caller>() {
            Some(Caller::Open { .. }) => None,
            Some(Caller::Known(id)) => match &id.pop {
                Some(pop) => Some(pop.clone()),
                None => {
                    metrics::counter!("steer_health_reports_rejected_total", "reason" => "permission_denied").increment(1);
                    return Err(Status::permission_denied(format!(
                        "{} is not an agent identity (its token has no `pop`)",
                        id.principal
                    )));
                }
            },
            Some(Caller::Unknown { why }) => {
                metrics::counter!("steer_health_reports_rejected_total", "reason" => "unauthenticated").increment(1);
                return Err(Status::unauthenticated(*why));
            }
            None => {
                return Err(Status::unauthenticated("no caller identity"));
            }
        };
        metrics::gauge!("steer_health_streams").increment(1.0);
        info!(%peer, "health stream opened");
        let stream = AgentStream {
            service: self.clone(),
            inbound: request.into_inner(),
            peer,
            bound_pop,
            accepted: None,
            desired: None,
            last_ack: None,
            warned_superseded: false,
            ack_interval_ms: 0,
        };
        // A refusal ends the stream: the state is dropped with it.
        let replies = futures::stream::unfold(Some(stream), |state| async move {
            let mut stream = state?;
            let reply = stream.next_reply().await?;
            let next = reply.is_ok().then_some(stream);
            Some((reply, next))
        });
        Ok(Response::new(Box::pin(replies)))
    }
}

#[cfg(test)]
#[path = "fuzz_plan.rs"]
mod fuzz_plan;

#[cfg(test)]
#[path = "ingest_fuzz.rs"]
mod fuzz;
