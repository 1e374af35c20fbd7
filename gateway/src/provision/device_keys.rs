//! The box's own keys, generated on the box at its first provisioning and never written
//! anywhere else: an Ed25519 identity (signs receipts), the WireGuard key (X25519), and the TLS
//! client key for the cloud with its CSR. Private key files are mode 0600, owned by the user
//! that needs them (the gateway, systemd-networkd) when run as root; only the public halves go
//! on the stick.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::trust::SigningKey;

/// The public material of the device keys (what the receipt carries).
#[derive(Debug, Clone)]
pub struct DeviceKeys {
    pub identity: SigningKeyPublic,
    pub wireguard_public: String,
    pub tls_csr_pem: String,
    /// The WireGuard private key file networkd reads.
    pub wireguard_key_file: PathBuf,
}

/// The identity key's public half.
#[derive(Debug, Clone)]
pub struct SigningKeyPublic {
    pub base64: String,
}

pub(crate) const IDENTITY: &str = "device-identity.key";
pub(crate) const WIREGUARD: &str = "wireguard.key";
pub(crate) const TLS_KEY: &str = "tls-client.key";
pub(crate) const TLS_CSR: &str = "tls-client.csr";

/// Creates the keys that do not exist yet in `dir` (0700), returns the public material and
/// the identity key (to sign the receipt). `serial` names the CSR's subject.
pub(crate) fn ensure(dir: &Path, serial: &str) -> anyhow::Result<(DeviceKeys, SigningKey)> {
    create_private_dir(dir)?;
    let identity_path = dir.join(IDENTITY);
    let identity = match std::fs::read_to_string(&identity_path) {
        Ok(text) => SigningKey::from_file_text(&text).with_context(|| identity_path.display().to_string())?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate()?;
            write_private(&identity_path, key.to_file_text().as_bytes(), None)?;
            key
        }
        Err(e) => return Err(e).context(identity_path.display().to_string()),
    };

    let wg_path = dir.join(WIREGUARD);
    let wg_secret = match std::fs::read_to_string(&wg_path) {
        Ok(text) => {
            let bytes: [u8; 32] = B64
                .decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .with_context(|| format!("{}: not a WireGuard key", wg_path.display()))?;
            x25519_dalek::StaticSecret::from(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                .map_err(|_| anyhow::anyhow!("no randomness for the WireGuard key"))?;
            let secret = x25519_dalek::StaticSecret::from(bytes);
            let text = format!("{}\n", B64.encode(secret.to_bytes()));
            write_private(&wg_path, text.as_bytes(), Some("systemd-network"))?;
            secret
        }
        Err(e) => return Err(e).context(wg_path.display().to_string()),
    };
    let wireguard_public = B64.encode(x25519_dalek::PublicKey::from(&wg_secret).as_bytes());

    let (key_path, csr_path) = (dir.join(TLS_KEY), dir.join(TLS_CSR));
    let tls_csr_pem = match std::fs::read_to_string(&csr_path) {
        Ok(csr) if key_path.exists() => csr,
        _ => {
            let key = rcgen::KeyPair::generate().context("cannot generate the TLS client key")?;
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name.push(rcgen::DnType::CommonName, format!("gateway {serial}"));
            let csr = params.serialize_request(&key).context("cannot make the TLS client CSR")?.pem()?;
            write_private(&key_path, key.serialize_pem().as_bytes(), Some("gateway"))?;
            crate::files::write_atomic(&csr_path, csr.as_bytes(), 0o644)
                .with_context(|| format!("writing {}", csr_path.display()))?;
            csr
        }
    };
    let keys = DeviceKeys {
        identity: SigningKeyPublic { base64: identity.public().base64() },
        wireguard_public,
        tls_csr_pem,
        wireguard_key_file: wg_path,
    };
    Ok((keys, identity))
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // 0711: the owners of the key files (gateway, systemd-network) reach their own file only.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    Ok(())
}

/// Writes a new private key file, 0600 from its creation, handed to `owner` when root.
fn write_private(path: &Path, data: &[u8], owner: Option<&str>) -> anyhow::Result<()> {
    let f = crate::files::create_private(path, data).with_context(|| format!("creating {}", path.display()))?;
    if let Some(ids) = owner.and_then(super::apply::user_ids) {
        if rustix::process::geteuid().is_root() {
            rustix::fs::fchown(&f, Some(ids.0), Some(ids.1)).with_context(|| format!("chown {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn keys_are_made_once_private_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let (first, _) = ensure(&dir, "SN1").unwrap();
        for name in [IDENTITY, WIREGUARD, TLS_KEY] {
            assert_eq!(std::fs::metadata(dir.join(name)).unwrap().mode() & 0o777, 0o600, "{name}");
        }
        assert!(first.tls_csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert_eq!(B64.decode(&first.wireguard_public).unwrap().len(), 32);
        let (again, _) = ensure(&dir, "SN1").unwrap();
        assert_eq!(again.wireguard_public, first.wireguard_public);
        assert_eq!(again.identity.base64, first.identity.base64);
        assert_eq!(again.tls_csr_pem, first.tls_csr_pem);
    }
}
