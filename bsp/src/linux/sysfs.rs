//! File-backed pins: a sysfs LED and a file-backed input.
//!
//! Each access opens the file afresh, which is what sysfs attributes want
//! (every read and write starts at offset 0) and costs little: the LED is
//! written only when its level changes.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use embedded_hal::digital::{ErrorType, InputPin, OutputPin};

use super::Error;

/// An LED's `brightness` file, e.g. `/sys/class/leds/status/brightness`.
///
/// "High" writes the LED's `max_brightness` (read from the same directory
/// when opening; 1 if there is none), "low" writes 0. Provisioning should set
/// the LED's `trigger` to `none` so the kernel does not fight us.
#[derive(Debug)]
pub struct SysfsLed {
    path: PathBuf,
    on: u32,
}

impl SysfsLed {
    /// Checks that `brightness_path` is writable and reads `max_brightness` beside it.
    pub fn open(brightness_path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = brightness_path.into();
        OpenOptions::new().write(true).open(&path).map_err(Error::io(&path))?;
        let on = path
            .parent()
            .and_then(|dir| fs::read_to_string(dir.join("max_brightness")).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&max| max > 0)
            .unwrap_or(1);
        Ok(Self { path, on })
    }

    /// The `brightness` file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, value: u32) -> Result<(), Error> {
        // No `create`: a wrong path must fail, not leave a stray file behind.
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(value.to_string().as_bytes()))
            .map_err(Error::io(&self.path))
    }
}

impl ErrorType for SysfsLed {
    type Error = Error;
}

impl OutputPin for SysfsLed {
    fn set_low(&mut self) -> Result<(), Error> {
        self.write(0)
    }

    fn set_high(&mut self) -> Result<(), Error> {
        self.write(self.on)
    }
}

/// A file holding a non-negative integer, read as "high" when non-zero: a
/// sysfs GPIO `value` file (`/sys/class/gpio/gpioN/value`) or similar.
///
/// The legacy sysfs GPIO interface is deprecated upstream; prefer
/// [`GpioInput`](super::GpioInput) on the GPIO character device where the
/// kernel offers it.
#[derive(Debug)]
pub struct FileInput {
    path: PathBuf,
}

impl FileInput {
    /// Checks that `path` can be read and holds a number.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let input = Self { path: path.into() };
        input.read()?;
        Ok(input)
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<bool, Error> {
        let text = fs::read_to_string(&self.path).map_err(Error::io(&self.path))?;
        let text = text.trim();
        match text.parse::<u64>() {
            Ok(n) => Ok(n != 0),
            Err(_) => Err(Error::BadValue { path: self.path.clone(), content: text.to_owned() }),
        }
    }
}

impl ErrorType for FileInput {
    type Error = Error;
}

impl InputPin for FileInput {
    fn is_high(&mut self) -> Result<bool, Error> {
        self.read()
    }

    fn is_low(&mut self) -> Result<bool, Error> {
        self.read().map(|high| !high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::TempDir;
    use crate::{Health, StatusLed};

    #[test]
    fn sysfs_led_writes_brightness() {
        let dir = TempDir::new("led");
        let brightness = dir.0.join("brightness");
        fs::write(&brightness, "0\n").unwrap();

        let mut led = StatusLed::new(SysfsLed::open(&brightness).unwrap());
        led.set_health(Health::Ok);
        led.tick(0).unwrap();
        assert_eq!(fs::read_to_string(&brightness).unwrap(), "1");
        led.set_health(Health::Off);
        led.tick(1).unwrap();
        assert_eq!(fs::read_to_string(&brightness).unwrap(), "0");
    }

    #[test]
    fn sysfs_led_uses_max_brightness() {
        let dir = TempDir::new("led-max");
        let brightness = dir.0.join("brightness");
        fs::write(&brightness, "0\n").unwrap();
        fs::write(dir.0.join("max_brightness"), "255\n").unwrap();

        let mut led = SysfsLed::open(&brightness).unwrap();
        led.set_high().unwrap();
        assert_eq!(fs::read_to_string(&brightness).unwrap(), "255");
    }

    #[test]
    fn sysfs_led_missing_file_is_an_error_not_a_new_file() {
        let dir = TempDir::new("led-missing");
        let brightness = dir.0.join("brightness");
        let err = SysfsLed::open(&brightness).unwrap_err();
        assert!(err.to_string().contains("brightness"), "{err}");
        assert!(!brightness.exists());
    }

    #[test]
    fn file_input_reads_levels() {
        let dir = TempDir::new("input");
        let value = dir.0.join("value");
        fs::write(&value, "0\n").unwrap();
        let mut pin = FileInput::open(&value).unwrap();
        assert!(pin.is_low().unwrap());
        fs::write(&value, "1\n").unwrap();
        assert!(pin.is_high().unwrap());
        fs::write(&value, "on\n").unwrap();
        assert!(matches!(pin.is_high(), Err(Error::BadValue { content, .. }) if content == "on"));
    }
}
