//! The HTTP side door: `/metrics` (Prometheus text), `/healthz` (liveness)
//! and `/status` (JSON: plan version, per-PoP health, weight, drain).

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::PrometheusHandle;
use steer_api::ApiCommand;
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
};

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    api_tx: mpsc::Sender<ApiCommand>,
}

pub(crate) async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    api_tx: mpsc::Sender<ApiCommand>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status))
        .with_state(AppState { metrics, api_tx });
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
        Ok(report) => Json(report).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "control loop stopped\n").into_response(),
    }
}
