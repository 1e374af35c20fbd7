//! Log output: journald when systemd started us (it sets `JOURNAL_STREAM`), stderr otherwise.
//! Log lines carry control IDs, message types and counts, never message content.
//!
//! `RUST_LOG` chooses the levels, but other crates' events are capped at INFO whatever it
//! says: at debug and trace, ureq, rustls and friends dump request and response bytes —
//! bundles full of patient data and the `Authorization` header. Only the gateway's own
//! targets, which log no content at any level, go below INFO. `GATEWAY_UNSAFE_TRACE=1`
//! lifts the cap for debugging a connection, and says so at WARN when the process starts.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing::level_filters::LevelFilter;
use tracing::Metadata;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The environment variable that lets dependency crates log below INFO.
pub(crate) const UNSAFE_TRACE_ENV: &str = "GATEWAY_UNSAFE_TRACE";

/// The most verbose level other crates may log at.
const DEPENDENCY_CAP: LevelFilter = LevelFilter::INFO;

static UNSAFE_TRACE: AtomicBool = AtomicBool::new(false);

/// Whether this process was started with the cap lifted (for `/metrics`).
pub(crate) fn unsafe_trace() -> bool {
    UNSAFE_TRACE.load(Ordering::Relaxed)
}

/// Is `target` one of the gateway's own (the library's modules or the binary)?
fn own_target(target: &str) -> bool {
    target.strip_prefix("gateway").is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// May an event or span with this metadata be logged (before `RUST_LOG` has its say)?
fn within_cap(meta: &Metadata<'_>) -> bool {
    own_target(meta.target()) || DEPENDENCY_CAP >= *meta.level()
}

fn unsafe_switch_set() -> bool {
    std::env::var(UNSAFE_TRACE_ENV).is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

pub fn init() {
    let lifted = unsafe_switch_set();
    UNSAFE_TRACE.store(lifted, Ordering::Relaxed);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Both filters must let an event through.
    let cap = filter_fn(move |meta| lifted || within_cap(meta));
    let registry = tracing_subscriber::registry().with(cap).with(filter);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            registry.with(journald.with_syslog_identifier("gateway".into())).init();
            warn_if_lifted(lifted);
            return;
        }
    }
    registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false)).init();
    warn_if_lifted(lifted);
}

fn warn_if_lifted(lifted: bool) {
    if lifted {
        tracing::warn!(
            "{UNSAFE_TRACE_ENV} is set: other crates log at the level RUST_LOG asks; at debug and trace they print request bodies and headers, so the log may hold PHI and secrets (bearer tokens). Unset it when done."
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::callsite::{Callsite, Identifier};
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;
    use tracing::{Level, Metadata};

    struct Site;
    impl Callsite for Site {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!()
        }
    }
    static SITE: Site = Site;

    fn meta(target: &'static str, level: Level) -> Metadata<'static> {
        Metadata::new("event", target, level, None, None, None, FieldSet::new(&[], Identifier(&SITE)), Kind::EVENT)
    }

    #[test]
    fn dependencies_are_capped_at_info_and_the_gateway_is_not() {
        for target in ["gateway", "gateway::forward::lanes", "gateway::mllp"] {
            assert!(within_cap(&meta(target, Level::TRACE)), "{target}");
        }
        for target in ["ureq_proto::util", "ureq", "rustls::client::hs", "tokio", "gateway_other", "gatewayx::y", "log"]
        {
            assert!(!within_cap(&meta(target, Level::TRACE)), "{target}");
            assert!(!within_cap(&meta(target, Level::DEBUG)), "{target}");
            assert!(within_cap(&meta(target, Level::INFO)), "{target}");
            assert!(within_cap(&meta(target, Level::WARN)), "{target}");
        }
    }
}
