//! What the convert stage reads and writes: the queue of `received` journal rows, and one
//! transaction per batch that moves each row on (`converted` with its bundles in the outbox,
//! `delivered` with nothing to send, or `dead` with a dead letter).

use rusqlite::{params, Connection, Transaction, TransactionBehavior};

use super::state::{DeadLetterStage, JournalState};

/// A journal row waiting for conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) seq: i64,
    pub(crate) lane: Option<String>,
    /// The sealed HL7 message.
    pub(crate) payload: Vec<u8>,
}

/// The oldest `limit` received rows, in journal order.
pub(crate) fn received(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<Received>> {
    // The literal state matches the partial index `journal_received`.
    conn.prepare_cached(
        "SELECT seq, lane, payload FROM journal INDEXED BY journal_received
         WHERE state = 'received' ORDER BY seq LIMIT ?1",
    )?
    .query_map([limit as i64], |r| Ok(Received { seq: r.get(0)?, lane: r.get(1)?, payload: r.get(2)? }))?
    .collect()
}

/// One bundle of a message, for the outbox: sealed, with what the forwarder needs to pack it
/// unopened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewBundle<'a> {
    pub(crate) journal_seq: i64,
    /// Index of the bundle within the message.
    pub(crate) part: usize,
    pub(crate) lane: Option<&'a str>,
    pub(crate) sealed: &'a [u8],
    /// `transaction` or `batch`.
    pub(crate) kind: &'a str,
    pub(crate) entries: usize,
}

/// The write transaction (`BEGIN IMMEDIATE`) of one convert batch; nothing of it is stored
/// until [`ConvertBatch::commit`].
pub(crate) struct ConvertBatch<'c> {
    tx: Transaction<'c>,
    /// Unix milliseconds stamped on the outbox rows and dead letters.
    now: i64,
}

impl<'c> ConvertBatch<'c> {
    /// The batch's transaction, for the stage's other tables (`store::memory`).
    pub(super) fn tx(&self) -> &Transaction<'c> {
        &self.tx
    }

    pub(crate) fn begin(conn: &'c mut Connection, now: i64) -> rusqlite::Result<ConvertBatch<'c>> {
        Ok(ConvertBatch { tx: conn.transaction_with_behavior(TransactionBehavior::Immediate)?, now })
    }

    /// Keeps the conversion report (sealed JSON) with the journal row.
    pub(crate) fn set_report(&self, seq: i64, report: &[u8]) -> rusqlite::Result<()> {
        self.tx.prepare_cached("UPDATE journal SET report = ?2 WHERE seq = ?1")?.execute(params![seq, report]).map(drop)
    }

    /// Moves a `received` row to `to`; false when the row is no longer received (an
    /// operator acted on it meanwhile), in which case nothing else must be written for it.
    pub(crate) fn leave_received(&self, seq: i64, to: JournalState) -> rusqlite::Result<bool> {
        let changed = self.tx.execute(
            "UPDATE journal SET state = ?2 WHERE seq = ?1 AND state = ?3",
            params![seq, to, JournalState::Received],
        )?;
        Ok(changed > 0)
    }

    /// Adds a converted message's bundle to the outbox (`pending`).
    pub(crate) fn add_bundle(&self, bundle: &NewBundle<'_>) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO outbox (journal_seq, part, lane, created_at, bundle, kind, entries)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                bundle.journal_seq,
                bundle.part as i64,
                bundle.lane,
                self.now,
                bundle.sealed,
                bundle.kind,
                bundle.entries as i64
            ])?;
        Ok(())
    }

    /// Records why a message could not be converted (`reason` is PHI-free).
    pub(crate) fn add_dead_letter(&self, seq: i64, reason: &str) -> rusqlite::Result<()> {
        super::dead_letters::add(&self.tx, seq, DeadLetterStage::Convert, reason, self.now)?;
        Ok(())
    }

    pub(crate) fn commit(self) -> rusqlite::Result<()> {
        self.tx.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db;

    fn state(conn: &Connection, seq: i64) -> JournalState {
        conn.query_row("SELECT state FROM journal WHERE seq = ?1", [seq], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_batch_moves_only_rows_still_received_and_stores_nothing_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut conn = db::open(&path, None, db::Synchronous::Full).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        for (control_id, lane) in [("C1", Some("lane1")), ("C2", None)] {
            conn.execute(
                "INSERT INTO journal (received_at, listener, sender, control_id, message_type, lane, payload_hash, payload)
                 VALUES (0, 'l', 'A|B', ?1, 'ADT^A01', ?2, x'00', x'01')",
                params![control_id, lane],
            )
            .unwrap();
        }
        let rows = received(&conn, 10).unwrap();
        assert_eq!(
            rows.iter().map(|r| (r.seq, r.lane.as_deref())).collect::<Vec<_>>(),
            [(1, Some("lane1")), (2, None)]
        );
        assert_eq!(received(&conn, 1).unwrap().len(), 1, "at most the limit");
        // An operator purged the second message after it was read.
        conn.execute("UPDATE journal SET state = ?1 WHERE seq = 2", [JournalState::Dead]).unwrap();

        let batch = ConvertBatch::begin(&mut conn, 7).unwrap();
        assert!(batch.leave_received(1, JournalState::Converted).unwrap());
        let bundle =
            NewBundle { journal_seq: 1, part: 0, lane: Some("lane1"), sealed: b"s", kind: "batch", entries: 3 };
        batch.add_bundle(&bundle).unwrap();
        assert!(!batch.leave_received(2, JournalState::Delivered).unwrap(), "no longer received");
        drop(batch);
        assert_eq!((state(&conn, 1), state(&conn, 2)), (JournalState::Received, JournalState::Dead), "rolled back");

        let batch = ConvertBatch::begin(&mut conn, 7).unwrap();
        assert!(batch.leave_received(1, JournalState::Converted).unwrap());
        batch.add_bundle(&bundle).unwrap();
        batch.commit().unwrap();
        assert_eq!(state(&conn, 1), JournalState::Converted);
        let outbox: (i64, i64, Option<String>, i64, String, i64) = conn
            .query_row("SELECT journal_seq, part, lane, created_at, kind, entries FROM outbox", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })
            .unwrap();
        assert_eq!(outbox, (1, 0, Some("lane1".into()), 7, "batch".into(), 3));
        assert!(received(&conn, 10).unwrap().is_empty());
    }
}
