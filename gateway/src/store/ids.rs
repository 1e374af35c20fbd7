//! The forwarder's id map (migration 9): per resource — found by a keyed hash of its
//! `urn:uuid` placeholder, never by an identifier — the id the server gave it and the hash of
//! what the server last acknowledged, so later writes go to that id and unchanged resources
//! are not written again.

use rusqlite::{params, Connection, OptionalExtension};

use super::gate::WriteGate;

/// What the server acknowledged for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Known {
    /// `Kind/<id>` as the server named it; `None` when the server was never asked to name it
    /// (a conditional update of the generic profile).
    pub(crate) server_id: Option<String>,
    /// SHA-256 of the entry the server acknowledged.
    pub(crate) content: [u8; 32],
    /// Unix milliseconds of the acknowledgement.
    pub(crate) acked_at: i64,
}

/// The row keyed `key`, if any.
pub(crate) fn lookup(conn: &Connection, key: &[u8; 32]) -> rusqlite::Result<Option<Known>> {
    conn.prepare_cached("SELECT server_id, content, acked_at FROM server_resource WHERE key = ?1")?
        .query_row([&key[..]], |r| {
            let content: Vec<u8> = r.get(1)?;
            Ok(Known {
                server_id: r.get(0)?,
                content: content.as_slice().try_into().unwrap_or([0; 32]),
                acked_at: r.get(2)?,
            })
        })
        .optional()
}

/// A change to the map: remember (or replace) a row, or forget one.
pub(crate) enum Change {
    Remember([u8; 32], Known),
    Forget([u8; 32]),
}

/// Applies `changes` in one transaction, as a background writer.
pub(crate) fn apply(conn: &mut Connection, changes: &[Change], gate: &WriteGate) -> rusqlite::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let _pass = gate.background();
    let tx = conn.transaction()?;
    for change in changes {
        match change {
            Change::Remember(key, known) => {
                tx.prepare_cached(
                    "INSERT INTO server_resource (key, server_id, content, acked_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (key) DO UPDATE SET server_id = coalesce(excluded.server_id, server_id),
                         content = excluded.content, acked_at = excluded.acked_at",
                )?
                .execute(params![&key[..], known.server_id, &known.content[..], known.acked_at])?;
            }
            Change::Forget(key) => {
                tx.prepare_cached("DELETE FROM server_resource WHERE key = ?1")?.execute([&key[..]])?;
            }
        }
    }
    tx.commit()
}

/// Rows in the map.
#[cfg(test)]
pub(crate) fn count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM server_resource", [], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remember_keeps_a_known_server_id_and_forget_removes_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut conn = crate::store::db::open(&path, None, crate::store::Synchronous::Normal).unwrap();
        crate::store::db::migrate(&mut conn, &path).unwrap();
        let gate = WriteGate::default();
        let key = [7; 32];
        let first = Known { server_id: Some("Patient/a1".into()), content: [1; 32], acked_at: 10 };
        apply(&mut conn, &[Change::Remember(key, first.clone())], &gate).unwrap();
        assert_eq!(lookup(&conn, &key).unwrap(), Some(first));
        // A later acknowledgement without a name keeps the id, takes the new content.
        let later = Known { server_id: None, content: [2; 32], acked_at: 20 };
        apply(&mut conn, &[Change::Remember(key, later)], &gate).unwrap();
        let row = lookup(&conn, &key).unwrap().unwrap();
        assert_eq!((row.server_id.as_deref(), row.content, row.acked_at), (Some("Patient/a1"), [2; 32], 20));
        assert_eq!(count(&conn).unwrap(), 1);
        apply(&mut conn, &[Change::Forget(key)], &gate).unwrap();
        assert_eq!(lookup(&conn, &key).unwrap(), None);
    }
}
