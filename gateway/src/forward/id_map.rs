//! The id map as the workers share it: a cache over `store::ids` with its own connection.
//! Rows are written before the answer's verdict is recorded, so after a crash a resent entry
//! finds its server id (and is a `PUT`, not a second create). It also keeps, in memory and
//! for a while, what the lookup's searches ahead found for records it does not name yet.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::store::db::{self, OpenError, Synchronous};
use crate::store::ids::{self, Change, Known};
use crate::store::{Keys, WriteGate};

const WHAT: &str = "server_resource";

pub(crate) struct IdMap {
    conn: Mutex<Connection>,
    keys: Arc<Keys>,
    gate: Arc<WriteGate>,
    cache: Mutex<HashMap<[u8; 32], Option<Known>>>,
    /// Placeholders a request in flight creates (no server id yet).
    creating: Mutex<HashSet<String>>,
    /// What searches ahead (`lookup`) found for keys the id map does not name, and when.
    searched: Mutex<HashMap<[u8; 32], (Instant, Searched)>>,
}

/// What a search ahead found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Searched {
    /// No server record.
    Absent,
    /// Several records, or no usable answer: the part's own request searches again (and
    /// refuses the entry, or waits), rather than searching ahead once more.
    Unsettled,
}

/// How long a search ahead's answer is kept: long enough for the part it was made for to
/// come round again, short enough that the window a record created elsewhere could be
/// duplicated in stays small.
const SEARCHED_FOR: Duration = Duration::from_secs(120);

impl IdMap {
    pub(crate) fn open(
        path: &Path,
        sync: Synchronous,
        keys: Arc<Keys>,
        gate: Arc<WriteGate>,
    ) -> Result<Self, OpenError> {
        let conn = db::open(path, None, sync)?;
        Ok(IdMap {
            conn: Mutex::new(conn),
            keys,
            gate,
            cache: Mutex::new(HashMap::new()),
            creating: Mutex::new(HashSet::new()),
            searched: Mutex::new(HashMap::new()),
        })
    }

    /// The keyed hash of a placeholder (`urn:uuid:…`).
    pub(crate) fn key(&self, placeholder: &str) -> [u8; 32] {
        self.keys.memory_key(WHAT, placeholder)
    }

    /// What the server acknowledged for `placeholder`; a read error counts as unknown (the
    /// entry is then written, which is always safe).
    pub(crate) fn known(&self, placeholder: &str) -> Option<Known> {
        let key = self.key(placeholder);
        if let Some(hit) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return hit.clone();
        }
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let row = ids::lookup(&conn, &key).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "forwarder: cannot read the id map");
            None
        });
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, row.clone());
        row
    }

    /// Claims the creation of every placeholder of `creates`, or of none when another request
    /// has one under way.
    pub(crate) fn claim(&self, creates: &[String]) -> bool {
        let mut creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        if creates.iter().any(|p| creating.contains(p)) {
            return false;
        }
        creating.extend(creates.iter().cloned());
        true
    }

    /// Ends claims (after the answer was learnt).
    pub(crate) fn release(&self, claimed: &HashSet<String>) {
        let mut creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        for p in claimed {
            creating.remove(p);
        }
    }

    /// What a search ahead found for `placeholder` lately.
    pub(crate) fn searched(&self, placeholder: &str) -> Option<Searched> {
        let searched = self.searched.lock().unwrap_or_else(|e| e.into_inner());
        searched.get(&self.key(placeholder)).filter(|(at, _)| at.elapsed() < SEARCHED_FOR).map(|(_, what)| *what)
    }

    /// Remembers what a search ahead found for these placeholders; what expired is forgotten
    /// (so the map holds at most what was searched in `SEARCHED_FOR`).
    pub(crate) fn note_searched<'p>(&self, placeholders: impl Iterator<Item = &'p str>, what: Searched) {
        let now = Instant::now();
        let mut searched = self.searched.lock().unwrap_or_else(|e| e.into_inner());
        searched.retain(|_, (at, _)| now.duration_since(*at) < SEARCHED_FOR);
        searched.extend(placeholders.map(|p| (self.key(p), (now, what))));
    }

    /// Stores `changes`, then caches them; on a write error the cache forgets the keys (the
    /// database stays the truth).
    pub(crate) fn apply(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let written = {
            let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
            ids::apply(&mut conn, &changes, &self.gate)
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        for change in changes {
            match (change, &written) {
                (Change::Remember(key, known), Ok(())) => {
                    let server_id = known.server_id.clone().or_else(|| cache.get(&key).cloned().flatten()?.server_id);
                    cache.insert(key, Some(Known { server_id, ..known }));
                }
                (Change::Forget(key), Ok(())) => {
                    cache.insert(key, None);
                }
                (Change::Remember(key, _) | Change::Forget(key), Err(_)) => {
                    cache.remove(&key);
                }
            }
        }
        if let Err(e) = written {
            tracing::warn!(error = %e, "forwarder: cannot write the id map");
        }
    }
}
