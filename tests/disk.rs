//! The disk: a full filesystem and the disk budget, with the real gateway binary, real
//! sockets, a real (small) tmpfs and the real SQLite files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_tests::*;

const PLAIN: &str = "[[listener]]\nname = \"mllp\"\nbind = \"127.0.0.1:0\"\n";

/// A tmpfs of `size` mounted on a folder for the life of the value.
struct Tmpfs {
    dir: PathBuf,
}

/// Set in a re-run of a test inside its own user and mount namespace.
const IN_NAMESPACE: &str = "GATEWAY_DISK_TEST_IN_NAMESPACE";
/// Set to take the namespace path even where `mount` is permitted (to test that path).
const FORCE_NAMESPACE: &str = "GATEWAY_DISK_TEST_FORCE_NAMESPACE";

impl Tmpfs {
    /// Mounts a tmpfs on `dir`. Without the right to (not root), re-runs the test `name` in
    /// its own user and mount namespace (`unshare --user --map-root-user --mount`), where it
    /// may, and returns `None`: the re-run did the test. Fails, never skips, if neither works.
    fn mount_or_rerun(dir: &Path, size: &str, name: &str) -> Option<Tmpfs> {
        let inside = std::env::var_os(IN_NAMESPACE).is_some();
        let forced = std::env::var_os(FORCE_NAMESPACE).is_some() && !inside;
        std::fs::create_dir_all(dir).unwrap();
        let refusal = if forced {
            "forced".to_string()
        } else {
            match Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output()
            {
                Ok(o) if o.status.success() => return Some(Tmpfs { dir: dir.to_path_buf() }),
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => format!("cannot run `mount`: {e}"),
            }
        };
        assert!(!inside, "mounting a {size} tmpfs failed even in a user and mount namespace: {refusal}");
        let status = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(IN_NAMESPACE, "1")
            .status();
        match status {
            Ok(s) => assert!(
                s.success(),
                "`mount` was refused ({refusal}); re-run in a user and mount namespace failed ({s}): see its output above (if `unshare` itself failed, this test needs root or unprivileged user namespaces)"
            ),
            Err(e) => panic!("`mount` was refused ({refusal}) and `unshare` could not run ({e}): this test needs root or unprivileged user namespaces"),
        }
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.dir).status().is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file there (a gateway that did not exit): detach it.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Writes `path` in 256 KiB steps until the filesystem refuses (ENOSPC); returns its size.
fn fill_until_full(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5Au8; 256 << 10];
    let mut written = 0u64;
    for _ in 0..1024 {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filler: {e}"),
        }
    }
    let _ = f.sync_all();
    written
}

/// Bytes the journal's files take on disk: database, WAL, shared memory.
fn on_disk(db: &Path) -> u64 {
    ["", "-wal", "-shm"].iter().map(|s| std::fs::metadata(format!("{}{s}", db.display())).map_or(0, |m| m.len())).sum()
}

#[test]
fn a_full_filesystem_refuses_messages_then_ingest_resumes_by_itself_when_space_returns() {
    let mut setup = Setup::new(PLAIN);
    // A budget far above the filesystem: the filesystem fills first.
    setup.store_extra = "max_bytes = 1073741824".into();
    setup.extra = "[alerts]\nevaluate_every_ms = 100\n".into();
    let var = setup.dir.path().join("var");
    let Some(_tmpfs) = Tmpfs::mount_or_rerun(
        &var,
        "24m",
        "a_full_filesystem_refuses_messages_then_ingest_resumes_by_itself_when_space_returns",
    ) else {
        return;
    };
    let gw = setup.start();
    let mut c = gw.connect();
    let mut acked = Vec::new();
    for i in 0..20 {
        let id = format!("PRE{i}");
        assert_eq!(msa(&c.call(&adt(&id))), ("AA".into(), id.clone()));
        acked.push(id);
    }

    // Fill the filesystem to the last block, then give back 2 MiB for messages to take.
    let filler = var.join("filler");
    let size = fill_until_full(&filler);
    assert!(size > 8 << 20, "the filler took the tmpfs: {size}");
    std::fs::OpenOptions::new().write(true).open(&filler).unwrap().set_len(size - (2 << 20)).unwrap();

    // Messages until the filesystem is full again: AA while there is room, then refusals.
    let mut refused = Vec::new();
    for i in 0..20_000 {
        let id = format!("FILL{i}");
        let ack = c.call(&adt(&id));
        match msa(&ack).0.as_str() {
            "AA" => acked.push(id),
            "AR" => {
                assert!(ack.contains("Storage full") && err_segment(&ack).unwrap().contains("|207^"), "{ack}");
                refused.push(id);
                break;
            }
            other => panic!("a full disk is AR \"Storage full\", not {other}: {ack}"),
        }
    }
    assert_eq!(refused.len(), 1, "the filesystem filled up");
    // While full: every message is refused (never AA without a commit), health says why.
    for i in 0..50 {
        let id = format!("FULL{i}");
        let ack = c.call(&adt(&id));
        assert_eq!(msa(&ack), ("AR".into(), id.clone()), "{ack}");
        refused.push(id);
    }
    let (status, body) = http_get(gw.admin.unwrap(), "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("filesystem is full"), "{body}");
    assert!(gw.metric("gateway_journal_disk_full_total") >= 1.0);
    let disk_alert = || gw.metric("gateway_alert{name=\"disk_filesystem\"}");
    wait_for("the disk_filesystem alert raised", WAIT, || (disk_alert() == 1.0).then_some(()));

    // Space returns: ACKs resume within a bounded wait, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let mut n = 0;
    let first = wait_for("an AA after space returned", WAIT, || {
        n += 1;
        let id = format!("AFTER{n}");
        match msa(&c.call(&adt(&id))).0.as_str() {
            "AA" => Some(id),
            "AR" => {
                refused.push(id);
                None
            }
            other => panic!("{other}"),
        }
    });
    acked.push(first);
    for i in 0..200 {
        let id = format!("LATER{i}");
        assert_eq!(msa(&c.call(&adt(&id))), ("AA".into(), id.clone()), "acceptance goes on");
        acked.push(id);
    }
    wait_for("/healthz ok", WAIT, || (http_get(gw.admin.unwrap(), "/healthz").0 == 200).then_some(()));
    wait_for("the disk_filesystem alert cleared", WAIT, || (disk_alert() == 0.0).then_some(()));

    // Repeated failures are logged once a minute with a count, not once per message.
    let log = gw.terminate_log();
    let lines = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert!(lines("journal commit failed") <= 2, "commit failures rate-limited:\n{log}");
    assert!(lines("storage full: message refused") <= 2, "refusals rate-limited:\n{log}");
    assert!(lines("journal commit failed") >= 1 && lines("commits succeed again") >= 1, "{log}");
    assert!(lines("alert raised: disk_filesystem") == 1 && lines("alert cleared: disk_filesystem") == 1, "{log}");

    // Every message that got AA is in the journal, once; no refused one is.
    let counts = journal_counts(&setup.db_path());
    for id in &acked {
        assert_eq!(counts.get(id), Some(&1), "{id} was acknowledged");
    }
    for id in &refused {
        assert!(!counts.contains_key(id), "{id} was refused but stored");
    }
}

#[test]
fn a_flood_keeps_the_journal_files_within_the_disk_budget() {
    const MAX: u64 = 4 << 20;
    // The documented margin (README, "Disk budget"): an eighth of the budget (the WAL bound),
    // for what the background writers commit between two checks of the ingest writer.
    const MARGIN: u64 = MAX / 8;
    let mut setup = Setup::new(PLAIN);
    setup.store_extra = format!("max_bytes = {MAX}");
    let gw = setup.start();
    let db = setup.db_path();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak, db) = (stop.clone(), peak.clone(), db.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let total = on_disk(&db);
                if total > peak.fetch_max(total, Ordering::Relaxed) && std::env::var_os("DISK_TEST_TRACE").is_some() {
                    let f = |s: &str| std::fs::metadata(format!("{}{s}", db.display())).map_or(0, |m| m.len());
                    eprintln!("peak {total}: db {} wal {} shm {}", f(""), f("-wal"), f("-shm"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let addr = gw.addr();
    let senders: Vec<_> = (0..16)
        .map(|s| {
            std::thread::spawn(move || {
                let mut c = Mllp::plain(addr);
                let (mut acked, mut refused) = (Vec::new(), 0);
                let deadline = Instant::now() + Duration::from_secs(60);
                for i in 0..100_000 {
                    let id = format!("F{s}N{i}");
                    let ack = c.call(&adt(&id));
                    match msa(&ack).0.as_str() {
                        "AA" => acked.push(id),
                        "AR" => refused += 1,
                        other => panic!("{other}: {ack}"),
                    }
                    // Go on past the first refusals: conversion settles the reserve and
                    // checkpoints empty the WAL, which lets a few more in.
                    if refused >= 20 || Instant::now() > deadline {
                        break;
                    }
                }
                (acked, refused)
            })
        })
        .collect();
    let results: Vec<(Vec<String>, usize)> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    let acked: Vec<String> = results.iter().flat_map(|(a, _)| a.clone()).collect();
    assert!(results.iter().all(|(_, r)| *r >= 20), "every sender reached the budget");
    let during = peak.load(Ordering::Relaxed);
    assert!(
        during <= MAX + MARGIN,
        "during the flood the journal files took {during} bytes on disk against a budget of {MAX} (+{MARGIN} margin)"
    );
    // The background writers finish converting and delivering what was accepted.
    wait_for("conversion", Duration::from_secs(60), || (!journal_states(&db).contains_key("received")).then_some(()));
    wait_for("delivery", Duration::from_secs(60), || (undelivered(&db) == 0).then_some(()));
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!("budget {MAX}, peak on disk {peak}, accepted {}", acked.len());
    assert!(acked.len() > 100, "the flood got in until the budget: {}", acked.len());
    assert!(
        peak <= MAX + MARGIN,
        "journal files took {peak} bytes on disk against a budget of {MAX} (+{MARGIN} margin)"
    );
    assert!(gw.metric("gateway_journal_budget_full_total") >= 1.0);
    let counts = journal_counts(&db);
    assert!(acked.iter().all(|id| counts.get(id) == Some(&1)));
    // At the edge of the budget ingest flips between refused and accepted with every commit:
    // one line a minute each, not one per flip.
    let log = gw.terminate_log();
    let lines = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert!((1..=2).contains(&lines("disk budget reached")), "{log}");
    assert!(lines("commits succeed again") <= 2, "{log}");
    assert!(lines("storage full: message refused") <= 2, "{log}");
}
