//! Authentication to the cloud FHIR server (being written: none, static bearer, SMART
//! Backend Services, Salesforce JWT bearer).

use std::path::Path;

use serde::Deserialize;

/// `[cloud.auth]`, tagged by `kind`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    #[default]
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Config(String),
}

/// Supplies the `Authorization` header for requests to the cloud.
pub struct Auth {
    _config: AuthConfig,
}

impl Auth {
    pub fn from_config(config: &AuthConfig, _base: &Path) -> Result<Auth, AuthError> {
        Ok(Auth { _config: config.clone() })
    }

    /// The `Authorization` header value for the next request, if any.
    pub fn authorization(&self, _agent: &ureq::Agent) -> Result<Option<String>, AuthError> {
        Ok(None)
    }

    /// Forget the cached token (after a 401), so the next request fetches a new one.
    pub fn invalidate(&self) {}

    /// Tokens fetched so far.
    pub fn refreshes(&self) -> u64 {
        0
    }

    /// Salesforce's token response names the instance to call; `None` otherwise.
    pub fn instance_url(&self) -> Option<String> {
        None
    }
}
