//! The `board` stage: drives the appliance's status LED from the gateway's health and acts
//! on the reset button, through `bsp` (embedded-hal pins; a simulated board unless `[board]
//! file` names the wiring). One std thread ticks every 20 ms, beats its liveness and
//! never touches the journal: it reads the metrics and the journal's health.
//!
//! - `state`: gateway state → LED state → bsp blink pattern.
//! - `reset`: short press → health summary in the log; long press → factory-reset request.
//! - `factory`: the reset marker, and restoring the factory config at the next start.
//! - `pins`: the pins a board file names.

pub mod factory;
pub(crate) mod pins;
pub(crate) mod reset;
pub(crate) mod state;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bsp::StatusLed;

use crate::config::{ButtonWiring, Config, LedWiring};
use crate::log_limit::{self, Repeats};
use crate::metrics::Metrics;
use crate::stage::{Stage, Stopping};
use crate::store::Appender;
use pins::{ButtonPin, LedPin};
use reset::{Action, ResetControl};

/// Poll and blink cadence: the button wants 10-20 ms, the fastest blink 100 ms phases.
const TICK: Duration = Duration::from_millis(20);
/// How often the update marker is looked for.
const UPDATE_CHECK: Duration = Duration::from_millis(500);

/// What the board stage needs from the daemon.
pub(crate) struct BoardOptions {
    pub(crate) led: LedPin,
    pub(crate) button: ResetControl<ButtonPin>,
    pub(crate) factory_config: Option<PathBuf>,
    pub(crate) reset_marker: PathBuf,
    pub(crate) update_marker: Option<PathBuf>,
    /// Written by `gateway provision` (`[board] provision_marker`).
    pub(crate) provision_marker: Option<PathBuf>,
    pub(crate) metrics: Arc<Metrics>,
    /// The journal's health (the appender is not used to append).
    pub(crate) journal: Appender,
    /// Set by the daemon once the journal is open and every listener bound.
    pub(crate) ready: Arc<AtomicBool>,
}

impl BoardOptions {
    /// Opens the pins `[board]` names (simulated ones when it names none). A pin that does
    /// not open is logged and simulated instead: the LED is not worth refusing messages for.
    pub(crate) fn open(
        config: &Config,
        metrics: Arc<Metrics>,
        journal: Appender,
        ready: Arc<AtomicBool>,
    ) -> BoardOptions {
        let board = &config.board;
        let spec = &board.spec;
        let led = LedPin::open(&spec.led.wiring()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "[board] status LED cannot be opened; running without it");
            LedPin::open(&LedWiring::Simulated).expect("a simulated pin opens")
        });
        let button = ButtonPin::open(&spec.button.wiring()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "[board] reset button cannot be opened; running without it");
            ButtonPin::open(&ButtonWiring::Simulated).expect("a simulated pin opens")
        });
        tracing::info!(board = %spec.name, led = ?spec.led.wiring(), button = ?spec.button.wiring(), "board");
        BoardOptions {
            led,
            button: ResetControl::new(button, spec.button.active_low),
            factory_config: board.factory_config.as_ref().map(|p| p.get_ref().clone()),
            reset_marker: board.reset_marker_path(&config.store),
            update_marker: board.update_marker.as_ref().map(|p| p.get_ref().clone()),
            provision_marker: board.provision_marker.as_ref().map(|p| p.get_ref().clone()),
            metrics,
            journal,
            ready,
        }
    }
}

/// Starts the board thread; stop it (before the journal writer: it holds an appender).
pub(crate) fn start(opts: BoardOptions) -> Stage {
    Stage::spawn("board", || {}, move |stopping| run(opts, &stopping))
}

static PIN_ERRORS: Repeats = Repeats::new(log_limit::EVERY);

fn run(mut opts: BoardOptions, stopping: &Stopping) {
    let metrics = opts.metrics.clone();
    let stage = &metrics.stages.board;
    let _exit = stage.guard();
    let mut led = StatusLed::new(opts.led);
    let start = Instant::now();
    let mut updating = false;
    let mut provisioning = state::Provisioning::Idle;
    let mut update_checked: Option<Instant> = None;
    while !stopping.requested() {
        stage.beat();
        let now_ms = start.elapsed().as_millis() as u64;
        if let Some(marker) = &opts.update_marker {
            if update_checked.is_none_or(|at| at.elapsed() >= UPDATE_CHECK) {
                updating = marker.exists();
            }
        }
        if let Some(marker) = &opts.provision_marker {
            if update_checked.is_none_or(|at| at.elapsed() >= UPDATE_CHECK) {
                let content = std::fs::read_to_string(marker).unwrap_or_default();
                provisioning = state::Provisioning::from_marker(&content);
            }
        }
        if update_checked.is_none_or(|at| at.elapsed() >= UPDATE_CHECK) {
            update_checked = Some(Instant::now());
        }
        let mut facts = inputs(&metrics, &opts.journal, &opts.ready, updating);
        facts.provisioning = provisioning;
        let shown = state::led_state(&facts);
        metrics.board.set_led_state(shown);
        led.set_health(state::pattern(shown));
        if let Err(e) = led.tick(now_ms) {
            if let Some(r) = PIN_ERRORS.hit("led") {
                tracing::warn!(error = %e, "board: cannot set the status LED{r}");
            }
        }
        match opts.button.poll(now_ms, metrics.journal_depth.get()) {
            Ok(action) => act(action, &opts.factory_config, &opts.reset_marker, &metrics, &opts.journal),
            Err(e) => {
                if let Some(r) = PIN_ERRORS.hit("button") {
                    tracing::warn!(error = %e, "board: cannot read the reset button{r}");
                }
            }
        }
        std::thread::sleep(TICK);
    }
    // Dark once the gateway stops: a lit LED would claim it runs.
    led.set_health(bsp::Health::Off);
    let _ = led.tick(start.elapsed().as_millis() as u64);
}

fn inputs(metrics: &Metrics, journal: &Appender, ready: &AtomicBool, updating: bool) -> state::Inputs {
    let stages = &metrics.stages;
    state::Inputs {
        ready: ready.load(Ordering::Relaxed),
        updating,
        provisioning: state::Provisioning::Idle,
        journal_ok: journal.healthy(),
        stage_trouble: stages.gone().is_some() || stages.watchdog_problem().is_some(),
        auth_failing: metrics.forward_auth_failing.get() == 1,
        cloud_down: metrics.forward_circuit_state.get() != 0,
    }
}

fn act(action: Action, factory: &Option<PathBuf>, marker: &std::path::Path, metrics: &Metrics, journal: &Appender) {
    let undelivered = metrics.journal_depth.get();
    match action {
        Action::Nothing => {}
        Action::LogHealth => {
            metrics.board.short_presses.inc();
            let problems = metrics.stages.problems();
            tracing::info!(
                led = metrics.board.led_state().label(),
                journal = journal.health().problem().unwrap_or("ok"),
                undelivered,
                forward_lanes = metrics.forward_lanes.get(),
                oldest_pending_secs = metrics.forward_oldest_pending_secs.get(),
                circuit = metrics.forward_circuit_state.get(),
                auth_failing = metrics.forward_auth_failing.get() == 1,
                stage_problems = %if problems.is_empty() { "none".to_string() } else { problems.join("; ") },
                "reset button: health summary"
            );
        }
        Action::HoldLonger => {
            metrics.board.long_presses.inc();
            tracing::warn!(
                undelivered,
                hold_secs = reset::FORCED_PRESS_MS / 1000,
                "reset button: long press while messages are undelivered; keep holding to request a factory reset anyway (messages are kept)"
            );
        }
        Action::RefuseUndelivered => {
            metrics.board.resets_refused.inc();
            tracing::warn!(
                undelivered,
                "reset button: factory reset refused: messages are undelivered and the button was released early"
            );
        }
        Action::RequestReset { forced } => {
            if !forced {
                metrics.board.long_presses.inc();
            }
            match factory {
                None => {
                    metrics.board.resets_refused.inc();
                    tracing::warn!("reset button: factory reset refused: no [board] factory_config is configured");
                }
                Some(_) => match factory::request(marker, forced) {
                    Ok(()) => {
                        metrics.board.resets_requested.inc();
                        tracing::warn!(marker = %marker.display(), forced, undelivered, "reset button: factory reset requested; the factory config replaces the current one at the next start (the journal and its messages are kept)");
                    }
                    Err(e) => {
                        metrics.board.resets_refused.inc();
                        tracing::error!(error = %e, "reset button: cannot write the factory reset marker");
                    }
                },
            }
        }
    }
}
