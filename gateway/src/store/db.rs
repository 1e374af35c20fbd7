//! Opening the SQLite database: durability pragmas (asserted, not assumed) and versioned
//! schema migrations.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// How long a connection waits for another one's write lock before failing.
pub(crate) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `PRAGMA synchronous` in WAL mode. Only `Full` is offered to operators: `Normal` does not
/// fsync the WAL at commit and loses ACKed messages on power loss. It exists so the
/// power-loss test can show that it catches exactly that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Full,
    Normal,
}

impl Synchronous {
    fn value(self) -> i64 {
        match self {
            Synchronous::Full => 2,
            Synchronous::Normal => 1,
        }
    }
}

/// A variant with a cause leaves it to the error chain (`cli::error_chain`, `{:#}`), which prints it.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("journal {path}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("journal {path}: cannot create its folder")]
    Folder { path: String, source: std::io::Error },
    #[error(
        "journal {path}: PRAGMA {pragma} is {actual}, expected {expected}; refusing to ACK on a non-durable store"
    )]
    Pragma { path: String, pragma: &'static str, actual: String, expected: String },
    #[error(
        "journal {path}: schema version {found} is newer than this gateway knows ({known}); refusing to downgrade"
    )]
    TooNew { path: String, found: i64, known: i64 },
}

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: the journal of received messages.
    "CREATE TABLE journal (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at  INTEGER NOT NULL,             -- unix milliseconds
        listener     TEXT    NOT NULL,
        sender       TEXT    NOT NULL,             -- MSH-3|MSH-4
        control_id   TEXT    NOT NULL,             -- MSH-10
        message_type TEXT    NOT NULL,             -- MSH-9.1^MSH-9.2
        lane         TEXT,                         -- keyed hash of PID-3, never the identifier
        payload_hash BLOB    NOT NULL,             -- keyed hash of the payload, for duplicates
        state        TEXT    NOT NULL DEFAULT 'received'
                     CHECK (state IN ('received', 'converted', 'delivered', 'dead')),
        payload      BLOB    NOT NULL              -- AES-256-GCM sealed HL7
    );
    CREATE INDEX journal_by_control_id ON journal (sender, control_id);
    CREATE INDEX journal_received ON journal (seq) WHERE state = 'received';  -- the convert stage's queue
    CREATE INDEX journal_delivered ON journal (received_at) WHERE state = 'delivered';",
    // 2: converted bundles waiting for delivery, and dead letters.
    "CREATE TABLE outbox (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        journal_seq  INTEGER NOT NULL REFERENCES journal (seq),
        part         INTEGER NOT NULL,             -- bundle index within the message
        lane         TEXT,                         -- per-patient order key (from the journal)
        created_at   INTEGER NOT NULL,             -- unix milliseconds
        state        TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts     INTEGER NOT NULL DEFAULT 0,
        bundle       BLOB    NOT NULL,             -- AES-256-GCM sealed FHIR Bundle JSON
        UNIQUE (journal_seq, part)
    );
    CREATE INDEX outbox_pending ON outbox (lane, id) WHERE state = 'pending';
    CREATE TABLE dead_letter (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        journal_seq  INTEGER NOT NULL REFERENCES journal (seq),
        stage        TEXT    NOT NULL CHECK (stage IN ('convert', 'deliver')),
        reason       TEXT    NOT NULL,             -- PHI-free: codes, segment IDs, error kinds
        created_at   INTEGER NOT NULL
    );",
    // 3: audit trail of operator actions on dead letters (`gateway deadletter`), append-only.
    // No foreign keys: the dead letter and journal rows it names may be deleted later.
    "CREATE TABLE audit (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        at             INTEGER NOT NULL,           -- unix milliseconds
        actor          TEXT    NOT NULL,           -- operator (--actor, $SUDO_USER or $USER)
        action         TEXT    NOT NULL,           -- show, replay, purge
        dead_letter_id INTEGER NOT NULL,
        journal_seq    INTEGER NOT NULL
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;",
    // 4: delivery state (forwarder). Entries of a batch bundle settled one by one (so a retry
    // sends only the rest), the per-message pending index (lanes of messages without a
    // patient), and the backoff of failing lanes (survives restarts; what an operator sees).
    "ALTER TABLE outbox ADD COLUMN entries_done TEXT;        -- JSON array of settled entry indexes
    ALTER TABLE outbox ADD COLUMN entries_dead INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX outbox_pending_message ON outbox (journal_seq, id) WHERE state = 'pending';
    CREATE TABLE lane_state (
        lane            TEXT    PRIMARY KEY,       -- journal lane, or 'seq:<journal_seq>'
        next_attempt_at INTEGER NOT NULL,          -- unix milliseconds
        failures        INTEGER NOT NULL,
        last_error      TEXT    NOT NULL           -- PHI-free failure class
    ) WITHOUT ROWID;",
    // 5: what the forwarder needs to pack several lanes' batch bundles into one request
    // without decrypting them first. NULL on rows written before: they are sent alone.
    "ALTER TABLE outbox ADD COLUMN kind TEXT;               -- Bundle.type: 'batch' or 'transaction'
    ALTER TABLE outbox ADD COLUMN entries INTEGER;         -- Bundle.entry count",
    // 6: settings (the key check value: which key the sealed rows need), and the audit
    // trail's OS identity and hash chain. The append-only triggers are dropped here so the
    // existing events can be chained, then recreated (`after_migration`, same transaction).
    "CREATE TABLE settings (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE audit ADD COLUMN uid INTEGER;              -- real uid of the process that wrote it
    ALTER TABLE audit ADD COLUMN euid INTEGER;             -- effective uid
    ALTER TABLE audit ADD COLUMN login_uid INTEGER;        -- /proc/self/loginuid, NULL if unset
    ALTER TABLE audit ADD COLUMN hash BLOB;                -- SHA-256(previous hash, own fields)
    DROP TRIGGER audit_no_update;
    DROP TRIGGER audit_no_delete;",
    // 7: the convert stage's memory (store/memory.rs): merge links between patient records,
    // and resources already sent. Keys are keyed hashes; the other record's key is sealed.
    "CREATE TABLE patient_link (
        patient      BLOB NOT NULL,
        other        BLOB NOT NULL,
        relation     TEXT NOT NULL,
        other_sealed BLOB NOT NULL,
        PRIMARY KEY (patient, other, relation)
    ) WITHOUT ROWID;
    CREATE TABLE sent_resource (key BLOB PRIMARY KEY) WITHOUT ROWID;",
    // 8: the conversion report of a converted message (JSON: segment IDs, locations, codes,
    // counts), sealed like the message (a sender may put a name in a coded field), kept as
    // long as its journal row.
    "ALTER TABLE journal ADD COLUMN report TEXT;",
    // 9: a replay keeps its dead letter (marked, hidden from the list) so that the message
    // failing again is the same dead letter, under the same id (`purge <id>` still works).
    "ALTER TABLE dead_letter ADD COLUMN replayed_at INTEGER;  -- unix ms of the last replay; NULL: a dead letter now",
    // 10: the forwarder's id map (store/ids.rs), replacing `sent_resource`: per resource (keyed
    // hash of its `urn:uuid` placeholder) the id the server gave it (`Kind/<id>`, NULL for a
    // server that names resources by conditional URL), the SHA-256 of what it last acknowledged
    // and when (Unix ms), so an unchanged resource is not written again.
    "DROP TABLE sent_resource;
    CREATE TABLE server_resource (
        key        BLOB PRIMARY KEY,
        server_id  TEXT,
        content    BLOB NOT NULL,
        acked_at   INTEGER NOT NULL
    ) WITHOUT ROWID;",
];

/// Work a migration needs beyond SQL, run in its transaction after its SQL.
fn after_migration(version: usize, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    if version == 6 {
        super::audit::chain_existing(tx)?;
        tx.execute_batch(
            "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
             BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
             CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
             BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;",
        )?;
    }
    Ok(())
}

/// Opens a connection with WAL and the requested `synchronous`, and checks both took effect.
/// `vfs` selects a SQLite VFS by name (tests use a power-loss simulating one).
pub fn open(path: &Path, vfs: Option<&str>, sync: Synchronous) -> Result<Connection, OpenError> {
    let name = path.display().to_string();
    let err = |source| OpenError::Sqlite { path: name.clone(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Folder { path: name.clone(), source })?;
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match vfs {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
        None => Connection::open_with_flags(path, flags),
    }
    .map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(err)?;
    conn.pragma_update(None, "synchronous", sync.value()).map_err(err)?;
    let actual: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).map_err(err)?;
    // Checkpoints run only in the maintenance thread: an automatic checkpoint inside a commit
    // would stall that commit (the ingest writer's, the convert stage's, the forwarder's).
    conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(err)?;
    // A WAL restarted after a checkpoint is cut back to this size rather than kept at its
    // largest (the writer and maintenance set the budget's own, smaller limit).
    super::disk::limit_wal(&conn, super::disk::wal_soft_limit(u64::MAX)).map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::Pragma { path: name, pragma: "journal_mode", actual: mode, expected: "wal".into() });
    }
    if actual != sync.value() {
        let expected = sync.value().to_string();
        return Err(OpenError::Pragma { path: name, pragma: "synchronous", actual: actual.to_string(), expected });
    }
    Ok(conn)
}

/// The boot health gate's look at the journal (`gateway health`): opens it read-only (no
/// folder, file or WAL is created, nothing is written, so it may run beside the daemon) and
/// checks its schema is one this gateway knows. Returns the schema version.
pub fn check_read_only(path: &Path) -> Result<i64, OpenError> {
    let name = path.display().to_string();
    let err = |source| OpenError::Sqlite { path: name.clone(), source };
    // A read-only connection still creates the -wal and -shm files when they are missing
    // (the daemon is not running): then nobody writes, and the file is read as immutable.
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let in_use = Path::new(&wal).exists();
    let escaped: String = path
        .to_string_lossy()
        .chars()
        .map(|c| match c {
            '%' | '?' | '#' => format!("%{:02X}", c as u32),
            c => c.to_string(),
        })
        .collect();
    let uri = format!("file:{escaped}?mode=ro{}", if in_use { "" } else { "&immutable=1" });
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(uri, flags).map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(OpenError::TooNew { path: name, found: version, known });
    }
    // A table read proves the pages (not just the header) are readable.
    conn.query_row("SELECT count(*) FROM journal WHERE seq < 0", [], |r| r.get::<_, i64>(0)).map_err(err)?;
    Ok(version)
}

/// Brings the schema up to date, one transaction per migration.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), OpenError> {
    let err = |source| OpenError::Sqlite { path: path.display().to_string(), source };
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(OpenError::TooNew { path: path.display().to_string(), found: version, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        after_migration(i + 1, &tx).map_err(err)?;
        tx.pragma_update(None, "user_version", i as i64 + 1).map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_sets_and_asserts_wal_full_and_migrates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut c = open(&path, None, Synchronous::Full).unwrap();
        let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2);
        let wal_limit: i64 = c.query_row("PRAGMA journal_size_limit", [], |r| r.get(0)).unwrap();
        assert_eq!(wal_limit, 16 << 20, "a restarted WAL is cut back");
        migrate(&mut c, &path).unwrap();
        migrate(&mut c, &path).unwrap();
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        c.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(migrate(&mut c, &path), Err(OpenError::TooNew { found: 99, .. })));
    }

    #[test]
    fn a_journal_whose_folder_cannot_be_made_says_the_os_error_once_in_the_error_chain() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data"), b"a file where the folder should be").unwrap();
        let e = open(&dir.path().join("data/j.db"), None, Synchronous::Full).unwrap_err();
        let os = std::error::Error::source(&e).expect("the OS error is the cause").to_string();
        assert!(os.contains("os error"), "{os}");
        let text = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(text.matches(&os).count(), 1, "{text}");
        assert!(text.ends_with(&format!("j.db: cannot create its folder: {os}")), "{text}");
    }

    #[test]
    fn migration_6_chains_the_audit_events_written_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut c = open(&path, None, Synchronous::Full).unwrap();
        for (i, sql) in MIGRATIONS[..5].iter().enumerate() {
            c.execute_batch(sql).unwrap();
            c.pragma_update(None, "user_version", i as i64 + 1).unwrap();
        }
        for actor in ["alice", "bob"] {
            c.execute(
                "INSERT INTO audit (at, actor, action, dead_letter_id, journal_seq) VALUES (1, ?1, 'show', 1, 1)",
                [actor],
            )
            .unwrap();
        }
        migrate(&mut c, &path).unwrap();
        assert_eq!(crate::store::audit::verify(&c).unwrap(), Ok(2));
        assert!(c.execute("UPDATE audit SET actor = 'x'", []).unwrap_err().to_string().contains("append-only"));
        assert!(c.execute("DELETE FROM audit", []).unwrap_err().to_string().contains("append-only"));
    }
}
