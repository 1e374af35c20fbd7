//! The forwarder's reads of the outbox, in one place so `benches/dequeue.rs` measures exactly
//! these. Each is pinned to a partial `pending` index (`INDEXED BY`: SQLite refuses to run the
//! query rather than scan) or to a rowid range, so delivered rows are never visited.
//!
//! Head columns, in this order: id, journal_seq, created_at, kind, entries, entries_done.

/// A page of pending rows in journal order after a journal sequence: lane, journal_seq
/// (finding lanes to hold).
pub const PENDING_AFTER: &str = "SELECT lane, journal_seq FROM outbox INDEXED BY outbox_pending_message
     WHERE state = 'pending' AND journal_seq > ?1 ORDER BY journal_seq, id LIMIT ?2";

/// Rows the convert stage added after an id: lane, state, then the head columns.
pub const NEW_ROWS: &str = "SELECT lane, state, id, journal_seq, created_at, kind, entries, entries_done
     FROM outbox NOT INDEXED WHERE id > ?1 ORDER BY id LIMIT 1000";

/// A lane's pending rows in order (its head is the first not already settled).
pub const LANE_PENDING: &str = "SELECT id, journal_seq, created_at, kind, entries, entries_done
     FROM outbox INDEXED BY outbox_pending WHERE state = 'pending' AND lane = ?1 ORDER BY id";

/// The pending parts of a message without a patient lane, in order.
pub const MESSAGE_PENDING: &str = "SELECT id, journal_seq, created_at, kind, entries, entries_done
     FROM outbox INDEXED BY outbox_pending_message WHERE state = 'pending' AND journal_seq = ?1 AND lane IS NULL ORDER BY id";

/// A message's bundles still pending and dead (the recorder, to settle the journal row); a
/// seek on the `(journal_seq, part)` unique index.
pub const MESSAGE_PARTS_LEFT: &str =
    "SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'dead')
     FROM outbox WHERE journal_seq = ?1";
