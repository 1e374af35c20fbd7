//! Operations surface: metrics, stage liveness, the admin HTTP endpoint, logging.

pub mod admin;
pub mod liveness;
pub mod logging;
pub mod metrics;
