//! The admin HTTP endpoint (loopback): `/healthz` (the journal accepts and stores, every stage
//! alive), `/readyz` (bundles reach the FHIR server), `/metrics`, and the status page (`/status`,
//! `/status.json`: the status stage's latest sample, see `ops/status`), behind a small accept
//! loop that bounds what a client can hold: at most
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
use crate::ops::status::{self, Latest};
use crate::store::Appender;

#[derive(Clone)]
struct Admin {
    metrics: Arc<Metrics>,
    journal: Appender,
    /// `gateway_info{device,version} 1`: which gateway answers (a script checks it talks to
    /// its own instance).
    info: Arc<str>,
    latest: Latest,
}

/// Until the status stage's first sample (a second or two after start).
const NO_SAMPLE: &str = "status: no sample yet, retry in a few seconds\n";

async fn status_page(State(s): State<Admin>) -> axum::response::Response {
    match s.latest.get() {
        Some(st) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], status::html::render(&st)).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, NO_SAMPLE).into_response(),
    }
}

async fn status_json(State(s): State<Admin>) -> axum::response::Response {
    match s.latest.get().map(|st| serde_json::to_string(&st)) {
        Some(Ok(json)) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, NO_SAMPLE).into_response(),
    }
}

/// The `gateway_info` sample naming this instance.
fn info_line(device: &str) -> String {
    let escaped = device.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    format!(
        "# HELP gateway_info This gateway: its [device] name and version\n# TYPE gateway_info gauge\ngateway_info{{device=\"{escaped}\",version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// "Can the gateway accept and store messages": 503 with the reasons when the journal
/// refuses them (disk or budget full, commits failing) or a stage is down. Delivery trouble is
/// listed but does not fail it — ingest still takes custody; `/readyz` reports delivery.
async fn healthz(State(s): State<Admin>) -> impl IntoResponse {
    let mut problems = s.metrics.stages.problems();
    problems.extend(s.journal.health().problem().map(|p| p.to_string()));
    let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = if problems.is_empty() { "ok\n".to_string() } else { problems.join("\n") + "\n" };
    for p in delivery_problems(&s.metrics) {
        body.push_str(&p);
        body.push('\n');
    }
    (status, body)
}

/// "Are messages being delivered": 503 with the reasons while the FHIR server is unreachable,
/// the circuit is open or the credentials are refused.
async fn readyz(State(s): State<Admin>) -> impl IntoResponse {
    let problems = delivery_problems(&s.metrics);
    if problems.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n")
    }
}

/// What keeps bundles from reaching the FHIR server now, one line each.
fn delivery_problems(m: &Metrics) -> Vec<String> {
    let mut out = Vec::new();
    if m.forward_link_down.get() == 1 {
        out.push(
            "forward: the FHIR server is unreachable (connect failures or timeouts); messages wait in the journal"
                .into(),
        );
    }
    if m.forward_circuit_state.get() == 2 {
        out.push("forward: circuit open, the FHIR server is unreachable or failing".into());
    }
    if m.forward_auth_failing.get() == 1 {
        out.push("forward: the FHIR server refuses the gateway's credentials (retrying every 60 s)".into());
    }
    out
}

async fn metrics_text(State(s): State<Admin>) -> impl IntoResponse {
    // The tunnel's lines exist only while a WireGuard tunnel is configured and `wg` reads it.
    let text = s.metrics.render() + &s.info + &crate::provision::tunnel::render_metrics();
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
    device: String,
    latest: Latest,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/status", get(status_page))
        .route("/status.json", get(status_json))
        .with_state(Admin { metrics: metrics.clone(), journal, info: info_line(&device).into(), latest });
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
