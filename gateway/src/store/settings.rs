//! Named values the store keeps about itself (migration 6), e.g. which key its sealed rows
//! need.

use rusqlite::{Connection, OptionalExtension};

/// The check value of the key the store's rows are sealed with (`Keys::check_value`).
pub(crate) const KEY_CHECK: &str = "key_check";

pub(crate) fn get(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| r.get(0)).optional()
}

pub(crate) fn put(conn: &Connection, name: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = ?2",
        [name, value],
    )?;
    Ok(())
}
