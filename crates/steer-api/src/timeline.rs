//! GetTimeline: the incident timeline, read from the control loop's
//! shared feed without asking the loop.

use steer_proto::v1 as pb;
use steer_types::{
    Timestamp,
    auth::Role,
    timeline::{EventKind, TimelineEvent, TimelineHandle, TimelineQuery},
};
use tonic::{Request, Response, Status};

use crate::service::OperatorService;

/// Events one call returns at most, and when the caller names no limit.
const MAX_EVENTS: usize = 2_000;
const DEFAULT_EVENTS: usize = 500;

pub fn event_to(e: &TimelineEvent) -> pb::TimelineEvent {
    pb::TimelineEvent {
        seq: e.seq,
        at_unix_ms: e.at.unix_ms(),
        kind: e.kind.as_str().to_owned(),
        scope: e.scope.clone(),
        principal: e.principal.clone().unwrap_or_default(),
        summary: e.summary.clone(),
        detail: e.detail.clone(),
    }
}

impl OperatorService {
    /// Answers GetTimeline from `handle`.
    pub fn with_timeline(mut self, handle: TimelineHandle) -> Self {
        self.timeline = Some(handle);
        self
    }

    pub(crate) async fn get_timeline_impl(
        &self,
        req: Request<pb::GetTimelineRequest>,
    ) -> Result<Response<pb::GetTimelineResponse>, Status> {
        self.authorize(&req, Role::Viewer, "read timeline", "")
            .await?;
        metrics::counter!("steer_api_requests_total", "method" => "GetTimeline").increment(1);
        let body = req.into_inner();
        let kinds = body
            .kinds
            .iter()
            .map(|k| {
                EventKind::parse(k).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "kind {k:?}: expected one of {}",
                        EventKind::ALL.map(EventKind::as_str).join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if body.scope.len() > 128 {
            return Err(Status::invalid_argument("`scope` is longer than 128 bytes"));
        }
        let limit = match body.limit as usize {
            0 => DEFAULT_EVENTS,
            n => n.min(MAX_EVENTS),
        };
        let query = TimelineQuery {
            since: (body.since_unix_ms > 0).then_some(Timestamp(body.since_unix_ms)),
            after_seq: body.after_seq,
            scope: (!body.scope.trim().is_empty()).then(|| body.scope.trim().to_owned()),
            kinds,
            limit,
        };
        let events = match &self.timeline {
            Some(handle) => handle
                .lock()
                .map_err(|_| Status::internal("the timeline is unavailable"))?
                .query(&query),
            None => Vec::new(),
        };
        Ok(Response::new(pb::GetTimelineResponse {
            events: events.iter().map(event_to).collect(),
        }))
    }
}
