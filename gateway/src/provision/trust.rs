//! Who may provision a box: Ed25519 provisioning keys, a threshold of them over the stick's
//! `provision.toml`. The signatures are checked over the raw bytes before anything parses
//! them. The same lines sign the device's receipts.
//!
//! A signature file holds one line per signer: `ed25519 <key id> <base64 signature>`, where
//! the key id is the first 8 bytes of SHA-256 of the public key, in hex. Blank lines and `#`
//! comments are skipped. A public key file holds the base64 of the raw 32-byte key.

use std::collections::BTreeSet;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};

/// Signed bytes are prefixed with this, so a provisioning signature is never valid for
/// anything else the same key may sign (and a receipt's never for a configuration).
const MANIFEST_DOMAIN: &[u8] = b"gateway provision.toml v1\n";
const RECEIPT_DOMAIN: &[u8] = b"gateway provisioning receipt v1\n";

/// What is signed.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    Manifest,
    Receipt,
}

impl Purpose {
    fn domain(self) -> &'static [u8] {
        match self {
            Purpose::Manifest => MANIFEST_DOMAIN,
            Purpose::Receipt => RECEIPT_DOMAIN,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("no signature")]
    Unsigned,
    #[error("{valid} valid signature(s) from provisioning keys, {needed} needed")]
    TooFew { valid: usize, needed: usize },
    #[error("signature file line {0} is not `ed25519 <key id> <base64>`")]
    Malformed(usize),
}

/// A trusted public key.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub(crate) id: String,
    pub(crate) bytes: Vec<u8>,
}

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<PublicKey> {
        anyhow::ensure!(bytes.len() == 32, "an Ed25519 public key has 32 bytes, not {}", bytes.len());
        Ok(PublicKey { id: key_id(bytes), bytes: bytes.to_vec() })
    }

    pub fn base64(&self) -> String {
        B64.encode(&self.bytes)
    }
}

/// The key id: first 8 bytes of SHA-256 of the public key, hex.
pub(crate) fn key_id(public: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, public);
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The provisioning keys shipped in the image: every `*.pub` file of `dir`.
pub fn load_keys(dir: &Path) -> anyhow::Result<Vec<PublicKey>> {
    let mut keys = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("provisioning keys {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pub") {
            let text = std::fs::read_to_string(&path)?;
            let bytes = B64.decode(text.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            keys.push(PublicKey::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?);
        }
    }
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    keys.dedup_by(|a, b| a.id == b.id);
    Ok(keys)
}

/// Checks `signatures` over `data`: at least `threshold` distinct trusted keys must have
/// signed it. Returns the ids of the keys that did. Lines of unknown keys do not count.
pub fn verify(
    purpose: Purpose,
    data: &[u8],
    signatures: &[u8],
    keys: &[PublicKey],
    threshold: usize,
) -> Result<Vec<String>, TrustError> {
    let text = String::from_utf8_lossy(signatures);
    let message = [purpose.domain(), data].concat();
    let mut valid = BTreeSet::new();
    let mut lines = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        lines += 1;
        let mut parts = line.split_whitespace();
        let (Some("ed25519"), Some(id), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TrustError::Malformed(n + 1));
        };
        let Ok(sig) = B64.decode(sig) else { return Err(TrustError::Malformed(n + 1)) };
        if let Some(key) = keys.iter().find(|k| k.id == id) {
            let public = signature::UnparsedPublicKey::new(&signature::ED25519, &key.bytes);
            if public.verify(&message, &sig).is_ok() {
                valid.insert(key.id.clone());
            }
        }
    }
    if lines == 0 {
        return Err(TrustError::Unsigned);
    }
    // A threshold of 0 would trust anything: at least one signature always.
    let needed = threshold.max(1);
    if valid.len() < needed {
        return Err(TrustError::TooFew { valid: valid.len(), needed });
    }
    Ok(valid.into_iter().collect())
}

/// An Ed25519 signing key (PKCS#8).
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl SigningKey {
    pub fn generate() -> anyhow::Result<SigningKey> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
        SigningKey::from_pkcs8(pkcs8.as_ref())
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> anyhow::Result<SigningKey> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 key: {e}"))?;
        Ok(SigningKey { pair, pkcs8: pkcs8.to_vec() })
    }

    /// The key file's text: base64 of the PKCS#8 document.
    pub fn to_file_text(&self) -> String {
        format!("{}\n", B64.encode(&self.pkcs8))
    }

    pub fn from_file_text(text: &str) -> anyhow::Result<SigningKey> {
        let pkcs8 = B64.decode(text.trim()).map_err(|e| anyhow::anyhow!("key file is not base64: {e}"))?;
        SigningKey::from_pkcs8(&pkcs8)
    }

    pub fn public(&self) -> PublicKey {
        PublicKey { id: key_id(self.pair.public_key().as_ref()), bytes: self.pair.public_key().as_ref().to_vec() }
    }

    /// One signature line over `data`.
    pub fn sign_line(&self, purpose: Purpose, data: &[u8]) -> String {
        let sig = self.pair.sign(&[purpose.domain(), data].concat());
        format!("ed25519 {} {}\n", self.public().id, B64.encode(sig.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_of_distinct_trusted_keys() {
        let (a, b, stranger) =
            (SigningKey::generate().unwrap(), SigningKey::generate().unwrap(), SigningKey::generate().unwrap());
        let keys = [a.public(), b.public()];
        let data = b"[provision]\nconfig_version = 1\n";
        let two = format!("{}{}", a.sign_line(Purpose::Manifest, data), b.sign_line(Purpose::Manifest, data));
        assert_eq!(verify(Purpose::Manifest, data, two.as_bytes(), &keys, 2).unwrap().len(), 2);
        // The same key twice is one signer.
        let twice = a.sign_line(Purpose::Manifest, data).repeat(2);
        assert!(matches!(
            verify(Purpose::Manifest, data, twice.as_bytes(), &keys, 2),
            Err(TrustError::TooFew { valid: 1, needed: 2 })
        ));
        // A key the box does not trust does not count.
        let with_stranger =
            format!("{}{}", a.sign_line(Purpose::Manifest, data), stranger.sign_line(Purpose::Manifest, data));
        assert!(verify(Purpose::Manifest, data, with_stranger.as_bytes(), &keys, 2).is_err());
        // One byte changed: no valid signature.
        assert!(verify(Purpose::Manifest, b"[provision]\nconfig_version = 2\n", two.as_bytes(), &keys, 1).is_err());
        // A receipt signature is not a manifest signature.
        let receipt = a.sign_line(Purpose::Receipt, data);
        assert!(verify(Purpose::Manifest, data, receipt.as_bytes(), &keys, 1).is_err());
        assert!(matches!(verify(Purpose::Manifest, data, b"# nothing\n", &keys, 1), Err(TrustError::Unsigned)));
        assert!(matches!(verify(Purpose::Manifest, data, b"rsa x y\n", &keys, 1), Err(TrustError::Malformed(1))));
        // A key file round-trips.
        let again = SigningKey::from_file_text(&a.to_file_text()).unwrap();
        assert_eq!(again.public().bytes, a.public().bytes);
    }
}
