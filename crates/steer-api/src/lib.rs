//! Operator API.
//!
//! The gRPC service validates each request at the boundary into an
//! [`ApiCommand`] and sends it to the control loop, which owns intents and
//! replies once the change is durable and published. Errors map to gRPC
//! status codes here, in one place.

use std::net::SocketAddr;

use steer_proto::v1::{
    self as pb, DrainRequest, DrainResponse, GetStatusRequest, GetStatusResponse, ScopeKind,
    UndrainRequest, UndrainResponse, operator_server::Operator,
};
use steer_types::{DrainScope, PopId, RegionId, ServiceId, status::StatusReport};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

/// Why the control loop refused a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::InvalidArgument(m) => Status::invalid_argument(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
        }
    }
}

#[derive(Debug)]
pub struct DrainOutcome {
    pub intent_id: String,
    pub plan_version: u64,
}

#[derive(Debug)]
pub struct UndrainOutcome {
    pub lifted: u32,
    pub plan_version: u64,
}

/// A validated operator request, with the channel for the answer.
#[derive(Debug)]
pub enum ApiCommand {
    Drain {
        scope: DrainScope,
        reason: String,
        principal: String,
        reply: oneshot::Sender<Result<DrainOutcome, ApiError>>,
    },
    Undrain {
        scope: DrainScope,
        reason: String,
        principal: String,
        reply: oneshot::Sender<Result<UndrainOutcome, ApiError>>,
    },
    Status {
        reply: oneshot::Sender<StatusReport>,
    },
}

/// Reads the BGP speaker's status for `GetStatus`.
pub type BgpStatusSource = std::sync::Arc<dyn Fn() -> steer_types::bgp::BgpStatus + Send + Sync>;

pub struct OperatorService {
    to_control: mpsc::Sender<ApiCommand>,
    bgp: Option<BgpStatusSource>,
}

impl OperatorService {
    pub fn new(to_control: mpsc::Sender<ApiCommand>) -> Self {
        Self {
            to_control,
            bgp: None,
        }
    }

    /// Adds the BGP speaker's sessions and routes to `GetStatus`.
    pub fn with_bgp_status(mut self, source: BgpStatusSource) -> Self {
        self.bgp = Some(source);
        self
    }

    async fn call<T>(
        &self,
        method: &'static str,
        make: impl FnOnce(oneshot::Sender<T>) -> ApiCommand,
    ) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.to_control
            .send(make(tx))
            .await
            .map_err(|_| Status::unavailable("control loop is not running"))?;
        let out = rx
            .await
            .map_err(|_| Status::unavailable("control loop dropped the request"));
        metrics::counter!("steer_api_requests_total", "method" => method).increment(1);
        out
    }
}

/// Who is calling. With auth off, the caller's address is the best we have.
fn principal<T>(req: &Request<T>) -> String {
    let peer = req
        .remote_addr()
        .map_or_else(|| "unknown".to_owned(), |a: SocketAddr| a.ip().to_string());
    format!("anonymous@{peer}")
}

fn scope(scope: Option<&pb::Scope>) -> Result<DrainScope, Status> {
    let s = scope.ok_or_else(|| Status::invalid_argument("`scope` is required"))?;
    if s.id.trim().is_empty() {
        return Err(Status::invalid_argument(
            "`scope.id` must name a pop or region",
        ));
    }
    match ScopeKind::try_from(s.kind) {
        Ok(ScopeKind::Pop) => Ok(DrainScope::Pop {
            pop: PopId::new(&s.id),
        }),
        Ok(ScopeKind::Region) => Ok(DrainScope::Region {
            region: RegionId::new(&s.id),
        }),
        Ok(ScopeKind::ServicePop) if !s.service.trim().is_empty() => Ok(DrainScope::ServicePop {
            service: ServiceId::new(&s.service),
            pop: PopId::new(&s.id),
        }),
        Ok(ScopeKind::ServicePop) => Err(Status::invalid_argument(
            "a service-at-pop scope needs `scope.service`",
        )),
        _ => Err(Status::invalid_argument(
            "`scope.kind` must be SCOPE_KIND_POP, SCOPE_KIND_REGION or SCOPE_KIND_SERVICE_POP",
        )),
    }
}

fn reason(text: &str) -> Result<String, Status> {
    let t = text.trim();
    if t.is_empty() {
        return Err(Status::invalid_argument(
            "`reason` is required: say why, for the audit log and the next on-call",
        ));
    }
    if t.len() > 1024 {
        return Err(Status::invalid_argument(
            "`reason` is longer than 1024 bytes",
        ));
    }
    Ok(t.to_owned())
}

#[tonic::async_trait]
impl Operator for OperatorService {
    async fn drain(&self, req: Request<DrainRequest>) -> Result<Response<DrainResponse>, Status> {
        let principal = principal(&req);
        let body = req.into_inner();
        let scope = scope(body.scope.as_ref())?;
        let reason = reason(&body.reason)?;
        let out = self
            .call("Drain", |reply| ApiCommand::Drain {
                scope,
                reason,
                principal,
                reply,
            })
            .await??;
        Ok(Response::new(DrainResponse {
            intent_id: out.intent_id,
            plan_version: out.plan_version,
        }))
    }

    async fn undrain(
        &self,
        req: Request<UndrainRequest>,
    ) -> Result<Response<UndrainResponse>, Status> {
        let principal = principal(&req);
        let body = req.into_inner();
        let scope = scope(body.scope.as_ref())?;
        let reason = if body.reason.trim().is_empty() {
            "undrain".to_owned()
        } else {
            reason(&body.reason)?
        };
        let out = self
            .call("Undrain", |reply| ApiCommand::Undrain {
                scope,
                reason,
                principal,
                reply,
            })
            .await??;
        Ok(Response::new(UndrainResponse {
            lifted: out.lifted,
            plan_version: out.plan_version,
        }))
    }

    async fn get_status(
        &self,
        _req: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let status = self
            .call("GetStatus", |reply| ApiCommand::Status { reply })
            .await?;
        let mut resp = status_to_proto(&status);
        if let Some(bgp) = &self.bgp {
            bgp_to_proto(&bgp(), &mut resp);
        }
        Ok(Response::new(resp))
    }
}

fn scope_to_proto(scope: &DrainScope) -> pb::Scope {
    match scope {
        DrainScope::Pop { pop } => pb::Scope {
            kind: ScopeKind::Pop.into(),
            id: pop.to_string(),
            service: String::new(),
        },
        DrainScope::Region { region } => pb::Scope {
            kind: ScopeKind::Region.into(),
            id: region.to_string(),
            service: String::new(),
        },
        DrainScope::ServicePop { service, pop } => pb::Scope {
            kind: ScopeKind::ServicePop.into(),
            id: pop.to_string(),
            service: service.to_string(),
        },
    }
}

fn bgp_to_proto(b: &steer_types::bgp::BgpStatus, resp: &mut GetStatusResponse) {
    resp.bgp_peers = b
        .peers
        .iter()
        .map(|p| pb::BgpPeerStatus {
            pop: p.pop.to_string(),
            peer: p.peer.clone(),
            peer_as: p.peer_as,
            state: p.state.clone(),
            uptime_secs: p.uptime_secs.map_or(-1, |s| s as i64),
            flaps: p.flaps,
            prefixes_sent: p.prefixes_sent as u32,
            updates_sent: p.updates_sent,
            last_error: p.last_error.clone().unwrap_or_default(),
        })
        .collect();
    resp.bgp_routes = b
        .routes
        .iter()
        .map(|r| pb::BgpRouteStatus {
            pop: r.pop.to_string(),
            prefix: r.prefix.to_string(),
            state: r.state.clone(),
            reason: r.reason.clone(),
        })
        .collect();
    resp.bgp_refused_plan = b.refused_plan.clone().unwrap_or_default();
}

fn status_to_proto(s: &StatusReport) -> GetStatusResponse {
    GetStatusResponse {
        plan_version: s.plan_version,
        plan_computed_unix_ms: s.plan_computed_at.unix_ms(),
        pops: s
            .pops
            .iter()
            .map(|p| pb::PopStatus {
                pop: p.pop.to_string(),
                region: p.region.to_string(),
                health: p.health.clone(),
                drained: p.drained_by.is_some(),
                weight_permille: p.weight_permille,
                reason: p.reason.clone(),
                last_report_age_ms: p.last_report_age_ms.unwrap_or(-1),
            })
            .collect(),
        intents: s
            .drains
            .iter()
            .map(|d| pb::Intent {
                id: d.id.clone(),
                scope: Some(scope_to_proto(&d.scope)),
                reason: d.reason.clone(),
                principal: d.principal.clone(),
                created_unix_ms: d.created.unix_ms(),
            })
            .collect(),
        ..Default::default()
    }
}
