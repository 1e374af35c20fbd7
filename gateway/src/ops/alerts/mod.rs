//! Alerts: `rules` decides which are raised; `Alerts` turns that into transitions — on a
//! raise one WARN journal line, on a clear one INFO line, each with the alert's fixed
//! `message_id` (journald's `MESSAGE_ID`), the `gateway_alert` gauge, and a POST to the
//! webhook when one is configured (`webhook`, its own thread). `restarts` tells whether
//! the previous stop was clean. Details name counts, ages and listeners only, never content.

pub(crate) mod restarts;
pub(crate) mod rules;
pub(crate) mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::metrics::alerts::AlertKey;
use crate::metrics::Metrics;
use rules::Raised;

/// An alert that is raised, as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub name: String,
    pub listener: Option<String>,
    /// Unix ms of the raise.
    pub since_ms: i64,
    pub detail: String,
}

/// A raise or a clear, as logged and POSTed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Transition {
    pub(crate) alert: &'static str,
    pub(crate) listener: Option<String>,
    /// `raised` or `cleared`.
    pub(crate) state: &'static str,
    pub(crate) detail: String,
    pub(crate) message_id: &'static str,
    pub(crate) device: String,
    /// Unix ms.
    pub(crate) at_ms: i64,
}

/// The raised alerts and what to do when they change.
pub(crate) struct Alerts {
    evaluator: rules::Evaluator,
    active: BTreeMap<AlertKey, ActiveAlert>,
    metrics: Arc<Metrics>,
    device: String,
    webhook: Option<webhook::Webhook>,
}

impl Alerts {
    pub(crate) fn new(
        evaluator: rules::Evaluator,
        metrics: Arc<Metrics>,
        device: String,
        webhook: Option<webhook::Webhook>,
    ) -> Alerts {
        Alerts { evaluator, active: BTreeMap::new(), metrics, device, webhook }
    }

    /// Evaluates at `now_ms`, acts on every change, and returns the raised alerts.
    pub(crate) fn tick(&mut self, now_ms: i64, facts: &rules::Facts) -> Vec<ActiveAlert> {
        let raised = self.evaluator.evaluate(now_ms, facts);
        let mut now_raised: BTreeMap<AlertKey, Raised> = BTreeMap::new();
        for r in raised {
            now_raised.insert((r.name, r.listener.clone()), r);
        }
        let cleared: Vec<AlertKey> = self.active.keys().filter(|k| !now_raised.contains_key(*k)).cloned().collect();
        for key in cleared {
            if let Some(was) = self.active.remove(&key) {
                self.announce(key, "cleared", was.detail, now_ms);
            }
        }
        for (key, r) in now_raised {
            match self.active.get_mut(&key) {
                // Still raised: the detail (an age, a count) moves on, silently.
                Some(a) => a.detail = r.detail,
                None => {
                    let alert = ActiveAlert {
                        name: r.name.to_string(),
                        listener: r.listener.clone(),
                        since_ms: now_ms,
                        detail: r.detail.clone(),
                    };
                    self.active.insert(key.clone(), alert);
                    self.announce(key, "raised", r.detail, now_ms);
                }
            }
        }
        self.active.values().cloned().collect()
    }

    fn announce(&self, (name, listener): AlertKey, state: &'static str, detail: String, now_ms: i64) {
        let message_id = rules::message_id(name);
        let shown = listener.as_deref().unwrap_or("");
        if state == "raised" {
            tracing::warn!(message_id, alert = name, listener = shown, %detail, "alert raised: {name}");
        } else {
            tracing::info!(message_id, alert = name, listener = shown, %detail, "alert cleared: {name}");
        }
        self.metrics.alerts.set((name, listener.clone()), state == "raised");
        if let Some(w) = &self.webhook {
            w.send(Transition {
                alert: name,
                listener,
                state,
                detail,
                message_id,
                device: self.device.clone(),
                at_ms: now_ms,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rules::{Evaluator, Facts, Thresholds};

    #[test]
    fn a_raise_and_a_clear_each_set_the_gauge_and_post_once() {
        let metrics = Arc::new(Metrics::default());
        let t = Thresholds::from_config(&crate::config::Alerts::default(), jiff::tz::TimeZone::UTC);
        let (hook, posted) = webhook::Webhook::capture();
        let mut alerts = Alerts::new(Evaluator::new(t, 0, false), metrics.clone(), "gw-1".into(), Some(hook));
        let auth = |failing| Facts { auth_failing: failing, ..Facts::default() };
        let active = alerts.tick(1000, &auth(true));
        assert_eq!(active[0].name, "auth_failing");
        assert_eq!(alerts.tick(2000, &auth(true))[0].since_ms, 1000, "still the same raise");
        assert!(metrics.render().contains("gateway_alert{name=\"auth_failing\"} 1\n"));
        assert!(alerts.tick(3000, &auth(false)).is_empty());
        assert!(metrics.render().contains("gateway_alert{name=\"auth_failing\"} 0\n"));
        let sent: Vec<(String, &str)> = posted.try_iter().map(|t| (t.alert.to_string(), t.state)).collect();
        assert_eq!(sent, [("auth_failing".to_string(), "raised"), ("auth_failing".to_string(), "cleared")]);
    }
}
