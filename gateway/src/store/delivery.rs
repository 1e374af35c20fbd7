//! Delivery state: the outbox rows the forwarder sends, each lane's persisted backoff
//! (`lane_state`), and the outcomes it records (outbox and journal row settled, dead letters).
//!
//! The reads are pinned to a partial `pending` index (`INDEXED BY`: SQLite refuses to run the
//! query rather than scan) or to a rowid range, so delivered rows are never visited; their
//! text is public so `benches/dequeue.rs` measures exactly these.
//!
//! Head columns, in this order: id, journal_seq, created_at, kind, entries, entries_done.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::state::{DeadLetterStage, JournalState, OutboxState};
use super::WriteGate;

/// A page of pending rows in journal order after a journal sequence: lane, journal_seq
/// (finding lanes to hold).
pub const PENDING_AFTER: &str = "SELECT lane, journal_seq FROM outbox INDEXED BY outbox_pending_message
     WHERE state = 'pending' AND journal_seq > ?1 ORDER BY journal_seq, id LIMIT ?2";

/// Rows the convert stage added after an id: lane, state, then the head columns.
pub const NEW_ROWS: &str = "SELECT lane, state, id, journal_seq, created_at, kind, entries, entries_done
     FROM outbox NOT INDEXED WHERE id > ?1 ORDER BY id LIMIT 1000";

/// Most rows one [`NEW_ROWS`] read returns.
pub(crate) const NEW_ROWS_PAGE: usize = 1000;

/// A lane's pending rows above an id, in order (its head is the first not already settled).
pub const LANE_PENDING: &str = "SELECT id, journal_seq, created_at, kind, entries, entries_done
     FROM outbox INDEXED BY outbox_pending WHERE state = 'pending' AND lane = ?1 AND id > ?2 ORDER BY id";

/// The pending parts of a message without a patient lane above an id, in order.
pub(crate) const MESSAGE_PENDING: &str = "SELECT id, journal_seq, created_at, kind, entries, entries_done
     FROM outbox INDEXED BY outbox_pending_message
     WHERE state = 'pending' AND journal_seq = ?1 AND lane IS NULL AND id > ?2 ORDER BY id";

/// A message's bundles in state ?2 and in state ?3 (the recorder, to settle the journal
/// row: pending and dead); a seek on the `(journal_seq, part)` unique index.
pub const MESSAGE_PARTS_LEFT: &str = "SELECT count(*) FILTER (WHERE state = ?2), count(*) FILTER (WHERE state = ?3)
     FROM outbox WHERE journal_seq = ?1";

/// An outbox row waiting to be sent (a lane's oldest is its head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) id: i64,
    pub(crate) journal_seq: i64,
    pub(crate) created_at: i64,
    /// Bundle type and entry count, stored beside the sealed bundle (`None` for rows written
    /// before the outbox kept them: those are opened to find out and never packed).
    pub(crate) shape: Option<Shape>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) batch: bool,
    pub(crate) entries: usize,
}

/// A row [`Outbox::new_rows`] found.
#[derive(Debug)]
pub(crate) struct NewRow {
    /// The patient lane key, `None` for a message without one.
    pub(crate) lane: Option<String>,
    /// Still to be sent (the convert stage may write rows already settled).
    pub(crate) pending: bool,
    pub(crate) head: Head,
}

/// Where a lane's rows are: a patient lane key, or the parts of one message without a lane.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LaneRows<'a> {
    Patient(&'a str),
    Message(i64),
}

/// The forwarder's reads of the outbox, on its own connection.
pub(crate) struct Outbox {
    conn: Connection,
}

impl Outbox {
    pub(crate) fn new(conn: Connection) -> Outbox {
        Outbox { conn }
    }

    /// The highest outbox id so far (0 when empty).
    pub(crate) fn last_id(&self) -> rusqlite::Result<i64> {
        self.conn.query_row("SELECT coalesce(max(id), 0) FROM outbox", [], |r| r.get(0))
    }

    /// The latest operator action (audit event id, 0 when none): a new one may have
    /// re-queued rows.
    pub(crate) fn last_audit_id(&self) -> rusqlite::Result<i64> {
        self.conn.prepare_cached("SELECT coalesce(max(id), 0) FROM audit")?.query_row([], |r| r.get(0))
    }

    /// Up to `limit` pending rows after journal sequence `after`, in journal order: (lane,
    /// journal_seq) ([`PENDING_AFTER`]).
    pub(crate) fn pending_after(&self, after: i64, limit: usize) -> rusqlite::Result<Vec<(Option<String>, i64)>> {
        let mut rows = Vec::with_capacity(limit);
        let mut stmt = self.conn.prepare_cached(PENDING_AFTER)?;
        let mut cursor = stmt.query(params![after, limit as i64])?;
        while let Some(r) = cursor.next()? {
            rows.push((r.get(0)?, r.get(1)?));
        }
        Ok(rows)
    }

    /// Up to [`NEW_ROWS_PAGE`] rows with an id above `after`, in id order ([`NEW_ROWS`]).
    pub(crate) fn new_rows(&self, after: i64) -> rusqlite::Result<Vec<NewRow>> {
        let mut rows = Vec::new();
        let mut stmt = self.conn.prepare_cached(NEW_ROWS)?;
        let mut cursor = stmt.query([after])?;
        while let Some(r) = cursor.next()? {
            let (head, _) = head_row(r, 2)?;
            let pending = r.get::<_, OutboxState>(1)? == OutboxState::Pending;
            rows.push(NewRow { lane: r.get(0)?, pending, head });
        }
        Ok(rows)
    }

    /// A lane's lowest pending row that `skip` does not rule out, with the entries of it
    /// settled by earlier attempts ([`LANE_PENDING`], [`MESSAGE_PENDING`]).
    pub(crate) fn first_pending(
        &self,
        lane: LaneRows,
        skip: impl Fn(i64) -> bool,
    ) -> rusqlite::Result<Option<(Head, Vec<usize>)>> {
        Ok(self.pending_in_lane(lane, 0, 1, skip)?.pop())
    }

    /// Up to `limit` of a lane's pending rows above id `after` that `skip` does not rule
    /// out, in order, each with the entries of it settled by earlier attempts.
    pub(crate) fn pending_in_lane(
        &self,
        lane: LaneRows,
        after: i64,
        limit: usize,
        skip: impl Fn(i64) -> bool,
    ) -> rusqlite::Result<Vec<(Head, Vec<usize>)>> {
        let sql = match lane {
            LaneRows::Patient(_) => LANE_PENDING,
            LaneRows::Message(_) => MESSAGE_PENDING,
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = match lane {
            LaneRows::Patient(key) => stmt.query(params![key, after])?,
            LaneRows::Message(seq) => stmt.query(params![seq, after])?,
        };
        let mut found = Vec::new();
        while found.len() < limit {
            let Some(r) = rows.next()? else { break };
            let row = head_row(r, 0)?;
            if !skip(row.0.id) {
                found.push(row);
            }
        }
        Ok(found)
    }

    /// A lane's persisted backoff: (not before, unix ms; failures in a row).
    pub(crate) fn lane_backoff(&self, lane: &str) -> rusqlite::Result<Option<(i64, i64)>> {
        self.conn
            .prepare_cached("SELECT next_attempt_at, failures FROM lane_state WHERE lane = ?1")?
            .query_row([lane], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    }

    /// The sealed bundle of row `id`, `None` if the row is gone or no longer pending.
    pub(crate) fn pending_bundle(&self, id: i64) -> rusqlite::Result<Option<Vec<u8>>> {
        let row: Option<(Vec<u8>, OutboxState)> = self
            .conn
            .prepare_cached("SELECT bundle, state FROM outbox WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional())?;
        Ok(row.and_then(|(sealed, state)| (state == OutboxState::Pending).then_some(sealed)))
    }
}

/// The head columns starting at column `at`.
fn head_row(r: &rusqlite::Row, at: usize) -> rusqlite::Result<(Head, Vec<usize>)> {
    let kind: Option<String> = r.get(at + 3)?;
    let entries: Option<i64> = r.get(at + 4)?;
    let shape = kind.zip(entries).map(|(k, n)| Shape { batch: k == "batch", entries: n.max(0) as usize });
    let done: Option<String> = r.get(at + 5)?;
    let settled = done.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default();
    Ok((Head { id: r.get(at)?, journal_seq: r.get(at + 1)?, created_at: r.get(at + 2)?, shape }, settled))
}

/// What to write for one outbox row.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) lane: String,
    pub(crate) id: i64,
    pub(crate) journal_seq: i64,
    pub(crate) outcome: Outcome,
}

#[derive(Debug)]
pub(crate) enum Outcome {
    /// Every entry is settled; the row is `dead` if any entry (now or before) was refused.
    /// `dead` holds the PHI-free reasons of the entries refused this time.
    Final { dead: Vec<String> },
    /// Send again at `due`: `settled` lists every entry settled so far; `last_error` is the
    /// failure class kept in `lane_state`.
    Retry { settled: Vec<usize>, dead: Vec<String>, due: i64, failures: u32, last_error: &'static str },
}

/// What one [`record`] transaction changed.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    /// Rows now `delivered`.
    pub(crate) delivered: u64,
    pub(crate) dead_letters: u64,
    /// Journal rows no longer pending (now `delivered` or `dead`).
    pub(crate) journal_done: i64,
}

/// Writes a batch of outcomes in one transaction, as a background writer of `gate`.
pub(crate) fn record(conn: &mut Connection, batch: &[Record], gate: &WriteGate) -> rusqlite::Result<Recorded> {
    let mut counts = Recorded::default();
    let now = super::now_ms();
    let _pass = gate.background();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for r in batch {
        let dead = match &r.outcome {
            Outcome::Final { dead } | Outcome::Retry { dead, .. } => dead,
        };
        if !dead.is_empty() {
            let mut reason = dead.join("; ");
            truncate_at_char(&mut reason, 500);
            super::dead_letters::add(&tx, r.journal_seq, DeadLetterStage::Deliver, &reason, now)?;
            counts.dead_letters += 1;
        }
        match &r.outcome {
            Outcome::Final { dead } => {
                let state: Option<OutboxState> = tx
                    .prepare_cached(
                        "UPDATE outbox SET state = CASE WHEN entries_dead + ?2 > 0 THEN ?3 ELSE ?4 END,
                             entries_dead = entries_dead + ?2, attempts = attempts + 1, entries_done = NULL
                         WHERE id = ?1 AND state = ?5 RETURNING state",
                    )?
                    .query_row(
                        params![
                            r.id,
                            dead.len() as i64,
                            OutboxState::Dead,
                            OutboxState::Delivered,
                            OutboxState::Pending
                        ],
                        |row| row.get(0),
                    )
                    .optional()?;
                if state == Some(OutboxState::Delivered) {
                    counts.delivered += 1;
                }
                tx.prepare_cached("DELETE FROM lane_state WHERE lane = ?1")?.execute([&r.lane])?;
                // The journal row is done when none of its bundles is pending any more.
                let (pending, dead): (i64, i64) = tx
                    .prepare_cached(MESSAGE_PARTS_LEFT)?
                    .query_row(params![r.journal_seq, OutboxState::Pending, OutboxState::Dead], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?;
                if pending == 0 {
                    let state = if dead > 0 { JournalState::Dead } else { JournalState::Delivered };
                    let changed = tx
                        .prepare_cached("UPDATE journal SET state = ?2 WHERE seq = ?1 AND state = ?3")?
                        .execute(params![r.journal_seq, state, JournalState::Converted])?;
                    if changed > 0 {
                        counts.journal_done += 1;
                    }
                }
            }
            Outcome::Retry { settled, dead, due, failures, last_error } => {
                let settled = (!settled.is_empty()).then(|| serde_json::to_string(settled).expect("indexes serialize"));
                tx.prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, entries_done = ?2, entries_dead = entries_dead + ?3
                     WHERE id = ?1 AND state = ?4",
                )?
                .execute(params![r.id, settled, dead.len() as i64, OutboxState::Pending])?;
                tx.prepare_cached(
                    "INSERT INTO lane_state (lane, next_attempt_at, failures, last_error) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (lane) DO UPDATE SET next_attempt_at = ?2, failures = ?3, last_error = ?4",
                )?
                .execute(params![r.lane, due, failures, last_error])?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::{self, Synchronous};

    /// A migrated journal in a temp folder, removed on drop.
    struct Journal {
        dir: tempfile::TempDir,
        conn: Connection,
    }

    impl Journal {
        fn new() -> Journal {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("j.db");
            let mut conn = db::open(&path, None, Synchronous::Normal).unwrap();
            db::migrate(&mut conn, &path).unwrap();
            Journal { dir, conn }
        }

        fn path(&self) -> std::path::PathBuf {
            self.dir.path().join("j.db")
        }

        /// A converted message on `lane` with `parts` bundles (`done`: entries_done of each).
        fn message(&self, lane: Option<&str>, parts: &[Option<&str>]) -> i64 {
            self.conn
                .execute(
                    "INSERT INTO journal (received_at, listener, sender, control_id, message_type, lane, payload_hash, state, payload)
                     VALUES (1, 'l', 's', 'c', 'ADT^A01', ?1, x'00', ?2, x'00')",
                    params![lane, JournalState::Converted],
                )
                .unwrap();
            let seq = self.conn.last_insert_rowid();
            for (i, done) in parts.iter().enumerate() {
                self.conn
                    .execute(
                        "INSERT INTO outbox (journal_seq, part, lane, created_at, bundle, kind, entries, entries_done)
                         VALUES (?1, ?2, ?3, 7, x'0102', 'batch', 3, ?4)",
                        params![seq, i as i64, lane, done],
                    )
                    .unwrap();
            }
            seq
        }

        fn column(&self, sql: &str) -> Vec<String> {
            self.conn.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        }

        fn reader(&self) -> Outbox {
            Outbox::new(db::open(&self.path(), None, Synchronous::Normal).unwrap())
        }
    }

    #[test]
    fn a_lanes_first_pending_row_skips_rows_awaiting_the_recorder_and_keeps_settled_entries() {
        let j = Journal::new();
        j.message(Some("A"), &[Some("[0,2]")]);
        let seq = j.message(None, &[None, None]);
        j.message(Some("A"), &[None]);
        let outbox = j.reader();
        let (head, settled) = outbox.first_pending(LaneRows::Patient("A"), |_| false).unwrap().unwrap();
        assert_eq!((head.id, head.created_at, settled), (1, 7, vec![0, 2]));
        assert_eq!(head.shape, Some(Shape { batch: true, entries: 3 }));
        let (head, _) = outbox.first_pending(LaneRows::Patient("A"), |id| id == 1).unwrap().unwrap();
        assert_eq!(head.id, 4, "row 1 awaits the recorder");
        let (head, _) = outbox.first_pending(LaneRows::Message(seq), |_| false).unwrap().unwrap();
        assert_eq!((head.id, head.journal_seq), (2, seq));
        assert!(outbox.first_pending(LaneRows::Patient("B"), |_| false).unwrap().is_none());
        let found: Vec<(Option<String>, i64)> = outbox.pending_after(1, 10).unwrap();
        assert_eq!(found, [(None, 2), (None, 2), (Some("A".into()), 3)], "journal order after seq 1");
        let new: Vec<(i64, bool)> = outbox.new_rows(2).unwrap().iter().map(|r| (r.head.id, r.pending)).collect();
        assert_eq!(new, [(3, true), (4, true)]);
        assert_eq!(outbox.last_id().unwrap(), 4);
    }

    #[test]
    fn recording_settles_rows_then_the_message_and_keeps_retry_state_per_lane() {
        let j = Journal::new();
        let seq = j.message(Some("A"), &[None, None]);
        let (mut conn, gate) = (db::open(&j.path(), None, Synchronous::Normal).unwrap(), WriteGate::default());
        let retry = Outcome::Retry { settled: vec![1], dead: vec![], due: 99, failures: 2, last_error: "5xx" };
        record(&mut conn, &[Record { lane: "A".into(), id: 1, journal_seq: seq, outcome: retry }], &gate).unwrap();
        let outbox = j.reader();
        assert_eq!(outbox.lane_backoff("A").unwrap(), Some((99, 2)));
        assert_eq!(outbox.first_pending(LaneRows::Patient("A"), |_| false).unwrap().unwrap().1, [1]);
        let first = Record { lane: "A".into(), id: 1, journal_seq: seq, outcome: Outcome::Final { dead: vec![] } };
        let counts = record(&mut conn, &[first], &gate).unwrap();
        assert_eq!((counts.delivered, counts.journal_done), (1, 0), "one part still pending");
        assert!(outbox.pending_bundle(1).unwrap().is_none(), "delivered: not sent again");
        assert_eq!(outbox.pending_bundle(2).unwrap(), Some(vec![1, 2]));
        assert_eq!(outbox.lane_backoff("A").unwrap(), None, "backoff cleared");
        let dead = Outcome::Final { dead: vec!["HTTP 422".into()] };
        let counts =
            record(&mut conn, &[Record { lane: "A".into(), id: 2, journal_seq: seq, outcome: dead }], &gate).unwrap();
        assert_eq!((counts.delivered, counts.dead_letters, counts.journal_done), (0, 1, 1), "dead: no longer pending");
        assert_eq!(j.column("SELECT state FROM outbox ORDER BY id"), ["delivered", "dead"]);
        assert_eq!(j.column("SELECT state FROM journal"), ["dead"]);
        assert_eq!(j.column("SELECT stage || ': ' || reason FROM dead_letter"), ["deliver: HTTP 422"]);
    }
}
