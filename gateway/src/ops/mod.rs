//! Operations surface: metrics, the admin HTTP endpoint, logging.

pub mod admin;
pub mod logging;
pub mod metrics;
pub mod warn_every;
