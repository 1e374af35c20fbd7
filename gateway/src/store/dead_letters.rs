//! Dead letters and what an operator does with them (`gateway deadletter`): read them, and
//! move their message back into the pipeline (replay) or out of it (purge). Each function is
//! one statement; the caller holds the transaction, so a replay or purge and its audit events
//! commit together.

use rusqlite::{params, Connection, OptionalExtension};

use super::state::{DeadLetterStage, JournalState, OutboxState};

/// The reason of a message kept though the converter has no map for its type (a listener's
/// `store_unsupported`), given at ingest and again when a replay fails the same way, so the
/// dead letter still says "unsupported" after `gateway deadletter replay`. `message_type` is a
/// metrics label (PHI-free), `code` the HL7 error code (200 or 201).
pub(crate) fn unsupported_reason(message_type: &str, code: u16) -> String {
    format!("unsupported: no converter for message type {message_type} ({code})")
}

/// A dead letter and the PHI-free columns of its journal row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetter {
    pub(crate) id: i64,
    pub(crate) journal_seq: i64,
    pub(crate) stage: DeadLetterStage,
    pub(crate) reason: String,
    /// Unix milliseconds.
    pub(crate) created_at: i64,
    /// `None` when the journal row is gone.
    pub(crate) control_id: Option<String>,
    pub(crate) message_type: Option<String>,
}

const SELECT: &str = "SELECT d.id, d.journal_seq, d.stage, d.reason, d.created_at, j.control_id, j.message_type
     FROM dead_letter d LEFT JOIN journal j ON j.seq = d.journal_seq";

/// Records why journal row `seq` failed at `stage` (`reason` PHI-free). A dead letter of the
/// same message and stage that was replayed becomes a dead letter again under its own id, so
/// an operator's `purge <id>` after a replay that failed again names the same dead letter.
pub(crate) fn add(
    conn: &Connection,
    seq: i64,
    stage: DeadLetterStage,
    reason: &str,
    now: i64,
) -> rusqlite::Result<i64> {
    let reused: Option<i64> = conn
        .prepare_cached(
            "UPDATE dead_letter SET reason = ?3, created_at = ?4, replayed_at = NULL
             WHERE id = (SELECT min(id) FROM dead_letter
                         WHERE journal_seq = ?1 AND stage = ?2 AND replayed_at IS NOT NULL)
             RETURNING id",
        )?
        .query_row(params![seq, stage, reason, now], |r| r.get(0))
        .optional()?;
    if let Some(id) = reused {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO dead_letter (journal_seq, stage, reason, created_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![seq, stage, reason, now])?;
    Ok(conn.last_insert_rowid())
}

/// A replay: the dead letter stays (hidden from the list) until its message fails again.
pub(crate) fn mark_replayed(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE dead_letter SET replayed_at = ?2 WHERE id = ?1", params![id, now])?;
    Ok(())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: r.get(0)?,
        journal_seq: r.get(1)?,
        stage: r.get(2)?,
        reason: r.get(3)?,
        created_at: r.get(4)?,
        control_id: r.get(5)?,
        message_type: r.get(6)?,
    })
}

/// All dead letters, oldest first (not those replayed and not failed again).
pub(crate) fn all(conn: &Connection) -> rusqlite::Result<Vec<DeadLetter>> {
    let mut stmt = conn.prepare(&format!("{SELECT} WHERE d.replayed_at IS NULL ORDER BY d.id"))?;
    let rows = stmt.query_map([], row)?;
    rows.collect()
}

/// One dead letter, if there is one with this id (not while a replay of it is pending).
pub(crate) fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<DeadLetter>> {
    conn.query_row(&format!("{SELECT} WHERE d.id = ?1 AND d.replayed_at IS NULL"), [id], row).optional()
}

/// Ids of the dead letters of journal row `seq` (a message whose bundles failed several
/// times has several), `stage` only if given; without a stage, replayed ones too (a purge
/// removes them all).
pub(crate) fn of_message(conn: &Connection, seq: i64, stage: Option<DeadLetterStage>) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare(
        "SELECT id FROM dead_letter WHERE journal_seq = ?1 AND (?2 IS NULL OR (stage = ?2 AND replayed_at IS NULL))
         ORDER BY id",
    )?;
    let rows = stmt.query_map(params![seq, stage], |r| r.get(0))?;
    rows.collect()
}

pub(crate) fn delete(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM dead_letter WHERE id = ?1", [id])?;
    Ok(())
}

/// The sealed HL7 message of journal row `seq`; `None` when the row is gone.
pub(crate) fn sealed_message(conn: &Connection, seq: i64) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row("SELECT payload FROM journal WHERE seq = ?1", [seq], |r| r.get(0)).optional()
}

/// The state of journal row `seq`; `None` when the row is gone.
pub(crate) fn journal_state(conn: &Connection, seq: i64) -> rusqlite::Result<Option<JournalState>> {
    conn.query_row("SELECT state FROM journal WHERE seq = ?1", [seq], |r| r.get(0)).optional()
}

/// How many outbox rows (bundles, in any state) journal row `seq` has.
pub(crate) fn bundles(conn: &Connection, seq: i64) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM outbox WHERE journal_seq = ?1", [seq], |r| r.get(0))
}

/// How many of journal row `seq`'s bundles are still pending.
pub(crate) fn pending_bundles(conn: &Connection, seq: i64) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM outbox WHERE journal_seq = ?1 AND state = ?2",
        params![seq, OutboxState::Pending],
        |r| r.get(0),
    )
}

/// A conversion failure's replay: the journal row back to `received`, for the convert stage.
pub(crate) fn requeue_for_conversion(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE journal SET state = ?2 WHERE seq = ?1", params![seq, JournalState::Received])?;
    Ok(())
}

/// A delivery failure's replay: journal row `seq`'s dead bundles back to `pending` with no
/// attempts (and no per-entry progress, where the schema has it), under the same outbox ids:
/// the forwarder orders a lane by id, so they keep their place. Returns how many.
pub(crate) fn requeue_dead_bundles(conn: &Connection, seq: i64) -> rusqlite::Result<usize> {
    let mut set = String::from("state = ?2, attempts = 0");
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('outbox')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if columns.iter().any(|c| c == "entries_dead") {
        set.push_str(", entries_dead = 0");
    }
    if columns.iter().any(|c| c == "entries_done") {
        set.push_str(", entries_done = NULL");
    }
    conn.execute(
        &format!("UPDATE outbox SET {set} WHERE journal_seq = ?1 AND state = ?3"),
        params![seq, OutboxState::Pending, OutboxState::Dead],
    )
}

/// After [`requeue_dead_bundles`]: a `dead` journal row back to `converted`, its bundles
/// being delivered again.
pub(crate) fn reopen_for_delivery(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE journal SET state = ?2 WHERE seq = ?1 AND state = ?3",
        params![seq, JournalState::Converted, JournalState::Dead],
    )?;
    Ok(())
}

/// A purge: deletes journal row `seq`'s bundles, in any state.
pub(crate) fn delete_bundles(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM outbox WHERE journal_seq = ?1", [seq])?;
    Ok(())
}

/// A purge: journal row `seq` becomes `dead` unless it was delivered (or is already dead).
pub(crate) fn mark_dead(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE journal SET state = ?2 WHERE seq = ?1 AND state IN (?3, ?4)",
        params![seq, JournalState::Dead, JournalState::Received, JournalState::Converted],
    )?;
    Ok(())
}
