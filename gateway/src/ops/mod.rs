//! Operations surface: the admin HTTP endpoint (health, the metrics' exposition) and logging.

pub(crate) mod admin;
pub mod logging;
