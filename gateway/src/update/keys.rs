//! Ed25519 signing keys: `gateway update keygen` writes `NAME.key` (PKCS#8, base64, mode
//! 0600, never overwritten) and `NAME.pub` (its id and public key, JSON, for a keyring).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};

/// A public key as a keyring lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKey {
    /// [`key_id`] of `public`.
    pub id: String,
    /// The 32-byte Ed25519 public key, base64.
    pub public: String,
}

impl PublicKey {
    pub(crate) fn bytes(&self) -> Option<Vec<u8>> {
        super::b64().decode(&self.public).ok().filter(|b| b.len() == 32)
    }
}

/// A signature and the id of the key that made it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub key_id: String,
    /// base64.
    pub signature: String,
}

/// A key's id: the first 8 bytes of the SHA-256 of its public key, hex. Short enough to read
/// out, long enough that two keys of one keyring never share it.
pub fn key_id(public: &[u8]) -> String {
    super::hex(&ring::digest::digest(&ring::digest::SHA256, public).as_ref()[..8])
}

/// A private key, loaded from its file.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    pub fn load(path: &Path) -> anyhow::Result<SigningKey> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
        let der = super::b64().decode(text.trim()).with_context(|| format!("{}: not base64", path.display()))?;
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| anyhow::anyhow!("{}: not an Ed25519 PKCS#8 key: {e}", path.display()))?;
        Ok(SigningKey { pair })
    }

    pub(crate) fn generate() -> anyhow::Result<(SigningKey, Vec<u8>)> {
        let rng = ring::rand::SystemRandom::new();
        let der = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow::anyhow!("key generation failed"))?;
        let pair = Ed25519KeyPair::from_pkcs8(der.as_ref()).map_err(|e| anyhow::anyhow!("new key: {e}"))?;
        Ok((SigningKey { pair }, der.as_ref().to_vec()))
    }

    pub fn public(&self) -> PublicKey {
        let bytes = self.pair.public_key().as_ref();
        PublicKey { id: key_id(bytes), public: super::b64().encode(bytes) }
    }

    /// Signs `message` under `domain` (so a manifest signature can never pass as a keyring's).
    pub(crate) fn sign(&self, domain: &[u8], message: &[u8]) -> Signature {
        let sig = self.pair.sign(&[domain, message].concat());
        Signature { key_id: self.public().id, signature: super::b64().encode(sig.as_ref()) }
    }
}

/// Checks `sig` over `message` under `domain` with `key`.
pub(crate) fn verify(key: &PublicKey, domain: &[u8], message: &[u8], sig: &Signature) -> bool {
    let (Some(public), Ok(sig)) = (key.bytes(), super::b64().decode(&sig.signature)) else {
        return false;
    };
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
        .verify(&[domain, message].concat(), &sig)
        .is_ok()
}

/// `gateway update keygen --out NAME`: writes `NAME.key` (0600, refused if it exists) and
/// `NAME.pub`; returns both paths and the key's id.
pub fn keygen(out: &Path) -> anyhow::Result<(PathBuf, PathBuf, String)> {
    let (key, der) = SigningKey::generate()?;
    let private = with_suffix(out, "key");
    let public = with_suffix(out, "pub");
    crate::files::create_private(&private, format!("{}\n", super::b64().encode(&der)).as_bytes())
        .with_context(|| format!("creating {}", private.display()))?;
    let pub_key = key.public();
    std::fs::write(&public, serde_json::to_string_pretty(&pub_key)? + "\n")
        .with_context(|| format!("writing {}", public.display()))?;
    Ok((private, public, pub_key.id))
}

pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// Reads a `NAME.pub` file.
pub fn load_public(path: &Path) -> anyhow::Result<PublicKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let key: PublicKey =
        serde_json::from_str(&text).with_context(|| format!("{}: not a public key file", path.display()))?;
    let bytes = key.bytes().ok_or_else(|| anyhow::anyhow!("{}: not a 32-byte Ed25519 key", path.display()))?;
    anyhow::ensure!(key_id(&bytes) == key.id, "{}: id does not match the key", path.display());
    Ok(key)
}
