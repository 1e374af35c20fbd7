//! The sink's own SQLite database (`<sink dir>/fhir.db`) and every statement run on it. This
//! is a stand-in FHIR server's store, not the journal: the journal's SQL lives in `store/`.
//!
//! `resource` holds the current version of each resource (`seq` keeps the order of first
//! creation, for exports); `identifier` indexes each resource's `identifier[]` by
//! (type, value, system), so a conditional request is one index lookup, O(log n).

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

/// The database file inside the sink folder.
pub const FILE: &str = "fhir.db";

/// Schema versions, applied in order and recorded in `PRAGMA user_version`.
const MIGRATIONS: &[&str] = &["CREATE TABLE resource (
         seq     INTEGER PRIMARY KEY,
         type    TEXT NOT NULL,
         id      TEXT NOT NULL,
         version INTEGER NOT NULL,
         json    TEXT NOT NULL,
         UNIQUE (type, id)
     );
     CREATE TABLE identifier (
         type   TEXT NOT NULL,
         system TEXT NOT NULL,
         value  TEXT NOT NULL,
         id     TEXT NOT NULL
     );
     CREATE INDEX identifier_lookup ON identifier (type, value, system, id);
     CREATE INDEX identifier_owner ON identifier (type, id);"];

/// A stored resource: its current version and JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub version: i64,
    pub json: String,
}

/// Opening the database failed; the path names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("{path}: schema version {found} is newer than this gateway knows ({known})")]
    TooNew { path: String, found: usize, known: usize },
    #[error("{path}: cannot create the folder: {source}")]
    Folder { path: String, source: std::io::Error },
    #[error("{path} does not exist (nothing delivered to the sink yet?)")]
    Missing { path: String },
}

/// Opens (creating when `write`) the database in `dir`: WAL, `synchronous=FULL` — the gateway
/// marks a message delivered once the sink answers, so an answered write must survive a crash.
pub fn open(dir: &Path, write: bool) -> Result<Connection, OpenError> {
    let path = dir.join(FILE);
    let name = path.display().to_string();
    if !write && !path.exists() {
        return Err(OpenError::Missing { path: name });
    }
    let err = |source| OpenError::Sqlite { path: name.clone(), source };
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(&path, flags).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
    if version > MIGRATIONS.len() {
        return Err(OpenError::TooNew { path: name, found: version, known: MIGRATIONS.len() });
    }
    if write {
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())).map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        migrate(&mut conn, version).map_err(err)?;
    }
    Ok(conn)
}

fn migrate(conn: &mut Connection, version: usize) -> rusqlite::Result<()> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// The current version of `type/id`.
pub fn get(conn: &Connection, kind: &str, id: &str) -> rusqlite::Result<Option<Stored>> {
    conn.prepare_cached("SELECT version, json FROM resource WHERE type = ?1 AND id = ?2")?
        .query_row(params![kind, id], |r| Ok(Stored { version: r.get(0)?, json: r.get(1)? }))
        .optional()
}

/// Ids of `kind` resources (possibly repeated) with an identifier of `value` (any value when `None`) in `system`
/// (any system when `None`; `Some("")` is "no system").
pub fn find_by_identifier(
    conn: &Connection,
    kind: &str,
    system: Option<&str>,
    value: Option<&str>,
) -> rusqlite::Result<Vec<String>> {
    // INDEXED BY: without statistics SQLite may prefer walking identifier_owner in id order
    // (no sort for a DISTINCT), which reads every identifier of the type: O(n) per lookup.
    let (sql, args): (&str, Vec<&str>) = match (system, value) {
        (Some(s), Some(v)) => (
            "SELECT id FROM identifier INDEXED BY identifier_lookup WHERE type = ?1 AND value = ?2 AND system = ?3",
            vec![kind, v, s],
        ),
        (None, Some(v)) => {
            ("SELECT id FROM identifier INDEXED BY identifier_lookup WHERE type = ?1 AND value = ?2", vec![kind, v])
        }
        (Some(s), None) => ("SELECT id FROM identifier WHERE type = ?1 AND system = ?2", vec![kind, s]),
        (None, None) => ("SELECT id FROM resource WHERE type = ?1", vec![kind]),
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get(0))?;
    rows.collect()
}

/// Inserts a new resource.
pub fn insert(conn: &Connection, kind: &str, id: &str, version: i64, json: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO resource (type, id, version, json) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![kind, id, version, json])
        .map(drop)
}

/// Replaces the current version of an existing resource (its `seq` stays).
pub fn update(conn: &Connection, kind: &str, id: &str, version: i64, json: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE resource SET version = ?3, json = ?4 WHERE type = ?1 AND id = ?2")?
        .execute(params![kind, id, version, json])
        .map(drop)
}

/// Deletes a resource and its identifiers; false when there was none.
pub fn delete(conn: &Connection, kind: &str, id: &str) -> rusqlite::Result<bool> {
    set_identifiers(conn, kind, id, &[])?;
    let n = conn.prepare_cached("DELETE FROM resource WHERE type = ?1 AND id = ?2")?.execute(params![kind, id])?;
    Ok(n > 0)
}

/// Makes `identifiers` (system, value) the index entries of `kind/id`.
pub fn set_identifiers(
    conn: &Connection,
    kind: &str,
    id: &str,
    identifiers: &[(String, String)],
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM identifier WHERE type = ?1 AND id = ?2")?.execute(params![kind, id])?;
    let mut insert = conn.prepare_cached("INSERT INTO identifier (type, system, value, id) VALUES (?1, ?2, ?3, ?4)")?;
    for (system, value) in identifiers {
        insert.execute(params![kind, system, value, id])?;
    }
    Ok(())
}

/// The resource types present, sorted.
pub fn types(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT type FROM resource ORDER BY type")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// How many resources of `kind` are stored.
pub fn count(conn: &Connection, kind: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT count(*) FROM resource WHERE type = ?1")?.query_row([kind], |r| r.get(0))
}

/// Calls `f` with the JSON of every `kind` resource, in the order they were first created.
pub fn each_json(
    conn: &Connection,
    kind: &str,
    f: &mut dyn FnMut(&str) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let mut stmt = conn.prepare_cached("SELECT json FROM resource WHERE type = ?1 ORDER BY seq")?;
    let mut rows = stmt.query([kind])?;
    while let Some(row) = rows.next()? {
        let json: String = row.get(0)?;
        f(&json)?;
    }
    Ok(())
}

/// Reading resources failed: the database, the stored JSON, or where they were written to.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("a stored resource is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every statement of a write is an index search on its whole key, never a scan nor a
    /// search on the type alone (which reads every row of the type): what keeps a Bundle's
    /// cost flat however much the sink holds. Without INDEXED BY, SQLite searched the
    /// identifiers by (type) on identifier_owner to spare a sort for DISTINCT.
    #[test]
    fn writes_and_lookups_search_indexes_on_their_whole_key() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path(), true).unwrap();
        let statements = [
            ("SELECT version, json FROM resource WHERE type = 'P' AND id = 'x'", "(type=? AND id=?)"),
            (
                "SELECT id FROM identifier INDEXED BY identifier_lookup WHERE type = 'P' AND value = 'v' AND system = 's'",
                "(type=? AND value=? AND system=?)",
            ),
            ("SELECT id FROM identifier INDEXED BY identifier_lookup WHERE type = 'P' AND value = 'v'", "(type=? AND value=?)"),
            ("DELETE FROM identifier WHERE type = 'P' AND id = 'x'", "(type=? AND id=?)"),
            ("UPDATE resource SET version = 2, json = '{}' WHERE type = 'P' AND id = 'x'", "(type=? AND id=?)"),
            ("DELETE FROM resource WHERE type = 'P' AND id = 'x'", "(type=? AND id=?)"),
        ];
        for (sql, key) in statements {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt.query_map([], |r| r.get(3)).unwrap().map(Result::unwrap).collect();
            assert!(plan.len() == 1 && plan[0].starts_with("SEARCH ") && plan[0].ends_with(key), "{sql}: {plan:?}");
        }
    }
}
