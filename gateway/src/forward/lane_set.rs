//! The lane set: the lanes the forwarder holds in memory (each one's head and backoff), the
//! queue of lanes ready to send, and how they are found in the outbox — at start, as the
//! convert stage adds rows, after an operator re-queued rows, and as room frees up under
//! `max_lanes`. The reads are `store::delivery`'s.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::lanes::DB_ERRORS;
use super::worker::{Head, Part};
use crate::store::delivery::{LaneRows, Outbox, Shape, NEW_ROWS_PAGE};
use crate::store::now_ms;

/// How often the scheduler looks for operator actions (a new audit event).
const AUDIT_POLL: Duration = Duration::from_secs(1);

/// Most rows of a lane riding along behind its head in one job.
const FOLLOWERS: usize = 16;

/// A held lane.
#[derive(Debug)]
pub(super) struct Lane {
    pub(crate) head: Head,
    /// Entries of the head settled by earlier attempts.
    pub(crate) settled: Vec<usize>,
    pub(crate) failures: u32,
    /// Not before (unix ms).
    pub(crate) due: i64,
}

fn lane_key(lane: Option<String>, journal_seq: i64) -> String {
    lane.unwrap_or_else(|| format!("seq:{journal_seq}"))
}

/// Where a lane key's rows are in the outbox.
fn lane_rows(key: &str) -> LaneRows<'_> {
    match key.strip_prefix("seq:").and_then(|s| s.parse::<i64>().ok()) {
        Some(seq) => LaneRows::Message(seq),
        None => LaneRows::Patient(key),
    }
}

/// A row's kind and the entries it adds to a job (those not settled by earlier attempts);
/// `None` for a row stored without its shape.
fn pack_shape(head: &Head, settled: &[usize]) -> Option<Shape> {
    let shape = head.shape?;
    Some(Shape { batch: shape.batch, entries: shape.entries.saturating_sub(settled.len()).max(1) })
}

/// The lanes held in memory, the queue of ready ones, and how they are found in the outbox.
pub(super) struct LaneSet {
    outbox: Outbox,
    /// Most lanes held at once.
    max_lanes: usize,
    pub(super) held: HashMap<String, Lane>,
    /// Lanes ready to send, by (due, head id): the first is the next to send. A lane in
    /// flight is held but not here.
    queue: BTreeSet<(i64, i64, String)>,
    /// Rows settled for good whose outcome the recorder has not committed yet.
    recording: HashSet<i64>,
    max_seen: i64,
    /// Set while lanes with pending rows wait for room (`max_lanes`): the journal sequence
    /// after which [`fill`](Self::fill) looks for them.
    pub(super) scan_after: Option<i64>,
    /// Last audit event seen (operator actions may re-queue rows).
    audit_seen: i64,
    last_audit_poll: Instant,
}

impl LaneSet {
    pub(super) fn new(outbox: Outbox, max_lanes: usize) -> LaneSet {
        LaneSet {
            outbox,
            max_lanes,
            held: HashMap::new(),
            queue: BTreeSet::new(),
            recording: HashSet::new(),
            max_seen: 0,
            scan_after: None,
            audit_seen: 0,
            last_audit_poll: Instant::now(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.held.len()
    }

    pub(super) fn get(&self, key: &str) -> Option<&Lane> {
        self.held.get(key)
    }

    /// When the first queued lane is due (unix ms).
    pub(super) fn first_due(&self) -> Option<i64> {
        self.queue.first().map(|(due, _, _)| *due)
    }

    /// The kind and entries of the first queued lane's head.
    pub(super) fn first_pack_shape(&self) -> Option<Shape> {
        self.queue.first().and_then(|(_, _, key)| self.pack_shape(key))
    }

    /// When the oldest held head was written (unix ms).
    pub(super) fn oldest_created_at(&self) -> Option<i64> {
        self.held.values().map(|l| l.head.created_at).min()
    }

    /// The recorder committed these rows' final outcomes.
    pub(super) fn recorded(&mut self, ids: Vec<i64>) {
        for id in ids {
            self.recording.remove(&id);
        }
    }

    /// The lane's head `id` was settled for good: the lane moves on.
    pub(super) fn finished(&mut self, key: &str, id: i64) {
        self.settling(id);
        self.advance(key);
    }

    /// Row `id` was settled for good: skipped by `next_head` and `followers` until the
    /// recorder has committed it.
    pub(super) fn settling(&mut self, id: i64) {
        self.recording.insert(id);
    }

    /// The lane's head goes again at `due`, with `settled` entries left out.
    pub(super) fn retry_later(&mut self, key: &str, settled: &[usize], failures: u32, due: i64) {
        if let Some(lane) = self.held.get_mut(key) {
            lane.settled = settled.to_vec();
            lane.failures = failures;
        }
        self.requeue(key, due);
    }

    /// Start-up: where the outbox ends and which operator action was seen last; the lanes
    /// come from [`fill`](Self::fill).
    pub(super) fn start(&mut self) -> rusqlite::Result<()> {
        self.max_seen = self.outbox.last_id()?;
        self.audit_seen = self.outbox.last_audit_id()?;
        self.scan_after = Some(0);
        self.fill()?;
        tracing::info!(lanes = self.held.len(), all = self.scan_after.is_none(), "forwarder: outbox loaded");
        Ok(())
    }

    /// Takes on lanes with pending rows, in journal order from `scan_after`, until
    /// `max_lanes` are held or the scan reaches the end (then every lane with pending rows
    /// is held, and new ones are taken as [`discover`](Self::discover) finds them). The scan
    /// never goes back: a row it passes belongs to a lane held then, which delivers it.
    pub(super) fn fill(&mut self) -> rusqlite::Result<()> {
        const PAGE: usize = 1000;
        while let Some(after) = self.scan_after {
            let rows: Vec<(String, i64)> = self
                .outbox
                .pending_after(after, PAGE)?
                .into_iter()
                .map(|(lane, seq)| (lane_key(lane, seq), seq))
                .collect();
            for (key, seq) in &rows {
                if self.held.contains_key(key) {
                    self.scan_after = Some(*seq);
                    continue;
                }
                if self.held.len() >= self.max_lanes {
                    // This message's lane waits for room; the next fill starts here.
                    self.scan_after = Some(seq - 1);
                    return Ok(());
                }
                self.take_lane(key)?;
                self.scan_after = Some(*seq);
            }
            if rows.len() < PAGE {
                self.scan_after = None;
            }
        }
        Ok(())
    }

    /// Holds a lane: its head and its persisted backoff.
    pub(super) fn take_lane(&mut self, key: &str) -> rusqlite::Result<()> {
        let Some((head, settled)) = self.next_head(key)? else { return Ok(()) };
        let backoff = self.outbox.lane_backoff(key)?;
        let (due, failures) = backoff.map_or((now_ms(), 0), |(due, f)| (due, f.clamp(0, u32::MAX as i64) as u32));
        self.queue.insert((due, head.id, key.to_string()));
        self.held.insert(key.to_string(), Lane { head, settled, failures, due });
        Ok(())
    }

    /// After an operator re-queued rows: a queued lane whose lowest pending row is now below
    /// its head takes it as head, and the scan for lanes starts over.
    pub(super) fn requeued_by_operator(&mut self) -> rusqlite::Result<()> {
        let queued: Vec<(i64, i64, String)> = self.queue.iter().cloned().collect();
        for (due, id, key) in queued {
            if let Some((head, settled)) = self.next_head(&key)?.filter(|(h, _)| h.id < id) {
                self.queue.remove(&(due, id, key.clone()));
                self.queue.insert((due, head.id, key.clone()));
                let lane = self.held.get_mut(&key).expect("a queued lane is held");
                lane.head = head;
                lane.settled = settled;
            }
        }
        self.scan_after = Some(0);
        self.fill()
    }

    /// Rows the convert stage added since the last look; rows an operator re-queued; lanes
    /// that waited for room.
    pub(super) fn discover(&mut self) -> rusqlite::Result<()> {
        if self.last_audit_poll.elapsed() >= AUDIT_POLL {
            self.last_audit_poll = Instant::now();
            let audit = self.outbox.last_audit_id()?;
            if audit != self.audit_seen {
                self.audit_seen = audit;
                self.requeued_by_operator()?;
            }
        }
        loop {
            let mut found: Vec<(String, Head)> = Vec::new();
            let new_rows = self.outbox.new_rows(self.max_seen)?;
            let rows = new_rows.len();
            for row in new_rows {
                self.max_seen = self.max_seen.max(row.head.id);
                if row.pending {
                    found.push((lane_key(row.lane, row.head.journal_seq), row.head));
                }
            }
            let now = now_ms();
            for (key, head) in found {
                // While lanes wait for room, the scan takes new ones in journal order.
                if self.scan_after.is_some() || self.held.contains_key(&key) {
                    continue;
                }
                if self.held.len() >= self.max_lanes {
                    self.scan_after = Some(head.journal_seq - 1);
                    continue;
                }
                self.queue.insert((now, head.id, key.clone()));
                self.held.insert(key, Lane { head, settled: Vec::new(), failures: 0, due: now });
            }
            if rows < NEW_ROWS_PAGE {
                break;
            }
        }
        // Refilled in bulk: each pass reads a page of rows, worth it for many lanes at once.
        if self.scan_after.is_some() && self.held.len() <= self.max_lanes * 3 / 4 {
            self.fill()?;
        }
        Ok(())
    }

    /// The lane's lowest pending row that is not settled already (awaiting the recorder).
    pub(super) fn next_head(&self, key: &str) -> rusqlite::Result<Option<(Head, Vec<usize>)>> {
        self.outbox.first_pending(lane_rows(key), |id| self.recording.contains(&id))
    }

    /// The rows after a lane's head that ride along in its job: batch rows, at most
    /// [`FOLLOWERS`], while their entries fit `room`; with their entries in all. (Not the
    /// parts of a split transaction: a later one names the earlier one's resources by
    /// conditional references, which the server resolves before it runs a transaction.)
    pub(super) fn followers(&mut self, key: &str, room: usize) -> (Vec<Part>, usize) {
        let Some(head) = self.held.get(key).map(|l| l.head.id) else { return (Vec::new(), 0) };
        let rows = match self.outbox.pending_in_lane(lane_rows(key), head, FOLLOWERS, |id| self.recording.contains(&id))
        {
            Ok(rows) => rows,
            Err(e) => {
                if let Some(r) = DB_ERRORS.hit("read followers") {
                    tracing::error!(error = %e, "forwarder: cannot read a lane's next bundles{r}");
                }
                return (Vec::new(), 0);
            }
        };
        let (mut parts, mut size) = (Vec::new(), 0);
        for (head, settled) in rows {
            let Some(n) = pack_shape(&head, &settled).filter(|s| s.batch).map(|s| s.entries) else { break };
            if size + n > room {
                break;
            }
            let Ok(Some(sealed)) = self.outbox.pending_bundle(head.id) else { break };
            parts.push(Part { lane: key.to_string(), head, sealed, settled, follower: true });
            size += n;
        }
        (parts, size)
    }

    /// The next due lane, taken out of the queue.
    pub(super) fn pop_due(&mut self) -> Option<String> {
        let (due, _, _) = self.queue.first()?;
        if *due > now_ms() {
            return None;
        }
        self.queue.pop_first().map(|(_, _, key)| key)
    }

    /// The kind and entries of a lane's head; `None` if it is not packable.
    pub(super) fn pack_shape(&self, key: &str) -> Option<Shape> {
        let lane = self.held.get(key)?;
        pack_shape(&lane.head, &lane.settled)
    }

    /// Reads a lane's head bundle for sending; `None` (and the lane moved on or requeued)
    /// when it cannot be sent now.
    pub(super) fn part(&mut self, key: String) -> Option<Part> {
        let head = self.held.get(&key)?.head;
        match self.outbox.pending_bundle(head.id) {
            Ok(Some(sealed)) => {
                let settled = self.held[&key].settled.clone();
                Some(Part { lane: key, head, sealed, settled, follower: false })
            }
            // Settled behind our back (an operator purged it): move the lane on.
            Ok(None) => {
                self.advance(&key);
                None
            }
            Err(e) => {
                if let Some(r) = DB_ERRORS.hit("read bundle") {
                    tracing::error!(error = %e, "forwarder: cannot read a bundle; will retry{r}");
                }
                self.requeue(&key, now_ms() + 1000);
                None
            }
        }
    }

    /// Queues a held lane to go at `due` (in the queue once, however often it is requeued).
    pub(super) fn requeue(&mut self, key: &str, due: i64) {
        if let Some(lane) = self.held.get_mut(key) {
            self.queue.remove(&(lane.due, lane.head.id, key.to_string()));
            lane.due = due;
            self.queue.insert((due, lane.head.id, key.to_string()));
        }
    }

    /// Queues a held lane again at the due time it had: before the lanes that became ready
    /// after it.
    pub(super) fn requeue_in_place(&mut self, key: &str) {
        if let Some(due) = self.held.get(key).map(|lane| lane.due) {
            self.requeue(key, due);
        }
    }

    /// The lane's head is settled: queue its next head, or forget the lane.
    pub(super) fn advance(&mut self, key: &str) {
        match self.next_head(key) {
            Ok(Some((head, settled))) => {
                if let Some(lane) = self.held.get_mut(key) {
                    self.queue.remove(&(lane.due, lane.head.id, key.to_string()));
                    lane.head = head;
                    lane.settled = settled;
                    lane.failures = 0;
                }
                self.requeue(key, now_ms());
            }
            Ok(None) => {
                self.held.remove(key);
            }
            Err(e) => {
                if let Some(r) = DB_ERRORS.hit("next bundle") {
                    tracing::error!(error = %e, "forwarder: cannot find a lane's next bundle; will retry{r}");
                }
                self.requeue(key, now_ms() + 1000);
            }
        }
    }
}
