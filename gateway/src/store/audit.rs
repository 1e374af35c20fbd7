//! The audit trail: who looked at or acted on which dead letter, and when. Append-only:
//! triggers (migration 3) abort any UPDATE or DELETE on the table, and nothing in the
//! gateway offers to change it.

use rusqlite::{params, Connection};

/// What an operator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Decrypted and displayed the message.
    Show,
    /// Re-queued it.
    Replay,
    /// Deleted the dead letter.
    Purge,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Show => "show",
            Action::Replay => "replay",
            Action::Purge => "purge",
        }
    }
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub dead_letter_id: i64,
    pub journal_seq: i64,
}

/// Appends an event in the caller's transaction (or autocommit); returns its id. The action
/// it records must not happen if this fails.
pub fn record(conn: &Connection, actor: &str, action: Action, dead_letter_id: i64, journal_seq: i64) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO audit (at, actor, action, dead_letter_id, journal_seq) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now_ms(), actor, action.as_str(), dead_letter_id, journal_seq],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The most recent events, newest first.
pub fn recent(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<Event>> {
    let mut stmt = conn.prepare(
        "SELECT id, at, actor, action, dead_letter_id, journal_seq FROM audit ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(Event {
            id: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            dead_letter_id: r.get(4)?,
            journal_seq: r.get(5)?,
        })
    })?;
    rows.collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db;

    #[test]
    fn events_are_append_only() {
        let dir = std::env::temp_dir().join(format!("gw-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("j.db");
        let mut c = db::open(&path, None, db::Synchronous::Full).unwrap();
        db::migrate(&mut c, &path).unwrap();
        let id = record(&c, "alice", Action::Show, 7, 42).unwrap();
        let e = &recent(&c, 10).unwrap()[0];
        assert_eq!((e.id, e.actor.as_str(), e.action.as_str(), e.dead_letter_id, e.journal_seq), (id, "alice", "show", 7, 42));
        assert!(e.at > 0);
        let err = c.execute("UPDATE audit SET actor = 'mallory'", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let err = c.execute("DELETE FROM audit", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        assert_eq!(recent(&c, 10).unwrap()[0].actor, "alice");
        drop(c);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
