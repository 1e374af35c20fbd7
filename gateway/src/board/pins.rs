//! The LED and button pins a board file names, as one output and one input type whatever
//! the wiring (simulated, sysfs, GPIO character device, value file).

use std::fmt;

use bsp::linux::{FileInput, GpioInput, GpioLine, GpioOutput, SysfsLed};
use bsp::sim::{SimLine, SimPin};
use embedded_hal::digital::{ErrorKind, ErrorType, InputPin, OutputPin};

use crate::config::{ButtonWiring, LedWiring};

/// A pin failure, as its text (it names the file or chip line).
#[derive(Debug)]
pub(crate) struct PinError(String);

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl embedded_hal::digital::Error for PinError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

fn pin_error(e: bsp::linux::Error) -> PinError {
    PinError(e.to_string())
}

/// A simulated line for the life of the process: the board stage owns its pins on its own
/// thread, and a simulated board is opened once per daemon run.
fn sim_line() -> &'static SimLine {
    Box::leak(Box::new(SimLine::new(false)))
}

pub(crate) enum LedPin {
    Sim(SimPin<'static>),
    Sysfs(SysfsLed),
    Gpio(GpioOutput),
}

impl LedPin {
    pub(crate) fn open(wiring: &LedWiring) -> Result<LedPin, bsp::linux::Error> {
        Ok(match wiring {
            LedWiring::Simulated => LedPin::Sim(sim_line().pin()),
            LedWiring::Sysfs(name) => LedPin::Sysfs(SysfsLed::open(format!("/sys/class/leds/{name}/brightness"))?),
            LedWiring::Gpio { chip, line, active_low } => {
                LedPin::Gpio(GpioOutput::open(&GpioLine { chip: chip.clone(), line: *line, active_low: *active_low })?)
            }
        })
    }
}

impl ErrorType for LedPin {
    type Error = PinError;
}

impl OutputPin for LedPin {
    fn set_low(&mut self) -> Result<(), PinError> {
        match self {
            LedPin::Sim(p) => p.set_low().map_err(|never| match never {}),
            LedPin::Sysfs(p) => p.set_low().map_err(pin_error),
            LedPin::Gpio(p) => p.set_low().map_err(pin_error),
        }
    }

    fn set_high(&mut self) -> Result<(), PinError> {
        match self {
            LedPin::Sim(p) => p.set_high().map_err(|never| match never {}),
            LedPin::Sysfs(p) => p.set_high().map_err(pin_error),
            LedPin::Gpio(p) => p.set_high().map_err(pin_error),
        }
    }
}

pub(crate) enum ButtonPin {
    Sim(SimPin<'static>),
    File(FileInput),
    Gpio(GpioInput),
}

impl ButtonPin {
    /// Active-low is applied by bsp's button (`ButtonConfig::active_low`), so the line is
    /// requested as it is.
    pub(crate) fn open(wiring: &ButtonWiring) -> Result<ButtonPin, bsp::linux::Error> {
        Ok(match wiring {
            ButtonWiring::Simulated => ButtonPin::Sim(sim_line().pin()),
            ButtonWiring::File(path) => ButtonPin::File(FileInput::open(path.clone())?),
            ButtonWiring::Gpio { chip, line } => {
                ButtonPin::Gpio(GpioInput::open(&GpioLine { chip: chip.clone(), line: *line, active_low: false })?)
            }
        })
    }
}

impl ErrorType for ButtonPin {
    type Error = PinError;
}

impl InputPin for ButtonPin {
    fn is_high(&mut self) -> Result<bool, PinError> {
        match self {
            ButtonPin::Sim(p) => p.is_high().map_err(|never| match never {}),
            ButtonPin::File(p) => p.is_high().map_err(pin_error),
            ButtonPin::Gpio(p) => p.is_high().map_err(pin_error),
        }
    }

    fn is_low(&mut self) -> Result<bool, PinError> {
        self.is_high().map(|high| !high)
    }
}
