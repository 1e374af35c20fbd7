//! The [`Watchdog`] trait: something that reboots the box (hardware
//! watchdog) or restarts the service (systemd) unless it is petted in time.
//!
//! Implementations: `linux::DeviceWatchdog` (`/dev/watchdog`),
//! `linux::SystemdWatchdog` (`WATCHDOG=1` over `NOTIFY_SOCKET`), and
//! [`crate::sim::SimWatchdog`]. Pet from the loop whose liveness matters, at
//! no more than half the timeout.

/// A watchdog that must be petted regularly.
pub trait Watchdog {
    /// Why a pet failed. A failed pet should be logged; the watchdog will
    /// fire if it keeps failing, which is the point.
    type Error: core::fmt::Debug;

    /// Tells the watchdog we are alive.
    fn pet(&mut self) -> Result<(), Self::Error>;
}

impl<W: Watchdog + ?Sized> Watchdog for &mut W {
    type Error = W::Error;

    fn pet(&mut self) -> Result<(), Self::Error> {
        (**self).pet()
    }
}
