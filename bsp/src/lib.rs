//! Board support for the HL7 MLLP edge gateway appliance.
//!
//! This crate owns the little hardware-facing logic the appliance has, written
//! against embedded-hal 1.0 traits so it can be tested without hardware:
//!
//! - [`led`]: maps gateway [`Health`] to a blink pattern on a status LED ([`StatusLed`]).
//! - [`button`]: debounced reset button reporting short / long presses ([`ResetButton`]).
//! - [`watchdog`]: the [`Watchdog`] trait.
//! - [`sim`]: simulated pins and watchdog, for tests and for running on a dev machine.
//! - `linux` (feature `std`, Unix only): sysfs LED, file-backed input pin, GPIO
//!   character-device lines (`/dev/gpiochipN`), `/dev/watchdog` and systemd
//!   `NOTIFY_SOCKET` watchdogs.
//!
//! Nothing here sleeps or reads a clock: callers pass a monotonic millisecond
//! timestamp to [`StatusLed::tick`] and [`ResetButton::poll`].
//!
//! Without the default `std` feature the crate is `no_std` and allocation-free.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod button;
pub mod led;
pub mod sim;
pub mod watchdog;

#[cfg(all(feature = "std", unix))]
pub mod linux;

pub use button::{ButtonConfig, Press, ResetButton};
pub use led::{Health, Pattern, StatusLed};
pub use watchdog::Watchdog;
