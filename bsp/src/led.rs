//! Status LED: owns the mapping from appliance [`Health`] to a blink
//! [`Pattern`], and drives any [`OutputPin`] from it.
//!
//! [`StatusLed::tick`] is pure apart from the pin write: it takes a monotonic
//! millisecond timestamp, works out whether the LED should be lit, and writes
//! the pin only when that changes. Call it at least every 50 ms so the fast
//! blink looks even.

use embedded_hal::digital::{OutputPin, PinState};

/// Overall appliance health, as shown on the status LED. Each state has its
/// own pattern, so an operator can tell them apart at a glance (the README's
/// Appliance section lists them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Health {
    /// LED dark (before the gateway runs, or once it has stopped).
    #[default]
    Off,
    /// Starting up (journal opening, listeners binding): a short flash every second.
    Booting,
    /// Running normally: steady on.
    Ok,
    /// Running, but something needs attention (e.g. the cloud is unreachable
    /// and messages are buffered): slow blink.
    Degraded,
    /// The cloud refuses the appliance's credentials: double flash.
    AuthFailing,
    /// Not doing its job (storage fault, a stage stopped), or a factory reset
    /// is pending: fast blink.
    Fault,
    /// A software update is being applied: long on, short off.
    Updating,
    /// A provisioning USB stick is being read and applied: three flashes.
    Provisioning,
    /// The provisioning stick still plugged in was refused: a quick even blink.
    Refused,
}

/// A blink pattern. Blinks start with the on phase, so a change of health is
/// visible at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Always dark.
    Off,
    /// Always lit.
    On,
    /// Lit for the first `on_ms` of every `period_ms`.
    Blink {
        /// Lit part of each period.
        on_ms: u32,
        /// Length of one on + off cycle; 0 means "steady", lit iff `on_ms > 0`.
        period_ms: u32,
    },
    /// `count` flashes of `on_ms` separated by `off_ms` at the start of every
    /// `period_ms`, then dark for the rest of the period.
    Flashes {
        /// Flashes per period.
        count: u8,
        /// Lit part of each flash.
        on_ms: u32,
        /// Dark gap after each flash.
        off_ms: u32,
        /// Length of the whole cycle; 0 means "always dark".
        period_ms: u32,
    },
}

/// Slow blink, used for [`Health::Degraded`]: 500 ms on, 500 ms off.
pub const SLOW_BLINK: Pattern = Pattern::Blink { on_ms: 500, period_ms: 1000 };
/// Fast blink, used for [`Health::Fault`]: 100 ms on, 100 ms off.
pub const FAST_BLINK: Pattern = Pattern::Blink { on_ms: 100, period_ms: 200 };
/// Short flash every second, used for [`Health::Booting`].
pub const BOOT_FLASH: Pattern = Pattern::Blink { on_ms: 100, period_ms: 1000 };
/// Two flashes every 1.5 s, used for [`Health::AuthFailing`].
pub const DOUBLE_FLASH: Pattern = Pattern::Flashes { count: 2, on_ms: 150, off_ms: 150, period_ms: 1500 };
/// 1.8 s on, 0.2 s off, used for [`Health::Updating`].
pub const WINK: Pattern = Pattern::Blink { on_ms: 1800, period_ms: 2000 };
/// Three flashes every 2 s, used for [`Health::Provisioning`].
pub const TRIPLE_FLASH: Pattern = Pattern::Flashes { count: 3, on_ms: 150, off_ms: 150, period_ms: 2000 };
/// 250 ms on, 250 ms off, used for [`Health::Refused`].
pub const EVEN_BLINK: Pattern = Pattern::Blink { on_ms: 250, period_ms: 500 };

impl Health {
    /// The blink pattern that shows this health.
    pub const fn pattern(self) -> Pattern {
        match self {
            Health::Off => Pattern::Off,
            Health::Booting => BOOT_FLASH,
            Health::Ok => Pattern::On,
            Health::Degraded => SLOW_BLINK,
            Health::AuthFailing => DOUBLE_FLASH,
            Health::Fault => FAST_BLINK,
            Health::Updating => WINK,
            Health::Provisioning => TRIPLE_FLASH,
            Health::Refused => EVEN_BLINK,
        }
    }
}

impl Pattern {
    /// Whether the LED is lit `elapsed_ms` after the pattern started.
    pub const fn is_lit(self, elapsed_ms: u64) -> bool {
        match self {
            Pattern::Off => false,
            Pattern::On => true,
            Pattern::Blink { on_ms, period_ms: 0 } => on_ms > 0,
            Pattern::Blink { on_ms, period_ms } => elapsed_ms % (period_ms as u64) < (on_ms as u64),
            Pattern::Flashes { period_ms: 0, .. } => false,
            Pattern::Flashes { count, on_ms, off_ms, period_ms } => {
                let at = elapsed_ms % (period_ms as u64);
                let flash = on_ms as u64 + off_ms as u64;
                flash > 0 && at / flash < count as u64 && at % flash < on_ms as u64
            }
        }
    }
}

/// Drives a status LED (pin high = lit) from a [`Health`].
#[derive(Debug)]
pub struct StatusLed<P> {
    pin: P,
    health: Health,
    /// When the current pattern started; set by the first tick after a change.
    started_ms: Option<u64>,
    /// Level last written successfully; `None` forces a write on the next tick.
    written: Option<bool>,
}

impl<P: OutputPin> StatusLed<P> {
    /// Takes the pin; health starts as [`Health::Off`]. Nothing is written until the first tick.
    pub fn new(pin: P) -> Self {
        Self { pin, health: Health::Off, started_ms: None, written: None }
    }

    /// The health currently shown.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Changes the health shown. Setting the same health again does not
    /// restart the pattern, so callers may set it on every check.
    pub fn set_health(&mut self, health: Health) {
        if health != self.health {
            self.health = health;
            self.started_ms = None;
        }
    }

    /// Updates the pin for time `now_ms` (monotonic milliseconds) and returns
    /// whether the LED is lit. The pin is written only when the level changes
    /// (or the previous write failed).
    pub fn tick(&mut self, now_ms: u64) -> Result<bool, P::Error> {
        let started = *self.started_ms.get_or_insert(now_ms);
        let lit = self.health.pattern().is_lit(now_ms.saturating_sub(started));
        if self.written != Some(lit) {
            self.written = None;
            self.pin.set_state(PinState::from(lit))?;
            self.written = Some(lit);
        }
        Ok(lit)
    }

    /// Gives the pin back.
    pub fn release(self) -> P {
        self.pin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimLine;

    #[test]
    fn patterns() {
        assert!(!Health::Off.pattern().is_lit(0));
        assert!(Health::Ok.pattern().is_lit(123_456));

        let slow = Health::Degraded.pattern();
        let lit: Vec<bool> = [0, 499, 500, 999, 1000, 1499, 1500].map(|t| slow.is_lit(t)).to_vec();
        assert_eq!(lit, [true, true, false, false, true, true, false]);

        let fast = Health::Fault.pattern();
        let lit: Vec<bool> = [0, 99, 100, 199, 200, 300].map(|t| fast.is_lit(t)).to_vec();
        assert_eq!(lit, [true, true, false, false, true, false]);

        let double = Health::AuthFailing.pattern();
        let lit: Vec<bool> = [0, 149, 150, 299, 300, 449, 450, 1499, 1500].map(|t| double.is_lit(t)).to_vec();
        assert_eq!(lit, [true, true, false, false, true, true, false, false, true]);

        let boot = Health::Booting.pattern();
        assert_eq!([0, 99, 100, 999, 1000].map(|t| boot.is_lit(t)), [true, true, false, false, true]);
        let updating = Health::Updating.pattern();
        assert_eq!([0, 1799, 1800, 1999, 2000].map(|t| updating.is_lit(t)), [true, true, false, false, true]);

        assert!(!Pattern::Flashes { count: 2, on_ms: 1, off_ms: 1, period_ms: 0 }.is_lit(7));
        assert!(!Pattern::Flashes { count: 2, on_ms: 0, off_ms: 0, period_ms: 10 }.is_lit(7));
        assert!(Pattern::Blink { on_ms: 1, period_ms: 0 }.is_lit(7));
        assert!(!Pattern::Blink { on_ms: 0, period_ms: 0 }.is_lit(7));
    }

    #[test]
    fn led_follows_health_and_restarts_pattern_on_change() {
        let line = SimLine::new(true);
        let mut led = StatusLed::new(line.pin());

        // First tick writes even though the pin happens to be high already.
        assert!(!led.tick(0).unwrap());
        assert!(!line.is_high());

        led.set_health(Health::Ok);
        assert!(led.tick(10).unwrap());
        assert!(line.is_high());

        // Fault starts lit at the moment it is first ticked, not on a clock boundary.
        led.set_health(Health::Fault);
        assert!(led.tick(1_050).unwrap());
        assert!(!led.tick(1_150).unwrap());
        assert!(!line.is_high());
        assert!(led.tick(1_250).unwrap());
        assert!(line.is_high());

        // Re-setting the same health keeps the phase.
        led.set_health(Health::Fault);
        assert!(!led.tick(1_350).unwrap());

        led.set_health(Health::Degraded);
        assert!(led.tick(2_000).unwrap());
        assert!(led.tick(2_499).unwrap());
        assert!(!led.tick(2_500).unwrap());
        assert!(!line.is_high());
    }
}
