//! The key file is never silently replaced, and the audit trail shows tampering (issue 8,
//! items 4 and 8): the real gateway binary, real SQLite files.
//!
//! Not tested here: the fsync of the key's folder after the key file is created (nothing
//! observable without cutting power between the two; `Keys::create` does it).

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gateway_tests::*;

const PLAIN: &str = "[[listener]]\nname = \"mllp\"\nbind = \"127.0.0.1:0\"\n";

/// A gateway whose cloud refuses connections: converted bundles stay pending.
fn offline() -> Setup {
    let mut s = Setup::new(PLAIN);
    // No transaction limits: one outbox bundle per message, as the counts below assume.
    s.extra = cloud("http://127.0.0.1:9/fhir/R4", 1, "transaction_max_entries = 1000\ntransaction_max_updates = 1000");
    s
}

fn key_path(setup: &Setup) -> PathBuf {
    setup.dir.path().join("var/journal.key")
}

/// Runs `gateway <args>` to its exit (bounded by [`WAIT`]; a gateway still running then is
/// killed and the test fails): exit status, stdout, stderr.
fn gateway(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(gateway_bin())
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gateway");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gateway {args:?} still running after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, stdout.join().unwrap(), stderr.join().unwrap())
}

/// `gateway run` on the setup's config: expected to refuse to start. Returns its stderr.
fn refused_run(setup: &Setup) -> String {
    let config = setup.config_path();
    let (status, _, stderr) = gateway(&["run", "--config", config.to_str().unwrap()]);
    assert!(!status.success(), "gateway started: {stderr}");
    assert!(!stderr.contains("mllp listening"), "{stderr}");
    stderr
}

/// `gateway deadletter --config <setup> <args>`.
fn deadletter(setup: &Setup, args: &[&str]) -> (ExitStatus, String, String) {
    let config = setup.config_path();
    let mut all = vec!["deadletter", "--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    gateway(&all)
}

/// Everything in the store a start could change: journal, outbox, dead letters, audit.
fn snapshot(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut out = Vec::new();
    for sql in [
        "SELECT 'journal ' || seq || ' ' || state || ' ' || hex(payload) FROM journal ORDER BY seq",
        "SELECT 'outbox ' || id || ' ' || state || ' ' || hex(bundle) FROM outbox ORDER BY id",
        "SELECT 'dead_letter ' || id || ' ' || journal_seq || ' ' || reason FROM dead_letter ORDER BY id",
        "SELECT 'audit ' || id FROM audit ORDER BY id",
    ] {
        let mut stmt = conn.prepare(sql).unwrap();
        out.extend(stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap));
    }
    out
}

/// Three messages stored and converted; the cloud is unreachable, so their bundles wait.
fn store_three(setup: &Setup) {
    let gw = setup.start();
    let mut c = gw.connect();
    for id in ["KEY1", "KEY2", "KEY3"] {
        assert_eq!(msa(&c.call(&adt(id))), ("AA".into(), id.into()));
    }
    wait_metric(&gw, "gateway_messages_converted_total", 3.0, WAIT);
    assert!(gw.terminate().success());
    assert_eq!(journal_states(&setup.db_path()).get("converted"), Some(&3));
}

#[test]
fn a_removed_key_file_with_sealed_rows_stops_the_start_and_changes_nothing() {
    let setup = offline();
    store_three(&setup);
    let key = key_path(&setup);
    std::fs::remove_file(&key).unwrap();
    let before = snapshot(&setup.db_path());

    let stderr = refused_run(&setup);
    assert!(stderr.contains(&format!("key file {} does not exist", key.display())), "{stderr}");
    assert!(
        stderr.contains("6 sealed rows (3 journal rows, 3 of them not yet delivered; 3 outbox bundles"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Restore the key file from backup") && stderr.contains("--discard-undecryptable"),
        "{stderr}"
    );
    assert!(!key.exists(), "no new key was created");
    assert_eq!(snapshot(&setup.db_path()), before, "nothing in the store changed");
    // The key's folder (shared with the journal here) was created 0700 on the first start.
    assert_eq!(std::fs::metadata(key.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn discard_undecryptable_dead_letters_audits_and_warns_once() {
    let setup = offline();
    store_three(&setup);
    std::fs::remove_file(key_path(&setup)).unwrap();

    let gw = setup.start_with(&["--discard-undecryptable"], &[]);
    let warns: Vec<&String> =
        gw.lines.iter().filter(|l| l.contains("WARN") && l.contains("sealed under a lost key")).collect();
    assert_eq!(warns.len(), 1, "{:#?}", gw.lines);
    assert!(warns[0].contains("dead_letters=3"), "{}", warns[0]);
    assert_eq!(gw.metric("gateway_lost_key_dead_letters"), 3.0);
    assert_eq!(gw.metric("gateway_dead_letters_total"), 3.0);
    // The gateway goes on with the new key: a new message is stored and converted.
    assert_eq!(msa(&gw.connect().call(&adt("AFTER1"))).0, "AA");
    wait_metric(&gw, "gateway_messages_converted_total", 1.0, WAIT);
    assert!(gw.terminate().success());
    assert!(key_path(&setup).exists());

    let conn = rusqlite::Connection::open(setup.db_path()).unwrap();
    let dead: Vec<(String, String, String)> = conn
        .prepare("SELECT j.control_id, d.stage, d.reason FROM dead_letter d JOIN journal j ON j.seq = d.journal_seq ORDER BY d.id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected: Vec<(String, String, String)> = ["KEY1", "KEY2", "KEY3"]
        .iter()
        .map(|c| (c.to_string(), "deliver".into(), "sealed under a lost key".into()))
        .collect();
    assert_eq!(dead, expected);
    let outbox_states: Vec<String> = conn
        .prepare("SELECT o.state FROM outbox o JOIN journal j ON j.seq = o.journal_seq WHERE j.control_id LIKE 'KEY%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(outbox_states, vec!["dead"; 3]);
    let journal: Vec<(String, String)> = conn
        .prepare("SELECT control_id, state FROM journal ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        &journal[..3],
        &[("KEY1".into(), "dead".into()), ("KEY2".into(), "dead".into()), ("KEY3".into(), "dead".into())]
    );
    assert_eq!(journal[3].0, "AFTER1");
    assert_ne!(journal[3].1, "dead");
    let audit: Vec<(String, i64, i64)> = conn
        .prepare("SELECT action, euid, dead_letter_id FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let euid = i64::from(unsafe { libc::geteuid() });
    assert_eq!(
        audit,
        vec![
            ("discard-undecryptable".into(), euid, 1),
            ("discard-undecryptable".into(), euid, 2),
            ("discard-undecryptable".into(), euid, 3)
        ]
    );
    drop(conn);
    let (status, stdout, stderr) = deadletter(&setup, &["audit-verify"]);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "ok, 3 events\n");
}

#[test]
fn a_key_file_that_is_not_the_stores_key_is_refused() {
    let setup = offline();
    store_three(&setup);
    let key = key_path(&setup);
    std::fs::write(&key, [0x5a; 32]).unwrap(); // still 0600, still ours: only the bytes differ
    let before = snapshot(&setup.db_path());
    let stderr = refused_run(&setup);
    assert!(stderr.contains(&format!("key file {} is not the key the journal", key.display())), "{stderr}");
    assert!(stderr.contains("6 sealed rows") && stderr.contains("--discard-undecryptable"), "{stderr}");
    assert_eq!(snapshot(&setup.db_path()), before);
    assert_eq!(std::fs::read(&key).unwrap(), [0x5a; 32], "the key file is left alone");
}

#[test]
fn a_symlinked_key_file_is_refused() {
    let setup = Setup::new(PLAIN);
    setup.start().terminate();
    let key = key_path(&setup);
    let real = setup.dir.path().join("elsewhere.key");
    std::fs::rename(&key, &real).unwrap();
    std::os::unix::fs::symlink(&real, &key).unwrap();
    let stderr = refused_run(&setup);
    assert!(stderr.contains(&format!("key file {} is a symbolic link", key.display())), "{stderr}");
}

#[test]
fn a_key_file_owned_by_another_uid_is_refused() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: chown to uid 65534 needs root");
        return;
    }
    let setup = Setup::new(PLAIN);
    setup.start().terminate();
    let key = key_path(&setup);
    std::os::unix::fs::chown(&key, Some(65534), None).unwrap();
    assert_eq!(std::fs::metadata(&key).unwrap().uid(), 65534);
    let stderr = refused_run(&setup);
    assert!(stderr.contains(&format!("key file {} is owned by uid 65534, not by uid 0", key.display())), "{stderr}");
}

#[test]
fn audit_verify_passes_an_intact_chain_and_finds_edited_deleted_and_foreign_events() {
    let setup = Setup::new(&format!("{PLAIN}[listener.accept]\nstore_unsupported = true\n"));
    let gw = setup.start();
    let mut c = gw.connect();
    for id in ["POISON1", "POISON2"] {
        // No structure maps A99: a listener with store_unsupported keeps it, as a dead letter.
        let poison = format!(
            "MSH|^~\\&|EPIC|HOSP|GW|CLOUD|20260101120000||ADT^A99|{id}|P|2.5.1\rPID|1||MRN99^^^HOSP^MR||DOE^JO\r"
        );
        assert_eq!(msa(&c.call(poison.as_bytes())).0, "AA");
    }
    wait_metric(&gw, "gateway_dead_letters_total", 2.0, WAIT);
    assert!(gw.terminate().success());

    for args in [["--actor", "alice", "show", "1"], ["--actor", "alice", "show", "2"], ["--actor", "bob", "purge", "2"]]
    {
        let (status, _, stderr) = deadletter(&setup, &args);
        assert!(status.success(), "{args:?}: {stderr}");
    }
    let (status, stdout, stderr) = deadletter(&setup, &["audit-verify"]);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "ok, 3 events\n");
    // The claimed name and what the kernel says.
    let conn = rusqlite::Connection::open(setup.db_path()).unwrap();
    let rows: Vec<(String, String, i64, i64)> = conn
        .prepare("SELECT actor, action, uid, euid FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let (uid, euid) = unsafe { (i64::from(libc::getuid()), i64::from(libc::geteuid())) };
    assert_eq!(
        rows,
        vec![
            ("alice".into(), "show".into(), uid, euid),
            ("alice".into(), "show".into(), uid, euid),
            ("bob".into(), "purge".into(), uid, euid)
        ]
    );
    let pristine = setup.dir.path().join("pristine.db");
    conn.execute("VACUUM INTO ?1", [pristine.to_str().unwrap()]).unwrap();
    drop(conn);

    // Each tampering on a fresh copy of the intact store, as someone with the sqlite3 CLI would.
    let put_back_triggers = "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
                             BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
                             CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
                             BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;";
    let cases = [
        (
            "edited",
            "DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'mallory' WHERE id = 2;",
            "audit event 2 does not match its chain hash",
        ),
        (
            "deleted",
            "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id = 2;",
            "audit event(s) 2 to 2 are missing",
        ),
        (
            "deleted last",
            "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id = 3;",
            "audit event(s) after 2 are missing",
        ),
        (
            "inserted",
            "INSERT INTO audit (at, actor, action, dead_letter_id, journal_seq) VALUES (1, 'alice', 'show', 1, 1);",
            "audit event 4 has no chain hash",
        ),
        ("trigger dropped", "DROP TRIGGER audit_no_update;", "trigger audit_no_update on the audit table is missing"),
    ];
    for (name, tamper, expected) in cases {
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", setup.db_path().display()));
        }
        std::fs::copy(&pristine, setup.db_path()).unwrap();
        let conn = rusqlite::Connection::open(setup.db_path()).unwrap();
        conn.execute_batch(tamper).unwrap();
        if name != "trigger dropped" {
            conn.execute_batch(put_back_triggers).unwrap();
        }
        drop(conn);
        let (status, stdout, stderr) = deadletter(&setup, &["audit-verify"]);
        assert!(!status.success(), "{name}: {stdout}");
        assert!(stderr.contains("audit trail broken") && stderr.contains(expected), "{name}: {stderr}");
    }
}
