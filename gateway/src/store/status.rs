//! Read-only figures for the status page and the alerts: the undelivered queue, dead letters
//! and each listener's last stored message. Each query reads only partial indexes of pending
//! rows or small tables, so it is cheap to run every few seconds beside the writer (WAL: a
//! reader never blocks it).

use rusqlite::{Connection, OptionalExtension};

/// Messages not yet delivered (received, or converted with bundles pending) and the
/// reception time of the oldest of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Undelivered {
    pub(crate) depth: i64,
    /// Unix ms; `None` when nothing waits.
    pub(crate) oldest_received_ms: Option<i64>,
}

pub(crate) fn undelivered(conn: &Connection) -> rusqlite::Result<Undelivered> {
    let (received, first_received): (i64, Option<i64>) =
        conn.query_row("SELECT count(*), min(seq) FROM journal WHERE state = 'received'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let (pending, first_pending): (i64, Option<i64>) = conn.query_row(
        "SELECT count(DISTINCT journal_seq), min(journal_seq) FROM outbox WHERE state = 'pending'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    // Sequence numbers grow with reception time: the smaller one is the older message.
    let oldest_seq = match (first_received, first_pending) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let oldest_received_ms = match oldest_seq {
        Some(seq) => {
            conn.query_row("SELECT received_at FROM journal WHERE seq = ?1", [seq], |r| r.get(0)).optional()?
        }
        None => None,
    };
    Ok(Undelivered { depth: received + pending, oldest_received_ms })
}

/// Bytes of the database's live pages (`page_count − freelist_count`: free pages are reused
/// before the file grows), as the disk budget counts them.
pub(crate) fn live_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pragma = |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0));
    let pages = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
    Ok(pages.max(0) as u64 * pragma("page_size")?.max(0) as u64)
}

/// A dead letter as the status page shows it: no payload, no control ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetterBrief {
    pub(crate) id: i64,
    pub(crate) created_at_ms: i64,
    /// PHI-free by construction (codes, segment IDs, error kinds).
    pub(crate) reason: String,
}

/// How many dead letters there are, and the newest `newest` of them (newest first).
pub(crate) fn dead_letter_summary(conn: &Connection, newest: usize) -> rusqlite::Result<(i64, Vec<DeadLetterBrief>)> {
    let count = conn.query_row("SELECT count(*) FROM dead_letter", [], |r| r.get(0))?;
    let mut stmt = conn.prepare("SELECT id, created_at, reason FROM dead_letter ORDER BY id DESC LIMIT ?1")?;
    let rows = stmt.query_map([newest as i64], |r| {
        Ok(DeadLetterBrief { id: r.get(0)?, created_at_ms: r.get(1)?, reason: r.get(2)? })
    })?;
    Ok((count, rows.collect::<rusqlite::Result<_>>()?))
}

/// The reception time of each listener's newest message still in the journal (once at start:
/// it reads the whole journal).
pub(crate) fn last_received_by_listener(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare("SELECT listener, max(received_at) FROM journal GROUP BY listener")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db;

    fn insert(conn: &Connection, seq: i64, at: i64, listener: &str, state: &str) {
        conn.execute(
            "INSERT INTO journal (seq, received_at, listener, sender, control_id, message_type, payload_hash, state, payload)
             VALUES (?1, ?2, ?3, 's', 'c', 'ADT^A01', x'00', ?4, x'00')",
            rusqlite::params![seq, at, listener, state],
        )
        .unwrap();
    }

    #[test]
    fn counts_only_pending_messages_and_finds_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut conn = db::open(&path, None, db::Synchronous::Full).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        assert_eq!(undelivered(&conn).unwrap(), Undelivered::default());
        insert(&conn, 1, 100, "adt", "delivered");
        insert(&conn, 2, 200, "adt", "converted");
        insert(&conn, 3, 300, "lab", "received");
        insert(&conn, 4, 400, "lab", "dead");
        for (part, state) in [(0, "pending"), (1, "pending")] {
            conn.execute(
                "INSERT INTO outbox (journal_seq, part, created_at, state, bundle) VALUES (2, ?1, 250, ?2, x'00')",
                rusqlite::params![part, state],
            )
            .unwrap();
        }
        assert_eq!(undelivered(&conn).unwrap(), Undelivered { depth: 2, oldest_received_ms: Some(200) });
        conn.execute(
            "INSERT INTO dead_letter (journal_seq, stage, reason, created_at) VALUES (4, 'deliver', 'http 400', 500)",
            [],
        )
        .unwrap();
        let (n, newest) = dead_letter_summary(&conn, 5).unwrap();
        assert_eq!((n, newest[0].reason.as_str(), newest[0].created_at_ms), (1, "http 400", 500));
        assert!(live_bytes(&conn).unwrap() >= 4096);
        let mut last = last_received_by_listener(&conn).unwrap();
        last.sort();
        assert_eq!(last, [("adt".to_string(), 200), ("lab".to_string(), 400)]);
    }
}
