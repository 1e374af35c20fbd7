//! The states a journal row and an outbox row move through, as the schema's `CHECK`
//! constraints spell them (`db.rs`). Bound and read back through these types, never as bare
//! strings; SQL that a partial index must match keeps the literal in its text.

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

impl JournalState {
    pub const ALL: [JournalState; 4] =
        [JournalState::Received, JournalState::Converted, JournalState::Delivered, JournalState::Dead];

    /// The text the `state` column holds.
    pub const fn as_str(self) -> &'static str {
        match self {
            JournalState::Received => "received",
            JournalState::Converted => "converted",
            JournalState::Delivered => "delivered",
            JournalState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<JournalState> {
        JournalState::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl OutboxState {
    pub const ALL: [OutboxState; 3] = [OutboxState::Pending, OutboxState::Delivered, OutboxState::Dead];

    /// The text the `state` column holds.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<OutboxState> {
        OutboxState::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// The state a column holds that none of ours spells (a row written outside the gateway).
#[derive(Debug, thiserror::Error)]
#[error("unknown {table} state {value:?}")]
struct UnknownState {
    table: &'static str,
    value: String,
}

/// Reads a state column's text through `parse`.
fn from_column<T>(value: ValueRef<'_>, table: &'static str, parse: fn(&str) -> Option<T>) -> FromSqlResult<T> {
    let text = value.as_str()?;
    parse(text).ok_or_else(|| FromSqlError::Other(Box::new(UnknownState { table, value: text.to_string() })))
}

impl ToSql for JournalState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for JournalState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        from_column(value, "journal", JournalState::parse)
    }
}

impl ToSql for OutboxState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for OutboxState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        from_column(value, "outbox", OutboxState::parse)
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
    }
}
