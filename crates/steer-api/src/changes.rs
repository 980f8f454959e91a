//! Change requests over gRPC: ProposeChange, ListChanges, GetChange and
//! ActOnChange. The proposal is validated by the reloader (it parses the
//! file like a reload); every other step goes to the control loop, which
//! owns the changes.

use steer_change::{Change, ChangeState};
use steer_proto::v1 as pb;
use steer_types::auth::Role;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::{
    ApiCommand, ChangeAction, ChangeCommand, ProposeRequest, convert,
    service::{OperatorService, api_status, bounded_by_timeout},
};

/// Largest config file a proposal may carry: what fits in an operator
/// request (steerd decodes at most 64 KiB per request, before auth).
pub(crate) const MAX_CONFIG_BYTES: usize = 60 * 1024;
/// Longest change id (`c<number>`).
const MAX_ID_BYTES: usize = 32;

impl OperatorService {
    pub(crate) async fn propose_change_impl(
        &self,
        req: Request<pb::ProposeChangeRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let emergency = req.get_ref().emergency;
        let need = if emergency {
            Role::Admin
        } else {
            Role::Operator
        };
        let action = if emergency {
            "propose change (emergency)"
        } else {
            "propose change"
        };
        let principal = self.authorize(&req, need, action, "change").await?;
        let Some(proposals) = &self.proposals else {
            return Err(Status::unimplemented(
                "change requests are not available in this process",
            ));
        };
        let body = req.into_inner();
        convert::bounded(&body.reason, "reason", convert::MAX_REASON_BYTES)?;
        convert::bounded(&body.config, "config", MAX_CONFIG_BYTES)?;
        if body.reason.trim().is_empty() {
            return Err(Status::invalid_argument(
                "a change needs a reason (--reason)",
            ));
        }
        let (tx, rx) = oneshot::channel();
        proposals
            .send(ProposeRequest {
                principal: principal.clone(),
                reason: body.reason,
                config: body.config,
                emergency,
                reply: tx,
            })
            .await
            .map_err(|_| Status::unavailable("reloader is not running"))?;
        let change = bounded_by_timeout("ProposeChange", async {
            rx.await
                .map_err(|_| Status::unavailable("reloader dropped the proposal"))
        })
        .await?
        .map_err(api_status)?;
        metrics::counter!("steer_api_requests_total", "method" => "ProposeChange").increment(1);
        info!(%principal, change = %change.id, "change proposed");
        Ok(Response::new(pb::ChangeResponse {
            change: Some(change_pb(&change)),
        }))
    }

    pub(crate) async fn list_changes_impl(
        &self,
        req: Request<pb::ListChangesRequest>,
    ) -> Result<Response<pb::ListChangesResponse>, Status> {
        self.authorize(&req, Role::Viewer, "list changes", "")
            .await?;
        let changes = self
            .call("ListChanges", |reply| {
                ApiCommand::Change(ChangeCommand::List { reply })
            })
            .await?
            .map_err(api_status)?;
        Ok(Response::new(pb::ListChangesResponse {
            changes: changes.iter().map(change_pb).collect(),
        }))
    }

    pub(crate) async fn get_change_impl(
        &self,
        req: Request<pb::GetChangeRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        self.authorize(&req, Role::Viewer, "show change", "")
            .await?;
        let id = req.into_inner().id;
        convert::bounded(&id, "id", MAX_ID_BYTES)?;
        let change = self
            .call("GetChange", |reply| {
                ApiCommand::Change(ChangeCommand::Get { id, reply })
            })
            .await?
            .map_err(api_status)?;
        Ok(Response::new(pb::ChangeResponse {
            change: Some(change_pb(&change)),
        }))
    }

    pub(crate) async fn act_on_change_impl(
        &self,
        req: Request<pb::ActOnChangeRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let action = match pb::ChangeAction::try_from(req.get_ref().action) {
            Ok(pb::ChangeAction::Approve) => ChangeAction::Approve,
            Ok(pb::ChangeAction::Reject) => ChangeAction::Reject,
            Ok(pb::ChangeAction::Pause) => ChangeAction::Pause,
            Ok(pb::ChangeAction::Resume) => ChangeAction::Resume,
            Ok(pb::ChangeAction::Promote) => ChangeAction::Promote,
            Ok(pb::ChangeAction::Abort) => ChangeAction::Abort,
            Ok(pb::ChangeAction::Rollback) => ChangeAction::Rollback,
            Ok(pb::ChangeAction::Unspecified) | Err(_) => {
                return Err(Status::invalid_argument(
                    "action must be approve, reject, pause, resume, promote, abort or rollback",
                ));
            }
        };
        let id = req.get_ref().id.clone();
        convert::bounded(&id, "id", MAX_ID_BYTES)?;
        let principal = self
            .authorize(
                &req,
                Role::Operator,
                &format!("{} change", action.name()),
                &format!("change {id}"),
            )
            .await?;
        let reason = req.into_inner().reason;
        convert::bounded(&reason, "reason", convert::MAX_REASON_BYTES)?;
        let needs_reason = matches!(
            action,
            ChangeAction::Reject | ChangeAction::Abort | ChangeAction::Rollback
        );
        if needs_reason && reason.trim().is_empty() {
            return Err(Status::invalid_argument(format!(
                "{} needs a reason (--reason)",
                action.name()
            )));
        }
        let change = self
            .call("ActOnChange", |reply| {
                ApiCommand::Change(ChangeCommand::Act {
                    id,
                    action,
                    principal,
                    reason,
                    reply,
                })
            })
            .await?
            .map_err(api_status)?;
        Ok(Response::new(pb::ChangeResponse {
            change: Some(change_pb(&change)),
        }))
    }
}

pub(crate) fn change_pb(c: &Change) -> pb::Change {
    let stage = match c.state {
        ChangeState::Rolling { stage, .. } | ChangeState::Paused { stage, .. } => {
            u32::try_from(stage).ok()
        }
        _ => None,
    };
    pb::Change {
        id: c.id.clone(),
        author: c.author.clone(),
        reason: c.reason.clone(),
        created_at_unix_ms: c.created_at.unix_ms(),
        state: c.state.name().to_owned(),
        stage,
        stages: c
            .stages
            .iter()
            .map(|s| format!("{}: {}, bake {}s", s.name, s.describe(), s.bake.as_secs()))
            .collect(),
        diff: c.diff.iter().map(ToString::to_string).collect(),
        effect: c.effect.clone(),
        required_approvals: c.required_approvals,
        approved_by: c.approvals.iter().map(|a| a.principal.clone()).collect(),
        emergency: c.emergency,
        held: c.held.clone().unwrap_or_default(),
        history: c
            .history
            .iter()
            .map(|e| pb::ChangeEvent {
                at_unix_ms: e.at.unix_ms(),
                principal: e.principal.clone(),
                action: e.action.clone(),
                detail: e.detail.clone(),
            })
            .collect(),
    }
}
