//! Keeps the key file and the store together: a key that the store's sealed rows need is
//! never replaced silently. The store records the check value of its key (`settings`); at
//! start a missing key file, or a key whose check value differs, is refused while sealed
//! rows exist, with the recovery in the message: restore the key from backup, or start
//! once with `--discard-undecryptable`, which keeps (or creates) the key on disk, moves
//! every undelivered row that does not decrypt under it to dead letters, audits each one and
//! logs one WARN line with the count.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::audit::{self, Action, Identity};
use super::crypto::{KeyError, Keys};
use super::settings;
use super::state::{DeadLetterStage, JournalState, OutboxState};

/// Dead-letter reason for rows that only a lost key could open.
pub(crate) const LOST_KEY_REASON: &str = "sealed under a lost key";

/// Sealed rows in the store, for the operator's message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub(crate) journal: i64,
    /// Journal rows not yet delivered (`received`, `converted`).
    pub(crate) undelivered: i64,
    pub(crate) outbox: i64,
    pub(crate) dead_letters: i64,
}

impl Sealed {
    pub(crate) fn count(conn: &Connection) -> rusqlite::Result<Sealed> {
        conn.query_row(
            "SELECT (SELECT count(*) FROM journal),
                    (SELECT count(*) FROM journal WHERE state IN (?1, ?2)),
                    (SELECT count(*) FROM outbox),
                    (SELECT count(*) FROM dead_letter WHERE replayed_at IS NULL)",
            [JournalState::Received, JournalState::Converted],
            |r| Ok(Sealed { journal: r.get(0)?, undelivered: r.get(1)?, outbox: r.get(2)?, dead_letters: r.get(3)? }),
        )
    }

    pub(crate) fn total(&self) -> i64 {
        self.journal + self.outbox
    }
}

impl std::fmt::Display for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sealed rows ({} journal rows, {} of them not yet delivered; {} outbox bundles; {} dead letters)",
            self.total(),
            self.journal,
            self.undelivered,
            self.outbox,
            self.dead_letters
        )
    }
}

/// A variant with a cause leaves it to the error chain (`cli::error_chain`, `{:#}`), which prints it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GuardError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("journal {path}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error(
        "key file {key_file} does not exist, but the journal {journal} holds {sealed} that only that key can open; \
         refusing to create a new key. Restore the key file from backup, or start once with \
         `gateway run --discard-undecryptable` to create a new key and move every undelivered row that does not \
         decrypt to dead letters"
    )]
    Missing { key_file: String, journal: String, sealed: Sealed },
    #[error(
        "key file {key_file} is not the key the journal {journal} was sealed with (its check value differs); the \
         journal holds {sealed}. Restore the right key file from backup, or start once with \
         `gateway run --discard-undecryptable` to keep this key and move every undelivered row that does not \
         decrypt to dead letters"
    )]
    Mismatch { key_file: String, journal: String, sealed: Sealed },
}

/// The keys, and how many messages were dead-lettered because they did not decrypt.
pub(crate) struct Guarded {
    pub(crate) keys: Keys,
    pub(crate) discarded: usize,
}

/// Loads (or, for a store without sealed rows, creates) the key file and binds it to the
/// store. `discard` is the claimed operator name when `--discard-undecryptable` was given.
/// The schema must be migrated.
pub(crate) fn open_keys(
    conn: &mut Connection,
    key_file: &Path,
    journal: &Path,
    discard: Option<&str>,
) -> Result<Guarded, GuardError> {
    let sql = |source| GuardError::Sqlite { path: journal.display().to_string(), source };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
    let stored = settings::get(&tx, settings::KEY_CHECK).map_err(sql)?;
    let sealed = Sealed::count(&tx).map_err(sql)?;
    let names = || (key_file.display().to_string(), journal.display().to_string());
    let absent = matches!(std::fs::symlink_metadata(key_file), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    let (keys, fits) = if absent {
        if sealed.total() > 0 && discard.is_none() {
            let (key_file, journal) = names();
            return Err(GuardError::Missing { key_file, journal, sealed });
        }
        if stored.is_some() {
            tracing::warn!(key_file = %key_file.display(), sealed = sealed.total(), "key file was missing; a new key is created");
        }
        (Keys::create(key_file)?, false)
    } else {
        let keys = Keys::load(key_file)?;
        let fits = match &stored {
            Some(check) => *check == keys.check_value(),
            // A store from before the check value: the newest row tells.
            None => newest_row_opens(&tx, &keys).map_err(sql)?,
        };
        if !fits && sealed.total() > 0 && discard.is_none() {
            let (key_file, journal) = names();
            return Err(GuardError::Mismatch { key_file, journal, sealed });
        }
        if !fits {
            tracing::warn!(key_file = %key_file.display(), sealed = sealed.total(), "key file differs from the one the journal was bound to");
        }
        (keys, fits)
    };
    let discarded = match discard {
        Some(actor) if !fits && sealed.total() > 0 => discard_undecryptable(&tx, &keys, actor).map_err(sql)?,
        _ => 0,
    };
    settings::put(&tx, settings::KEY_CHECK, &keys.check_value()).map_err(sql)?;
    tx.commit().map_err(sql)?;
    if discarded > 0 {
        tracing::warn!(
            dead_letters = discarded,
            key_file = %key_file.display(),
            "--discard-undecryptable: {discarded} message(s) sealed under a lost key moved to dead letters"
        );
    }
    Ok(Guarded { keys, discarded })
}

/// Whether `keys` is the key the store is bound to (a store without a check value: yes).
/// For the CLI, which never creates or rebinds a key.
pub(crate) fn fits_store(conn: &Connection, keys: &Keys) -> rusqlite::Result<bool> {
    Ok(settings::get(conn, settings::KEY_CHECK)?.is_none_or(|check| check == keys.check_value()))
}

fn newest_row_opens(conn: &Connection, keys: &Keys) -> rusqlite::Result<bool> {
    let payload: Option<Vec<u8>> =
        conn.query_row("SELECT payload FROM journal ORDER BY seq DESC LIMIT 1", [], |r| r.get(0)).optional()?;
    Ok(payload.is_none_or(|p| keys.open(&p).is_ok()))
}

/// Moves every undelivered message that does not decrypt under `keys` to dead letters, with
/// an audit event each; returns how many. A `received` row needs its journal payload (the
/// convert stage's input), a `converted` one its pending bundles (the forwarder's).
fn discard_undecryptable(tx: &Connection, keys: &Keys, actor: &str) -> rusqlite::Result<usize> {
    let now = super::now_ms();
    let who = Identity::current();
    let dead_letter = |seq: i64, stage: DeadLetterStage| -> rusqlite::Result<()> {
        let id = super::dead_letters::add(tx, seq, stage, LOST_KEY_REASON, now)?;
        audit::record_as(tx, who, actor, Action::Discard, id, seq)?;
        Ok(())
    };
    let mut received = Vec::new();
    let mut stmt = tx.prepare("SELECT seq, payload FROM journal WHERE state = ?1 ORDER BY seq")?;
    let mut rows = stmt.query([JournalState::Received])?;
    while let Some(r) = rows.next()? {
        if keys.open(r.get_ref(1)?.as_blob()?).is_err() {
            received.push(r.get::<_, i64>(0)?);
        }
    }
    drop(rows);
    for &seq in &received {
        tx.execute("UPDATE journal SET state = ?2 WHERE seq = ?1", params![seq, JournalState::Dead])?;
        dead_letter(seq, DeadLetterStage::Convert)?;
    }
    let mut bundles: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut stmt = tx.prepare("SELECT id, journal_seq, bundle FROM outbox WHERE state = ?1 ORDER BY id")?;
    let mut rows = stmt.query([OutboxState::Pending])?;
    while let Some(r) = rows.next()? {
        if keys.open(r.get_ref(2)?.as_blob()?).is_err() {
            bundles.entry(r.get(1)?).or_default().push(r.get(0)?);
        }
    }
    drop(rows);
    for (&seq, ids) in &bundles {
        for id in ids {
            tx.execute("UPDATE outbox SET state = ?2 WHERE id = ?1", params![id, OutboxState::Dead])?;
        }
        // As the forwarder settles a message: dead once none of its bundles is pending.
        let pending: i64 = tx.query_row(
            "SELECT count(*) FROM outbox WHERE journal_seq = ?1 AND state = ?2",
            params![seq, OutboxState::Pending],
            |r| r.get(0),
        )?;
        if pending == 0 {
            tx.execute(
                "UPDATE journal SET state = ?2 WHERE seq = ?1 AND state = ?3",
                params![seq, JournalState::Dead, JournalState::Converted],
            )?;
        }
        dead_letter(seq, DeadLetterStage::Deliver)?;
    }
    Ok(received.len() + bundles.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db;
    use std::path::PathBuf;

    struct Store {
        _dir: tempfile::TempDir,
        path: PathBuf,
        key_file: PathBuf,
        conn: Connection,
    }

    fn store() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut conn = db::open(&path, None, db::Synchronous::Full).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        Store { key_file: dir.path().join("keys/j.key"), _dir: dir, path, conn }
    }

    impl Store {
        fn open(&mut self, discard: Option<&str>) -> Result<Guarded, GuardError> {
            open_keys(&mut self.conn, &self.key_file, &self.path, discard)
        }
        /// A received row and a converted one with a pending bundle, sealed under `keys`.
        fn fill(&self, keys: &Keys) {
            for (cid, state) in [("C1", JournalState::Received), ("C2", JournalState::Converted)] {
                self.conn
                    .execute(
                        "INSERT INTO journal (received_at, listener, sender, control_id, message_type, payload_hash, state, payload)
                         VALUES (1, 'm', 'A|B', ?1, 'ADT^A01', x'00', ?2, ?3)",
                        params![cid, state, keys.seal(b"MSH|")],
                    )
                    .unwrap();
            }
            self.conn
                .execute(
                    "INSERT INTO outbox (journal_seq, part, created_at, bundle) VALUES (2, 0, 1, ?1)",
                    [keys.seal(b"{}")],
                )
                .unwrap();
        }
        fn rows(&self) -> Vec<String> {
            let mut out: Vec<String> = self
                .conn
                .prepare("SELECT 'j' || seq || state FROM journal UNION ALL SELECT 'o' || id || state FROM outbox")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            out.sort();
            out
        }
        fn check(&self) -> Option<String> {
            settings::get(&self.conn, settings::KEY_CHECK).unwrap()
        }
    }

    #[test]
    fn first_start_creates_the_key_and_binds_it() {
        let mut s = store();
        let g = s.open(None).unwrap();
        assert_eq!(s.check(), Some(g.keys.check_value()));
        let again = s.open(None).unwrap();
        assert_eq!(again.keys.check_value(), g.keys.check_value());
        assert_eq!(again.discarded, 0);
    }

    #[test]
    fn a_missing_key_with_sealed_rows_is_refused_and_nothing_changes() {
        let mut s = store();
        let keys = s.open(None).unwrap().keys;
        s.fill(&keys);
        std::fs::remove_file(&s.key_file).unwrap();
        let before = s.rows();
        let e = s.open(None).err().expect("refused");
        let text = e.to_string();
        assert!(
            matches!(
                e,
                GuardError::Missing { sealed: Sealed { journal: 2, undelivered: 2, outbox: 1, dead_letters: 0 }, .. }
            ),
            "{text}"
        );
        assert!(
            text.contains("j.key") && text.contains("3 sealed rows") && text.contains("--discard-undecryptable"),
            "{text}"
        );
        assert!(text.contains("Restore the key file from backup"), "{text}");
        assert!(!s.key_file.exists(), "no new key");
        assert_eq!(s.rows(), before);
        assert_eq!(s.check(), Some(keys.check_value()));
    }

    #[test]
    fn discard_dead_letters_what_does_not_decrypt_and_audits_it() {
        let mut s = store();
        let old = s.open(None).unwrap().keys;
        s.fill(&old);
        std::fs::remove_file(&s.key_file).unwrap();
        let g = s.open(Some("ops")).unwrap();
        assert_eq!(g.discarded, 2);
        assert_eq!(s.check(), Some(g.keys.check_value()));
        assert_ne!(g.keys.check_value(), old.check_value());
        assert_eq!(s.rows(), vec!["j1dead", "j2dead", "o1dead"]);
        let dead: Vec<(i64, DeadLetterStage, String)> = s
            .conn
            .prepare("SELECT journal_seq, stage, reason FROM dead_letter ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            dead,
            vec![
                (1, DeadLetterStage::Convert, LOST_KEY_REASON.into()),
                (2, DeadLetterStage::Deliver, LOST_KEY_REASON.into())
            ]
        );
        let events = audit::recent(&s.conn, 10).unwrap();
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.action == "discard-undecryptable" && e.actor == "ops" && e.euid.is_some()));
        assert_eq!(audit::verify(&s.conn).unwrap(), Ok(2));
        // The next start is a normal one.
        assert_eq!(s.open(None).unwrap().discarded, 0);
    }

    #[test]
    fn a_wrong_key_is_refused_or_its_undecryptable_rows_discarded() {
        let mut s = store();
        let keys = s.open(None).unwrap().keys;
        s.fill(&keys);
        // A new row sealed under the right key, then the key file replaced.
        std::fs::remove_file(&s.key_file).unwrap();
        let other = Keys::create(&s.key_file).unwrap();
        let before = s.rows();
        let e = s.open(None).err().expect("refused");
        assert!(matches!(e, GuardError::Mismatch { .. }), "{e}");
        assert!(e.to_string().contains("is not the key") && e.to_string().contains("3 sealed rows"), "{e}");
        assert_eq!(s.rows(), before);
        let g = s.open(Some("ops")).unwrap();
        assert_eq!((g.discarded, g.keys.check_value()), (2, other.check_value()), "keeps the key on disk");
    }

    #[test]
    fn a_store_from_before_the_check_value_is_probed() {
        let mut s = store();
        let keys = s.open(None).unwrap().keys;
        s.fill(&keys);
        s.conn.execute("DELETE FROM settings", []).unwrap();
        assert_eq!(s.open(None).unwrap().discarded, 0, "the right key: bound");
        assert_eq!(s.check(), Some(keys.check_value()));
        s.conn.execute("DELETE FROM settings", []).unwrap();
        std::fs::remove_file(&s.key_file).unwrap();
        Keys::create(&s.key_file).unwrap();
        assert!(matches!(s.open(None), Err(GuardError::Mismatch { .. })));
    }

    #[test]
    fn without_sealed_rows_a_new_key_is_bound() {
        let mut s = store();
        s.open(None).unwrap();
        std::fs::remove_file(&s.key_file).unwrap();
        let g = s.open(None).unwrap();
        assert_eq!(s.check(), Some(g.keys.check_value()));
    }
}
