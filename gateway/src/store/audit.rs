//! The audit trail: who looked at or acted on which dead letter, and when. Append-only:
//! triggers abort any UPDATE or DELETE on the table, and nothing in the gateway offers to
//! change it. Triggers can be dropped by whoever can write the file, so each event also
//! carries a hash chain (migration 6): its `hash` is SHA-256 of the previous event's hash and
//! its own fields, and [`verify`] finds the first edited, deleted or foreign event.
//!
//! `actor` is the name the operator claimed (`--actor`, `$SUDO_USER`); `uid`, `euid` and
//! `login_uid` are what the kernel says about the process that wrote the event.

use ring::digest;
use rusqlite::{params, Connection, OptionalExtension};

/// What an operator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Decrypted and displayed the message.
    Show,
    /// Re-queued it.
    Replay,
    /// Deleted the dead letter.
    Purge,
    /// Moved a row sealed under a lost key to dead letters (`gateway run --discard-undecryptable`).
    Discard,
    /// A USB provisioning stick applied or refused (`provision-applied`,
    /// `provision-refused-<why>`); the event's journal_seq holds the config_version.
    Provision(&'static str),
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Show => "show",
            Action::Replay => "replay",
            Action::Purge => "purge",
            Action::Discard => "discard-undecryptable",
            Action::Provision(code) => code,
        }
    }
}

/// Who the operating system says is acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Real uid (`getuid`).
    pub(crate) uid: u32,
    /// Effective uid (`geteuid`): whose rights the action used.
    pub(crate) euid: u32,
    /// The audit login uid (`/proc/self/loginuid`): the user who logged in, kept across
    /// `sudo` and `su`; `None` when the session has none (a service, a container).
    pub(crate) login_uid: Option<u32>,
}

impl Identity {
    pub(crate) fn current() -> Identity {
        let (uid, euid) = (rustix::process::getuid().as_raw(), rustix::process::geteuid().as_raw());
        let login_uid = std::fs::read_to_string("/proc/self/loginuid")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|&u| u != u32::MAX); // (uid_t)-1: not set
        Identity { uid, euid, login_uid }
    }
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) id: i64,
    /// Unix milliseconds.
    pub(crate) at: i64,
    /// The claimed name.
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) dead_letter_id: i64,
    pub(crate) journal_seq: i64,
    /// OS identity of the writer; `None` on events written before migration 6.
    pub(crate) uid: Option<i64>,
    pub(crate) euid: Option<i64>,
    pub(crate) login_uid: Option<i64>,
    /// The chain hash; `None` only on a row written outside the gateway.
    pub(crate) hash: Option<Vec<u8>>,
}

const COLUMNS: &str = "id, at, actor, action, dead_letter_id, journal_seq, uid, euid, login_uid, hash";

fn event(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        dead_letter_id: r.get(4)?,
        journal_seq: r.get(5)?,
        uid: r.get(6)?,
        euid: r.get(7)?,
        login_uid: r.get(8)?,
        hash: r.get(9)?,
    })
}

/// The hash an event must carry: SHA-256 over the previous event's hash and every field,
/// each length- or presence-prefixed so no two different events encode the same.
pub(crate) fn chain_hash(prev: &[u8], e: &Event) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"gateway audit chain v1");
    ctx.update(&(prev.len() as u32).to_be_bytes());
    ctx.update(prev);
    for n in [e.id, e.at, e.dead_letter_id, e.journal_seq] {
        ctx.update(&n.to_be_bytes());
    }
    for s in [&e.actor, &e.action] {
        ctx.update(&(s.len() as u32).to_be_bytes());
        ctx.update(s.as_bytes());
    }
    for n in [e.uid, e.euid, e.login_uid] {
        match n {
            Some(n) => {
                ctx.update(&[1]);
                ctx.update(&n.to_be_bytes());
            }
            None => ctx.update(&[0]),
        }
    }
    ctx.finish().as_ref().to_vec()
}

/// Appends an event in the caller's transaction (or autocommit), with this process's OS
/// identity; returns its id. The action it records must not happen if this fails.
pub(crate) fn record(
    conn: &Connection,
    actor: &str,
    action: Action,
    dead_letter_id: i64,
    journal_seq: i64,
) -> rusqlite::Result<i64> {
    record_as(conn, Identity::current(), actor, action, dead_letter_id, journal_seq)
}

/// [`record`] with a given identity. The id is chosen here (it is part of the hash): one past
/// both the last event and the table's AUTOINCREMENT sequence, so events deleted from the
/// end leave a gap [`verify`] reports; two writers racing for one id get a constraint error,
/// never a forked chain.
pub(crate) fn record_as(
    conn: &Connection,
    who: Identity,
    actor: &str,
    action: Action,
    dead_letter_id: i64,
    journal_seq: i64,
) -> rusqlite::Result<i64> {
    let last: Option<(i64, Option<Vec<u8>>)> = conn
        .query_row("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (last_id, prev) = last.unwrap_or((0, None));
    let id = last_id.max(sequence(conn)?) + 1;
    let mut e = Event {
        id,
        at: super::now_ms(),
        actor: actor.to_string(),
        action: action.as_str().to_string(),
        dead_letter_id,
        journal_seq,
        uid: Some(who.uid.into()),
        euid: Some(who.euid.into()),
        login_uid: who.login_uid.map(i64::from),
        hash: None,
    };
    e.hash = Some(chain_hash(prev.as_deref().unwrap_or_default(), &e));
    conn.execute(
        "INSERT INTO audit (id, at, actor, action, dead_letter_id, journal_seq, uid, euid, login_uid, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![e.id, e.at, e.actor, e.action, e.dead_letter_id, e.journal_seq, e.uid, e.euid, e.login_uid, e.hash],
    )?;
    Ok(id)
}

/// The audit table's AUTOINCREMENT high-water mark (0 before its first row).
fn sequence(conn: &Connection) -> rusqlite::Result<i64> {
    let seq: Option<i64> =
        conn.query_row("SELECT seq FROM sqlite_sequence WHERE name = 'audit'", [], |r| r.get(0)).optional()?;
    Ok(seq.unwrap_or(0))
}

#[cfg(test)]
/// The most recent events, newest first.
pub fn recent(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<Event>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY id DESC LIMIT ?1"))?;
    let rows = stmt.query_map([limit as i64], event)?;
    rows.collect()
}

/// Migration 6: gives the events written before it their chain hashes, in id order. Runs
/// while the append-only triggers are dropped (the migration recreates them).
pub(crate) fn chain_existing(conn: &Connection) -> rusqlite::Result<usize> {
    let events: Vec<Event> = conn
        .prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY id"))?
        .query_map([], event)?
        .collect::<Result<_, _>>()?;
    let mut prev = Vec::new();
    for e in &events {
        let hash = chain_hash(&prev, e);
        conn.execute("UPDATE audit SET hash = ?2 WHERE id = ?1", params![e.id, hash])?;
        prev = hash;
    }
    Ok(events.len())
}

/// Where the audit trail stops being trustworthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Break {
    #[error("audit event(s) {from} to {to} are missing (deleted)")]
    Missing { from: i64, to: i64 },
    #[error("audit event {id} has no chain hash (written outside the gateway)")]
    Unhashed { id: i64 },
    #[error("audit event {id} does not match its chain hash (edited, or inserted in place of another)")]
    Edited { id: i64 },
    #[error("audit event(s) after {last} are missing (deleted; the table's sequence is at {sequence})")]
    Truncated { last: i64, sequence: i64 },
    #[error("the append-only trigger {0} on the audit table is missing (dropped)")]
    Trigger(&'static str),
}

/// Walks the chain: `Ok(number of events)`, or the first break. A store error is the outer
/// `Err`.
pub(crate) fn verify(conn: &Connection) -> rusqlite::Result<Result<usize, Break>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY id"))?;
    let mut rows = stmt.query_map([], event)?;
    let (mut prev, mut expected, mut n) = (Vec::new(), 1i64, 0usize);
    for e in rows.by_ref() {
        let e = e?;
        if e.id != expected {
            return Ok(Err(Break::Missing { from: expected, to: e.id - 1 }));
        }
        let Some(hash) = &e.hash else { return Ok(Err(Break::Unhashed { id: e.id })) };
        if *hash != chain_hash(&prev, &e) {
            return Ok(Err(Break::Edited { id: e.id }));
        }
        prev = hash.clone();
        expected += 1;
        n += 1;
    }
    let sequence = sequence(conn)?;
    if sequence > expected - 1 {
        return Ok(Err(Break::Truncated { last: expected - 1, sequence }));
    }
    for trigger in ["audit_no_update", "audit_no_delete"] {
        let found: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = ?1",
            [trigger],
            |r| r.get(0),
        )?;
        if found == 0 {
            return Ok(Err(Break::Trigger(trigger)));
        }
    }
    Ok(Ok(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db;

    struct Db {
        _dir: tempfile::TempDir,
        conn: Connection,
    }

    fn db() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut conn = db::open(&path, None, db::Synchronous::Full).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        Db { _dir: dir, conn }
    }

    const ALICE: Identity = Identity { uid: 1000, euid: 0, login_uid: Some(1000) };

    #[test]
    fn events_are_append_only_and_carry_the_os_identity() {
        let d = db();
        let c = &d.conn;
        let id = record_as(c, ALICE, "alice", Action::Show, 7, 42).unwrap();
        let e = &recent(c, 10).unwrap()[0];
        assert_eq!(
            (e.id, e.actor.as_str(), e.action.as_str(), e.dead_letter_id, e.journal_seq),
            (id, "alice", "show", 7, 42)
        );
        assert_eq!((e.uid, e.euid, e.login_uid), (Some(1000), Some(0), Some(1000)));
        assert!(e.at > 0);
        let err = c.execute("UPDATE audit SET actor = 'mallory'", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let err = c.execute("DELETE FROM audit", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        assert_eq!(recent(c, 10).unwrap()[0].actor, "alice");
        // `record` takes the process's own identity.
        record(c, "claimed", Action::Purge, 1, 1).unwrap();
        let me = Identity::current();
        let e = &recent(c, 1).unwrap()[0];
        assert_eq!((e.uid, e.euid), (Some(me.uid.into()), Some(me.euid.into())));
    }

    fn three_events(d: &Db) {
        for (i, action) in [Action::Show, Action::Replay, Action::Purge].into_iter().enumerate() {
            record_as(&d.conn, ALICE, "alice", action, i as i64 + 1, 10).unwrap();
        }
        assert_eq!(verify(&d.conn).unwrap(), Ok(3));
    }

    #[test]
    fn verify_passes_an_intact_chain() {
        let d = db();
        assert_eq!(verify(&d.conn).unwrap(), Ok(0));
        three_events(&d);
        let hashes: Vec<Option<Vec<u8>>> = recent(&d.conn, 10).unwrap().into_iter().map(|e| e.hash).collect();
        assert!(hashes.iter().all(|h| h.as_ref().is_some_and(|h| h.len() == 32)));
    }

    #[test]
    fn verify_finds_an_edited_event_even_with_the_trigger_put_back() {
        let d = db();
        three_events(&d);
        d.conn
            .execute_batch(
                "DROP TRIGGER audit_no_update;
                 UPDATE audit SET actor = 'mallory' WHERE id = 2;
                 CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
                 BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;",
            )
            .unwrap();
        assert_eq!(verify(&d.conn).unwrap(), Err(Break::Edited { id: 2 }));
    }

    #[test]
    fn verify_finds_deleted_events_in_the_middle_and_at_the_end() {
        let d = db();
        three_events(&d);
        d.conn.execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id = 3;").unwrap();
        assert_eq!(verify(&d.conn).unwrap(), Err(Break::Truncated { last: 2, sequence: 3 }));
        // A later event does not hide the gap.
        record_as(&d.conn, ALICE, "alice", Action::Show, 9, 9).unwrap();
        assert_eq!(verify(&d.conn).unwrap(), Err(Break::Missing { from: 3, to: 3 }));
        d.conn.execute("DELETE FROM audit WHERE id = 1", []).unwrap();
        assert_eq!(verify(&d.conn).unwrap(), Err(Break::Missing { from: 1, to: 1 }));
    }

    #[test]
    fn verify_finds_a_foreign_insert_and_a_dropped_trigger() {
        let d = db();
        three_events(&d);
        d.conn
            .execute(
                "INSERT INTO audit (at, actor, action, dead_letter_id, journal_seq) VALUES (1, 'x', 'show', 1, 1)",
                [],
            )
            .unwrap();
        assert_eq!(verify(&d.conn).unwrap(), Err(Break::Unhashed { id: 4 }));
        let d = db();
        three_events(&d);
        d.conn.execute_batch("DROP TRIGGER audit_no_delete").unwrap();
        assert_eq!(verify(&d.conn).unwrap(), Err(Break::Trigger("audit_no_delete")));
    }
}
