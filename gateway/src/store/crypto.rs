//! Payload encryption at rest (AES-256-GCM) and keyed hashes (HMAC-SHA256) for the lane
//! and duplicate keys, all derived from one key file.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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
    /// Names this key in the store without revealing anything about it (see `check_value`).
    check: hmac::Key,
    rng: SystemRandom,
}

/// A variant with a cause leaves it to the error chain (`cli::error_chain`, `{:#}`), which prints it.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}")]
    Io { path: String, source: std::io::Error },
    #[error("key file {path} is accessible by group or others (mode {mode:o}); run chmod 600 on it")]
    Permissions { path: String, mode: u32 },
    #[error("key file {path} must hold exactly {KEY_LEN} bytes")]
    Length { path: String },
    #[error("key file {path} is a symbolic link; refusing to follow it (put the key file itself there)")]
    Symlink { path: String },
    #[error("key file {path} is not a regular file")]
    NotAFile { path: String },
    #[error("key file {path} is owned by uid {owner}, not by uid {euid} that runs the gateway; run chown on it")]
    Owner { path: String, owner: u32, euid: u32 },
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
    /// Reads the key file, creating it (mode 0600, random key) when it does not exist. Only
    /// for callers that know no sealed data depends on an earlier key: the daemon goes
    /// through `super::key_guard`, which refuses to replace a key the store still needs.
    pub fn load_or_create(path: &Path) -> Result<Keys, KeyError> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Keys::create(path),
            _ => Keys::load(path),
        }
    }

    /// Reads an existing key file. Refused: a symlink (the link, not its target, is what the
    /// path names), a file not owned by this process's effective uid, a mode that lets group
    /// or others in, a length other than 32 bytes.
    pub(crate) fn load(path: &Path) -> Result<Keys, KeyError> {
        Keys::read(path, false)
    }

    /// [`Keys::load`] for the operator's CLI (`gateway deadletter show`), which runs under
    /// `sudo` while the key belongs to the service user: root may use a key file another uid
    /// owns. The caller still checks it is the store's key (`key_guard::fits_store`).
    pub(crate) fn load_for_operator(path: &Path) -> Result<Keys, KeyError> {
        Keys::read(path, true)
    }

    fn read(path: &Path, root_reads_any: bool) -> Result<Keys, KeyError> {
        let name = || path.display().to_string();
        let io = |source| KeyError::Io { path: name(), source };
        let mut f = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(KeyError::Symlink { path: name() }),
            Err(e) => return Err(io(e)),
        };
        let meta = f.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(KeyError::NotAFile { path: name() });
        }
        let euid = rustix::process::geteuid().as_raw();
        if meta.uid() != euid && !(root_reads_any && euid == 0) {
            return Err(KeyError::Owner { path: name(), owner: meta.uid(), euid });
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: name(), mode: mode & 0o777 });
        }
        let mut key = Vec::with_capacity(KEY_LEN);
        f.read_to_end(&mut key).map_err(io)?;
        let key: [u8; KEY_LEN] = key.try_into().map_err(|_| KeyError::Length { path: name() })?;
        Ok(Keys::from_master(&key))
    }

    /// Creates a new random key file (mode 0600; its folder 0700 if it has to be made) and
    /// fsyncs the file and its folder, so the key is durable before anything is sealed with
    /// it. Fails if the path exists (even as a dangling symlink).
    pub(crate) fn create(path: &Path) -> Result<Keys, KeyError> {
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        let dir = Keys::create_folder(path)?;
        let mut key = [0u8; KEY_LEN];
        SystemRandom::new().fill(&mut key).expect("system random source");
        crate::files::create_private(path, &key).map_err(io)?;
        // The new directory entry is only durable once the folder itself is synced.
        crate::files::sync_dir(dir).map_err(io)?;
        Ok(Keys::from_master(&key))
    }

    /// Creates the key file's folder (mode 0700) if it does not exist; an existing folder is
    /// left as it is. Returns the folder. The daemon calls it before the journal, which may
    /// share the folder, creates it with the default mode.
    pub(crate) fn create_folder(path: &Path) -> Result<&Path, KeyError> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| KeyError::Io { path: path.display().to_string(), source })?;
        Ok(dir)
    }

    /// Derives the purpose keys from a master key.
    pub(crate) fn from_master(master: &[u8; KEY_LEN]) -> Keys {
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
            check: hmac::Key::new(hmac::HMAC_SHA256, &derive(b"check")),
            rng: SystemRandom::new(),
        }
    }

    /// Encrypts a payload: `nonce || ciphertext || tag`.
    pub(crate) fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
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

    /// Decrypts what `Keys::seal` produced.
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
    pub(crate) fn lane(&self, id: &[u8], authority: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.lane);
        ctx.update(authority);
        ctx.update(b"\x1f");
        ctx.update(id);
        hex(&ctx.sign().as_ref()[..16])
    }

    /// Keyed hash of a record's key (`what` names the table it keys), so the convert
    /// stage's memory can look records up without holding their identifiers.
    pub fn memory_key(&self, what: &str, key: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.dedup);
        ctx.update(b"memory\x1f");
        ctx.update(what.as_bytes());
        ctx.update(b"\x1f");
        ctx.update(key.as_bytes());
        ctx.sign().as_ref().try_into().expect("SHA-256 output")
    }

    /// Keyed hash of a whole payload, for duplicate detection.
    pub(crate) fn payload_hash(&self, payload: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.dedup, payload);
        tag.as_ref().try_into().expect("SHA-256 output")
    }
}

impl Keys {
    /// A fingerprint of the key, stored beside the data it seals, so a start with another
    /// key is detected before anything is lost. A keyed hash of a constant under a key of
    /// its own: it reveals nothing about the other keys.
    pub(crate) fn check_value(&self) -> String {
        hex(&hmac::sign(&self.check, b"gateway key check v1").as_ref()[..16])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_missing_key_file_says_its_os_error_once_in_the_error_chain() {
        let tmp = tempfile::tempdir().unwrap();
        let e = Keys::load(&tmp.path().join("k.key")).err().expect("no key file");
        let text = format!("{:#}", anyhow::Error::from(e).context("start-up"));
        let os = std::io::Error::from_raw_os_error(libc::ENOENT).to_string();
        assert_eq!(text.matches(&os).count(), 1, "{text}");
        assert!(text.starts_with("start-up: key file ") && text.ends_with(&format!("k.key: {os}")), "{text}");
    }

    #[test]
    fn key_file_created_0600_in_a_0700_folder_and_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("sub/k.key");
        let k1 = Keys::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.join("sub")).unwrap().permissions().mode() & 0o777, 0o700);
        let k2 = Keys::load_or_create(&path).unwrap();
        assert_eq!(k2.open(&k1.seal(b"x")).unwrap(), b"x");
        assert_eq!(k1.check_value(), k2.check_value());
        assert!(matches!(Keys::create(&path), Err(KeyError::Io { .. })), "create never overwrites");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(Keys::load_or_create(&path), Err(KeyError::Permissions { .. })));
    }

    #[test]
    fn check_value_names_the_key_and_nothing_else() {
        let (a, b) = (Keys::from_master(&[1; 32]), Keys::from_master(&[2; 32]));
        assert_eq!(a.check_value(), Keys::from_master(&[1; 32]).check_value());
        assert_ne!(a.check_value(), b.check_value());
        assert_eq!(a.check_value().len(), 32);
        assert_ne!(a.check_value(), a.lane(b"", b""), "its own derived key");
    }

    #[test]
    fn symlinked_key_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let real = dir.join("real.key");
        Keys::create(&real).unwrap();
        let link = dir.join("k.key");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(Keys::load(&link), Err(KeyError::Symlink { .. })));
        assert!(matches!(Keys::load_or_create(&link), Err(KeyError::Symlink { .. })));
        // A dangling link is not "absent": nothing is created through it.
        let dangling = dir.join("d.key");
        std::os::unix::fs::symlink(dir.join("nowhere.key"), &dangling).unwrap();
        assert!(Keys::load_or_create(&dangling).is_err());
        assert!(!dir.join("nowhere.key").exists());
    }

    #[test]
    fn key_file_owned_by_another_uid_is_refused() {
        if rustix::process::geteuid().as_raw() != 0 {
            eprintln!("skipped: chown to another uid needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("k.key");
        Keys::create(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let e = Keys::load(&path).err().expect("refused");
        assert!(matches!(e, KeyError::Owner { owner: 65534, euid: 0, .. }), "{e}");
        assert!(e.to_string().contains("k.key") && e.to_string().contains("uid 65534"), "{e}");
        // The operator's CLI under sudo reads the service user's key.
        assert!(Keys::load_for_operator(&path).is_ok());
    }
}
