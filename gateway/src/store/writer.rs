//! The journal writer: one thread owns the write connection and group-commits.
//!
//! Connections hand in sealed messages and wait. The writer drains whatever is queued
//! (bounded by count and bytes) into one transaction, commits it (WAL + `synchronous=FULL`:
//! the commit returns after fsync), and only then answers every waiting connection. Many
//! connections share one fsync; nobody is answered before their message is durable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::budget::Budget;
use super::db::{self, OpenError, Synchronous};
use super::disk::{self, Checkpoint};
use super::state::JournalState;
use crate::log_limit::{self, Repeats};
use crate::metrics::Metrics;
use crate::stage::{Stage, Stopping};

/// A message ready to be journaled: metadata in clear, payload sealed.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub listener: Arc<str>,
    pub sender: String,
    pub control_id: String,
    pub message_type: String,
    pub lane: Option<String>,
    pub payload_hash: [u8; 32],
    pub sealed: Vec<u8>,
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored under this journal sequence.
    Stored(i64),
    /// The same message was already stored under this sequence.
    Duplicate(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("storage full: the journal has reached its disk budget, or the filesystem is full")]
    StorageFull,
    /// The transaction failed; nothing of the batch was stored.
    #[error("storage error: {0}")]
    Io(String),
    #[error("the journal writer has stopped")]
    Closed,
}

/// Everything the writer needs to know.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub path: PathBuf,
    pub vfs: Option<String>,
    pub synchronous: Synchronous,
    pub max_bytes: u64,
    pub dedup_window: Duration,
    pub batch_max_messages: usize,
    pub batch_max_bytes: usize,
    /// Queue length in front of the writer; senders wait when it is full.
    pub queue: usize,
    /// Rung after every commit that stored something (wakes the convert stage).
    pub on_commit: Option<super::Doorbell>,
    /// Shared with the process's other writers; ingest goes first.
    pub gate: Arc<super::WriteGate>,
}

type Request = (NewMessage, oneshot::Sender<Result<Appended, AppendError>>);

/// What the writer's queue carries: messages, and the wake-up of [`Writer::stop`].
enum Input {
    Append(Request),
    Wake,
}

/// Handle used by connections to append; cheap to clone.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Input>,
    health: Arc<AtomicU8>,
}

/// The journal's state as the last commit left it (`/healthz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// The disk budget is reached: new messages get AR "Storage full".
    BudgetFull,
    /// The filesystem is full (SQLITE_FULL): new messages get AR "Storage full".
    DiskFull,
    /// The last commit failed otherwise: new messages get AE "Storage error".
    Failing,
}

impl Health {
    const ALL: [Health; 4] = [Health::Ok, Health::BudgetFull, Health::DiskFull, Health::Failing];

    /// What an operator reads on `/healthz`; `None` when healthy.
    pub(crate) fn problem(self) -> Option<&'static str> {
        match self {
            Health::Ok => None,
            Health::BudgetFull => Some("journal: disk budget ([store] max_bytes) reached; new messages are refused with AR until delivered rows are purged"),
            Health::DiskFull => Some("journal: the filesystem is full; new messages are refused with AR until space is freed (ingest resumes by itself)"),
            Health::Failing => Some("journal: last commit failed"),
        }
    }
}

impl Appender {
    /// Appends a message and waits until it is durable (or refused).
    pub async fn append(&self, msg: NewMessage) -> Result<Appended, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Input::Append((msg, reply))).await.map_err(|_| AppendError::Closed)?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// False after the last commit failed or refused messages (cleared by the next commit
    /// that stores one).
    pub fn healthy(&self) -> bool {
        self.health() == Health::Ok
    }

    pub(crate) fn health(&self) -> Health {
        Health::ALL[usize::from(self.health.load(Ordering::Relaxed)).min(3)]
    }
}

/// The running writer thread (a [`Stage`]): stops when stopped or dropped.
pub struct Writer {
    stage: Stage,
}

impl Writer {
    /// Opens the journal, migrates it and starts the writer thread.
    pub fn start(opts: WriterOptions, metrics: Arc<Metrics>) -> Result<(Appender, Writer), OpenError> {
        let mut conn = db::open(&opts.path, opts.vfs.as_deref(), opts.synchronous)?;
        db::migrate(&mut conn, &opts.path)?;
        let depth: i64 = conn
            .query_row("SELECT count(*) FROM journal WHERE state <> ?1", [JournalState::Delivered], |r| r.get(0))
            .map_err(|source| OpenError::Sqlite { path: opts.path.display().to_string(), source })?;
        metrics.journal_depth.set(depth);
        disk::limit_wal(&conn, disk::wal_soft_limit(opts.max_bytes))
            .map_err(|source| OpenError::Sqlite { path: opts.path.display().to_string(), source })?;
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let health = Arc::new(AtomicU8::new(Health::Ok as u8));
        let budget = Budget::new(opts.path.clone());
        let state = WriterLoop { conn, opts, metrics, health: health.clone(), budget };
        let wake = tx.clone();
        let stage = Stage::spawn(
            "journal-writer",
            // A full queue needs no wake-up: the writer is busy and sees the flag after the batch.
            move || {
                let _ = wake.try_send(Input::Wake);
            },
            move |stopping| state.run(rx, &stopping),
        );
        Ok((Appender { tx, health }, Writer { stage }))
    }

    /// Refuses new messages, commits and answers every queued one, and waits for the thread.
    pub fn stop(self) {
        self.stage.stop();
    }
}

struct WriterLoop {
    conn: Connection,
    opts: WriterOptions,
    metrics: Arc<Metrics>,
    health: Arc<AtomicU8>,
    budget: Budget,
}

/// Failed commits and refusals, logged once a minute with a count.
static COMMIT_ERRORS: Repeats = Repeats::new(log_limit::EVERY);
/// Recoveries: at the edge of the budget ingest flips between refused and accepted with
/// every commit; one line a minute says so.
static RECOVERIES: Repeats = Repeats::new(log_limit::EVERY);

impl WriterLoop {
    fn run(mut self, mut rx: mpsc::Receiver<Input>, stopping: &Stopping) {
        let mut batch: Vec<Request> = Vec::with_capacity(self.opts.batch_max_messages);
        let metrics = self.metrics.clone();
        let stage = &metrics.stages.writer;
        let _exit = stage.guard();
        loop {
            if stopping.requested() {
                // No new messages; the queued ones are still received, committed and answered.
                rx.close();
            }
            // Waiting for messages is not a stall; a commit that never returns is.
            stage.waiting(true);
            let Some(input) = rx.blocking_recv() else { break };
            stage.waiting(false);
            let Input::Append(first) = input else { continue };
            let mut bytes = first.0.sealed.len();
            batch.push(first);
            while batch.len() < self.opts.batch_max_messages && bytes < self.opts.batch_max_bytes {
                match rx.try_recv() {
                    Ok(Input::Append(req)) => {
                        bytes += req.0.sealed.len();
                        batch.push(req);
                    }
                    Ok(Input::Wake) => {}
                    Err(_) => break,
                }
            }
            let results = self.commit(&batch);
            self.metrics.batch_size.observe(batch.len() as f64);
            for ((_, reply), result) in batch.drain(..).zip(results) {
                let _ = reply.send(result);
            }
        }
        tracing::info!("journal writer stopped");
    }

    /// Stores a batch in one transaction; answers per message.
    fn commit(&mut self, batch: &[Request]) -> Vec<Result<Appended, AppendError>> {
        match self.try_commit(batch) {
            Ok(results) => {
                let stored = results.iter().filter(|r| matches!(r, Ok(Appended::Stored(_)))).count();
                let refused = results.iter().any(|r| r.is_err());
                self.metrics.stored.add(stored as u64);
                self.metrics.journal_depth.add(stored as i64);
                if stored > 0 {
                    if let Some(bell) = &self.opts.on_commit {
                        bell.ring();
                    }
                }
                if refused {
                    self.metrics.journal_budget_full.inc();
                    if let Some(repeated) = COMMIT_ERRORS.hit("budget") {
                        tracing::warn!(
                            max_bytes = self.opts.max_bytes,
                            "journal: disk budget reached; new messages refused with AR \"Storage full\"{repeated}"
                        );
                    }
                }
                self.set_health(if refused && stored == 0 { Health::BudgetFull } else { Health::Ok });
                results
            }
            Err(e) => {
                let full = disk::is_disk_full(&e);
                if full {
                    self.metrics.journal_disk_full.inc();
                }
                self.set_health(if full { Health::DiskFull } else { Health::Failing });
                if let Some(repeated) = COMMIT_ERRORS.hit(if full { "disk full" } else { "commit" }) {
                    if full {
                        tracing::error!(error = %e, messages = batch.len(), "journal commit failed: the filesystem is full; messages refused with AR{repeated}");
                    } else {
                        tracing::error!(error = %e, messages = batch.len(), "journal commit failed; messages not acknowledged{repeated}");
                    }
                }
                let answer = if full { AppendError::StorageFull } else { AppendError::Io(e.to_string()) };
                vec![Err(answer); batch.len()]
            }
        }
    }

    fn set_health(&self, now: Health) {
        let before = self.health.swap(now as u8, Ordering::Relaxed);
        if now == Health::Ok && before != Health::Ok as u8 {
            if let Some(repeated) = RECOVERIES.hit("ok") {
                tracing::info!("journal: commits succeed again; messages are accepted{repeated}");
            }
        }
    }

    /// Brings the budget's view up to date before refusing anything: the unconverted rows
    /// are summed again, and if only the WAL is in the way it is checkpointed and emptied.
    fn usage_for(&mut self, wanted: u64, smallest: u64) -> rusqlite::Result<super::budget::Usage> {
        let max = self.opts.max_bytes;
        let mut usage = self.budget.usage(&self.conn, false)?;
        if usage.used() + wanted > max {
            usage = self.budget.usage(&self.conn, true)?;
            let without_wal = usage.used() - usage.files.wal;
            if usage.used() + wanted > max
                && usage.files.wal > 0
                && without_wal + smallest <= max
                && disk::room_to_checkpoint(&self.conn, &self.opts.path)?
            {
                let _announce = self.opts.gate.ingest();
                match disk::checkpoint(&self.conn, Checkpoint::Truncate, disk::CHECKPOINT_WAIT) {
                    Ok(true) => self.metrics.wal_truncations.inc(),
                    Ok(false) => {}
                    Err(e) => {
                        if let Some(repeated) = COMMIT_ERRORS.hit("checkpoint") {
                            tracing::warn!(error = %e, "journal: WAL checkpoint before refusing failed{repeated}");
                        }
                    }
                }
                usage = self.budget.usage(&self.conn, true)?;
            }
        }
        self.metrics.journal_db_bytes.set(usage.files.db as i64);
        self.metrics.journal_wal_bytes.set(usage.files.wal as i64);
        self.metrics.journal_shm_bytes.set(usage.files.shm as i64);
        Ok(usage)
    }

    fn try_commit(&mut self, batch: &[Request]) -> rusqlite::Result<Vec<Result<Appended, AppendError>>> {
        let now = crate::store::now_ms();
        let cutoff = now - self.opts.dedup_window.as_millis() as i64;
        let wanted = batch.iter().map(|(m, _)| Budget::cost(m.sealed.len())).sum();
        let smallest = batch.iter().map(|(m, _)| Budget::cost(m.sealed.len())).min().unwrap_or(0);
        let mut used = self.usage_for(wanted, smallest)?.used();
        let mut stored_bytes = 0;
        let _announce = self.opts.gate.ingest();
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(batch.len());
        {
            let mut find = tx.prepare_cached(
                "SELECT seq FROM journal INDEXED BY journal_by_control_id
                 WHERE sender = ?1 AND control_id = ?2 AND payload_hash = ?3 AND received_at >= ?4
                 ORDER BY seq LIMIT 1",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO journal (received_at, listener, sender, control_id, message_type, lane, payload_hash, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (m, _) in batch {
                let duplicate: Option<i64> = find
                    .query_row(params![m.sender, m.control_id, &m.payload_hash[..], cutoff], |r| r.get(0))
                    .optional()?;
                if let Some(seq) = duplicate {
                    results.push(Ok(Appended::Duplicate(seq)));
                    continue;
                }
                let cost = Budget::cost(m.sealed.len());
                if used + cost > self.opts.max_bytes {
                    results.push(Err(AppendError::StorageFull));
                    continue;
                }
                used += cost;
                stored_bytes += m.sealed.len() as u64;
                insert.execute(params![
                    now,
                    &*m.listener,
                    m.sender,
                    m.control_id,
                    m.message_type,
                    m.lane,
                    &m.payload_hash[..],
                    m.sealed
                ])?;
                results.push(Ok(Appended::Stored(tx.last_insert_rowid())));
            }
        }
        tx.commit()?;
        self.budget.stored(stored_bytes);
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::disk::Footprint;

    fn message(id: &str, len: usize) -> NewMessage {
        NewMessage {
            listener: Arc::from("l"),
            sender: "A|B".into(),
            control_id: id.into(),
            message_type: "ADT^A01".into(),
            lane: None,
            payload_hash: [id.len() as u8; 32],
            sealed: vec![7; len],
        }
    }

    #[test]
    fn a_writer_stopped_while_appenders_live_stops_and_refuses_later_messages() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WriterOptions {
            path: dir.path().join("j.db"),
            vfs: None,
            synchronous: Synchronous::Normal,
            max_bytes: 64 << 20,
            dedup_window: Duration::from_secs(60),
            batch_max_messages: 16,
            batch_max_bytes: 1 << 20,
            queue: 16,
            on_commit: None,
            gate: Default::default(),
        };
        let (appender, writer) = Writer::start(opts, Arc::new(Metrics::default())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert!(matches!(rt.block_on(appender.append(message("C1", 10))), Ok(Appended::Stored(_))));
        writer.stop();
        assert_eq!(rt.block_on(appender.append(message("C2", 10))), Err(AppendError::Closed));
    }

    #[test]
    fn a_wal_that_alone_passes_the_budget_is_emptied_rather_than_messages_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let max_bytes = 4 << 20;
        let opts = WriterOptions {
            path: path.clone(),
            vfs: None,
            synchronous: Synchronous::Full,
            max_bytes,
            dedup_window: Duration::from_secs(60),
            batch_max_messages: 16,
            batch_max_bytes: 1 << 20,
            queue: 16,
            on_commit: None,
            gate: Default::default(),
        };
        let metrics = Arc::new(Metrics::default());
        let (appender, writer) = Writer::start(opts, metrics.clone()).unwrap();
        // Another connection writes and deletes 5 MB: few live pages, a WAL past the budget.
        let other = db::open(&path, None, Synchronous::Full).unwrap();
        other
            .execute_batch(
                "CREATE TABLE scratch (b BLOB);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) INSERT INTO scratch SELECT zeroblob(1000) FROM n;
                 DELETE FROM scratch;",
            )
            .unwrap();
        assert!(Footprint::of(&path).wal > max_bytes);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let stored = rt.block_on(appender.append(message("C1", 1000)));
        assert!(matches!(stored, Ok(Appended::Stored(_))), "{stored:?}");
        assert!(Footprint::of(&path).wal < 1 << 20, "{:?}", Footprint::of(&path));
        assert_eq!(metrics.wal_truncations.get(), 1);
        assert!(appender.healthy());
        drop((appender, other));
        writer.stop();
    }
}
