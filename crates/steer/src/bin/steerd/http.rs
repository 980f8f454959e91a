//! The HTTP side door: `/metrics` (Prometheus text), `/healthz` (liveness)
//! and `/status` (JSON: plan version, per-PoP health, weight, drain, and the
//! BGP speaker's sessions and routes under `bgp` when configured).

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::PrometheusHandle;
use steer_api::{ApiCommand, BgpStatusSource};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
};

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    api_tx: mpsc::Sender<ApiCommand>,
    bgp: Option<BgpStatusSource>,
}

pub(crate) async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    api_tx: mpsc::Sender<ApiCommand>,
    bgp: Option<BgpStatusSource>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status))
        .with_state(AppState {
            metrics,
            api_tx,
            bgp,
        });
    axum::serve(listener, app).await
}

async fn render_metrics(State(s): State<AppState>) -> Response {
    s.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn status(State(s): State<AppState>) -> Response {
    let (tx, rx) = oneshot::channel();
    if s.api_tx
        .send(ApiCommand::Status { reply: tx })
        .await
        .is_err()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "control loop stopped\n").into_response();
    }
    match rx.await {
        // The speaker's sessions and routes ride along under "bgp".
        Ok(report) => match (&s.bgp, serde_json::to_value(&report)) {
            (Some(bgp), Ok(mut v)) => {
                if let (Some(obj), Ok(b)) = (v.as_object_mut(), serde_json::to_value(bgp())) {
                    obj.insert("bgp".to_owned(), b);
                }
                Json(v).into_response()
            }
            _ => Json(report).into_response(),
        },
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "control loop stopped\n").into_response(),
    }
}
