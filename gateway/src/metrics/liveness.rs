//! Liveness of the process's stages (journal writer, convert, forwarder, maintenance, board): each
//! stage beats as it goes round its loop; `/healthz` fails when a stage's thread is gone or
//! it has made no progress for too long, so a wedged stage is seen (and, under systemd, the
//! watchdog restarts the process) instead of `ok` over a pipeline that stopped.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::clock::now_ms;

/// A stage with no beat for this long while it is not waiting for work is wedged. Every
/// stage's loop passes at least once a second when it has work, and no single step of it
/// (one batch, one commit) may take this long.
pub(crate) const STALL: Duration = Duration::from_secs(60);

/// [`STALL`]; debug builds take `GATEWAY_TEST_STALL_MS` instead, so an end-to-end test can
/// see a wedged stage (with [`test_wedge`]) without waiting a minute.
fn stall_limit_ms() -> i64 {
    #[cfg(debug_assertions)]
    {
        static LIMIT: std::sync::OnceLock<Option<i64>> = std::sync::OnceLock::new();
        if let Some(ms) = *LIMIT.get_or_init(|| std::env::var("GATEWAY_TEST_STALL_MS").ok()?.parse().ok()) {
            return ms;
        }
    }
    STALL.as_millis() as i64
}

/// Test hook, debug builds only: with `GATEWAY_TEST_WEDGE=<stage name>` (e.g. `journal
/// writer`) the stage's thread blocks here for good, as a commit that never returns would.
/// Release builds compile it to nothing.
pub(crate) fn test_wedge(stage: &Stage) {
    #[cfg(debug_assertions)]
    if std::env::var("GATEWAY_TEST_WEDGE").is_ok_and(|name| name == stage.name) {
        tracing::warn!(stage = stage.name, "GATEWAY_TEST_WEDGE: wedging the stage (test hook)");
        loop {
            std::thread::park();
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = stage;
}

/// One stage's liveness.
#[derive(Debug)]
pub(crate) struct Stage {
    pub(crate) name: &'static str,
    /// Unix ms of the last beat; 0 before the stage started.
    last_beat_ms: AtomicI64,
    /// Blocked until work arrives (the writer on its queue): quiet is not a stall.
    waiting: AtomicBool,
    /// The stage's thread ended while the process runs (a panic escaped it); only a restart
    /// of the process clears it.
    exited: AtomicBool,
    /// Times the stage caught a panic and started its loop again.
    restarts: AtomicU64,
}

impl Stage {
    const fn new(name: &'static str) -> Stage {
        Stage {
            name,
            last_beat_ms: AtomicI64::new(0),
            waiting: AtomicBool::new(false),
            exited: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
        }
    }

    /// Progress: called on every pass of the stage's loop.
    pub(crate) fn beat(&self) {
        self.last_beat_ms.store(now_ms(), Relaxed);
    }

    /// The stage blocks until work arrives (`true`) or has work again (`false`).
    pub(crate) fn waiting(&self, waiting: bool) {
        self.beat();
        self.waiting.store(waiting, Relaxed);
    }

    /// The stage caught a panic and goes on with a fresh loop.
    pub(crate) fn restarted(&self) {
        self.restarts.fetch_add(1, Relaxed);
    }

    pub(crate) fn restarts(&self) -> u64 {
        self.restarts.load(Relaxed)
    }

    /// Marks the stage gone when the returned guard drops during a panic (the thread unwinds
    /// past the stage's own recovery).
    pub(crate) fn guard(&self) -> ExitGuard<'_> {
        self.beat();
        ExitGuard(self)
    }

    /// Why the stage is not healthy at `now_ms`, or `None`.
    pub(crate) fn problem(&self, now_ms: i64) -> Option<String> {
        let last = self.last_beat_ms.load(Relaxed);
        if self.exited.load(Relaxed) {
            return Some(format!("{} stage: thread stopped after an internal error", self.name));
        }
        let quiet = now_ms.saturating_sub(last);
        (last > 0 && !self.waiting.load(Relaxed) && quiet > stall_limit_ms())
            .then(|| format!("{} stage: no progress for {} s", self.name, quiet / 1000))
    }
}

/// See [`Stage::guard`].
pub(crate) struct ExitGuard<'a>(&'a Stage);

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.exited.store(true, Relaxed);
        }
    }
}

/// Every stage of the data path.
#[derive(Debug)]
pub(crate) struct Stages {
    pub(crate) writer: Stage,
    pub(crate) convert: Stage,
    pub(crate) forward: Stage,
    pub(crate) maintenance: Stage,
    /// The status LED and reset button (`board`).
    pub(crate) board: Stage,
    /// The status snapshot and alert evaluator (`ops/alerts`).
    pub(crate) alerts: Stage,
}

impl Default for Stages {
    fn default() -> Self {
        Stages {
            writer: Stage::new("journal writer"),
            convert: Stage::new("convert"),
            forward: Stage::new("forward"),
            maintenance: Stage::new("maintenance"),
            board: Stage::new("board"),
            alerts: Stage::new("alerts"),
        }
    }
}

impl Stages {
    fn all(&self) -> [&Stage; 6] {
        [&self.writer, &self.convert, &self.forward, &self.maintenance, &self.board, &self.alerts]
    }

    /// Why systemd's watchdog must not be fed now: the journal writer or the forwarder loop
    /// is gone or stalled (the listeners are the daemon's to check). `None`: feed it.
    pub(crate) fn watchdog_problem(&self) -> Option<String> {
        let now = now_ms();
        [&self.writer, &self.forward].iter().find_map(|s| s.problem(now))
    }

    /// A stage whose thread is gone: the process cannot heal that itself and exits so that its
    /// supervisor (systemd, `Restart=always`) starts it afresh.
    pub(crate) fn gone(&self) -> Option<&'static str> {
        self.all().iter().find(|s| s.exited.load(Relaxed)).map(|s| s.name)
    }

    /// Panics caught by every stage together (the restart alert).
    pub(crate) fn restarts_total(&self) -> u64 {
        self.all().iter().map(|s| s.restarts()).sum()
    }

    /// One line per unhealthy stage.
    pub(crate) fn problems(&self) -> Vec<String> {
        let now = now_ms();
        self.all().iter().filter_map(|s| s.problem(now)).collect()
    }

    /// `gateway_stage_up` and `gateway_stage_restarts_total`, by stage.
    pub(crate) fn render(&self, out: &mut String) {
        let now = now_ms();
        let label = |s: &Stage| s.name.replace(' ', "_");
        let _ = writeln!(out, "# HELP gateway_stage_up 1 while the stage makes progress (0: stopped or stalled)\n# TYPE gateway_stage_up gauge");
        for s in self.all() {
            let _ = writeln!(out, "gateway_stage_up{{stage=\"{}\"}} {}", label(s), u8::from(s.problem(now).is_none()));
        }
        let _ = writeln!(out, "# HELP gateway_stage_restarts_total Panics a stage caught and recovered from\n# TYPE gateway_stage_restarts_total counter");
        for s in self.all() {
            let _ = writeln!(out, "gateway_stage_restarts_total{{stage=\"{}\"}} {}", label(s), s.restarts());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_is_unhealthy_when_stalled_or_gone_and_healthy_while_waiting() {
        let s = Stage::new("convert");
        assert_eq!(s.problem(now_ms()), None, "not started yet");
        s.beat();
        let later = now_ms() + STALL.as_millis() as i64 + 5_000;
        assert!(s.problem(later).unwrap().contains("no progress for"));
        s.waiting(true);
        assert_eq!(s.problem(later), None, "waiting for work is not a stall");
        s.waiting(false);
        assert_eq!(s.problem(now_ms()), None);
        let r = std::thread::scope(|t| {
            t.spawn(|| {
                let _g = s.guard();
                panic!("boom");
            })
            .join()
        });
        assert!(r.is_err());
        assert!(s.problem(now_ms()).unwrap().contains("thread stopped"));
    }

    #[test]
    fn a_stage_thread_that_ends_in_a_panic_is_gone_and_not_up() {
        let stages = Stages::default();
        std::thread::scope(|t| {
            t.spawn(|| {
                let _g = stages.forward.guard();
            });
        });
        assert_eq!(stages.gone(), None, "a thread that returns normally (shutdown) is not gone");
        let _ = std::thread::scope(|t| {
            t.spawn(|| {
                let _g = stages.forward.guard();
                panic!("boom");
            })
            .join()
        });
        assert_eq!(stages.gone(), Some("forward"));
        let mut text = String::new();
        stages.render(&mut text);
        assert!(text.contains("gateway_stage_up{stage=\"forward\"} 0\n"), "{text}");
        assert!(text.contains("gateway_stage_up{stage=\"journal_writer\"} 1\n"), "{text}");
    }

    #[test]
    fn the_watchdog_is_fed_only_while_writer_and_forwarder_are_alive() {
        let stages = Stages::default();
        stages.writer.waiting(true);
        stages.forward.beat();
        assert_eq!(stages.watchdog_problem(), None);
        // A stalled convert stage fails /healthz but is not the watchdog's business.
        stages.convert.last_beat_ms.store(1, Relaxed);
        assert_eq!(stages.watchdog_problem(), None);
        stages.forward.last_beat_ms.store(1, Relaxed);
        assert!(stages.watchdog_problem().unwrap().starts_with("forward stage: no progress"));
        stages.forward.beat();
        stages.writer.waiting(false);
        stages.writer.last_beat_ms.store(1, Relaxed);
        assert!(stages.watchdog_problem().unwrap().starts_with("journal writer stage"));
    }
}
