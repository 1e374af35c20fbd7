//! The journal's rows as ingest writes them.

use rusqlite::{params, Connection};

/// A new journal row (state `received`): metadata in clear, payload sealed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewRow<'a> {
    /// Unix milliseconds.
    pub(crate) received_at: i64,
    pub(crate) listener: &'a str,
    /// MSH-3|MSH-4.
    pub(crate) sender: &'a str,
    /// MSH-10.
    pub(crate) control_id: &'a str,
    pub(crate) message_type: &'a str,
    /// Keyed hash of PID-3, never the identifier.
    pub(crate) lane: Option<&'a str>,
    /// Keyed hash of the payload, for duplicates.
    pub(crate) payload_hash: &'a [u8],
    pub(crate) payload: &'a [u8],
}

/// Inserts a row in the caller's transaction; returns its sequence.
pub(crate) fn insert(conn: &Connection, row: &NewRow<'_>) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO journal (received_at, listener, sender, control_id, message_type, lane, payload_hash, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        row.received_at,
        row.listener,
        row.sender,
        row.control_id,
        row.message_type,
        row.lane,
        row.payload_hash,
        row.payload
    ])?;
    Ok(conn.last_insert_rowid())
}

/// What `gateway report` shows of a journal row: its metadata and conversion report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub control_id: String,
    pub message_type: String,
    pub state: String,
    /// The conversion report (sealed JSON); `None` before conversion or when it failed.
    pub report: Option<Vec<u8>>,
}

/// The report of journal row `seq`; `None` when there is no such row.
pub fn report(conn: &Connection, seq: i64) -> rusqlite::Result<Option<ReportRow>> {
    use rusqlite::OptionalExtension;
    conn.query_row("SELECT control_id, message_type, state, report FROM journal WHERE seq = ?1", [seq], |r| {
        Ok(ReportRow { control_id: r.get(0)?, message_type: r.get(1)?, state: r.get(2)?, report: r.get(3)? })
    })
    .optional()
}
