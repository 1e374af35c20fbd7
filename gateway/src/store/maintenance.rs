//! Background upkeep on a second connection: WAL checkpoints (the writer has automatic
//! checkpoints off, so they never stall a commit) and purging delivered rows past retention.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use super::db::{self, OpenError, Synchronous};

#[derive(Debug, Clone)]
pub struct MaintenanceOptions {
    pub path: PathBuf,
    pub vfs: Option<String>,
    pub synchronous: Synchronous,
    /// How often to checkpoint and purge.
    pub every: Duration,
    /// Delivered rows older than this are deleted.
    pub retention: Duration,
}

/// Rows deleted per purge transaction, so a purge never holds the write lock for long.
const PURGE_CHUNK: i64 = 5000;

/// The running maintenance thread; stops (after a final checkpoint) when dropped or stopped.
pub struct Maintenance {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Maintenance {
    pub fn start(opts: MaintenanceOptions) -> Result<Maintenance, OpenError> {
        let conn = db::open(&opts.path, opts.vfs.as_deref(), opts.synchronous)?;
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("journal-maintenance".into())
            .spawn(move || run(conn, opts, stopped))
            .expect("spawn maintenance thread");
        Ok(Maintenance { stop: Some(stop), thread: Some(thread) })
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(conn: Connection, opts: MaintenanceOptions, stopped: mpsc::Receiver<()>) {
    loop {
        match stopped.recv_timeout(opts.every) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => break,
        }
        if let Err(e) = purge(&conn, opts.retention) {
            tracing::warn!(error = %e, "purge of delivered rows failed; will retry");
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// Deletes delivered rows older than `retention`; returns how many.
pub fn purge(conn: &Connection, retention: Duration) -> rusqlite::Result<usize> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let cutoff = now - retention.as_millis() as i64;
    let mut total = 0;
    loop {
        let n = conn.execute(
            "DELETE FROM journal WHERE seq IN (
                 SELECT seq FROM journal WHERE state = 'delivered' AND received_at < ?1 LIMIT ?2)",
            rusqlite::params![cutoff, PURGE_CHUNK],
        )?;
        total += n;
        if n < PURGE_CHUNK as usize {
            return Ok(total);
        }
    }
}
