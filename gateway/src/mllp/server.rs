//! A configured listener: accepts connections, closes those from outside the allowed
//! networks or over the connection limits before reading anything (after closing an idle
//! connection to make room, see [`super::slots`]), and serves the rest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::budget::FrameBudget;
use super::connection::{self, Limits};
use super::handler::Handler;
use super::slots::{Slot, Slots};
use crate::log_limit::{self, Repeats};

/// TLS handshakes that take longer are abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Listener {
    pub(crate) socket: TcpListener,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) allow: Vec<IpNet>,
    pub(crate) slots: Arc<Slots>,
    pub(crate) limits: Limits,
    /// The process-wide in-flight frame budget, shared by every listener.
    pub(crate) budget: Arc<FrameBudget>,
    pub(crate) handler: Arc<Handler>,
}

impl Listener {
    /// Accepts until shutdown; connection tasks are spawned on `tracker` so shutdown can
    /// wait for them to finish what they are committing.
    pub(crate) async fn run(self, tracker: TaskTracker, shutdown: CancellationToken) {
        let name = self.handler.listener.clone();
        // A flood of refused connections must not become a flood of log lines.
        let (warn_accept, warn_allowlist) = (Repeats::new(log_limit::EVERY), Repeats::new(log_limit::EVERY));
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = self.socket.accept() => a,
            };
            let (socket, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    if let Some(more) = warn_accept.hit("") {
                        tracing::warn!(listener = %name, error = %e, failures_not_logged = more.left_out, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if !self.allowed(peer) {
                self.handler.metrics.refused_allowlist.inc();
                if let Some(more) = warn_allowlist.hit("") {
                    tracing::warn!(listener = %name, peer = %peer.ip(), refused_not_logged = more.left_out, "connection from outside the allowed networks closed");
                }
                continue;
            }
            // Counted and logged (rate-limited) by the slots when refused.
            let Ok(slot) = self.slots.admit(peer.ip()) else { continue };
            let _ = socket.set_nodelay(true);
            let (handler, tls, limits, budget, stop) =
                (self.handler.clone(), self.tls.clone(), self.limits, self.budget.clone(), shutdown.clone());
            tracker.spawn(async move {
                let metrics = handler.metrics.clone();
                metrics.connections_open.add(1);
                let closed = serve(socket, tls, handler, limits, budget, &slot, stop).await;
                metrics.connections_open.add(-1);
                tracing::debug!(peer = %peer, reason = ?closed, "connection closed");
                drop(slot);
            });
        }
        tracing::info!(listener = %name, "stopped accepting");
    }

    fn allowed(&self, peer: SocketAddr) -> bool {
        let ip = peer.ip().to_canonical();
        self.allow.iter().any(|net| net.contains(&ip))
    }
}

async fn serve(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    handler: Arc<Handler>,
    limits: Limits,
    budget: Arc<FrameBudget>,
    slot: &Slot,
    shutdown: CancellationToken,
) -> Option<connection::Closed> {
    match tls {
        None => Some(connection::serve(socket, handler, limits, budget, slot, shutdown).await),
        Some(acceptor) => {
            let handshake = tokio::select! {
                // A connection still shaking hands is idle: it may be chosen to make room.
                _ = slot.closing() => return Some(connection::Closed::GaveWay),
                h = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)) => h,
            };
            match handshake {
                Ok(Ok(stream)) => Some(connection::serve(stream, handler, limits, budget, slot, shutdown).await),
                Ok(Err(e)) => {
                    handler.metrics.tls_failures.inc();
                    tracing::warn!(listener = %handler.listener, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    handler.metrics.tls_failures.inc();
                    None
                }
            }
        }
    }
}
