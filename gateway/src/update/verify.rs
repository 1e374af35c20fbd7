//! Every check a bundle's head passes before anything is written: signatures by a
//! threshold of the keyring in force, then board, expiry, floor and minimum version.

use super::bundle::{self, Head};
use super::keyring::Keyring;
use super::{Refused, Version};

/// What the box knows about itself when it checks a bundle.
#[derive(Debug, Clone)]
pub struct BoxFacts {
    pub board: String,
    /// The persisted version floor (none yet: nothing confirmed).
    pub floor: Option<Version>,
    /// The running image version (none: unknown, so `min_version` cannot be checked).
    pub running: Option<Version>,
    pub now: jiff::Timestamp,
}

/// Checks `head` against `keyring` and `facts`; the signatures first, so that nothing an
/// unsigned manifest says is looked at.
pub fn check(head: &Head, keyring: &Keyring, facts: &BoxFacts) -> Result<(), Refused> {
    keyring.check(bundle::DOMAIN, head.raw.as_bytes(), &head.signatures)?;
    let m = &head.manifest;
    if m.keyring_version > keyring.body.version {
        return Err(Refused::KeyringTooNew { bundle: m.keyring_version, ours: keyring.body.version });
    }
    if m.board != facts.board {
        return Err(Refused::WrongBoard { bundle: m.board.clone(), ours: facts.board.clone() });
    }
    let expires: jiff::Timestamp =
        m.expires.parse().map_err(|e| Refused::BadManifest(format!("expires {:?}: {e}", m.expires)))?;
    if expires <= facts.now {
        return Err(Refused::Expired(m.expires.clone()));
    }
    if let Some(floor) = &facts.floor {
        if m.version < *floor {
            return Err(Refused::Downgrade { bundle: m.version.clone(), floor: floor.clone() });
        }
    }
    if let Some(running) = &facts.running {
        if *running < m.min_version {
            return Err(Refused::TooOld {
                bundle: m.version.clone(),
                min: m.min_version.clone(),
                running: running.clone(),
            });
        }
    }
    if m.payload_sha256.len() != 64 || !m.payload_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Refused::BadManifest("payload_sha256 is not 64 hex digits".into()));
    }
    Ok(())
}
