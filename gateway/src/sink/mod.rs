//! The embedded FHIR sink: the default target when `[cloud] url` is absent, a stand-in FHIR
//! R4 server on its own SQLite database (`<[cloud] sink>/fhir.db`; not the journal).
//!
//! It answers the requests the gateway sends as a FHIR server does (see `process` for the
//! rules): `transaction` all-or-nothing and `batch` entry by entry, `urn:uuid` fullUrls
//! resolved, `PUT Type/id` upserts, conditional updates and `ifNoneExist` creates by
//! identifier, DELETE, and versions (`meta.versionId`, `meta.lastUpdated`; an unchanged
//! update makes none). Every write is one index lookup and one row per resource, so the cost
//! of a Bundle does not grow with what is stored.
//!
//! # Layout
//! - `db`: the schema and every SQL statement of the sink.
//! - `request`: a Bundle entry read as a request; entry errors and OperationOutcomes.
//! - `search`: conditional searches (`identifier`, `_id`) parsed and matched.
//! - `references`: `fullUrl` → `Type/id` rewriting.
//! - `process`: a Bundle carried out in one SQLite transaction.
//! - [`export`]: `gateway sink export`, NDJSON per resource type.

mod db;
pub mod export;
mod process;
mod references;
mod request;
mod search;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;
use serde_json::Value;

pub use db::{OpenError, ReadError};

use crate::forward::client::{Response, SendError, Target};

/// The sink's database, opened for the forwarder (read-write) or for reading.
pub struct Sink {
    dir: PathBuf,
    /// One connection: SQLite has one writer at a time anyway, and each Bundle is one
    /// short transaction.
    conn: Mutex<Connection>,
}

impl Sink {
    /// Opens the sink in `dir` for writing, creating the folder and the database.
    pub fn open(dir: &Path) -> Result<Sink, OpenError> {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Folder { path: dir.display().to_string(), source })?;
        Ok(Sink { dir: dir.to_path_buf(), conn: Mutex::new(db::open(dir, true)?) })
    }

    /// Opens an existing sink read-only (beside a running gateway: WAL readers do not block it).
    pub fn open_read(dir: &Path) -> Result<Sink, OpenError> {
        Ok(Sink { dir: dir.to_path_buf(), conn: Mutex::new(db::open(dir, false)?) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every stored resource of `kind` (current versions), in the order they were created.
    pub fn resources(&self, kind: &str) -> Result<Vec<Value>, ReadError> {
        let mut out = Vec::new();
        db::each_json(&self.conn(), kind, &mut |json| {
            out.push(serde_json::from_str(json)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with the stored JSON text of every `kind` resource, in creation order.
    pub fn each_json(&self, kind: &str, f: &mut dyn FnMut(&str) -> Result<(), ReadError>) -> Result<(), ReadError> {
        db::each_json(&self.conn(), kind, f)
    }

    /// One resource by type and id.
    pub fn read(&self, kind: &str, id: &str) -> rusqlite::Result<Option<Value>> {
        Ok(db::get(&self.conn(), kind, id)?.and_then(|s| serde_json::from_str(&s.json).ok()))
    }

    /// How many resources of `kind` are stored.
    pub fn count(&self, kind: &str) -> rusqlite::Result<u64> {
        db::count(&self.conn(), kind)
    }

    /// The resource types stored, sorted.
    pub fn types(&self) -> rusqlite::Result<Vec<String>> {
        db::types(&self.conn())
    }

    /// Carries out one Bundle (`transaction` or `batch`) and returns the HTTP status and body.
    fn handle(&self, bundle: &[u8]) -> rusqlite::Result<process::Answer> {
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        process::process(&mut self.conn(), bundle, &now)
    }
}

impl Target for Sink {
    fn send(&self, bundle: &[u8]) -> Result<Response, SendError> {
        match self.handle(bundle) {
            Ok(answer) => Ok(Response {
                status: answer.status,
                body: answer.body.to_string().into_bytes(),
                ..Response::default()
            }),
            // Only the error's kind: SQLite's messages do not quote bound values, but the
            // kind is all an operator needs ("disk full", "I/O error").
            Err(e) => Err(SendError::Connect(format!("sink database: {}", sqlite_kind(&e)))),
        }
    }
}

fn sqlite_kind(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(code, _) => format!("{:?}", code.code),
        _ => "error".to_string(),
    }
}

#[cfg(test)]
mod tests;
