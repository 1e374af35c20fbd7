//! Payload encryption at rest (AES-256-GCM) and keyed hashes (HMAC-SHA256) for the lane
//! and duplicate keys, all derived from one key file.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};

const KEY_LEN: usize = 32;
const AAD: &[u8] = b"gateway-journal-v1";

/// Keys derived from the key file: one per purpose, so a leak of one hash key reveals
/// nothing about the encryption key.
pub struct Keys {
    seal: LessSafeKey,
    lane: hmac::Key,
    dedup: hmac::Key,
    rng: SystemRandom,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("key file {path} is accessible by group or others (mode {mode:o}); run chmod 600 on it")]
    Permissions { path: String, mode: u32 },
    #[error("key file {path} must hold exactly {KEY_LEN} bytes")]
    Length { path: String },
}

/// The journal cannot decrypt a payload (wrong key or tampered row).
#[derive(Debug, thiserror::Error)]
#[error("payload does not decrypt under this key file")]
pub struct OpenError;

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl Keys {
    /// Reads the key file, creating it (mode 0600, random key) on first start.
    pub fn load_or_create(path: &Path) -> Result<Keys, KeyError> {
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let rng = SystemRandom::new();
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(mut f) => {
                let mut key = [0u8; KEY_LEN];
                rng.fill(&mut key).expect("system random source");
                f.write_all(&key).and_then(|_| f.sync_all()).map_err(io)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let mut f = std::fs::File::open(path).map_err(io)?;
        let mode = f.metadata().map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: path.display().to_string(), mode: mode & 0o777 });
        }
        let mut key = Vec::with_capacity(KEY_LEN);
        f.read_to_end(&mut key).map_err(io)?;
        let key: [u8; KEY_LEN] = key.try_into().map_err(|_| KeyError::Length { path: path.display().to_string() })?;
        Ok(Keys::from_master(&key))
    }

    /// Derives the purpose keys from a master key.
    pub fn from_master(master: &[u8; KEY_LEN]) -> Keys {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"gateway key file v1").extract(master);
        let derive = |label: &[u8]| {
            let mut out = [0u8; KEY_LEN];
            prk.expand(&[label], Len(KEY_LEN)).and_then(|okm| okm.fill(&mut out)).expect("32-byte HKDF output");
            out
        };
        let seal = LessSafeKey::new(UnboundKey::new(&aead::AES_256_GCM, &derive(b"seal")).expect("AES-256 key"));
        Keys {
            seal,
            lane: hmac::Key::new(hmac::HMAC_SHA256, &derive(b"lane")),
            dedup: hmac::Key::new(hmac::HMAC_SHA256, &derive(b"dedup")),
            rng: SystemRandom::new(),
        }
    }

    /// Encrypts a payload: `nonce || ciphertext || tag`.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("system random source");
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + aead::AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .seal
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), &mut out[NONCE_LEN..])
            .expect("AES-GCM seal");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Decrypts what [`Keys::seal`] produced.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError)?;
        let mut body = body.to_vec();
        let len = self.seal.open_in_place(nonce, Aad::from(AAD), &mut body).map_err(|_| OpenError)?.len();
        body.truncate(len);
        Ok(body)
    }

    /// The per-patient lane key: a keyed hash of PID-3 (id and assigning authority), so the
    /// journal can order by patient without holding the identifier.
    pub fn lane(&self, id: &[u8], authority: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.lane);
        ctx.update(authority);
        ctx.update(b"\x1f");
        ctx.update(id);
        hex(&ctx.sign().as_ref()[..16])
    }

    /// Keyed hash of a whole payload, for duplicate detection.
    pub fn payload_hash(&self, payload: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.dedup, payload);
        tag.as_ref().try_into().expect("SHA-256 output")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("gw-crypto-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let k = Keys::from_master(&[7; 32]);
        let sealed = k.seal(b"PID|1||MRN");
        assert!(!sealed.windows(3).any(|w| w == b"MRN"));
        assert_eq!(k.open(&sealed).unwrap(), b"PID|1||MRN");
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(k.open(&bad).is_err());
        assert!(Keys::from_master(&[8; 32]).open(&sealed).is_err());
        assert_ne!(k.seal(b"x"), k.seal(b"x"), "fresh nonce per payload");
    }

    #[test]
    fn lane_and_hash_are_keyed_and_stable() {
        let a = Keys::from_master(&[1; 32]);
        let b = Keys::from_master(&[2; 32]);
        assert_eq!(a.lane(b"123", b"HOSP"), a.lane(b"123", b"HOSP"));
        assert_ne!(a.lane(b"123", b"HOSP"), a.lane(b"123", b"OTHER"));
        assert_ne!(a.lane(b"123", b"HOSP"), b.lane(b"123", b"HOSP"));
        assert_eq!(a.lane(b"1", b"").len(), 32);
        assert_ne!(a.payload_hash(b"m"), b.payload_hash(b"m"));
    }

    #[test]
    fn key_file_created_0600_and_reused() {
        let dir = temp_dir();
        let path = dir.join("k.key");
        let k1 = Keys::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let k2 = Keys::load_or_create(&path).unwrap();
        assert_eq!(k2.open(&k1.seal(b"x")).unwrap(), b"x");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(Keys::load_or_create(&path), Err(KeyError::Permissions { .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
