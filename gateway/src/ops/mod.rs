//! Operations surface: the admin HTTP endpoint (health, the metrics' exposition) and logging.

pub mod admin;
pub mod logging;
