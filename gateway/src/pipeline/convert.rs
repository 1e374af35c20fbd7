//! The convert stage: after the ACK, turns new journal rows into sealed FHIR bundles in the
//! outbox. One transaction per batch marks the rows converted and writes their bundles (and
//! lanes), so a crash leaves each row either untouched or fully converted. A message that
//! cannot be converted goes to dead letters with a PHI-free reason; the others go on.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use crate::fhir::bundle::{self, Profile, TxLimits};
use crate::fhir::convert;
use crate::fhir::memory::{Forgetful, Memory};
use crate::fhir::model::{Identity, Report};
use crate::fhir::site::SiteMaps;
use crate::log_limit::{self, Repeats};
use crate::metrics::Metrics;
use crate::pipeline::memory::JournalMemory;
use crate::stage::{Stage, Stopping};
use crate::store::conversion::{self, ConvertBatch, NewBundle};
use crate::store::db::{self, OpenError, Synchronous};
use crate::store::state::JournalState;
use crate::store::{Doorbell, Keys, WriteGate};

/// Rows converted per transaction: small enough that the ingest writer never waits long
/// for the write lock.
const BATCH: usize = 256;
/// After a doorbell, let a few more commits arrive before taking the write lock: one convert
/// transaction (and fsync) per many ingest commits instead of one per commit.
const GATHER: Duration = Duration::from_millis(20);
/// How long to sleep without a doorbell before looking again.
const IDLE: Duration = Duration::from_secs(1);
/// Database errors of the stage (a full disk fails every pass): one line a minute with a count.
static DB_ERRORS: Repeats = Repeats::new(log_limit::EVERY);

pub(crate) struct ConvertOptions {
    pub(crate) path: PathBuf,
    pub(crate) synchronous: Synchronous,
    pub(crate) site: SiteMaps,
    pub(crate) profile: Profile,
    pub(crate) keys: Arc<Keys>,
    pub(crate) bell: Doorbell,
    pub(crate) metrics: Arc<Metrics>,
    /// The target server's transaction limits (generic profile).
    pub(crate) limits: TxLimits,
    /// Rung after a commit that wrote bundles to the outbox (wakes the forwarder).
    pub(crate) on_convert: Option<Doorbell>,
    pub(crate) gate: Arc<WriteGate>,
}

/// The running stage (a [`Stage`]); stops when stopped or dropped.
pub(crate) struct ConvertStage {
    stage: Stage,
}

impl ConvertStage {
    pub(crate) fn start(opts: ConvertOptions) -> Result<ConvertStage, OpenError> {
        let conn = db::open(&opts.path, None, opts.synchronous)?;
        let bell = opts.bell.clone();
        let stage = Stage::spawn("convert", move || bell.ring(), move |stopping| run(conn, opts, &stopping));
        Ok(ConvertStage { stage })
    }

    /// Finishes the batch in hand and stops.
    pub(crate) fn stop(self) {
        self.stage.stop();
    }
}

fn run(mut conn: Connection, opts: ConvertOptions, stop: &Stopping) {
    let stage = &opts.metrics.stages.convert;
    let _exit = stage.guard();
    let mut failing = false;
    while !stop.requested() {
        stage.beat();
        // Conversions run under their own guard (`convert_message`); this one catches a panic
        // anywhere else in a step, so the stage goes on (the step's transaction rolled back).
        match std::panic::catch_unwind(AssertUnwindSafe(|| step(&mut conn, &opts))) {
            Ok(Ok(n)) => {
                if std::mem::take(&mut failing) {
                    if let Some(repeated) = DB_ERRORS.hit("recovered") {
                        tracing::info!("convert stage: database writes succeed again{repeated}");
                    }
                }
                if n == BATCH {
                    continue;
                }
            }
            Ok(Err(e)) => {
                failing = true;
                let kind = if crate::store::disk::is_disk_full(&e) { "disk full" } else { "database" };
                if let Some(repeated) = DB_ERRORS.hit(kind) {
                    tracing::error!(error = %e, "convert stage: database error; will retry{repeated}");
                }
            }
            Err(_) => {
                stage.restarted();
                tracing::warn!(
                    restarts = stage.restarts(),
                    "convert stage: internal error in a step; restarting the loop"
                );
            }
        }
        if opts.bell.wait(IDLE) && !stop.requested() {
            std::thread::sleep(GATHER);
        }
    }
}

/// Counts a committed message's report in `/metrics` and logs its counts at INFO (a report
/// holds segment IDs, locations and codes, never patient data; `gateway report <seq>` shows
/// it); each unmapped authority is also a WARN, once.
fn count_report(seq: &i64, report: &Report, metrics: &Metrics) {
    let counts = &metrics.convert_report;
    let n = |v: &Vec<String>| v.len() as u64;
    counts.unconsumed_segment.add(n(&report.unconsumed));
    counts.unmapped_code.add(n(&report.unmapped_codes));
    counts.warning.add(n(&report.warnings));
    counts.default_system.add(n(&report.default_systems));
    counts.keyless.add(n(&report.keyless));
    warn_unmapped_authorities(&report.default_systems);
    let items =
        [&report.unconsumed, &report.unmapped_codes, &report.warnings, &report.default_systems, &report.keyless];
    if items.iter().any(|v| !v.is_empty()) {
        tracing::info!(
            seq,
            structure = %report.structure,
            unconsumed_segments = report.unconsumed.len(),
            unmapped_codes = report.unmapped_codes.len(),
            warnings = report.warnings.len(),
            unmapped_authorities = report.default_systems.len(),
            keyless_types = report.keyless.len(),
            "conversion report (gateway report {seq})"
        );
    }
}

/// Logs each assigning authority keyed under the default system once (authority codes are
/// configuration, not patient data): the site should map it.
fn warn_unmapped_authorities(found: &[String]) {
    static SEEN: std::sync::Mutex<Option<std::collections::HashSet<String>>> = std::sync::Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(Default::default);
    for authority in found {
        // Bounded: a feed of random authorities must not grow memory.
        if seen.len() < 1000 && seen.insert(authority.clone()) {
            tracing::warn!(%authority, "assigning authority not in [mapping.identifier_systems]: records keyed under default_identifier_system; map it");
        }
    }
}

/// What became of one journal row.
enum Outcome {
    Bundles(Vec<Sealed>, Box<Report>),
    Dead(String),
}

/// One bundle for the outbox, with what the forwarder needs to pack it unopened.
struct Sealed {
    bytes: Vec<u8>,
    kind: String,
    entries: usize,
}

/// Converts up to `BATCH` received rows; returns how many rows it took.
pub(crate) fn step(conn: &mut Connection, opts: &ConvertOptions) -> rusqlite::Result<usize> {
    let rows = conversion::received(conn, BATCH)?;
    // Conversion is CPU work: done before taking the write lock, in journal order, each
    // message seeing what the ones before it taught the memory.
    let mut memory = JournalMemory::new(conn, &opts.keys);
    let outcomes: Vec<Outcome> = rows.iter().map(|row| convert_one(&row.payload, opts, &mut memory)).collect();
    let learned = memory.finish()?;
    let now = crate::store::now_ms();
    let _pass = opts.gate.background();
    let batch = ConvertBatch::begin(conn, now)?;
    learned.write(&batch)?;
    let mut wrote = false;
    // Counted after the commit: a rolled-back batch converted nothing.
    let (mut converted, mut dead, mut done) = (0, 0, 0);
    let mut reports = Vec::new();
    for (row, outcome) in rows.iter().zip(outcomes) {
        let seq = row.seq;
        let state = match &outcome {
            // Nothing to send (e.g. a message with no resources in batch form): done.
            Outcome::Bundles(parts, _) if parts.is_empty() => JournalState::Delivered,
            Outcome::Bundles(..) => JournalState::Converted,
            Outcome::Dead(_) => JournalState::Dead,
        };
        if !batch.leave_received(seq, state)? {
            continue;
        }
        // Delivered (nothing to send) and dead rows are no longer pending.
        if state != JournalState::Converted {
            done += 1;
        }
        match outcome {
            Outcome::Bundles(parts, report) => {
                // Sealed like the message: an unmapped "code" may be a name a sender put in
                // a coded field.
                let json = serde_json::to_vec(&report).unwrap_or_default();
                batch.set_report(seq, &opts.keys.seal(&json))?;
                reports.push((seq, report));
                wrote |= !parts.is_empty();
                for (part, sealed) in parts.iter().enumerate() {
                    batch.add_bundle(&NewBundle {
                        journal_seq: seq,
                        part,
                        lane: row.lane.as_deref(),
                        sealed: &sealed.bytes,
                        kind: &sealed.kind,
                        entries: sealed.entries,
                    })?;
                }
                converted += 1;
            }
            Outcome::Dead(reason) => {
                tracing::warn!(seq, %reason, "conversion failed; message moved to dead letters");
                batch.add_dead_letter(seq, &reason)?;
                dead += 1;
            }
        }
    }
    batch.commit()?;
    for (seq, report) in &reports {
        count_report(seq, report, &opts.metrics);
    }
    opts.metrics.converted.add(converted);
    opts.metrics.dead_letters.add(dead);
    opts.metrics.journal_depth.add(-done);
    if wrote {
        if let Some(bell) = &opts.on_convert {
            bell.ring();
        }
    }
    Ok(rows.len())
}

/// Decrypts, converts and bundles one message; errors become PHI-free reasons.
fn convert_one(sealed: &[u8], opts: &ConvertOptions, memory: &mut JournalMemory<'_>) -> Outcome {
    let Ok(raw) = opts.keys.open(sealed) else {
        return Outcome::Dead("payload does not decrypt under the key file".into());
    };
    match convert_message_with(&raw, &opts.site, opts.profile, opts.limits, memory) {
        Ok(converted) => {
            for (survivor, replaced) in &converted.merges {
                memory.merged(survivor, replaced);
            }
            let parts = converted
                .bundles
                .into_iter()
                .map(|b| Sealed { bytes: opts.keys.seal(&b.json), kind: b.kind.to_string(), entries: b.entries })
                .collect();
            Outcome::Bundles(parts, Box::new(converted.report))
        }
        Err(reason) => Outcome::Dead(reason),
    }
}

/// One serialized bundle of a message.
#[derive(Debug)]
pub struct Bundle {
    pub(crate) json: Vec<u8>,
    /// `transaction` or `batch`.
    pub(crate) kind: &'static str,
    pub(crate) entries: usize,
}

/// What the convert stage does with one message's plaintext: convert within the site's
/// budget and bundle for `profile`. Never panics: a panic anywhere in the converter becomes a
/// dead-letter reason (the panic hook logs where, never the message), so no input can stop the
/// stage. `Err` is a PHI-free reason. Transactions fit under the default limits.
pub fn convert_message(raw: &[u8], site: &SiteMaps, profile: Profile) -> Result<Vec<Bundle>, String> {
    convert_message_with(raw, site, profile, TxLimits::default(), &Forgetful).map(|c| c.bundles)
}

/// A message's bundles and what the memory should learn from it.
#[derive(Debug)]
pub struct Converted {
    pub bundles: Vec<Bundle>,
    /// (surviving, replaced) record keys of the merges it makes.
    pub merges: Vec<(Identity, Identity)>,
    /// What the conversion did not map (no patient data).
    pub report: Report,
}

/// [`convert_message`] with what earlier messages left in `memory`.
pub fn convert_message_with(
    raw: &[u8],
    site: &SiteMaps,
    profile: Profile,
    limits: TxLimits,
    memory: &dyn Memory,
) -> Result<Converted, String> {
    let work = || -> Result<Converted, String> {
        // Parse and budget errors carry codes, counts and locations, never content.
        let conversion = convert::convert_with(raw, site, memory).map_err(|e| failure_reason(raw, &e))?;
        let bundles = bundle::bundles_within(&conversion, profile, limits)
            .map_err(|_| format!("bundle could not be built ({})", conversion.report.structure))?;
        let bundles = bundles
            .iter()
            .map(|b| {
                let json = serde_json::to_vec(b).map_err(|_| "bundle could not be serialized".to_string())?;
                let kind = if b["type"] == "batch" { "batch" } else { "transaction" };
                Ok(Bundle { json, kind, entries: b["entry"].as_array().map_or(0, Vec::len) })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Converted { bundles, merges: conversion.merges, report: conversion.report })
    };
    guarded(work)
}

/// The dead-letter reason of a conversion error: for a type the converter has no map for, the
/// reason ingest gives such a message when a listener stores it (a replayed "unsupported"
/// dead letter stays one); otherwise the error (codes, counts and locations, never content).
fn failure_reason(raw: &[u8], e: &convert::ConvertError) -> String {
    use crate::hl7::error::ErrorCode;
    match e {
        convert::ConvertError::Parse(p)
            if matches!(p.code, ErrorCode::UnsupportedMessageType | ErrorCode::UnsupportedEventCode) =>
        {
            let message_type = crate::hl7::msh::parse(raw).map(|h| h.message_type()).unwrap_or_default();
            crate::store::dead_letters::unsupported_reason(crate::metrics::by_type::label(&message_type), p.code.code())
        }
        _ => e.to_string(),
    }
}

/// How the reason for a conversion that panicked starts (the fuzz target looks for it).
pub const INTERNAL_ERROR: &str = "internal error in the converter";

/// Runs `work`, turning a panic into a reason: the convert thread lives on.
fn guarded<T>(work: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err(format!("{INTERNAL_ERROR} (a defect: please report the control ID)")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    fn stage(dir: &std::path::Path, profile: Profile) -> (Connection, ConvertOptions) {
        let path = dir.join("j.db");
        let mut conn = db::open(&path, None, Synchronous::Full).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        let opts = ConvertOptions {
            path,
            synchronous: Synchronous::Full,
            site: SiteMaps::empty(jiff::tz::TimeZone::UTC),
            profile,
            limits: TxLimits::default(),
            keys: Arc::new(Keys::from_master(&[3; 32])),
            bell: Doorbell::default(),
            on_convert: None,
            gate: Arc::default(),
            metrics: Arc::new(Metrics::default()),
        };
        (conn, opts)
    }

    fn journal(conn: &Connection, opts: &ConvertOptions, control_id: &str, raw: &[u8]) -> i64 {
        conn.execute(
            "INSERT INTO journal (received_at, listener, sender, control_id, message_type, lane, payload_hash, payload)
             VALUES (0, 'l', 'A|B', ?1, 'ADT^A08', 'lane1', x'00', ?2)",
            params![control_id, opts.keys.seal(raw)],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    #[test]
    fn rows_become_outbox_bundles_dead_letters_or_done_in_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, opts) = stage(dir.path(), Profile::Salesforce);
        let adt = b"MSH|^~\\&|A|B|C|D|20260101120000-0500||ADT^A08^ADT_A01|C1|P|2.5.1\rEVN|A08|20260101120000-0500\rPID|1||M1^^^H^MR||DOE^JO\r";
        let empty = b"MSH|^~\\&|A|B|C|D|20260101120000-0500||ADT^A08^ADT_A01|C2|P|2.5.1\rEVN|A08|20260101120000-0500\r";
        let poison = b"MSH|^~\\&|A|B|C|D|20260101120000-0500||ADT^A99|C3|P|2.5.1\rPID|1||M1\r";
        let seqs =
            [journal(&conn, &opts, "C1", adt), journal(&conn, &opts, "C2", empty), journal(&conn, &opts, "C3", poison)];
        assert_eq!(step(&mut conn, &opts).unwrap(), 3);
        let state = |seq: i64| -> JournalState {
            conn.query_row("SELECT state FROM journal WHERE seq = ?1", [seq], |r| r.get(0)).unwrap()
        };
        assert_eq!(
            [state(seqs[0]), state(seqs[1]), state(seqs[2])],
            [JournalState::Converted, JournalState::Delivered, JournalState::Dead]
        );
        type Row = (i64, Option<String>, Vec<u8>, String, i64);
        let outbox: Vec<Row> = conn
            .prepare("SELECT journal_seq, lane, bundle, kind, entries FROM outbox ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(outbox.len(), 1, "one salesforce batch for the ADT, none for the empty message");
        assert_eq!((outbox[0].0, outbox[0].1.as_deref()), (seqs[0], Some("lane1")));
        let bundle: serde_json::Value = serde_json::from_slice(&opts.keys.open(&outbox[0].2).unwrap()).unwrap();
        assert_eq!(bundle["type"], "batch");
        assert_eq!(outbox[0].3, "batch", "the type is stored beside the sealed bundle");
        assert_eq!(outbox[0].4 as usize, bundle["entry"].as_array().unwrap().len());
        let reason: String =
            conn.query_row("SELECT reason FROM dead_letter WHERE journal_seq = ?1", [seqs[2]], |r| r.get(0)).unwrap();
        // The reason ingest gives a stored unsupported message: a replayed one stays "unsupported".
        assert_eq!(reason, "unsupported: no converter for message type ADT^A99 (201)");
        assert_eq!(step(&mut conn, &opts).unwrap(), 0, "nothing left to convert");
    }

    #[test]
    fn a_panic_in_conversion_becomes_a_reason() {
        assert_eq!(guarded(|| Ok::<_, String>(1)), Ok(1));
        let r: Result<(), String> = guarded(|| panic!("index out of range"));
        assert!(r.unwrap_err().starts_with(INTERNAL_ERROR));
    }

    #[test]
    fn messages_that_stopped_the_stage_are_converted_or_dead_lettered() {
        let site = SiteMaps::empty(jiff::tz::TimeZone::UTC);
        // An AIS duration past any time span: `jiff::Span::minutes` panicked on it.
        let siu = b"MSH|^~\\&|A|B|C|D|20261115080000-0500||SIU^S12^SIU_S12|S1|P|2.5.1\rSCH|1|F1|||||||30|MIN\rPID|1||M1^^^H^MR||DOE^JO\rRGS|1\rAIS|1||CONSULT^Consult|202611150900-0500|||99999999999|MIN\r";
        let bundles = convert_message(siu, &site, Profile::Generic).expect("converted without the impossible end time");
        assert_eq!(bundles.len(), 1);
        let mut pid =
            b"MSH|^~\\&|A|B|C|D|20260101120000||ADT^A08^ADT_A01|C1|P|2.5.1\rEVN|A08|20260101120000\rPID|1||".to_vec();
        for i in 0..=site.budget.max_repetitions {
            pid.extend_from_slice(format!("{i}^^^H^MR~").as_bytes());
        }
        pid.extend_from_slice(b"\r");
        let reason = convert_message(&pid, &site, Profile::Generic).unwrap_err();
        assert!(reason.contains("max_repetitions") && reason.contains("1002 repetitions"), "{reason}");
    }

    /// The opened bundles of journal row `seq`, in order.
    fn bundles_of(conn: &Connection, opts: &ConvertOptions, seq: i64) -> Vec<serde_json::Value> {
        conn.prepare("SELECT bundle FROM outbox WHERE journal_seq = ?1 ORDER BY id")
            .unwrap()
            .query_map([seq], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|b| serde_json::from_slice(&opts.keys.open(&b.unwrap()).unwrap()).unwrap())
            .collect()
    }

    fn entries(bundles: &[serde_json::Value]) -> Vec<serde_json::Value> {
        bundles.iter().flat_map(|b| b["entry"].as_array().cloned().unwrap_or_default()).collect()
    }

    const MERGE: &[u8] = b"MSH|^~\\&|A|H|C|D|20260301000000||ADT^A40^ADT_A39|M1|P|2.5.1\rEVN|A40|20260301000000\rPID|1||S1^^^H^MR||NEW^NAME\rMRG|O1^^^H^MR||||||OLD^NAME\r";
    const UPDATE: &[u8] = b"MSH|^~\\&|A|H|C|D|20260302000000||ADT^A08^ADT_A01|U1|P|2.5.1\rEVN|A08|20260302000000\rPID|1||S1^^^H^MR||NEW^NAME||||||^PRN^PH^^^555^1234567\r";

    #[test]
    fn a_merge_is_remembered_by_later_updates_in_the_same_and_later_batches_and_across_restarts() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut conn, opts) = stage(tmp.path(), Profile::Generic);
        journal(&conn, &opts, "M1", MERGE);
        let same_batch = journal(&conn, &opts, "U1", UPDATE);
        assert_eq!(step(&mut conn, &opts).unwrap(), 2);
        drop(conn);
        // A restart: the memory is in the journal database, not in the process.
        let (mut conn, opts) = stage(tmp.path(), Profile::Generic);
        let later = journal(
            &conn,
            &opts,
            "U2",
            &UPDATE.to_vec().iter().map(|&b| if b == b'7' { b'8' } else { b }).collect::<Vec<u8>>(),
        );
        assert_eq!(step(&mut conn, &opts).unwrap(), 1);
        for seq in [same_batch, later] {
            let entries = entries(&bundles_of(&conn, &opts, seq));
            let patients: Vec<&serde_json::Value> =
                entries.iter().filter(|e| e["resource"]["resourceType"] == "Patient").collect();
            assert_eq!(patients.len(), 2, "row {seq}: the survivor and the merged record it links to");
            let survivor = patients[0];
            let link = &survivor["resource"]["link"][0];
            assert_eq!(link["type"], "replaces", "row {seq}");
            assert_eq!(link["other"]["reference"], patients[1]["fullUrl"]);
            // The merged record is only created if the server lost it, never overwritten.
            assert_eq!(patients[1]["request"]["method"], "POST");
            assert!(patients[1]["request"]["ifNoneExist"].as_str().unwrap().ends_with("|O1"));
        }
    }

    #[test]
    fn salesforce_marks_a_lab_patient_create_only_under_the_adt_placeholder() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut conn, opts) = stage(tmp.path(), Profile::Salesforce);
        let adt = journal(&conn, &opts, "U1", UPDATE);
        step(&mut conn, &opts).unwrap();
        let oru = b"MSH|^~\\&|LAB|H|C|D|20260303000000||ORU^R01^ORU_R01|L1|P|2.5.1\rPID|1||S1^^^H^MR||NEW^NAME\rOBR|1|P1^EHR|F1^LAB|2951-2^Sodium^LN\rOBX|1|NM|2951-2^Sodium^LN||140|mmol/L|||||F\r";
        let lab = journal(&conn, &opts, "L1", oru);
        step(&mut conn, &opts).unwrap();
        let adt_entries = entries(&bundles_of(&conn, &opts, adt));
        let adt_patient = adt_entries.iter().find(|e| e["resource"]["resourceType"] == "Patient").unwrap();
        assert!(adt_patient["request"].get("ifNoneExist").is_none(), "an ADT writes its patient");
        let lab_entries = entries(&bundles_of(&conn, &opts, lab));
        let lab_patient = lab_entries.iter().find(|e| e["resource"]["resourceType"] == "Patient").unwrap();
        // The same placeholder (so the forwarder finds the ADT's server id), create-only: the
        // forwarder leaves it out once the server holds the patient.
        assert_eq!(lab_patient["fullUrl"], adt_patient["fullUrl"]);
        assert!(lab_patient["request"]["ifNoneExist"].is_string());
        let obs = lab_entries.iter().find(|e| e["resource"]["resourceType"] == "Observation").unwrap();
        assert_eq!(obs["resource"]["subject"]["reference"], adt_patient["fullUrl"]);
    }

    #[test]
    fn the_report_is_kept_with_the_row_and_counted_by_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut conn, opts) = stage(tmp.path(), Profile::Generic);
        let raw = b"MSH|^~\\&|A|H|C|D|20260302000000||ADT^A08^ADT_A01|U1|P|2.5.1\rEVN|A08|20260302000000\rPID|1||S1^^^UNMAPPED^MR||DOE^JO||2026139\rZXX|1|site data\r";
        let seq = journal(&conn, &opts, "U1", raw);
        step(&mut conn, &opts).unwrap();
        let row = crate::store::journal::report(&conn, seq).unwrap().unwrap();
        let report: serde_json::Value = serde_json::from_slice(&opts.keys.open(&row.report.unwrap()).unwrap()).unwrap();
        assert_eq!(report["structure"], "ADT_A01");
        assert_eq!(report["unconsumed"], serde_json::json!(["3:ZXX"]));
        assert_eq!(report["default_systems"], serde_json::json!(["UNMAPPED -> urn:hl7v2-gateway:authority:UNMAPPED"]));
        // Located: the invalid birth date is reported at PID-7, without its value.
        let warnings = report["warnings"].as_array().unwrap();
        assert!(warnings.iter().any(|w| w.as_str().unwrap().starts_with("2:PID-7: invalid")), "{warnings:?}");
        assert!(!report.to_string().contains("2026139") && !report.to_string().contains("DOE"), "no patient data");
        let counts = &opts.metrics.convert_report;
        assert_eq!((counts.unconsumed_segment.get(), counts.default_system.get()), (1, 1));
        assert_eq!(counts.warning.get(), warnings.len() as u64);
    }
}
