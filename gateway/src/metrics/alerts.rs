//! `gateway_alert{name=…,listener=…}`: 1 while an alert is raised, 0 once it cleared. Which
//! conditions raise which alert is the alert evaluator's (`ops/alerts`); here only the gauges.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// An alert: its name and, for per-listener alerts, the listener.
pub(crate) type AlertKey = (&'static str, Option<String>);

#[derive(Debug, Default)]
pub(crate) struct AlertGauges(Mutex<BTreeMap<AlertKey, bool>>);

impl AlertGauges {
    pub(crate) fn set(&self, key: AlertKey, raised: bool) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(key, raised);
    }

    /// Every alert known so far with its state.
    pub(crate) fn all(&self) -> Vec<(AlertKey, bool)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    pub(crate) fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP gateway_alert 1 while the alert is raised (see README, Status page and alerts)\n# TYPE gateway_alert gauge");
        for ((name, listener), raised) in self.all() {
            let listener =
                listener.map(|l| format!(",listener=\"{}\"", l.replace(['"', '\\', '\n'], "_"))).unwrap_or_default();
            let _ = writeln!(out, "gateway_alert{{name=\"{name}\"{listener}}} {}", u8::from(raised));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_series_per_alert_with_the_listener_label() {
        let g = AlertGauges::default();
        g.set(("disk_budget", None), true);
        g.set(("feed_silence", Some("adt".into())), false);
        let mut text = String::new();
        g.render(&mut text);
        assert!(text.contains("gateway_alert{name=\"disk_budget\"} 1\n"), "{text}");
        assert!(text.contains("gateway_alert{name=\"feed_silence\",listener=\"adt\"} 0\n"), "{text}");
    }
}
