//! The states a journal row and an outbox row move through, and the stage a dead letter
//! comes from, as the schema's `CHECK` constraints spell them (`db.rs`). Statements bind and
//! read them through these types, never as bare strings, except a query pinned to a partial
//! index (`INDEXED BY`): SQLite cannot plan it with a bound value, so it keeps the index's
//! literal (and refuses to prepare it if the literal is not the index's). A state bound where a
//! partial index could serve the `WHERE` other than by rowid makes SQLite plan the statement
//! again at every execution: fine for an operator's command, not for a stage's loop.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// Where a journal row stands: `received` (journaled, ACKed), `converted` (its bundles are in
/// the outbox), `delivered` (none of its bundles is pending), `dead` (in dead letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JournalState {
    Received,
    Converted,
    Delivered,
    Dead,
}

/// Where an outbox row (one bundle) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxState {
    Pending,
    Delivered,
    Dead,
}

/// The stage that dead-lettered a message: conversion, or delivery of one of its bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DeadLetterStage {
    Convert,
    Deliver,
}

impl JournalState {
    pub(crate) const ALL: [JournalState; 4] =
        [JournalState::Received, JournalState::Converted, JournalState::Delivered, JournalState::Dead];

    /// The text the `state` column holds.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            JournalState::Received => "received",
            JournalState::Converted => "converted",
            JournalState::Delivered => "delivered",
            JournalState::Dead => "dead",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<JournalState> {
        JournalState::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl OutboxState {
    pub(crate) const ALL: [OutboxState; 3] = [OutboxState::Pending, OutboxState::Delivered, OutboxState::Dead];

    /// The text the `state` column holds.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::Dead => "dead",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<OutboxState> {
        OutboxState::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl DeadLetterStage {
    pub(crate) const ALL: [DeadLetterStage; 2] = [DeadLetterStage::Convert, DeadLetterStage::Deliver];

    /// The text the `stage` column holds.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            DeadLetterStage::Convert => "convert",
            DeadLetterStage::Deliver => "deliver",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<DeadLetterStage> {
        DeadLetterStage::ALL.into_iter().find(|stage| stage.as_str() == s)
    }
}

/// The state a column holds that none of ours spells (a row written outside the gateway).
#[derive(Debug, thiserror::Error)]
#[error("unknown {column} {value:?}")]
struct UnknownState {
    /// The table and column, e.g. `journal state`.
    column: &'static str,
    value: String,
}

/// Reads a state column's text through `parse`.
fn from_column<T>(value: ValueRef<'_>, column: &'static str, parse: fn(&str) -> Option<T>) -> FromSqlResult<T> {
    let text = value.as_str()?;
    parse(text).ok_or_else(|| FromSqlError::Other(Box::new(UnknownState { column, value: text.to_string() })))
}

impl ToSql for JournalState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for JournalState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        from_column(value, "journal state", JournalState::parse)
    }
}

impl ToSql for OutboxState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for OutboxState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        from_column(value, "outbox state", OutboxState::parse)
    }
}

impl ToSql for DeadLetterStage {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for DeadLetterStage {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        from_column(value, "dead-letter stage", DeadLetterStage::parse)
    }
}

impl fmt::Display for JournalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for OutboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DeadLetterStage {
    // `pad`: the dead-letter list prints it in a column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db;

    /// A migrated store in its own folder, removed on drop.
    fn store() -> (tempfile::TempDir, rusqlite::Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut conn = db::open(&path, None, db::Synchronous::Full).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        (dir, conn)
    }

    #[test]
    fn every_state_is_one_the_schema_accepts_and_reads_back_as_itself() {
        let (_dir, conn) = store();
        for state in JournalState::ALL {
            conn.execute(
                "INSERT INTO journal (received_at, listener, sender, control_id, message_type, payload_hash, state, payload)
                 VALUES (0, 'l', 'A|B', 'C', 'ADT^A01', x'00', ?1, x'00')",
                [state],
            )
            .unwrap();
            let seq = conn.last_insert_rowid();
            let back: JournalState =
                conn.query_row("SELECT state FROM journal WHERE seq = ?1", [seq], |r| r.get(0)).unwrap();
            assert_eq!(back, state);
            for (part, outbox) in OutboxState::ALL.into_iter().enumerate() {
                conn.execute(
                    "INSERT INTO outbox (journal_seq, part, created_at, state, bundle) VALUES (?1, ?2, 0, ?3, x'00')",
                    rusqlite::params![seq, part as i64, outbox],
                )
                .unwrap();
                let back: OutboxState = conn
                    .query_row("SELECT state FROM outbox WHERE id = ?1", [conn.last_insert_rowid()], |r| r.get(0))
                    .unwrap();
                assert_eq!(back, outbox);
            }
            for stage in DeadLetterStage::ALL {
                conn.execute(
                    "INSERT INTO dead_letter (journal_seq, stage, reason, created_at) VALUES (?1, ?2, 'r', 0)",
                    rusqlite::params![seq, stage],
                )
                .unwrap();
                let back: DeadLetterStage = conn
                    .query_row("SELECT stage FROM dead_letter WHERE id = ?1", [conn.last_insert_rowid()], |r| r.get(0))
                    .unwrap();
                assert_eq!(back, stage);
            }
        }
    }

    #[test]
    fn a_state_none_of_ours_spells_is_an_error_naming_it() {
        let (_dir, conn) = store();
        let read = |text: &str| conn.query_row("SELECT ?1", [text], |r| r.get::<_, JournalState>(0));
        assert_eq!(read("dead").unwrap(), JournalState::Dead);
        let e = read("Dead").unwrap_err().to_string();
        assert!(e.contains("unknown journal state \"Dead\""), "{e}");
        let e = conn.query_row("SELECT 'sent'", [], |r| r.get::<_, OutboxState>(0)).unwrap_err().to_string();
        assert!(e.contains("unknown outbox state \"sent\""), "{e}");
        assert!(conn.query_row("SELECT 1", [], |r| r.get::<_, OutboxState>(0)).is_err(), "not text");
        let e = conn.query_row("SELECT 'ingest'", [], |r| r.get::<_, DeadLetterStage>(0)).unwrap_err().to_string();
        assert!(e.contains("unknown dead-letter stage \"ingest\""), "{e}");
    }

    #[test]
    fn a_stage_pads_to_the_width_of_its_column() {
        assert_eq!(format!("[{:<9}]", DeadLetterStage::Convert), "[convert  ]");
    }
}
