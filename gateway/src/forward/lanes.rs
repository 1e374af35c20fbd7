//! The delivery loop: per-patient lanes over the outbox, a scheduler thread that decides
//! what to send, worker threads that send (`worker`) and a recorder thread
//! that writes the outcomes (`record`). The scheduler joins a `LaneSet` (the lanes held, the
//! ready queue, finding them in the outbox) with `Pacing` (whether anything may be sent now).
//!
//! # Lanes
//! A lane is the journal's lane key (keyed hash of PID-3) or, for a message without one,
//! `seq:<journal_seq>` (its parts still go in order). One job per lane is in flight, led by
//! its *head* (its lowest pending outbox id), so a lane's bundles reach the target in journal
//! order; a failing head waits with backoff while the other lanes go on. A refused bundle
//! goes to dead letters and the lane moves on.
//!
//! # Packing
//! Heads of several lanes share a request: `batch` bundles up to `request_max_entries`
//! entries, `transaction`s as one transaction under the target's limits (`tx_limits`; never
//! for the local sink). With the room left, a batch head brings the rows of its lane that
//! follow it (*followers*); the worker sends a follower only if every earlier part of its lane
//! went too and it writes nothing they write differently, nor leaves out as unchanged what
//! they rewrite — a batch may apply its entries in any order. Split transactions never ride
//! along: a later part names an earlier one's resources by conditional references, which the
//! server resolves before the transaction runs. With write economy, jobs are sized by stored
//! entries at the limit divided by the share of stored entries recent requests sent, times
//! [`HEADROOM`] (up to [`MAX_OVERCOMMIT`] times the limit); the worker fills the request with
//! what is left to send and gives the heads that no longer fit back at once.
//!
//! # Finding work without scanning the journal
//! - At start: a pass in journal order over the partial index `outbox_pending_message
//!   (journal_seq, id) WHERE state = 'pending'` (only undelivered rows, however many delivered
//!   rows the outbox keeps), taking lanes and their persisted backoff (`lane_state`) until
//!   `max_lanes` are held; the pass resumes where it stopped as lanes finish, so memory is
//!   bounded however many patients a backlog holds.
//! - New rows: `id > last id seen` on the rowid (the convert stage rings the doorbell).
//! - A lane's next head after its head settled: `lane = ? ORDER BY id` on `outbox_pending`
//!   (or `outbox_pending_message (journal_seq, id)` for `seq:` lanes), skipping rows settled
//!   but not yet recorded.
//! - Rows an operator re-queued (`gateway deadletter replay`, which writes an audit event):
//!   a new audit event re-reads the held lanes' heads and starts the pass again.
//!
//! All are index seeks; a million delivered rows cost nothing.
//!
//! # Settling
//! A lane moves on as soon as the target has stored its head; the recorder marks the row
//! `delivered` (or `dead`, with a `dead_letter` row naming HTTP status and OperationOutcome
//! issue codes) in a later group commit. Batch entries are settled one by one
//! (`entries_done` remembers them across attempts and restarts). When no part of a message
//! is pending any more, its journal row becomes `delivered` (or `dead`).

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::budget::DailyBudget;
use super::client::Target;
use super::deliver::Verdict;
use super::id_map::IdMap;
use super::ids::{Rules, Unsupported};
use super::lane_set::LaneSet;
use super::pacing::Pacing;
use super::record::{self, Input};
use super::retry::Backoff;
use super::worker::{self, Done, Fill, Job, Part, Report, Sent};
use crate::config::{Cloud, UnsupportedMode};
use crate::fhir::bundle::TxLimits;
use crate::log_limit::{self, Repeats};
use crate::metrics::{FailClass, Metrics};
use crate::stage::{Stage, Stopping};
use crate::store::db::{self, OpenError, Synchronous};
use crate::store::delivery::{Outbox, Outcome, Record};
use crate::store::{now_ms, Doorbell, Keys, WriteGate};

/// Database errors of the scheduler, logged once a minute per kind with a count.
pub(super) static DB_ERRORS: Repeats = Repeats::new(log_limit::EVERY);

/// Everything the forwarder needs.
pub(crate) struct ForwardOptions {
    pub(crate) path: PathBuf,
    pub(crate) synchronous: Synchronous,
    pub(crate) keys: Arc<Keys>,
    /// Rung by the convert stage after it wrote bundles; also by the workers.
    pub(crate) bell: Doorbell,
    pub(crate) metrics: Arc<Metrics>,
    /// Requests in flight at once.
    pub(crate) concurrency: usize,
    /// Most entries in one request packing several lanes' batch bundles (1: no packing).
    pub(crate) request_max_entries: usize,
    /// Most lanes held in memory at once; the others wait their turn in the outbox, so
    /// memory does not grow with the number of patients in a backlog.
    pub(crate) max_lanes: usize,
    pub(crate) backoff: Backoff,
    /// Retry interval while the target refuses our credentials.
    pub(crate) auth_retry: Duration,
    /// Consecutive failures that open the circuit breaker, and its first cooldown.
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cooldown: Duration,
    /// The process's write gate (the recorder writes as a background writer).
    pub(crate) gate: Arc<WriteGate>,
    /// How stored bundles are rewritten at send time (write economy, server ids, unsupported
    /// types).
    pub(crate) rules: Rules,
    /// `[cloud] daily_api_budget`.
    pub(crate) daily_api_budget: Option<u64>,
    /// The target's transaction limits; several lanes' transactions are packed into one
    /// under them (never for the local sink, which has none and keeps bundles as sent).
    pub(crate) tx_limits: TxLimits,
}

/// Most lanes held in memory (not configurable: a memory bound, not a site's choice).
const MAX_LANES: usize = 10_000;
/// Retry interval while the target refuses our credentials.
const AUTH_RETRY: Duration = Duration::from_secs(60);
/// Consecutive failures that open the circuit breaker, and its first cooldown.
const BREAKER_THRESHOLD: u32 = 5;
const BREAKER_COOLDOWN: Duration = Duration::from_secs(5);

impl ForwardOptions {
    /// The options `[cloud]` sets (its defaults are declared once, in `config`), with the
    /// process's handles; the rest are this module's constants.
    pub(crate) fn from_config(
        cloud: &Cloud,
        path: PathBuf,
        keys: Arc<Keys>,
        bell: Doorbell,
        metrics: Arc<Metrics>,
        gate: Arc<WriteGate>,
    ) -> ForwardOptions {
        ForwardOptions {
            path,
            synchronous: Synchronous::Full,
            keys,
            bell,
            metrics,
            concurrency: cloud.concurrency.get(),
            request_max_entries: cloud.request_max_entries.get(),
            max_lanes: MAX_LANES,
            backoff: Backoff {
                base: Duration::from_millis(cloud.backoff_base_ms.get()),
                max: Duration::from_secs(cloud.backoff_max_secs.get()),
                jitter: cloud.retry_jitter,
            },
            auth_retry: AUTH_RETRY,
            breaker_threshold: BREAKER_THRESHOLD,
            breaker_cooldown: BREAKER_COOLDOWN,
            gate,
            rules: Rules {
                profile: cloud.profile(),
                unsupported_types: cloud.unsupported_types().into_iter().collect(),
                unsupported: match cloud.unsupported {
                    UnsupportedMode::Drop => Unsupported::Drop,
                    UnsupportedMode::DeadLetter => Unsupported::DeadLetter,
                },
                reassert_ms: (cloud.reassert_hours.get() as i64).saturating_mul(3_600_000),
                // The embedded sink is local (nothing to save) and keeps references as sent,
                // so it gets every entry.
                economy: cloud.write_economy && cloud.url.is_some(),
            },
            daily_api_budget: cloud.daily_api_budget.map(|b| b.get()),
            tx_limits: cloud.transaction_limits(),
        }
    }
}

/// The running forwarder (a [`Stage`]); stops when stopped or dropped.
pub(crate) struct Forwarder {
    stage: Stage,
}

impl Forwarder {
    /// Opens its connections (the schema must be migrated: the writer does that first) and
    /// starts the scheduler, the recorder and `concurrency` worker threads.
    pub(crate) fn start(opts: ForwardOptions, target: Arc<dyn Target>) -> Result<Forwarder, OpenError> {
        let conn = db::open(&opts.path, None, opts.synchronous)?;
        let recorder_conn = db::open(&opts.path, None, opts.synchronous)?;
        let ids = Arc::new(IdMap::open(&opts.path, opts.synchronous, opts.keys.clone(), opts.gate.clone())?);
        let bell = opts.bell.clone();
        let stage = Stage::spawn(
            "forward",
            move || bell.ring(),
            move |stopping| Scheduler::new(Outbox::new(conn), opts, target, ids).run(recorder_conn, &stopping),
        );
        Ok(Forwarder { stage })
    }

    /// Stops sending, waits for the requests in flight (bounded by the client timeouts),
    /// records every outcome and returns.
    pub(crate) fn stop(self) {
        self.stage.stop();
    }
}

/// How long a part left out of its request waits before it goes again (ms).
const DEFER_MS: i64 = 50;

/// With write economy a job is sized by stored entries at the request's limit divided by
/// the share of stored entries recent requests sent, times [`HEADROOM`] (unchanged entries are
/// left out at send time, and the worker gives back what does not fit): at most this many
/// times the limit.
const MAX_OVERCOMMIT: f64 = 16.0;
/// The share assumed before any job reported one.
const FIRST_SENT_SHARE: f64 = 0.25;
/// Jobs take this many times what the average share says fits: the average lags when a
/// backlog's traffic changes (its admissions, then its results, then its name corrections, each
/// leaving out a different share), and an underfilled request costs a whole round trip, while
/// the parts that do not fit are only given back. Measured on `scripts/bench-cloud`: salesforce
/// 14.2–14.8 → 15.5–15.6 msg/s, generic at 64 concurrent 162–165 → 168–180 msg/s.
const HEADROOM: f64 = 2.0;

/// The share of stored entries recent jobs sent, an exponential average; `None` without write
/// economy (every stored entry is sent).
#[derive(Debug)]
struct SentShare(Option<f64>);

impl SentShare {
    fn observe(&mut self, fill: Fill) {
        if let (Some(share), true) = (self.0.as_mut(), fill.stored > 0) {
            *share = 0.8 * *share + 0.2 * (fill.sent as f64 / fill.stored as f64).min(1.0);
        }
    }

    /// Stored entries for a job whose request holds `limit` entries.
    fn job_entries(&self, limit: usize) -> usize {
        let Some(share) = self.0 else { return limit };
        (limit as f64 / share.max(f64::MIN_POSITIVE) * HEADROOM).min(limit as f64 * MAX_OVERCOMMIT).round() as usize
    }
}

/// Outcomes waiting for the recorder before the scheduler waits for it (bounds memory).
const RECORD_QUEUE: usize = 8192;

/// The scheduler thread: hands due lanes to the workers when pacing allows, and settles
/// their answers.
struct Scheduler {
    lanes: LaneSet,
    opts: ForwardOptions,
    target: Arc<dyn Target>,
    ids: Arc<IdMap>,
    budget: Option<DailyBudget>,
    /// `forward_requests` when the budget last counted them.
    requests_counted: u64,
    in_flight: usize,
    /// Breaker, global pauses, throttling, lane backoff.
    pacing: Pacing,
    last_gauges: Option<Instant>,
    /// Most entries one request of batches carries, and of transactions (0: transactions are
    /// not packed).
    batch_entries: usize,
    tx_entries: usize,
    sent_share: SentShare,
}

impl Scheduler {
    fn new(outbox: Outbox, opts: ForwardOptions, target: Arc<dyn Target>, ids: Arc<IdMap>) -> Scheduler {
        let pacing =
            Pacing::new(opts.concurrency, opts.backoff, opts.auth_retry, opts.breaker_threshold, opts.breaker_cooldown);
        let budget = opts.daily_api_budget.map(DailyBudget::new);
        let requests_counted = opts.metrics.forward_requests.get();
        let tx_entries = if opts.tx_limits == TxLimits::NONE { 0 } else { opts.tx_limits.max_entries };
        Scheduler {
            batch_entries: opts.request_max_entries,
            tx_entries: tx_entries.min(opts.request_max_entries),
            sent_share: SentShare(opts.rules.economy.then_some(FIRST_SENT_SHARE)),
            lanes: LaneSet::new(outbox, opts.max_lanes),
            opts,
            target,
            ids,
            budget,
            requests_counted,
            in_flight: 0,
            pacing,
            last_gauges: None,
        }
    }

    fn run(mut self, recorder_conn: Connection, stop: &Stopping) {
        while let Err(e) = self.lanes.start() {
            if let Some(r) = DB_ERRORS.hit("read outbox") {
                tracing::error!(error = %e, "forwarder: cannot read the outbox; will retry{r}");
            }
            if stop.requested() {
                return;
            }
            self.opts.bell.wait(Duration::from_secs(1));
        }
        let (record_tx, record_rx) = mpsc::sync_channel::<Input>(RECORD_QUEUE);
        let (recorded_tx, recorded_rx) = mpsc::channel::<Vec<i64>>();
        let (metrics, gate) = (self.opts.metrics.clone(), self.opts.gate.clone());
        let wake = record_tx.clone();
        let recorder = Stage::spawn(
            "forward-record",
            // A full queue needs no wake-up: the recorder is busy and sees the flag after the batch.
            move || {
                let _ = wake.try_send(Input::Wake);
            },
            move |stopping| record::run(recorder_conn, record_rx, recorded_tx, metrics, &gate, &stopping),
        );
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Report>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let workers: Vec<JoinHandle<()>> = (0..self.opts.concurrency.max(1))
            .map(|i| {
                let (rx, tx) = (jobs_rx.clone(), done_tx.clone());
                let (target, keys, metrics, bell) =
                    (self.target.clone(), self.opts.keys.clone(), self.opts.metrics.clone(), self.opts.bell.clone());
                let (ids, rules) = (self.ids.clone(), self.opts.rules.clone());
                let (max_entries, tx_limits) = (self.opts.request_max_entries, self.opts.tx_limits);
                std::thread::Builder::new()
                    .name(format!("forward-{i}"))
                    .spawn(move || {
                        let (ids, rules) = (&*ids, &rules);
                        let ctx = worker::Ctx {
                            target: &*target,
                            keys: &keys,
                            metrics: &metrics,
                            ids,
                            rules,
                            max_entries,
                            tx_limits,
                        };
                        worker::run(&rx, &tx, &ctx, &bell)
                    })
                    .expect("spawn forward worker")
            })
            .collect();
        drop(done_tx);
        let metrics = self.opts.metrics.clone();
        let _exit = metrics.stages.forward.guard();
        loop {
            metrics.stages.forward.beat();
            for ids in recorded_rx.try_iter() {
                self.lanes.recorded(ids);
            }
            for report in done_rx.try_iter() {
                match report {
                    Report::GivenBack(parts) => self.given_back(parts),
                    Report::Done(done) => {
                        self.in_flight -= 1;
                        self.settle(done, &record_tx);
                        self.spend_budget();
                    }
                }
            }
            if stop.requested() {
                if self.in_flight == 0 {
                    break;
                }
                self.opts.bell.wait(Duration::from_millis(50));
                continue;
            }
            if let Err(e) = self.lanes.discover() {
                if let Some(r) = DB_ERRORS.hit("read new rows") {
                    tracing::error!(error = %e, "forwarder: cannot read new outbox rows; will retry{r}");
                }
            }
            self.dispatch(&jobs_tx);
            self.gauges();
            let wait = self.next_wake();
            self.opts.bell.wait(wait);
        }
        drop(jobs_tx);
        for w in workers {
            let _ = w.join();
        }
        // Every outcome is queued: the recorder writes them all, then stops.
        drop(record_tx);
        recorder.stop();
        self.gauges_now();
    }

    /// Hands due lane heads to the workers, up to the concurrency.
    fn dispatch(&mut self, jobs: &Sender<Job>) {
        while self.in_flight < self.pacing.cap() {
            let now = Instant::now();
            if !self.pacing.may_send(now) || !self.budget_allows() {
                return;
            }
            let Some(key) = self.lanes.pop_due() else { return };
            let Some(first) = self.lanes.part(key) else { continue };
            let parts = self.pack(first);
            self.in_flight += 1;
            self.pacing.sent(now);
            if jobs.send(Job { parts }).is_err() {
                return;
            }
        }
    }

    /// The job `first` starts: more due heads of its kind join while their stored entries
    /// fit; then, with the room left, batch heads bring the rows of their lanes that follow
    /// them (after the other lanes: a follower that rewrites what its head writes stays out).
    fn pack(&mut self, first: Part) -> Vec<Part> {
        let shape = self.lanes.pack_shape(&first.lane);
        let limit = match shape {
            Some(s) if s.batch => self.sent_share.job_entries(self.batch_entries),
            Some(_) => self.sent_share.job_entries(self.tx_entries),
            None => 0,
        };
        let Some(batch) = shape.filter(|s| s.entries <= limit).map(|s| s.batch) else { return vec![first] };
        let mut size = shape.map_or(0, |s| s.entries);
        let mut heads = vec![first];
        while self.lanes.first_pack_shape().is_some_and(|s| s.batch == batch && size + s.entries <= limit) {
            let Some(key) = self.lanes.pop_due() else { break };
            if let Some(next) = self.lanes.part(key) {
                size += self.lanes.pack_shape(&next.lane).map_or(1, |s| s.entries);
                heads.push(next);
            }
        }
        if !batch {
            return heads;
        }
        let mut parts = Vec::with_capacity(heads.len());
        for head in heads {
            let (followers, m) = self.lanes.followers(&head.lane, limit.saturating_sub(size));
            size += m;
            parts.push(head);
            parts.extend(followers);
        }
        parts
    }

    /// Heads a worker could not fit: due again at once.
    fn given_back(&mut self, parts: Vec<Part>) {
        let now = now_ms();
        for part in parts {
            self.lanes.requeue(&part.lane, now);
        }
    }

    fn budget_allows(&mut self) -> bool {
        self.budget.as_mut().is_none_or(|b| b.allows(now_ms()))
    }

    /// Counts the requests the workers sent since the last call against the daily budget.
    fn spend_budget(&mut self) {
        let Some(budget) = self.budget.as_mut() else { return };
        let sent = self.opts.metrics.forward_requests.get();
        let requests = sent.saturating_sub(std::mem::replace(&mut self.requests_counted, sent));
        let (permille, warn) = budget.spend(now_ms(), requests);
        self.opts.metrics.forward_api_budget_permille.set(permille as i64);
        if warn {
            tracing::warn!(permille, "forwarder: 80 % of the daily API budget used");
        }
    }

    /// Applies one request's outcome: lanes move on or back off at once, the recorder writes
    /// it down. A lane's followers settled for good are set aside before its head moves on;
    /// a follower that goes again is the lane's next head once the head settled.
    fn settle(&mut self, done: Done, records: &SyncSender<Input>) {
        self.pacing.observe(&done, Instant::now(), &self.opts.metrics);
        self.sent_share.observe(done.fill);
        let now = now_ms();
        let (followers, heads): (Vec<Sent>, Vec<Sent>) = done.parts.into_iter().partition(|s| s.follower);
        let (settled, later): (Vec<Sent>, Vec<Sent>) =
            followers.into_iter().partition(|s| s.verdict.as_ref().is_some_and(Verdict::is_final));
        for sent in settled {
            let outcome = self.outcome(&sent, 0, now);
            self.lanes.settling(sent.head.id);
            Self::record(records, &sent, outcome);
        }
        for sent in heads {
            if sent.searched_ahead {
                // Its searches' answers are in: it goes again where it was in the queue.
                self.lanes.requeue_in_place(&sent.lane);
                continue;
            }
            if sent.verdict.is_none() {
                // Left out: another request writes (or creates) one of its resources; go again
                // shortly, after that request had time to answer.
                self.lanes.requeue(&sent.lane, now + DEFER_MS);
                continue;
            }
            let failures = self.lanes.get(&sent.lane).map_or(0, |l| l.failures);
            let outcome = self.outcome(&sent, failures, now);
            let is_final = matches!(outcome, Outcome::Final { .. });
            if let Outcome::Retry { settled, due, failures, .. } = &outcome {
                self.lanes.retry_later(&sent.lane, settled, *failures, *due);
            }
            Self::record(records, &sent, outcome);
            if is_final {
                self.lanes.finished(&sent.lane, sent.head.id);
            }
        }
        // Followers to send again (left out ones simply come again behind their head).
        for sent in later.into_iter().filter(|s| s.verdict.is_some()) {
            let lane = self.lanes.get(&sent.lane);
            let is_head = lane.is_some_and(|l| l.head.id == sent.head.id);
            let failures = lane.filter(|_| is_head).map_or(0, |l| l.failures);
            let outcome = self.outcome(&sent, failures, now);
            if let (true, Outcome::Retry { settled, due, failures, .. }) = (is_head, &outcome) {
                self.lanes.retry_later(&sent.lane, settled, *failures, *due);
            }
            Self::record(records, &sent, outcome);
        }
    }

    /// What to write for a part's verdict: final, or a retry with the entries settled so far
    /// and the lane's next attempt.
    fn outcome(&self, sent: &Sent, failures: u32, now: i64) -> Outcome {
        match sent.verdict.clone().expect("only parts with a verdict are recorded") {
            Verdict::Settled { dead, .. } => Outcome::Final { dead: dead.into_iter().map(|(_, r)| r).collect() },
            Verdict::Dead { reason, .. } => Outcome::Final { dead: vec![reason] },
            Verdict::Retry { class, after, ok, dead } => {
                let mut settled = sent.settled.clone();
                settled.extend(ok.iter().copied().chain(dead.iter().map(|(i, _)| *i)));
                settled.sort_unstable();
                settled.dedup();
                let failures = failures.saturating_add(1);
                let delay = self.pacing.retry_delay(failures, after);
                let dead = dead.into_iter().map(|(_, r)| r).collect();
                let (due, last_error) = (now + delay.as_millis() as i64, class.label());
                Outcome::Retry { settled, dead, due, failures, last_error }
            }
            Verdict::AuthFailed => {
                let failures = failures.saturating_add(1);
                let due = now + self.pacing.auth_retry().as_millis() as i64;
                let last_error = FailClass::Auth.label();
                Outcome::Retry { settled: sent.settled.clone(), dead: vec![], due, failures, last_error }
            }
        }
    }

    fn record(records: &SyncSender<Input>, sent: &Sent, outcome: Outcome) {
        let record = Record { lane: sent.lane.clone(), id: sent.head.id, journal_seq: sent.head.journal_seq, outcome };
        if records.send(Input::Record(record)).is_err() {
            tracing::error!("forwarder: the recorder stopped; outcomes are no longer written");
        }
    }

    /// How long the scheduler may sleep: until the next lane is due and sending is allowed
    /// again, at most a second. Results and new rows ring the bell and wake it earlier.
    fn next_wake(&self) -> Duration {
        const MAX: Duration = Duration::from_secs(1);
        if self.pacing.awaits_answer(self.in_flight) {
            return MAX; // a finishing request rings the bell
        }
        let Some(due) = self.lanes.first_due() else { return MAX };
        let now = Instant::now();
        let mut at = now + Duration::from_millis((due - now_ms()).max(0) as u64);
        if let Some(t) = self.pacing.resume_at() {
            at = at.max(t);
        }
        at.saturating_duration_since(now).clamp(Duration::from_millis(1), MAX)
    }

    fn gauges(&mut self) {
        if self.last_gauges.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.gauges_now();
    }

    fn gauges_now(&mut self) {
        self.last_gauges = Some(Instant::now());
        let m = &self.opts.metrics;
        m.forward_lanes.set(self.lanes.len() as i64);
        let oldest = self.lanes.oldest_created_at();
        m.forward_oldest_pending_secs.set(oldest.map_or(0, |t| ((now_ms() - t) / 1000).max(0)));
        m.forward_circuit_state.set(self.pacing.breaker_state() as i64);
        m.forward_token_refreshes.set(self.target.token_refreshes() as i64);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::super::worker::Signals;
    use super::*;
    use crate::forward::client::{Response, SendError};
    use crate::store::state::{JournalState, OutboxState};
    use rusqlite::params;
    use serde_json::{json, Value};

    struct Db {
        _dir: tempfile::TempDir,
        path: PathBuf,
        conn: Connection,
        keys: Arc<Keys>,
    }

    impl Db {
        fn new() -> Db {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("j.db");
            let mut conn = db::open(&path, None, Synchronous::Normal).unwrap();
            db::migrate(&mut conn, &path).unwrap();
            Db { _dir: dir, path, conn, keys: Arc::new(Keys::from_master(&[9; 32])) }
        }

        /// A converted journal row with its bundles (`parts`), each tagged with `tag` names.
        fn message(&self, lane: Option<&str>, parts: &[Value]) -> i64 {
            self.conn
                .execute(
                    "INSERT INTO journal (received_at, listener, sender, control_id, message_type, lane, payload_hash, state, payload)
                     VALUES (1, 'l', 's', 'c', 'ADT^A01', ?1, x'00', ?2, x'00')",
                    params![lane, JournalState::Converted],
                )
                .unwrap();
            let seq = self.conn.last_insert_rowid();
            for (i, b) in parts.iter().enumerate() {
                // As the convert stage writes them; a bundle tagged "legacy" without the shape.
                let legacy = b["id"] == "legacy";
                let kind = (!legacy).then(|| b["type"].as_str().unwrap().to_string());
                let entries = (!legacy).then(|| b["entry"].as_array().map_or(0, Vec::len) as i64);
                self.conn
                    .execute(
                        "INSERT INTO outbox (journal_seq, part, lane, created_at, bundle, kind, entries) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![seq, i as i64, lane, now_ms(), self.keys.seal(b.to_string().as_bytes()), kind, entries],
                    )
                    .unwrap();
            }
            seq
        }

        fn options(&self, metrics: Arc<Metrics>, bell: Doorbell) -> ForwardOptions {
            let (path, keys, gate) = (self.path.clone(), self.keys.clone(), Arc::default());
            let mut o = ForwardOptions::from_config(&Cloud::default(), path, keys, bell, metrics, gate);
            o.synchronous = Synchronous::Normal;
            o.backoff = Backoff { base: Duration::from_millis(30), max: Duration::from_millis(200), jitter: false };
            o.auth_retry = Duration::from_millis(300);
            o.breaker_threshold = 100;
            o
        }

        fn states(&self, sql: &str) -> Vec<String> {
            self.conn.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        }
    }

    fn tx(tag: &str) -> Value {
        json!({"resourceType": "Bundle", "type": "transaction", "id": tag,
               "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient/1"}}]})
    }

    /// A scripted target: `script(tag, attempt_of_this_tag, bundle)` answers; it records
    /// every request's tag in order.
    type Script = Box<dyn Fn(&str, usize, &Value) -> Result<Response, SendError> + Send + Sync>;

    struct Fake {
        log: Mutex<Vec<(String, Value)>>,
        script: Script,
    }

    impl Fake {
        fn new(
            script: impl Fn(&str, usize, &Value) -> Result<Response, SendError> + Send + Sync + 'static,
        ) -> Arc<Fake> {
            Arc::new(Fake { log: Mutex::new(Vec::new()), script: Box::new(script) })
        }
        fn tags(&self) -> Vec<String> {
            self.log.lock().unwrap().iter().map(|(t, _)| t.clone()).collect()
        }
    }

    impl Target for Fake {
        fn send(&self, bundle: &[u8]) -> Result<Response, SendError> {
            let b: Value = serde_json::from_slice(bundle).unwrap();
            let tag = b["id"].as_str().unwrap_or("").to_string();
            let n = {
                let mut log = self.log.lock().unwrap();
                log.push((tag.clone(), b.clone()));
                log.iter().filter(|(t, _)| *t == tag).count()
            };
            (self.script)(&tag, n, &b)
        }
    }

    fn ok() -> Result<Response, SendError> {
        Ok(Response {
            status: 200,
            body: br#"{"resourceType":"Bundle","type":"transaction-response"}"#.to_vec(),
            ..Response::default()
        })
    }

    fn status(code: u16, body: Value) -> Result<Response, SendError> {
        Ok(Response { status: code, body: body.to_string().into_bytes(), ..Response::default() })
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn lanes_keep_order_and_a_failing_head_blocks_only_its_lane() {
        let db = Db::new();
        db.message(Some("A"), &[tx("A1")]);
        db.message(Some("B"), &[tx("B1")]);
        db.message(Some("A"), &[tx("A2")]);
        db.message(None, &[tx("N1a"), tx("N1b")]);
        db.message(Some("B"), &[tx("B2")]);
        let fake = Fake::new(|tag, n, _| match (tag, n) {
            ("A1", 1..=3) => status(503, json!({})),
            ("N1a", 1) => Err(SendError::Timeout),
            _ => ok(),
        });
        let metrics = Arc::new(Metrics::default());
        metrics.journal_depth.set(6);
        let bell = Doorbell::default();
        let f = Forwarder::start(db.options(metrics.clone(), bell.clone()), fake.clone()).unwrap();
        // A message converted while running is found through the doorbell.
        std::thread::sleep(Duration::from_millis(20));
        db.message(Some("B"), &[tx("B3")]);
        bell.ring();
        wait_until("everything delivered", || metrics.forward_delivered.get() == 7);
        f.stop();
        let tags = fake.tags();
        let pos = |t: &str| tags.iter().rposition(|x| x == t).unwrap();
        let first = |t: &str| tags.iter().position(|x| x == t).unwrap();
        assert_eq!(tags.iter().filter(|t| *t == "A1").count(), 4, "{tags:?}");
        assert!(first("A2") > pos("A1"), "A2 waits for A1's success: {tags:?}");
        assert!(first("N1b") > pos("N1a"), "parts of a message in order: {tags:?}");
        assert!(first("B2") > pos("B1") && first("B3") > pos("B2"), "{tags:?}");
        assert!(pos("B2") < pos("A1"), "lane B does not wait for lane A: {tags:?}");
        assert_eq!(tags.iter().filter(|t| t.starts_with('B')).count(), 3, "delivered exactly once each");
        assert_eq!(db.states("SELECT DISTINCT state FROM outbox"), ["delivered"]);
        assert_eq!(db.states("SELECT DISTINCT state FROM journal"), ["delivered"]);
        assert_eq!(metrics.journal_depth.get(), 0, "every journal row delivered");
        assert_eq!(metrics.forward_retries.get(), 4);
        assert_eq!(metrics.forward_failures[FailClass::Server].get(), 3, "5xx");
        assert_eq!(metrics.forward_failures[FailClass::Timeout].get(), 1, "timeout");
        assert_eq!(db.states("SELECT lane FROM lane_state"), Vec::<String>::new(), "backoff state cleared");
        assert_eq!(metrics.forward_lanes.get(), 0);
    }

    #[test]
    fn batch_entries_settle_one_by_one_and_a_424_sibling_is_resent_alone() {
        let db = Db::new();
        let batch = json!({"resourceType": "Bundle", "type": "batch", "id": "S1", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p"}, "request": {"method": "PUT", "url": "Patient/p"}},
            {"resource": {"resourceType": "Encounter", "id": "e"}, "request": {"method": "PUT", "url": "Encounter/e"}},
            {"resource": {"resourceType": "Observation", "id": "o"}, "request": {"method": "PUT", "url": "Observation/o"}}]});
        db.message(Some("L"), &[batch]);
        let fake = Fake::new(|_, n, b| {
            let entries = b["entry"].as_array().unwrap().len();
            match n {
                1 => status(
                    200,
                    json!({"type": "batch-response", "entry": [
                    {"response": {"status": "201 Created"}}, {"response": {"status": "424 Failed Dependency"}},
                    {"response": {"status": "200 OK"}}]}),
                ),
                _ => {
                    assert_eq!(entries, 1, "only the unsettled entry is sent again");
                    assert_eq!(b["entry"][0]["request"]["url"], "Encounter/e");
                    status(200, json!({"type": "batch-response", "entry": [{"response": {"status": "200 OK"}}]}))
                }
            }
        });
        let metrics = Arc::new(Metrics::default());
        let f = Forwarder::start(db.options(metrics.clone(), Doorbell::default()), fake.clone()).unwrap();
        wait_until("delivered", || metrics.forward_delivered.get() == 1);
        f.stop();
        assert_eq!(fake.tags().len(), 2);
        assert_eq!(db.states("SELECT state FROM outbox"), ["delivered"]);
        assert_eq!(db.states("SELECT count(*) || '' FROM dead_letter"), ["0"]);
        assert_eq!(db.states("SELECT state FROM journal"), ["delivered"]);
    }

    #[test]
    fn refused_bundle_goes_to_dead_letters_with_codes_only_and_the_lane_moves_on() {
        let db = Db::new();
        db.message(Some("L"), &[tx("bad")]);
        db.message(Some("L"), &[tx("good")]);
        let fake = Fake::new(|tag, _, _| match tag {
            "bad" => status(
                422,
                json!({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "invariant", "diagnostics": "Patient SMITH^JOHN MRN 4711 invalid"},
                {"severity": "error", "code": "required", "details": {"text": "DOB 1970-01-01"}}]}),
            ),
            _ => ok(),
        });
        let metrics = Arc::new(Metrics::default());
        let f = Forwarder::start(db.options(metrics.clone(), Doorbell::default()), fake.clone()).unwrap();
        wait_until("delivered", || metrics.forward_delivered.get() == 1);
        f.stop();
        assert_eq!(fake.tags(), ["bad", "good"]);
        let reasons = db.states("SELECT stage || ': ' || reason FROM dead_letter");
        assert_eq!(reasons, ["deliver: HTTP 422; issue codes: invariant,required"]);
        assert_eq!(db.states("SELECT state FROM outbox ORDER BY id"), ["dead", "delivered"]);
        assert_eq!(db.states("SELECT state FROM journal ORDER BY seq"), ["dead", "delivered"]);
        assert_eq!(metrics.dead_letters.get(), 1);
        assert_eq!(metrics.forward_failures[FailClass::Client].get(), 1, "4xx");
    }

    #[test]
    fn auth_failure_is_visible_and_retried_slowly_until_it_clears() {
        let db = Db::new();
        db.message(Some("L"), &[tx("m")]);
        let fake = Fake::new(|_, n, _| if n <= 2 { status(401, json!({})) } else { ok() });
        let metrics = Arc::new(Metrics::default());
        let f = Forwarder::start(db.options(metrics.clone(), Doorbell::default()), fake.clone()).unwrap();
        wait_until("auth failure visible", || metrics.forward_auth_failing.get() == 1);
        // The recorder commits the lane's state on its own thread, after the gauge is set.
        wait_until("401 recorded", || db.states("SELECT last_error FROM lane_state") == ["401"]);
        assert_eq!(db.states("SELECT state FROM outbox"), ["pending"]);
        wait_until("delivered", || metrics.forward_delivered.get() == 1);
        f.stop();
        assert_eq!(metrics.forward_auth_failing.get(), 0);
        assert_eq!(metrics.forward_failures[FailClass::Auth].get(), 2);
    }

    #[test]
    fn restart_resumes_backoff_and_sends_nothing_twice() {
        let db = Db::new();
        db.message(Some("L"), &[tx("m1")]);
        db.message(Some("L"), &[tx("m2")]);
        let fake = Fake::new(|tag, _, _| if tag == "m1" { ok() } else { Err(SendError::Connect("refused".into())) });
        let metrics = Arc::new(Metrics::default());
        let f = Forwarder::start(db.options(metrics.clone(), Doorbell::default()), fake.clone()).unwrap();
        wait_until("m2 failing", || metrics.forward_retries.get() >= 1);
        f.stop();
        assert_eq!(db.states("SELECT state FROM outbox ORDER BY id"), ["delivered", "pending"]);
        let fake2 = Fake::new(|_, _, _| ok());
        let metrics = Arc::new(Metrics::default());
        let f = Forwarder::start(db.options(metrics.clone(), Doorbell::default()), fake2.clone()).unwrap();
        wait_until("m2 delivered", || metrics.forward_delivered.get() == 1);
        f.stop();
        assert_eq!(fake2.tags(), ["m2"], "the delivered row is not sent again");
    }

    /// A batch bundle of `n` Observations `<tag>.<i>`.
    fn batch(tag: &str, n: usize) -> Value {
        let entry: Vec<Value> = (0..n)
            .map(|i| {
                json!({"resource": {"resourceType": "Observation", "id": format!("{tag}.{i}")},
                            "request": {"method": "PUT", "url": format!("Observation/{tag}.{i}")}})
            })
            .collect();
        json!({"resourceType": "Bundle", "type": "batch", "id": tag, "entry": entry})
    }

    /// A target that logs each request's entries, refuses (422) every request carrying an
    /// entry whose URL contains "bad", and refuses (400) each entry of version "bad".
    struct Packs {
        log: Mutex<Vec<Vec<Value>>>,
    }

    impl Packs {
        fn new() -> Arc<Packs> {
            Arc::new(Packs { log: Mutex::new(Vec::new()) })
        }
        /// Each request's entry URLs.
        fn requests(&self) -> Vec<Vec<String>> {
            let url = |e: &Value| e["request"]["url"].as_str().unwrap().to_string();
            self.log.lock().unwrap().iter().map(|r| r.iter().map(url).collect()).collect()
        }
        /// Each request's entries as `url@version`.
        fn versions(&self) -> Vec<Vec<String>> {
            let version = |e: &Value| {
                format!(
                    "{}@{}",
                    e["request"]["url"].as_str().unwrap(),
                    e["resource"]["meta"]["versionId"].as_str().unwrap_or("")
                )
            };
            self.log.lock().unwrap().iter().map(|r| r.iter().map(version).collect()).collect()
        }
    }

    impl Target for Packs {
        fn send(&self, bundle: &[u8]) -> Result<Response, SendError> {
            let b: Value = serde_json::from_slice(bundle).unwrap();
            let kind = b["type"].as_str().unwrap().to_string();
            let entries = b["entry"].as_array().unwrap().clone();
            self.log.lock().unwrap().push(entries.clone());
            if entries.iter().any(|e| e["request"]["url"].as_str().unwrap().contains("bad")) {
                return status(
                    422,
                    json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid"}]}),
                );
            }
            let answer = |e: &Value| match e["resource"]["meta"]["versionId"].as_str() {
                Some("bad") => json!({"response": {"status": "400 Bad Request"}}),
                _ => json!({"response": {"status": "200 OK"}}),
            };
            let answers: Vec<Value> = entries.iter().map(answer).collect();
            status(200, json!({"resourceType": "Bundle", "type": format!("{kind}-response"), "entry": answers}))
        }
    }

    /// The lane tag of an entry URL (`Observation/A1.3` → `A`).
    fn lane_of(url: &str) -> char {
        url.split('/').nth(1).unwrap().chars().next().unwrap()
    }

    #[test]
    fn batch_heads_of_several_lanes_share_requests_up_to_the_limit_in_lane_order() {
        let db = Db::new();
        for lane in ["A", "B", "C", "D", "E", "F"] {
            db.message(Some(lane), &[batch(&format!("{lane}1"), 8)]);
        }
        for lane in ["A", "B", "C", "D", "E", "F"] {
            db.message(Some(lane), &[batch(&format!("{lane}2"), 8)]);
        }
        // A row written before the outbox kept bundle shapes is sent on its own.
        db.message(Some("G"), &[batch("legacy", 5)]);
        let target = Packs::new();
        let metrics = Arc::new(Metrics::default());
        let f = Forwarder::start(db.options(metrics.clone(), Doorbell::default()), target.clone()).unwrap();
        wait_until("delivered", || metrics.forward_delivered.get() == 13);
        f.stop();
        let requests = target.requests();
        assert!(requests.iter().all(|r| r.len() <= 30), "{requests:?}");
        assert!(
            requests.iter().any(|r| r.iter().map(|u| lane_of(u)).collect::<BTreeSet<_>>().len() >= 2),
            "packed: {requests:?}"
        );
        assert!(requests.len() < 13, "fewer requests than bundles: {}", requests.len());
        let legacy: Vec<&Vec<String>> = requests.iter().filter(|r| r.iter().any(|u| u.contains("legacy"))).collect();
        assert_eq!(legacy.len(), 1);
        assert_eq!(legacy[0].len(), 5, "alone: {legacy:?}");
        let sent: Vec<String> = requests.concat();
        assert_eq!(sent.len(), 12 * 8 + 5, "every entry exactly once");
        // A lane's second row may ride along behind its first (they write different resources),
        // never ahead of it.
        for lane in ["A", "B", "C", "D", "E", "F"] {
            let request_of =
                |tag: &str| requests.iter().position(|r| r.iter().any(|u| u.contains(&format!("/{tag}.")))).unwrap();
            assert!(request_of(&format!("{lane}1")) <= request_of(&format!("{lane}2")), "lane {lane} in order");
        }
        assert_eq!(db.states("SELECT DISTINCT state FROM outbox"), ["delivered"]);
        assert_eq!(db.states("SELECT DISTINCT state FROM journal"), ["delivered"]);
    }

    /// A batch bundle of entries `(url, version)`.
    fn writes(tag: &str, entries: &[(&str, &str)]) -> Value {
        let entry: Vec<Value> = entries
            .iter()
            .map(|(url, v)| {
                let (kind, id) = url.split_once('/').unwrap();
                json!({"resource": {"resourceType": kind, "id": id, "meta": {"versionId": v.to_string()}},
                       "request": {"method": "PUT", "url": url}})
            })
            .collect();
        json!({"resourceType": "Bundle", "type": "batch", "id": tag, "entry": entry})
    }

    #[test]
    fn a_lanes_next_rows_ride_along_unless_they_write_what_an_earlier_one_writes_differently() {
        let db = Db::new();
        db.message(Some("A"), &[writes("A1", &[("Patient/p", "1"), ("Observation/a1", "1")])]);
        db.message(Some("A"), &[writes("A2", &[("Observation/a2", "1")])]);
        // The Patient again, changed: a batch may apply entries in any order, so it waits.
        db.message(Some("A"), &[writes("A3", &[("Patient/p", "2")])]);
        db.message(Some("A"), &[writes("A4", &[("Observation/a4", "1")])]);
        let target = Packs::new();
        let metrics = Arc::new(Metrics::default());
        let f = Forwarder::start(db.options(metrics.clone(), Doorbell::default()), target.clone()).unwrap();
        wait_until("delivered", || metrics.forward_delivered.get() == 4);
        f.stop();
        assert_eq!(
            target.versions(),
            [vec!["Patient/p@1", "Observation/a1@1", "Observation/a2@1"], vec!["Patient/p@2", "Observation/a4@1"]]
        );
        assert_eq!(db.states("SELECT DISTINCT state FROM outbox"), ["delivered"]);
        assert_eq!(db.states("SELECT DISTINCT state FROM journal"), ["delivered"]);
    }

    /// A batch entry for `url` (`Kind/id`, placeholder `urn:uuid:id`) of `version`: an update,
    /// or a create-if-absent.
    fn entry_of(url: &str, version: &str, if_absent: bool) -> Value {
        let (kind, id) = url.split_once('/').unwrap();
        let mut request = json!({"method": "PUT", "url": url});
        if if_absent {
            request = json!({"method": "POST", "url": kind, "ifNoneExist": format!("identifier={id}")});
        }
        json!({"fullUrl": format!("urn:uuid:{id}"), "request": request,
               "resource": {"resourceType": kind, "meta": {"versionId": version}}})
    }

    fn bundle_of(tag: &str, entries: Vec<Value>) -> Value {
        json!({"resourceType": "Bundle", "type": "batch", "id": tag, "entry": entries})
    }

    #[test]
    fn a_create_if_absent_of_a_resource_the_request_writes_goes_along_and_is_not_sent() {
        let (entry, bundle) = (entry_of, bundle_of);
        let db = Db::new();
        // A lab result refers to the Patient its lane's admission writes; so does another lane's.
        db.message(
            Some("A"),
            &[bundle("A1", vec![entry("Patient/p", "1", false), entry("Observation/a1", "1", false)])],
        );
        db.message(
            Some("A"),
            &[bundle("A2", vec![entry("Patient/p", "ref", true), entry("Observation/a2", "1", false)])],
        );
        db.message(
            Some("B"),
            &[bundle("B1", vec![entry("Patient/p", "ref", true), entry("Observation/b1", "1", false)])],
        );
        // An update behind a create-if-absent of the same resource replaces it.
        db.message(Some("C"), &[bundle("C1", vec![entry("Patient/q", "ref", true)])]);
        db.message(Some("C"), &[bundle("C2", vec![entry("Patient/q", "2", false)])]);
        let target = Packs::new();
        let metrics = Arc::new(Metrics::default());
        let mut opts = db.options(metrics.clone(), Doorbell::default());
        opts.concurrency = 1;
        let f = Forwarder::start(opts, target.clone()).unwrap();
        wait_until("delivered", || metrics.forward_delivered.get() == 5);
        f.stop();
        let requests = target.versions();
        assert_eq!(requests.len(), 1, "{requests:?}");
        let mut sent = requests[0].clone();
        sent.sort();
        assert_eq!(sent, ["Observation/a1@1", "Observation/a2@1", "Observation/b1@1", "Patient/p@1", "Patient/q@2"]);
    }

    #[test]
    fn a_refused_write_in_place_of_a_create_if_absent_is_the_writers_and_the_other_resends_its_own() {
        let db = Db::new();
        db.message(
            Some("A"),
            &[bundle_of("A1", vec![entry_of("Patient/p", "ref", true), entry_of("Observation/a1", "1", false)])],
        );
        db.message(Some("B"), &[bundle_of("B1", vec![entry_of("Patient/p", "bad", false)])]);
        let target = Packs::new();
        let metrics = Arc::new(Metrics::default());
        let mut opts = db.options(metrics.clone(), Doorbell::default());
        opts.concurrency = 1;
        let f = Forwarder::start(opts, target.clone()).unwrap();
        wait_until("settled", || metrics.forward_delivered.get() == 1 && metrics.dead_letters.get() == 1);
        f.stop();
        // B1's update stood in for A1's create-if-absent and was refused: B1 is dead-lettered,
        // A1 sends its own entry again.
        assert_eq!(target.versions(), [vec!["Patient/p@bad", "Observation/a1@1"], vec!["Patient@ref"]]);
        assert_eq!(db.states("SELECT state FROM outbox ORDER BY id"), ["delivered", "dead"]);
    }

    #[test]
    fn jobs_are_sized_by_the_share_of_stored_entries_recent_requests_sent() {
        let mut share = SentShare(Some(FIRST_SENT_SHARE));
        assert_eq!(share.job_entries(30), 240);
        // Requests sending a fifth of what is stored: jobs grow towards ten times the limit
        // (five for the share, twice that for the headroom).
        for _ in 0..40 {
            share.observe(Fill { stored: 300, sent: 60 });
        }
        assert!((295..=305).contains(&share.job_entries(30)), "{}", share.job_entries(30));
        // Nothing sent at all: at most MAX_OVERCOMMIT times the limit.
        for _ in 0..40 {
            share.observe(Fill { stored: 100, sent: 0 });
        }
        assert_eq!(share.job_entries(30), 480);
        // Everything sent again: back to twice the limit; a job that took nothing changes nothing.
        for _ in 0..60 {
            share.observe(Fill { stored: 30, sent: 30 });
        }
        share.observe(Fill { stored: 0, sent: 0 });
        assert_eq!(share.job_entries(30), 60);
        // Without write economy every stored entry is sent.
        assert_eq!(SentShare(None).job_entries(30), 30);
    }

    #[test]
    fn a_follower_waits_for_a_head_that_rewrites_what_it_leaves_out_as_unchanged() {
        let db = Db::new();
        let visit = |tag: &str, version: u32| {
            json!({"resourceType": "Bundle", "type": "batch", "id": tag, "entry": [
                {"fullUrl": "urn:uuid:visit", "request": {"method": "PUT", "url": "Encounter/visit"},
                 "resource": {"resourceType": "Encounter", "id": "visit", "meta": {"versionId": version.to_string()}}}]})
        };
        let target = Packs::new();
        let metrics = Arc::new(Metrics::default());
        // The server holds version 1; then version 2 and version 1 again, in this order.
        for (round, rows) in [(1, vec![visit("A0", 1)]), (2, vec![visit("A1", 2), visit("A2", 1)])] {
            for row in &rows {
                db.message(Some("A"), std::slice::from_ref(row));
            }
            let mut opts = db.options(metrics.clone(), Doorbell::default());
            opts.rules.economy = true;
            let f = Forwarder::start(opts, target.clone()).unwrap();
            wait_until("delivered", || metrics.forward_delivered.get() == if round == 1 { 1 } else { 3 });
            f.stop();
        }
        // A2 left its Encounter out as unchanged, but only after A1 is it the server's again:
        // it may not ride along with A1 (settled at once, it would leave version 2 in place).
        assert_eq!(target.requests(), [["Encounter/visit"], ["Encounter/visit"], ["Encounter/visit"]]);
    }

    /// A batch bundle of `shared` entries every round writes alike and `new` of its own.
    fn mostly_unchanged(lane: &str, round: u32, shared: usize, new: usize) -> Value {
        let entry = |name: String| {
            json!({"fullUrl": format!("urn:uuid:{name}"), "resource": {"resourceType": "Observation", "id": name},
                   "request": {"method": "PUT", "url": format!("Observation/{name}")}})
        };
        let shared = (0..shared).map(|i| entry(format!("{lane}-{i}")));
        let new = (0..new).map(|i| entry(format!("{lane}-r{round}.{i}")));
        json!({"resourceType": "Bundle", "type": "batch", "id": format!("{lane}{round}"), "entry": shared.chain(new).collect::<Vec<_>>()})
    }

    #[test]
    fn with_write_economy_a_request_fills_up_with_the_entries_that_changed() {
        let db = Db::new();
        let lanes: Vec<String> = (0..10).map(|l| format!("L{l}")).collect();
        let target = Packs::new();
        let metrics = Arc::new(Metrics::default());
        let mut rounds = Vec::new();
        for (round, new) in [(1, 1), (2, 1), (3, 4)] {
            for lane in &lanes {
                db.message(Some(lane), &[mostly_unchanged(lane, round, 11, new)]);
            }
            let mut opts = db.options(metrics.clone(), Doorbell::default());
            opts.rules.economy = true;
            let before = target.requests().len();
            let f = Forwarder::start(opts, target.clone()).unwrap();
            wait_until("delivered", || metrics.forward_delivered.get() == 10 * round as u64);
            f.stop();
            rounds.push(target.requests()[before..].to_vec());
        }
        // Round 1 writes 12 entries a lane: two lanes to a request.
        assert_eq!(rounds[0].len(), 5, "{:?}", rounds[0]);
        // Round 2 leaves the 11 unchanged entries out: one request carries every lane's new
        // entry (sized by what is stored, two lanes would have gone per request again).
        assert_eq!(rounds[1].len(), 1, "{:?}", rounds[1]);
        assert_eq!(rounds[1][0].len(), 10);
        assert!(rounds[1][0].iter().all(|u| u.contains("-r2.")));
        // Round 3: four new entries a lane; one request is filled to 28, the lanes that no
        // longer fit go in others, each entry once.
        assert!(rounds[2].iter().any(|r| r.len() == 28), "{:?}", rounds[2]);
        assert!(rounds[2].iter().all(|r| r.len() <= 30) && rounds[2].len() <= 3, "{:?}", rounds[2]);
        assert_eq!(rounds[2].concat().len(), 40);
        assert_eq!(metrics.forward_entries_unchanged.get(), 2 * 10 * 11, "each unchanged entry counted once");
        assert_eq!(db.states("SELECT DISTINCT state FROM outbox"), ["delivered"]);
    }

    /// A transaction of `n` updates `Observation/<tag>.<i>`.
    fn tx_of(tag: &str, n: usize) -> Value {
        let mut b = batch(tag, n);
        b["type"] = "transaction".into();
        b
    }

    #[test]
    fn transactions_of_several_lanes_go_together_under_the_targets_limits() {
        let db = Db::new();
        for lane in ["A", "B", "C", "D", "E"] {
            db.message(Some(lane), &[tx_of(lane, 2)]);
        }
        db.message(Some("F"), &[tx_of("Fbad", 2)]);
        let target = Packs::new();
        let metrics = Arc::new(Metrics::default());
        let mut opts = db.options(metrics.clone(), Doorbell::default());
        opts.tx_limits = TxLimits { max_entries: 8, max_updates: 50 };
        let f = Forwarder::start(opts, target.clone()).unwrap();
        wait_until("settled", || metrics.forward_delivered.get() == 5 && metrics.dead_letters.get() == 1);
        f.stop();
        let requests = target.requests();
        assert!(requests.iter().all(|r| r.len() <= 8), "{requests:?}");
        assert!(requests.iter().any(|r| r.len() == 8), "four lanes in one transaction: {requests:?}");
        // The transaction holding F was refused as a whole: each of its parts went alone, F's
        // alone was refused, the others were delivered, each once.
        let delivered: Vec<String> =
            requests.iter().filter(|r| !r.iter().any(|u| u.contains("bad"))).cloned().collect::<Vec<_>>().concat();
        assert_eq!(delivered.len(), 10, "{requests:?}");
        assert_eq!(
            db.states("SELECT state FROM outbox ORDER BY id"),
            ["delivered", "delivered", "delivered", "delivered", "delivered", "dead"]
        );

        // At most `max_updates` updates in one transaction.
        let db = Db::new();
        for lane in ["A", "B", "C"] {
            db.message(Some(lane), &[tx_of(lane, 2)]);
        }
        let target = Packs::new();
        let metrics = Arc::new(Metrics::default());
        let mut opts = db.options(metrics.clone(), Doorbell::default());
        opts.tx_limits = TxLimits { max_entries: 8, max_updates: 3 };
        let f = Forwarder::start(opts, target.clone()).unwrap();
        wait_until("delivered", || metrics.forward_delivered.get() == 3);
        f.stop();
        assert_eq!(target.requests().iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2]);
    }

    #[test]
    fn a_pack_refused_as_a_whole_is_sent_part_by_part_to_find_the_culprit() {
        let db = Db::new();
        db.message(Some("A"), &[batch("Abad", 3)]);
        db.message(Some("B"), &[batch("B1", 3)]);
        let target = Packs::new();
        let metrics = Arc::new(Metrics::default());
        let f = Forwarder::start(db.options(metrics.clone(), Doorbell::default()), target.clone()).unwrap();
        wait_until("delivered", || metrics.forward_delivered.get() == 1 && metrics.dead_letters.get() == 1);
        f.stop();
        let requests = target.requests();
        assert_eq!(requests.len(), 3, "{requests:?}");
        assert_eq!(requests[0].len(), 6, "packed first");
        assert_eq!(requests[1..].iter().map(Vec::len).collect::<Vec<_>>(), [3, 3], "then alone");
        assert_eq!(db.states("SELECT state FROM outbox ORDER BY id"), ["dead", "delivered"]);
        assert_eq!(db.states("SELECT reason FROM dead_letter"), ["HTTP 422; issue codes: invalid"]);
    }

    #[test]
    fn identical_shared_entries_go_once_and_conflicting_ones_wait() {
        let db = Db::new();
        let with_practitioner = |tag: &str, name: &str| {
            let mut b = batch(tag, 1);
            b["entry"].as_array_mut().unwrap().insert(
                0,
                json!({"resource": {"resourceType": "Practitioner", "id": "p", "name": [{"family": name}]},
                "request": {"method": "PUT", "url": "Practitioner/p"}}),
            );
            b
        };
        db.message(Some("A"), &[with_practitioner("A1", "Lee")]);
        db.message(Some("B"), &[with_practitioner("B1", "Lee")]);
        db.message(Some("C"), &[with_practitioner("C1", "Li")]);
        let target = Packs::new();
        let metrics = Arc::new(Metrics::default());
        let mut opts = db.options(metrics.clone(), Doorbell::default());
        opts.concurrency = 1;
        let f = Forwarder::start(opts, target.clone()).unwrap();
        wait_until("delivered", || metrics.forward_delivered.get() == 3);
        f.stop();
        let requests = target.requests();
        assert_eq!(requests[0], ["Practitioner/p", "Observation/A1.0", "Observation/B1.0"], "{requests:?}");
        assert_eq!(requests[1], ["Practitioner/p", "Observation/C1.0"], "{requests:?}");
        assert_eq!(requests.len(), 2);
        assert_eq!(metrics.forward_retries.get(), 0, "waiting for the next request is not a failure");
    }

    #[test]
    fn rows_an_operator_requeues_are_sent_without_a_restart() {
        let db = Db::new();
        db.message(Some("L"), &[tx("m")]);
        let refuse = Arc::new(AtomicBool::new(true));
        let refusing = refuse.clone();
        let fake =
            Fake::new(move |_, _, _| if refusing.load(Ordering::Relaxed) { status(422, json!({})) } else { ok() });
        let metrics = Arc::new(Metrics::default());
        let f = Forwarder::start(db.options(metrics.clone(), Doorbell::default()), fake.clone()).unwrap();
        wait_until("dead letter", || metrics.dead_letters.get() == 1);
        refuse.store(false, Ordering::Relaxed);
        // What `gateway deadletter replay` does: the row back to pending, an audit event.
        db.conn
            .execute("UPDATE outbox SET state = ?1, entries_dead = 0, attempts = 0", [OutboxState::Pending])
            .unwrap();
        db.conn.execute("UPDATE journal SET state = ?1", [JournalState::Converted]).unwrap();
        db.conn
            .execute(
                "INSERT INTO audit (at, actor, action, dead_letter_id, journal_seq) VALUES (1, 'op', 'replay', 1, 1)",
                [],
            )
            .unwrap();
        wait_until("delivered", || metrics.forward_delivered.get() == 1);
        f.stop();
        assert_eq!(fake.tags(), ["m", "m"]);
        assert_eq!(db.states("SELECT state FROM outbox"), ["delivered"]);
    }

    /// A scheduler over `db` that sends one request at a time, driven by hand: jobs are read
    /// from the channel it returns, answers given with [`answer`].
    fn by_hand(db: &Db) -> (Scheduler, mpsc::Receiver<Job>, Sender<Job>, SyncSender<Input>, mpsc::Receiver<Input>) {
        let mut opts = db.options(Arc::new(Metrics::default()), Doorbell::default());
        opts.concurrency = 1;
        let conn = db::open(&db.path, None, Synchronous::Normal).unwrap();
        let ids = Arc::new(IdMap::open(&db.path, Synchronous::Normal, opts.keys.clone(), opts.gate.clone()).unwrap());
        let mut s = Scheduler::new(Outbox::new(conn), opts, Fake::new(|_, _, _| ok()), ids);
        s.lanes.start().unwrap();
        let (jobs_tx, jobs_rx) = mpsc::channel();
        let (record_tx, record_rx) = mpsc::sync_channel(64);
        (s, jobs_rx, jobs_tx, record_tx, record_rx)
    }

    /// The lanes of the next job dispatched now, if any.
    fn next_job(s: &mut Scheduler, jobs_tx: &Sender<Job>, jobs_rx: &mpsc::Receiver<Job>) -> Option<(Vec<String>, Job)> {
        s.dispatch(jobs_tx);
        let job = jobs_rx.try_recv().ok()?;
        Some((job.parts.iter().map(|p| p.lane.clone()).collect(), job))
    }

    /// Answers every part of `job` with `verdict`.
    fn answer(s: &mut Scheduler, job: Job, verdict: Verdict, signals: Signals, records: &SyncSender<Input>) {
        s.in_flight -= 1;
        let parts = job
            .parts
            .into_iter()
            .map(|p| Sent {
                lane: p.lane,
                head: p.head,
                verdict: Some(verdict.clone()),
                follower: p.follower,
                settled: p.settled,
                searched_ahead: false,
            })
            .collect();
        s.settle(Done { parts, signals, fill: Default::default() }, records);
    }

    fn throttled(after: Option<Duration>) -> Verdict {
        Verdict::Retry { class: FailClass::Throttled, after, ok: vec![], dead: vec![] }
    }

    #[test]
    fn a_429_backs_off_only_its_lane_for_its_retry_after_while_other_lanes_go_on() {
        let db = Db::new();
        db.message(Some("A"), &[tx("A1")]);
        db.message(Some("B"), &[tx("B1")]);
        db.message(Some("B"), &[tx("B2")]);
        let (mut s, jobs_rx, jobs_tx, records, _recorded) = by_hand(&db);
        let (lanes, a1) = next_job(&mut s, &jobs_tx, &jobs_rx).unwrap();
        assert_eq!(lanes, ["A"]);
        let refused_at = now_ms();
        answer(&mut s, a1, throttled(Some(Duration::from_secs(30))), Signals::default(), &records);
        // B's head goes at once, and B's next head after it.
        let (lanes, b1) = next_job(&mut s, &jobs_tx, &jobs_rx).expect("lane B is not paused by A's 429");
        assert_eq!(lanes, ["B"]);
        answer(&mut s, b1, Verdict::Settled { ok: vec![0], dead: vec![] }, Signals::default(), &records);
        let (lanes, b2) = next_job(&mut s, &jobs_tx, &jobs_rx).expect("B2 at once");
        assert_eq!(lanes, ["B"]);
        answer(&mut s, b2, Verdict::Settled { ok: vec![0], dead: vec![] }, Signals::default(), &records);
        // A is not sent before its Retry-After.
        assert!(next_job(&mut s, &jobs_tx, &jobs_rx).is_none(), "A waits");
        assert!(s.lanes.held["A"].due >= refused_at + 30_000, "A due after its Retry-After");
        assert!(!s.pacing.paused(Instant::now()), "no global pause");
        assert!(s.next_wake() <= Duration::from_secs(1), "the scheduler keeps looking");
    }

    #[test]
    fn a_server_wide_limit_holds_every_due_lane() {
        let db = Db::new();
        for lane in ["A", "B", "C", "D", "E"] {
            db.message(Some(lane), &[tx(lane)]);
        }
        let (mut s, jobs_rx, jobs_tx, records, _recorded) = by_hand(&db);
        // Throttled requests in a row on several lanes: the limit is the server's.
        for lane in ["A", "B", "C"] {
            assert!(!s.pacing.paused(Instant::now()));
            let (lanes, job) = next_job(&mut s, &jobs_tx, &jobs_rx).unwrap();
            assert_eq!(lanes, [lane]);
            answer(&mut s, job, throttled(Some(Duration::from_secs(20))), Signals::default(), &records);
        }
        assert!(s.pacing.paused(Instant::now()), "a streak of 429s on several lanes pauses everything");
        assert!(next_job(&mut s, &jobs_tx, &jobs_rx).is_none(), "D waits although it is due");
        assert!(s.next_wake() >= Duration::from_millis(900), "nothing to do before the pause ends");
    }

    fn held(s: &Scheduler) -> Vec<String> {
        let mut keys: Vec<String> = s.lanes.held.keys().cloned().collect();
        keys.sort();
        keys
    }

    #[test]
    fn lanes_held_in_memory_are_capped_and_the_others_wait_their_turn_in_journal_order() {
        let db = Db::new();
        for lane in ["A", "B", "C", "D", "E"] {
            db.message(Some(lane), &[tx(lane)]);
        }
        let mut opts = db.options(Arc::new(Metrics::default()), Doorbell::default());
        opts.max_lanes = 2;
        let conn = db::open(&db.path, None, Synchronous::Normal).unwrap();
        let ids = Arc::new(IdMap::open(&db.path, Synchronous::Normal, opts.keys.clone(), opts.gate.clone()).unwrap());
        let mut s = Scheduler::new(Outbox::new(conn), opts, Fake::new(|_, _, _| ok()), ids);
        s.lanes.start().unwrap();
        assert_eq!(held(&s), ["A", "B"]);
        // A new patient's message while lanes wait for room is not taken ahead of them.
        db.message(Some("F"), &[tx("F")]);
        s.lanes.discover().unwrap();
        assert_eq!(held(&s), ["A", "B"]);
        // As lanes finish, the waiting ones are taken in journal order.
        let finish = |s: &mut Scheduler, lane: &str| {
            db.conn
                .execute("UPDATE outbox SET state = ?2 WHERE lane = ?1", params![lane, OutboxState::Delivered])
                .unwrap();
            s.lanes.advance(lane);
            s.lanes.discover().unwrap();
        };
        finish(&mut s, "A");
        assert_eq!(held(&s), ["B", "C"]);
        finish(&mut s, "B");
        finish(&mut s, "C");
        assert_eq!(held(&s), ["D", "E"]);
        finish(&mut s, "D");
        assert_eq!(held(&s), ["E", "F"]);
        finish(&mut s, "E");
        finish(&mut s, "F");
        assert!(held(&s).is_empty() && s.lanes.scan_after.is_none(), "every lane seen, nothing waits");
        // With room again, new lanes are taken as they come.
        db.message(Some("G"), &[tx("G")]);
        s.lanes.discover().unwrap();
        assert_eq!(held(&s), ["G"]);
    }

    #[test]
    fn a_capped_forwarder_delivers_every_lane_in_order() {
        let db = Db::new();
        for round in 1..=3 {
            for lane in ["A", "B", "C", "D", "E", "F"] {
                db.message(Some(lane), &[tx(&format!("{lane}{round}"))]);
            }
        }
        let fake = Fake::new(|_, _, _| ok());
        let metrics = Arc::new(Metrics::default());
        let mut opts = db.options(metrics.clone(), Doorbell::default());
        opts.max_lanes = 2;
        let f = Forwarder::start(opts, fake.clone()).unwrap();
        wait_until("delivered", || metrics.forward_delivered.get() == 18);
        f.stop();
        let tags = fake.tags();
        assert_eq!(tags.len(), 18, "each once: {tags:?}");
        for lane in ["A", "B", "C", "D", "E", "F"] {
            let rounds: Vec<&String> = tags.iter().filter(|t| t.starts_with(lane)).collect();
            assert_eq!(rounds, [&format!("{lane}1"), &format!("{lane}2"), &format!("{lane}3")]);
        }
        assert_eq!(db.states("SELECT DISTINCT state FROM outbox"), ["delivered"]);
    }
}
