//! Linux implementations (feature `std`): the appliance's real hardware.
//!
//! - [`SysfsLed`]: [`OutputPin`](embedded_hal::digital::OutputPin) on a
//!   `/sys/class/leds/<name>/brightness` file.
//! - [`FileInput`]: [`InputPin`](embedded_hal::digital::InputPin) on a file
//!   holding a number, such as a sysfs GPIO `value` file.
//! - [`GpioOutput`], [`GpioInput`]: a line of a GPIO character device
//!   (`/dev/gpiochipN`), active-low lines inverted by the kernel.
//! - [`DeviceWatchdog`]: the kernel watchdog device (`/dev/watchdog`).
//! - [`SystemdWatchdog`]: `WATCHDOG=1` to systemd over `NOTIFY_SOCKET`.
//!
//! All of them report failures as [`Error`], which names the file or socket.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

mod gpio;
mod sysfs;
mod watchdog;

pub use gpio::{GpioInput, GpioLine, GpioOutput};
pub use sysfs::{FileInput, SysfsLed};
pub use watchdog::{systemd_watchdog_interval, DeviceWatchdog, SystemdWatchdog};

/// A failure of one of the Linux implementations.
#[derive(Debug)]
pub enum Error {
    /// Reading or writing `path` (a file, device or socket address) failed.
    Io {
        /// What was being accessed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `path` held something other than a non-negative integer.
    BadValue {
        /// The file read.
        path: PathBuf,
        /// What it held (trimmed).
        content: String,
    },
}

impl Error {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
        move |source| Error::Io { path: path.to_owned(), source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::BadValue { path, content } => {
                write!(f, "{}: expected a number, found {content:?}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::BadValue { .. } => None,
        }
    }
}

impl embedded_hal::digital::Error for Error {
    fn kind(&self) -> embedded_hal::digital::ErrorKind {
        embedded_hal::digital::ErrorKind::Other
    }
}

/// A fresh directory under the system temp dir, removed on drop.
#[cfg(test)]
pub(crate) struct TempDir(pub PathBuf);

#[cfg(test)]
impl TempDir {
    pub fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("bsp-{}-{n}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
