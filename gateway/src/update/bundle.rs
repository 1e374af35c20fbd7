//! The bundle container: one file that a USB stick, the admin API or an HTTP download can
//! carry, readable front to back in one pass:
//!
//! ```text
//! "GWUPD\0" "1\n"                  8 bytes: magic and format
//! u32 big-endian                    length of the envelope (≤ 1 MiB)
//! {"manifest": {...}, "signatures": [{"key_id", "signature"}]}     the envelope (JSON)
//! payload                           the root filesystem image, manifest.payload_size bytes
//! ```
//!
//! The signatures cover the exact bytes of the `manifest` value; the manifest carries the
//! payload's size and SHA-256, so the small head authenticates the whole file before a byte
//! of payload is trusted.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::keys::{Signature, SigningKey};
use super::{Refused, Version};

pub const MAGIC: &[u8; 8] = b"GWUPD\x001\n";
/// Signature domain of a manifest (a keyring's differs).
pub(crate) const DOMAIN: &[u8] = b"gateway-update manifest v1\0";
const MAX_ENVELOPE: u32 = 1 << 20;
const CHUNK: usize = 1 << 20;

/// What the signers vouch for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The image version the payload boots as (monotonic).
    pub version: Version,
    /// The hardware it is built for.
    pub board: String,
    pub payload_size: u64,
    /// Hex.
    pub payload_sha256: String,
    /// The oldest running version that may install it.
    pub min_version: Version,
    /// RFC 3339 instant after which the bundle is refused.
    pub expires: String,
    /// The keyring version its signers belong to.
    pub keyring_version: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    manifest: Box<RawValue>,
    signatures: Vec<Signature>,
}

/// A bundle's head as read, before any check.
#[derive(Debug)]
pub struct Head {
    pub manifest: Manifest,
    pub(crate) raw: String,
    pub(crate) signatures: Vec<Signature>,
    /// Bytes before the payload.
    pub payload_offset: u64,
}

/// Reads magic, envelope and manifest (unverified: see `verify`).
pub fn read_head(r: &mut dyn Read) -> Result<Head, Refused> {
    let mut fixed = [0u8; 12];
    r.read_exact(&mut fixed).map_err(|_| Refused::Truncated("no complete header".into()))?;
    if &fixed[..8] != MAGIC {
        return Err(Refused::NotABundle);
    }
    let len = u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
    if len > MAX_ENVELOPE {
        return Err(Refused::BadManifest(format!("envelope of {len} bytes")));
    }
    let mut env = vec![0u8; len as usize];
    r.read_exact(&mut env).map_err(|_| Refused::Truncated("envelope cut short".into()))?;
    let env: Envelope = serde_json::from_slice(&env).map_err(|e| Refused::BadManifest(e.to_string()))?;
    let manifest: Manifest =
        serde_json::from_str(env.manifest.get()).map_err(|e| Refused::BadManifest(e.to_string()))?;
    Ok(Head {
        manifest,
        raw: env.manifest.get().to_string(),
        signatures: env.signatures,
        payload_offset: 12 + u64::from(len),
    })
}

/// What `gateway update bundle` is told.
pub struct BundleSpec<'a> {
    pub rootfs: &'a Path,
    pub version: Version,
    pub board: String,
    pub min_version: Version,
    pub expires: jiff::Timestamp,
    pub keyring_version: u64,
}

/// Writes a bundle of `spec.rootfs` to `out`, signed by each of `keys`.
pub fn make(spec: &BundleSpec<'_>, keys: &[SigningKey], out: &Path) -> anyhow::Result<Manifest> {
    anyhow::ensure!(!keys.is_empty(), "no signing key");
    let (size, sha) = hash_file(spec.rootfs)?;
    let manifest = Manifest {
        version: spec.version.clone(),
        board: spec.board.clone(),
        payload_size: size,
        payload_sha256: sha,
        min_version: spec.min_version.clone(),
        expires: spec.expires.to_string(),
        keyring_version: spec.keyring_version,
    };
    let raw = serde_json::to_string(&manifest)?;
    let signatures: Vec<Signature> = keys.iter().map(|k| k.sign(DOMAIN, raw.as_bytes())).collect();
    let env = format!("{{\"manifest\":{raw},\"signatures\":{}}}", serde_json::to_string(&signatures)?);
    let mut f = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    f.write_all(MAGIC)?;
    f.write_all(&u32::try_from(env.len())?.to_be_bytes())?;
    f.write_all(env.as_bytes())?;
    let mut src = File::open(spec.rootfs)?;
    let copied = std::io::copy(&mut src, &mut f)?;
    anyhow::ensure!(copied == size, "{} changed while being bundled", spec.rootfs.display());
    f.sync_all()?;
    Ok(manifest)
}

/// Size and SHA-256 (hex) of a file.
pub(crate) fn hash_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let f = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hash_reader(f)?)
}

/// Bytes read and SHA-256 (hex) of everything `r` gives.
pub(crate) fn hash_reader(mut r: impl Read) -> std::io::Result<(u64, String)> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, super::hex(ctx.finish().as_ref())))
}
