//! The journal's footprint on disk: the database file, its WAL and its shared-memory index;
//! the bound the WAL is kept under (derived from the disk budget); the checkpoint that
//! shrinks it; and recognising a full filesystem.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// On-disk sizes of the journal's three files, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Footprint {
    pub(crate) db: u64,
    pub(crate) wal: u64,
    pub(crate) shm: u64,
}

impl Footprint {
    /// Sizes as the filesystem reports them now (a missing file counts 0).
    pub(crate) fn of(db: &Path) -> Footprint {
        let size = |suffix: &str| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(name).map_or(0, |m| m.len())
        };
        Footprint { db: size(""), wal: size("-wal"), shm: size("-shm") }
    }

    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.db + self.wal + self.shm
    }
}

/// Largest WAL bound, whatever the budget.
const WAL_BOUND_MAX: u64 = 64 << 20;
/// Smallest WAL bound: below it every few commits would checkpoint.
const WAL_BOUND_MIN: u64 = 256 << 10;

/// The WAL size at which it is checkpointed with TRUNCATE: an eighth of the disk budget,
/// at least 256 KiB, at most 64 MiB. A quarter of it triggers a PASSIVE checkpoint (which
/// does not block writers) and is the `journal_size_limit`.
pub(crate) fn wal_bound(max_bytes: u64) -> u64 {
    (max_bytes / 8).clamp(WAL_BOUND_MIN, WAL_BOUND_MAX)
}

/// The WAL size a restarted WAL is cut back to (`PRAGMA journal_size_limit`) and at which a
/// PASSIVE checkpoint runs.
pub(crate) fn wal_soft_limit(max_bytes: u64) -> u64 {
    wal_bound(max_bytes) / 4
}

/// Sets `journal_size_limit` on a connection: when it restarts the WAL from the beginning it
/// truncates the file to this size instead of leaving it at its largest.
pub(crate) fn limit_wal(conn: &Connection, bytes: u64) -> rusqlite::Result<()> {
    conn.query_row(&format!("PRAGMA journal_size_limit = {bytes}"), [], |_| Ok(()))
}

/// Bytes the filesystem holding `db` still gives to an unprivileged process; `None` if it
/// cannot be asked.
pub(crate) fn available(db: &Path) -> Option<u64> {
    let dir = db.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Free space a checkpoint keeps beyond what it needs, for the writer's next commits.
const CHECKPOINT_SLACK: u64 = 256 << 10;

/// Whether a checkpoint can finish on the free space left: it grows the database file by the
/// pages the WAL holds past the file's end. One that cannot finish fails half-way with
/// SQLITE_FULL having grown the file — taking the space an operator just freed, which ingest
/// needed to resume (the WAL shrinks only once a checkpoint completes). Unknown free space
/// counts as room.
pub(crate) fn room_to_checkpoint(conn: &Connection, db: &Path) -> rusqlite::Result<bool> {
    Ok(checkpoint_fits(checkpoint_growth(conn, db)?, available(db)))
}

/// Bytes a complete checkpoint adds to the database file: its size with the WAL's pages
/// (`page_count`) less its size on disk.
pub(crate) fn checkpoint_growth(conn: &Connection, db: &Path) -> rusqlite::Result<u64> {
    let pages: u64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let size: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok((pages * size).saturating_sub(Footprint::of(db).db))
}

fn checkpoint_fits(growth: u64, available: Option<u64>) -> bool {
    available.is_none_or(|free| free >= growth + CHECKPOINT_SLACK)
}

/// True for SQLITE_FULL: the filesystem (or a quota) has no room for the write.
pub(crate) fn is_disk_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checkpoint {
    /// Copies what it can without waiting for anyone; the WAL file keeps its size.
    Passive,
    /// Waits (at most `wait`) for writers and readers, copies everything and empties the WAL
    /// file. Blocks new writers while it runs.
    Truncate,
}

/// Runs a checkpoint, waiting at most `wait` for other connections; true when the whole WAL
/// was copied into the database.
pub(crate) fn checkpoint(conn: &Connection, mode: Checkpoint, wait: Duration) -> rusqlite::Result<bool> {
    let sql = match mode {
        Checkpoint::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Checkpoint::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    let started = std::time::Instant::now();
    conn.busy_timeout(wait)?;
    let done = loop {
        let row = conn.query_row(sql, [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)));
        // Another connection's checkpoint (maintenance's PASSIVE, the writer's own) makes
        // SQLite answer busy at once, without its busy handler: try again until `wait`.
        match row {
            Ok((1, _, _)) if mode == Checkpoint::Truncate && started.elapsed() < wait => {
                std::thread::sleep(Duration::from_millis(2))
            }
            other => break other,
        }
    };
    conn.busy_timeout(super::db::BUSY_TIMEOUT)?;
    let (busy, log, copied) = done?;
    Ok(busy == 0 && log == copied)
}

/// How long a checkpoint waits for the other connections (readers finish in milliseconds;
/// a TRUNCATE blocks ingest while it waits, so not long).
pub(crate) const CHECKPOINT_WAIT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::{self, Synchronous};

    #[test]
    fn wal_bound_follows_the_budget_within_limits() {
        assert_eq!(wal_bound(1 << 30), 64 << 20);
        assert_eq!(wal_bound(8 << 30), 64 << 20);
        assert_eq!(wal_bound(64 << 20), 8 << 20);
        assert_eq!(wal_bound(256 << 10), 256 << 10);
        assert_eq!(wal_soft_limit(64 << 20), 2 << 20);
    }

    #[test]
    fn a_checkpoint_waits_until_the_filesystem_has_room_for_the_pages_it_adds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut conn = db::open(&path, None, Synchronous::Full).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        assert!(available(&path).is_some_and(|b| b > 0));
        assert!(room_to_checkpoint(&conn, &path).unwrap());
        // New pages live in the WAL until a checkpoint copies them: the file must grow by them.
        checkpoint(&conn, Checkpoint::Truncate, CHECKPOINT_WAIT).unwrap();
        assert_eq!(checkpoint_growth(&conn, &path).unwrap(), 0);
        conn.execute_batch("CREATE TABLE t (b BLOB); INSERT INTO t VALUES (zeroblob(100000));").unwrap();
        let growth = checkpoint_growth(&conn, &path).unwrap();
        assert!(growth >= 100_000, "{growth}");
        assert!(checkpoint_fits(growth, None), "unknown free space counts as room");
        assert!(checkpoint_fits(growth, Some(growth + CHECKPOINT_SLACK)));
        assert!(!checkpoint_fits(growth, Some(growth)), "a checkpoint that would fill the disk waits");
        checkpoint(&conn, Checkpoint::Truncate, CHECKPOINT_WAIT).unwrap();
        assert_eq!(checkpoint_growth(&conn, &path).unwrap(), 0);
    }

    #[test]
    fn truncate_checkpoint_empties_the_wal_and_the_footprint_shows_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut conn = db::open(&path, None, Synchronous::Full).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        // A reader on another connection, as the convert stage and the forwarder are.
        let reader = db::open(&path, None, Synchronous::Full).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) INSERT INTO t SELECT randomblob(1000) FROM n;",
        )
        .unwrap();
        let _: i64 = reader.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        let before = Footprint::of(&path);
        assert!(before.wal > 500_000, "{before:?}");
        assert!(checkpoint(&conn, Checkpoint::Passive, CHECKPOINT_WAIT).unwrap());
        assert_eq!(Footprint::of(&path).wal, before.wal, "PASSIVE leaves the file as it was");
        assert!(checkpoint(&conn, Checkpoint::Truncate, CHECKPOINT_WAIT).unwrap());
        let after = Footprint::of(&path);
        assert_eq!(after.wal, 0);
        assert!(after.db > 500_000 && after.shm > 0, "{after:?}");
        assert_eq!(after.total(), after.db + after.shm);
    }
}
