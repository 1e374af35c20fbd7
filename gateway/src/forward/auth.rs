//! Authentication to the cloud FHIR server, `[cloud.auth]` tagged by `kind`:
//!
//! - `none`: no `Authorization` header.
//! - `bearer`: a static token read from `token_file`.
//! - `smart`: SMART Backend Services: `client_credentials` with a signed JWT client
//!   assertion (RS384 or ES384).
//! - `salesforce`: the OAuth 2.0 JWT bearer flow (RS256); the token response names the
//!   instance to call ([`Auth::instance_url`]).
//!
//! Tokens are cached and fetched again a minute before they expire, or at once after
//! [`Auth::invalidate`] (the forwarder calls it on a 401 and retries once). Private keys and
//! token files must be mode 0600; their contents and the tokens never appear in logs or
//! errors. Token endpoint failures report the HTTP status and the OAuth `error` code only.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};

use crate::config::{AuthConfig, SmartAlg};

/// Lifetime of a SMART client assertion (the spec allows at most 5 minutes).
const SMART_ASSERTION_SECS: u64 = 240;
/// Lifetime of a Salesforce JWT bearer assertion (Salesforce allows at most 3 minutes).
const SALESFORCE_ASSERTION_SECS: u64 = 150;
/// Tokens are fetched again this long before they expire.
const REFRESH_EARLY: Duration = Duration::from_secs(60);
/// Token lifetime assumed when a SMART token response has no `expires_in`.
const DEFAULT_SMART_LIFETIME_SECS: u64 = 300;
/// Largest token response read.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    /// An invalid `[cloud.auth]` setting.
    #[error("{0}")]
    Config(String),
    /// A key or token file that cannot be used; never holds the file's contents.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// The token endpoint could not be reached.
    #[error("token endpoint {url}: {reason}")]
    Transport { url: String, reason: String },
    /// The token endpoint refused: the HTTP status and the OAuth `error` code only.
    #[error("token endpoint {url} answered HTTP {status}{}", error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
    Endpoint { url: String, status: u16, error: Option<String> },
    /// A success response without a usable token.
    #[error("token endpoint {url}: {reason}")]
    Response { url: String, reason: String },
}

impl AuthError {
    /// Whether trying again later may succeed (network trouble, 5xx, 429) as opposed to a
    /// configuration or credential problem an operator has to fix.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            AuthError::Transport { .. } => true,
            AuthError::Endpoint { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            AuthError::Config(_) | AuthError::File { .. } | AuthError::Response { .. } => false,
        }
    }
}

/// Supplies the `Authorization` header for requests to the cloud. `Send + Sync`: one
/// instance serves all forwarder threads.
pub(crate) struct Auth {
    method: Method,
    state: Mutex<State>,
    refreshes: AtomicU64,
    rng: SystemRandom,
}

enum Method {
    None,
    Bearer {
        path: PathBuf,
    },
    Smart {
        token_url: String,
        client_id: String,
        scope: String,
        kid: String,
        alg: JwtAlg,
        signer: Signer,
    },
    Salesforce {
        login_url: String,
        token_url: String,
        consumer_key: String,
        user: String,
        lifetime: Duration,
        signer: Signer,
    },
}

#[derive(Default)]
struct State {
    token: Option<Token>,
    instance_url: Option<String>,
}

struct Token {
    /// The whole header value, `Bearer ...`.
    header: String,
    refresh_at: Option<Instant>,
    expires_at: Option<Instant>,
}

struct Fetched {
    token: String,
    lifetime: Option<Duration>,
    instance_url: Option<String>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth").field("kind", &self.kind()).field("refreshes", &self.refreshes()).finish_non_exhaustive()
    }
}

impl Auth {
    /// Validates the settings and loads the key or token file (relative paths against
    /// `base`, the config file's folder). Fails fast: a bad key is a startup error.
    pub(crate) fn from_config(config: &AuthConfig, base: &Path) -> Result<Auth, AuthError> {
        let resolve = |p: &Path| if p.is_relative() { base.join(p) } else { p.to_path_buf() };
        let mut state = State::default();
        let method = match config {
            AuthConfig::None => Method::None,
            AuthConfig::Bearer { token_file } => {
                let path = resolve(token_file);
                state.token = Some(Token { header: read_bearer(&path)?, refresh_at: None, expires_at: None });
                Method::Bearer { path }
            }
            AuthConfig::Smart { token_url, client_id, key_file, alg, kid, scope } => {
                check_url("cloud.auth.token_url", token_url)?;
                non_empty("cloud.auth.client_id", client_id)?;
                non_empty("cloud.auth.kid", kid)?;
                non_empty("cloud.auth.scope", scope)?;
                let (alg, want) = match alg {
                    SmartAlg::RS384 => (JwtAlg::RS384, KeyKind::Rsa),
                    SmartAlg::ES384 => (JwtAlg::ES384, KeyKind::EcP384),
                };
                let signer = load_signer(&resolve(key_file), want)?;
                Method::Smart {
                    token_url: token_url.clone(),
                    client_id: client_id.clone(),
                    scope: scope.clone(),
                    kid: kid.clone(),
                    alg,
                    signer,
                }
            }
            AuthConfig::Salesforce { login_url, consumer_key, user, key_file, token_lifetime_secs } => {
                let login_url = login_url.trim_end_matches('/').to_string();
                check_url("cloud.auth.login_url", &login_url)?;
                non_empty("cloud.auth.consumer_key", consumer_key)?;
                non_empty("cloud.auth.user", user)?;
                if *token_lifetime_secs < 60 {
                    return Err(AuthError::Config("cloud.auth.token_lifetime_secs must be at least 60".into()));
                }
                let signer = load_signer(&resolve(key_file), KeyKind::Rsa)?;
                Method::Salesforce {
                    token_url: format!("{login_url}/services/oauth2/token"),
                    login_url,
                    consumer_key: consumer_key.clone(),
                    user: user.clone(),
                    lifetime: Duration::from_secs(*token_lifetime_secs),
                    signer,
                }
            }
        };
        Ok(Auth { method, state: Mutex::new(state), refreshes: AtomicU64::new(0), rng: SystemRandom::new() })
    }

    /// The `Authorization` header value for the next request, if any: the cached token, or
    /// a new one when it is (nearly) expired or was invalidated. Concurrent callers wait for
    /// one fetch rather than each fetching.
    pub(crate) fn authorization(&self, agent: &ureq::Agent) -> Result<Option<String>, AuthError> {
        if matches!(self.method, Method::None) {
            return Ok(None);
        }
        let mut state = self.lock();
        let now = Instant::now();
        if let Some(t) = &state.token {
            if t.refresh_at.is_none_or(|at| now < at) {
                return Ok(Some(t.header.clone()));
            }
        }
        match self.fetch(agent) {
            Ok(fetched) => {
                let now = Instant::now();
                let (refresh_at, expires_at) = match fetched.lifetime {
                    Some(l) => (Some(now + l - REFRESH_EARLY.min(l / 2)), Some(now + l)),
                    None => (None, None),
                };
                let header = format!("Bearer {}", fetched.token);
                state.token = Some(Token { header: header.clone(), refresh_at, expires_at });
                if fetched.instance_url.is_some() {
                    state.instance_url = fetched.instance_url;
                }
                self.refreshes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(kind = self.kind(), "fetched a new access token");
                Ok(Some(header))
            }
            // Refreshing early failed, but the current token has not expired: keep using it.
            Err(e) => match &state.token {
                Some(t) if t.expires_at.is_some_and(|at| now < at) => {
                    tracing::warn!(kind = self.kind(), error = %e, "token refresh failed; using the current token until it expires");
                    Ok(Some(t.header.clone()))
                }
                _ => Err(e),
            },
        }
    }

    /// Forget the cached token (after a 401), so the next request fetches a new one (for
    /// `bearer`: reads the token file again, which allows rotating it without a restart).
    pub(crate) fn invalidate(&self) {
        self.lock().token = None;
    }

    /// Tokens fetched (or token files read again) so far.
    pub(crate) fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// Salesforce's token response names the instance to call; `None` otherwise (and before
    /// the first token).
    pub(crate) fn instance_url(&self) -> Option<String> {
        self.lock().instance_url.clone()
    }

    fn kind(&self) -> &'static str {
        match self.method {
            Method::None => "none",
            Method::Bearer { .. } => "bearer",
            Method::Smart { .. } => "smart",
            Method::Salesforce { .. } => "salesforce",
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fetch(&self, agent: &ureq::Agent) -> Result<Fetched, AuthError> {
        match &self.method {
            Method::None => unreachable!("no token for kind none"),
            Method::Bearer { path } => {
                let header = read_bearer(path)?;
                let token = header.strip_prefix("Bearer ").unwrap_or(&header).to_string();
                Ok(Fetched { token, lifetime: None, instance_url: None })
            }
            Method::Smart { token_url, scope, .. } => {
                let assertion = self.assertion(unix_now())?;
                let form = [
                    ("grant_type", "client_credentials"),
                    ("scope", scope.as_str()),
                    ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                    ("client_assertion", assertion.as_str()),
                ];
                let r = post_token(agent, token_url, &form)?;
                let lifetime = Some(Duration::from_secs(r.expires_in.unwrap_or(DEFAULT_SMART_LIFETIME_SECS)));
                Ok(Fetched { token: r.access_token, lifetime, instance_url: None })
            }
            Method::Salesforce { token_url, lifetime, .. } => {
                let assertion = self.assertion(unix_now())?;
                let form = [("grant_type", JWT_BEARER_GRANT), ("assertion", assertion.as_str())];
                let r = post_token(agent, token_url, &form)?;
                let instance_url = match r.instance_url {
                    Some(u) => {
                        check_url("instance_url", &u).map_err(|_| AuthError::Response {
                            url: token_url.clone(),
                            reason: "instance_url is not an https URL".into(),
                        })?;
                        Some(u.trim_end_matches('/').to_string())
                    }
                    None => None,
                };
                let lifetime = Some(r.expires_in.map(Duration::from_secs).unwrap_or(*lifetime));
                Ok(Fetched { token: r.access_token, lifetime, instance_url })
            }
        }
    }

    /// The signed JWT for the token request, issued at `now` (unix seconds).
    fn assertion(&self, now: u64) -> Result<String, AuthError> {
        let (header, claims, alg, signer) = match &self.method {
            Method::Smart { token_url, client_id, kid, alg, signer, .. } => (
                serde_json::json!({ "alg": alg.name(), "kid": kid, "typ": "JWT" }),
                serde_json::json!({
                    "iss": client_id,
                    "sub": client_id,
                    "aud": token_url,
                    "exp": now + SMART_ASSERTION_SECS,
                    "iat": now,
                    "jti": self.jti(),
                }),
                *alg,
                signer,
            ),
            Method::Salesforce { login_url, consumer_key, user, signer, .. } => (
                serde_json::json!({ "alg": "RS256", "typ": "JWT" }),
                serde_json::json!({
                    "iss": consumer_key,
                    "sub": user,
                    "aud": login_url,
                    "exp": now + SALESFORCE_ASSERTION_SECS,
                    "iat": now,
                    "jti": self.jti(),
                }),
                JwtAlg::RS256,
                signer,
            ),
            Method::None | Method::Bearer { .. } => unreachable!("no assertion for this kind"),
        };
        let mut jwt =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = signer.sign(alg, jwt.as_bytes(), &self.rng)?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(jwt)
    }

    /// A unique JWT id: 128 random bits, hex.
    fn jti(&self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill(&mut b).expect("system random source");
        b.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JwtAlg {
    RS256,
    RS384,
    ES384,
}

impl JwtAlg {
    fn name(self) -> &'static str {
        match self {
            JwtAlg::RS256 => "RS256",
            JwtAlg::RS384 => "RS384",
            JwtAlg::ES384 => "ES384",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP384,
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl Signer {
    fn sign(&self, alg: JwtAlg, msg: &[u8], rng: &SystemRandom) -> Result<Vec<u8>, AuthError> {
        let failed = || AuthError::Config(format!("signing the {} assertion failed", alg.name()));
        match (self, alg) {
            (Signer::Rsa(kp), JwtAlg::RS256 | JwtAlg::RS384) => {
                let padding =
                    if alg == JwtAlg::RS256 { &signature::RSA_PKCS1_SHA256 } else { &signature::RSA_PKCS1_SHA384 };
                let mut sig = vec![0u8; kp.public().modulus_len()];
                kp.sign(padding, rng, msg, &mut sig).map_err(|_| failed())?;
                Ok(sig)
            }
            // The key pair was built with ECDSA_P384_SHA384_FIXED_SIGNING: r || s, as JWS wants.
            (Signer::Ec(kp), JwtAlg::ES384) => Ok(kp.sign(rng, msg).map_err(|_| failed())?.as_ref().to_vec()),
            _ => Err(failed()),
        }
    }
}

/// Reads a secret file: a regular file not accessible by group or others. The error never
/// holds the contents.
pub(crate) fn read_secret_file(path: &Path) -> Result<Vec<u8>, AuthError> {
    let err = |reason: String| AuthError::File { path: path.display().to_string(), reason };
    let mut f = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    // Checked on the opened file, so the file checked is the file read.
    let meta = f.metadata().map_err(|e| err(format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(format!("is accessible by group or others (mode {mode:o}); run chmod 600 on it")));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut buf).map_err(|e| err(format!("cannot read: {e}")))?;
    Ok(buf)
}

/// Best-effort wipe of secret bytes once parsed.
fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    // Keeps the write from being optimised away as dead.
    std::hint::black_box(buf);
}

/// Reads a bearer token file into the header value `Bearer <token>`.
fn read_bearer(path: &Path) -> Result<String, AuthError> {
    let mut raw = read_secret_file(path)?;
    let err = |reason: &str| AuthError::File { path: path.display().to_string(), reason: reason.into() };
    let token = std::str::from_utf8(&raw).map(|t| t.trim_end_matches(['\n', '\r']).to_string());
    wipe(&mut raw);
    let token = token.map_err(|_| err("token is not UTF-8"))?;
    if token.is_empty() {
        return Err(err("token file is empty"));
    }
    // RFC 6750 b64token characters; anything else would corrupt the header.
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if !token.chars().all(allowed) {
        return Err(err("token holds characters not allowed in a bearer token (whitespace, quotes, ...)"));
    }
    Ok(format!("Bearer {token}"))
}

/// Loads a private key for `want`; errors name the file and the problem, never the key.
fn load_signer(path: &Path, want: KeyKind) -> Result<Signer, AuthError> {
    let err = |reason: String| AuthError::File { path: path.display().to_string(), reason };
    let mut raw = read_secret_file(path)?;
    let block = pem_private_key(&raw);
    wipe(&mut raw);
    let (label, mut der) = block.map_err(err)?;
    let rng = SystemRandom::new();
    let signer = match (label.as_str(), want) {
        ("PRIVATE KEY", KeyKind::Rsa) => {
            RsaKeyPair::from_pkcs8(&der).map(Signer::Rsa).map_err(|e| err(format!("not a usable RSA PKCS#8 key ({e})")))
        }
        ("PRIVATE KEY", KeyKind::EcP384) => {
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &der, &rng)
                .map(Signer::Ec)
                .map_err(|e| err(format!("not a usable EC P-384 PKCS#8 key ({e})")))
        }
        ("RSA PRIVATE KEY", KeyKind::Rsa) => {
            RsaKeyPair::from_der(&der).map(Signer::Rsa).map_err(|e| err(format!("not a usable RSA PKCS#1 key ({e})")))
        }
        ("RSA PRIVATE KEY", KeyKind::EcP384) => Err(err("alg ES384 needs an EC P-384 key; this is an RSA key".into())),
        ("EC PRIVATE KEY", _) => Err(err(
            "SEC1 `EC PRIVATE KEY` is not supported; convert it: openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8"
                .into(),
        )),
        ("ENCRYPTED PRIVATE KEY", _) => {
            Err(err("encrypted private keys are not supported; protect it with mode 0600".into()))
        }
        (other, _) => Err(err(format!("unsupported PEM block `{other}`"))),
    };
    wipe(&mut der);
    signer
}

/// The first private key block of a PEM file: its label and DER bytes.
fn pem_private_key(text: &[u8]) -> Result<(String, Vec<u8>), String> {
    let text = std::str::from_utf8(text).map_err(|_| "not a PEM file".to_string())?;
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) else { continue };
        if !label.ends_with("PRIVATE KEY") {
            continue; // e.g. `EC PARAMETERS` before the key
        }
        let end = format!("-----END {label}-----");
        let mut b64: Vec<u8> = Vec::new();
        for line in lines.by_ref() {
            if line == end {
                let der = STANDARD.decode(&b64).map_err(|_| format!("`{label}` block is not valid base64"));
                wipe(&mut b64);
                return der.map(|d| (label.to_string(), d));
            }
            if line.contains(':') {
                // Legacy OpenSSL encryption headers (`Proc-Type: 4,ENCRYPTED`).
                wipe(&mut b64);
                return Err("encrypted private keys are not supported; protect it with mode 0600".into());
            }
            b64.extend_from_slice(line.as_bytes());
        }
        wipe(&mut b64);
        return Err(format!("`{label}` block has no END line"));
    }
    Err("no PEM private key found".into())
}

fn non_empty(field: &str, value: &str) -> Result<(), AuthError> {
    if value.trim().is_empty() {
        return Err(AuthError::Config(format!("{field} must not be empty")));
    }
    Ok(())
}

/// Credentials go over https only; plain http is allowed to loopback (tests, local proxies).
fn check_url(field: &str, url: &str) -> Result<(), AuthError> {
    let host_ok = |rest: &str| !rest.is_empty() && !rest.starts_with(['/', ':', '?', '#']);
    if let Some(rest) = url.strip_prefix("https://") {
        if host_ok(rest) {
            return Ok(());
        }
    } else if let Some(rest) = url.strip_prefix("http://") {
        let loopback = ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .any(|h| rest.strip_prefix(h).is_some_and(|after| after.is_empty() || after.starts_with([':', '/'])));
        if loopback {
            return Ok(());
        }
    }
    Err(AuthError::Config(format!("{field} must be an https:// URL (plain http only to loopback), got {url:?}")))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
    instance_url: Option<String>,
}

/// POSTs the token request form and reads the token response. Never follows redirects
/// (the assertion goes to the configured endpoint only).
fn post_token(agent: &ureq::Agent, url: &str, form: &[(&str, &str)]) -> Result<TokenResponse, AuthError> {
    let response = agent
        .post(url)
        .config()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .build()
        .header("Accept", "application/json")
        .send_form(form.iter().copied())
        .map_err(|e| AuthError::Transport { url: url.into(), reason: e.to_string() })?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let text = body.with_config().limit(MAX_RESPONSE_BYTES).read_to_string();
    let json: Option<serde_json::Value> = text.ok().and_then(|t| serde_json::from_str(&t).ok());
    if !(200..300).contains(&status) {
        let error = json.as_ref().and_then(|j| j.get("error")).and_then(|e| e.as_str()).map(oauth_error_code);
        return Err(AuthError::Endpoint { url: url.into(), status, error });
    }
    let bad = |reason: &str| AuthError::Response { url: url.into(), reason: reason.into() };
    let json = json.ok_or_else(|| bad("response is not JSON"))?;
    let access_token =
        json.get("access_token").and_then(|t| t.as_str()).ok_or_else(|| bad("response has no access_token"))?;
    if access_token.is_empty() || !access_token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(bad("access_token is empty or holds characters not allowed in a header"));
    }
    if let Some(tt) = json.get("token_type").and_then(|t| t.as_str()) {
        if !tt.eq_ignore_ascii_case("bearer") {
            return Err(bad("token_type is not bearer"));
        }
    }
    let expires_in = match json.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let instance_url = json.get("instance_url").and_then(|u| u.as_str()).map(String::from);
    Ok(TokenResponse { access_token: access_token.to_string(), expires_in, instance_url })
}

/// The OAuth `error` code, if it looks like one (RFC 6749 limits it to printable ASCII);
/// anything else is not echoed.
fn oauth_error_code(e: &str) -> String {
    if !e.is_empty() && e.len() <= 64 && e.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
        e.to_string()
    } else {
        "malformed error code".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    fn write_secret(dir: &Path, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, contents).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn test_key(name: &str) -> Vec<u8> {
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests-data").join(name)).unwrap()
    }

    fn pem(label: &str, der: &[u8]) -> Vec<u8> {
        let b64 = STANDARD.encode(der);
        let body: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", body.join("\n")).into_bytes()
    }

    fn ec_key() -> (Vec<u8>, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        use ring::signature::KeyPair;
        (pem("PRIVATE KEY", pkcs8.as_ref()), kp.public_key().as_ref().to_vec())
    }

    fn rsa_public(pem_name: &str) -> Vec<u8> {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let p = write_secret(dir, "k.pem", &test_key(pem_name), 0o600);
        let Signer::Rsa(kp) = load_signer(&p, KeyKind::Rsa).unwrap() else { panic!() };
        use ring::signature::KeyPair;
        kp.public_key().as_ref().to_vec()
    }

    fn b64json(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    /// Splits and verifies a JWT; returns header and claims.
    fn verify(
        jwt: &str,
        alg: &'static dyn signature::VerificationAlgorithm,
        public: &[u8],
    ) -> (serde_json::Value, serde_json::Value) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let signed = format!("{}.{}", parts[0], parts[1]);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        signature::UnparsedPublicKey::new(alg, public).verify(signed.as_bytes(), &sig).expect("signature verifies");
        (b64json(parts[0]), b64json(parts[1]))
    }

    fn smart_config(token_url: &str, key_file: &Path, alg: SmartAlg) -> AuthConfig {
        AuthConfig::Smart {
            token_url: token_url.into(),
            client_id: "gw-client".into(),
            key_file: key_file.into(),
            alg,
            kid: "key-1".into(),
            scope: "system/*.write".into(),
        }
    }

    /// Request line and body of each request the test server saw.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// A token endpoint: answers each connection with the next canned response (the last
    /// one repeats) and records the request bodies.
    fn token_server(responses: Vec<(u16, String)>) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/token", listener.local_addr().unwrap().port());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for (i, conn) in listener.incoming().enumerate() {
                let mut conn = conn.unwrap();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                seen2.lock().unwrap().push((request_line.trim().to_string(), String::from_utf8(body).unwrap()));
                let (status, text) = &responses[i.min(responses.len() - 1)];
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                conn.write_all(reply.as_bytes()).unwrap();
            }
        });
        (url, seen)
    }

    fn form(body: &str) -> std::collections::HashMap<String, String> {
        body.split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                let dec = |s: &str| {
                    let s = s.replace('+', " ");
                    let b = s.as_bytes();
                    let mut out = Vec::new();
                    let mut i = 0;
                    while i < b.len() {
                        if b[i] == b'%' {
                            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                            i += 3;
                        } else {
                            out.push(b[i]);
                            i += 1;
                        }
                    }
                    String::from_utf8(out).unwrap()
                };
                (dec(k), dec(v))
            })
            .collect()
    }

    #[test]
    fn auth_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Auth>();
    }

    #[test]
    fn urls_must_be_https_or_loopback() {
        assert!(check_url("f", "https://fhir.example.org/token").is_ok());
        assert!(check_url("f", "http://127.0.0.1:8080/token").is_ok());
        assert!(check_url("f", "http://localhost/token").is_ok());
        assert!(check_url("f", "http://localhost.evil.example/token").is_err());
        assert!(check_url("f", "http://fhir.example.org/token").is_err());
        assert!(check_url("f", "https://").is_err());
        assert!(check_url("f", "ftp://x").is_err());
    }

    #[test]
    fn es384_assertion_verifies_and_has_the_smart_claims() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (pem, public) = ec_key();
        let key = write_secret(dir, "ec.pem", &pem, 0o600);
        let auth = Auth::from_config(&smart_config("https://fhir.example.org/auth/token", &key, SmartAlg::ES384), dir)
            .unwrap();
        let now = unix_now();
        let jwt = auth.assertion(now).unwrap();
        let (header, claims) = verify(&jwt, &signature::ECDSA_P384_SHA384_FIXED, &public);
        assert_eq!(header, serde_json::json!({"alg": "ES384", "kid": "key-1", "typ": "JWT"}));
        assert_eq!(URL_SAFE_NO_PAD.decode(jwt.rsplit('.').next().unwrap()).unwrap().len(), 96, "r || s, 48 bytes each");
        assert_eq!(claims["iss"], "gw-client");
        assert_eq!(claims["sub"], "gw-client");
        assert_eq!(claims["aud"], "https://fhir.example.org/auth/token");
        assert_eq!(claims["iat"], now);
        let exp = claims["exp"].as_u64().unwrap();
        assert!(exp > now && exp <= now + 300, "exp within 5 minutes");
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(jti.len(), 32);
        assert!(jti.chars().all(|c| c.is_ascii_hexdigit()));
        let (_, again) = verify(&auth.assertion(now).unwrap(), &signature::ECDSA_P384_SHA384_FIXED, &public);
        assert_ne!(again["jti"], claims["jti"], "jti unique per assertion");
    }

    #[test]
    fn rs384_assertion_from_pkcs8_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let key = write_secret(dir, "rsa.pem", &test_key("rsa2048-pkcs8.pem"), 0o600);
        let auth = Auth::from_config(&smart_config("https://a.example/token", &key, SmartAlg::RS384), dir).unwrap();
        let now = unix_now();
        let (header, claims) = verify(
            &auth.assertion(now).unwrap(),
            &signature::RSA_PKCS1_2048_8192_SHA384,
            &rsa_public("rsa2048-pkcs8.pem"),
        );
        assert_eq!(header["alg"], "RS384");
        assert_eq!(claims["exp"].as_u64().unwrap(), now + 240);
        // The key kind must match alg.
        let e = Auth::from_config(&smart_config("https://a.example/token", &key, SmartAlg::ES384), dir).unwrap_err();
        assert!(e.to_string().contains("EC P-384"), "{e}");
    }

    #[test]
    fn salesforce_assertion_from_pkcs1_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_secret(dir, "rsa.pem", &test_key("rsa2048-pkcs1.pem"), 0o600);
        let config = AuthConfig::Salesforce {
            login_url: "https://login.salesforce.com/".into(),
            consumer_key: "3MVG9ck".into(),
            user: "integration@example.org".into(),
            key_file: "rsa.pem".into(), // relative: resolved against base
            token_lifetime_secs: 1800,
        };
        let auth = Auth::from_config(&config, dir).unwrap();
        let now = unix_now();
        let (header, claims) = verify(
            &auth.assertion(now).unwrap(),
            &signature::RSA_PKCS1_2048_8192_SHA256,
            &rsa_public("rsa2048-pkcs8.pem"),
        );
        assert_eq!(header["alg"], "RS256");
        assert_eq!(claims["iss"], "3MVG9ck");
        assert_eq!(claims["sub"], "integration@example.org");
        assert_eq!(claims["aud"], "https://login.salesforce.com");
        let exp = claims["exp"].as_u64().unwrap();
        assert!(exp > now && exp <= now + 180, "exp within 3 minutes");
        // An EC key is refused for Salesforce.
        let ec = write_secret(dir, "ec.pem", &ec_key().0, 0o600);
        let mut config = config;
        if let AuthConfig::Salesforce { key_file, .. } = &mut config {
            *key_file = ec;
        }
        let e = Auth::from_config(&config, dir).unwrap_err();
        assert!(e.to_string().contains("RSA"), "{e}");
    }

    #[test]
    fn key_and_token_files_must_be_0600_and_never_leak() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let pem = test_key("rsa2048-pkcs8.pem");
        let key = write_secret(dir, "rsa.pem", &pem, 0o640);
        let e = Auth::from_config(&smart_config("https://a.example/t", &key, SmartAlg::RS384), dir).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&key.display().to_string()) && msg.contains("chmod 600"), "{msg}");
        assert!(!msg.contains("MII"), "no key material in errors");

        let token = write_secret(dir, "token", b"s3cr3t-token\n", 0o644);
        let e = Auth::from_config(&AuthConfig::Bearer { token_file: token.clone() }, dir).unwrap_err();
        assert!(e.to_string().contains("token") && e.to_string().contains("mode 644"), "{e}");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let auth = Auth::from_config(&AuthConfig::Bearer { token_file: "token".into() }, dir).unwrap();
        let agent = ureq::Agent::new_with_defaults();
        assert_eq!(auth.authorization(&agent).unwrap().as_deref(), Some("Bearer s3cr3t-token"));
        assert!(!format!("{auth:?}").contains("s3cr3t"));
        // Rotation: invalidate re-reads the file.
        write_secret(dir, "token", b"rotated", 0o600);
        assert_eq!(auth.authorization(&agent).unwrap().as_deref(), Some("Bearer s3cr3t-token"));
        auth.invalidate();
        assert_eq!(auth.authorization(&agent).unwrap().as_deref(), Some("Bearer rotated"));

        let bad = write_secret(dir, "bad", b"two words\n", 0o600);
        let e = Auth::from_config(&AuthConfig::Bearer { token_file: bad }, dir).unwrap_err();
        assert!(!e.to_string().contains("two words"), "{e}");
        let garbage = write_secret(
            dir,
            "garbage.pem",
            b"-----BEGIN PRIVATE KEY-----\nMIIBsecret\n-----END PRIVATE KEY-----\n",
            0o600,
        );
        let e = Auth::from_config(&smart_config("https://a.example/t", &garbage, SmartAlg::RS384), dir).unwrap_err();
        assert!(!e.to_string().contains("MIIBsecret"), "{e}");
        let sec1 = write_secret(
            dir,
            "sec1.pem",
            b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
            0o600,
        );
        let e = Auth::from_config(&smart_config("https://a.example/t", &sec1, SmartAlg::ES384), dir).unwrap_err();
        assert!(e.to_string().contains("pkcs8 -topk8"), "{e}");
        assert_eq!(Auth::from_config(&AuthConfig::None, dir).unwrap().authorization(&agent).unwrap(), None);
    }

    #[test]
    fn smart_token_round_trip_caching_and_invalidate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (pem, public) = ec_key();
        let key = write_secret(dir, "ec.pem", &pem, 0o600);
        let (url, seen) = token_server(vec![
            (200, r#"{"access_token":"tok-1","token_type":"bearer","expires_in":300,"scope":"system/*.write"}"#.into()),
            (200, r#"{"access_token":"tok-2","token_type":"Bearer","expires_in":"300"}"#.into()),
        ]);
        let auth = Auth::from_config(&smart_config(&url, &key, SmartAlg::ES384), dir).unwrap();
        let agent = ureq::Agent::new_with_defaults();
        assert_eq!(auth.refreshes(), 0);
        assert_eq!(auth.authorization(&agent).unwrap().as_deref(), Some("Bearer tok-1"));
        assert_eq!(auth.authorization(&agent).unwrap().as_deref(), Some("Bearer tok-1"));
        assert_eq!(seen.lock().unwrap().len(), 1, "cached: the second call does not hit the server");
        assert_eq!(auth.refreshes(), 1);
        assert_eq!(auth.instance_url(), None);
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen[0].0, "POST /token HTTP/1.1");
            let f = form(&seen[0].1);
            assert_eq!(f["grant_type"], "client_credentials");
            assert_eq!(f["scope"], "system/*.write");
            assert_eq!(f["client_assertion_type"], CLIENT_ASSERTION_TYPE);
            let (_, claims) = verify(&f["client_assertion"], &signature::ECDSA_P384_SHA384_FIXED, &public);
            assert_eq!(claims["aud"], url.as_str());
        }
        auth.invalidate();
        assert_eq!(auth.authorization(&agent).unwrap().as_deref(), Some("Bearer tok-2"));
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert_eq!(auth.refreshes(), 2);
    }

    #[test]
    fn expiring_token_is_fetched_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let key = write_secret(dir, "ec.pem", &ec_key().0, 0o600);
        let (url, seen) = token_server(vec![(200, r#"{"access_token":"short","expires_in":0}"#.into())]);
        let auth = Auth::from_config(&smart_config(&url, &key, SmartAlg::ES384), dir).unwrap();
        let agent = ureq::Agent::new_with_defaults();
        auth.authorization(&agent).unwrap();
        auth.authorization(&agent).unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert_eq!(auth.refreshes(), 2);
    }

    #[test]
    fn salesforce_round_trip_exposes_instance_url() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let key = write_secret(dir, "rsa.pem", &test_key("rsa2048-pkcs8.pem"), 0o600);
        let (url, seen) = token_server(vec![(
            200,
            r#"{"access_token":"00Dxx!AQ","instance_url":"https://acme.my.salesforce.com","id":"x","token_type":"Bearer","issued_at":"1"}"#.into(),
        )]);
        let login_url = url.trim_end_matches("/token").to_string();
        let config = AuthConfig::Salesforce {
            login_url: login_url.clone(),
            consumer_key: "ck".into(),
            user: "u@example.org".into(),
            key_file: key,
            token_lifetime_secs: 1800,
        };
        let auth = Auth::from_config(&config, dir).unwrap();
        let agent = ureq::Agent::new_with_defaults();
        assert_eq!(auth.authorization(&agent).unwrap().as_deref(), Some("Bearer 00Dxx!AQ"));
        assert_eq!(auth.instance_url().as_deref(), Some("https://acme.my.salesforce.com"));
        auth.authorization(&agent).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "no expires_in: the assumed lifetime applies");
        assert_eq!(seen[0].0, "POST /services/oauth2/token HTTP/1.1");
        let f = form(&seen[0].1);
        assert_eq!(f["grant_type"], JWT_BEARER_GRANT);
        let (_, claims) =
            verify(&f["assertion"], &signature::RSA_PKCS1_2048_8192_SHA256, &rsa_public("rsa2048-pkcs8.pem"));
        assert_eq!(claims["aud"], login_url.as_str());
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn endpoint_errors_carry_status_and_code_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let key = write_secret(dir, "ec.pem", &ec_key().0, 0o600);
        let (url, _seen) = token_server(vec![
            (400, r#"{"error":"invalid_client","error_description":"patient Jane Doe secret detail"}"#.into()),
            (503, "<html>down</html>".into()),
            (200, r#"{"token_type":"bearer"}"#.into()),
        ]);
        let auth = Auth::from_config(&smart_config(&url, &key, SmartAlg::ES384), dir).unwrap();
        let agent = ureq::Agent::new_with_defaults();
        let e = auth.authorization(&agent).unwrap_err();
        assert!(
            matches!(&e, AuthError::Endpoint { status: 400, error: Some(c), .. } if c == "invalid_client"),
            "{e:?}"
        );
        assert!(!e.to_string().contains("Jane") && e.to_string().contains("HTTP 400 (invalid_client)"), "{e}");
        assert!(!e.is_transient());
        let e = auth.authorization(&agent).unwrap_err();
        assert!(matches!(e, AuthError::Endpoint { status: 503, error: None, .. }) && e.is_transient(), "{e:?}");
        let e = auth.authorization(&agent).unwrap_err();
        assert!(matches!(e, AuthError::Response { .. }), "{e:?}");
        assert_eq!(auth.refreshes(), 0);
    }
}
