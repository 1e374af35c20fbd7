//! Background upkeep on a second connection: WAL checkpoints (the writer has automatic
//! checkpoints off, so they never stall a commit) and purging delivered rows past retention
//! (journal rows with their outbox bundles).

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
    pub gate: std::sync::Arc<super::WriteGate>,
    /// Where the thread reports its liveness.
    pub metrics: std::sync::Arc<crate::ops::metrics::Metrics>,
}

/// WAL size that triggers a checkpoint.
const CHECKPOINT_WAL_BYTES: u64 = 16 << 20;

fn wal_bytes(db: &std::path::Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
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

fn run(mut conn: Connection, opts: MaintenanceOptions, stopped: mpsc::Receiver<()>) {
    let stage = &opts.metrics.stages.maintenance;
    let _exit = stage.guard();
    // A message or a hang-up on the channel means stop; a timeout means work.
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(opts.every) {
        stage.beat();
        if let Err(e) = purge(&mut conn, opts.retention, &opts.gate) {
            tracing::warn!(error = %e, "purge of delivered rows failed; will retry");
        }
        // Checkpoint only once the WAL has grown: every checkpoint fsyncs the database file,
        // and fewer of them means fewer stalls behind the writer's commit fsync.
        if wal_bytes(&opts.path) >= CHECKPOINT_WAL_BYTES {
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
            }
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// Deletes delivered rows older than `retention`; returns how many.
pub fn purge(conn: &mut Connection, retention: Duration, gate: &super::WriteGate) -> rusqlite::Result<usize> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let cutoff = now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    let mut total = 0;
    loop {
        // Look first (a read, no lock on the writer); then delete in a transaction that takes
        // the write lock up front, so it waits its turn instead of failing on a stale snapshot.
        let due: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM journal INDEXED BY journal_delivered
                            WHERE state = 'delivered' AND received_at < ?1)",
            [cutoff],
            |r| r.get(0),
        )?;
        if !due {
            return Ok(total);
        }
        let _pass = gate.background();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // The delivered outbox rows (bundles) go with their journal row.
        tx.execute_batch("CREATE TEMP TABLE IF NOT EXISTS purge_seq (seq INTEGER PRIMARY KEY); DELETE FROM temp.purge_seq;")?;
        tx.execute(
            "INSERT INTO temp.purge_seq SELECT seq FROM journal INDEXED BY journal_delivered
             WHERE state = 'delivered' AND received_at < ?1 LIMIT ?2",
            rusqlite::params![cutoff, PURGE_CHUNK],
        )?;
        tx.execute("DELETE FROM outbox WHERE journal_seq IN (SELECT seq FROM temp.purge_seq)", [])?;
        let n = tx.execute("DELETE FROM journal WHERE seq IN (SELECT seq FROM temp.purge_seq)", [])?;
        tx.execute("DELETE FROM temp.purge_seq", [])?;
        tx.commit()?;
        total += n;
        if n < PURGE_CHUNK as usize {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_deletes_only_delivered_rows_past_retention() {
        let dir = std::env::temp_dir().join(format!("gw-purge-{}", std::process::id()));
        let path = dir.join("j.db");
        let mut conn = db::open(&path, None, Synchronous::Full).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        let rows = [("old-delivered", now - 10_000, "delivered"), ("new-delivered", now, "delivered"), ("old-received", now - 10_000, "received")];
        for (id, at, state) in rows {
            conn.execute(
                "INSERT INTO journal (received_at, listener, sender, control_id, message_type, payload_hash, state, payload)
                 VALUES (?1, 'l', 's', ?2, 'ADT^A01', x'00', ?3, x'00')",
                rusqlite::params![at, id, state],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO outbox (journal_seq, part, created_at, state, bundle)
             SELECT seq, 0, received_at, CASE state WHEN 'delivered' THEN 'delivered' ELSE 'pending' END, x'00' FROM journal",
        )
        .unwrap();
        assert_eq!(purge(&mut conn, Duration::from_secs(5), &Default::default()).unwrap(), 1);
        let left: Vec<String> =
            conn.prepare("SELECT control_id FROM journal ORDER BY seq").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(left, ["new-delivered", "old-received"]);
        let bundles: i64 = conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)).unwrap();
        assert_eq!(bundles, 2, "the purged message's bundle went with it");
        assert_eq!(purge(&mut conn, Duration::from_secs(5), &Default::default()).unwrap(), 0);
        drop(conn);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
