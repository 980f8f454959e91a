//! The status page: `/ui` and what it reads and writes.
//!
//! Everything the browser loads is embedded in the binary (HTML, CSS, JS
//! and a simplified Natural Earth land outline), so an air-gapped NOC
//! needs nothing but steerd. The page reads one JSON document
//! (`/ui/api/state`: the `/status` document, PoP coordinates, the newest
//! timeline events and who the caller is) and follows `/ui/events`, a
//! server-sent event stream that says when the plan version or the
//! timeline moved. Drains and undrains go through the operator API's own
//! handlers in-process, so authorization, dry runs, review and audit are
//! exactly those of `steerctl`.
//!
//! Invariants: same origin only (no CORS headers; a CSP of `'self'`), no
//! token ever in a URL (the page sends `Authorization` from what the user
//! pasted), POSTs must say `Content-Type: application/json` (a plain form
//! cannot, which stops cross-site posts), bodies are bounded, and at most
//! [`MAX_EVENT_STREAMS`] event streams are open at once.

use std::{convert::Infallible, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::json;
use steer_api::OperatorService;
use steer_config::SteerConfig;
use steer_proto::v1::{self as pb, operator_server::Operator};
use steer_types::{
    auth::{Caller, Role},
    timeline::{TimelineHandle, TimelineQuery},
};
use tokio::sync::Semaphore;

use super::AppState;

/// Event streams open at once; one more is refused with 503
/// (`steer_ui_event_streams` counts the open ones).
pub(crate) const MAX_EVENT_STREAMS: usize = 32;
/// A drain or undrain request body; larger ones get 413.
const MAX_BODY_BYTES: usize = 8 * 1024;
/// How often an event stream looks at the plan version and the timeline.
const POLL: Duration = Duration::from_millis(250);
/// A comment line this often keeps proxies from closing an idle stream.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Timeline events the page gets (newest first).
const TIMELINE_ROWS: usize = 300;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");
/// Natural Earth 1:110m land (public domain), equirectangular; see the
/// comment inside the file for how it was made.
const WORLD_SVG: &str = include_str!("ui/world.svg");

/// What the status page reads besides `/status`'s sources.
#[derive(Clone)]
pub(crate) struct UiSources {
    /// The operator API itself: drains from the page are its calls.
    pub(crate) operator: Arc<OperatorService>,
    pub(crate) timeline: TimelineHandle,
    /// The config in force (PoP coordinates follow reloads).
    pub(crate) config: Arc<ArcSwap<SteerConfig>>,
    pub(crate) streams: Arc<Semaphore>,
}

impl UiSources {
    pub(crate) fn new(
        operator: Arc<OperatorService>,
        timeline: TimelineHandle,
        config: Arc<ArcSwap<SteerConfig>>,
    ) -> Self {
        Self {
            operator,
            timeline,
            config,
            streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
        }
    }
}

pub(crate) fn register_metrics() {
    metrics::gauge!("steer_ui_event_streams").set(0.0);
    metrics::counter!("steer_ui_event_streams_rejected_total").absolute(0);
    for path in ["page", "state", "events", "drain", "undrain"] {
        metrics::counter!("steer_ui_requests_total", "path" => path).absolute(0);
    }
}

pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    // The policy headers go on every `/ui` answer, the extractors'
    // refusals (413 for a large body) included.
    let ui = Router::new()
        .route(
            "/ui",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/world.svg",
            get(|| async { asset(WORLD_SVG, "image/svg+xml") }),
        )
        .route("/ui/api/state", get(state))
        .route("/ui/events", get(events))
        .route(
            "/ui/api/drain",
            post(drain).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .route(
            "/ui/api/undrain",
            post(undrain).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .layer(axum::middleware::map_response(|r: Response| async move {
            harden(r)
        }));
    router.merge(ui)
}

/// Headers every `/ui` answer carries: nothing from elsewhere may load,
/// nothing may frame the page, and types are not guessed.
fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    if content_type.starts_with("text/html") {
        metrics::counter!("steer_ui_requests_total", "path" => "page").increment(1);
    }
    harden(
        (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
    )
}

/// A refusal as JSON: `{"error": "..."}`.
fn refuse(code: StatusCode, why: &str) -> Response {
    let mut r = harden((code, Json(json!({ "error": why }))).into_response());
    if code == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

fn no_store(r: Response) -> Response {
    let mut r = harden(r);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Who is calling, as the gRPC interceptor would say.
fn caller(s: &AppState, headers: &HeaderMap) -> Caller {
    let Some(auth) = &s.auth else {
        return Caller::Open {
            addr: "status-page".to_owned(),
        };
    };
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.load().authenticate(None, header) {
        Ok(id) => Caller::Known(id.clone()),
        Err(denial) => {
            metrics::counter!("steer_auth_denied_total", "reason" => denial.label()).increment(1);
            Caller::Unknown { why: denial.why() }
        }
    }
}

async fn state(State(s): State<AppState>, headers: HeaderMap) -> Response {
    metrics::counter!("steer_ui_requests_total", "path" => "state").increment(1);
    if let Err((code, why)) = super::viewer_allowed(s.auth.as_ref(), &headers) {
        return refuse(code, why.trim_end());
    }
    let Some(ui) = &s.ui else {
        return refuse(StatusCode::NOT_FOUND, "no status page on this node");
    };
    let (principal, may_drain) = match caller(&s, &headers) {
        Caller::Known(id) => (id.principal, id.role.is_some_and(|r| r >= Role::Operator)),
        other => (other.principal(), true),
    };
    let (timeline, timeline_seq) = match ui.timeline.lock() {
        Ok(t) => {
            let mut events = t.query(&TimelineQuery {
                limit: TIMELINE_ROWS,
                ..TimelineQuery::default()
            });
            events.reverse();
            (events, t.next_seq)
        }
        Err(_) => (Vec::new(), 0),
    };
    let config = ui.config.load();
    no_store(
        Json(json!({
            "status": super::status_json(&s),
            "locations": config.pop_locations,
            "timeline": timeline,
            "timeline_seq": timeline_seq,
            "you": { "principal": principal, "may_drain": may_drain },
        }))
        .into_response(),
    )
}

/// `text/event-stream`: one `change` event at once and one whenever the
/// plan version or the timeline moves; the page then reloads the state.
async fn events(State(s): State<AppState>, headers: HeaderMap) -> Response {
    metrics::counter!("steer_ui_requests_total", "path" => "events").increment(1);
    if let Err((code, why)) = super::viewer_allowed(s.auth.as_ref(), &headers) {
        return refuse(code, why.trim_end());
    }
    let Some(ui) = s.ui.clone() else {
        return refuse(StatusCode::NOT_FOUND, "no status page on this node");
    };
    let Ok(permit) = ui.streams.clone().try_acquire_owned() else {
        metrics::counter!("steer_ui_event_streams_rejected_total").increment(1);
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many status pages are following events; try again shortly",
        );
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(4);
    let status = s.status.clone();
    // Counted before the answer goes out, so the gauge never lags a stream
    // a caller already holds.
    metrics::gauge!("steer_ui_event_streams").increment(1.0);
    tokio::spawn(async move {
        let _permit = permit;
        let mut last = None;
        let mut quiet_since = tokio::time::Instant::now();
        loop {
            let seen = (
                status.load().plan_version,
                ui.timeline.lock().map(|t| t.next_seq).unwrap_or(0),
            );
            let message = if last != Some(seen) {
                last = Some(seen);
                Some(format!(
                    "event: change\ndata: {{\"plan_version\":{},\"timeline_seq\":{}}}\n\n",
                    seen.0, seen.1
                ))
            } else if quiet_since.elapsed() >= KEEPALIVE {
                Some(": keep-alive\n\n".to_owned())
            } else {
                None
            };
            if let Some(m) = message {
                if tx.send(Ok(Bytes::from(m))).await.is_err() {
                    break;
                }
                quiet_since = tokio::time::Instant::now();
            }
            if tx.is_closed() {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        metrics::gauge!("steer_ui_event_streams").decrement(1.0);
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut r = no_store(
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::HeaderName::from_static("x-accel-buffering"), "no"),
            ],
            body,
        )
            .into_response(),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A drain or undrain from the page: a PoP or a region.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopedRequest {
    /// `pop` or `region`.
    kind: String,
    id: String,
    #[serde(default)]
    reason: String,
    /// Drains only: project, change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// The checks before a write: JSON content type (a cross-site form cannot
/// send it), a body that parses, a known scope kind.
fn parse_request(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(ScopedRequest, pb::Scope), (StatusCode, String)> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as Content-Type: application/json".to_owned(),
        ));
    }
    let req: ScopedRequest = serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the request body is not a drain request: {e}"),
        )
    })?;
    let kind = match req.kind.as_str() {
        "pop" => pb::ScopeKind::Pop,
        "region" => pb::ScopeKind::Region,
        other => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("kind must be \"pop\" or \"region\", not {other:?}"),
            ));
        }
    };
    let scope = pb::Scope {
        kind: kind as i32,
        id: req.id.clone(),
        service: String::new(),
    };
    Ok((req, scope))
}

/// An operator API refusal as HTTP, with its message.
fn api_refusal(status: &tonic::Status) -> Response {
    use tonic::Code;
    let code = match status.code() {
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    refuse(code, status.message())
}

fn operator_request<T>(s: &AppState, headers: &HeaderMap, body: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(body);
    req.extensions_mut().insert(caller(s, headers));
    req
}

/// What a write from the page needs before its call: counted, this node's
/// page, and a request that passes [`parse_request`]; else the refusal.
fn write_request(
    s: &AppState,
    path: &'static str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(UiSources, ScopedRequest, pb::Scope), Box<Response>> {
    metrics::counter!("steer_ui_requests_total", "path" => path).increment(1);
    let Some(ui) = s.ui.clone() else {
        return Err(Box::new(refuse(
            StatusCode::NOT_FOUND,
            "no status page on this node",
        )));
    };
    let (req, scope) =
        parse_request(headers, body).map_err(|(code, why)| Box::new(refuse(code, &why)))?;
    Ok((ui, req, scope))
}

async fn drain(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (ui, req, scope) = match write_request(&s, "drain", &headers, &body) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let call = operator_request(
        &s,
        &headers,
        pb::DrainRequest {
            scope: Some(scope),
            reason: req.reason,
            dry_run: req.dry_run,
            ..pb::DrainRequest::default()
        },
    );
    match ui.operator.drain(call).await {
        Ok(reply) => {
            let r = reply.into_inner();
            let projection = r.projection.unwrap_or_default();
            no_store(
                Json(json!({
                    "applied": r.applied,
                    "dry_run": req.dry_run,
                    "intent_id": r.intent_id,
                    "plan_version": r.plan_version,
                    "change_id": r.change_id,
                    "projection": {
                        "summary": projection.summary,
                        "over_capacity": projection.over_capacity,
                        "pops": projection.pops.iter().map(|p| json!({
                            "pop": p.pop,
                            "capacity_rps": p.capacity_rps,
                            "current_rps": p.current_rps,
                            "projected_rps": p.projected_rps,
                            "projected_utilisation": p.projected_utilisation,
                        })).collect::<Vec<_>>(),
                    },
                }))
                .into_response(),
            )
        }
        Err(status) => api_refusal(&status),
    }
}

async fn undrain(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (ui, req, scope) = match write_request(&s, "undrain", &headers, &body) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let call = operator_request(
        &s,
        &headers,
        pb::UndrainRequest {
            scope: Some(scope),
            reason: req.reason,
        },
    );
    match ui.operator.undrain(call).await {
        Ok(reply) => {
            let r = reply.into_inner();
            no_store(
                Json(json!({
                    "lifted": r.lifted,
                    "plan_version": r.plan_version,
                    "still_covered_by": r.still_covered_by,
                }))
                .into_response(),
            )
        }
        Err(status) => api_refusal(&status),
    }
}
