//! The `steer.v1.Operator` gRPC service.

use std::{pin::Pin, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use futures::Stream;
use prost::Message;
use steer_proto::v1::{self as pb, operator_server::Operator};
use steer_types::{
    Plan, PopId,
    auth::{Caller, Role},
    status::StatusReport,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};
use tracing::info;

use crate::{
    ApiCommand, ApiError, AuditFilter, AuditReader, DeniedAudit, DrainCommand, DryRunner,
    Explainer, ReloadRequest, convert,
};

/// The one place an [`ApiError`] becomes a gRPC status.
pub fn api_status(e: ApiError) -> Status {
    {
        match e {
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::InvalidArgument(m) => Status::invalid_argument(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::Refused(p) => {
                let details = convert::projection(&p).encode_to_vec();
                Status::with_details(
                    Code::FailedPrecondition,
                    format!(
                        "drain refused by the capacity rail: {} (use --force to apply anyway)",
                        p.summary
                    ),
                    details.into(),
                )
            }
            other => Status::internal(other.to_string()),
        }
    }
}

const MAX_RAMP: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_EXPIRY: Duration = Duration::from_secs(365 * 24 * 3600);

pub struct OperatorService {
    to_control: mpsc::Sender<ApiCommand>,
    plans: watch::Receiver<Arc<Plan>>,
    explainer: Arc<dyn Explainer>,
    reload: Option<mpsc::Sender<ReloadRequest>>,
    /// Where proposed config files are validated (ProposeChange).
    pub(crate) proposals: Option<mpsc::Sender<crate::ProposeRequest>>,
    bgp: Option<BgpStatusSource>,
    /// Audits refusals and reads the audit log without the control loop.
    audit: Option<(Arc<DeniedAudit>, AuditReader)>,
    /// Projects dry runs without the control loop, a few at a time.
    dry_run: Option<(Arc<dyn DryRunner>, Arc<tokio::sync::Semaphore>)>,
    /// The control loop's published status, read without asking the loop.
    status: Option<Arc<ArcSwap<StatusReport>>>,
    /// Plan subscriptions of edges (SubscribePlan).
    plan_feed: Arc<crate::plan_feed::PlanFeed>,
    /// What SubscribePlan serves.
    plan_source: crate::plan_feed::PlanSource,
    /// Whether this controller may take changes (a clustered follower
    /// answers with where the leader is).
    write_gate: Option<WriteGate>,
    /// The SLOs as last evaluated (GetSlos).
    slos: Option<SlosSource>,
    /// Signed zones' DS records (GetDnssecDs).
    dnssec: Option<DnssecSource>,
    /// The incident timeline (GetTimeline).
    pub(crate) timeline: Option<steer_types::timeline::TimelineHandle>,
}

/// The DS records of a zone (GetDnssecDs): NOT_FOUND for a zone that is
/// not served or not signed.
pub type DnssecSource =
    Arc<dyn Fn(&str) -> Result<Vec<steer_types::DnssecDs>, ApiError> + Send + Sync>;

/// Reads the SLOs as the control loop last evaluated them.
pub type SlosSource = Arc<dyn Fn() -> pb::GetSlosResponse + Send + Sync>;

/// Longest range one SLO correction may exclude (a year and a bit: an SLO
/// window is at most that).
const MAX_CORRECTION: Duration = Duration::from_secs(400 * 24 * 3600);

/// The metadata key in which a clustered follower's refusal of a change
/// names the leader's API URL (steerctl retries the call there).
pub const LEADER_METADATA: &str = "steer-leader";

/// Says whether changes may be made here: `Err` with the status to answer
/// (e.g. UNAVAILABLE naming the leader) when not.
pub type WriteGate = Arc<dyn Fn() -> Result<(), Status> + Send + Sync>;

/// How long a unary call may wait for the control loop (or the reloader)
/// before it is answered DEADLINE_EXCEEDED. Streams (WatchPlan, health
/// reports) are not bounded by it: they live as long as their client.
pub const UNARY_TIMEOUT: Duration = Duration::from_secs(30);

/// Counts live WatchPlan subscriptions in `steer_api_watchers`; the
/// subscription's task holds one for as long as it runs.
struct WatcherGauge;

impl WatcherGauge {
    fn start() -> Self {
        metrics::gauge!("steer_api_watchers").increment(1.0);
        Self
    }
}

impl Drop for WatcherGauge {
    fn drop(&mut self) {
        metrics::gauge!("steer_api_watchers").decrement(1.0);
    }
}

/// Registers the API's limit metrics at zero, so dashboards and alerts see
/// them before the first hit.
pub fn register_metrics() {
    metrics::gauge!("steer_api_watchers").set(0.0);
    metrics::gauge!("steer_plan_subscribers").set(0.0);
    for kind in ["full", "delta"] {
        metrics::counter!("steer_plan_updates_sent_total", "kind" => kind).absolute(0);
        metrics::counter!("steer_plan_update_bytes_total", "kind" => kind).absolute(0);
    }
    for method in [
        "Drain",
        "Undrain",
        "ListIntents",
        "SetWeightOverride",
        "ClearOverride",
        "GetStatus",
        "GetAudit",
        "ReloadConfig",
        "ConfirmFailure",
        "CorrectSlo",
        "ProposeChange",
        "ListChanges",
        "GetChange",
        "ActOnChange",
    ] {
        metrics::counter!("steer_api_timeouts_total", "method" => method).absolute(0);
    }
    for field in [
        "scope.id",
        "scope.service",
        "pop",
        "reason",
        "principal",
        "scope",
        "name",
        "qtype",
        "client",
        "subscriber",
        "zone",
        "config",
        "id",
    ] {
        metrics::counter!("steer_api_field_rejected_total", "field" => field).absolute(0);
    }
    for code in ["unauthenticated", "permission_denied"] {
        metrics::counter!("steer_api_denied_total", "code" => code).absolute(0);
    }
    for reason in [
        crate::auth::Denial::NoCredential,
        crate::auth::Denial::UnknownToken,
        crate::auth::Denial::UnknownCertificate,
        crate::auth::Denial::AmbiguousCertificate,
    ] {
        metrics::counter!("steer_auth_denied_total", "reason" => reason.label()).absolute(0);
    }
}

/// Dry-run projections computed at once; more get RESOURCE_EXHAUSTED.
const DRY_RUNS_AT_ONCE: usize = 2;

/// Most entries one `GetAudit` returns.
const MAX_AUDIT_LIMIT: usize = 10_000;

/// Reads the BGP speaker's status for `GetStatus`.
pub type BgpStatusSource = Arc<dyn Fn() -> steer_types::bgp::BgpStatus + Send + Sync>;

impl OperatorService {
    pub fn new(
        to_control: mpsc::Sender<ApiCommand>,
        plans: watch::Receiver<Arc<Plan>>,
        explainer: Arc<dyn Explainer>,
        reload: Option<mpsc::Sender<ReloadRequest>>,
    ) -> Self {
        Self {
            to_control,
            explainer,
            reload,
            proposals: None,
            bgp: None,
            audit: None,
            dry_run: None,
            status: None,
            plan_feed: Arc::new(crate::plan_feed::PlanFeed::new()),
            plan_source: crate::plan_feed::PlanSource::Local {
                epoch: steer_plansync::SINGLE_WRITER_EPOCH,
                plans: plans.clone(),
            },
            plans,
            write_gate: None,
            slos: None,
            dnssec: None,
            timeline: None,
        }
    }

    /// Validates ProposeChange's config files through `tx`.
    pub fn with_proposals(mut self, tx: mpsc::Sender<crate::ProposeRequest>) -> Self {
        self.proposals = Some(tx);
        self
    }

    /// Answers GetDnssecDs from `source`.
    pub fn with_dnssec(mut self, source: DnssecSource) -> Self {
        self.dnssec = Some(source);
        self
    }

    /// Answers GetSlos from `source`.
    pub fn with_slos(mut self, source: SlosSource) -> Self {
        self.slos = Some(source);
        self
    }

    /// Serves edges the plans of `source` (a clustered control plane's
    /// shared plans) instead of the local loop's.
    pub fn with_plan_source(mut self, source: crate::plan_feed::PlanSource) -> Self {
        self.plan_source = source;
        self
    }

    /// Checks `gate` before every change (drain, undrain, overrides,
    /// failure confirmation); dry runs and reads pass.
    pub fn with_write_gate(mut self, gate: WriteGate) -> Self {
        self.write_gate = Some(gate);
        self
    }

    fn may_write(&self) -> Result<(), Status> {
        match &self.write_gate {
            Some(gate) => gate(),
            None => Ok(()),
        }
    }

    /// Answers dry-run drains from the loop's published inputs, off the
    /// loop (see [`DryRunner`]).
    pub fn with_dry_run(mut self, runner: Arc<dyn DryRunner>) -> Self {
        let permits = Arc::new(tokio::sync::Semaphore::new(DRY_RUNS_AT_ONCE));
        metrics::counter!("steer_api_dry_runs_rejected_total").increment(0);
        self.dry_run = Some((runner, permits));
        self
    }

    /// A dry-run drain: projected on a blocking thread from the loop's
    /// latest inputs, audited at the bounded rate, nothing sent to the loop.
    async fn dry_run_drain(
        &self,
        runner: Arc<dyn DryRunner>,
        permits: Arc<tokio::sync::Semaphore>,
        cmd: DrainCommand,
    ) -> Result<Response<pb::DrainResponse>, Status> {
        let Ok(permit) = permits.try_acquire_owned() else {
            metrics::counter!("steer_api_dry_runs_rejected_total").increment(1);
            return Err(Status::resource_exhausted(
                "too many dry runs in progress; try again shortly",
            ));
        };
        let audit = self.audit.as_ref().map(|(a, _)| a.clone());
        let (projection, plan_version) = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let (projection, plan_version) = runner.project_drain(&cmd.scope)?;
            if let Some(audit) = audit {
                audit.record_entry_blocking(steer_types::audit::AuditEntry {
                    at: steer_types::Timestamp::default(),
                    principal: cmd.principal,
                    action: "drain".into(),
                    scope: cmd.scope.describe(),
                    reason: cmd.reason,
                    detail: format!("{:?}; {}", cmd.mode, projection.summary),
                    intent_id: None,
                    plan_version,
                    dry_run: true,
                    forced: cmd.force && projection.over_capacity,
                    outcome: "dry-run".into(),
                });
            }
            Ok::<_, ApiError>((projection, plan_version))
        })
        .await
        .map_err(|_| Status::internal("dry-run projection failed"))?
        .map_err(api_status)?;
        metrics::counter!("steer_api_requests_total", "method" => "Drain").increment(1);
        Ok(Response::new(pb::DrainResponse {
            intent_id: String::new(),
            plan_version,
            applied: false,
            projection: Some(convert::projection(&projection)),
            change_id: String::new(),
        }))
    }

    /// Audits refused callers (rate-limited, size-capped) and serves
    /// `GetAudit` straight from the store, both off the control loop.
    pub fn with_audit(mut self, denied: Arc<DeniedAudit>, reader: AuditReader) -> Self {
        self.audit = Some((denied, reader));
        self
    }

    /// Serves `GetStatus` from the control loop's published snapshot.
    pub fn with_status_snapshot(mut self, status: Arc<ArcSwap<StatusReport>>) -> Self {
        self.status = Some(status);
        self
    }

    /// Adds the BGP speaker's sessions and routes to `GetStatus`.
    pub fn with_bgp_status(mut self, source: BgpStatusSource) -> Self {
        self.bgp = Some(source);
        self
    }

    pub(crate) async fn call<T>(
        &self,
        method: &'static str,
        make: impl FnOnce(oneshot::Sender<T>) -> ApiCommand,
    ) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        let round_trip = async {
            self.to_control
                .send(make(tx))
                .await
                .map_err(|_| Status::unavailable("control loop is not running"))?;
            rx.await
                .map_err(|_| Status::unavailable("control loop dropped the request"))
        };
        let out = bounded_by_timeout(method, round_trip).await;
        metrics::counter!("steer_api_requests_total", "method" => method).increment(1);
        out
    }

    /// Checks the caller's role; refusals of mutating calls are audited.
    pub(crate) async fn authorize<T>(
        &self,
        req: &Request<T>,
        need: Role,
        action: &str,
        scope: &str,
    ) -> Result<String, Status> {
        let caller = req
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Unknown {
                why: "no caller identity (interceptor missing)",
            });
        let (status, principal) = match &caller {
            Caller::Open { .. } => return Ok(caller.principal()),
            Caller::Known(id) if id.role.is_some_and(|r| r >= need) => {
                return Ok(id.principal.clone());
            }
            Caller::Known(id) => (
                Status::permission_denied(format!(
                    "{} may not {action} (needs role {need:?})",
                    id.principal
                )),
                id.principal.clone(),
            ),
            Caller::Unknown { why } => (Status::unauthenticated(*why), caller.principal()),
        };
        metrics::counter!("steer_api_denied_total", "code" => if status.code() == Code::Unauthenticated { "unauthenticated" } else { "permission_denied" }).increment(1);
        if need >= Role::Operator {
            match &self.audit {
                Some((denied, _)) => {
                    let version = self.plans.borrow().version;
                    denied.record(&principal, action, scope, status.message(), version);
                }
                None => {
                    // No store of its own (tests): through the loop, capped.
                    let _ = self.to_control.try_send(ApiCommand::RecordDenied {
                        principal,
                        action: action.to_owned(),
                        scope: scope.chars().take(512).collect(),
                        reason: status.message().to_owned(),
                    });
                }
            }
        }
        Err(status)
    }
}

/// Runs a unary call's wait under [`UNARY_TIMEOUT`]. A change the control
/// loop already took may still apply after the deadline; the audit log and
/// `steerctl status` say whether it did.
pub(crate) async fn bounded_by_timeout<T>(
    method: &'static str,
    wait: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    bounded_by(UNARY_TIMEOUT, method, wait).await
}

async fn bounded_by<T>(
    limit: Duration,
    method: &'static str,
    wait: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(limit, wait).await {
        Ok(out) => out,
        Err(_) => {
            metrics::counter!("steer_api_timeouts_total", "method" => method).increment(1);
            Err(Status::deadline_exceeded(format!(
                "{method} got no answer within {}s; check `steerctl status` and the audit \
                 log before retrying",
                limit.as_secs()
            )))
        }
    }
}

type PlanUpdateStream = Pin<Box<dyn Stream<Item = Result<pb::PlanUpdate, Status>> + Send>>;
type EventStream = Pin<Box<dyn Stream<Item = Result<pb::PlanEvent, Status>> + Send>>;

fn scope_text(s: Option<&pb::Scope>) -> String {
    s.map_or_else(String::new, |s| {
        if s.service.is_empty() {
            s.id.clone()
        } else {
            format!("{}@{}", s.service, s.id)
        }
    })
}

fn pop_id(text: &str) -> Result<PopId, Status> {
    Ok(PopId::new(convert::id(text, "pop")?))
}

#[tonic::async_trait]
impl Operator for OperatorService {
    async fn drain(
        &self,
        req: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::DrainResponse>, Status> {
        let need = if req.get_ref().emergency && !req.get_ref().dry_run {
            Role::Admin
        } else if req.get_ref().dry_run {
            Role::Viewer
        } else {
            Role::Operator
        };
        let action = if need == Role::Admin {
            "drain (emergency)"
        } else {
            "drain"
        };
        let principal = self
            .authorize(
                &req,
                need,
                action,
                &scope_text(req.get_ref().scope.as_ref()),
            )
            .await?;
        if !req.get_ref().dry_run {
            self.may_write()?;
        }
        let body = req.into_inner();
        let cmd = DrainCommand {
            scope: convert::scope(body.scope.as_ref())?,
            mode: convert::mode(body.mode)?,
            ramp: convert::duration(body.ramp_ms, "ramp_ms", MAX_RAMP)?.unwrap_or_default(),
            expires_in: convert::duration(body.expires_in_ms, "expires_in_ms", MAX_EXPIRY)?,
            reason: convert::reason(&body.reason)?,
            principal,
            dry_run: body.dry_run,
            force: body.force,
            emergency: body.emergency,
        };
        if cmd.dry_run
            && let Some((runner, permits)) = self.dry_run.clone()
        {
            return self.dry_run_drain(runner, permits, cmd).await;
        }
        let out = self
            .call("Drain", |reply| ApiCommand::Drain { cmd, reply })
            .await?
            .map_err(api_status)?;
        Ok(Response::new(pb::DrainResponse {
            intent_id: out.intent_id,
            plan_version: out.plan_version,
            applied: out.applied,
            projection: Some(convert::projection(&out.projection)),
            change_id: out.proposed.unwrap_or_default(),
        }))
    }

    async fn undrain(
        &self,
        req: Request<pb::UndrainRequest>,
    ) -> Result<Response<pb::UndrainResponse>, Status> {
        let principal = self
            .authorize(
                &req,
                Role::Operator,
                "undrain",
                &scope_text(req.get_ref().scope.as_ref()),
            )
            .await?;
        self.may_write()?;
        let body = req.into_inner();
        let scope = convert::scope(body.scope.as_ref())?;
        let reason = if body.reason.trim().is_empty() {
            "undrain".to_owned()
        } else {
            convert::reason(&body.reason)?
        };
        let out = self
            .call("Undrain", |reply| ApiCommand::Undrain {
                scope,
                reason,
                principal,
                reply,
            })
            .await?
            .map_err(api_status)?;
        Ok(Response::new(pb::UndrainResponse {
            lifted: out.lifted,
            plan_version: out.plan_version,
            still_covered_by: out.still_covered_by,
        }))
    }

    async fn list_intents(
        &self,
        req: Request<pb::ListIntentsRequest>,
    ) -> Result<Response<pb::ListIntentsResponse>, Status> {
        self.authorize(&req, Role::Viewer, "list intents", "")
            .await?;
        let intents = self
            .call("ListIntents", |reply| ApiCommand::ListIntents { reply })
            .await?;
        Ok(Response::new(pb::ListIntentsResponse {
            intents: convert::intents(&intents),
        }))
    }

    async fn set_weight_override(
        &self,
        req: Request<pb::SetWeightOverrideRequest>,
    ) -> Result<Response<pb::SetWeightOverrideResponse>, Status> {
        let (need, action) = if req.get_ref().emergency {
            (Role::Admin, "override (emergency)")
        } else {
            (Role::Operator, "override")
        };
        let principal = self
            .authorize(&req, need, action, &req.get_ref().pop)
            .await?;
        self.may_write()?;
        let body = req.into_inner();
        if body.weight_permille > 1000 {
            return Err(Status::invalid_argument(
                "`weight_permille` must be between 0 and 1000",
            ));
        }
        let pop = pop_id(&body.pop)?;
        let reason = convert::reason(&body.reason)?;
        let expires_in = convert::duration(body.expires_in_ms, "expires_in_ms", MAX_EXPIRY)?;
        let out = self
            .call("SetWeightOverride", |reply| ApiCommand::SetOverride {
                pop,
                weight: body.weight_permille,
                expires_in,
                reason,
                principal,
                emergency: body.emergency,
                reply,
            })
            .await?
            .map_err(api_status)?;
        Ok(Response::new(pb::SetWeightOverrideResponse {
            intent_id: out.intent_id,
            plan_version: out.plan_version,
            change_id: out.proposed.unwrap_or_default(),
        }))
    }

    async fn clear_override(
        &self,
        req: Request<pb::ClearOverrideRequest>,
    ) -> Result<Response<pb::ClearOverrideResponse>, Status> {
        let principal = self
            .authorize(&req, Role::Operator, "clear override", &req.get_ref().pop)
            .await?;
        self.may_write()?;
        let body = req.into_inner();
        let pop = pop_id(&body.pop)?;
        let reason = if body.reason.trim().is_empty() {
            "clear override".to_owned()
        } else {
            convert::reason(&body.reason)?
        };
        let (cleared, plan_version) = self
            .call("ClearOverride", |reply| ApiCommand::ClearOverride {
                pop,
                reason,
                principal,
                reply,
            })
            .await?
            .map_err(api_status)?;
        Ok(Response::new(pb::ClearOverrideResponse {
            cleared,
            plan_version,
        }))
    }

    async fn get_status(
        &self,
        req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        self.authorize(&req, Role::Viewer, "get status", "").await?;
        let status = match &self.status {
            Some(snapshot) => {
                metrics::counter!("steer_api_requests_total", "method" => "GetStatus").increment(1);
                snapshot.load_full()
            }
            None => Arc::new(
                self.call("GetStatus", |reply| ApiCommand::Status { reply })
                    .await?,
            ),
        };
        let mut resp = crate::status_doc::status_response(&status);
        if let Some(bgp) = &self.bgp {
            convert::bgp_status(&bgp(), &mut resp);
        }
        Ok(Response::new(resp))
    }

    async fn explain(
        &self,
        req: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        self.authorize(&req, Role::Viewer, "explain", "").await?;
        let body = req.into_inner();
        convert::bounded(&body.name, "name", convert::MAX_NAME_BYTES)?;
        convert::bounded(&body.qtype, "qtype", 16)?;
        convert::bounded(&body.client, "client", 64)?;
        let client: ipnet::IpNet = match body.client.trim() {
            "" => {
                return Err(Status::invalid_argument(
                    "`client` is required (address or prefix)",
                ));
            }
            c if c.contains('/') => c
                .parse()
                .map_err(|_| Status::invalid_argument(format!("{c:?} is not a prefix")))?,
            c => c
                .parse::<std::net::IpAddr>()
                .map(ipnet::IpNet::from)
                .map_err(|_| Status::invalid_argument(format!("{c:?} is not an address")))?,
        };
        let qtype = if body.qtype.is_empty() {
            "A".to_owned()
        } else {
            body.qtype.to_ascii_uppercase()
        };
        let e = self
            .explainer
            .explain(&body.name, &qtype, client)
            .map_err(api_status)?;
        if body.plan_version != 0 && body.plan_version != e.plan_version {
            return Err(Status::failed_precondition(format!(
                "plan {} is no longer kept; DNS now serves plan {} (ask with plan_version 0)",
                body.plan_version, e.plan_version
            )));
        }
        metrics::counter!("steer_api_requests_total", "method" => "Explain").increment(1);
        Ok(Response::new(pb::ExplainResponse {
            plan_version: e.plan_version,
            steps: e.steps,
            answers: e.answers,
            ttl: e.ttl,
            ecs_scope: u32::from(e.ecs_scope),
            region: e.region.unwrap_or_default(),
        }))
    }

    type WatchPlanStream = EventStream;
    type SubscribePlanStream = PlanUpdateStream;

    async fn subscribe_plan(
        &self,
        req: Request<pb::SubscribePlanRequest>,
    ) -> Result<Response<Self::SubscribePlanStream>, Status> {
        self.authorize(&req, Role::Viewer, "subscribe plan", "")
            .await?;
        let subscriber = req.into_inner().subscriber;
        convert::bounded(&subscriber, "subscriber", convert::MAX_NAME_BYTES)?;
        let rx = self
            .plan_feed
            .subscribe(subscriber, self.plan_source.clone())?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn watch_plan(
        &self,
        req: Request<pb::WatchPlanRequest>,
    ) -> Result<Response<Self::WatchPlanStream>, Status> {
        self.authorize(&req, Role::Viewer, "watch", "").await?;
        let mut plans = self.plans.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let _live = WatcherGauge::start();
            let mut prev = plans.borrow_and_update().clone();
            let first = pb::PlanEvent {
                plan_version: prev.version,
                computed_unix_ms: prev.computed_at.unix_ms(),
                diff: "current plan".into(),
                changes: Vec::new(),
                ramp_step: false,
            };
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                // A client that went away must end the task now, not at the
                // next plan change (which may never come).
                tokio::select! {
                    changed = plans.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
                let next = plans.borrow_and_update().clone();
                let changes = next.changes_since(&prev);
                let diff = if changes.is_empty() {
                    "no visible change (config reload or internal detail)".to_owned()
                } else {
                    changes.join("; ")
                };
                let event = pb::PlanEvent {
                    plan_version: next.version,
                    computed_unix_ms: next.computed_at.unix_ms(),
                    diff,
                    changes,
                    ramp_step: next.is_weight_step(&prev),
                };
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
                prev = next;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_audit(
        &self,
        req: Request<pb::GetAuditRequest>,
    ) -> Result<Response<pb::GetAuditResponse>, Status> {
        self.authorize(&req, Role::Viewer, "read audit", "").await?;
        let body = req.into_inner();
        convert::bounded(&body.principal, "principal", convert::MAX_NAME_BYTES)?;
        convert::bounded(&body.scope, "scope", convert::MAX_NAME_BYTES)?;
        let filter = AuditFilter {
            since_ms: (body.since_unix_ms > 0).then_some(body.since_unix_ms),
            until_ms: (body.until_unix_ms > 0).then_some(body.until_unix_ms),
            principal: (!body.principal.is_empty()).then_some(body.principal),
            scope: (!body.scope.is_empty()).then_some(body.scope),
            limit: if body.limit == 0 {
                100
            } else {
                (body.limit as usize).min(MAX_AUDIT_LIMIT)
            },
        };
        let entries = match &self.audit {
            Some((_, reader)) => {
                let reader = reader.clone();
                metrics::counter!("steer_api_requests_total", "method" => "GetAudit").increment(1);
                tokio::task::spawn_blocking(move || {
                    reader(filter.limit, &|e: &steer_types::audit::AuditEntry| {
                        filter.matches(e)
                    })
                })
                .await
                .map_err(|_| Status::internal("audit reader failed"))?
                .map_err(|e| Status::unavailable(format!("cannot read the audit log: {e}")))?
            }
            None => self
                .call("GetAudit", |reply| ApiCommand::Audit { filter, reply })
                .await?
                .map_err(api_status)?,
        };
        Ok(Response::new(pb::GetAuditResponse {
            entries: entries.iter().map(convert::audit).collect(),
        }))
    }

    async fn reload_config(
        &self,
        req: Request<pb::ReloadConfigRequest>,
    ) -> Result<Response<pb::ReloadConfigResponse>, Status> {
        let principal = self
            .authorize(&req, Role::Admin, "reload config", "config")
            .await?;
        let Some(reload) = &self.reload else {
            return Err(Status::unimplemented(
                "config reload is not available in this process",
            ));
        };
        let body = req.into_inner();
        let (reason, emergency) = (body.reason, body.emergency);
        convert::bounded(&reason, "reason", convert::MAX_REASON_BYTES)?;
        if emergency && reason.trim().is_empty() {
            return Err(Status::invalid_argument(
                "an emergency reload needs a reason (--reason)",
            ));
        }
        let (tx, rx) = oneshot::channel();
        reload
            .send(ReloadRequest {
                principal: principal.clone(),
                reason: if reason.trim().is_empty() {
                    "config reload".into()
                } else {
                    reason
                },
                emergency,
                config: None,
                reply: tx,
            })
            .await
            .map_err(|_| Status::unavailable("reloader is not running"))?;
        let version = bounded_by_timeout("ReloadConfig", async {
            rx.await
                .map_err(|_| Status::unavailable("reloader dropped the request"))
        })
        .await?
        .map_err(api_status)?;
        info!(%principal, version, "config reloaded");
        Ok(Response::new(pb::ReloadConfigResponse {
            plan_version: version,
            detail: "config validated and applied".into(),
        }))
    }

    async fn get_slos(
        &self,
        req: Request<pb::GetSlosRequest>,
    ) -> Result<Response<pb::GetSlosResponse>, Status> {
        self.authorize(&req, Role::Viewer, "read SLOs", "").await?;
        metrics::counter!("steer_api_requests_total", "method" => "GetSlos").increment(1);
        Ok(Response::new(
            self.slos.as_ref().map(|s| s()).unwrap_or_default(),
        ))
    }

    async fn propose_change(
        &self,
        req: Request<pb::ProposeChangeRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        self.propose_change_impl(req).await
    }

    async fn get_timeline(
        &self,
        req: Request<pb::GetTimelineRequest>,
    ) -> Result<Response<pb::GetTimelineResponse>, Status> {
        self.get_timeline_impl(req).await
    }

    async fn list_changes(
        &self,
        req: Request<pb::ListChangesRequest>,
    ) -> Result<Response<pb::ListChangesResponse>, Status> {
        self.list_changes_impl(req).await
    }

    async fn get_change(
        &self,
        req: Request<pb::GetChangeRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        self.get_change_impl(req).await
    }

    async fn act_on_change(
        &self,
        req: Request<pb::ActOnChangeRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        self.act_on_change_impl(req).await
    }

    async fn get_dnssec_ds(
        &self,
        req: Request<pb::GetDnssecDsRequest>,
    ) -> Result<Response<pb::GetDnssecDsResponse>, Status> {
        self.authorize(&req, Role::Viewer, "read DNSSEC DS", "")
            .await?;
        let zone = req.into_inner().zone;
        let zone = convert::dns_name(&zone, "zone")?;
        let Some(source) = &self.dnssec else {
            return Err(Status::unimplemented(
                "this process serves no DNS view (ask a steerd that answers DNS)",
            ));
        };
        let ds = source(&zone).map_err(api_status)?;
        metrics::counter!("steer_api_requests_total", "method" => "GetDnssecDs").increment(1);
        Ok(Response::new(pb::GetDnssecDsResponse {
            ds: ds.iter().map(convert::dnssec_ds).collect(),
        }))
    }

    async fn correct_slo(
        &self,
        req: Request<pb::CorrectSloRequest>,
    ) -> Result<Response<pb::CorrectSloResponse>, Status> {
        let principal = self
            .authorize(&req, Role::Operator, "correct SLO", &req.get_ref().slo)
            .await?;
        self.may_write()?;
        let body = req.into_inner();
        let slo = convert::id(&body.slo, "slo")?.to_owned();
        let reason = convert::reason(&body.reason)?;
        if body.start_unix_ms <= 0 || body.end_unix_ms <= body.start_unix_ms {
            return Err(Status::invalid_argument(
                "`start_unix_ms` and `end_unix_ms` must be a range with its end after its start",
            ));
        }
        let span = u64::try_from(body.end_unix_ms - body.start_unix_ms).unwrap_or(u64::MAX);
        if span > MAX_CORRECTION.as_millis() as u64 {
            return Err(Status::invalid_argument(format!(
                "a correction spans at most {} days",
                MAX_CORRECTION.as_secs() / 86_400
            )));
        }
        let correction = steer_slo::Correction {
            slo,
            start: steer_types::Timestamp::from_unix_ms(body.start_unix_ms),
            end: steer_types::Timestamp::from_unix_ms(body.end_unix_ms),
            reason,
            principal,
        };
        self.call("CorrectSlo", |reply| ApiCommand::CorrectSlo {
            correction,
            reply,
        })
        .await?
        .map_err(api_status)?;
        Ok(Response::new(pb::CorrectSloResponse {}))
    }

    async fn confirm_failure(
        &self,
        req: Request<pb::ConfirmFailureRequest>,
    ) -> Result<Response<pb::ConfirmFailureResponse>, Status> {
        let principal = self
            .authorize(&req, Role::Admin, "confirm failure", "health")
            .await?;
        self.may_write()?;
        let reason = convert::reason(&req.into_inner().reason)?;
        let (pops, plan_version) = self
            .call("ConfirmFailure", |reply| ApiCommand::ConfirmFailure {
                reason,
                principal,
                reply,
            })
            .await?
            .map_err(api_status)?;
        Ok(Response::new(pb::ConfirmFailureResponse {
            pops,
            plan_version,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_unary_wait_that_gets_no_answer_is_deadline_exceeded() {
        let limit = Duration::from_millis(20);
        let stuck = bounded_by(limit, "Drain", std::future::pending::<Result<(), Status>>());
        let e = stuck.await.unwrap_err();
        assert_eq!(e.code(), Code::DeadlineExceeded);
        assert!(e.message().contains("audit log"), "{}", e.message());
        let answered = bounded_by(limit, "Drain", async { Ok::<_, Status>(7) });
        assert_eq!(answered.await.unwrap(), 7);
    }
}
