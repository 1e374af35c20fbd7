//! Field provisioning by USB stick: `gateway provision <mountpoint>`, run by
//! `gateway-provision@.service` when a stick labelled `GW-PROV` is plugged in.
//!
//! In order, refusing at the first failure:
//! 1. read `provision.sig` and `provision.toml` from the stick ([`stick`]: regular files
//!    only, bounded);
//! 2. check the signatures over the raw bytes before anything parses them: a threshold of the
//!    provisioning keys shipped in the image ([`trust`]);
//! 3. check the whole file with the same checker as `gateway check-config`, then its
//!    `[provision]` section: for this serial or board (or signed as site-wide), within its
//!    validity window, and a `config_version` above the last one applied;
//! 4. make the device keys on the first provisioning ([`device_keys`]), install the TLS
//!    client certificate the stick may carry for the device key ([`client_cert`]), install the
//!    file as the live configuration atomically ([`apply`]), render the tunnel and firewall
//!    sets ([`network`]) and restart the gateway;
//! 5. write a receipt signed by the device (public material only) back to the stick, an
//!    audit event in the journal's audit trail, and a log line — for a refusal as well.
//!
//! The whole file is read into memory before anything is applied, so a stick pulled midway
//! is a read error and the old configuration stays.

pub mod apply;
pub mod client_cert;
pub mod device_keys;
pub mod network;
pub mod stick;
pub mod trust;
pub mod tunnel;

use std::path::{Path, PathBuf};

use crate::config::Config;
use stick::{Stick, StickError};
use trust::{PublicKey, Purpose, TrustError};

/// The configuration shipped in the image (read-only root).
pub const SHIPPED_CONFIG: &str = "/etc/gateway/gateway.toml";
/// Where provisioning keeps its state: the live configuration, its version, the device keys.
pub const STATE_DIR: &str = "/var/lib/gateway-provision";

/// The configuration the gateway runs with: the provisioned one once a stick was applied,
/// else the shipped one. Only the shipped path (the default `--config`, or named as in
/// gateway.service) is redirected; any other path is kept.
pub fn resolve_config(path: &Path) -> PathBuf {
    let live = Path::new(STATE_DIR).join(apply::LIVE);
    if path == Path::new(SHIPPED_CONFIG) && live.is_file() {
        live
    } else {
        path.to_path_buf()
    }
}

/// Why a stick was refused; `code` is what the audit trail and the receipt record.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("stick unreadable: {0}")]
    Stick(#[from] StickError),
    #[error("signature: {0}")]
    Trust(#[from] TrustError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("the configuration has no [provision] section")]
    NotProvisioning,
    #[error("not for this box (serial {serial}, board {board})")]
    NotForThisBox { serial: String, board: String },
    #[error("not valid before {0}")]
    NotYetValid(String),
    #[error("expired at {0}")]
    Expired(String),
    #[error("config_version {version} is older than the applied {last}")]
    Older { version: u64, last: u64 },
    #[error("config_version {version} was already applied (the same stick again)")]
    Replayed { version: u64 },
    #[error("provisioning state: {0}")]
    State(String),
    #[error("client certificate: {0}")]
    ClientCertificate(#[from] client_cert::CertError),
    #[error("apply failed: {0}")]
    Apply(String),
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Stick(_) => "provision-refused-unreadable",
            Refusal::Trust(_) => "provision-refused-signature",
            Refusal::Invalid(_) => "provision-refused-invalid",
            Refusal::NotProvisioning => "provision-refused-no-provision-section",
            Refusal::NotForThisBox { .. } => "provision-refused-scope",
            Refusal::NotYetValid(_) => "provision-refused-not-yet-valid",
            Refusal::Expired(_) => "provision-refused-expired",
            Refusal::Older { .. } => "provision-refused-older",
            Refusal::Replayed { .. } => "provision-refused-replayed",
            Refusal::State(_) => "provision-refused-state",
            Refusal::ClientCertificate(_) => "provision-refused-client-certificate",
            Refusal::Apply(_) => "provision-failed",
        }
    }
}

/// Who this box is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub serial: String,
    pub board: String,
}

/// The box's serial: the first non-empty of `/sys/class/dmi/id/product_serial` (PCs),
/// `/proc/device-tree/serial-number` (boards), `/etc/machine-id`.
pub fn serial() -> String {
    ["/sys/class/dmi/id/product_serial", "/proc/device-tree/serial-number", "/etc/machine-id"]
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|b| String::from_utf8_lossy(&b).trim_matches(|c: char| c.is_whitespace() || c == '\0').to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A stick whose signatures and configuration passed.
pub struct Checked {
    pub text: Vec<u8>,
    pub config: Config,
    /// SHA-256 of `provision.toml`, hex.
    pub hash: String,
}

impl Checked {
    pub fn version(&self) -> u64 {
        self.config.provision.as_ref().map_or(0, |p| p.config_version)
    }
}

/// Steps 1–3 but the version: what `gateway provision verify` runs too. `config_path` is
/// where the file will live (relative paths in it resolve against its folder).
pub fn check(
    stick: &mut dyn Stick,
    keys: &[PublicKey],
    threshold: usize,
    config_path: &Path,
) -> Result<Checked, Refusal> {
    let signatures = stick.read(stick::SIGNATURES, stick::MAX_SIGNATURES_BYTES).map_err(|e| match e {
        StickError::Missing { .. } => Refusal::Trust(TrustError::Unsigned),
        e => Refusal::Stick(e),
    })?;
    let text = stick.read(stick::MANIFEST, stick::MAX_MANIFEST_BYTES)?;
    trust::verify(Purpose::Manifest, &text, &signatures, keys, threshold)?;
    // Only now is the content looked at.
    let utf8 = std::str::from_utf8(&text).map_err(|_| Refusal::Invalid("provision.toml is not UTF-8".into()))?;
    let config = Config::parse(utf8, config_path).map_err(|e| Refusal::Invalid(e.to_string()))?;
    if config.provision.is_none() {
        return Err(Refusal::NotProvisioning);
    }
    Ok(Checked { hash: sha256_hex(&text), text, config })
}

/// Scope and validity window at `now`.
pub fn check_scope(checked: &Checked, who: &Identity, now: jiff::Timestamp) -> Result<(), Refusal> {
    let p = checked.config.provision.as_ref().ok_or(Refusal::NotProvisioning)?;
    let for_us = p.site_wide || p.serials.contains(&who.serial) || p.boards.contains(&who.board);
    if !for_us {
        return Err(Refusal::NotForThisBox { serial: who.serial.clone(), board: who.board.clone() });
    }
    let (from, until) = p.window.ok_or(Refusal::NotProvisioning)?;
    if now < from {
        return Err(Refusal::NotYetValid(from.to_string()));
    }
    if now >= until {
        return Err(Refusal::Expired(until.to_string()));
    }
    Ok(())
}

fn check_version(checked: &Checked, state: &Path) -> Result<(), Refusal> {
    let last = apply::last_version(state).map_err(|e| Refusal::State(format!("{e:#}")))?;
    let version = checked.version();
    match last {
        Some((last, hash)) if version == last && hash == checked.hash => Err(Refusal::Replayed { version }),
        Some((last, _)) if version <= last => Err(Refusal::Older { version, last }),
        _ => Ok(()),
    }
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// What `gateway provision <stick>` needs besides the stick.
#[derive(Debug, Clone)]
pub struct Options {
    pub keys: Vec<PublicKey>,
    pub threshold: usize,
    /// Live configuration, its version and the device keys.
    pub state_dir: PathBuf,
    /// The configuration running now (whose journal gets the audit event).
    pub current_config: PathBuf,
    pub identity: Identity,
    /// Where the networkd files go (`/run/systemd/network`).
    pub networkd_dir: PathBuf,
    /// Reload networkd, load the nft sets and restart the gateway; off in tests.
    pub activate: bool,
    /// `[board] provision_marker` of the current configuration (the LED).
    pub marker: Option<PathBuf>,
    pub now: jiff::Timestamp,
}

/// The result: applied (with the version) or refused.
pub type Outcome = Result<u64, Refusal>;

/// Runs one provisioning from `stick` and reports it everywhere (receipt, audit, log, LED).
pub fn provision(stick: &mut dyn Stick, opts: &Options) -> Outcome {
    set_marker(opts, "provisioning");
    let keys = device_keys::ensure(&opts.state_dir.join("keys"), &opts.identity.serial);
    let outcome: Result<(u64, String), Refusal> = match &keys {
        Err(e) => Err(Refusal::State(format!("device keys: {e:#}"))),
        Ok((k, _)) => check(stick, &opts.keys, opts.threshold, &opts.state_dir.join(apply::LIVE))
            .and_then(|c| apply_checked(&c, k, opts).map(|()| (c.version(), c.hash))),
    };
    report(stick, opts, keys.as_ref().ok(), outcome.as_ref().map(|(v, h)| (*v, h.as_str())));
    let outcome = outcome.map(|(v, _)| v);
    set_marker(opts, if outcome.is_ok() { "applied" } else { "refused" });
    if outcome.is_ok() && opts.activate {
        // The gateway reads its configuration at start: a restart applies the new one.
        if let Err(e) = network::run("systemctl", &["restart", "gateway.service"]) {
            tracing::error!(error = %format!("{e:#}"), "provision: cannot restart the gateway");
        }
    }
    outcome
}

fn apply_checked(c: &Checked, keys: &device_keys::DeviceKeys, opts: &Options) -> Result<(), Refusal> {
    check_scope(c, &opts.identity, opts.now)?;
    check_version(c, &opts.state_dir)?;
    let keys_dir = opts.state_dir.join("keys");
    let certificate = c.config.provision.as_ref().and_then(|p| p.client_certificate.as_ref());
    if let Some(pem) = certificate {
        let cloud = &c.config.cloud;
        let (cert, key) = (cloud.client_cert.as_ref(), cloud.client_key.as_ref());
        client_cert::check_paths(cert.map(|p| p.get_ref().as_path()), key.map(|p| p.get_ref().as_path()), &keys_dir)?;
        client_cert::check(pem.get_ref(), &keys_dir)?;
        // Before the configuration that names it; a certificate for the same key is harmless
        // to the configuration before it.
        client_cert::install(pem.get_ref(), &keys_dir)
            .map_err(|e| Refusal::Apply(format!("the previous configuration stays: {e:#}")))?;
    }
    apply::install(&opts.state_dir, &c.text, c.version(), &c.hash)
        .map_err(|e| Refusal::Apply(format!("the previous configuration stays: {e:#}")))?;
    network::install(&c.config, &opts.networkd_dir, &opts.state_dir, &keys.wireguard_key_file, opts.activate)
        .map_err(|e| Refusal::Apply(format!("the configuration is installed, its network is not: {e:#}")))
}

fn set_marker(opts: &Options, state: &str) {
    if let Some(m) = &opts.marker {
        if let Err(e) = apply::write_atomic(m, format!("{state}\n").as_bytes(), 0o644) {
            tracing::warn!(error = %format!("{e:#}"), "provision: cannot write the LED marker");
        }
    }
}

/// Receipt file names on the stick, per box (a site-wide stick collects several).
pub fn receipt_names(serial: &str) -> (String, String) {
    let safe: String =
        serial.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(40).collect();
    (format!("receipt-{safe}.toml"), format!("receipt-{safe}.sig"))
}

/// The receipt: only public material.
pub(crate) fn receipt_text(
    opts: &Options,
    keys: Option<&device_keys::DeviceKeys>,
    outcome: Result<(u64, &str), &Refusal>,
) -> String {
    let mut t = toml::Table::new();
    let mut put = |k: &str, v: toml::Value| {
        t.insert(k.into(), v);
    };
    put("serial", opts.identity.serial.clone().into());
    put("board", opts.identity.board.clone().into());
    put("time", opts.now.to_string().into());
    match outcome {
        Ok((version, hash)) => {
            put("result", "applied".into());
            put("config_version", (version as i64).into());
            put("config_sha256", hash.into());
        }
        Err(e) => {
            put("result", "refused".into());
            put("code", e.code().into());
            put("reason", e.to_string().into());
        }
    }
    if let Some(k) = keys {
        put("device_public_key", k.identity.base64.clone().into());
        put("wireguard_public_key", k.wireguard_public.clone().into());
        put("tls_client_csr", k.tls_csr_pem.clone().into());
    }
    toml::to_string(&t).unwrap_or_default()
}

fn report(
    stick: &mut dyn Stick,
    opts: &Options,
    keys: Option<&(device_keys::DeviceKeys, trust::SigningKey)>,
    outcome: Result<(u64, &str), &Refusal>,
) {
    let (code, version) = match &outcome {
        Ok((v, _)) => ("provision-applied", *v),
        Err(e) => (e.code(), 0),
    };
    match &outcome {
        Ok((v, _)) => tracing::info!(config_version = v, "provision: applied config_version {v}"),
        Err(e) => tracing::warn!(code, "provision: refused: {e}"),
    }
    audit(opts, code, version);
    let text = receipt_text(opts, keys.map(|k| &k.0), outcome);
    let (name, sig_name) = receipt_names(&opts.identity.serial);
    let written = stick.write(&name, text.as_bytes()).and_then(|()| match keys {
        Some((_, identity)) => stick.write(&sig_name, identity.sign_line(Purpose::Receipt, text.as_bytes()).as_bytes()),
        None => Ok(()),
    });
    if let Err(e) = written {
        tracing::warn!(error = %e, "provision: cannot write the receipt to the stick");
    }
}

/// Reports a stick that could not even be opened (not FAT, wrong label): log, audit, LED; no
/// receipt, there is nowhere to write it.
pub fn report_unopened(opts: &Options, refusal: &Refusal) {
    tracing::warn!(code = refusal.code(), "provision: refused: {refusal}");
    audit(opts, refusal.code(), 0);
    set_marker(opts, "refused");
}

/// The audit event in the journal's trail (the running configuration's store).
fn audit(opts: &Options, code: &'static str, version: u64) {
    let recorded = (|| -> anyhow::Result<()> {
        let config = Config::load(&opts.current_config)?;
        let path = config.store.path.get_ref();
        let mut conn = crate::store::db::open(path, None, crate::store::db::Synchronous::Full)?;
        crate::store::db::migrate(&mut conn, path)?;
        crate::store::audit::record(
            &conn,
            "usb-provisioning",
            crate::store::audit::Action::Provision(code),
            0,
            version as i64,
        )?;
        Ok(())
    })();
    if let Err(e) = recorded {
        tracing::error!(error = %format!("{e:#}"), "provision: cannot write the audit event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_default_config_path_is_redirected() {
        assert_eq!(resolve_config(Path::new("/tmp/other.toml")), Path::new("/tmp/other.toml"));
    }

    #[test]
    fn receipt_names_are_safe_file_names() {
        assert_eq!(receipt_names("SN 1/../x").0, "receipt-SN_1____x.toml");
    }
}
