//! Reset button: owns debouncing and short / long press classification for
//! any [`InputPin`].
//!
//! [`ResetButton::poll`] takes a monotonic millisecond timestamp and never
//! sleeps; poll it every 10 ms or so. A raw level is believed once it has
//! been stable for [`ButtonConfig::debounce_ms`]. Press durations are
//! measured from the first raw edge.
//!
//! - [`Press::Long`] is reported *while the button is still held*, as soon as
//!   it has been down for [`ButtonConfig::long_press_ms`]; by convention this
//!   is a factory-reset request. Releasing it afterwards reports nothing.
//! - [`Press::Short`] is reported on release of a shorter press.
//! - A button that is already down when polling starts (held during boot, or
//!   stuck) is ignored until it has been released, so it can never trigger a
//!   factory reset by itself.

use embedded_hal::digital::InputPin;

/// A completed (short) or sustained (long) press.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Press {
    /// Pressed and released before the long-press threshold.
    Short,
    /// Held for at least the long-press threshold: factory-reset request.
    Long,
}

/// Timing and wiring of the reset button.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ButtonConfig {
    /// A raw level must be stable this long before it is believed.
    pub debounce_ms: u64,
    /// Held at least this long is a [`Press::Long`].
    pub long_press_ms: u64,
    /// The pin reads low while pressed (button to ground with a pull-up).
    pub active_low: bool,
}

impl Default for ButtonConfig {
    /// 30 ms debounce, 10 s long press, pressed = high.
    fn default() -> Self {
        Self { debounce_ms: 30, long_press_ms: 10_000, active_low: false }
    }
}

/// Debounced reset button on an input pin.
#[derive(Debug)]
pub struct ResetButton<P> {
    pin: P,
    config: ButtonConfig,
    /// Last raw reading (`true` = pressed) and when it was first seen.
    raw: Option<bool>,
    raw_since_ms: u64,
    /// Debounced state; `None` until the first reading has settled.
    stable: Option<bool>,
    /// Start of a press in progress that has not been reported yet.
    pressed_at_ms: Option<u64>,
}

impl<P: InputPin> ResetButton<P> {
    /// Takes the pin. Nothing is read until the first poll.
    pub fn new(pin: P, config: ButtonConfig) -> Self {
        Self { pin, config, raw: None, raw_since_ms: 0, stable: None, pressed_at_ms: None }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ButtonConfig {
        &self.config
    }

    /// Debounced "is down right now" (e.g. to give LED feedback while held).
    pub fn is_pressed(&self) -> bool {
        self.stable == Some(true)
    }

    /// Reads the pin at time `now_ms` and reports a press, if one just happened.
    pub fn poll(&mut self, now_ms: u64) -> Result<Option<Press>, P::Error> {
        let raw = self.pin.is_high()? != self.config.active_low;
        if self.raw != Some(raw) {
            self.raw = Some(raw);
            self.raw_since_ms = now_ms;
        }

        let settled = now_ms.saturating_sub(self.raw_since_ms) >= self.config.debounce_ms;
        if settled && self.stable != Some(raw) {
            let first = self.stable.is_none();
            self.stable = Some(raw);
            if raw {
                // A button already down at start-up never counts as a press.
                self.pressed_at_ms = if first { None } else { Some(self.raw_since_ms) };
            } else if self.pressed_at_ms.take().is_some() {
                return Ok(Some(Press::Short));
            }
        }

        // `raw` too: a release that is still being debounced is not a long press.
        if let (Some(at), true) = (self.pressed_at_ms, raw) {
            if now_ms.saturating_sub(at) >= self.config.long_press_ms {
                self.pressed_at_ms = None; // reported; the release will be silent
                return Ok(Some(Press::Long));
            }
        }
        Ok(None)
    }

    /// Gives the pin back.
    pub fn release(self) -> P {
        self.pin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimLine, SimPin};

    const CONFIG: ButtonConfig = ButtonConfig { debounce_ms: 20, long_press_ms: 1_000, active_low: false };

    /// Drives `line` through `(time, level)` steps, polling every 5 ms from 0
    /// to `end_ms`, and returns the presses reported with their times.
    fn run(
        line: &SimLine,
        button: &mut ResetButton<SimPin<'_>>,
        steps: &[(u64, bool)],
        end_ms: u64,
    ) -> Vec<(u64, Press)> {
        let mut out = Vec::new();
        for t in (0..=end_ms).step_by(5) {
            if let Some(&(_, level)) = steps.iter().rev().find(|(at, _)| *at <= t) {
                line.set(level);
            }
            if let Some(p) = button.poll(t).unwrap() {
                out.push((t, p));
            }
        }
        out
    }

    #[test]
    fn short_press_is_reported_on_release() {
        let line = SimLine::new(false);
        let mut b = ResetButton::new(line.pin(), CONFIG);
        let got = run(&line, &mut b, &[(100, true), (300, false)], 500);
        assert_eq!(got, [(320, Press::Short)]);
        assert!(!b.is_pressed());
    }

    #[test]
    fn bounces_are_ignored() {
        let line = SimLine::new(false);
        let mut b = ResetButton::new(line.pin(), CONFIG);
        // Contact chatter shorter than the debounce time, then a real press.
        let steps = [
            (100, true),
            (105, false),
            (110, true),
            (115, false),
            (200, true),
            (205, false),
            (210, true),
            (400, false),
            (405, true),
            (410, false),
        ];
        let got = run(&line, &mut b, &steps, 600);
        assert_eq!(got, [(430, Press::Short)]);
    }

    #[test]
    fn long_press_is_reported_while_held_and_release_is_silent() {
        let line = SimLine::new(false);
        let mut b = ResetButton::new(line.pin(), CONFIG);
        // Held from 100 to 3000, then released just before the threshold:
        // measured from the first edge, and a release still being debounced
        // when the threshold passes does not turn into a long press.
        let steps = [(100, true), (3_000, false), (4_000, true), (4_995, false)];
        let got = run(&line, &mut b, &steps, 5_500);
        assert_eq!(got, [(1_100, Press::Long), (5_015, Press::Short)]);
    }

    #[test]
    fn button_held_at_start_is_ignored_until_released() {
        let line = SimLine::new(true);
        let mut b = ResetButton::new(line.pin(), CONFIG);
        let got = run(&line, &mut b, &[(0, true), (5_000, false), (6_000, true), (6_100, false)], 7_000);
        assert_eq!(got, [(6_120, Press::Short)]);
    }

    #[test]
    fn active_low() {
        let line = SimLine::new(true);
        let mut b = ResetButton::new(line.pin(), ButtonConfig { active_low: true, ..CONFIG });
        let got = run(&line, &mut b, &[(0, true), (100, false), (1_500, true)], 2_000);
        assert_eq!(got, [(1_100, Press::Long)]);
    }
}
