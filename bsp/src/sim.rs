//! Simulated hardware, for tests and for running the gateway on a dev machine.
//!
//! A [`SimLine`] is a shared logic level; a [`SimPin`] is an embedded-hal
//! input/output pin that borrows one. The harness keeps the line, hands pins
//! to the drivers, and drives or reads the level directly. The level is an
//! `AtomicBool`, so a line can live in a `static` and its pins are
//! `Send + Sync` (usable from a multi-threaded runtime) without allocation:
//!
//! ```
//! use bsp::sim::SimLine;
//! use bsp::{Health, StatusLed};
//!
//! static LED: SimLine = SimLine::new(false);
//! let mut led = StatusLed::new(LED.pin());
//! led.set_health(Health::Ok);
//! led.tick(0).unwrap();
//! assert!(LED.is_high());
//! ```

use core::convert::Infallible;
use core::sync::atomic::{AtomicBool, Ordering};

use embedded_hal::digital::{ErrorType, InputPin, OutputPin, StatefulOutputPin};

use crate::watchdog::Watchdog;

/// A simulated logic level shared between a harness and [`SimPin`]s.
#[derive(Debug, Default)]
pub struct SimLine(AtomicBool);

impl SimLine {
    /// A line at the given level (`true` = high).
    pub const fn new(high: bool) -> Self {
        Self(AtomicBool::new(high))
    }

    /// Current level.
    pub fn is_high(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Drives the level (e.g. "press the button").
    pub fn set(&self, high: bool) {
        self.0.store(high, Ordering::Relaxed);
    }

    /// A pin on this line.
    pub fn pin(&self) -> SimPin<'_> {
        SimPin(self)
    }
}

/// An embedded-hal pin on a [`SimLine`]; never fails.
#[derive(Clone, Copy, Debug)]
pub struct SimPin<'a>(&'a SimLine);

impl ErrorType for SimPin<'_> {
    type Error = Infallible;
}

impl OutputPin for SimPin<'_> {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.set(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.set(true);
        Ok(())
    }
}

impl StatefulOutputPin for SimPin<'_> {
    fn is_set_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.0.is_high())
    }

    fn is_set_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.0.is_high())
    }
}

impl InputPin for SimPin<'_> {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.0.is_high())
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.0.is_high())
    }
}

/// A watchdog that only counts pets.
#[derive(Debug, Default)]
pub struct SimWatchdog {
    pets: u64,
}

impl SimWatchdog {
    /// How many times it has been petted.
    pub fn pets(&self) -> u64 {
        self.pets
    }
}

impl Watchdog for SimWatchdog {
    type Error = Infallible;

    fn pet(&mut self) -> Result<(), Infallible> {
        self.pets += 1;
        Ok(())
    }
}
