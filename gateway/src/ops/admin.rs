//! The admin HTTP endpoint (loopback): `/healthz` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use crate::store::Appender;

#[derive(Clone)]
struct Admin {
    metrics: Arc<Metrics>,
    journal: Appender,
}

async fn healthz(State(s): State<Admin>) -> impl IntoResponse {
    let (status, mut body) = match s.journal.health().problem() {
        None => (StatusCode::OK, String::from("ok\n")),
        Some(problem) => (StatusCode::SERVICE_UNAVAILABLE, format!("{problem}\n")),
    };
    // Delivery trouble is reported but does not fail the check: ingest still takes custody.
    if s.metrics.forward_auth_failing.get() == 1 {
        body.push_str("forward: the FHIR server refuses the gateway's credentials (retrying every 60 s)\n");
    }
    if s.metrics.forward_circuit_state.get() == 2 {
        body.push_str("forward: circuit open, the FHIR server is unreachable or failing\n");
    }
    (status, body)
}

async fn metrics_text(State(s): State<Admin>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(socket: TcpListener, metrics: Arc<Metrics>, journal: Appender, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(Admin { metrics, journal });
    if let Err(e) = axum::serve(socket, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
        tracing::error!(error = %e, "admin endpoint failed");
    }
}
