//! The recorder: writes delivery outcomes to the outbox on its own connection and thread,
//! many per transaction, so no lane and no request waits for a commit.
//!
//! The scheduler moves a lane on as soon as the target has stored its head; recording that is
//! only bookkeeping. If the gateway dies before the commit, the head is still `pending` and is
//! sent again after the restart — harmless, since every entry is an idempotent upsert.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use crate::log_limit::{self, Repeats};
use crate::metrics::Metrics;
use crate::stage::Stopping;
use crate::store::delivery::{self, Outcome, Record};
use crate::store::WriteGate;

/// Commit failures, logged once a minute per kind with a count (a full disk fails them all).
static ERRORS: Repeats = Repeats::new(log_limit::EVERY);

/// Most records per transaction: the write lock is shared with the ingest writer, whose
/// ACKs wait while a transaction holds it (128: live ACK p99 19 ms while draining, 512: 31 ms).
const MAX_BATCH: usize = 128;
/// Attempts at a failing transaction before giving up on it (its rows stay `pending` and are
/// sent again after a restart).
const ATTEMPTS: u32 = 10;

/// What the recorder's queue carries: outcomes, and the wake-up of its [`crate::stage::Stage`].
pub(super) enum Input {
    Record(Record),
    Wake,
}

/// Writes records until stopped; once stopped, writes what is queued and returns. After each
/// commit it sends back the ids of the rows it settled for good, so the scheduler can stop
/// skipping them.
pub(super) fn run(
    mut conn: Connection,
    records: Receiver<Input>,
    recorded: Sender<Vec<i64>>,
    metrics: Arc<Metrics>,
    gate: &WriteGate,
    stopping: &Stopping,
) {
    loop {
        let next = if stopping.requested() { records.try_recv().ok() } else { records.recv().ok() };
        let first = match next {
            Some(Input::Record(r)) => r,
            Some(Input::Wake) => continue, // look at the flag again
            None => break,
        };
        let mut batch = vec![first];
        batch.extend(
            records
                .try_iter()
                .filter_map(|input| match input {
                    Input::Record(r) => Some(r),
                    Input::Wake => None,
                })
                .take(MAX_BATCH - 1),
        );
        let mut attempt = 1;
        loop {
            match delivery::record(&mut conn, &batch, gate) {
                Ok(counts) => {
                    metrics.forward_delivered.add(counts.delivered);
                    metrics.dead_letters.add(counts.dead_letters);
                    metrics.journal_depth.add(-counts.journal_done);
                    break;
                }
                Err(e) if attempt < ATTEMPTS => {
                    if let Some(r) = ERRORS.hit("record") {
                        tracing::error!(error = %e, attempt, "forwarder: cannot record delivery outcomes; will retry{r}");
                    }
                    std::thread::sleep(Duration::from_millis(500));
                    attempt += 1;
                }
                Err(e) => {
                    if let Some(r) = ERRORS.hit("gave up") {
                        tracing::error!(error = %e, records = batch.len(), "forwarder: delivery outcomes not recorded; those bundles will be sent again after a restart{r}");
                    }
                    break;
                }
            }
        }
        let finals = batch.iter().filter(|r| matches!(r.outcome, Outcome::Final { .. })).map(|r| r.id).collect();
        let _ = recorded.send(finals);
    }
}
