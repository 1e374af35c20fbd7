//! The recorder: writes delivery outcomes to the outbox on its own connection and thread,
//! many per transaction, so no lane and no request waits for a commit.
//!
//! The scheduler moves a lane on as soon as the target has stored its head; recording that is
//! only bookkeeping. If the gateway dies before the commit, the head is still `pending` and is
//! sent again after the restart — harmless, since every entry is an idempotent upsert.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::deliver::FailClass;
use crate::log_limit::{self, Repeats};
use crate::ops::metrics::Metrics;
use crate::store::WriteGate;

/// Commit failures, logged once a minute per kind with a count (a full disk fails them all).
static ERRORS: Repeats = Repeats::new(log_limit::EVERY);

/// What to write for one outbox row.
#[derive(Debug)]
pub(super) struct Record {
    pub lane: String,
    pub id: i64,
    pub journal_seq: i64,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub(super) enum Outcome {
    /// Every entry is settled; the row is `dead` if any entry (now or before) was refused.
    /// `dead` holds the PHI-free reasons of the entries refused this time.
    Final { dead: Vec<String> },
    /// Send again at `due`: `settled` lists every entry settled so far.
    Retry { settled: Vec<usize>, dead: Vec<String>, due: i64, failures: u32, class: FailClass },
}

/// Most records per transaction: the write lock is shared with the ingest writer, whose
/// ACKs wait while a transaction holds it (128: live ACK p99 19 ms while draining, 512: 31 ms).
const MAX_BATCH: usize = 128;
/// Attempts at a failing transaction before giving up on it (its rows stay `pending` and are
/// sent again after a restart).
const ATTEMPTS: u32 = 10;

/// Writes records until the channel closes. After each commit it sends back the ids of the
/// rows it settled for good, so the scheduler can stop skipping them.
pub(super) fn run(
    mut conn: Connection,
    records: Receiver<Record>,
    recorded: Sender<Vec<i64>>,
    metrics: Arc<Metrics>,
    gate: &WriteGate,
) {
    while let Ok(first) = records.recv() {
        let mut batch = vec![first];
        batch.extend(records.try_iter().take(MAX_BATCH - 1));
        let mut attempt = 1;
        loop {
            match write(&mut conn, &batch, gate) {
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

#[derive(Default)]
struct Counts {
    delivered: u64,
    dead_letters: u64,
    journal_done: i64,
}

/// One transaction for the whole batch.
fn write(conn: &mut Connection, batch: &[Record], gate: &WriteGate) -> rusqlite::Result<Counts> {
    let mut counts = Counts::default();
    let now = crate::store::now_ms();
    let _pass = gate.background();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for r in batch {
        let dead = match &r.outcome {
            Outcome::Final { dead } | Outcome::Retry { dead, .. } => dead,
        };
        if !dead.is_empty() {
            let mut reason = dead.join("; ");
            truncate_at_char(&mut reason, 500);
            tx.prepare_cached(
                "INSERT INTO dead_letter (journal_seq, stage, reason, created_at) VALUES (?1, 'deliver', ?2, ?3)",
            )?
            .execute(params![r.journal_seq, reason, now])?;
            counts.dead_letters += 1;
        }
        match &r.outcome {
            Outcome::Final { dead } => {
                let state: Option<String> = tx
                    .prepare_cached(
                        "UPDATE outbox SET state = CASE WHEN entries_dead + ?2 > 0 THEN 'dead' ELSE 'delivered' END,
                             entries_dead = entries_dead + ?2, attempts = attempts + 1, entries_done = NULL
                         WHERE id = ?1 AND state = 'pending' RETURNING state",
                    )?
                    .query_row(params![r.id, dead.len() as i64], |row| row.get(0))
                    .optional()?;
                if state.as_deref() == Some("delivered") {
                    counts.delivered += 1;
                }
                tx.prepare_cached("DELETE FROM lane_state WHERE lane = ?1")?.execute([&r.lane])?;
                // The journal row is done when none of its bundles is pending any more.
                let (pending, dead): (i64, i64) = tx
                    .prepare_cached(super::queries::MESSAGE_PARTS_LEFT)?
                    .query_row([r.journal_seq], |row| Ok((row.get(0)?, row.get(1)?)))?;
                if pending == 0 {
                    let state = if dead > 0 { "dead" } else { "delivered" };
                    let changed = tx
                        .prepare_cached("UPDATE journal SET state = ?2 WHERE seq = ?1 AND state = 'converted'")?
                        .execute(params![r.journal_seq, state])?;
                    if changed > 0 && dead == 0 {
                        counts.journal_done += 1;
                    }
                }
            }
            Outcome::Retry { settled, dead, due, failures, class } => {
                let settled = (!settled.is_empty()).then(|| serde_json::to_string(settled).expect("indexes serialize"));
                tx.prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, entries_done = ?2, entries_dead = entries_dead + ?3
                     WHERE id = ?1 AND state = 'pending'",
                )?
                .execute(params![r.id, settled, dead.len() as i64])?;
                tx.prepare_cached(
                    "INSERT INTO lane_state (lane, next_attempt_at, failures, last_error) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (lane) DO UPDATE SET next_attempt_at = ?2, failures = ?3, last_error = ?4",
                )?
                .execute(params![r.lane, due, failures, class.label()])?;
            }
        }
    }
    tx.commit()?;
    Ok(counts)
}

fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}
