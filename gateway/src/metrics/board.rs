//! The board's counters: systemd watchdog pings, the status LED's state and the reset
//! button's presses. The LED states are labels here (like `NakReason`); which gateway state
//! shows as which is the board stage's (`board/state.rs`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use super::Counter;

/// What the status LED shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LedState {
    /// Start-up: the journal opening, the listeners binding.
    Booting,
    Healthy,
    /// The cloud is unreachable or failing: messages are buffered in the journal.
    Buffering,
    /// The cloud refuses the gateway's credentials.
    AuthFailing,
    /// The journal cannot take messages (disk full, budget reached, commit failing) or a
    /// stage stopped.
    StorageFault,
    /// An update is being applied.
    Updating,
    /// A USB provisioning stick is being read and applied.
    Provisioning,
    /// The last provisioning stick was refused (until it is pulled).
    ProvisionRefused,
}

impl LedState {
    pub(crate) const ALL: [LedState; 8] = [
        LedState::Booting,
        LedState::Healthy,
        LedState::Buffering,
        LedState::AuthFailing,
        LedState::StorageFault,
        LedState::Updating,
        LedState::Provisioning,
        LedState::ProvisionRefused,
    ];

    /// The `state` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            LedState::Booting => "booting",
            LedState::Healthy => "healthy",
            LedState::Buffering => "buffering",
            LedState::AuthFailing => "auth_failing",
            LedState::StorageFault => "storage_fault",
            LedState::Updating => "updating",
            LedState::Provisioning => "provisioning",
            LedState::ProvisionRefused => "provision_refused",
        }
    }
}

/// Counters of the board stage and the watchdog.
#[derive(Debug, Default)]
pub(crate) struct BoardMetrics {
    /// `WATCHDOG=1` sent to systemd.
    pub(crate) watchdog_pings: Counter,
    /// Index into [`LedState::ALL`]; 0 (booting) until the board stage says otherwise.
    led_state: AtomicU8,
    pub(crate) short_presses: Counter,
    pub(crate) long_presses: Counter,
    /// Long presses that wrote the factory-reset marker.
    pub(crate) resets_requested: Counter,
    /// Long presses refused (undelivered messages and released before the longer hold, or no
    /// factory config).
    pub(crate) resets_refused: Counter,
}

impl BoardMetrics {
    pub(crate) fn set_led_state(&self, state: LedState) {
        let i = LedState::ALL.iter().position(|s| *s == state).unwrap_or(0);
        self.led_state.store(i as u8, Relaxed);
    }

    pub(crate) fn led_state(&self) -> LedState {
        LedState::ALL[usize::from(self.led_state.load(Relaxed)).min(LedState::ALL.len() - 1)]
    }

    pub(crate) fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP gateway_watchdog_pings_total WATCHDOG=1 notifications sent to systemd\n# TYPE gateway_watchdog_pings_total counter\ngateway_watchdog_pings_total {}", self.watchdog_pings.get());
        let _ = writeln!(
            out,
            "# HELP gateway_board_led_state 1 for the state the status LED shows\n# TYPE gateway_board_led_state gauge"
        );
        let current = self.led_state();
        for s in LedState::ALL {
            let _ = writeln!(out, "gateway_board_led_state{{state=\"{}\"}} {}", s.label(), u8::from(s == current));
        }
        let _ = writeln!(out, "# HELP gateway_button_presses_total Reset button presses by length\n# TYPE gateway_button_presses_total counter");
        let _ = writeln!(out, "gateway_button_presses_total{{press=\"short\"}} {}", self.short_presses.get());
        let _ = writeln!(out, "gateway_button_presses_total{{press=\"long\"}} {}", self.long_presses.get());
        let _ = writeln!(out, "# HELP gateway_factory_reset_requests_total Long presses of the reset button by outcome\n# TYPE gateway_factory_reset_requests_total counter");
        let _ = writeln!(
            out,
            "gateway_factory_reset_requests_total{{outcome=\"requested\"}} {}",
            self.resets_requested.get()
        );
        let _ =
            writeln!(out, "gateway_factory_reset_requests_total{{outcome=\"refused\"}} {}", self.resets_refused.get());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_current_led_state_is_one() {
        let m = BoardMetrics::default();
        assert_eq!(m.led_state(), LedState::Booting);
        m.set_led_state(LedState::AuthFailing);
        m.watchdog_pings.add(3);
        let mut text = String::new();
        m.render(&mut text);
        let on: Vec<&str> =
            text.lines().filter(|l| l.starts_with("gateway_board_led_state{") && l.ends_with(" 1")).collect();
        assert_eq!(on, ["gateway_board_led_state{state=\"auth_failing\"} 1"]);
        assert_eq!(text.lines().filter(|l| l.starts_with("gateway_board_led_state{")).count(), 8);
        assert!(text.contains("gateway_watchdog_pings_total 3\n"), "{text}");
    }
}
