//! Log output: journald when systemd started us (it sets `JOURNAL_STREAM`), stderr otherwise.
//! Log lines carry control IDs, message types and counts, never message content.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            registry.with(journald.with_syslog_identifier("gateway".into())).init();
            return;
        }
    }
    registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false)).init();
}

/// Logs a panic's thread and source location only: its message may quote the input that
/// caused it (a value from a patient's message), which must not reach the log.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        tracing::error!(thread = thread.name().unwrap_or("unnamed"), %location, "internal error (panic); its message is withheld as it may quote message content");
    }));
}
