//! POSTs alert transitions as JSON to `[alerts] webhook_url`, on its own thread so a slow or
//! dead receiver never holds up the evaluator (let alone ingest): a bounded queue (a full one
//! drops the newest transition, counted in the log), bounded retries with doubling backoff.
//! The JSON carries the alert's name, listener, state, detail, message ID and the device
//! name only — no message content.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use super::Transition;
use crate::stage::{Stage, Stopping};

/// Transitions waiting to be sent.
const QUEUE: usize = 64;
/// Tries per transition.
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// The evaluator's side: queues a transition, never blocks.
pub(crate) struct Webhook(SyncSender<Transition>);

impl Webhook {
    /// Starts the sender thread for `url`.
    pub(crate) fn start(url: String) -> (Webhook, Stage) {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let agent = crate::forward::client::agent(&crate::config::Cloud::default());
        let stage = Stage::spawn("alert-webhook", || {}, move |stopping| run(&url, agent.ok(), &rx, &stopping));
        (Webhook(tx), stage)
    }

    pub(crate) fn send(&self, t: Transition) {
        match self.0.try_send(t) {
            Ok(()) => {}
            Err(TrySendError::Full(t)) => {
                tracing::warn!(alert = t.alert, state = t.state, "alert webhook queue full; transition not sent")
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// A webhook whose transitions land in the returned receiver (tests).
    #[cfg(test)]
    pub(crate) fn capture() -> (Webhook, Receiver<Transition>) {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        (Webhook(tx), rx)
    }
}

fn run(url: &str, agent: Option<ureq::Agent>, rx: &Receiver<Transition>, stopping: &Stopping) {
    let Some(agent) = agent else {
        tracing::warn!("alert webhook: no HTTP client (TLS roots unreadable); alerts are not POSTed");
        return;
    };
    while !stopping.requested() {
        let t = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(t) => t,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let body = serde_json::to_vec(&t).unwrap_or_default();
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let outcome = match agent.post(url).header("content-type", "application/json").send(&body[..]) {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => break,
                Err(error) if attempt == ATTEMPTS => {
                    tracing::warn!(alert = t.alert, state = t.state, attempts = attempt, %error, "alert webhook failed; transition dropped");
                }
                Err(error) => {
                    tracing::debug!(alert = t.alert, attempt, %error, "alert webhook failed; retrying");
                    if !pause(backoff, stopping) {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Sleeps `d` in short steps; `false` when asked to stop meanwhile.
fn pause(d: Duration, stopping: &Stopping) -> bool {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !left.is_zero() {
        if stopping.requested() {
            return false;
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    !stopping.requested()
}
