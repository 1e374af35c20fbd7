//! Watchdogs: the kernel watchdog device and systemd's service watchdog.
//!
//! Only one process can hold `/dev/watchdog` open. On the appliance the
//! intended split is: systemd owns the hardware watchdog
//! (`RuntimeWatchdogSec=` in `system.conf`) and the gateway pets systemd with
//! [`SystemdWatchdog`] (`WatchdogSec=` in the unit). [`DeviceWatchdog`] is for
//! boards or test setups without that arrangement.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Error;
use crate::watchdog::Watchdog;

/// The kernel watchdog device, e.g. `/dev/watchdog`.
///
/// Opening it arms the watchdog: from then on the machine reboots unless
/// [`Watchdog::pet`] is called within the device's timeout. Dropping it
/// (including on a crash) leaves it armed; [`DeviceWatchdog::disarm`] is the
/// deliberate way out.
#[derive(Debug)]
pub struct DeviceWatchdog {
    path: PathBuf,
    file: File,
}

impl DeviceWatchdog {
    /// Opens (and so arms) the watchdog device at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        let file = OpenOptions::new().write(true).open(&path).map_err(Error::io(&path))?;
        Ok(Self { path, file })
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the "magic close" character `V` and closes the device, which
    /// stops the watchdog unless the kernel was built with `NOWAYOUT`. For a
    /// clean shutdown only.
    pub fn disarm(mut self) -> Result<(), Error> {
        self.file.write_all(b"V").map_err(Error::io(&self.path))
    }
}

impl Watchdog for DeviceWatchdog {
    type Error = Error;

    fn pet(&mut self) -> Result<(), Error> {
        // Any byte but 'V' pets.
        self.file.write_all(b"1").map_err(Error::io(&self.path))
    }
}

/// Sends sd_notify(3) messages to systemd over the `NOTIFY_SOCKET` datagram
/// socket; [`Watchdog::pet`] sends `WATCHDOG=1`.
///
/// systemd sets `NOTIFY_SOCKET` for `Type=notify` services and for any service
/// with `WatchdogSec=` or `NotifyAccess=`. Its value is a filesystem path or,
/// starting with `@`, a Linux abstract socket name.
#[derive(Debug)]
pub struct SystemdWatchdog {
    name: PathBuf,
    addr: SocketAddr,
    socket: UnixDatagram,
}

impl SystemdWatchdog {
    /// Uses `$NOTIFY_SOCKET`; `Ok(None)` if it is unset or empty (not under
    /// systemd, or the unit does not ask for notifications).
    pub fn from_env() -> Result<Option<Self>, Error> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(name) if !name.is_empty() => Self::new(name).map(Some),
            _ => Ok(None),
        }
    }

    /// Uses the given socket (`/path` or `@abstract-name`).
    pub fn new(notify_socket: impl AsRef<OsStr>) -> Result<Self, Error> {
        let name = PathBuf::from(notify_socket.as_ref());
        let addr = notify_addr(notify_socket.as_ref()).map_err(Error::io(&name))?;
        let socket = UnixDatagram::unbound().map_err(Error::io(&name))?;
        Ok(Self { name, addr, socket })
    }

    /// Sends one notification, e.g. `"READY=1"`, `"STOPPING=1"` or
    /// `"STATUS=forwarding"`; several may be separated by newlines.
    pub fn notify(&self, state: &str) -> Result<(), Error> {
        self.socket.send_to_addr(state.as_bytes(), &self.addr).map(drop).map_err(Error::io(&self.name))
    }
}

impl Watchdog for SystemdWatchdog {
    type Error = Error;

    fn pet(&mut self) -> Result<(), Error> {
        self.notify("WATCHDOG=1")
    }
}

fn notify_addr(name: &OsStr) -> io::Result<SocketAddr> {
    match name.as_bytes() {
        [b'@', abstract_name @ ..] => abstract_addr(abstract_name),
        [b'/', ..] => SocketAddr::from_pathname(name),
        _ => {
            Err(io::Error::new(io::ErrorKind::InvalidInput, "NOTIFY_SOCKET must be an absolute path or start with '@'"))
        }
    }
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "abstract socket names are Linux-only"))
}

/// The service watchdog timeout systemd expects us to honour
/// (`WATCHDOG_USEC`), if it applies to this process (`WATCHDOG_PID` unset or
/// ours). Pet at no more than half of it.
pub fn systemd_watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str()?.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::TempDir;

    fn recv(socket: &UnixDatagram) -> String {
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn systemd_watchdog_path_socket() {
        let dir = TempDir::new("notify");
        let path = dir.0.join("notify.sock");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let mut wd = SystemdWatchdog::new(&path).unwrap();
        wd.pet().unwrap();
        assert_eq!(recv(&systemd), "WATCHDOG=1");
        wd.notify("STATUS=ok").unwrap();
        assert_eq!(recv(&systemd), "STATUS=ok");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn systemd_watchdog_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("bsp-test-notify-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let systemd = UnixDatagram::bind_addr(&addr).unwrap();
        let mut wd = SystemdWatchdog::new(format!("@{name}")).unwrap();
        wd.pet().unwrap();
        assert_eq!(recv(&systemd), "WATCHDOG=1");
    }

    #[test]
    fn systemd_watchdog_rejects_relative_and_vsock_addresses() {
        for bad in ["notify.sock", "vsock:2:1234"] {
            let err = SystemdWatchdog::new(bad).unwrap_err();
            assert!(err.to_string().starts_with(bad), "{err}");
        }
    }

    #[test]
    fn device_watchdog_pets_and_disarms() {
        let dir = TempDir::new("watchdog");
        let dev = dir.0.join("watchdog");
        std::fs::write(&dev, "").unwrap();
        let mut wd = DeviceWatchdog::open(&dev).unwrap();
        wd.pet().unwrap();
        wd.pet().unwrap();
        wd.disarm().unwrap();
        assert_eq!(std::fs::read_to_string(&dev).unwrap(), "11V");
        assert!(DeviceWatchdog::open(dir.0.join("missing")).is_err());
    }
}
