//! Operations surface: metrics, stage liveness, the admin HTTP endpoint, logging.

pub(crate) mod admin;
pub(crate) mod liveness;
pub mod logging;
pub mod metrics;
