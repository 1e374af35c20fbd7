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

/// A message and, when it is stored only to be kept (the converter cannot convert it), the
/// PHI-free reason of its dead letter.
type Entry = (NewMessage, Option<String>);

/// Messages that are stored together or not at all (one, or the messages of a batch).
type Request = (Vec<Entry>, oneshot::Sender<Answer>);

/// What became of a request's messages.
type Answer = Result<Vec<Appended>, AppendError>;

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
        self.one((msg, None)).await
    }

    /// Appends a message straight to dead letters (stage `convert`, with `reason`), durably.
    pub async fn append_dead(&self, msg: NewMessage, reason: String) -> Result<Appended, AppendError> {
        self.one((msg, Some(reason))).await
    }

    /// Appends several messages in one transaction: all are stored (or found duplicates), or
    /// none is.
    pub async fn append_all(&self, entries: Vec<(NewMessage, Option<String>)>) -> Result<Vec<Appended>, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Input::Append((entries, reply))).await.map_err(|_| AppendError::Closed)?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    async fn one(&self, entry: Entry) -> Result<Appended, AppendError> {
        let stored = self.append_all(vec![entry]).await?;
        stored.into_iter().next().ok_or(AppendError::Closed)
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
            .query_row(
                "SELECT count(*) FROM journal WHERE state IN (?1, ?2)",
                [JournalState::Received, JournalState::Converted],
                |r| r.get(0),
            )
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
            crate::metrics::liveness::test_wedge(stage);
            let Input::Append(first) = input else { continue };
            let size = |req: &Request| req.0.iter().map(|(m, _)| m.sealed.len()).sum::<usize>();
            let mut bytes = size(&first);
            batch.push(first);
            while batch.len() < self.opts.batch_max_messages && bytes < self.opts.batch_max_bytes {
                match rx.try_recv() {
                    Ok(Input::Append(req)) => {
                        bytes += size(&req);
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

    /// Stores a batch in one transaction; answers per request.
    fn commit(&mut self, batch: &[Request]) -> Vec<Answer> {
        match self.try_commit(batch) {
            Ok((results, dead)) => {
                let stored = results.iter().flatten().flatten().filter(|r| matches!(r, Appended::Stored(_))).count();
                let refused = results.iter().any(|r| r.is_err());
                self.metrics.stored.add(stored as u64);
                self.metrics.dead_letters.add(dead);
                // Messages kept straight as dead letters are not pending.
                self.metrics.journal_depth.add(stored as i64 - dead as i64);
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

    /// The answers per request, and how many messages went straight to dead letters.
    fn try_commit(&mut self, batch: &[Request]) -> rusqlite::Result<(Vec<Answer>, u64)> {
        let now = crate::store::now_ms();
        let cutoff = now - self.opts.dedup_window.as_millis() as i64;
        let cost = |req: &Request| req.0.iter().map(|(m, _)| Budget::cost(m.sealed.len())).sum::<u64>();
        let wanted = batch.iter().map(cost).sum();
        let smallest = batch.iter().map(cost).min().unwrap_or(0);
        let mut used = self.usage_for(wanted, smallest)?.used();
        let mut stored_bytes = 0;
        let mut dead = 0;
        let _announce = self.opts.gate.ingest();
        let mut tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(batch.len());
        for (entries, _) in batch {
            let max = self.opts.max_bytes;
            let answer = if entries.len() > 1 {
                // Several messages go in under a savepoint: if one does not fit, none stays.
                let mut sp = tx.savepoint()?;
                let answer = store_request(&sp, entries, now, cutoff, &mut used, max)?;
                if answer.is_ok() {
                    sp.commit()?;
                } else {
                    sp.rollback()?;
                }
                answer
            } else {
                // One message is refused before anything of it is written.
                store_request(&tx, entries, now, cutoff, &mut used, max)?
            };
            if let Ok(done) = &answer {
                stored_bytes += done.bytes;
                dead += done.dead;
            }
            results.push(answer.map(|done| done.appended));
        }
        tx.commit()?;
        self.budget.stored(stored_bytes);
        Ok((results, dead))
    }
}

/// What one request stored.
struct Done {
    appended: Vec<Appended>,
    bytes: u64,
    dead: u64,
}

/// Stores one request's messages (the caller's savepoint undoes them when one is refused).
fn store_request(
    tx: &rusqlite::Connection,
    entries: &[Entry],
    now: i64,
    cutoff: i64,
    used: &mut u64,
    max_bytes: u64,
) -> rusqlite::Result<Result<Done, AppendError>> {
    let mut done = Done { appended: Vec::with_capacity(entries.len()), bytes: 0, dead: 0 };
    let before = *used;
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
        for (m, dead_letter) in entries {
            let duplicate: Option<i64> = find
                .query_row(params![m.sender, m.control_id, &m.payload_hash[..], cutoff], |r| r.get(0))
                .optional()?;
            if let Some(seq) = duplicate {
                done.appended.push(Appended::Duplicate(seq));
                continue;
            }
            let cost = Budget::cost(m.sealed.len());
            if *used + cost > max_bytes {
                *used = before;
                return Ok(Err(AppendError::StorageFull));
            }
            *used += cost;
            done.bytes += m.sealed.len() as u64;
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
            let seq = tx.last_insert_rowid();
            if let Some(reason) = dead_letter {
                tx.execute("UPDATE journal SET state = ?1 WHERE seq = ?2", params![JournalState::Dead, seq])?;
                tx.execute(
                    "INSERT INTO dead_letter (journal_seq, stage, reason, created_at) VALUES (?1, 'convert', ?2, ?3)",
                    params![seq, reason, now],
                )?;
                done.dead += 1;
            }
            done.appended.push(Appended::Stored(seq));
        }
    }
    Ok(Ok(done))
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

    /// A small writer on `path` with a disk budget of `max_bytes`.
    fn options(path: PathBuf, max_bytes: u64) -> WriterOptions {
        WriterOptions {
            path,
            vfs: None,
            synchronous: Synchronous::Full,
            max_bytes,
            dedup_window: Duration::from_secs(60),
            batch_max_messages: 16,
            batch_max_bytes: 1 << 20,
            queue: 16,
            on_commit: None,
            gate: Default::default(),
        }
    }

    #[test]
    fn a_writer_stopped_while_appenders_live_stops_and_refuses_later_messages() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WriterOptions { synchronous: Synchronous::Normal, ..options(dir.path().join("j.db"), 64 << 20) };
        let (appender, writer) = Writer::start(opts, Arc::new(Metrics::default())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert!(matches!(rt.block_on(appender.append(message("C1", 10))), Ok(Appended::Stored(_))));
        writer.stop();
        assert_eq!(rt.block_on(appender.append(message("C2", 10))), Err(AppendError::Closed));
    }

    #[test]
    fn several_messages_are_stored_together_or_not_at_all_and_dead_letters_go_in_with_their_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let opts = options(path.clone(), 4 << 20);
        let metrics = Arc::new(Metrics::default());
        let (appender, writer) = Writer::start(opts, metrics.clone()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        // The second does not fit the budget: the first is not kept either.
        let both = vec![(message("A1", 1000), None), (message("A22", 8 << 20), None)];
        assert_eq!(rt.block_on(appender.append_all(both)), Err(AppendError::StorageFull));
        let all = vec![(message("B1", 1000), None), (message("B22", 1000), Some("unsupported: X".to_string()))];
        let stored = rt.block_on(appender.append_all(all)).unwrap();
        assert!(matches!(stored[..], [Appended::Stored(_), Appended::Stored(_)]), "{stored:?}");
        assert_eq!(metrics.dead_letters.get(), 1);
        drop(appender);
        writer.stop();
        let conn = db::open(&path, None, Synchronous::Full).unwrap();
        let rows: Vec<(String, String)> = conn
            .prepare("SELECT control_id, state FROM journal ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows, [("B1".to_string(), "received".to_string()), ("B22".into(), "dead".into())]);
        let reason: String = conn.query_row("SELECT reason FROM dead_letter", [], |r| r.get(0)).unwrap();
        assert_eq!(reason, "unsupported: X");
    }

    #[test]
    fn a_wal_that_alone_passes_the_budget_is_emptied_rather_than_messages_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let max_bytes = 4 << 20;
        let opts = options(path.clone(), max_bytes);
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
