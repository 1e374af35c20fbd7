//! Background upkeep on a second connection: WAL checkpoints (the writer has automatic
//! checkpoints off, so they never stall a commit) that keep the WAL under its bound, and
//! purging delivered rows past retention (journal rows with their outbox bundles).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::db::{self, OpenError, Synchronous};
use super::disk::{self, Checkpoint, Footprint};
use super::Doorbell;
use crate::log_limit::{self, Repeats};
use crate::metrics::Metrics;
use crate::stage::{Stage, Stopping};

#[derive(Debug, Clone)]
pub(crate) struct MaintenanceOptions {
    pub(crate) path: PathBuf,
    pub(crate) vfs: Option<String>,
    pub(crate) synchronous: Synchronous,
    /// How often to checkpoint and purge.
    pub(crate) every: Duration,
    /// Delivered rows older than this are deleted.
    pub(crate) retention: Duration,
    pub(crate) gate: Arc<super::WriteGate>,
    /// The disk budget: the WAL is kept under [`disk::wal_bound`] of it.
    pub(crate) max_bytes: u64,
    /// Where the thread reports its liveness and the journal's footprint.
    pub(crate) metrics: Arc<Metrics>,
}

/// How often the WAL's size is looked at (one `stat`); a flood can add megabytes a second.
const WAL_CHECK_EVERY: Duration = Duration::from_millis(100);

/// Checkpoint and purge failures, logged once a minute with a count.
static ERRORS: Repeats = Repeats::new(log_limit::EVERY);

/// Rows deleted per purge transaction, so a purge never holds the write lock for long.
const PURGE_CHUNK: i64 = 5000;

/// The running maintenance thread (a [`Stage`]); stops (after a final checkpoint) when
/// dropped or stopped.
pub(crate) struct Maintenance {
    stage: Stage,
}

impl Maintenance {
    pub(crate) fn start(opts: MaintenanceOptions) -> Result<Maintenance, OpenError> {
        let conn = db::open(&opts.path, opts.vfs.as_deref(), opts.synchronous)?;
        disk::limit_wal(&conn, disk::wal_soft_limit(opts.max_bytes))
            .map_err(|source| OpenError::Sqlite { path: opts.path.display().to_string(), source })?;
        let bell = Doorbell::default();
        let woken = bell.clone();
        let stage = Stage::spawn(
            "journal-maintenance",
            move || bell.ring(),
            move |stopping| run(conn, opts, &woken, &stopping),
        );
        Ok(Maintenance { stage })
    }

    /// Runs a final `wal_checkpoint(TRUNCATE)` and stops.
    pub(crate) fn stop(self) {
        self.stage.stop();
    }
}

fn run(mut conn: Connection, opts: MaintenanceOptions, bell: &Doorbell, stopping: &Stopping) {
    let stage = &opts.metrics.stages.maintenance;
    let _exit = stage.guard();
    let mut purged_at = Instant::now();
    let mut counted_at: Option<Instant> = None;
    // Only a stop rings the bell; its timeout paces the work.
    loop {
        bell.wait(WAL_CHECK_EVERY);
        if stopping.requested() {
            break;
        }
        stage.beat();
        if purged_at.elapsed() >= opts.every {
            purged_at = Instant::now();
            if let Err(e) = purge(&mut conn, opts.retention, &opts.gate) {
                if let Some(repeated) = ERRORS.hit("purge") {
                    tracing::warn!(error = %e, "purge of delivered rows failed; will retry{repeated}");
                }
            }
        }
        if counted_at.is_none_or(|t| t.elapsed() >= RECOUNT_EVERY) {
            counted_at = Some(Instant::now());
            match pending_messages(&conn) {
                Ok(n) => opts.metrics.journal_depth.set(n),
                Err(e) => {
                    if let Some(repeated) = ERRORS.hit("recount") {
                        tracing::warn!(error = %e, "counting pending journal rows failed; will retry{repeated}");
                    }
                }
            }
        }
        if let Err(e) = keep_wal_bounded(&conn, &opts) {
            if let Some(repeated) =
                ERRORS.hit(if disk::is_disk_full(&e) { "checkpoint: disk full" } else { "checkpoint" })
            {
                tracing::warn!(error = %e, "WAL checkpoint failed; will retry{repeated}");
            }
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// How often `gateway_journal_depth` is recounted from the tables: the stages keep it up to
/// date as they go, but a `gateway deadletter replay` (another process) puts rows back.
const RECOUNT_EVERY: Duration = Duration::from_secs(5);

/// Journal rows still pending: not converted yet, or with a bundle not delivered yet. Dead
/// and delivered rows are not. Both counts walk partial indexes of pending rows only.
pub(crate) fn pending_messages(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT (SELECT count(*) FROM journal INDEXED BY journal_received WHERE state = 'received')
              + (SELECT count(DISTINCT journal_seq) FROM outbox INDEXED BY outbox_pending_message WHERE state = 'pending')",
        [],
        |r| r.get(0),
    )
}

/// Checkpoints when the WAL has grown: PASSIVE (never blocks a writer) from a quarter of the
/// bound, TRUNCATE (empties the file; waits for readers, blocks writers meanwhile) at the
/// bound — which PASSIVE alone cannot guarantee: while some reader always holds a snapshot
/// the WAL is never restarted and only grows. Every checkpoint fsyncs the database file, so
/// none runs while the WAL is small.
fn keep_wal_bounded(conn: &Connection, opts: &MaintenanceOptions) -> rusqlite::Result<()> {
    let files = Footprint::of(&opts.path);
    opts.metrics.journal_db_bytes.set(files.db as i64);
    opts.metrics.journal_wal_bytes.set(files.wal as i64);
    opts.metrics.journal_shm_bytes.set(files.shm as i64);
    if files.wal < disk::wal_soft_limit(opts.max_bytes) {
        return Ok(());
    }
    if !disk::room_to_checkpoint(conn, &opts.path)? {
        // Leave the free space to ingest; the checkpoint runs once there is room for all of it.
        if let Some(repeated) = ERRORS.hit("no room to checkpoint") {
            tracing::warn!(
                wal = files.wal,
                "WAL checkpoint postponed: the filesystem has no room to copy the WAL into the database{repeated}"
            );
        }
        return Ok(());
    }
    if files.wal >= disk::wal_bound(opts.max_bytes) {
        // Background writers wait at the gate; ingest is let through first.
        let _pass = opts.gate.background();
        if disk::checkpoint(conn, Checkpoint::Truncate, disk::CHECKPOINT_WAIT)? {
            opts.metrics.wal_truncations.inc();
        }
    } else {
        disk::checkpoint(conn, Checkpoint::Passive, disk::CHECKPOINT_WAIT)?;
    }
    Ok(())
}

/// Deletes delivered rows older than `retention`; returns how many.
pub(crate) fn purge(conn: &mut Connection, retention: Duration, gate: &super::WriteGate) -> rusqlite::Result<usize> {
    let now = crate::store::now_ms();
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
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS purge_seq (seq INTEGER PRIMARY KEY); DELETE FROM temp.purge_seq;",
        )?;
        tx.execute(
            "INSERT INTO temp.purge_seq SELECT seq FROM journal INDEXED BY journal_delivered
             WHERE state = 'delivered' AND received_at < ?1 LIMIT ?2",
            rusqlite::params![cutoff, PURGE_CHUNK],
        )?;
        tx.execute("DELETE FROM outbox WHERE journal_seq IN (SELECT seq FROM temp.purge_seq)", [])?;
        // A replayed message's dead letters go with its delivered row.
        tx.execute("DELETE FROM dead_letter WHERE journal_seq IN (SELECT seq FROM temp.purge_seq)", [])?;
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
    use crate::store::state::{JournalState, OutboxState};

    #[test]
    fn a_wal_over_its_bound_is_emptied_once_readers_let_go_and_a_stuck_reader_does_not_hang_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("j.db");
        let mut conn = db::open(&path, None, Synchronous::Full).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        let opts = MaintenanceOptions {
            path: path.clone(),
            vfs: None,
            synchronous: Synchronous::Full,
            every: Duration::from_secs(1),
            retention: Duration::MAX,
            gate: Default::default(),
            max_bytes: 2 << 20,
            metrics: Default::default(),
        };
        let maintenance = db::open(&path, None, Synchronous::Full).unwrap();
        let reader = db::open(&path, None, Synchronous::Full).unwrap();
        // A reader in the middle of a read transaction, as the convert stage is for a moment.
        reader.execute_batch("BEGIN; SELECT count(*) FROM journal;").unwrap();
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
             INSERT INTO journal (received_at, listener, sender, control_id, message_type, payload_hash, payload)
             SELECT 0, 'l', 's', 'C' || i, 'ADT^A01', x'00', zeroblob(1000) FROM n;",
        )
        .unwrap();
        let wal = Footprint::of(&path).wal;
        assert!(wal > disk::wal_bound(opts.max_bytes), "{wal}");
        // The stuck reader: the checkpoint gives up after its wait instead of blocking writers.
        let started = Instant::now();
        keep_wal_bounded(&maintenance, &opts).unwrap();
        assert!(started.elapsed() < disk::CHECKPOINT_WAIT * 3, "{:?}", started.elapsed());
        assert_eq!(opts.metrics.wal_truncations.get(), 0);
        conn.execute("UPDATE journal SET state = ?1 WHERE seq = 1", [JournalState::Converted]).unwrap();
        // The reader lets go: the WAL file is emptied, not merely reused.
        reader.execute_batch("COMMIT").unwrap();
        keep_wal_bounded(&maintenance, &opts).unwrap();
        assert_eq!(Footprint::of(&path).wal, 0);
        assert_eq!(opts.metrics.wal_truncations.get(), 1);
        assert!(opts.metrics.journal_wal_bytes.get() as u64 >= wal, "the gauge shows the WAL it found");
        drop((conn, maintenance, reader));
    }

    #[test]
    fn purge_deletes_only_delivered_rows_past_retention() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("j.db");
        let mut conn = db::open(&path, None, Synchronous::Full).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        let now = crate::store::now_ms();
        let rows = [
            ("old-delivered", now - 10_000, JournalState::Delivered),
            ("new-delivered", now, JournalState::Delivered),
            ("old-received", now - 10_000, JournalState::Received),
        ];
        for (id, at, state) in rows {
            conn.execute(
                "INSERT INTO journal (received_at, listener, sender, control_id, message_type, payload_hash, state, payload)
                 VALUES (?1, 'l', 's', ?2, 'ADT^A01', x'00', ?3, x'00')",
                rusqlite::params![at, id, state],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO outbox (journal_seq, part, created_at, state, bundle)
             SELECT seq, 0, received_at, CASE state WHEN ?1 THEN ?2 ELSE ?3 END, x'00' FROM journal",
            rusqlite::params![JournalState::Delivered, OutboxState::Delivered, OutboxState::Pending],
        )
        .unwrap();
        assert_eq!(purge(&mut conn, Duration::from_secs(5), &Default::default()).unwrap(), 1);
        let left: Vec<String> = conn
            .prepare("SELECT control_id FROM journal ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(left, ["new-delivered", "old-received"]);
        let bundles: i64 = conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)).unwrap();
        assert_eq!(bundles, 2, "the purged message's bundle went with it");
        assert_eq!(purge(&mut conn, Duration::from_secs(5), &Default::default()).unwrap(), 0);
        drop(conn);
    }
}
