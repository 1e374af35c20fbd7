//! Where bundles go: the [`Target`] trait and its HTTP implementation, one ureq [`Agent`]
//! (a keep-alive pool) over rustls with the ring provider, with every timeout set.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};
use ureq::unversioned::transport::DefaultConnector;
use ureq::Agent;

use super::auth::{Auth, AuthError};
use super::resolve::CachingResolver;
use crate::config::Cloud;

/// Largest response body read (a batch-response of 30 entries with outcomes is far smaller).
const MAX_RESPONSE: u64 = 16 << 20;

/// What came back for one bundle.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<String>,
    /// `Sforce-Limit-Info`.
    pub limit_info: Option<String>,
    pub body: Vec<u8>,
}

/// A request that got no HTTP answer. The strings are error kinds, never content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    /// No credentials could be obtained (token endpoint down or refusing).
    #[error("authentication: {0}")]
    Auth(String),
}

/// A destination for bundles: the cloud FHIR server or the local sink.
pub trait Target: Send + Sync {
    /// Sends one Bundle (JSON) and returns the answer. Implementations retry a 401/403 once
    /// after refreshing credentials; the forwarder handles everything else.
    fn send(&self, bundle: &[u8]) -> Result<Response, SendError>;

    /// Access tokens fetched so far (for metrics).
    fn token_refreshes(&self) -> u64 {
        0
    }

    /// Reads (searches) the target answers in one batch: `[cloud] salesforce_max_reads` for
    /// the salesforce profile's server; 0, the default, means no lookup before create.
    fn max_reads(&self) -> usize {
        0
    }
}

/// Errors building the HTTP client; they name the file or key to fix (an auth error as the
/// cause, which the error chain prints).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("[cloud] {field} {path}: {message}")]
    File { field: &'static str, path: PathBuf, message: String },
    #[error("[cloud] url: {0}")]
    Url(String),
    #[error("[cloud] proxy: {0}")]
    Proxy(String),
    #[error("[cloud.auth]")]
    Auth(#[from] AuthError),
}

/// The cloud FHIR server.
pub(crate) struct HttpTarget {
    agent: Agent,
    url: String,
    auth: Auth,
    max_reads: usize,
}

/// System CA bundles, first found wins (`SSL_CERT_FILE` before these).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

fn read_pem(field: &'static str, path: &Path) -> Result<Vec<PemItem<'static>>, ClientError> {
    let err = |message: String| ClientError::File { field, path: path.to_path_buf(), message };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    ureq::tls::parse_pem(&bytes).collect::<Result<Vec<_>, _>>().map_err(|e| err(format!("not PEM: {e}")))
}

/// The client's private key, read like every key the gateway holds: only from a file that
/// group and others cannot read.
fn read_client_key(path: &Path) -> Result<PrivateKey<'static>, ClientError> {
    let err = |message: String| ClientError::File { field: "client_key", path: path.to_path_buf(), message };
    let bytes = super::auth::read_secret_file(path).map_err(|e| match e {
        AuthError::File { reason, .. } => err(reason),
        other => err(other.to_string()),
    })?;
    let key = ureq::tls::parse_pem(&bytes).find_map(|i| match i {
        Ok(PemItem::PrivateKey(k)) => Some(k.to_owned()),
        _ => None,
    });
    key.ok_or_else(|| err("holds no private key".into()))
}

fn certs(field: &'static str, path: &Path) -> Result<Vec<Certificate<'static>>, ClientError> {
    let certs: Vec<_> = read_pem(field, path)?
        .into_iter()
        .filter_map(|i| match i {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(ClientError::File { field, path: path.into(), message: "holds no certificate".into() });
    }
    Ok(certs)
}

/// The trust roots: `ca_file` and/or the system bundle.
fn roots(cloud: &Cloud) -> Result<Vec<Certificate<'static>>, ClientError> {
    let mut out = Vec::new();
    if let Some(ca) = &cloud.ca_file {
        out.extend(certs("ca_file", ca.get_ref())?);
    }
    if cloud.system_roots.unwrap_or(cloud.ca_file.is_none()) {
        let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
        let found = env.into_iter().chain(SYSTEM_BUNDLES.iter().map(PathBuf::from)).find(|p| p.is_file());
        if let Some(bundle) = found {
            out.extend(certs("system_roots", &bundle)?);
        }
    }
    Ok(out)
}

/// Builds the one Agent all workers share.
pub(crate) fn agent(cloud: &Cloud) -> Result<Agent, ClientError> {
    let roots = roots(cloud)?;
    let client_cert = match (&cloud.client_cert, &cloud.client_key) {
        (Some(cert), Some(key)) => {
            let key = read_client_key(key.get_ref())?;
            let chain = certs("client_cert", cert.get_ref())?;
            Some(ClientCert::new_with_certs(&chain, key))
        }
        _ => None,
    };
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .root_certs(RootCerts::new_with_certs(&roots))
        .client_cert(client_cert)
        .build();
    let proxy = match &cloud.proxy {
        Some(p) => Some(ureq::Proxy::new(p.get_ref()).map_err(|e| ClientError::Proxy(e.to_string()))?),
        None => None,
    };
    let read = Duration::from_secs(cloud.read_timeout_secs.get());
    let config = Agent::config_builder()
        .tls_config(tls)
        .proxy(proxy)
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("hl7-gateway/", env!("CARGO_PKG_VERSION")))
        .timeout_global(Some(Duration::from_secs(cloud.timeout_secs.get())))
        .timeout_connect(Some(Duration::from_secs(cloud.connect_timeout_secs.get())))
        .timeout_recv_response(Some(read))
        .timeout_recv_body(Some(read))
        .timeout_per_read(Some(read))
        .max_idle_connections_per_host(cloud.concurrency.get().max(1) * 2)
        .build();
    Ok(Agent::with_parts(config, DefaultConnector::default(), CachingResolver::default()))
}

impl HttpTarget {
    /// The agent, the auth and the URL from `[cloud]` (`url` must be set).
    pub(crate) fn from_config(cloud: &Cloud, config_dir: &Path) -> Result<HttpTarget, ClientError> {
        let url = cloud.url.as_ref().ok_or_else(|| ClientError::Url("not set".into()))?.get_ref().clone();
        let agent = agent(cloud)?;
        let auth = Auth::from_config(&cloud.auth, config_dir)?;
        let max_reads = match cloud.profile() {
            crate::fhir::bundle::Profile::Salesforce => cloud.salesforce_max_reads,
            crate::fhir::bundle::Profile::Generic => 0,
        };
        Ok(HttpTarget { agent, url, auth, max_reads })
    }

    /// Where bundles for `base` are POSTed: the URL itself, or a path on the instance the
    /// auth names.
    fn endpoint(&self, base: &str) -> Result<String, SendError> {
        if base.starts_with('/') {
            let instance = self.auth.instance_url().ok_or_else(|| SendError::Auth("no instance URL yet".into()))?;
            Ok(format!("{}{}", instance.trim_end_matches('/'), base))
        } else {
            Ok(base.to_string())
        }
    }

    /// Sends one Bundle to another base URL of the same org (`[cloud.base_urls]`): the same
    /// agent and credentials as [`Target::send`].
    pub(crate) fn send_to(&self, base: &str, bundle: &[u8]) -> Result<Response, SendError> {
        let first = self.post(base, bundle)?;
        if matches!(first.status, 401 | 403) {
            // A revoked or expired token: fetch a new one and try once more.
            self.auth.invalidate();
            return self.post(base, bundle);
        }
        Ok(first)
    }

    fn post(&self, base: &str, bundle: &[u8]) -> Result<Response, SendError> {
        let authorization = self.auth.authorization(&self.agent).map_err(token_error)?;
        let mut req = self
            .agent
            .post(self.endpoint(base)?)
            .header("Content-Type", "application/fhir+json")
            .header("Accept", "application/fhir+json");
        if let Some(value) = authorization {
            req = req.header("Authorization", value);
        }
        let mut resp = req.send(bundle).map_err(classify)?;
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let retry_after = header("retry-after");
        let limit_info = header("sforce-limit-info");
        let status = resp.status().as_u16();
        let body = resp.body_mut().with_config().limit(MAX_RESPONSE).read_to_vec().map_err(classify)?;
        Ok(Response { status, retry_after, limit_info, body })
    }
}

impl Target for HttpTarget {
    fn send(&self, bundle: &[u8]) -> Result<Response, SendError> {
        self.send_to(&self.url, bundle)
    }

    fn token_refreshes(&self) -> u64 {
        self.auth.refreshes()
    }

    fn max_reads(&self) -> usize {
        self.max_reads
    }
}

/// A token endpoint that cannot be reached (or answers 5xx/429/408) is a connect failure,
/// retried on the normal backoff and counted by the breaker like the FHIR server's own; only
/// a refusal or an unusable answer means the credentials are wrong.
fn token_error(e: AuthError) -> SendError {
    if e.is_transient() {
        SendError::Connect(e.to_string())
    } else {
        SendError::Auth(e.to_string())
    }
}

/// Transport errors by kind (no URLs or bodies in the text).
fn classify(e: ureq::Error) -> SendError {
    use std::io::ErrorKind;
    match e {
        ureq::Error::Timeout(t) => {
            let _ = t;
            SendError::Timeout
        }
        ureq::Error::Io(io) if matches!(io.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => SendError::Timeout,
        ureq::Error::Io(io) => SendError::Connect(format!("{:?}", io.kind())),
        ureq::Error::HostNotFound => SendError::Connect("host not found".into()),
        ureq::Error::ConnectionFailed => SendError::Connect("connection refused or unreachable".into()),
        ureq::Error::ConnectProxyFailed(_) => SendError::Connect("proxy refused".into()),
        ureq::Error::Tls(m) => SendError::Connect(format!("TLS: {m}")),
        ureq::Error::Rustls(e) => SendError::Connect(format!("TLS: {e}")),
        ureq::Error::BodyExceedsLimit(_) => SendError::Connect("response too large".into()),
        other => SendError::Connect(format!("{other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_builds_without_proxy_and_with_custom_ca() {
        // A throwaway self-signed CA in PEM (from rcgen-free fixture: any cert parses here).
        let cloud = Cloud { url: Some(toml::Spanned::new(0..0, "https://fhir.example/r4".into())), ..Cloud::default() };
        let agent = agent(&cloud).unwrap();
        assert!(agent.config().proxy().is_none(), "no proxy unless configured");
        assert!(!agent.config().http_status_as_error());
        let t = agent.config().timeouts();
        assert_eq!(t.global, Some(Duration::from_secs(60)));
        assert_eq!(t.connect, Some(Duration::from_secs(5)));

        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a pem").unwrap();
        let bad = Cloud { ca_file: Some(toml::Spanned::new(0..0, empty.clone())), ..Cloud::default() };
        assert!(matches!(agent_err(&bad), ClientError::File { field: "ca_file", .. }));

        // A client key others can read is refused, like every key the gateway holds.
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("client.key");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let spanned = |p: &Path| Some(toml::Spanned::new(0..0, p.to_path_buf()));
        let open = Cloud { client_cert: spanned(&empty), client_key: spanned(&key), ..Cloud::default() };
        let e = agent_err(&open);
        assert!(
            matches!(&e, ClientError::File { field: "client_key", message, .. } if message.contains("chmod 600")),
            "{e}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        // With 0600 the key is read, and the next problem is the (bogus) certificate.
        let e = agent_err(&open);
        assert!(matches!(&e, ClientError::File { field: "client_cert", .. }), "{e}");
    }

    fn agent_err(c: &Cloud) -> ClientError {
        match agent(c) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }
}
