//! Process metrics as lock-free counters, rendered in the Prometheus text format, and the
//! stages' liveness ([`liveness`]). Every layer counts into them, so they depend on nothing
//! in the crate but the clock. Labels carry codes and reasons only, never message content
//! (the one label a sender chooses, a message type, is checked and bounded: [`by_type`]).

pub(crate) mod alerts;
pub mod board;
pub mod by_type;
pub(crate) mod feeds;
pub mod liveness;

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.add(1);
    }
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Gauge(AtomicI64);

impl Gauge {
    pub(crate) fn add(&self, n: i64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub(crate) fn set(&self, n: i64) {
        self.0.store(n, Relaxed);
    }
    pub(crate) fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// A fixed-bucket histogram.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in millionths of the unit, to stay in integers.
    sum_micros: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
    pub(crate) fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((value * 1e6) as u64, Relaxed);
    }
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
}

/// Why a message was refused; the `reason` label of `gateway_naks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NakReason {
    /// MSH missing or unusable, or an invalid segment.
    Unparseable,
    /// Message type, event, version or processing ID not accepted by the listener.
    Unsupported,
    StorageFull,
    StorageError,
    FrameTooLarge,
    BadEndBlock,
    /// Several messages in one frame without a batch header (FHS/BHS).
    NoBatchHeader,
}

impl NakReason {
    const ALL: [NakReason; 7] = [
        NakReason::Unparseable,
        NakReason::Unsupported,
        NakReason::StorageFull,
        NakReason::StorageError,
        NakReason::FrameTooLarge,
        NakReason::BadEndBlock,
        NakReason::NoBatchHeader,
    ];
    fn label(self) -> &'static str {
        match self {
            NakReason::Unparseable => "unparseable",
            NakReason::Unsupported => "unsupported",
            NakReason::StorageFull => "storage_full",
            NakReason::StorageError => "storage_error",
            NakReason::FrameTooLarge => "frame_too_large",
            NakReason::BadEndBlock => "bad_end_block",
            NakReason::NoBatchHeader => "no_batch_header",
        }
    }
}

/// Failure classes, the `class` label of `gateway_forward_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailClass {
    /// A 4xx other than 401/403/408/429: the bundle is refused (dead letter).
    Client,
    /// 401/403 after one credential refresh, or no credentials could be obtained.
    Auth,
    /// 429 (and 503 with `Retry-After`).
    Throttled,
    /// 5xx, 408, 3xx: the server failed.
    Server,
    Timeout,
    Connect,
}

impl FailClass {
    pub const ALL: [FailClass; 6] = [
        FailClass::Client,
        FailClass::Auth,
        FailClass::Throttled,
        FailClass::Server,
        FailClass::Timeout,
        FailClass::Connect,
    ];
    pub fn label(self) -> &'static str {
        match self {
            FailClass::Client => "4xx",
            FailClass::Auth => "401",
            FailClass::Throttled => "429",
            FailClass::Server => "5xx",
            FailClass::Timeout => "timeout",
            FailClass::Connect => "connect",
        }
    }
}

/// What a search on identifier before a create found (`forward::lookup`), the `result`
/// label of `gateway_forward_lookups_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupResult {
    /// One resource: its id is learnt, the entry updates it.
    Found,
    /// None: the entry creates it.
    Absent,
    /// Several: the entry is refused (dead letter) rather than guessed.
    Ambiguous,
    /// No usable answer: the entry is created as without a lookup.
    Failed,
}

impl LookupResult {
    pub(crate) const ALL: [LookupResult; 4] =
        [LookupResult::Found, LookupResult::Absent, LookupResult::Ambiguous, LookupResult::Failed];
    fn label(self) -> &'static str {
        match self {
            LookupResult::Found => "found",
            LookupResult::Absent => "absent",
            LookupResult::Ambiguous => "ambiguous",
            LookupResult::Failed => "failed",
        }
    }
}

pub(crate) const ACK_CODES: [&str; 6] = ["AA", "AE", "AR", "CA", "CE", "CR"];
const LATENCY_BOUNDS: &[f64] = &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

#[derive(Debug)]
pub struct Metrics {
    pub(crate) frames_received: Counter,
    pub(crate) bytes_received: Counter,
    pub(crate) discarded_bytes: Counter,
    acks: [Counter; 6],
    naks: [Counter; NakReason::ALL.len()],
    /// Messages the converter cannot convert, stored as dead letters (`store_unsupported`).
    pub(crate) unsupported: by_type::ByType,
    pub(crate) duplicates: Counter,
    pub(crate) stored: Counter,
    pub(crate) converted: Counter,
    /// Items of conversion reports, by kind.
    pub(crate) convert_report: ReportCounters,
    pub(crate) dead_letters: Counter,
    pub(crate) ack_latency: Histogram,
    pub(crate) batch_size: Histogram,
    pub(crate) journal_depth: Gauge,
    pub(crate) connections_open: Gauge,
    pub(crate) refused_allowlist: Counter,
    pub(crate) refused_limit: Counter,
    pub(crate) frame_timeouts: Counter,
    pub(crate) idle_timeouts: Counter,
    pub(crate) tls_failures: Counter,
    /// Connections refused because their source address holds `max_connections_per_source`.
    pub(crate) refused_per_source: Counter,
    /// Admin connections refused over the admin connection cap.
    pub(crate) refused_admin: Counter,
    /// Idle connections closed to admit a new one to a full listener.
    pub(crate) connections_evicted: Counter,
    /// MLLP connections in the middle of a frame or its commit (never closed to make room).
    pub(crate) connections_in_frame: Gauge,
    /// Bytes handed out by the in-flight frame budget, and its size.
    pub(crate) inflight_frame_bytes: Gauge,
    pub(crate) inflight_frame_budget: Gauge,
    /// Times a connection had to wait (stop reading) for the in-flight frame budget.
    pub(crate) inflight_frame_waits: Counter,
    /// Outbox bundles delivered (2xx for every entry, or settled entry by entry).
    pub(crate) forward_delivered: Counter,
    /// Failed delivery attempts by class.
    pub(crate) forward_failures: FailCounters,
    /// Attempts scheduled again after a failure.
    pub(crate) forward_retries: Counter,
    /// Bundle entries written to the target, and left out because the target holds them
    /// unchanged (write economy); entries of unsupported types dropped; requests sent.
    pub(crate) forward_entries_sent: Counter,
    pub(crate) forward_entries_unchanged: Counter,
    pub(crate) forward_entries_unsupported: Counter,
    pub(crate) forward_requests: Counter,
    /// Searches on identifier before a create, by result.
    forward_lookups: [Counter; LookupResult::ALL.len()],
    /// Patient lanes with undelivered bundles.
    pub(crate) forward_lanes: Gauge,
    /// Age of the oldest undelivered bundle, seconds.
    pub(crate) forward_oldest_pending_secs: Gauge,
    /// Access tokens fetched (mirrors the auth's own count).
    pub(crate) forward_token_refreshes: Gauge,
    /// Circuit breaker: 0 closed, 1 half-open, 2 open.
    pub(crate) forward_circuit_state: Gauge,
    /// 1 while the cloud refuses our credentials even after a refresh.
    pub(crate) forward_auth_failing: Gauge,
    /// 1 while requests to the cloud get no HTTP answer (connect failures, timeouts).
    pub(crate) forward_link_down: Gauge,
    /// Salesforce API usage of the daily limit, per mille (0 when unknown).
    pub(crate) forward_api_usage_permille: Gauge,
    /// Requests sent today of `[cloud] daily_api_budget`, per mille (0 when unset).
    pub(crate) forward_api_budget_permille: Gauge,
    /// Request duration, send to last body byte.
    pub(crate) forward_latency: Histogram,
    /// Liveness of the data path's stages.
    pub(crate) stages: liveness::Stages,
    /// Messages moved to dead letters at start by `--discard-undecryptable` (lost key).
    pub(crate) lost_key_dead_letters: Gauge,
    /// On-disk sizes of the journal's files (database, WAL, shared memory), bytes.
    pub(crate) journal_db_bytes: Gauge,
    pub(crate) journal_wal_bytes: Gauge,
    pub(crate) journal_shm_bytes: Gauge,
    /// Group commits that refused messages because the disk budget was reached.
    pub(crate) journal_budget_full: Counter,
    /// Journal commits that failed because the filesystem was full (SQLITE_FULL).
    pub(crate) journal_disk_full: Counter,
    /// Checkpoints that emptied the WAL file (TRUNCATE).
    pub(crate) wal_truncations: Counter,
    /// 1 while `GATEWAY_UNSAFE_TRACE` lifts the log cap (set by the daemon from `ops::logging`).
    pub(crate) log_unsafe_trace: Gauge,
    /// Applied updates that did not stay booted (persisted by `gateway update boot-check`,
    /// read at start).
    pub(crate) update_rollbacks: Counter,
    /// Watchdog pings, the status LED, the reset button.
    pub(crate) board: board::BoardMetrics,
    /// Per listener: last message, ACK codes, rates (the status page, feed silence).
    pub(crate) feeds: feeds::Feeds,
    /// Raised and cleared alerts (`ops/alerts`).
    pub(crate) alerts: alerts::AlertGauges,
}

/// Items of conversion reports, by kind (the `kind` label of
/// `gateway_convert_report_items_total`).
#[derive(Debug, Default)]
pub(crate) struct ReportCounters {
    pub(crate) unconsumed_segment: Counter,
    pub(crate) unmapped_code: Counter,
    pub(crate) warning: Counter,
    /// Assigning authorities keyed under `default_identifier_system`.
    pub(crate) default_system: Counter,
    /// Resource types with a keyless resource.
    pub(crate) keyless: Counter,
}

impl ReportCounters {
    pub(crate) fn all(&self) -> [(&'static str, &Counter); 5] {
        [
            ("unconsumed_segment", &self.unconsumed_segment),
            ("unmapped_code", &self.unmapped_code),
            ("warning", &self.warning),
            ("default_system", &self.default_system),
            ("keyless", &self.keyless),
        ]
    }
}

/// One counter per [`FailClass`] (the `class` label of `gateway_forward_failures_total`).
#[derive(Debug, Default)]
pub(crate) struct FailCounters([Counter; FailClass::ALL.len()]);

impl std::ops::Index<FailClass> for FailCounters {
    type Output = Counter;
    fn index(&self, class: FailClass) -> &Counter {
        &self.0[class as usize]
    }
}

const FORWARD_LATENCY_BOUNDS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            frames_received: Counter::default(),
            bytes_received: Counter::default(),
            discarded_bytes: Counter::default(),
            acks: Default::default(),
            naks: Default::default(),
            unsupported: Default::default(),
            duplicates: Counter::default(),
            stored: Counter::default(),
            converted: Counter::default(),
            convert_report: ReportCounters::default(),
            dead_letters: Counter::default(),
            ack_latency: Histogram::new(LATENCY_BOUNDS),
            batch_size: Histogram::new(BATCH_BOUNDS),
            journal_depth: Gauge::default(),
            connections_open: Gauge::default(),
            refused_allowlist: Counter::default(),
            refused_limit: Counter::default(),
            frame_timeouts: Counter::default(),
            idle_timeouts: Counter::default(),
            tls_failures: Counter::default(),
            refused_per_source: Counter::default(),
            refused_admin: Counter::default(),
            connections_evicted: Counter::default(),
            connections_in_frame: Gauge::default(),
            inflight_frame_bytes: Gauge::default(),
            inflight_frame_budget: Gauge::default(),
            inflight_frame_waits: Counter::default(),
            forward_delivered: Counter::default(),
            forward_failures: Default::default(),
            forward_retries: Counter::default(),
            forward_entries_sent: Counter::default(),
            forward_entries_unchanged: Counter::default(),
            forward_entries_unsupported: Counter::default(),
            forward_requests: Counter::default(),
            forward_lookups: Default::default(),
            forward_lanes: Gauge::default(),
            forward_oldest_pending_secs: Gauge::default(),
            forward_token_refreshes: Gauge::default(),
            forward_circuit_state: Gauge::default(),
            forward_auth_failing: Gauge::default(),
            forward_link_down: Gauge::default(),
            forward_api_usage_permille: Gauge::default(),
            forward_api_budget_permille: Gauge::default(),
            forward_latency: Histogram::new(FORWARD_LATENCY_BOUNDS),
            stages: Default::default(),
            lost_key_dead_letters: Gauge::default(),
            journal_db_bytes: Gauge::default(),
            journal_wal_bytes: Gauge::default(),
            journal_shm_bytes: Gauge::default(),
            journal_budget_full: Counter::default(),
            journal_disk_full: Counter::default(),
            wal_truncations: Counter::default(),
            log_unsafe_trace: Gauge::default(),
            update_rollbacks: Counter::default(),
            board: Default::default(),
            feeds: Default::default(),
            alerts: Default::default(),
        }
    }
}

impl Metrics {
    /// Counts an acknowledgment by its MSA-1 code.
    pub(crate) fn ack(&self, code: &str) {
        if let Some(i) = ACK_CODES.iter().position(|c| *c == code) {
            self.acks[i].inc();
        }
    }
    /// Counts an acknowledgment sent on `listener` (and the listener's last message time).
    pub(crate) fn ack_on(&self, listener: &str, code: &str) {
        self.ack(code);
        self.feeds.seen(listener, code, crate::clock::now_ms());
    }
    pub fn acks(&self, code: &str) -> u64 {
        ACK_CODES.iter().position(|c| *c == code).map_or(0, |i| self.acks[i].get())
    }
    pub(crate) fn nak(&self, reason: NakReason) {
        self.naks[reason as usize].inc();
    }
    pub(crate) fn naks(&self, reason: NakReason) -> u64 {
        self.naks[reason as usize].get()
    }
    pub(crate) fn lookup(&self, result: LookupResult) {
        self.forward_lookups[result as usize].inc();
    }
    pub(crate) fn lookups(&self, result: LookupResult) -> u64 {
        self.forward_lookups[result as usize].get()
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let counters = [
            ("gateway_frames_received_total", "MLLP frames received", &self.frames_received),
            ("gateway_bytes_received_total", "Bytes of MLLP frame content received", &self.bytes_received),
            (
                "gateway_discarded_bytes_total",
                "Bytes outside frames discarded (garbage, truncated frames)",
                &self.discarded_bytes,
            ),
            ("gateway_duplicates_total", "Re-sent messages acknowledged without a second copy", &self.duplicates),
            ("gateway_messages_stored_total", "Messages durably stored", &self.stored),
            ("gateway_messages_converted_total", "Messages converted to FHIR bundles in the outbox", &self.converted),
            ("gateway_dead_letters_total", "Messages moved to dead letters", &self.dead_letters),
            (
                "gateway_update_rollbacks_total",
                "Applied updates that did not stay booted (the box fell back to the other slot)",
                &self.update_rollbacks,
            ),
            ("gateway_frame_timeouts_total", "Connections closed because a frame stalled", &self.frame_timeouts),
            ("gateway_idle_timeouts_total", "Connections closed for idleness", &self.idle_timeouts),
            (
                "gateway_tls_handshake_failures_total",
                "TLS handshakes that failed (incl. rejected client certificates)",
                &self.tls_failures,
            ),
            (
                "gateway_connections_evicted_total",
                "Idle connections closed to admit a new one to a full listener",
                &self.connections_evicted,
            ),
            (
                "gateway_inflight_frame_waits_total",
                "Times a connection stopped reading until the in-flight frame budget had room",
                &self.inflight_frame_waits,
            ),
            ("gateway_forward_delivered_total", "Outbox bundles delivered to the FHIR target", &self.forward_delivered),
            (
                "gateway_forward_entries_sent_total",
                "Bundle entries written to the FHIR target",
                &self.forward_entries_sent,
            ),
            (
                "gateway_forward_entries_unchanged_total",
                "Bundle entries not written: the target holds them unchanged",
                &self.forward_entries_unchanged,
            ),
            (
                "gateway_forward_entries_unsupported_total",
                "Bundle entries of types the target does not support, dropped or dead-lettered",
                &self.forward_entries_unsupported,
            ),
            ("gateway_forward_requests_total", "Requests sent to the FHIR target", &self.forward_requests),
            (
                "gateway_forward_retries_total",
                "Delivery attempts scheduled again after a failure",
                &self.forward_retries,
            ),
            (
                "gateway_journal_budget_full_total",
                "Group commits that refused messages: the disk budget was reached",
                &self.journal_budget_full,
            ),
            (
                "gateway_journal_disk_full_total",
                "Journal commits that failed: the filesystem was full",
                &self.journal_disk_full,
            ),
            ("gateway_wal_truncations_total", "Checkpoints that emptied the WAL file", &self.wal_truncations),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", c.get());
        }
        let _ = writeln!(
            out,
            "# HELP gateway_acks_total Acknowledgments sent, by MSA-1 code\n# TYPE gateway_acks_total counter"
        );
        for (code, c) in ACK_CODES.iter().zip(&self.acks) {
            let _ = writeln!(out, "gateway_acks_total{{code=\"{code}\"}} {}", c.get());
        }
        let _ = writeln!(
            out,
            "# HELP gateway_naks_total Negative acknowledgments, by reason\n# TYPE gateway_naks_total counter"
        );
        for reason in NakReason::ALL {
            let _ = writeln!(out, "gateway_naks_total{{reason=\"{}\"}} {}", reason.label(), self.naks(reason));
        }
        let _ = writeln!(
            out,
            "# HELP gateway_unsupported_messages_total Messages with a type/trigger the converter does not handle, stored as dead letters (store_unsupported)\n# TYPE gateway_unsupported_messages_total counter"
        );
        self.unsupported.render(&mut out, "gateway_unsupported_messages_total");
        let _ = writeln!(out, "# HELP gateway_connections_refused_total Connections closed before reading, by reason\n# TYPE gateway_connections_refused_total counter");
        let _ =
            writeln!(out, "gateway_connections_refused_total{{reason=\"allowlist\"}} {}", self.refused_allowlist.get());
        let _ = writeln!(out, "gateway_connections_refused_total{{reason=\"limit\"}} {}", self.refused_limit.get());
        let _ = writeln!(
            out,
            "gateway_connections_refused_total{{reason=\"per_source\"}} {}",
            self.refused_per_source.get()
        );
        let _ =
            writeln!(out, "gateway_connections_refused_total{{reason=\"admin_limit\"}} {}", self.refused_admin.get());
        let _ = writeln!(out, "# HELP gateway_convert_report_items_total Items of the conversion reports (unconsumed segments, unmapped codes, warnings, unmapped authorities, keyless resources), by kind\n# TYPE gateway_convert_report_items_total counter");
        for (kind, n) in self.convert_report.all() {
            let _ = writeln!(out, "gateway_convert_report_items_total{{kind=\"{kind}\"}} {}", n.get());
        }
        let _ = writeln!(out, "# HELP gateway_forward_failures_total Failed delivery attempts, by class\n# TYPE gateway_forward_failures_total counter");
        for class in FailClass::ALL {
            let (label, n) = (class.label(), self.forward_failures[class].get());
            let _ = writeln!(out, "gateway_forward_failures_total{{class=\"{label}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP gateway_forward_lookups_total Searches on identifier before a create (salesforce), by result\n# TYPE gateway_forward_lookups_total counter");
        for result in LookupResult::ALL {
            let _ = writeln!(
                out,
                "gateway_forward_lookups_total{{result=\"{}\"}} {}",
                result.label(),
                self.lookups(result)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gateway_forward_token_refreshes_total Access tokens fetched\n# TYPE gateway_forward_token_refreshes_total counter\ngateway_forward_token_refreshes_total {}",
            self.forward_token_refreshes.get()
        );
        let gauges = [
            ("gateway_journal_depth", "Journal rows not yet delivered", &self.journal_depth),
            ("gateway_connections_open", "Open MLLP connections", &self.connections_open),
            ("gateway_connections_in_frame", "MLLP connections in the middle of a frame or its commit", &self.connections_in_frame),
            ("gateway_inflight_frame_bytes", "Bytes held for MLLP frames beyond each connection's free 64 KiB, counted twice while sealed for the commit", &self.inflight_frame_bytes),
            ("gateway_inflight_frame_budget_bytes", "Size of the in-flight frame budget ([limits] inflight_frame_bytes)", &self.inflight_frame_budget),
            ("gateway_forward_lanes", "Patient lanes with undelivered bundles", &self.forward_lanes),
            ("gateway_forward_oldest_pending_seconds", "Age of the oldest undelivered bundle", &self.forward_oldest_pending_secs),
            ("gateway_forward_circuit_state", "Circuit breaker to the FHIR target: 0 closed, 1 half-open, 2 open", &self.forward_circuit_state),
            ("gateway_forward_auth_failing", "1 while the FHIR target refuses the gateway's credentials", &self.forward_auth_failing),
            ("gateway_forward_link_down", "1 while requests to the FHIR target get no answer (connect failures, timeouts)", &self.forward_link_down),
            ("gateway_forward_api_usage_permille", "Salesforce API usage of the daily limit, per mille", &self.forward_api_usage_permille),
            ("gateway_forward_api_budget_permille", "Requests sent today of [cloud] daily_api_budget, per mille", &self.forward_api_budget_permille),
            ("gateway_lost_key_dead_letters", "Messages dead-lettered at start because they were sealed under a lost key", &self.lost_key_dead_letters),
            ("gateway_journal_db_bytes", "Journal database file size on disk", &self.journal_db_bytes),
            ("gateway_journal_wal_bytes", "Journal WAL file size on disk", &self.journal_wal_bytes),
            ("gateway_journal_shm_bytes", "Journal shared-memory index size on disk", &self.journal_shm_bytes),
        ];
        for (name, help, g) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}", g.get());
        }
        let _ = writeln!(
            out,
            "# HELP gateway_log_unsafe_trace 1 while GATEWAY_UNSAFE_TRACE lets other crates log request contents (PHI, secrets)\n# TYPE gateway_log_unsafe_trace gauge\ngateway_log_unsafe_trace {}",
            self.log_unsafe_trace.get()
        );
        histogram(&mut out, "gateway_ack_latency_seconds", "Frame received to ACK written", &self.ack_latency);
        histogram(&mut out, "gateway_commit_batch_size", "Messages per group commit", &self.batch_size);
        histogram(&mut out, "gateway_forward_request_seconds", "FHIR target request duration", &self.forward_latency);
        self.stages.render(&mut out);
        self.board.render(&mut out);
        self.alerts.render(&mut out);
        out
    }
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bound, bucket) in h.bounds.iter().zip(&h.buckets) {
        cumulative += bucket.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let count = h.count();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", h.sum_micros.load(Relaxed) as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {count}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_failures_render_one_line_per_class_in_a_fixed_order() {
        let m = Metrics::default();
        for (n, class) in FailClass::ALL.into_iter().enumerate() {
            m.forward_failures[class].add(n as u64 + 1);
        }
        let text = m.render();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("gateway_forward_failures_total{")).collect();
        assert_eq!(
            lines,
            [
                "gateway_forward_failures_total{class=\"4xx\"} 1",
                "gateway_forward_failures_total{class=\"401\"} 2",
                "gateway_forward_failures_total{class=\"429\"} 3",
                "gateway_forward_failures_total{class=\"5xx\"} 4",
                "gateway_forward_failures_total{class=\"timeout\"} 5",
                "gateway_forward_failures_total{class=\"connect\"} 6",
            ]
        );
    }

    #[test]
    fn renders_counters_labels_and_cumulative_buckets() {
        let m = Metrics::default();
        m.ack("AA");
        m.ack("AA");
        m.ack("CR");
        m.nak(NakReason::StorageFull);
        m.batch_size.observe(3.0);
        m.batch_size.observe(64.0);
        m.batch_size.observe(5000.0);
        let text = m.render();
        assert!(text.contains("gateway_acks_total{code=\"AA\"} 2\n"));
        assert!(text.contains("gateway_acks_total{code=\"CR\"} 1\n"));
        assert!(text.contains("gateway_naks_total{reason=\"storage_full\"} 1\n"));
        assert!(text.contains("gateway_commit_batch_size_bucket{le=\"2\"} 0\n"));
        assert!(text.contains("gateway_commit_batch_size_bucket{le=\"4\"} 1\n"));
        assert!(text.contains("gateway_commit_batch_size_bucket{le=\"64\"} 2\n"));
        assert!(text.contains("gateway_commit_batch_size_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("gateway_commit_batch_size_count 3\n"));
    }

    #[test]
    fn renders_the_journal_footprint_and_full_disk_counters() {
        let m = Metrics::default();
        m.journal_db_bytes.set(4096);
        m.journal_wal_bytes.set(8192);
        m.journal_disk_full.inc();
        m.journal_budget_full.add(2);
        let text = m.render();
        for series in [
            "# TYPE gateway_journal_db_bytes gauge\ngateway_journal_db_bytes 4096\n",
            "gateway_journal_wal_bytes 8192\n",
            "gateway_journal_shm_bytes 0\n",
            "# TYPE gateway_journal_disk_full_total counter\ngateway_journal_disk_full_total 1\n",
            "gateway_journal_budget_full_total 2\n",
            "gateway_wal_truncations_total 0\n",
        ] {
            assert!(text.contains(series), "{series} missing from\n{text}");
        }
    }
}
