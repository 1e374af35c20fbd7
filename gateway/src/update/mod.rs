//! Signed A/B updates (docs/UPDATES.md).
//!
//! - `keys`: Ed25519 key pairs (`gateway update keygen`) and signing.
//! - `keyring`: the trust root (public keys, threshold, revocations) and its rotation.
//! - `bundle`: the bundle container (header, signed manifest, payload) and how it is made.
//! - `verify`: every check a manifest passes before anything is written.
//! - `slots`: the booted and the inactive slot, and the boot entries on the ESP.
//! - `state`: the version floor, the last applied version, the rollback record (on `/var`).
//! - `apply`: verify, write the inactive slot while hashing, read back, then the boot entry.
//! - `boot`: at boot, rollback detection; after a blessed boot, the floor rises.
//! - `fetch`: a bundle over HTTP(S), resumed with `Range` after a broken link.

pub(crate) mod apply;
pub(crate) mod boot;
pub(crate) mod bundle;
pub(crate) mod fetch;
pub(crate) mod keyring;
pub(crate) mod keys;
pub(crate) mod slots;
pub(crate) mod state;
pub(crate) mod verify;

#[cfg(test)]
mod tests;

use std::fmt;

/// An image version `major.minor.build` (any number of dot-separated numbers), compared
/// number by number: `1.0.180` < `1.0.1000`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(Vec<u64>);

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Result<Vec<u64>, _> = s.trim().split('.').map(str::parse).collect();
        match parts {
            Ok(p) if !p.is_empty() => Ok(Version(p)),
            _ => Err(format!("{s:?} is not a version (numbers separated by dots)")),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&text.join("."))
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why an update (or a keyring) is refused. Each is checked before the slot is written,
/// except the payload's hash, which is known only once it has been streamed.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("not an update bundle (bad magic)")]
    NotABundle,
    #[error("bundle truncated or with trailing bytes: {0}")]
    Truncated(String),
    #[error("manifest unreadable: {0}")]
    BadManifest(String),
    #[error(
        "{valid} valid signature(s), {required} required ({revoked} by revoked keys, {unknown} by unknown keys, {bad} invalid)"
    )]
    Signatures { valid: usize, required: usize, revoked: usize, unknown: usize, bad: usize },
    #[error("bundle is for board {bundle:?}, this is {ours:?}")]
    WrongBoard { bundle: String, ours: String },
    #[error("manifest expired at {0}")]
    Expired(String),
    #[error("version {bundle} is below the floor {floor}: downgrade refused")]
    Downgrade { bundle: Version, floor: Version },
    #[error("version {bundle} needs at least {min} running, this runs {running}")]
    TooOld { bundle: Version, min: Version, running: Version },
    #[error("signed under keyring version {bundle}, this box trusts version {ours}: install the newer keyring first")]
    KeyringTooNew { bundle: u64, ours: u64 },
    #[error("payload SHA-256 mismatch ({0})")]
    PayloadHash(&'static str),
    #[error("payload of {size} bytes does not fit the {capacity}-byte slot")]
    TooBig { size: u64, capacity: u64 },
    #[error("keyring refused: {0}")]
    Keyring(String),
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}
