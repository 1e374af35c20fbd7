//! `gateway deadletter`: list, show, replay and purge dead letters. Runs beside the daemon
//! on the same database (WAL, synchronous=FULL), so every transaction is short.
//!
//! Every action on a single dead letter writes an `audit` event in the store first: `show`
//! commits its event before decrypting anything (no event, nothing shown); `replay` and
//! `purge` write theirs in the transaction that does the work. `list` shows no PHI and is
//! not audited.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use rusqlite::{Connection, TransactionBehavior};

use crate::config::Config;
use crate::store::audit::{self, Action};
use crate::store::dead_letters;
pub(crate) use crate::store::dead_letters::DeadLetter;
use crate::store::state::{DeadLetterStage, JournalState};
use crate::store::{db, key_guard, Keys};

/// `gateway deadletter <command>`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// List dead letters: id, journal seq, stage, created, control ID, message type and
    /// reason (no PHI).
    List,
    /// Print a dead letter's reason and its HL7 message (after recording an audit event).
    Show { id: i64 },
    /// Re-queue dead letters at their lane's position: a conversion failure goes back to the
    /// convert stage, a delivery failure's outbox rows back to pending (same outbox ids).
    Replay {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Replay every dead letter, oldest first.
        #[arg(long)]
        all: bool,
    },
    /// Delete a dead letter and its outbox rows; the journal row stays `dead`.
    Purge { id: i64 },
    /// Walk the audit trail's hash chain: "ok, N events", or the first edited, deleted or
    /// foreign event (and a non-zero exit).
    AuditVerify,
}

/// Runs a command against the store named by the config file.
pub fn run(config: &Path, actor: Option<String>, command: Command, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let path = config.store.path.get_ref();
    if !path.exists() {
        bail!("journal {} does not exist", path.display());
    }
    // Resolved before anything is opened: an unaudited action must not start.
    let actor = match command {
        Command::List | Command::AuditVerify => String::new(),
        _ => resolve_actor(actor, |k| std::env::var(k).ok())?,
    };
    let mut conn = db::open(path, None, db::Synchronous::Full)?;
    db::migrate(&mut conn, path)?;
    match command {
        Command::List => list(&conn, out).map(|_| ()),
        Command::Show { id } => {
            let key_file = config.store.key_file.get_ref();
            // The CLI never creates a key, nor uses one the store was not sealed with.
            let keys = Keys::load_for_operator(key_file)?;
            if !key_guard::fits_store(&conn, &keys)? {
                bail!("key file {} is not the key the journal {} was sealed with", key_file.display(), path.display());
            }
            show(&mut conn, &keys, &actor, id, out)
        }
        Command::Replay { id: Some(id), .. } => {
            let r = replay(&mut conn, &actor, id)?;
            writeln!(out, "{r}")?;
            Ok(())
        }
        Command::Replay { id: None, .. } => replay_all(&mut conn, &actor, out),
        Command::Purge { id } => {
            let seq = purge(&mut conn, &actor, id)?;
            writeln!(out, "dead letter {id} purged (journal seq {seq} stays dead)")?;
            Ok(())
        }
        Command::AuditVerify => {
            let n = audit::verify(&conn)?.with_context(|| format!("journal {}: audit trail broken", path.display()))?;
            writeln!(out, "ok, {n} events")?;
            Ok(())
        }
    }
}

/// The name the operator claims, for the audit trail: `--actor`, else `$SUDO_USER` (the
/// person behind `sudo`), else `$USER`. The audit event also records the OS identity of the
/// process (uid, euid, login uid), which the operator cannot choose.
pub(crate) fn resolve_actor(explicit: Option<String>, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let actor = explicit
        .or_else(|| env("SUDO_USER").filter(|s| !s.trim().is_empty()))
        .or_else(|| env("USER").filter(|s| !s.trim().is_empty()))
        .ok_or_else(|| anyhow!("cannot tell who is acting (no $SUDO_USER or $USER); pass --actor NAME"))?;
    let actor = actor.trim().to_string();
    if actor.is_empty() || actor.len() > 128 || actor.chars().any(char::is_control) {
        bail!("--actor must be 1 to 128 printable characters");
    }
    Ok(actor)
}

/// All dead letters, oldest first.
pub(crate) fn all(conn: &Connection) -> rusqlite::Result<Vec<DeadLetter>> {
    dead_letters::all(conn)
}

/// One dead letter, or an error naming the id.
pub(crate) fn get(conn: &Connection, id: i64) -> anyhow::Result<DeadLetter> {
    dead_letters::get(conn, id)?.ok_or_else(|| anyhow!("no dead letter {id}"))
}

/// Prints the dead letters; returns how many.
pub(crate) fn list(conn: &Connection, out: &mut dyn Write) -> anyhow::Result<usize> {
    let rows = all(conn)?;
    writeln!(
        out,
        "{:>6}  {:>8}  {:<7}  {:<20}  {:<20}  {:<8}  REASON",
        "ID", "SEQ", "STAGE", "CREATED", "CONTROL_ID", "TYPE"
    )?;
    for d in &rows {
        writeln!(
            out,
            "{:>6}  {:>8}  {:<7}  {:<20}  {:<20}  {:<8}  {}",
            d.id,
            d.journal_seq,
            d.stage,
            time(d.created_at),
            printable(d.control_id.as_deref().unwrap_or("-")),
            printable(d.message_type.as_deref().unwrap_or("-")),
            printable(&d.reason),
        )?;
    }
    writeln!(out, "{} dead letter(s)", rows.len())?;
    Ok(rows.len())
}

/// Records a `show` audit event, commits it, then prints the reason and the decrypted HL7
/// message. If the event cannot be written, nothing is shown.
pub(crate) fn show(
    conn: &mut Connection,
    keys: &Keys,
    actor: &str,
    id: i64,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let d = get(conn, id)?;
    let sealed = dead_letters::sealed_message(conn, d.journal_seq)?
        .ok_or_else(|| anyhow!("dead letter {id}: journal row {} is gone", d.journal_seq))?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    audit::record(&tx, actor, Action::Show, d.id, d.journal_seq)
        .and_then(|_| tx.commit())
        .with_context(|| format!("cannot write the audit event; dead letter {id} not shown"))?;
    let message = keys.open(&sealed).with_context(|| format!("journal seq {}", d.journal_seq))?;
    writeln!(
        out,
        "dead letter {}  journal seq {}  stage {}  created {}",
        d.id,
        d.journal_seq,
        d.stage,
        time(d.created_at)
    )?;
    writeln!(out, "reason: {}", printable(&d.reason))?;
    if let Some(sealed) = crate::store::journal::report(conn, d.journal_seq)?.and_then(|r| r.report) {
        let report = keys.open(&sealed).with_context(|| format!("journal seq {}: report", d.journal_seq))?;
        writeln!(out, "conversion report: {}", String::from_utf8_lossy(&report))?;
    }
    writeln!(out)?;
    let text = String::from_utf8_lossy(&message);
    for segment in text.split(['\r', '\n']).filter(|s| !s.is_empty()) {
        writeln!(out, "{}", printable(segment))?;
    }
    Ok(())
}

/// What [`replay`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Replayed {
    /// The journal row is back to `received`.
    Convert { id: i64, journal_seq: i64 },
    /// This many outbox rows are back to `pending`; `also` lists the message's other dead
    /// letters this covered (and deleted).
    Deliver { id: i64, journal_seq: i64, outbox_rows: usize, also: Vec<i64> },
}

impl std::fmt::Display for Replayed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replayed::Convert { id, journal_seq } => {
                write!(f, "dead letter {id}: journal seq {journal_seq} re-queued for conversion")
            }
            Replayed::Deliver { id, journal_seq, outbox_rows, also } => {
                write!(
                    f,
                    "dead letter {id}: journal seq {journal_seq}, {outbox_rows} bundle(s) re-queued for delivery"
                )?;
                if !also.is_empty() {
                    let ids: Vec<String> = also.iter().map(i64::to_string).collect();
                    write!(f, " (also covers dead letter(s) {})", ids.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

/// Records `action` for each of `ids`, then deletes them (a purge) or marks them replayed (a
/// replay keeps them, so the message failing again is the same dead letter under the same
/// id); the caller's transaction does the rest, so a failed audit write undoes everything.
fn audit_and_delete(tx: &Connection, actor: &str, action: Action, ids: &[i64], seq: i64) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now().as_millisecond();
    for &id in ids {
        audit::record(tx, actor, action, id, seq)
            .with_context(|| format!("cannot write the audit event; dead letter {id} left as is"))?;
        if action == Action::Replay {
            dead_letters::mark_replayed(tx, id, now)?;
        } else {
            dead_letters::delete(tx, id)?;
        }
    }
    Ok(())
}

/// Re-queues one dead letter at its lane's position, deletes it and records a `replay`
/// event, all in one transaction. A delivery failure re-queues all the message's dead
/// bundles, so the message's other `deliver` dead letters are replayed (and audited) with it.
pub(crate) fn replay(conn: &mut Connection, actor: &str, id: i64) -> anyhow::Result<Replayed> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let d = get(&tx, id)?;
    let seq = d.journal_seq;
    let Some(state) = dead_letters::journal_state(&tx, seq)? else {
        bail!("dead letter {id}: journal row {seq} is gone; purge it instead")
    };
    let done = match d.stage {
        DeadLetterStage::Convert => {
            if state != JournalState::Dead {
                bail!("dead letter {id}: journal row {seq} is {state}, not dead; not replayed");
            }
            // The convert stage inserts the bundles anew; leftovers would collide with them.
            let leftovers = dead_letters::bundles(&tx, seq)?;
            if leftovers > 0 {
                bail!("dead letter {id}: journal row {seq} already has {leftovers} outbox row(s); not replayed");
            }
            audit_and_delete(
                &tx,
                actor,
                Action::Replay,
                &dead_letters::of_message(&tx, seq, Some(DeadLetterStage::Convert))?,
                seq,
            )?;
            dead_letters::requeue_for_conversion(&tx, seq)?;
            Replayed::Convert { id, journal_seq: seq }
        }
        DeadLetterStage::Deliver => {
            let ids = dead_letters::of_message(&tx, seq, Some(DeadLetterStage::Deliver))?;
            audit_and_delete(&tx, actor, Action::Replay, &ids, seq)?;
            let n = dead_letters::requeue_dead_bundles(&tx, seq)?;
            if n == 0 {
                if dead_letters::pending_bundles(&tx, seq)? > 0 {
                    bail!("dead letter {id}: journal seq {seq} is still being delivered; try again once it settles");
                }
                bail!("dead letter {id}: journal seq {seq} has no dead outbox rows; not replayed");
            }
            dead_letters::reopen_for_delivery(&tx, seq)?;
            let also = ids.into_iter().filter(|&i| i != id).collect();
            Replayed::Deliver { id, journal_seq: seq, outbox_rows: n, also }
        }
    };
    tx.commit()?;
    Ok(done)
}

/// Replays every dead letter, oldest first, one short transaction each; reports those that
/// could not be replayed and fails if any.
pub(crate) fn replay_all(conn: &mut Connection, actor: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let ids: Vec<i64> = all(conn)?.into_iter().map(|d| d.id).collect();
    let (mut replayed, mut failed) = (0, 0);
    let mut covered = std::collections::HashSet::new();
    for &id in &ids {
        if covered.contains(&id) {
            continue; // replayed with an earlier dead letter of the same message
        }
        match replay(conn, actor, id) {
            Ok(r) => {
                replayed += 1;
                if let Replayed::Deliver { also, .. } = &r {
                    replayed += also.len();
                    covered.extend(also.iter().copied());
                }
                writeln!(out, "{r}")?;
            }
            Err(e) => {
                failed += 1;
                writeln!(out, "dead letter {id}: {e:#}")?;
            }
        }
    }
    writeln!(out, "{replayed} of {} dead letter(s) replayed", ids.len())?;
    if failed > 0 {
        bail!("{failed} dead letter(s) not replayed");
    }
    Ok(())
}

/// Deletes a dead letter (with the message's other dead letters) and its outbox rows and
/// records a `purge` event per dead letter, in one transaction; the journal row stays (or
/// becomes) `dead`. Returns the journal seq.
pub(crate) fn purge(conn: &mut Connection, actor: &str, id: i64) -> anyhow::Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let d = get(&tx, id)?;
    let ids = dead_letters::of_message(&tx, d.journal_seq, None)?;
    audit_and_delete(&tx, actor, Action::Purge, &ids, d.journal_seq)?;
    dead_letters::delete_bundles(&tx, d.journal_seq)?;
    dead_letters::mark_dead(&tx, d.journal_seq)?;
    tx.commit()?;
    Ok(d.journal_seq)
}

/// Unix milliseconds as an RFC 3339 UTC time, to the second.
fn time(ms: i64) -> String {
    jiff::Timestamp::from_second(ms.div_euclid(1000)).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

/// Control characters (terminal escapes from a sender, say) shown as `\xNN`.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\t' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::state::OutboxState;
    use rusqlite::params;

    struct Db {
        dir: tempfile::TempDir,
        conn: Connection,
        keys: Keys,
    }

    const MSG: &[u8] =
        b"MSH|^~\\&|LAB|HOSP|GW|HOSP|20240101120000||ORU^R01|CTRL1|P|2.5\rPID|1||MRN123^^^HOSP||DOE^JANE\r";

    fn db() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut conn = db::open(&path, None, db::Synchronous::Full).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        Db { dir, conn, keys: Keys::from_master(&[7; 32]) }
    }

    impl Db {
        fn journal(&self, control_id: &str, state: JournalState) -> i64 {
            self.conn
                .execute(
                    "INSERT INTO journal (received_at, listener, sender, control_id, message_type, lane, payload_hash, state, payload)
                     VALUES (1700000000000, 'mllp', 'LAB|HOSP', ?1, 'ORU^R01', 'lane1', x'00', ?2, ?3)",
                    params![control_id, state, self.keys.seal(MSG)],
                )
                .unwrap();
            self.conn.last_insert_rowid()
        }
        fn outbox(&self, seq: i64, part: i64, state: OutboxState, attempts: i64) -> i64 {
            self.conn
                .execute(
                    "INSERT INTO outbox (journal_seq, part, lane, created_at, state, attempts, bundle)
                     VALUES (?1, ?2, 'lane1', 1700000000001, ?3, ?4, x'01')",
                    params![seq, part, state, attempts],
                )
                .unwrap();
            self.conn.last_insert_rowid()
        }
        fn dead(&self, seq: i64, stage: DeadLetterStage, reason: &str) -> i64 {
            self.conn
                .execute(
                    "INSERT INTO dead_letter (journal_seq, stage, reason, created_at) VALUES (?1, ?2, ?3, 1700000000002)",
                    params![seq, stage, reason],
                )
                .unwrap();
            self.conn.last_insert_rowid()
        }
        fn audit(&self) -> Vec<audit::Event> {
            let mut v = audit::recent(&self.conn, 100).unwrap();
            v.reverse();
            v
        }
        fn state(&self, seq: i64) -> JournalState {
            self.conn.query_row("SELECT state FROM journal WHERE seq = ?1", [seq], |r| r.get(0)).unwrap()
        }
        fn count(&self, table: &str) -> i64 {
            self.conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
        }
    }

    #[test]
    fn list_shows_ids_stage_reason_and_header_fields_without_phi() {
        let d = db();
        let s1 = d.journal("CTRL1", JournalState::Dead);
        d.dead(s1, DeadLetterStage::Convert, "PID-3 missing");
        let s2 = d.journal("CTRL\x1b[2J", JournalState::Converted);
        d.dead(s2, DeadLetterStage::Deliver, "HTTP 422 OperationOutcome invalid");
        let mut out = Vec::new();
        assert_eq!(list(&d.conn, &mut out).unwrap(), 2);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("CTRL1") && out.contains("ORU^R01") && out.contains("PID-3 missing"), "{out}");
        assert!(out.contains("convert") && out.contains("deliver") && out.contains("2023-11-14T22:13:20Z"), "{out}");
        assert!(out.contains("CTRL\\x1b[2J"), "control characters escaped: {out}");
        assert!(!out.contains("MRN123") && !out.contains("DOE"), "no PHI: {out}");
        assert!(d.audit().is_empty(), "list is not audited");
    }

    #[test]
    fn show_audits_first_then_prints_the_message() {
        let mut d = db();
        let seq = d.journal("CTRL1", JournalState::Dead);
        let id = d.dead(seq, DeadLetterStage::Convert, "PID-3 missing");
        let mut out = Vec::new();
        let keys = Keys::from_master(&[7; 32]);
        show(&mut d.conn, &keys, "alice", id, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("reason: PID-3 missing"), "{out}");
        assert!(out.contains("PID|1||MRN123^^^HOSP||DOE^JANE\n"), "segments on lines: {out}");
        let ev = d.audit();
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].actor.as_str(), ev[0].action.as_str(), ev[0].dead_letter_id, ev[0].journal_seq),
            ("alice", "show", id, seq)
        );
        assert_eq!(d.count("dead_letter"), 1, "show changes nothing else");
        assert!(show(&mut d.conn, &keys, "alice", 999, &mut Vec::new())
            .unwrap_err()
            .to_string()
            .contains("no dead letter 999"));
    }

    #[test]
    fn show_prints_nothing_when_the_audit_write_fails() {
        let mut d = db();
        let seq = d.journal("CTRL1", JournalState::Dead);
        let id = d.dead(seq, DeadLetterStage::Convert, "PID-3 missing");
        d.conn
            .execute_batch(
                "CREATE TRIGGER audit_full BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            )
            .unwrap();
        let mut out = Vec::new();
        let keys = Keys::from_master(&[7; 32]);
        let e = show(&mut d.conn, &keys, "alice", id, &mut out).unwrap_err();
        assert!(format!("{e:#}").contains("not shown"), "{e:#}");
        assert!(out.is_empty(), "nothing shown: {:?}", String::from_utf8_lossy(&out));
        assert!(d.audit().is_empty());
        // Replay and purge refuse too, and change nothing.
        assert!(replay(&mut d.conn, "alice", id).is_err());
        assert!(purge(&mut d.conn, "alice", id).is_err());
        assert_eq!(d.state(seq), JournalState::Dead);
        assert_eq!(d.count("dead_letter"), 1);
    }

    #[test]
    fn replay_convert_requeues_the_journal_row() {
        let mut d = db();
        let seq = d.journal("CTRL1", JournalState::Dead);
        let id = d.dead(seq, DeadLetterStage::Convert, "PID-3 missing");
        assert_eq!(replay(&mut d.conn, "bob", id).unwrap(), Replayed::Convert { id, journal_seq: seq });
        assert_eq!(d.state(seq), JournalState::Received);
        assert_eq!(all(&d.conn).unwrap().len(), 0, "none listed while the replay is pending");
        let ev = d.audit();
        assert_eq!((ev[0].actor.as_str(), ev[0].action.as_str(), ev[0].journal_seq), ("bob", "replay", seq));
        assert!(replay(&mut d.conn, "bob", id).unwrap_err().to_string().contains("no dead letter"));
        assert_eq!(d.audit().len(), 1, "a failed replay leaves no event");
    }

    /// A replayed message that fails again is the same dead letter: `purge <id>` with the id
    /// an operator saw before the replay works.
    #[test]
    fn a_replay_that_fails_again_keeps_the_dead_letter_id() {
        let mut d = db();
        let seq = d.journal("CTRL1", JournalState::Dead);
        let other = d.journal("CTRL2", JournalState::Dead);
        let id = dead_letters::add(&d.conn, seq, DeadLetterStage::Convert, "PID-3 missing", 1).unwrap();
        let other_id = dead_letters::add(&d.conn, other, DeadLetterStage::Convert, "MSH-9 empty", 1).unwrap();
        replay(&mut d.conn, "bob", id).unwrap();
        assert_eq!(all(&d.conn).unwrap().iter().map(|l| l.id).collect::<Vec<_>>(), [other_id]);
        // The convert stage fails it again.
        d.conn.execute("UPDATE journal SET state = 'dead' WHERE seq = ?1", [seq]).unwrap();
        let again = dead_letters::add(&d.conn, seq, DeadLetterStage::Convert, "PID-3 missing", 2).unwrap();
        assert_eq!(again, id, "same id after the replay");
        assert_eq!(all(&d.conn).unwrap().iter().map(|l| l.id).collect::<Vec<_>>(), [id, other_id]);
        assert_eq!(purge(&mut d.conn, "dave", id).unwrap(), seq);
        assert_eq!(all(&d.conn).unwrap().iter().map(|l| l.id).collect::<Vec<_>>(), [other_id]);
        // A new failure of another stage is a new dead letter.
        let deliver = dead_letters::add(&d.conn, other, DeadLetterStage::Deliver, "HTTP 422", 3).unwrap();
        assert!(deliver > other_id);
    }

    #[test]
    fn replay_deliver_keeps_outbox_ids_and_resets_attempts() {
        let mut d = db();
        let seq = d.journal("CTRL1", JournalState::Dead);
        let o1 = d.outbox(seq, 0, OutboxState::Delivered, 1);
        let o2 = d.outbox(seq, 1, OutboxState::Dead, 9);
        let later = d.journal("CTRL2", JournalState::Converted);
        let o3 = d.outbox(later, 0, OutboxState::Pending, 2);
        let id = d.dead(seq, DeadLetterStage::Deliver, "HTTP 422");
        assert_eq!(
            replay(&mut d.conn, "bob", id).unwrap(),
            Replayed::Deliver { id, journal_seq: seq, outbox_rows: 1, also: vec![] }
        );
        let rows: Vec<(i64, OutboxState, i64)> = d
            .conn
            .prepare("SELECT id, state, attempts FROM outbox WHERE lane = 'lane1' ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![(o1, OutboxState::Delivered, 1), (o2, OutboxState::Pending, 0), (o3, OutboxState::Pending, 2)]
        );
        assert_eq!(d.state(seq), JournalState::Converted);
        assert_eq!(all(&d.conn).unwrap().len(), 0, "none listed while the replay is pending");
        assert_eq!(d.audit()[0].action, "replay");
    }

    #[test]
    fn replay_covers_all_dead_bundles_of_the_message_and_resets_entry_progress() {
        let mut d = db();
        let seq = d.journal("CTRL1", JournalState::Dead);
        let o0 = d.outbox(seq, 0, OutboxState::Dead, 4);
        let o1 = d.outbox(seq, 1, OutboxState::Dead, 2);
        d.conn.execute("UPDATE outbox SET entries_dead = 3, entries_done = '[0,1]'", []).unwrap();
        let a = d.dead(seq, DeadLetterStage::Deliver, "HTTP 400");
        let b = d.dead(seq, DeadLetterStage::Deliver, "entry 3: invalid");
        let r = replay(&mut d.conn, "bob", b).unwrap();
        assert_eq!(r, Replayed::Deliver { id: b, journal_seq: seq, outbox_rows: 2, also: vec![a] });
        assert!(r.to_string().contains(&format!("also covers dead letter(s) {a}")), "{r}");
        let rows: Vec<(i64, OutboxState, i64, i64, Option<String>)> = d
            .conn
            .prepare("SELECT id, state, attempts, entries_dead, entries_done FROM outbox ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, vec![(o0, OutboxState::Pending, 0, 0, None), (o1, OutboxState::Pending, 0, 0, None)]);
        assert_eq!(all(&d.conn).unwrap().len(), 0, "none listed while the replay is pending");
        let ev: Vec<(i64, String)> = d.audit().into_iter().map(|e| (e.dead_letter_id, e.action)).collect();
        assert_eq!(ev, vec![(a, "replay".into()), (b, "replay".into())]);

        // Still pending (a batch with a dead entry, not settled yet): refused, nothing changes.
        let c = d.dead(seq, DeadLetterStage::Deliver, "entry 1: invalid");
        let e = replay(&mut d.conn, "bob", c).unwrap_err();
        assert!(e.to_string().contains("still being delivered"), "{e}");
        assert_eq!(d.audit().len(), 2);
        // Purge takes the message's dead letters and bundles.
        d.dead(seq, DeadLetterStage::Deliver, "again");
        purge(&mut d.conn, "dave", c).unwrap();
        assert_eq!((d.count("dead_letter"), d.count("outbox")), (0, 0));
        assert_eq!(d.state(seq), JournalState::Dead);
        assert_eq!(d.audit().iter().filter(|e| e.action == "purge").count(), 4, "the two replayed ones too");
    }

    #[test]
    fn replay_all_goes_on_past_failures() {
        let mut d = db();
        let s1 = d.journal("A", JournalState::Dead);
        let a = d.dead(s1, DeadLetterStage::Convert, "x");
        let s2 = d.journal("B", JournalState::Delivered); // not dead: refused
        let b = d.dead(s2, DeadLetterStage::Convert, "y");
        let s3 = d.journal("C", JournalState::Dead);
        d.outbox(s3, 0, OutboxState::Dead, 3);
        let c = d.dead(s3, DeadLetterStage::Deliver, "z");
        let mut out = Vec::new();
        assert!(replay_all(&mut d.conn, "carol", &mut out).is_err());
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("2 of 3 dead letter(s) replayed"), "{out}");
        let ev: Vec<i64> = d.audit().iter().map(|e| e.dead_letter_id).collect();
        assert_eq!(ev, vec![a, c]);
        assert_eq!(all(&d.conn).unwrap().iter().map(|d| d.id).collect::<Vec<_>>(), vec![b]);
        assert_eq!((d.state(s1), d.state(s3)), (JournalState::Received, JournalState::Converted));
    }

    #[test]
    fn purge_deletes_the_dead_letter_and_its_outbox_rows() {
        let mut d = db();
        let seq = d.journal("CTRL1", JournalState::Dead);
        d.outbox(seq, 0, OutboxState::Dead, 5);
        let other = d.journal("CTRL2", JournalState::Converted);
        d.outbox(other, 0, OutboxState::Pending, 0);
        let id = d.dead(seq, DeadLetterStage::Deliver, "HTTP 400");
        assert_eq!(purge(&mut d.conn, "dave", id).unwrap(), seq);
        assert_eq!(all(&d.conn).unwrap().len(), 0, "none listed while the replay is pending");
        assert_eq!(d.count("outbox"), 1, "other messages' rows stay");
        assert_eq!(d.state(seq), JournalState::Dead);
        let ev = d.audit();
        assert_eq!((ev[0].action.as_str(), ev[0].dead_letter_id, ev[0].journal_seq), ("purge", id, seq));
        assert!(purge(&mut d.conn, "dave", id).is_err());
    }

    #[test]
    fn audit_rows_cannot_be_changed() {
        let mut d = db();
        let seq = d.journal("CTRL1", JournalState::Dead);
        let id = d.dead(seq, DeadLetterStage::Convert, "x");
        purge(&mut d.conn, "erin", id).unwrap();
        assert!(d.conn.execute("UPDATE audit SET actor = 'x'", []).unwrap_err().to_string().contains("append-only"));
        assert!(d.conn.execute("DELETE FROM audit", []).unwrap_err().to_string().contains("append-only"));
        assert_eq!(d.audit()[0].actor, "erin");
    }

    #[test]
    fn actor_comes_from_flag_then_sudo_user_then_user() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(resolve_actor(Some("ops1".into()), env(&[("USER", "root")])).unwrap(), "ops1");
        assert_eq!(resolve_actor(None, env(&[("SUDO_USER", "alice"), ("USER", "root")])).unwrap(), "alice");
        assert_eq!(resolve_actor(None, env(&[("SUDO_USER", ""), ("USER", "bob")])).unwrap(), "bob");
        assert!(resolve_actor(None, env(&[])).is_err());
        assert!(resolve_actor(Some("a\nb".into()), env(&[])).is_err());
    }

    /// A key file, a config file naming it and the journal, and one dead letter.
    fn config_with_a_dead_letter(d: &Db) -> (std::path::PathBuf, i64, i64) {
        use std::os::unix::fs::PermissionsExt;
        let key_file = d.dir.path().join("j.key");
        std::fs::write(&key_file, [7u8; 32]).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let seq = d.journal("CTRL1", JournalState::Dead);
        let id = d.dead(seq, DeadLetterStage::Convert, "PID-3 missing");
        let config = d.dir.path().join("gateway.toml");
        std::fs::write(
            &config,
            "[store]\npath = \"j.db\"\nkey_file = \"j.key\"\n[[listener]]\nname = \"m\"\nbind = \"127.0.0.1:2575\"\n",
        )
        .unwrap();
        (config, seq, id)
    }

    #[test]
    fn run_uses_the_config_file() {
        let d = db();
        let (config, seq, id) = config_with_a_dead_letter(&d);
        let mut out = Vec::new();
        run(&config, None, Command::List, &mut out).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("PID-3 missing"));
        let mut out = Vec::new();
        run(&config, Some("frank".into()), Command::Show { id }, &mut out).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("DOE^JANE"));
        run(&config, Some("frank".into()), Command::Replay { id: None, all: true }, &mut Vec::new()).unwrap();
        assert_eq!(d.state(seq), JournalState::Received);
        assert_eq!(d.audit().iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), vec!["show", "replay"]);
    }

    #[test]
    fn audit_verify_reports_the_count_or_the_first_break_and_show_needs_the_bound_key() {
        let d = db();
        let (config, _, id) = config_with_a_dead_letter(&d);
        let verify = || {
            let mut out = Vec::new();
            run(&config, None, Command::AuditVerify, &mut out)
                .map(|_| String::from_utf8(out).unwrap())
                .map_err(|e| format!("{e:#}"))
        };
        assert_eq!(verify().unwrap(), "ok, 0 events\n");
        run(&config, Some("frank".into()), Command::Show { id }, &mut Vec::new()).unwrap();
        run(&config, Some("frank".into()), Command::Show { id }, &mut Vec::new()).unwrap();
        assert_eq!(verify().unwrap(), "ok, 2 events\n");
        d.conn.execute_batch("DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'x' WHERE id = 1").unwrap();
        let e = verify().unwrap_err();
        assert!(e.contains("audit trail broken") && e.contains("audit event 1 does not match"), "{e}");

        // The store is bound to the [7; 32] key; another one is refused before anything is audited.
        crate::store::settings::put(
            &d.conn,
            crate::store::settings::KEY_CHECK,
            &Keys::from_master(&[7; 32]).check_value(),
        )
        .unwrap();
        std::fs::write(d.dir.path().join("j.key"), [8u8; 32]).unwrap();
        let e = run(&config, Some("frank".into()), Command::Show { id }, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("is not the key"), "{e}");
        assert_eq!(d.audit().len(), 2);
    }
}
