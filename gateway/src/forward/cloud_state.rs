//! What an operator reads in the log about the cloud: each change of the link (reachable or
//! not), the circuit breaker and the credentials is logged once — WARN when it goes bad, INFO
//! when it is back — and every dead letter with its reason code. Repeated failures of the same
//! kind write nothing more: `/metrics` counts them.

use std::time::Instant;

use super::deliver::Verdict;
use super::retry::BreakerState;
use super::worker::Done;
use crate::metrics::{FailClass, Metrics};

/// The last state logged, to log only changes.
#[derive(Debug, Default)]
pub(super) struct CloudState {
    /// Since when requests get no HTTP answer, and how many failed so far.
    down: Option<(Instant, u64)>,
    /// An open circuit was logged and awaits its "closed" line.
    circuit_reported: bool,
}

/// A request that got no HTTP answer (the FHIR server or its token endpoint unreachable).
fn transport_failure(verdict: &Verdict) -> Option<FailClass> {
    match verdict {
        Verdict::Retry { class: c @ (FailClass::Connect | FailClass::Timeout), .. } => Some(*c),
        _ => None,
    }
}

impl CloudState {
    /// The link: down at the first request without an answer, back at the first answer.
    pub(super) fn observe_link(&mut self, done: &Done, now: Instant, metrics: &Metrics) {
        let verdicts = || done.parts.iter().filter_map(|p| p.verdict.as_ref());
        let failed = verdicts().filter_map(transport_failure).next();
        let answered = verdicts().any(|v| transport_failure(v).is_none());
        match (&mut self.down, failed, answered) {
            (None, Some(class), false) => {
                tracing::warn!(
                    class = class.label(),
                    "forwarder: the FHIR server is unreachable; messages wait in the journal and are retried"
                );
                self.down = Some((now, 1));
                metrics.forward_link_down.set(1);
            }
            (Some((_, failures)), Some(_), false) => *failures += 1,
            (Some((since, failures)), _, true) => {
                let secs = now.saturating_duration_since(*since).as_secs();
                tracing::info!(
                    down_secs = secs,
                    failed_requests = *failures,
                    "forwarder: the FHIR server is reachable again"
                );
                self.down = None;
                metrics.forward_link_down.set(0);
            }
            _ => {}
        }
    }

    /// The breaker's state after a request: an open circuit is news (WARN) unless the link
    /// is already reported down, in which case it is that outage's consequence (INFO).
    pub(super) fn observe_circuit(&mut self, state: BreakerState, consecutive: u32) {
        match state {
            BreakerState::Open if !self.circuit_reported => {
                self.circuit_reported = true;
                if self.down.is_some() {
                    tracing::info!(
                        failures = consecutive,
                        "forwarder: circuit open; probing the FHIR server with one request at a time"
                    );
                } else {
                    tracing::warn!(
                        failures = consecutive,
                        "forwarder: circuit open: the FHIR server failed requests in a row; probing with one request at a time"
                    );
                }
            }
            BreakerState::Closed if self.circuit_reported => {
                self.circuit_reported = false;
                tracing::info!("forwarder: circuit closed; sending at full rate again");
            }
            _ => {}
        }
    }

    /// Credentials: refused (WARN once) or accepted again (INFO once).
    pub(super) fn observe_auth(&self, failing: bool, was_failing: bool, retry_secs: u64) {
        match (was_failing, failing) {
            (false, true) => tracing::warn!(
                retry_secs,
                "forwarder: the FHIR server refuses the gateway's credentials; retrying slowly"
            ),
            (true, false) => tracing::info!("forwarder: the FHIR server accepts the gateway's credentials again"),
            _ => {}
        }
    }

    /// One WARN line per dead letter: outbox row, journal row and the reason (status and
    /// issue codes, never content).
    pub(super) fn report_dead_letters(done: &Done) {
        for part in &done.parts {
            let (id, seq) = (part.head.id, part.head.journal_seq);
            match &part.verdict {
                Some(Verdict::Dead { class, reason }) => {
                    tracing::warn!(outbox_id = id, journal_seq = seq, class = class.label(), %reason, "forwarder: bundle moved to dead letters");
                }
                Some(Verdict::Settled { dead, .. } | Verdict::Retry { dead, .. }) => {
                    for (entry, reason) in dead {
                        tracing::warn!(outbox_id = id, journal_seq = seq, entry, %reason, "forwarder: bundle entry moved to dead letters");
                    }
                }
                _ => {}
            }
        }
    }
}
