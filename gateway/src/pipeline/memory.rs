//! The convert stage's [`Memory`]: what earlier messages left in the journal database
//! (`store::memory`), plus what the batch in hand has learned and not yet committed, so a
//! merge and the next update of the same patient in one batch see each other.

use std::cell::RefCell;
use std::collections::HashMap;

use rusqlite::Connection;

use crate::fhir::memory::{Memory, PatientLink, Relation};
use crate::fhir::model::Identity;
use crate::store::conversion::ConvertBatch;
use crate::store::{memory, Keys};

const LINK: &str = "patient_link";

/// A link learned by a batch: the two records' hashes, the relation, the other's sealed key.
struct NewLink {
    patient: [u8; 32],
    other: [u8; 32],
    relation: Relation,
    other_sealed: Vec<u8>,
}

/// What a batch learned, to be written in its transaction.
#[derive(Default)]
pub(crate) struct Learned {
    links: Vec<NewLink>,
}

impl Learned {
    pub(crate) fn write(&self, batch: &ConvertBatch<'_>) -> rusqlite::Result<()> {
        for l in &self.links {
            batch.remember_link(&l.patient, &l.other, l.relation.code(), &l.other_sealed)?;
        }
        Ok(())
    }
}

/// The journal's memory as one batch sees it.
pub(crate) struct JournalMemory<'c> {
    conn: &'c Connection,
    keys: &'c Keys,
    links: HashMap<[u8; 32], Vec<PatientLink>>,
    learned: Learned,
    /// The first read error: the batch is then abandoned (it rolls back and is retried).
    error: RefCell<Option<rusqlite::Error>>,
}

impl<'c> JournalMemory<'c> {
    pub(crate) fn new(conn: &'c Connection, keys: &'c Keys) -> Self {
        JournalMemory { conn, keys, links: HashMap::new(), learned: Learned::default(), error: RefCell::new(None) }
    }

    /// Remembers both directions of a merge: `survivor` replaces `replaced`.
    pub(crate) fn merged(&mut self, survivor: &Identity, replaced: &Identity) {
        for (from, to, relation) in
            [(survivor, replaced, Relation::Replaces), (replaced, survivor, Relation::ReplacedBy)]
        {
            let (from_hash, to_hash) = (self.hash(LINK, from), self.hash(LINK, to));
            let link = PatientLink { other: to.clone(), relation };
            let known = self.links.entry(from_hash).or_default();
            if !known.contains(&link) {
                known.push(link);
                let other_sealed = self.keys.seal(format!("{}\0{}", to.system, to.value).as_bytes());
                self.learned.links.push(NewLink { patient: from_hash, other: to_hash, relation, other_sealed });
            }
        }
    }

    /// What the batch learned, or the first database error met while reading.
    pub(crate) fn finish(self) -> rusqlite::Result<Learned> {
        match self.error.into_inner() {
            Some(e) => Err(e),
            None => Ok(self.learned),
        }
    }

    fn hash(&self, what: &str, identity: &Identity) -> [u8; 32] {
        self.keys.memory_key(what, &identity.token())
    }

    fn failed(&self, e: rusqlite::Error) {
        self.error.borrow_mut().get_or_insert(e);
    }
}

impl Memory for JournalMemory<'_> {
    fn links(&self, patient: &Identity) -> Vec<PatientLink> {
        let hash = self.hash(LINK, patient);
        let mut out = self.links.get(&hash).cloned().unwrap_or_default();
        let stored = memory::links(self.conn, &hash).unwrap_or_else(|e| {
            self.failed(e);
            Vec::new()
        });
        for row in stored {
            let Some(relation) = Relation::from_code(&row.relation) else { continue };
            // A row that does not open (another key) cannot be followed; it is skipped.
            let Ok(token) = self.keys.open(&row.other_sealed) else { continue };
            let Some((system, value)) = std::str::from_utf8(&token).ok().and_then(|t| t.split_once('\0')) else {
                continue;
            };
            let link = PatientLink { other: Identity { system: system.into(), value: value.into() }, relation };
            if !out.contains(&link) {
                out.push(link);
            }
        }
        out
    }
}
