//! GPIO character-device lines (`/dev/gpiochipN`) through the kernel's v2 uAPI
//! (`gpiocdev`), as embedded-hal pins.
//!
//! The line is requested for as long as the pin lives, so no other process can
//! drive it meanwhile; dropping the pin releases it. Active-low lines are
//! inverted by the kernel, so "high" always means "lit" / "pressed".

use std::io;
use std::path::{Path, PathBuf};

use embedded_hal::digital::{ErrorType, InputPin, OutputPin};
use gpiocdev::line::{Offset, Value};
use gpiocdev::Request;

use super::Error;

/// Which line, on which chip, with which polarity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpioLine {
    /// The chip's character device, e.g. `/dev/gpiochip0`.
    pub chip: PathBuf,
    /// The line's offset on the chip (`gpioinfo` lists them).
    pub line: u32,
    /// Asserted (lit, pressed) when the physical level is low.
    pub active_low: bool,
}

/// A requested output line: [`OutputPin`] high = asserted.
#[derive(Debug)]
pub struct GpioOutput {
    chip: PathBuf,
    line: Offset,
    request: Request,
}

/// A requested input line: [`InputPin`] high = asserted.
#[derive(Debug)]
pub struct GpioInput {
    chip: PathBuf,
    line: Offset,
    request: Request,
}

/// The consumer name shown by `gpioinfo` for lines we hold.
const CONSUMER: &str = "hl7-gateway";

fn request(line: &GpioLine, output: bool) -> Result<Request, Error> {
    let mut builder = Request::builder();
    builder.on_chip(&line.chip).with_consumer(CONSUMER).with_line(line.line);
    if output {
        builder.as_output(Value::Inactive);
    } else {
        builder.as_input();
    }
    if line.active_low {
        builder.as_active_low();
    }
    builder.request().map_err(|e| gpio_error(&line.chip, line.line, e))
}

fn gpio_error(chip: &Path, line: Offset, e: gpiocdev::Error) -> Error {
    Error::Io { path: chip.join(format!("line{line}")), source: io::Error::other(e.to_string()) }
}

impl GpioOutput {
    /// Requests `line` as an output, initially de-asserted.
    pub fn open(line: &GpioLine) -> Result<Self, Error> {
        Ok(Self { chip: line.chip.clone(), line: line.line, request: request(line, true)? })
    }

    fn set(&mut self, asserted: bool) -> Result<(), Error> {
        let value = if asserted { Value::Active } else { Value::Inactive };
        self.request.set_value(self.line, value).map_err(|e| gpio_error(&self.chip, self.line, e))
    }
}

impl GpioInput {
    /// Requests `line` as an input.
    pub fn open(line: &GpioLine) -> Result<Self, Error> {
        Ok(Self { chip: line.chip.clone(), line: line.line, request: request(line, false)? })
    }

    fn asserted(&self) -> Result<bool, Error> {
        let value = self.request.value(self.line).map_err(|e| gpio_error(&self.chip, self.line, e))?;
        Ok(value == Value::Active)
    }
}

impl ErrorType for GpioOutput {
    type Error = Error;
}

impl OutputPin for GpioOutput {
    fn set_low(&mut self) -> Result<(), Error> {
        self.set(false)
    }

    fn set_high(&mut self) -> Result<(), Error> {
        self.set(true)
    }
}

impl ErrorType for GpioInput {
    type Error = Error;
}

impl InputPin for GpioInput {
    fn is_high(&mut self) -> Result<bool, Error> {
        self.asserted()
    }

    fn is_low(&mut self) -> Result<bool, Error> {
        self.asserted().map(|a| !a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::TempDir;

    #[test]
    fn a_missing_chip_is_an_error_naming_chip_and_line() {
        let dir = TempDir::new("gpio");
        let line = GpioLine { chip: dir.0.join("gpiochip9"), line: 4, active_low: true };
        let err = GpioOutput::open(&line).unwrap_err().to_string();
        assert!(err.contains("gpiochip9/line4"), "{err}");
        let err = GpioInput::open(&line).unwrap_err().to_string();
        assert!(err.contains("gpiochip9/line4"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_gpio_chip_is_refused() {
        let dir = TempDir::new("gpio-notchip");
        let chip = dir.0.join("gpiochip0");
        std::fs::write(&chip, "").unwrap();
        let line = GpioLine { chip, line: 0, active_low: false };
        assert!(GpioOutput::open(&line).is_err());
    }
}
