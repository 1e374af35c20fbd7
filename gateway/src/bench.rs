//! `gateway bench-ceiling`: the raw SQLite ceiling on this disk — the journal's own insert
//! in WAL + `synchronous=FULL`, committed in groups of the same size as the gateway's, with
//! no network, parsing or encryption, and the same background checkpointing (so the WAL is
//! reused rather than grown, as in the gateway). The ingest benchmark divides by it.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::store::db::{self, Synchronous};
use crate::store::journal::{self, NewRow};
use crate::store::maintenance::{Maintenance, MaintenanceOptions};

/// Inserts `messages` rows of `payload_len` bytes in transactions of `batch`; returns rows/s.
pub fn sqlite_ceiling(path: &Path, batch: usize, messages: usize, payload_len: usize) -> anyhow::Result<f64> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut conn = db::open(path, None, Synchronous::Full)?;
    db::migrate(&mut conn, path)?;
    let checkpoints = Maintenance::start(MaintenanceOptions {
        path: path.to_path_buf(),
        vfs: None,
        synchronous: Synchronous::Full,
        every: Duration::from_secs(1),
        retention: Duration::MAX,
        gate: Default::default(),
        max_bytes: u64::MAX,
        metrics: Default::default(),
    })?;
    let payload = vec![0xA5u8; payload_len];
    let started = Instant::now();
    let mut done = 0;
    while done < messages {
        let n = batch.min(messages - done);
        let tx = conn.transaction()?;
        for i in done..done + n {
            journal::insert(
                &tx,
                &NewRow {
                    received_at: i as i64,
                    listener: "bench",
                    sender: "EPIC|HOSP",
                    control_id: &format!("C{i}"),
                    message_type: "ADT^A01",
                    lane: Some("lane"),
                    payload_hash: &[0u8; 32],
                    payload: &payload,
                },
            )?;
        }
        tx.commit()?;
        done += n;
    }
    let rate = messages as f64 / started.elapsed().as_secs_f64().max(1e-9);
    checkpoints.stop();
    Ok(rate)
}
