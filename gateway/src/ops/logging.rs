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
