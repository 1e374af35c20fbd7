//! What the reset button does, decided from the presses bsp's [`ResetButton`] reports and
//! the journal's undelivered count, with the time passed in (no clock, no sleeps):
//!
//! - a short press logs the health summary;
//! - a long press (held [`LONG_PRESS_MS`]) requests a factory reset when no message is
//!   waiting in the journal;
//! - with undelivered messages it must be held on to [`FORCED_PRESS_MS`]; released before
//!   that, the request is refused. Either way the journal is kept: the reset restores the
//!   configuration, never deletes messages.

use bsp::{ButtonConfig, Press, ResetButton};
use embedded_hal::digital::InputPin;

/// A hold this long is a long press (bsp reports it while the button is still down).
pub(crate) const LONG_PRESS_MS: u64 = 10_000;
/// With undelivered messages a reset needs this long a hold.
pub(crate) const FORCED_PRESS_MS: u64 = 30_000;

/// What the board stage should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Nothing,
    /// Short press: log the health summary.
    LogHealth,
    /// Long press with messages waiting: keep holding (logged once).
    HoldLonger,
    /// Write the factory-reset marker; `forced`: held past [`FORCED_PRESS_MS`] with
    /// undelivered messages.
    RequestReset {
        forced: bool,
    },
    /// Released between the long and the forced hold with messages waiting.
    RefuseUndelivered,
}

/// The reset button and the decision state between polls.
pub(crate) struct ResetControl<P> {
    button: ResetButton<P>,
    /// Start of a long press that waits for the forced hold.
    held_since_ms: Option<u64>,
}

impl<P: InputPin> ResetControl<P> {
    pub(crate) fn new(pin: P, active_low: bool) -> Self {
        let config = ButtonConfig { long_press_ms: LONG_PRESS_MS, active_low, ..ButtonConfig::default() };
        ResetControl { button: ResetButton::new(pin, config), held_since_ms: None }
    }

    /// Polls the button at `now_ms` (every 10-20 ms); `undelivered`: journal rows not yet
    /// delivered (dead letters included: they are still someone's messages).
    pub(crate) fn poll(&mut self, now_ms: u64, undelivered: i64) -> Result<Action, P::Error> {
        let press = self.button.poll(now_ms)?;
        Ok(decide(&mut self.held_since_ms, press, self.button.is_pressed(), now_ms, undelivered))
    }
}

fn decide(held_since: &mut Option<u64>, press: Option<Press>, down: bool, now_ms: u64, undelivered: i64) -> Action {
    match press {
        Some(Press::Short) => return Action::LogHealth,
        Some(Press::Long) if undelivered <= 0 => return Action::RequestReset { forced: false },
        Some(Press::Long) => {
            *held_since = Some(now_ms.saturating_sub(LONG_PRESS_MS));
            return Action::HoldLonger;
        }
        None => {}
    }
    let Some(since) = *held_since else { return Action::Nothing };
    if !down {
        *held_since = None;
        Action::RefuseUndelivered
    } else if now_ms.saturating_sub(since) >= FORCED_PRESS_MS {
        *held_since = None;
        Action::RequestReset { forced: true }
    } else {
        Action::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bsp::sim::SimLine;

    /// Holds the simulated button from `from_ms` to `to_ms` (pressed = high), polling every
    /// 10 ms up to `end_ms`; returns the actions other than `Nothing`, with their times.
    fn hold(from_ms: u64, to_ms: u64, end_ms: u64, undelivered: i64) -> Vec<(u64, Action)> {
        let line = SimLine::new(false);
        let mut control = ResetControl::new(line.pin(), false);
        let mut out = Vec::new();
        for t in (0..=end_ms).step_by(10) {
            line.set((from_ms..to_ms).contains(&t));
            match control.poll(t, undelivered).unwrap() {
                Action::Nothing => {}
                a => out.push((t, a)),
            }
        }
        out
    }

    #[test]
    fn a_short_press_logs_the_health_summary() {
        assert_eq!(hold(1_000, 1_500, 3_000, 0), [(1_530, Action::LogHealth)]);
        assert_eq!(hold(1_000, 10_900, 12_000, 5), [(10_930, Action::LogHealth)], "just under 10 s is short");
    }

    #[test]
    fn a_long_press_requests_a_reset_when_nothing_is_undelivered() {
        assert_eq!(hold(1_000, 15_000, 40_000, 0), [(11_000, Action::RequestReset { forced: false })]);
    }

    #[test]
    fn with_undelivered_messages_a_long_press_is_refused_unless_held_30_s() {
        assert_eq!(
            hold(1_000, 20_000, 40_000, 3),
            [(11_000, Action::HoldLonger), (20_030, Action::RefuseUndelivered)],
            "released after 19 s"
        );
        assert_eq!(
            hold(1_000, 45_000, 50_000, 3),
            [(11_000, Action::HoldLonger), (31_000, Action::RequestReset { forced: true })],
            "held 30 s: requested once, the release is silent"
        );
    }

    #[test]
    fn a_button_held_at_start_up_never_resets() {
        assert_eq!(hold(0, 45_000, 50_000, 0), []);
    }
}
