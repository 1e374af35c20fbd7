//! The journal writer: one thread owns the write connection and group-commits.
//!
//! Connections hand in sealed messages and wait. The writer drains whatever is queued
//! (bounded by count and bytes) into one transaction, commits it (WAL + `synchronous=FULL`:
//! the commit returns after fsync), and only then answers every waiting connection. Many
//! connections share one fsync; nobody is answered before their message is durable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::db::{self, OpenError, Synchronous};
use crate::ops::metrics::Metrics;

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
    #[error("storage full: the journal has reached its disk budget")]
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

/// Rough per-row cost beyond the payload (metadata, index entries), for the disk budget.
const ROW_OVERHEAD: u64 = 256;

type Request = (NewMessage, oneshot::Sender<Result<Appended, AppendError>>);

/// Handle used by connections to append; cheap to clone.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Request>,
    healthy: Arc<AtomicBool>,
}

impl Appender {
    /// Appends a message and waits until it is durable (or refused).
    pub async fn append(&self, msg: NewMessage) -> Result<Appended, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((msg, reply)).await.map_err(|_| AppendError::Closed)?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// False after the last commit failed (cleared by the next successful one).
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// The running writer thread; joins when every [`Appender`] is dropped.
pub struct Writer {
    thread: JoinHandle<()>,
}

impl Writer {
    /// Opens the journal, migrates it and starts the writer thread.
    pub fn start(opts: WriterOptions, metrics: Arc<Metrics>) -> Result<(Appender, Writer), OpenError> {
        let mut conn = db::open(&opts.path, opts.vfs.as_deref(), opts.synchronous)?;
        db::migrate(&mut conn, &opts.path)?;
        let depth: i64 = conn
            .query_row("SELECT count(*) FROM journal WHERE state <> 'delivered'", [], |r| r.get(0))
            .map_err(|source| OpenError::Sqlite { path: opts.path.display().to_string(), source })?;
        metrics.journal_depth.set(depth);
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let healthy = Arc::new(AtomicBool::new(true));
        let state = WriterLoop { conn, opts, metrics, healthy: healthy.clone() };
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || state.run(rx))
            .expect("spawn journal writer");
        Ok((Appender { tx, healthy }, Writer { thread }))
    }

    /// Waits for the writer to finish what is queued and stop.
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

struct WriterLoop {
    conn: Connection,
    opts: WriterOptions,
    metrics: Arc<Metrics>,
    healthy: Arc<AtomicBool>,
}

impl WriterLoop {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut batch: Vec<Request> = Vec::with_capacity(self.opts.batch_max_messages);
        let metrics = self.metrics.clone();
        let stage = &metrics.stages.writer;
        let _exit = stage.guard();
        loop {
            // Waiting for messages is not a stall; a commit that never returns is.
            stage.waiting(true);
            let Some(first) = rx.blocking_recv() else { break };
            stage.waiting(false);
            let mut bytes = first.0.sealed.len();
            batch.push(first);
            while batch.len() < self.opts.batch_max_messages && bytes < self.opts.batch_max_bytes {
                match rx.try_recv() {
                    Ok(req) => {
                        bytes += req.0.sealed.len();
                        batch.push(req);
                    }
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
                self.healthy.store(true, Ordering::Relaxed);
                let stored = results.iter().filter(|r| matches!(r, Ok(Appended::Stored(_)))).count();
                self.metrics.stored.add(stored as u64);
                self.metrics.journal_depth.add(stored as i64);
                if stored > 0 {
                    if let Some(bell) = &self.opts.on_commit {
                        bell.ring();
                    }
                }
                results
            }
            Err(e) => {
                self.healthy.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, messages = batch.len(), "journal commit failed; messages not acknowledged");
                vec![Err(AppendError::Io(e.to_string())); batch.len()]
            }
        }
    }

    fn try_commit(&mut self, batch: &[Request]) -> rusqlite::Result<Vec<Result<Appended, AppendError>>> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
        let cutoff = now - self.opts.dedup_window.as_millis() as i64;
        let mut used = used_bytes(&self.conn)?;
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
                let cost = m.sealed.len() as u64 + ROW_OVERHEAD;
                if used + cost > self.opts.max_bytes {
                    results.push(Err(AppendError::StorageFull));
                    continue;
                }
                used += cost;
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
        Ok(results)
    }
}

/// Bytes the database holds in live pages (free pages are reusable and not counted).
fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}
