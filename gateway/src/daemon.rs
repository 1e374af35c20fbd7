//! `gateway run`: wires the stages together, runs until its shutdown signal (SIGTERM, SIGINT
//! or SIGHUP for the binary, see [`signals`]) or a stage's death, then shuts down in order —
//! stop accepting, let connections finish and ACK what they are committing, drain the journal
//! writer, finish the convert batch in hand, finish the deliveries in flight, final checkpoint.
//!
//! Under systemd (`NOTIFY_SOCKET` set) it says `READY=1` once the journal is open and every
//! listener bound, `STOPPING=1` when it starts to stop, and — with `WatchdogSec=` — feeds the
//! service watchdog (`WATCHDOG=1` every half `WATCHDOG_USEC`) only while the journal writer,
//! every listener and the forwarder loop are alive: a wedged stage stops the pings and systemd
//! restarts the gateway.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bsp::linux::SystemdWatchdog;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::board::{self, BoardOptions};
use crate::config::Config;
use crate::fhir::site::SiteMaps;
use crate::forward::{ForwardOptions, Forwarder};
use crate::log_limit::{self, Repeats};
use crate::metrics::Metrics;
use crate::mllp::budget::FrameBudget;
use crate::mllp::connection::Limits;
use crate::mllp::handler::{AckIds, Handler};
use crate::mllp::policy::Policy;
use crate::mllp::slots::Slots;
use crate::mllp::{server, tls};
use crate::ops::alerts::restarts;
use crate::ops::status::collect::{StatusOptions, StatusStage};
use crate::ops::status::Latest;
use crate::ops::{admin, logging};
use crate::pipeline::convert::{ConvertOptions, ConvertStage};
use crate::store::maintenance::{Maintenance, MaintenanceOptions};
use crate::store::{Doorbell, Keys, Synchronous, WriteGate, Writer, WriterOptions};

/// Journal queue in front of the writer (messages); senders wait when it is full.
const WRITER_QUEUE: usize = 4096;
/// Checkpoint and purge cadence.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(1);

/// The target `[cloud]` names: the HTTP server at `url`, or the embedded sink's folder.
fn target(
    cloud: &crate::config::Cloud,
    config_dir: &std::path::Path,
) -> anyhow::Result<(Arc<dyn crate::forward::Target>, String)> {
    match cloud.sink_dir(config_dir) {
        Some(dir) => {
            let sink = crate::sink::Sink::open(&dir).map_err(|e| anyhow::anyhow!("[cloud] sink: {e}"))?;
            Ok((Arc::new(sink), format!("sink {}", dir.display())))
        }
        None => crate::forward::http_target(cloud, config_dir),
    }
}

/// Resolves at the first SIGTERM, SIGINT or SIGHUP (logging which). Register it before
/// [`run`]: from then on a SIGTERM during start-up means an orderly stop, not the default
/// death. SIGHUP (a closed terminal, or `systemctl kill -s HUP`) is an orderly stop too: the
/// configuration is read at start only, so a "reload" is a restart by the supervisor.
pub fn signals() -> std::io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            _ = hup.recv() => tracing::info!("SIGHUP: shutting down (the configuration is read at start; the supervisor restarts the gateway)"),
        }
    })
}

/// systemd's notification socket, when the gateway runs under it.
fn systemd() -> Option<Arc<SystemdWatchdog>> {
    match SystemdWatchdog::from_env() {
        Ok(notify) => notify.map(Arc::new),
        Err(e) => {
            tracing::warn!(error = %e, "NOTIFY_SOCKET is set but unusable; running without systemd notifications");
            None
        }
    }
}

fn notify(systemd: Option<&SystemdWatchdog>, state: &str) {
    if let Some(s) = systemd {
        if let Err(e) = s.notify(state) {
            tracing::warn!(error = %e, state, "systemd notification failed");
        }
    }
}

static WATCHDOG_HELD: Repeats = Repeats::new(log_limit::EVERY);

/// Feeds systemd's watchdog every `every` while the journal writer, every listener and the
/// forwarder loop are alive; stops at `shutdown`.
async fn feed_watchdog(
    systemd: Arc<SystemdWatchdog>,
    every: Duration,
    metrics: Arc<Metrics>,
    listeners: Vec<(String, tokio::task::JoinHandle<()>)>,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let problem = match listeners.iter().find(|(_, l)| l.is_finished()) {
            Some((name, _)) => Some(format!("listener {name:?}: its accept loop ended")),
            None => metrics.stages.watchdog_problem(),
        };
        match problem {
            None => match systemd.notify("WATCHDOG=1") {
                Ok(()) => metrics.board.watchdog_pings.inc(),
                Err(e) => {
                    if let Some(r) = WATCHDOG_HELD.hit("send") {
                        tracing::warn!(error = %e, "systemd watchdog ping failed{r}");
                    }
                }
            },
            Some(problem) => {
                if let Some(r) = WATCHDOG_HELD.hit("held") {
                    tracing::error!(%problem, "systemd watchdog not fed: systemd will restart the gateway{r}");
                }
            }
        }
    }
}

/// Runs the gateway until `shutdown_signal` resolves (then stops in order and returns `Ok`) or a
/// stage's thread dies (an error). `discard_undecryptable`: `gateway run
/// --discard-undecryptable` (see `open_keys`).
pub async fn run(
    config: Config,
    discard_undecryptable: bool,
    shutdown_signal: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // What `gateway check-config` refuses, `run` refuses: the same checks, before anything opens.
    crate::cli::preflight(&config)?;
    let metrics = Arc::new(Metrics::default());
    metrics.log_unsafe_trace.set(logging::unsafe_trace().into());
    metrics.update_rollbacks.add(crate::update::boot::rollback_count(&config.update.state_dir));
    let store = &config.store;
    let keys = Arc::new(open_keys(store, discard_undecryptable, &metrics)?);
    let site = SiteMaps::load(&config.mapping, &config.dir)?;
    let bell = Doorbell::default();
    let forward_bell = Doorbell::default();
    // Ingest, convert, the forwarder's recorder and maintenance take turns at the write lock.
    let gate = Arc::new(WriteGate::default());
    let writer_options = WriterOptions {
        path: store.path.get_ref().clone(),
        vfs: None,
        synchronous: Synchronous::Full,
        max_bytes: store.max_bytes,
        dedup_window: Duration::from_secs(store.dedup_window_secs),
        batch_max_messages: store.batch_max_messages.get(),
        batch_max_bytes: store.batch_max_bytes.get(),
        queue: WRITER_QUEUE,
        on_commit: Some(bell.clone()),
        gate: gate.clone(),
    };
    let (appender, writer) = Writer::start(writer_options, metrics.clone())?;
    let ready = Arc::new(AtomicBool::new(false));
    let board = board::start(BoardOptions::open(&config, metrics.clone(), appender.clone(), ready.clone()));
    let latest = Latest::default();
    let status = StatusStage::start(StatusOptions {
        config: config.clone(),
        metrics: metrics.clone(),
        journal: appender.clone(),
        latest: latest.clone(),
    })?;
    // Stops with the daemon (dropping the handle joins it).
    let _tunnel = config.wireguard.as_ref().map(crate::provision::tunnel::watch);
    let maintenance = Maintenance::start(MaintenanceOptions {
        path: store.path.get_ref().clone(),
        vfs: None,
        synchronous: Synchronous::Full,
        every: MAINTENANCE_EVERY,
        retention: Duration::from_secs(store.retention_secs),
        gate: gate.clone(),
        max_bytes: store.max_bytes,
        metrics: metrics.clone(),
    })?;
    let converter = ConvertStage::start(ConvertOptions {
        path: store.path.get_ref().clone(),
        synchronous: Synchronous::Full,
        site,
        profile: config.cloud.profile(),
        limits: config.cloud.transaction_limits(),
        keys: keys.clone(),
        bell,
        metrics: metrics.clone(),
        on_convert: Some(forward_bell.clone()),
        gate: gate.clone(),
    })?;
    let (target, destination) = target(&config.cloud, &config.dir)?;
    let forward_options = ForwardOptions::from_config(
        &config.cloud,
        store.path.get_ref().clone(),
        keys.clone(),
        forward_bell,
        metrics.clone(),
        gate,
    );
    let forwarder = Forwarder::start(forward_options, target)?;
    tracing::info!(%destination, concurrency = config.cloud.concurrency.get(), "forwarding");
    tracing::info!(journal = %store.path.get_ref().display(), profile = %config.cloud.profile(), "journal open (WAL, synchronous=FULL)");

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let ack_ids = Arc::new(AckIds::default());
    // One in-flight frame budget for every connection of every listener.
    let budget = FrameBudget::new(config.limits.inflight_frame_bytes.get(), metrics.clone());
    // Bind everything first so a bad address fails start-up before anything is served.
    let mut listeners = Vec::new();
    for l in &config.listeners {
        let socket =
            TcpListener::bind(l.bind).await.with_context(|| format!("listener {:?}: bind {}", l.name, l.bind))?;
        let tls = l.tls.as_ref().map(tls::acceptor).transpose().with_context(|| format!("listener {:?}", l.name))?;
        let addr = socket.local_addr()?;
        tracing::info!(listener = %l.name, %addr, tls = tls.is_some(), mtls = l.tls.as_ref().is_some_and(|t| t.client_ca.is_some()), "mllp listening");
        let handler = Handler {
            listener: Arc::from(l.name.as_str()),
            policy: Policy::new(&l.accept),
            keys: keys.clone(),
            appender: appender.clone(),
            metrics: metrics.clone(),
            ack_ids: ack_ids.clone(),
        };
        listeners.push(server::Listener {
            socket,
            tls,
            allow: l.allow.clone(),
            slots: Slots::new(
                Arc::from(l.name.as_str()),
                l.max_connections.get(),
                l.max_connections_per_source.get(),
                metrics.clone(),
            ),
            limits: Limits::from_config(l),
            budget: budget.clone(),
            handler: Arc::new(handler),
        });
    }
    if let Some(bind) = config.ops.admin_bind {
        let socket = TcpListener::bind(bind).await.with_context(|| format!("[ops] admin_bind {bind}"))?;
        tracing::info!(addr = %socket.local_addr()?, "admin listening");
        tracker.spawn(admin::serve(
            socket,
            config.ops.admin_max_connections.get(),
            metrics.clone(),
            appender.clone(),
            config.device.name.clone(),
            latest,
            shutdown.clone(),
        ));
    }
    let accepting: Vec<_> = config
        .listeners
        .iter()
        .map(|l| l.name.clone())
        .zip(listeners)
        .map(|(name, l)| (name, tracker.spawn(l.run(tracker.clone(), shutdown.clone()))))
        .collect();
    drop(appender);
    // The journal is open and every listener bound: ready for systemd, healthy on the LED.
    let systemd = systemd();
    ready.store(true, Ordering::Relaxed);
    notify(systemd.as_deref(), "READY=1");
    match (&systemd, bsp::linux::systemd_watchdog_interval()) {
        (Some(s), Some(timeout)) => {
            tracing::info!(timeout_ms = timeout.as_millis() as u64, "feeding the systemd watchdog");
            tracker.spawn(feed_watchdog(s.clone(), timeout / 2, metrics.clone(), accepting, shutdown.clone()));
        }
        _ => drop(accepting),
    }

    let gone = tokio::select! {
        _ = shutdown_signal => None,
        stage = stage_gone(&metrics) => {
            tracing::error!(stage, "a stage's thread stopped after an internal error; shutting down to be restarted");
            Some(stage)
        }
    };
    notify(systemd.as_deref(), "STOPPING=1");
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    // Every appender is gone with the connections: the writer commits what is queued and stops.
    // Each stage's `stop` finishes the work in hand and joins its thread (`crate::stage`).
    tokio::task::spawn_blocking(move || {
        // First: it holds an appender (for the journal's health), which keeps the writer open.
        board.stop();
        status.stop();
        writer.stop();
        converter.stop();
        // Finishes the requests in flight (bounded by the client timeouts) and records them.
        forwarder.stop();
        maintenance.stop();
    })
    .await?;
    if gone.is_none() {
        restarts::stopped(store.path.get_ref());
    }
    tracing::info!("stopped");
    match gone {
        Some(stage) => {
            anyhow::bail!("the {stage} stage stopped after an internal error (see the log); restart the gateway")
        }
        None => Ok(()),
    }
}

/// Resolves when a stage's thread has died (see [`crate::metrics::liveness::Stages::gone`]).
async fn stage_gone(metrics: &Metrics) -> &'static str {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        if let Some(stage) = metrics.stages.gone() {
            return stage;
        }
    }
}

/// Loads the key file, bound to the store: refuses to start when the key the sealed rows
/// need is missing or another one, unless the operator chose to dead-letter what it cannot
/// decrypt (`store::key_guard`). Runs before any stage opens the store.
fn open_keys(store: &crate::config::Store, discard: bool, metrics: &Metrics) -> anyhow::Result<Keys> {
    let path = store.path.get_ref();
    Keys::create_folder(store.key_file.get_ref())?;
    let mut conn = crate::store::db::open(path, None, Synchronous::Full)?;
    crate::store::db::migrate(&mut conn, path)?;
    // The claimed name for the audit trail; the OS identity is recorded with it.
    let actor = discard.then(|| {
        crate::deadletter::resolve_actor(None, |k| std::env::var(k).ok()).unwrap_or_else(|_| "gateway".into())
    });
    let guarded = crate::store::key_guard::open_keys(&mut conn, store.key_file.get_ref(), path, actor.as_deref())?;
    metrics.dead_letters.add(guarded.discarded as u64);
    metrics.lost_key_dead_letters.set(guarded.discarded as i64);
    Ok(guarded.keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_stops_through_its_shutdown_signal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        let text = "[store]\npath = \"var/journal.db\"\nkey_file = \"var/journal.key\"\n\n\
                    [[listener]]\nname = \"adt\"\nbind = \"127.0.0.1:0\"\n";
        let config = Config::parse(text, &path).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // `run` polls its signal once start-up is done: that poll says the daemon is up.
        let up = Arc::new(tokio::sync::Notify::new());
        let waiting = up.clone();
        let daemon = tokio::spawn(run(config, false, async move {
            waiting.notify_one();
            let _ = stopped.await;
        }));
        tokio::time::timeout(Duration::from_secs(60), up.notified()).await.expect("start-up completes");
        assert!(dir.path().join("var/journal.db").is_file());
        assert!(!daemon.is_finished(), "run waits for its signal");
        stop.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(60), daemon).await.expect("run returns").unwrap();
        assert!(result.is_ok(), "{result:?}");
    }
}
