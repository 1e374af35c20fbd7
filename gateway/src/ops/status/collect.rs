//! The status stage: every `[alerts] evaluate_every_ms` it samples the metrics, the journal's
//! health and footprint and the store's queue and dead letters into a [`Status`], runs the
//! alerts on the same sample, and publishes the result for the admin endpoint. It beats in
//! the stages' liveness like every other stage.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use super::{Cloud, DeadLetterLine, DeadLetters, Disk, Feed, Latest, Queue, Status, Tunnel, Version};
use crate::clock::now_ms;
use crate::config::Config;
use crate::log_limit::{self, Repeats};
use crate::metrics::{FailClass, Metrics};
use crate::ops::alerts::{restarts, rules, webhook::Webhook, Alerts};
use crate::stage::Stage;
use crate::store::{self, Appender, Health, Synchronous};

/// Dead letters listed on the page.
const NEWEST_DEAD_LETTERS: usize = 5;

/// What the stage needs from the daemon.
pub(crate) struct StatusOptions {
    pub(crate) config: Config,
    pub(crate) metrics: Arc<Metrics>,
    /// For the journal's health (storage full); drop the stage before the writer stops.
    pub(crate) journal: Appender,
    pub(crate) latest: Latest,
}

/// The running stage (and the webhook sender, when configured).
pub(crate) struct StatusStage {
    stage: Stage,
    webhook: Option<Stage>,
}

impl StatusStage {
    pub(crate) fn start(o: StatusOptions) -> anyhow::Result<StatusStage> {
        let path = o.config.store.path.get_ref().clone();
        let conn = store::db::open(&path, None, Synchronous::Full)?;
        match store::status::last_received_by_listener(&conn) {
            Ok(last) => {
                for (listener, at) in last {
                    o.metrics.feeds.seed_last_message(&listener, at);
                }
            }
            Err(e) => tracing::warn!(error = %e, "status: cannot read the listeners' last messages"),
        }
        let unclean = restarts::started(&path);
        if unclean {
            tracing::warn!("the previous run did not stop cleanly (crash, kill or watchdog restart)");
        }
        let zone = jiff::tz::TimeZone::get(&o.config.mapping.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
        let thresholds = rules::Thresholds::from_config(&o.config.alerts, zone);
        let (webhook, webhook_stage) = match &o.config.alerts.webhook_url {
            Some(url) => {
                let (w, s) = Webhook::start(url.clone());
                (Some(w), Some(s))
            }
            None => (None, None),
        };
        let alerts = Alerts::new(
            rules::Evaluator::new(thresholds, now_ms(), unclean),
            o.metrics.clone(),
            o.config.device.name.clone(),
            webhook,
        );
        let every = Duration::from_millis(o.config.alerts.evaluate_every_ms.get());
        let (wake_tx, wake_rx) = mpsc::channel::<()>();
        let mut sampler = Sampler::new(o, conn, path);
        let stage = Stage::spawn(
            "status",
            move || {
                let _ = wake_tx.send(());
            },
            move |stopping| {
                let mut alerts = alerts;
                let metrics = sampler.metrics.clone();
                let _alive = metrics.stages.alerts.guard();
                while !stopping.requested() {
                    metrics.stages.alerts.waiting(false);
                    // A bug in one sample must not take the daemon down: count it and go on.
                    let tick = std::panic::AssertUnwindSafe(|| sampler.tick(&mut alerts, now_ms()));
                    if std::panic::catch_unwind(tick).is_err() {
                        metrics.stages.alerts.restarted();
                    }
                    // Between samples the stage is idle, not stalled, however long the interval.
                    metrics.stages.alerts.waiting(true);
                    if wake_rx.recv_timeout(every) != Err(mpsc::RecvTimeoutError::Timeout) {
                        break;
                    }
                }
            },
        );
        Ok(StatusStage { stage, webhook: webhook_stage })
    }

    pub(crate) fn stop(self) {
        self.stage.stop();
        if let Some(w) = self.webhook {
            w.stop();
        }
    }
}

/// Cloud link state from the counters' movement between samples.
#[derive(Debug, Default)]
struct Link {
    failures: u64,
    delivered: u64,
    failing: bool,
}

impl Link {
    /// Failing once attempts fail with nothing delivered; ok again once deliveries succeed
    /// without failures. A refused bundle (4xx) is the bundle's fault, not the link's.
    fn update(&mut self, failures: u64, delivered: u64) {
        let (failed, got_through) = (failures > self.failures, delivered > self.delivered);
        if failed && !got_through {
            self.failing = true;
        } else if got_through && !failed {
            self.failing = false;
        }
        (self.failures, self.delivered) = (failures, delivered);
    }
}

struct Sampler {
    metrics: Arc<Metrics>,
    journal: Appender,
    latest: Latest,
    conn: Connection,
    path: PathBuf,
    device: String,
    listeners: Vec<String>,
    target: String,
    budget_bytes: u64,
    version: Version,
    link: Link,
    errors: Repeats,
    /// `[wireguard]` is configured: the tunnel is shown and alerted on.
    wireguard: bool,
    /// `[cloud] daily_api_budget` is set.
    api_budget: bool,
}

impl Sampler {
    fn new(o: StatusOptions, conn: Connection, path: PathBuf) -> Sampler {
        let target = match o.config.cloud.sink_dir(&o.config.dir) {
            Some(_) => "embedded sink".to_string(),
            None => o.config.cloud.url.as_ref().map_or_else(|| "none".into(), |u| u.get_ref().clone()),
        };
        Sampler {
            metrics: o.metrics,
            journal: o.journal,
            latest: o.latest,
            conn,
            path,
            device: o.config.device.name.clone(),
            listeners: o.config.listeners.iter().map(|l| l.name.clone()).collect(),
            target,
            budget_bytes: o.config.store.max_bytes,
            version: super::version::current(),
            link: Link::default(),
            errors: Repeats::new(log_limit::EVERY),
            wireguard: o.config.wireguard.is_some(),
            api_budget: o.config.cloud.daily_api_budget.is_some(),
        }
    }

    fn tick(&mut self, alerts: &mut Alerts, now: i64) {
        let mut status = self.sample(now);
        let mut facts = rules::Facts {
            feeds: status.listeners.iter().map(|f| (f.name.clone(), f.last_message_ms)).collect(),
            depth: status.queue.depth,
            oldest_undelivered_ms: status.queue.oldest_undelivered_secs.map(|s| now - s * 1000),
            auth_failing: status.cloud.auth == "failing",
            dead_letters_total: self.metrics.dead_letters.get(),
            budget_percent: status.disk.budget_percent,
            filesystem_percent: status.disk.filesystem_percent,
            budget_full: self.journal.health() == Health::BudgetFull,
            filesystem_full: self.journal.health() == Health::DiskFull,
            stage_restarts: self.metrics.stages.restarts_total(),
            tunnel: None,
            api_budget_permille: self.api_budget.then(|| self.metrics.forward_api_budget_permille.get().max(0) as u64),
        };
        if self.wireguard {
            let reading = crate::provision::tunnel::latest();
            let fact = reading.map(|r| rules::TunnelFact::of(&r, (now / 1000).max(0) as u64));
            facts.tunnel = fact;
            status.tunnel = Some(tunnel(reading.map(|r| r.peer), fact));
        }
        status.alerts = alerts.tick(now, &facts);
        self.latest.set(status);
    }

    fn sample(&mut self, now: i64) -> Status {
        let m = &self.metrics;
        let listeners = self
            .listeners
            .iter()
            .map(|name| {
                let f = m.feeds.figures(name, now);
                Feed {
                    name: name.clone(),
                    last_message_ms: f.last_message_ms,
                    per_minute_5: f.per_minute_5,
                    per_minute_15: f.per_minute_15,
                    acks: f.acks.into_iter().map(|(c, n)| (c.to_string(), n)).collect(),
                }
            })
            .collect();
        let queue = match store::status::undelivered(&self.conn) {
            Ok(u) => {
                Queue { depth: u.depth, oldest_undelivered_secs: u.oldest_received_ms.map(|t| (now - t).max(0) / 1000) }
            }
            Err(e) => {
                self.log_error("queue", &e);
                Queue { depth: m.journal_depth.get(), oldest_undelivered_secs: None }
            }
        };
        let dead_letters = match store::status::dead_letter_summary(&self.conn, NEWEST_DEAD_LETTERS) {
            Ok((count, newest)) => DeadLetters {
                count,
                newest: newest
                    .into_iter()
                    .map(|d| DeadLetterLine { id: d.id, at_ms: d.created_at_ms, reason: d.reason })
                    .collect(),
            },
            Err(e) => {
                self.log_error("dead letters", &e);
                DeadLetters { count: 0, newest: Vec::new() }
            }
        };
        let link_failures: u64 =
            FailClass::ALL.into_iter().filter(|c| *c != FailClass::Client).map(|c| m.forward_failures[c].get()).sum();
        self.link.update(link_failures, m.forward_delivered.get());
        let circuit = match m.forward_circuit_state.get() {
            2 => "open",
            1 => "half-open",
            _ => "closed",
        };
        let link = if circuit == "open" {
            "circuit open"
        } else if self.link.failing || circuit == "half-open" {
            "failing"
        } else {
            "ok"
        };
        let cloud = Cloud {
            target: self.target.clone(),
            link: link.into(),
            circuit: circuit.into(),
            auth: if m.forward_auth_failing.get() == 1 { "failing" } else { "ok" }.into(),
            delivered: m.forward_delivered.get(),
            failures: FailClass::ALL
                .into_iter()
                .map(|c| (c.label().to_string(), m.forward_failures[c].get()))
                .collect(),
        };
        Status {
            device: self.device.clone(),
            at_ms: now,
            version: self.version.clone(),
            listeners,
            queue,
            cloud,
            dead_letters,
            disk: self.disk(),
            conversion_warnings: m.convert_report.all().into_iter().map(|(k, c)| (k.to_string(), c.get())).collect(),
            alerts: Vec::new(),
            tunnel: None,
        }
    }

    /// The journal against its budget (live pages, WAL and shm, as the budget counts them)
    /// and its filesystem.
    fn disk(&self) -> Disk {
        let f = store::disk::Footprint::of(&self.path);
        let live = store::status::live_bytes(&self.conn).unwrap_or_else(|e| {
            self.log_error("page count", &e);
            f.db
        });
        disk(&self.path, live + f.wal + f.shm, self.budget_bytes, self.journal.health().problem())
    }

    fn log_error(&self, what: &str, e: &rusqlite::Error) {
        if let Some(r) = self.errors.hit(what) {
            tracing::warn!(error = %e, "status: cannot read the {what} from the journal{r}");
        }
    }
}

/// The tunnel's figures from the watcher's last reading (`None`: not read yet) and the alert's
/// fact from it (`peer` `None`: wg0 could not be read).
fn tunnel(reading: Option<Option<crate::provision::tunnel::PeerStatus>>, fact: Option<rules::TunnelFact>) -> Tunnel {
    let problem = fact.and_then(|f| f.problem());
    let state = match (fact, &problem) {
        (None, _) => "unknown",
        (Some(_), None) => "up",
        (Some(_), Some(_)) => "down",
    };
    let peer = reading.flatten();
    Tunnel {
        state: state.into(),
        handshake_age_secs: fact.and_then(|f| f.handshake_age_secs),
        rx_bytes: peer.map(|p| p.rx_bytes),
        tx_bytes: peer.map(|p| p.tx_bytes),
        problem,
    }
}

/// `journal_bytes` against the budget, and the journal's filesystem.
fn disk(journal: &Path, journal_bytes: u64, budget_bytes: u64, problem: Option<&str>) -> Disk {
    let dir = journal.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let fs = rustix::fs::statvfs(dir).ok().map(|s| {
        let total = s.f_blocks.saturating_mul(s.f_frsize);
        (total, total.saturating_sub(s.f_bfree.saturating_mul(s.f_frsize)))
    });
    let percent = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 };
    Disk {
        journal_bytes,
        budget_bytes,
        budget_percent: percent(journal_bytes, budget_bytes),
        filesystem_bytes: fs.map(|f| f.0),
        filesystem_used_bytes: fs.map(|f| f.1),
        filesystem_percent: fs.map(|(total, used)| percent(used, total)),
        storage_problem: problem.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunnel_is_unknown_before_its_first_reading_then_up_or_down() {
        use crate::provision::tunnel::{PeerStatus, Reading};
        assert_eq!(tunnel(None, None).state, "unknown");
        let peer = PeerStatus { latest_handshake: 1_000, rx_bytes: 10, tx_bytes: 20 };
        let at = |now| {
            let r = Reading { peer: Some(peer), max_age_secs: 180 };
            tunnel(Some(r.peer), Some(rules::TunnelFact::of(&r, now)))
        };
        let up = at(1_030);
        assert_eq!(
            (up.state.as_str(), up.handshake_age_secs, up.rx_bytes, up.problem),
            ("up", Some(30), Some(10), None)
        );
        let down = at(2_000);
        assert_eq!((down.state.as_str(), down.handshake_age_secs), ("down", Some(1_000)));
        assert_eq!(down.problem.as_deref(), Some("last handshake 1000 s ago (more than 180 s)"));
        let unread = Reading { peer: None, max_age_secs: 180 };
        let t = tunnel(Some(None), Some(rules::TunnelFact::of(&unread, 2_000)));
        assert_eq!((t.state.as_str(), t.rx_bytes), ("down", None));
    }

    #[test]
    fn the_link_fails_on_failures_without_deliveries_and_heals_on_deliveries() {
        let mut link = Link::default();
        link.update(0, 3);
        assert!(!link.failing);
        link.update(2, 3);
        assert!(link.failing);
        link.update(3, 4);
        assert!(link.failing, "mixed: unchanged");
        link.update(3, 6);
        assert!(!link.failing);
    }
}
