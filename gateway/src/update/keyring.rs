//! The trust root: a keyring of Ed25519 public keys, a threshold of them that must sign, and
//! the ids of revoked keys. The image ships one (`[update] trust_root`); a newer one is
//! accepted only when a threshold of the current one's keys signed it, and is then kept
//! under `state_dir/keyrings/` (re-checked link by link from the shipped root at each load).
//!
//! On disk: `{"keyring": {version, threshold, keys, revoked}, "signatures": [...]}`. The
//! signatures cover the exact bytes of the `keyring` value, so no canonical JSON is needed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::keys::{self, PublicKey, Signature, SigningKey};
use super::Refused;

/// Signature domain of a keyring (a manifest's differs).
pub(crate) const DOMAIN: &[u8] = b"gateway-update keyring v1\0";

/// What a keyring says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyringBody {
    /// Grows with every rotation.
    pub version: u64,
    /// Valid signatures by distinct, unrevoked keys an update (or the next keyring) needs.
    pub threshold: usize,
    pub keys: Vec<PublicKey>,
    /// Ids of keys whose signatures never count again.
    #[serde(default)]
    pub revoked: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    keyring: Box<RawValue>,
    #[serde(default)]
    signatures: Vec<Signature>,
}

/// A parsed, well-formed keyring and the exact bytes its signatures cover.
#[derive(Debug, Clone)]
pub struct Keyring {
    pub body: KeyringBody,
    raw: String,
    signatures: Vec<Signature>,
}

impl Keyring {
    /// Parses a keyring file's text and checks its shape: at least two keys (one can be
    /// rotated out), distinct ids that match their keys, 1 ≤ threshold ≤ unrevoked keys.
    pub fn parse(text: &str) -> Result<Keyring, Refused> {
        let env: Envelope = serde_json::from_str(text).map_err(|e| Refused::Keyring(format!("unreadable: {e}")))?;
        let body: KeyringBody =
            serde_json::from_str(env.keyring.get()).map_err(|e| Refused::Keyring(format!("unreadable: {e}")))?;
        let mut ids = BTreeSet::new();
        for k in &body.keys {
            let ok = k.bytes().is_some_and(|b| keys::key_id(&b) == k.id);
            if !ok {
                return Err(Refused::Keyring(format!("key {} is not a valid Ed25519 key of that id", k.id)));
            }
            if !ids.insert(k.id.clone()) {
                return Err(Refused::Keyring(format!("key {} listed twice", k.id)));
            }
        }
        let active = body.keys.iter().filter(|k| !body.revoked.contains(&k.id)).count();
        if body.keys.len() < 2 {
            return Err(Refused::Keyring("fewer than 2 keys: none could be rotated out".into()));
        }
        if body.threshold == 0 || body.threshold > active {
            return Err(Refused::Keyring(format!("threshold {} with {active} unrevoked keys", body.threshold)));
        }
        Ok(Keyring { body, raw: env.keyring.get().to_string(), signatures: env.signatures })
    }

    pub fn load(path: &Path) -> anyhow::Result<Keyring> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading keyring {}", path.display()))?;
        Keyring::parse(&text).with_context(|| format!("keyring {}", path.display()))
    }

    /// The file text: the signed bytes as they are, and the signatures.
    pub fn to_text(&self) -> String {
        let sigs = serde_json::to_string_pretty(&self.signatures).unwrap_or_else(|_| "[]".into());
        format!("{{\"keyring\": {},\n\"signatures\": {sigs}}}\n", self.raw)
    }

    /// A key whose signatures count: listed and not revoked.
    fn active(&self, id: &str) -> Option<&PublicKey> {
        if self.body.revoked.iter().any(|r| r == id) {
            return None;
        }
        self.body.keys.iter().find(|k| k.id == id)
    }

    /// Counts the valid signatures over `message` by distinct unrevoked keys; refuses fewer
    /// than the threshold.
    pub(crate) fn check(&self, domain: &[u8], message: &[u8], sigs: &[Signature]) -> Result<usize, Refused> {
        let (mut valid, mut revoked, mut unknown, mut bad) = (BTreeSet::new(), 0, 0, 0);
        for sig in sigs {
            match self.active(&sig.key_id) {
                Some(key) if keys::verify(key, domain, message, sig) => {
                    valid.insert(sig.key_id.clone());
                }
                Some(_) => bad += 1,
                None if self.body.revoked.contains(&sig.key_id) => revoked += 1,
                None => unknown += 1,
            }
        }
        if valid.len() < self.body.threshold {
            return Err(Refused::Signatures {
                valid: valid.len(),
                required: self.body.threshold,
                revoked,
                unknown,
                bad,
            });
        }
        Ok(valid.len())
    }

    /// Whether `next` may replace this keyring: a newer version, signed by a threshold of
    /// this one's unrevoked keys.
    pub fn accepts(&self, next: &Keyring) -> Result<(), Refused> {
        if next.body.version <= self.body.version {
            return Err(Refused::Keyring(format!(
                "version {} is not newer than the trusted {}",
                next.body.version, self.body.version
            )));
        }
        self.check(DOMAIN, next.raw.as_bytes(), &next.signatures).map(|_| ())
    }

    /// A keyring from `body`, signed by `signers` (a threshold of the keyring it replaces).
    pub fn sign_new(body: &KeyringBody, signers: &[SigningKey]) -> anyhow::Result<Keyring> {
        let raw = serde_json::to_string_pretty(body)?;
        let mut k = Keyring::parse(&format!("{{\"keyring\": {raw}}}"))?;
        k.add_signatures(signers);
        Ok(k)
    }

    /// Adds signatures (one per key; a key that already signed is replaced).
    pub fn add_signatures(&mut self, signers: &[SigningKey]) {
        for key in signers {
            let sig = key.sign(DOMAIN, self.raw.as_bytes());
            self.signatures.retain(|s| s.key_id != sig.key_id);
            self.signatures.push(sig);
        }
    }
}

fn rotated_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("keyrings")
}

/// The keyring in force: the shipped root, then each kept rotation in version order that
/// the one before accepts (one that does not is skipped with a warning).
pub fn effective(trust_root: &Path, state_dir: &Path) -> anyhow::Result<Keyring> {
    let mut current = Keyring::load(trust_root)?;
    let mut kept = Vec::new();
    if let Ok(entries) = std::fs::read_dir(rotated_dir(state_dir)) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                match Keyring::load(&path) {
                    Ok(k) => kept.push((k.body.version, k)),
                    Err(e) => tracing::warn!(file = %path.display(), "update: kept keyring unreadable: {e:#}"),
                }
            }
        }
    }
    kept.sort_by_key(|(v, _)| *v);
    for (version, next) in kept {
        if version <= current.body.version {
            continue;
        }
        match current.accepts(&next) {
            Ok(()) => current = next,
            Err(e) => tracing::warn!(version, "update: kept keyring not accepted: {e}"),
        }
    }
    Ok(current)
}

/// Installs a rotated keyring after checking it against the one in force.
pub fn install(trust_root: &Path, state_dir: &Path, text: &str) -> anyhow::Result<Keyring> {
    let current = effective(trust_root, state_dir)?;
    let next = Keyring::parse(text)?;
    current.accepts(&next)?;
    let dir = rotated_dir(state_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::files::write_atomic(&dir.join(format!("{}.json", next.body.version)), next.to_text().as_bytes(), 0o644)?;
    Ok(next)
}
