//! The delivery loop: per-patient lanes over the outbox, a scheduler thread that owns the
//! database connection and a pool of worker threads that do the HTTP.
//!
//! # Lanes
//! A lane is the journal's lane key (keyed hash of PID-3) or, for a message without one,
//! `seq:<journal_seq>` (its parts still go in order). Only a lane's *head* (its lowest pending
//! outbox id) is ever in flight, so a lane's bundles reach the target in journal order; a
//! failing head waits with backoff while the other lanes go on. A refused bundle goes to
//! dead letters and the lane moves on.
//!
//! # Finding work without scanning the journal
//! - At start: one pass over the partial index `outbox_pending (lane, id) WHERE state =
//!   'pending'` (only undelivered rows, however many delivered rows the outbox keeps), plus
//!   the persisted backoff from `lane_state`.
//! - New rows: `id > last id seen` on the rowid (the convert stage rings the doorbell).
//! - A lane's next head after its head settled: `lane = ? ORDER BY id LIMIT 1` on
//!   `outbox_pending` (or `outbox_pending_message (journal_seq, id)` for `seq:` lanes).
//!
//! All are index seeks; a million delivered rows cost nothing.
//!
//! # Settling
//! A row is marked `delivered` only after a 2xx covering all its entries (batch entries are
//! settled one by one, `entries_done` remembers them across attempts and restarts), `dead`
//! after a refusal (with a `dead_letter` row naming HTTP status and OperationOutcome issue
//! codes). When no part of a message is pending any more, its journal row becomes
//! `delivered` (or `dead`).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::client::Target;
use super::deliver::{self, FailClass, Verdict};
use super::retry::{self, Backoff, Breaker, Throttle};
use crate::ops::metrics::Metrics;
use crate::store::db::{self, OpenError, Synchronous};
use crate::store::{Doorbell, Keys};

/// Everything the forwarder needs.
pub struct ForwardOptions {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    pub keys: Arc<Keys>,
    /// Rung by the convert stage after it wrote bundles; also by the workers.
    pub bell: Doorbell,
    pub metrics: Arc<Metrics>,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub backoff: Backoff,
    /// Retry interval while the target refuses our credentials.
    pub auth_retry: Duration,
    /// Consecutive failures that open the circuit breaker, and its first cooldown.
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
}

impl ForwardOptions {
    /// Defaults for everything but the database, keys and bell.
    pub fn new(path: PathBuf, keys: Arc<Keys>, bell: Doorbell, metrics: Arc<Metrics>) -> ForwardOptions {
        ForwardOptions {
            path,
            synchronous: Synchronous::Full,
            keys,
            bell,
            metrics,
            concurrency: 4,
            backoff: Backoff { base: Duration::from_millis(500), max: Duration::from_secs(300), jitter: true },
            auth_retry: Duration::from_secs(60),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(5),
        }
    }
}

/// The running forwarder.
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    bell: Doorbell,
    thread: JoinHandle<()>,
}

impl Forwarder {
    /// Opens its own connection (the schema must be migrated: the writer does that first)
    /// and starts the scheduler and `concurrency` worker threads.
    pub fn start(opts: ForwardOptions, target: Arc<dyn Target>) -> Result<Forwarder, OpenError> {
        let conn = db::open(&opts.path, None, opts.synchronous)?;
        let stop = Arc::new(AtomicBool::new(false));
        let bell = opts.bell.clone();
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("forward".into())
            .spawn(move || Scheduler::new(conn, opts, target).run(&stopping))
            .expect("spawn forwarder");
        Ok(Forwarder { stop, bell, thread })
    }

    /// Stops sending, waits for the requests in flight (bounded by the client timeouts),
    /// records their outcome and returns.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.bell.ring();
        let _ = self.thread.join();
    }
}

/// How long the scheduler waits for more answers before settling a batch of them.
const SETTLE_GATHER: Duration = Duration::from_millis(3);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

/// A lane's oldest pending row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    id: i64,
    journal_seq: i64,
    created_at: i64,
}

#[derive(Debug)]
struct Lane {
    head: Head,
    failures: u32,
    /// Not before (unix ms).
    due: i64,
    in_flight: bool,
}

struct Job {
    lane: String,
    head: Head,
    sealed: Vec<u8>,
    /// Entries of a batch already settled by earlier attempts.
    settled: Vec<usize>,
}

struct Done {
    lane: String,
    head: Head,
    settled: Vec<usize>,
    verdict: Verdict,
    limit_info: Option<String>,
}

fn lane_key(lane: Option<String>, journal_seq: i64) -> String {
    lane.unwrap_or_else(|| format!("seq:{journal_seq}"))
}

struct Scheduler {
    conn: Connection,
    opts: ForwardOptions,
    target: Arc<dyn Target>,
    lanes: HashMap<String, Lane>,
    /// Idle lanes by (due, head id): the first is the next to send.
    queue: BTreeSet<(i64, i64, String)>,
    max_seen: i64,
    in_flight: usize,
    breaker: Breaker,
    /// Nothing is sent before this (Retry-After, auth failure, API limit).
    pause_until: Option<Instant>,
    /// Near the API limit: one request at a time, spaced.
    slow: Option<Duration>,
    next_send: Instant,
    last_gauges: Option<Instant>,
}

impl Scheduler {
    fn new(conn: Connection, opts: ForwardOptions, target: Arc<dyn Target>) -> Scheduler {
        let breaker = Breaker::new(opts.breaker_threshold, opts.breaker_cooldown, opts.backoff.max.max(opts.breaker_cooldown));
        Scheduler {
            conn,
            opts,
            target,
            lanes: HashMap::new(),
            queue: BTreeSet::new(),
            max_seen: 0,
            in_flight: 0,
            breaker,
            pause_until: None,
            slow: None,
            next_send: Instant::now(),
            last_gauges: None,
        }
    }

    fn run(mut self, stop: &AtomicBool) {
        while let Err(e) = self.load() {
            tracing::error!(error = %e, "forwarder: cannot read the outbox; will retry");
            if stop.load(Ordering::Relaxed) {
                return;
            }
            self.opts.bell.wait(Duration::from_secs(1));
        }
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let workers: Vec<JoinHandle<()>> = (0..self.opts.concurrency.max(1))
            .map(|i| {
                let (rx, tx) = (jobs_rx.clone(), done_tx.clone());
                let (target, keys, metrics, bell) =
                    (self.target.clone(), self.opts.keys.clone(), self.opts.metrics.clone(), self.opts.bell.clone());
                std::thread::Builder::new()
                    .name(format!("forward-{i}"))
                    .spawn(move || worker(&rx, &tx, &*target, &keys, &metrics, &bell))
                    .expect("spawn forward worker")
            })
            .collect();
        drop(done_tx);
        loop {
            let mut done: Vec<Done> = done_rx.try_iter().collect();
            // Settling costs one commit (and fsync): gather the answers that arrive within a
            // couple of milliseconds so one commit settles many deliveries.
            let gather_until = Instant::now() + SETTLE_GATHER;
            while !done.is_empty() && done.len() < self.in_flight {
                match done_rx.recv_timeout(gather_until.saturating_duration_since(Instant::now())) {
                    Ok(d) => done.push(d),
                    Err(_) => break,
                }
            }
            if !done.is_empty() {
                self.in_flight -= done.len();
                // Keep the workers busy with other lanes while this batch is committed; the
                // lanes being settled are not in the ready queue until their head moves on.
                if !stop.load(Ordering::Relaxed) {
                    self.dispatch(&jobs_tx);
                }
                self.settle(done);
            }
            if stop.load(Ordering::Relaxed) {
                if self.in_flight == 0 {
                    break;
                }
                self.opts.bell.wait(Duration::from_millis(50));
                continue;
            }
            if let Err(e) = self.discover() {
                tracing::error!(error = %e, "forwarder: cannot read new outbox rows; will retry");
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
        self.gauges_now();
    }

    /// Start-up: every lane with pending rows, its head, and its persisted backoff.
    fn load(&mut self) -> rusqlite::Result<()> {
        self.lanes.clear();
        self.queue.clear();
        let tx = self.conn.transaction()?;
        self.max_seen = tx.query_row("SELECT coalesce(max(id), 0) FROM outbox", [], |r| r.get(0))?;
        let now = now_ms();
        {
            let mut stmt = tx.prepare(
                "SELECT lane, id, journal_seq, created_at FROM outbox INDEXED BY outbox_pending
                 WHERE state = 'pending' ORDER BY lane, id",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let key = lane_key(r.get(0)?, r.get(2)?);
                let head = Head { id: r.get(1)?, journal_seq: r.get(2)?, created_at: r.get(3)? };
                self.lanes.entry(key).or_insert(Lane { head, failures: 0, due: now, in_flight: false });
            }
            let mut stmt = tx.prepare("SELECT lane, next_attempt_at, failures FROM lane_state")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let key: String = r.get(0)?;
                if let Some(lane) = self.lanes.get_mut(&key) {
                    lane.due = r.get(1)?;
                    lane.failures = r.get::<_, i64>(2)?.clamp(0, u32::MAX as i64) as u32;
                }
            }
        }
        tx.commit()?;
        for (key, lane) in &self.lanes {
            self.queue.insert((lane.due, lane.head.id, key.clone()));
        }
        self.opts.metrics.forward_lanes.set(self.lanes.len() as i64);
        tracing::info!(lanes = self.lanes.len(), "forwarder: outbox loaded");
        Ok(())
    }

    /// Rows the convert stage added since the last look.
    fn discover(&mut self) -> rusqlite::Result<()> {
        loop {
            let rows: Vec<(i64, Option<String>, i64, i64, String)> = self
                .conn
                .prepare_cached(
                    "SELECT id, lane, journal_seq, created_at, state FROM outbox NOT INDEXED
                     WHERE id > ?1 ORDER BY id LIMIT 1000",
                )?
                .query_map([self.max_seen], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
                .collect::<Result<_, _>>()?;
            let now = now_ms();
            for (id, lane, journal_seq, created_at, state) in &rows {
                self.max_seen = self.max_seen.max(*id);
                if state != "pending" {
                    continue;
                }
                let key = lane_key(lane.clone(), *journal_seq);
                if !self.lanes.contains_key(&key) {
                    let head = Head { id: *id, journal_seq: *journal_seq, created_at: *created_at };
                    self.queue.insert((now, *id, key.clone()));
                    self.lanes.insert(key, Lane { head, failures: 0, due: now, in_flight: false });
                }
            }
            if rows.len() < 1000 {
                return Ok(());
            }
        }
    }

    fn next_head(&self, key: &str) -> rusqlite::Result<Option<Head>> {
        let map = |r: &rusqlite::Row| Ok(Head { id: r.get(0)?, journal_seq: r.get(1)?, created_at: r.get(2)? });
        match key.strip_prefix("seq:").and_then(|s| s.parse::<i64>().ok()) {
            Some(seq) => self
                .conn
                .prepare_cached(
                    "SELECT id, journal_seq, created_at FROM outbox INDEXED BY outbox_pending_message
                     WHERE state = 'pending' AND journal_seq = ?1 AND lane IS NULL ORDER BY id LIMIT 1",
                )?
                .query_row([seq], map)
                .optional(),
            None => self
                .conn
                .prepare_cached(
                    "SELECT id, journal_seq, created_at FROM outbox INDEXED BY outbox_pending
                     WHERE state = 'pending' AND lane = ?1 ORDER BY id LIMIT 1",
                )?
                .query_row([key], map)
                .optional(),
        }
    }

    fn paused(&self, now: Instant) -> bool {
        self.pause_until.is_some_and(|t| now < t) || (self.slow.is_some() && now < self.next_send)
    }

    /// Hands due lane heads to the workers, up to the concurrency.
    fn dispatch(&mut self, jobs: &Sender<Job>) {
        let cap = if self.slow.is_some() { 1 } else { self.opts.concurrency.max(1) };
        while self.in_flight < cap {
            let now = Instant::now();
            if self.paused(now) {
                return;
            }
            let Some((due, _, key)) = self.queue.first().cloned() else { return };
            if due > now_ms() || !self.breaker.allow(now) {
                return;
            }
            self.queue.pop_first();
            let head = self.lanes[&key].head;
            let row: Option<(Vec<u8>, Option<String>, String)> = match self
                .conn
                .prepare_cached("SELECT bundle, entries_done, state FROM outbox WHERE id = ?1")
                .and_then(|mut s| s.query_row([head.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
            {
                Ok(row) => row,
                Err(e) => {
                    tracing::error!(error = %e, "forwarder: cannot read a bundle; will retry");
                    self.breaker.neutral();
                    self.requeue(&key, now_ms() + 1000);
                    return;
                }
            };
            match row {
                Some((sealed, done, state)) if state == "pending" => {
                    let settled = done.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default();
                    if let Some(lane) = self.lanes.get_mut(&key) {
                        lane.in_flight = true;
                    }
                    self.in_flight += 1;
                    if let Some(interval) = self.slow {
                        self.next_send = now + interval;
                    }
                    if jobs.send(Job { lane: key, head, sealed, settled }).is_err() {
                        return;
                    }
                }
                // Settled behind our back (an operator): move the lane on.
                _ => {
                    self.breaker.neutral();
                    self.advance(&key);
                }
            }
        }
    }

    fn requeue(&mut self, key: &str, due: i64) {
        if let Some(lane) = self.lanes.get_mut(key) {
            lane.in_flight = false;
            lane.due = due;
            self.queue.insert((due, lane.head.id, key.to_string()));
        }
    }

    /// The lane's head is settled: queue its next head, or forget the lane.
    fn advance(&mut self, key: &str) {
        match self.next_head(key) {
            Ok(Some(head)) => {
                if let Some(lane) = self.lanes.get_mut(key) {
                    lane.head = head;
                    lane.failures = 0;
                }
                self.requeue(key, now_ms());
            }
            Ok(None) => {
                self.lanes.remove(key);
            }
            Err(e) => {
                tracing::error!(error = %e, "forwarder: cannot find a lane's next bundle; will retry");
                self.requeue(key, now_ms() + 1000);
            }
        }
    }

    /// Records the outcomes in one transaction, then moves the lanes on.
    fn settle(&mut self, done: Vec<Done>) {
        let now = now_ms();
        let instant = Instant::now();
        let metrics = self.opts.metrics.clone();
        // Per-lane consequences, applied after the commit.
        let mut after: Vec<(String, Option<i64>)> = Vec::new(); // None: advance; Some(due): retry
        let mut delivered = 0u64;
        let mut dead_letters = 0u64;
        let mut journal_delivered = 0i64;
        let result = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for d in &done {
                let failures = self.lanes.get(&d.lane).map_or(0, |l| l.failures);
                let (ok, dead, final_state) = match &d.verdict {
                    Verdict::Settled { ok, dead } => (ok.clone(), dead.clone(), true),
                    Verdict::Retry { ok, dead, .. } => (ok.clone(), dead.clone(), false),
                    Verdict::Dead { reason, .. } => (vec![], vec![(usize::MAX, reason.clone())], true),
                    Verdict::AuthFailed => (vec![], vec![], false),
                };
                if !dead.is_empty() {
                    let reason: Vec<&str> = dead.iter().map(|(_, r)| r.as_str()).collect();
                    let mut reason = reason.join("; ");
                    reason.truncate(500);
                    tx.prepare_cached("INSERT INTO dead_letter (journal_seq, stage, reason, created_at) VALUES (?1, 'deliver', ?2, ?3)")?.execute(
                        params![d.head.journal_seq, reason, now],
                    )?;
                    dead_letters += 1;
                }
                let n_dead = dead.len() as i64;
                if final_state {
                    let state: String = tx.prepare_cached("UPDATE outbox SET state = CASE WHEN entries_dead + ?2 > 0 THEN 'dead' ELSE 'delivered' END,
                                entries_dead = entries_dead + ?2, attempts = attempts + 1, entries_done = NULL
                         WHERE id = ?1 AND state = 'pending' RETURNING state")?.query_row(
                        params![d.head.id, n_dead],
                        |r| r.get(0),
                    ).optional()?.unwrap_or_default();
                    if state == "delivered" {
                        delivered += 1;
                    }
                    tx.prepare_cached("DELETE FROM lane_state WHERE lane = ?1")?.execute( [&d.lane])?;
                    let left: i64 = tx.prepare_cached("SELECT count(*) FROM outbox WHERE journal_seq = ?1 AND state = 'pending'")?.query_row(
                        [d.head.journal_seq],
                        |r| r.get(0),
                    )?;
                    if left == 0 {
                        let any_dead: bool = tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox WHERE journal_seq = ?1 AND state = 'dead')")?.query_row(
                            [d.head.journal_seq],
                            |r| r.get(0),
                        )?;
                        let state = if any_dead { "dead" } else { "delivered" };
                        let changed = tx.prepare_cached("UPDATE journal SET state = ?2 WHERE seq = ?1 AND state = 'converted'")?.execute(
                            params![d.head.journal_seq, state],
                        )?;
                        if changed > 0 && !any_dead {
                            journal_delivered += 1;
                        }
                    }
                    after.push((d.lane.clone(), None));
                } else {
                    let mut settled = d.settled.clone();
                    settled.extend(ok.iter().copied());
                    settled.extend(dead.iter().map(|(i, _)| *i));
                    settled.sort_unstable();
                    settled.dedup();
                    let settled = (!settled.is_empty()).then(|| serde_json::to_string(&settled).expect("indexes serialize"));
                    tx.prepare_cached("UPDATE outbox SET attempts = attempts + 1, entries_done = ?2, entries_dead = entries_dead + ?3
                         WHERE id = ?1 AND state = 'pending'")?.execute(
                        params![d.head.id, settled, n_dead],
                    )?;
                    let failures = failures.saturating_add(1);
                    let (class, delay) = match &d.verdict {
                        Verdict::Retry { class, after, .. } => {
                            let backoff = self.opts.backoff.delay(failures);
                            (*class, after.map_or(backoff, |a| a.max(backoff)))
                        }
                        _ => (FailClass::Auth, self.opts.auth_retry),
                    };
                    let due = now + delay.as_millis() as i64;
                    tx.prepare_cached("INSERT INTO lane_state (lane, next_attempt_at, failures, last_error) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (lane) DO UPDATE SET next_attempt_at = ?2, failures = ?3, last_error = ?4")?.execute(
                        params![d.lane, due, failures, class.label()],
                    )?;
                    after.push((d.lane.clone(), Some(due)));
                }
            }
            tx.commit()
        })();
        if let Err(e) = result {
            // Nothing was recorded: the rows are still pending and will be sent again
            // (idempotent at the target).
            tracing::error!(error = %e, "forwarder: cannot record delivery outcomes; will send again");
            for d in &done {
                self.requeue(&d.lane, now + 1000);
            }
            return;
        }
        metrics.forward_delivered.add(delivered);
        metrics.dead_letters.add(dead_letters);
        metrics.journal_depth.add(-journal_delivered);
        for d in &done {
            self.observe(d, instant);
        }
        for (key, due) in after {
            match due {
                None => self.advance(&key),
                Some(due) => {
                    if let Some(lane) = self.lanes.get_mut(&key) {
                        lane.failures = lane.failures.saturating_add(1);
                    }
                    self.requeue(&key, due);
                }
            }
        }
    }

    /// Breaker, pauses, throttling and failure metrics from one outcome.
    fn observe(&mut self, d: &Done, now: Instant) {
        let metrics = &self.opts.metrics;
        let fail = |class: FailClass| {
            let i = FailClass::ALL.iter().position(|c| *c == class).unwrap_or(0);
            metrics.forward_failures[i].inc();
        };
        match &d.verdict {
            Verdict::Settled { dead, .. } => {
                self.breaker.success();
                metrics.forward_auth_failing.set(0);
                if !dead.is_empty() {
                    fail(FailClass::Client);
                }
            }
            Verdict::Dead { class, .. } => {
                self.breaker.success();
                metrics.forward_auth_failing.set(0);
                fail(*class);
            }
            Verdict::Retry { class, after, .. } => {
                fail(*class);
                metrics.forward_retries.inc();
                if class.trips_breaker() {
                    self.breaker.failure(now);
                } else {
                    self.breaker.neutral();
                }
                if let Some(after) = after {
                    let until = now + *after;
                    self.pause_until = Some(self.pause_until.map_or(until, |p| p.max(until)));
                }
            }
            Verdict::AuthFailed => {
                fail(FailClass::Auth);
                metrics.forward_retries.inc();
                self.breaker.neutral();
                if metrics.forward_auth_failing.get() == 0 {
                    tracing::error!("forwarder: the FHIR server refuses the gateway's credentials; retrying every {:?}", self.opts.auth_retry);
                }
                metrics.forward_auth_failing.set(1);
                let until = now + self.opts.auth_retry;
                self.pause_until = Some(self.pause_until.map_or(until, |p| p.max(until)));
            }
        }
        if let Some((used, max)) = d.limit_info.as_deref().and_then(retry::parse_limit_info) {
            metrics.forward_api_usage_permille.set((used.saturating_mul(1000) / max) as i64);
            match retry::throttle(used, max, SystemTime::now()) {
                Throttle::Normal => self.slow = None,
                Throttle::Slow(interval) => self.slow = Some(interval),
                Throttle::Pause(d) => {
                    tracing::warn!(used, max, "forwarder: API usage near the daily limit; pausing for {d:?}");
                    let until = now + d;
                    self.pause_until = Some(self.pause_until.map_or(until, |p| p.max(until)));
                }
            }
        }
    }

    /// How long the scheduler may sleep: until the next lane is due and sending is allowed
    /// again, at most a second. Results and new rows ring the bell and wake it earlier.
    fn next_wake(&self) -> Duration {
        const MAX: Duration = Duration::from_secs(1);
        let cap = if self.slow.is_some() { 1 } else { self.opts.concurrency.max(1) };
        if self.in_flight >= cap || self.breaker.state() == retry::BreakerState::HalfOpen {
            return MAX; // a finishing request rings the bell
        }
        let Some((due, _, _)) = self.queue.first() else { return MAX };
        let now = Instant::now();
        let mut at = now + Duration::from_millis((due - now_ms()).max(0) as u64);
        for t in [self.pause_until, self.breaker.open_until(), self.slow.map(|_| self.next_send)].into_iter().flatten() {
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
        let oldest = self.lanes.values().map(|l| l.head.created_at).min();
        m.forward_oldest_pending_secs.set(oldest.map_or(0, |t| ((now_ms() - t) / 1000).max(0)));
        m.forward_circuit_state.set(self.breaker.state() as i64);
        m.forward_token_refreshes.set(self.target.token_refreshes() as i64);
    }
}

/// One worker: decrypt, send, judge; the scheduler records the outcome.
fn worker(jobs: &Mutex<Receiver<Job>>, done: &Sender<Done>, target: &dyn Target, keys: &Keys, metrics: &Metrics, bell: &Doorbell) {
    loop {
        let job = match jobs.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let (verdict, limit_info) = attempt(&job, target, keys, metrics);
        let result = Done { lane: job.lane, head: job.head, settled: job.settled, verdict, limit_info };
        if done.send(result).is_err() {
            return;
        }
        bell.ring();
    }
}

fn attempt(job: &Job, target: &dyn Target, keys: &Keys, metrics: &Metrics) -> (Verdict, Option<String>) {
    let dead = |reason: &str| Verdict::Dead { class: FailClass::Client, reason: reason.into() };
    let Ok(plain) = keys.open(&job.sealed) else { return (dead("bundle does not decrypt under the key file"), None) };
    let Ok(bundle) = serde_json::from_slice::<Value>(&plain) else { return (dead("bundle is not JSON"), None) };
    let kind = deliver::bundle_type(&bundle).to_string();
    let (body, sent) = if job.settled.is_empty() {
        let n = bundle.get("entry").and_then(Value::as_array).map_or(0, Vec::len);
        (plain, (0..n).collect::<Vec<_>>())
    } else {
        let (sub, sent) = deliver::remaining(&bundle, &job.settled);
        (serde_json::to_vec(&sub).expect("JSON values serialize"), sent)
    };
    let started = Instant::now();
    let result = target.send(&body);
    metrics.forward_latency.observe(started.elapsed().as_secs_f64());
    match result {
        Ok(resp) => {
            let limit = resp.limit_info.clone();
            (deliver::judge(&kind, &sent, &resp, SystemTime::now()), limit)
        }
        Err(e) => {
            tracing::debug!(error = %e, "forwarder: request failed");
            (deliver::judge_error(&e), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::client::{Response, SendError};
    use serde_json::json;

    struct Db {
        dir: PathBuf,
        path: PathBuf,
        conn: Connection,
        keys: Arc<Keys>,
    }

    impl Db {
        fn new(name: &str) -> Db {
            let dir = std::env::temp_dir().join(format!("gw-fwd-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let path = dir.join("j.db");
            let mut conn = db::open(&path, None, Synchronous::Normal).unwrap();
            db::migrate(&mut conn, &path).unwrap();
            Db { dir, path, conn, keys: Arc::new(Keys::from_master(&[9; 32])) }
        }

        /// A converted journal row with its bundles (`parts`), each tagged with `tag` names.
        fn message(&self, lane: Option<&str>, parts: &[Value]) -> i64 {
            self.conn
                .execute(
                    "INSERT INTO journal (received_at, listener, sender, control_id, message_type, lane, payload_hash, state, payload)
                     VALUES (1, 'l', 's', 'c', 'ADT^A01', ?1, x'00', 'converted', x'00')",
                    [lane],
                )
                .unwrap();
            let seq = self.conn.last_insert_rowid();
            for (i, b) in parts.iter().enumerate() {
                self.conn
                    .execute(
                        "INSERT INTO outbox (journal_seq, part, lane, created_at, bundle) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![seq, i as i64, lane, now_ms(), self.keys.seal(b.to_string().as_bytes())],
                    )
                    .unwrap();
            }
            seq
        }

        fn options(&self, metrics: Arc<Metrics>, bell: Doorbell) -> ForwardOptions {
            let mut o = ForwardOptions::new(self.path.clone(), self.keys.clone(), bell, metrics);
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

    impl Drop for Db {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
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
        fn new(script: impl Fn(&str, usize, &Value) -> Result<Response, SendError> + Send + Sync + 'static) -> Arc<Fake> {
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
        Ok(Response { status: 200, body: br#"{"resourceType":"Bundle","type":"transaction-response"}"#.to_vec(), ..Response::default() })
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
        let db = Db::new("order");
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
        assert_eq!(metrics.forward_failures[3].get(), 3, "5xx");
        assert_eq!(metrics.forward_failures[4].get(), 1, "timeout");
        assert_eq!(db.states("SELECT lane FROM lane_state"), Vec::<String>::new(), "backoff state cleared");
        assert_eq!(metrics.forward_lanes.get(), 0);
    }

    #[test]
    fn batch_entries_settle_one_by_one_and_a_424_sibling_is_resent_alone() {
        let db = Db::new("batch");
        let batch = json!({"resourceType": "Bundle", "type": "batch", "id": "S1", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p"}, "request": {"method": "PUT", "url": "Patient/p"}},
            {"resource": {"resourceType": "Encounter", "id": "e"}, "request": {"method": "PUT", "url": "Encounter/e"}},
            {"resource": {"resourceType": "Observation", "id": "o"}, "request": {"method": "PUT", "url": "Observation/o"}}]});
        db.message(Some("L"), &[batch]);
        let fake = Fake::new(|_, n, b| {
            let entries = b["entry"].as_array().unwrap().len();
            match n {
                1 => status(200, json!({"type": "batch-response", "entry": [
                    {"response": {"status": "201 Created"}}, {"response": {"status": "424 Failed Dependency"}},
                    {"response": {"status": "200 OK"}}]})),
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
        let db = Db::new("dead");
        db.message(Some("L"), &[tx("bad")]);
        db.message(Some("L"), &[tx("good")]);
        let fake = Fake::new(|tag, _, _| match tag {
            "bad" => status(422, json!({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "invariant", "diagnostics": "Patient SMITH^JOHN MRN 4711 invalid"},
                {"severity": "error", "code": "required", "details": {"text": "DOB 1970-01-01"}}]})),
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
        assert_eq!(metrics.forward_failures[0].get(), 1, "4xx");
    }

    #[test]
    fn auth_failure_is_visible_and_retried_slowly_until_it_clears() {
        let db = Db::new("auth");
        db.message(Some("L"), &[tx("m")]);
        let fake = Fake::new(|_, n, _| if n <= 2 { status(401, json!({})) } else { ok() });
        let metrics = Arc::new(Metrics::default());
        let f = Forwarder::start(db.options(metrics.clone(), Doorbell::default()), fake.clone()).unwrap();
        wait_until("auth failure visible", || metrics.forward_auth_failing.get() == 1);
        assert_eq!(db.states("SELECT state FROM outbox"), ["pending"]);
        assert_eq!(db.states("SELECT last_error FROM lane_state"), ["401"]);
        wait_until("delivered", || metrics.forward_delivered.get() == 1);
        f.stop();
        assert_eq!(metrics.forward_auth_failing.get(), 0);
        assert_eq!(metrics.forward_failures[1].get(), 2);
    }

    #[test]
    fn restart_resumes_backoff_and_sends_nothing_twice() {
        let db = Db::new("restart");
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
}
