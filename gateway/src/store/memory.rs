//! The convert stage's memory between messages (`fhir::memory`): the links merges made
//! between patient records. Rows are found by keyed hashes ([`Keys::memory_key`]); the linked
//! record's key is kept sealed, like every identifier in the journal.
//!
//! [`Keys::memory_key`]: super::crypto::Keys::memory_key

use rusqlite::{params, Connection};

use super::conversion::ConvertBatch;

/// A link from a patient record: the relation code and the other record's sealed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLink {
    pub relation: String,
    pub other_sealed: Vec<u8>,
}

/// The links recorded from the record hashed `patient`.
pub fn links(conn: &Connection, patient: &[u8; 32]) -> rusqlite::Result<Vec<StoredLink>> {
    conn.prepare_cached("SELECT relation, other_sealed FROM patient_link WHERE patient = ?1 ORDER BY other, relation")?
        .query_map([&patient[..]], |r| Ok(StoredLink { relation: r.get(0)?, other_sealed: r.get(1)? }))?
        .collect()
}

impl ConvertBatch<'_> {
    /// Records a link from `patient` to `other` (hashes); a link already known is kept.
    pub fn remember_link(
        &self,
        patient: &[u8; 32],
        other: &[u8; 32],
        relation: &str,
        other_sealed: &[u8],
    ) -> rusqlite::Result<()> {
        self.tx()
            .prepare_cached(
                "INSERT OR IGNORE INTO patient_link (patient, other, relation, other_sealed) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![&patient[..], &other[..], relation, other_sealed])
            .map(drop)
    }
}
