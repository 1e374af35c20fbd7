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

#[cfg(test)]
mod tests {
    use super::super::pacing::Pacing;
    use super::super::retry::Backoff;
    use super::super::worker::{Head, Sent, Signals};
    use super::*;
    use std::time::Duration;

    fn done(verdict: Verdict) -> Done {
        let head = Head { id: 7, journal_seq: 3, created_at: 0, shape: None };
        Done {
            parts: vec![Sent {
                lane: "A".into(),
                head,
                verdict: Some(verdict),
                follower: false,
                settled: vec![],
                searched_ahead: false,
            }],
            signals: Signals::default(),
            fill: Default::default(),
        }
    }

    fn failed(class: FailClass) -> Verdict {
        Verdict::Retry { class, after: None, ok: vec![], dead: vec![] }
    }

    /// Runs `verdicts` through a pacing (breaker after 3 failures) and returns the log.
    fn logged(verdicts: Vec<Verdict>) -> String {
        let ((), log) = crate::log_limit::captured(|| {
            let backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1), jitter: false };
            let mut pacing = Pacing::new(4, backoff, Duration::from_secs(60), 3, Duration::from_secs(5));
            let (metrics, now) = (Metrics::default(), Instant::now());
            for v in verdicts {
                pacing.observe(&done(v), now, &metrics);
            }
        });
        log
    }

    fn count(log: &str, level: &str, text: &str) -> usize {
        log.lines().filter(|l| l.contains(level) && l.contains(text)).count()
    }

    #[test]
    fn an_outage_is_one_warn_and_its_end_one_info() {
        let settled = || Verdict::Settled { ok: vec![0], dead: vec![] };
        let mut verdicts: Vec<Verdict> = (0..6).map(|_| failed(FailClass::Connect)).collect();
        verdicts.push(failed(FailClass::Timeout));
        verdicts.extend([settled(), settled()]);
        let log = logged(verdicts);
        assert_eq!(count(&log, "WARN", ""), 1, "{log}");
        assert_eq!(count(&log, "WARN", "unreachable"), 1, "{log}");
        assert_eq!(count(&log, "INFO", "circuit open"), 1, "during a reported outage: {log}");
        assert_eq!(count(&log, "INFO", "reachable again"), 1, "{log}");
        assert_eq!(count(&log, "INFO", "circuit closed"), 1, "{log}");
    }

    #[test]
    fn server_errors_opening_the_circuit_are_a_warn_and_credentials_warn_once() {
        let log = logged((0..4).map(|_| failed(FailClass::Server)).collect());
        assert_eq!(count(&log, "WARN", "circuit open"), 1, "{log}");
        assert_eq!(count(&log, "WARN", "unreachable"), 0, "the server answered: {log}");
        let settled = Verdict::Settled { ok: vec![0], dead: vec![] };
        let log = logged(vec![Verdict::AuthFailed, Verdict::AuthFailed, settled]);
        assert_eq!(count(&log, "WARN", "refuses the gateway's credentials"), 1, "{log}");
        assert_eq!(count(&log, "INFO", "accepts the gateway's credentials again"), 1, "{log}");
    }

    #[test]
    fn each_dead_letter_is_a_warn_with_its_reason() {
        let dead = Verdict::Dead { class: FailClass::Client, reason: "HTTP 422; issue codes: invalid".into() };
        let partly = Verdict::Settled { ok: vec![0], dead: vec![(1, "entry 1: HTTP 400".into())] };
        let log = logged(vec![dead, partly]);
        assert_eq!(count(&log, "WARN", "moved to dead letters"), 2, "{log}");
        assert!(log.contains("HTTP 422; issue codes: invalid") && log.contains("journal_seq=3"), "{log}");
    }
}
