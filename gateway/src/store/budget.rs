//! The disk budget (`[store] max_bytes`): what the journal may still take. It counts what
//! the journal's files can occupy, not only its rows:
//!
//! - the database's live pages (`page_count − freelist_count`; free pages are reused first),
//! - the WAL and shared-memory files at their on-disk size (a page written since the last
//!   checkpoint sits in the WAL *and* will be copied into the database: counted twice, as it
//!   takes twice the room until the WAL is truncated),
//! - a reserve for the rows the convert stage has not converted yet: their FHIR bundles
//!   (with the keys written on every resource), their sealed conversion report and, once
//!   delivered, the forwarder's per-resource bookkeeping (server ids, content hashes) take
//!   about 15× the HL7 payload in pages, written once to the WAL and once to the database,
//!   so 30× the sealed payload is held for them until they are converted,
//! - and the incoming messages themselves: twice (WAL and database) their payload and row
//!   overhead, plus their reserve.
//!
//! A message is refused (AR "Storage full") when that sum would pass the budget. What the
//! background writers (convert stage, delivery recorder, purge) commit after a check is seen
//! by the next one; so the on-disk total can pass `max_bytes` by at most what they write
//! between two ingest commits, until the next checkpoint (see README, "Disk budget").

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::disk::Footprint;

/// Per-row cost beyond the payload (metadata, index entries).
pub(crate) const ROW_OVERHEAD: u64 = 256;
/// Bundles, report and delivery bookkeeping of a message, WAL copy included, as a multiple of
/// its sealed payload.
pub(crate) const CONVERT_FACTOR: u64 = 30;
/// The unconverted rows are summed again this often (in between: the last sum + what was
/// stored since, which only over-estimates) — and, before a message is refused, whenever
/// another connection (the convert stage) committed since the last sum.
const RESCAN_EVERY: Duration = Duration::from_secs(2);

/// Bytes counted against the budget at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Live database pages, bytes.
    pub(crate) live: u64,
    pub(crate) files: Footprint,
    /// Held for the bundles of rows not converted yet.
    pub(crate) reserve: u64,
}

impl Usage {
    pub(crate) fn used(&self) -> u64 {
        self.live + self.files.wal + self.files.shm + self.reserve
    }
}

/// The writer's view of the budget.
pub struct Budget {
    path: PathBuf,
    /// Sealed payload bytes of unconverted rows at the last scan, when it ran, and the
    /// database's `data_version` then (it changes when another connection commits).
    scanned: Option<(u64, Instant, i64)>,
    /// Sealed payload bytes stored since the last scan.
    stored_since: u64,
}

impl Budget {
    pub(crate) fn new(path: PathBuf) -> Budget {
        Budget { path, scanned: None, stored_since: 0 }
    }

    /// What a message with this sealed payload costs when it arrives.
    pub(crate) fn cost(sealed_len: usize) -> u64 {
        let sealed = sealed_len as u64;
        2 * (sealed + ROW_OVERHEAD) + sealed * CONVERT_FACTOR
    }

    /// Usage now. `near_full`: a message is about to be refused; if another connection
    /// committed since the last sum, sum the unconverted rows again rather than trust the
    /// running over-estimate.
    pub(crate) fn usage(&mut self, conn: &Connection, near_full: bool) -> rusqlite::Result<Usage> {
        let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let due = match self.scanned {
            None => true,
            Some((_, at, seen)) => at.elapsed() >= RESCAN_EVERY || (near_full && seen != version),
        };
        if due {
            let unconverted: f64 = conn.query_row(
                "SELECT total(length(payload)) FROM journal INDEXED BY journal_received WHERE state = 'received'",
                [],
                |r| r.get(0),
            )?;
            self.scanned = Some((unconverted as u64, Instant::now(), version));
            self.stored_since = 0;
        }
        let unconverted = self.scanned.map_or(0, |(b, _, _)| b) + self.stored_since;
        Ok(Usage { live: live_bytes(conn)?, files: Footprint::of(&self.path), reserve: unconverted * CONVERT_FACTOR })
    }

    /// Records sealed payload bytes just committed (not converted yet).
    pub(crate) fn stored(&mut self, sealed_bytes: u64) {
        self.stored_since += sealed_bytes;
    }
}

/// Bytes the database holds in live pages (free pages are reusable and not counted).
pub(crate) fn live_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::{self, Synchronous};
    use crate::store::state::JournalState;

    #[test]
    fn usage_counts_live_pages_wal_shm_and_the_unconverted_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut conn = db::open(&path, None, Synchronous::Full).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        let mut budget = Budget::new(path.clone());
        let empty = budget.usage(&conn, false).unwrap();
        assert_eq!(empty.reserve, 0);
        for (i, state) in [JournalState::Received, JournalState::Received, JournalState::Converted].iter().enumerate() {
            conn.execute(
                "INSERT INTO journal (received_at, listener, sender, control_id, message_type, payload_hash, state, payload)
                 VALUES (0, 'l', 's', ?1, 'ADT^A01', x'00', ?2, zeroblob(3000))",
                rusqlite::params![format!("C{i}"), state],
            )
            .unwrap();
        }
        // The running estimate: nothing stored through the writer yet, no rescan before 2 s.
        assert_eq!(budget.usage(&conn, false).unwrap().reserve, 0);
        budget.stored(500);
        assert_eq!(budget.usage(&conn, false).unwrap().reserve, 500 * CONVERT_FACTOR);
        // Near full: another connection wrote since the last sum, so the rows are summed
        // again; only the two received ones count.
        let other = db::open(&path, None, Synchronous::Full).unwrap();
        other.execute("UPDATE journal SET state = ?1 WHERE control_id = 'C0'", [JournalState::Received]).unwrap();
        let u = budget.usage(&conn, true).unwrap();
        assert_eq!(u.reserve, 6000 * CONVERT_FACTOR);
        let files = Footprint::of(&path);
        assert!(u.files.wal > 0 && u.files.shm > 0, "{u:?}");
        assert_eq!(u.files, files);
        assert_eq!(u.used(), u.live + files.wal + files.shm + u.reserve);
        assert!(u.live > empty.live);
        assert_eq!(Budget::cost(1000), 2 * (1000 + ROW_OVERHEAD) + 1000 * CONVERT_FACTOR);
        drop((conn, other));
    }
}
