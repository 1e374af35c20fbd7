//! Power-loss tests for the journal, in the spirit of SQLite's crash tests.
//!
//! The journal writer runs on the "powerloss" VFS (tests/powerloss_vfs): every write sits in
//! a simulated page cache until fsync, and a power cut drops whatever was not fsynced and
//! freezes the disk. Concurrent connections append; once enough ACKs came back the power is
//! cut while other appends are in flight; the writer "closes" into the void; then a fresh
//! connection on the plain unix VFS (a rebooted machine) recovers the database from disk.
//!
//! * `synchronous=FULL` must have kept every ACKed message (exactly once, intact).
//! * `synchronous=NORMAL` must lose ACKed messages, and the very check used for FULL must
//!   say so — a power-loss test that cannot fail proves nothing.

#[path = "powerloss_vfs/mod.rs"]
mod vfs;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::metrics::Metrics;
use gateway::store::{Appended, NewMessage, Synchronous, Writer, WriterOptions};
use rusqlite::{Connection, OpenFlags};
use vfs::{Cut, Machine, VFS_NAME};

/// When the power fails.
#[derive(Debug, Clone, Copy)]
enum When {
    /// From the connection that receives this many ACKs, while other appends are in flight
    /// (the writer is usually between two commits then).
    AfterAcks(usize),
    /// Instead of the n-th fsync of the run: a commit is caught with its WAL frames written
    /// but not synced (its messages are not ACKed yet).
    AtSync(u64),
}

/// Concurrent "connections".
const TASKS: usize = 8;
/// Messages per connection, each appended after the previous one was answered.
const PER_TASK: usize = 38;
/// For `When::AfterAcks`: well before the end, so that most appends come after the cut.
const CUT_AFTER: usize = 120;

fn options(path: &Path, synchronous: Synchronous) -> WriterOptions {
    WriterOptions {
        path: path.to_path_buf(),
        vfs: Some(VFS_NAME.to_string()),
        synchronous,
        max_bytes: 1 << 40,
        dedup_window: Duration::from_secs(3600),
        batch_max_messages: 16,
        batch_max_bytes: 1 << 20,
        queue: 64,
        on_commit: None,
        gate: Default::default(),
    }
}

/// Stand-in for the sealed payload: distinct per message, so a mixed-up row shows.
fn sealed(id: &str) -> Vec<u8> {
    format!("sealed:{id};").bytes().cycle().take(300).collect()
}

fn message(id: &str) -> NewMessage {
    let mut payload_hash = [0u8; 32];
    for (i, b) in id.bytes().enumerate() {
        payload_hash[i % 32] ^= b;
    }
    NewMessage {
        listener: Arc::from("powerloss"),
        sender: "LAB|HOSP".to_string(),
        control_id: id.to_string(),
        message_type: "ORU^R01".to_string(),
        lane: None,
        payload_hash,
        sealed: sealed(id),
    }
}

/// What the connections were told.
#[derive(Debug, Default)]
struct Ledger {
    /// `Ok(Stored)` received while the power was still on: these must survive (with FULL).
    acked: Vec<String>,
    /// `Ok(Stored)` received after the cut. The ghost writer may "commit" into the void;
    /// on a real machine nobody would have received these.
    acked_after_cut: Vec<String>,
    /// Appends issued after the cut: none of them can be on disk, whatever `synchronous`.
    issued_after_cut: Vec<String>,
    failed_after_cut: usize,
}

/// The state after the reboot.
#[derive(Debug)]
struct Outcome {
    ledger: Ledger,
    /// control_id -> payloads found.
    on_disk: HashMap<String, Vec<Vec<u8>>>,
    integrity: String,
    stats: vfs::Stats,
}

/// One power-loss run in a fresh directory: see the module docs.
async fn run(synchronous: Synchronous, when: When, cut: Cut) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let machine = Arc::new(Machine::attach(dir.path()));
    let path = dir.path().join("journal.db");

    // Create and migrate the journal durably first, with a writer that starts and stops:
    // closing checkpoints everything into the database file (fsynced) and deletes the WAL.
    // So the schema cannot be what the cut takes away, and the run starts on an empty WAL
    // that no checkpoint will ever sync (the writer runs with wal_autocheckpoint=0 and
    // this test has no checkpointer).
    let (appender, writer) = Writer::start(options(&path, Synchronous::Full), Arc::new(Metrics::default())).unwrap();
    drop(appender);
    tokio::task::spawn_blocking(move || writer.stop()).await.unwrap();
    assert_eq!(machine.pending_bytes(), 0, "setup left unsynced data behind");

    let (appender, writer) = Writer::start(options(&path, synchronous), Arc::new(Metrics::default())).unwrap();
    if let When::AtSync(n) = when {
        machine.cut_at_sync(n, cut);
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let acks = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (appender, machine, ledger, acks) = (appender.clone(), machine.clone(), ledger.clone(), acks.clone());
            tokio::spawn(async move {
                for i in 0..PER_TASK {
                    let id = format!("T{t}-{i:02}");
                    let issued_on = machine.is_on();
                    let result = appender.append(message(&id)).await;
                    // Checked after the answer arrived. The VFS holds the machine lock across
                    // flush+fsync and the cut takes it too, so "still on" here means the
                    // commit's fsync happened entirely before the cut.
                    let on = machine.is_on();
                    let mut l = ledger.lock().unwrap();
                    if !issued_on {
                        l.issued_after_cut.push(id.clone());
                    }
                    match result {
                        Ok(Appended::Stored(_)) if on => {
                            l.acked.push(id);
                            drop(l);
                            let n = acks.fetch_add(1, Ordering::SeqCst) + 1;
                            if matches!(when, When::AfterAcks(at) if at == n) {
                                machine.cut(cut);
                            }
                        }
                        Ok(Appended::Stored(_)) => l.acked_after_cut.push(id),
                        Ok(Appended::Duplicate(seq)) => panic!("{id}: unique control id reported duplicate of {seq}"),
                        Err(e) if on => panic!("{id}: append failed with the power on: {e}"),
                        // After the cut the ghost writer may read back pages that were never
                        // written and fail; such failures are not ACKs, they are fine.
                        Err(_) => l.failed_after_cut += 1,
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(!machine.is_on(), "the power was never cut ({when:?} never came)");
    // The writer drains, then closes its connection: with WAL that checkpoints and deletes
    // the WAL — on a machine that is off, so none of it reaches the disk.
    drop(appender);
    tokio::task::spawn_blocking(move || writer.stop()).await.unwrap();
    let stats = machine.stats();

    // Reboot: the plain unix VFS, no shim. SQLite recovers from what the WAL holds on disk.
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap();
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut on_disk: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let mut rows = conn.prepare("SELECT control_id, payload FROM journal").unwrap();
    let rows = rows.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))).unwrap();
    for row in rows {
        let (id, payload) = row.unwrap();
        on_disk.entry(id).or_default().push(payload);
    }
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    Outcome { ledger, on_disk, integrity: integrity.join("; "), stats }
}

/// The durability promise: every message ACKed before the power cut is on disk exactly once
/// and intact, and SQLite finds the database sound. Returns what is wrong otherwise.
fn acked_survived(o: &Outcome) -> Result<(), String> {
    let mut problems = Vec::new();
    if o.integrity != "ok" {
        problems.push(format!("integrity_check: {}", o.integrity));
    }
    let mut missing = Vec::new();
    for id in &o.ledger.acked {
        match o.on_disk.get(id).map(Vec::as_slice) {
            None => missing.push(id.as_str()),
            Some([p]) if *p == sealed(id) => {}
            Some([_]) => problems.push(format!("{id}: payload differs")),
            Some(copies) => problems.push(format!("{id}: stored {} times", copies.len())),
        }
    }
    if !missing.is_empty() {
        let shown = &missing[..missing.len().min(10)];
        problems.push(format!("{} of {} ACKed messages lost, e.g. {shown:?}", missing.len(), o.ledger.acked.len()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Checks of the harness itself, whatever `synchronous`: the run was not vacuous (ACKs
/// before the cut, appends after it), every append is accounted for, and nothing issued after
/// the cut — nor anything never issued — is on disk.
fn harness_sane(o: &Outcome, when: When) {
    let l = &o.ledger;
    assert!(!l.acked.is_empty() && !l.issued_after_cut.is_empty(), "{when:?}: vacuous run {l:?}");
    if let When::AfterAcks(n) = when {
        assert!(l.acked.len() >= n, "{l:?}");
    }
    // Each connection has at most one append in flight when the power fails: every other
    // append was either ACKed before the cut or issued after it.
    assert!(l.acked.len() + l.issued_after_cut.len() + TASKS >= TASKS * PER_TASK, "appends unaccounted for: {l:?}");
    for id in &o.ledger.issued_after_cut {
        assert!(!o.on_disk.contains_key(id), "{id} was issued after the power cut, yet it is on disk");
    }
    for id in o.on_disk.keys() {
        let known = id.strip_prefix('T').and_then(|r| r.split_once('-')).is_some_and(|(t, i)| {
            t.parse::<usize>().is_ok_and(|t| t < TASKS) && i.parse::<usize>().is_ok_and(|i| i < PER_TASK)
        });
        assert!(known, "unknown control id on disk: {id:?}");
    }
}

fn report(name: &str, o: &Outcome) {
    let l = &o.ledger;
    let acked_on_disk = l.acked.iter().filter(|id| o.on_disk.contains_key(*id)).count();
    eprintln!(
        "{name}: acked before cut {}, of which on disk {acked_on_disk}; acked after cut {}; failed after cut {}; \
         issued after cut {}; rows on disk {}; integrity {}; vfs {:?}",
        l.acked.len(),
        l.acked_after_cut.len(),
        l.failed_after_cut,
        l.issued_after_cut.len(),
        o.on_disk.values().map(Vec::len).sum::<usize>(),
        o.integrity,
        o.stats,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_loses_nothing_acked() {
    for when in [When::AfterAcks(CUT_AFTER), When::AtSync(6), When::AtSync(20)] {
        let o = run(Synchronous::Full, when, Cut::DropAll).await;
        report(&format!("FULL {when:?}"), &o);
        harness_sane(&o, when);
        if let When::AtSync(_) = when {
            assert!(o.stats.bytes_lost > 0, "no commit was in flight at the cut: {:?}", o.stats);
        }
        if let Err(e) = acked_survived(&o) {
            panic!("synchronous=FULL, cut {when:?}, lost ACKed data:\n{e}");
        }
    }
}

/// Same, but the disk had written back a random subset of the unsynced 512-byte pieces of
/// the commit in flight before dying: a half-written transaction at the WAL tail, which
/// recovery must reject (frame checksums) without losing the synced ones before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_survives_torn_writeback() {
    for (seed, at) in [(1, 5), (2, 9), (3, 14), (4, 22)] {
        let when = When::AtSync(at);
        let o = run(Synchronous::Full, when, Cut::Torn { seed }).await;
        report(&format!("FULL torn seed {seed} {when:?}"), &o);
        harness_sane(&o, when);
        assert!(o.stats.bytes_torn_in > 0 && o.stats.bytes_lost > 0, "not torn: {:?}", o.stats);
        if let Err(e) = acked_survived(&o) {
            panic!("synchronous=FULL, torn cut seed {seed} {when:?}, lost ACKed data:\n{e}");
        }
    }
}

/// NORMAL does not fsync the WAL at commit; with no checkpoint ever run, every frame after
/// the WAL header (synced once when the WAL starts) is still unsynced at the cut. The check
/// that passes for FULL must fail here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_sync_loss_is_detected() {
    let when = When::AfterAcks(CUT_AFTER);
    let o = run(Synchronous::Normal, when, Cut::DropAll).await;
    report("NORMAL", &o);
    harness_sane(&o, when);
    assert!(o.stats.bytes_lost > 0, "the cut lost nothing: {:?}", o.stats);
    // SQLite itself stays consistent: it loses the tail of the WAL, not its mind.
    assert_eq!(o.integrity, "ok");
    match acked_survived(&o) {
        Ok(()) => panic!("synchronous=NORMAL lost no ACKed message: this harness cannot detect loss"),
        Err(e) => eprintln!("NORMAL, as expected: {}", e.lines().next().unwrap_or_default()),
    }
    let lost = o.ledger.acked.iter().filter(|id| !o.on_disk.contains_key(*id)).count();
    assert!(lost >= 1);
}

/// The shim on its own, through a plain rusqlite connection: synced commits survive,
/// unsynced ones are visible until the cut and gone after it, and after the cut nothing —
/// not even closing the connections — changes a byte on disk.
#[test]
fn shim_keeps_synced_and_drops_unsynced_writes() {
    let dir = tempfile::tempdir().unwrap();
    let machine = Machine::attach(dir.path());
    let path = dir.path().join("shim.db");
    let wal = dir.path().join("shim.db-wal");
    let open = || {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        Connection::open_with_flags_and_vfs(&path, flags, VFS_NAME).unwrap()
    };
    let rows = |c: &Connection| -> Vec<String> {
        let mut s = c.prepare("SELECT x FROM t ORDER BY rowid").unwrap();
        s.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };

    let c1 = open();
    let mode: String = c1.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    c1.pragma_update(None, "synchronous", "FULL").unwrap();
    c1.execute_batch("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('synced');").unwrap();
    // FULL: the commit fsynced the WAL, so nothing is left in the page cache.
    assert_eq!(machine.pending_bytes(), 0);
    let syncs = machine.stats().syncs;
    assert!(syncs > 0);

    // OFF: no fsync at all. The commit stays in the page cache...
    c1.pragma_update(None, "synchronous", "OFF").unwrap();
    c1.execute("INSERT INTO t VALUES ('unsynced')", []).unwrap();
    assert!(machine.pending_bytes() > 0);
    assert_eq!(machine.stats().syncs, syncs);
    // ...where every handle on the file sees it, as with a real page cache.
    let c2 = open();
    assert_eq!(rows(&c2), ["synced", "unsynced"]);
    assert!(machine.is_on());

    let disk_before = (std::fs::read(&path).unwrap(), std::fs::read(&wal).unwrap());
    machine.cut(Cut::DropAll);
    assert!(!machine.is_on());
    assert_eq!(machine.pending_bytes(), 0);
    // The ghost connection goes on (it may or may not manage to: it reads back pages that
    // never reached the disk), then closes, trying to checkpoint and delete the WAL.
    let _ = c1.execute("INSERT INTO t VALUES ('ghost')", []);
    drop(c2);
    drop(c1);
    assert!(machine.stats().ops_after_cut > 0, "{:?}", machine.stats());
    let disk_after = (std::fs::read(&path).unwrap(), std::fs::read(&wal).unwrap());
    assert!(disk_before == disk_after, "the disk changed after the power cut");
    // And no new file can be opened on a machine that is off.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    assert!(Connection::open_with_flags_and_vfs(dir.path().join("new.db"), flags, VFS_NAME).is_err());

    // Reboot on the plain VFS.
    let c = Connection::open(&path).unwrap();
    assert_eq!(rows(&c), ["synced"]);
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}

/// The VFS refuses files outside any attached directory instead of silently not simulating.
#[test]
fn shim_refuses_unattached_directories() {
    let dir = tempfile::tempdir().unwrap();
    let _other = Machine::attach(tempfile::tempdir().unwrap().path()); // registers the VFS
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    assert!(Connection::open_with_flags_and_vfs(dir.path().join("x.db"), flags, VFS_NAME).is_err());
}
