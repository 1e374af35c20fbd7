//! Operations surface: the admin HTTP endpoint (health, the metrics' exposition, the status
//! page), the status stage and the alerts, and logging.

pub(crate) mod admin;
pub mod alerts;
pub mod logging;
pub mod status;
