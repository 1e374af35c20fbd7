//! The admin HTTP endpoint (loopback): `/healthz` (journal and every stage alive) and
//! `/metrics`, behind a small accept loop that bounds what a client can hold: at most
//! `admin_max_connections` connections (more are closed at once), one request per connection,
//! the request head within [`HEADER_TIMEOUT`] and [`MAX_HEAD_BYTES`], the whole exchange within
//! [`CONNECTION_TIMEOUT`]. Request bodies are never read (only GETs are served).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::log_limit::{self, Repeats};
use crate::metrics::Metrics;
use crate::store::Appender;

#[derive(Clone)]
struct Admin {
    metrics: Arc<Metrics>,
    journal: Appender,
}

async fn healthz(State(s): State<Admin>) -> impl IntoResponse {
    let mut problems = s.metrics.stages.problems();
    problems.extend(s.journal.health().problem().map(|p| p.to_string()));
    let (status, mut body) = if problems.is_empty() {
        (
            StatusCode::OK,
            String::from(
                "ok
",
            ),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            problems.join(
                "
",
            ) + "
",
        )
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
    // The tunnel's lines exist only while a WireGuard tunnel is configured and `wg` reads it.
    let text = s.metrics.render() + &crate::provision::tunnel::render_metrics();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// A client must send its whole request head within this time.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this long, whatever it is doing.
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest request head (request line and headers); larger ones get 431. hyper's minimum.
pub(crate) const MAX_HEAD_BYTES: usize = 8192;
/// Most request headers.
const MAX_HEADERS: usize = 32;

/// Serves until `shutdown` is cancelled.
pub(crate) async fn serve(
    socket: TcpListener,
    max_connections: usize,
    metrics: Arc<Metrics>,
    journal: Appender,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(Admin { metrics: metrics.clone(), journal });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let slots = Arc::new(Semaphore::new(max_connections));
    let connections = TaskTracker::new();
    let (warn_full, warn_accept) = (Repeats::new(log_limit::EVERY), Repeats::new(log_limit::EVERY));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = socket.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if let Some(more) = warn_accept.hit("") {
                    tracing::warn!(error = %e, failures_not_logged = more.left_out, "admin accept failed");
                }
                // Out of file descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Dropping the stream closes it: a flood holds no more than the cap.
            metrics.refused_admin.inc();
            if let Some(more) = warn_full.hit("") {
                tracing::warn!(
                    max_connections,
                    refused_not_logged = more.left_out,
                    "admin connection limit reached; connection closed"
                );
            }
            continue;
        };
        let exchange = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let stop = shutdown.clone();
        connections.spawn(async move {
            // Admin requests only read: cutting one short on shutdown loses nothing.
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::timeout(CONNECTION_TIMEOUT, exchange) => {}
            }
            drop(slot);
        });
    }
    connections.close();
    connections.wait().await;
}
