//! The HTTP side door: `/metrics` (Prometheus text), `/healthz` (liveness)
//! and `/status` (JSON: plan version, per-PoP health, weight, drain, and the
//! BGP speaker's sessions and routes under `bgp` when configured).
//!
//! Invariants: `/status` is read from the snapshot the control loop
//! publishes (this module holds no channel to the loop, so a busy loop
//! cannot stall it), and asks for a viewer token whenever auth is on, from
//! the same reloadable credentials as gRPC. `/healthz` and `/metrics` stay
//! open, as probes and Prometheus expect. A peer holds at most one of
//! [`MAX_CONNECTIONS`] slots, and only while it keeps sending: a request
//! head (or the next one on a kept-alive connection) must arrive within
//! [`HEADER_READ_TIMEOUT`]. A controller also serves the status page
//! under `/ui` (see [`ui`]).

mod ui;

pub(crate) use ui::UiSources;

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use metrics_exporter_prometheus::PrometheusHandle;
use steer_api::{BgpStatusSource, SharedAuthenticator};
use steer_types::{auth::Role, status::StatusReport};
use tokio::{net::TcpListener, sync::Semaphore};
use tracing::{debug, warn};

/// Concurrent HTTP connections; one more is closed as soon as it is
/// accepted (`steer_http_connections_rejected_total`).
pub(crate) const MAX_CONNECTIONS: usize = 256;
/// Time a connection has to send a request head, and the longest a
/// kept-alive connection may sit idle between requests
/// (`steer_http_header_timeouts_total` counts the ones closed for it).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    status: Arc<ArcSwap<StatusReport>>,
    auth: Option<SharedAuthenticator>,
    bgp: Option<BgpStatusSource>,
    section: Option<(&'static str, SectionSource)>,
    slo: Option<SloSource>,
    ui: Option<UiSources>,
}

/// The control loop's latest SLO evaluation, for `/status` (under "slo").
pub(crate) type SloSource = Arc<ArcSwap<steer_control::SloSnapshot>>;

/// A role's own part of `/status`: an edge's plan source, version and age
/// (under "edge"), a clustered controller's place in the cluster (under
/// "cluster").
pub(crate) type SectionSource = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Registers the listener's limit metrics at zero.
pub(crate) fn register_metrics() {
    metrics::counter!("steer_http_connections_rejected_total").absolute(0);
    metrics::counter!("steer_http_header_timeouts_total").absolute(0);
    metrics::gauge!("steer_http_connections").set(0.0);
    for reason in ["unauthenticated", "permission_denied"] {
        metrics::counter!("steer_http_status_denied_total", "reason" => reason).absolute(0);
    }
    ui::register_metrics();
}

// Each source is optional per role (an edge has no SLOs and no page);
// positional arguments keep the two call sites plain.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    status: Arc<ArcSwap<StatusReport>>,
    auth: Option<SharedAuthenticator>,
    bgp: Option<BgpStatusSource>,
    section: Option<(&'static str, SectionSource)>,
    slo: Option<SloSource>,
    ui: Option<UiSources>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status_page));
    let app = ui::routes(app).with_state(AppState {
        metrics,
        status,
        auth,
        bgp,
        section,
        slo,
        ui,
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed at once: a flood of connections costs one accept each.
            metrics::counter!("steer_http_connections_rejected_total").increment(1);
            debug!(%peer, "HTTP connection cap reached; closed");
            drop(tcp);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            metrics::gauge!("steer_http_connections").increment(1.0);
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service)
                .await;
            if let Err(e) = served {
                if e.is_timeout() {
                    metrics::counter!("steer_http_header_timeouts_total").increment(1);
                }
                debug!(%peer, error = %e, "HTTP connection ended");
            }
            metrics::gauge!("steer_http_connections").decrement(1.0);
            drop(slot);
        });
    }
}

async fn render_metrics(State(s): State<AppState>) -> Response {
    s.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// Whether the `Authorization` header names a viewer (or more) when auth
/// is on; the refusal otherwise.
fn viewer_allowed(
    auth: Option<&SharedAuthenticator>,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, &'static str)> {
    let Some(auth) = auth else { return Ok(()) };
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.load().authenticate(None, header) {
        Ok(id) if id.role.is_some_and(|r| r >= Role::Viewer) => Ok(()),
        Ok(_) => {
            metrics::counter!("steer_http_status_denied_total", "reason" => "permission_denied")
                .increment(1);
            Err((
                StatusCode::FORBIDDEN,
                "this token may not read /status (needs role viewer)\n",
            ))
        }
        Err(denial) => {
            metrics::counter!("steer_http_status_denied_total", "reason" => "unauthenticated")
                .increment(1);
            Err((StatusCode::UNAUTHORIZED, denial.why()))
        }
    }
}

async fn status_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err((code, why)) = viewer_allowed(s.auth.as_ref(), &headers) {
        return (code, [(header::WWW_AUTHENTICATE, "Bearer")], why).into_response();
    }
    Json(status_json(&s)).into_response()
}

/// The `/status` document: the same one as `steerctl --output json status`
/// (one schema, built from the reply GetStatus gives), with the speaker's
/// sessions and routes under "bgp", an edge's plan source and age under
/// "edge", a clustered controller's role under "cluster" and the SLOs
/// under "slo".
fn status_json(s: &AppState) -> serde_json::Value {
    let report = s.status.load_full();
    let document = steer_api::status_document(&steer_api::status_response(&report));
    let Ok(mut v) = serde_json::to_value(&document) else {
        return serde_json::Value::Null;
    };
    if let Some(obj) = v.as_object_mut() {
        if let Some(Ok(b)) = s.bgp.as_ref().map(|bgp| serde_json::to_value(bgp())) {
            obj.insert("bgp".to_owned(), b);
        }
        if let Some((name, section)) = &s.section {
            obj.insert((*name).to_owned(), section());
        }
        if let Some(slo) = &s.slo {
            let snap = slo.load_full();
            if !snap.specs.is_empty() {
                obj.insert(
                    "slo".to_owned(),
                    steer_api::slo_document(&crate::slo::slo_response(&snap)),
                );
            }
        }
    }
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use steer_api::Authenticator;
    use steer_types::auth::Identity;

    fn with_bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn status_asks_for_a_viewer_and_follows_reloads() {
        let id = |p: &str, role| Identity {
            principal: p.into(),
            role,
            pop: None,
        };
        let auth: SharedAuthenticator = Arc::new(ArcSwap::from_pointee(Authenticator::new([
            ("viewer-token".to_owned(), id("vera", Some(Role::Viewer))),
            ("agent-token".to_owned(), id("agent", None)),
        ])));
        assert!(viewer_allowed(None, &HeaderMap::new()).is_ok());
        let code = |h: &HeaderMap| viewer_allowed(Some(&auth), h).err().map(|(c, _)| c);
        assert_eq!(code(&HeaderMap::new()), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(code(&with_bearer("nope")), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(
            code(&with_bearer("agent-token")),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(code(&with_bearer("viewer-token")), None);
        // A reload swaps the credentials: the removed token is refused.
        auth.store(Arc::new(Authenticator::new([])));
        assert_eq!(
            code(&with_bearer("viewer-token")),
            Some(StatusCode::UNAUTHORIZED)
        );
    }
}
