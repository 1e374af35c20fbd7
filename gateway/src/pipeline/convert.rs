//! The convert stage: after the ACK, turns new journal rows into sealed FHIR bundles in the
//! outbox. One transaction per batch marks the rows converted and writes their bundles (and
//! lanes), so a crash leaves each row either untouched or fully converted. A message that
//! cannot be converted goes to dead letters with a PHI-free reason; the others go on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

use crate::fhir::bundle::{self, Profile};
use crate::fhir::convert;
use crate::fhir::site::SiteMaps;
use crate::ops::metrics::Metrics;
use crate::store::db::{self, OpenError, Synchronous};
use crate::store::{Doorbell, Keys};

/// Rows converted per transaction: small enough that the ingest writer never waits long
/// for the write lock.
const BATCH: usize = 256;
/// After a doorbell, let a few more commits arrive before taking the write lock: one convert
/// transaction (and fsync) per many ingest commits instead of one per commit.
const GATHER: Duration = Duration::from_millis(20);
/// How long to sleep without a doorbell before looking again.
const IDLE: Duration = Duration::from_secs(1);

pub struct ConvertOptions {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    pub site: SiteMaps,
    pub profile: Profile,
    pub keys: Arc<Keys>,
    pub bell: Doorbell,
    pub metrics: Arc<Metrics>,
    /// Rung after a commit that wrote bundles to the outbox (wakes the forwarder).
    pub on_convert: Option<Doorbell>,
}

/// The running stage.
pub struct ConvertStage {
    stop: Arc<AtomicBool>,
    bell: Doorbell,
    thread: JoinHandle<()>,
}

impl ConvertStage {
    pub fn start(opts: ConvertOptions) -> Result<ConvertStage, OpenError> {
        let conn = db::open(&opts.path, None, opts.synchronous)?;
        let stop = Arc::new(AtomicBool::new(false));
        let bell = opts.bell.clone();
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("convert".into())
            .spawn(move || run(conn, opts, stopping))
            .expect("spawn convert stage");
        Ok(ConvertStage { stop, bell, thread })
    }

    /// Finishes the batch in hand and stops.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.bell.ring();
        let _ = self.thread.join();
    }
}

fn run(mut conn: Connection, opts: ConvertOptions, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match step(&mut conn, &opts) {
            Ok(n) if n == BATCH => continue,
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "convert stage: database error; will retry"),
        }
        if opts.bell.wait(IDLE) && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(GATHER);
        }
    }
}

/// What became of one journal row.
enum Outcome {
    Bundles(Vec<Vec<u8>>),
    Dead(String),
}

/// Converts up to [`BATCH`] received rows; returns how many rows it took.
pub fn step(conn: &mut Connection, opts: &ConvertOptions) -> rusqlite::Result<usize> {
    let rows: Vec<(i64, Option<String>, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT seq, lane, payload FROM journal INDEXED BY journal_received
             WHERE state = 'received' ORDER BY seq LIMIT ?1",
        )?
        .query_map([BATCH as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    // Conversion is CPU work: done before taking the write lock.
    let outcomes: Vec<Outcome> = rows.iter().map(|(_, _, sealed)| convert_one(sealed, opts)).collect();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut wrote = false;
    for ((seq, lane, _), outcome) in rows.iter().zip(outcomes) {
        let state = if matches!(outcome, Outcome::Bundles(_)) { "converted" } else { "dead" };
        let changed = tx.execute("UPDATE journal SET state = ?2 WHERE seq = ?1 AND state = 'received'", params![seq, state])?;
        if changed == 0 {
            continue;
        }
        match outcome {
            Outcome::Bundles(parts) => {
                wrote |= !parts.is_empty();
                for (part, sealed) in parts.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO outbox (journal_seq, part, lane, created_at, bundle) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![seq, part as i64, lane, now, sealed],
                    )?;
                }
                opts.metrics.converted.inc();
            }
            Outcome::Dead(reason) => {
                tracing::warn!(seq, %reason, "conversion failed; message moved to dead letters");
                tx.execute(
                    "INSERT INTO dead_letter (journal_seq, stage, reason, created_at) VALUES (?1, 'convert', ?2, ?3)",
                    params![seq, reason, now],
                )?;
                opts.metrics.dead_letters.inc();
            }
        }
    }
    tx.commit()?;
    if wrote {
        if let Some(bell) = &opts.on_convert {
            bell.ring();
        }
    }
    Ok(rows.len())
}

/// Decrypts, converts and bundles one message; errors become PHI-free reasons.
fn convert_one(sealed: &[u8], opts: &ConvertOptions) -> Outcome {
    let Ok(raw) = opts.keys.open(sealed) else {
        return Outcome::Dead("payload does not decrypt under the key file".into());
    };
    let conversion = match convert::convert(&raw, &opts.site) {
        Ok(c) => c,
        // Parse errors carry a table 0357 code and a location, never content.
        Err(e) => return Outcome::Dead(e.to_string()),
    };
    match bundle::bundles(&conversion, opts.profile) {
        Ok(bundles) => Outcome::Bundles(
            bundles.iter().map(|b| opts.keys.seal(&serde_json::to_vec(b).expect("JSON values serialize"))).collect(),
        ),
        Err(_) => Outcome::Dead(format!("bundle could not be built ({})", conversion.report.structure)),
    }
}
