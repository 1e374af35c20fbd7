//! `gateway update apply`: the one procedure that writes a slot. In order, each step durable
//! before the next:
//!
//! 1. read the bundle's head, check it (signatures, board, expiry, floor, minimum version)
//!    and the file's length: nothing is written before these pass;
//! 2. remove the inactive slot's old boot entry, so no entry points at a slot being
//!    rewritten (the booted slot's entry is never touched);
//! 3. stream the payload into the inactive slot while hashing it; fsync;
//! 4. read the slot back and hash it again;
//! 5. only then the new entry `gateway-<V>-<slot>+<tries>.conf`: temporary file, fsync,
//!    rename, fsync of the folder (the rename is the commit point);
//! 6. record the applied version (rollback detection compares the booted version to it).
//!
//! A power cut before 5's rename leaves the box booting the old slot as before, the floor
//! untouched. The floor rises later, after the new slot's boot is blessed (`boot`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::bundle::{self, Manifest};
use super::slots::{self, Slot};
use super::verify::{self, BoxFacts};
use super::{keyring, state, Refused};
use crate::config::Update;

const CHUNK: usize = 1 << 20;

/// Where a simulated power cut strikes: the write step number `at` (0-based) fails, as if
/// the box lost power just before it. Counts the steps either way.
#[derive(Debug, Default)]
pub struct PowerCut {
    at: Option<usize>,
    pub(crate) steps: usize,
}

impl PowerCut {
    pub fn never() -> PowerCut {
        PowerCut::default()
    }

    #[cfg(test)]
    pub(crate) fn at(step: usize) -> PowerCut {
        PowerCut { at: Some(step), steps: 0 }
    }

    fn step(&mut self, what: &'static str) -> std::io::Result<()> {
        let n = self.steps;
        self.steps += 1;
        if self.at == Some(n) {
            return Err(std::io::Error::other(format!("simulated power cut at step {n} ({what})")));
        }
        Ok(())
    }
}

/// What was installed.
#[derive(Debug)]
pub struct Outcome {
    pub manifest: Manifest,
    pub slot: Slot,
    pub entry: String,
}

/// The update marker (the LED shows "updating" while it exists), removed when dropped.
struct Marker(Option<PathBuf>);

impl Marker {
    fn create(path: Option<&Path>) -> anyhow::Result<Marker> {
        if let Some(p) = path {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(p, b"").with_context(|| format!("creating update marker {}", p.display()))?;
        }
        Ok(Marker(path.map(Path::to_path_buf)))
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The facts the box checks a bundle against.
pub fn box_facts(cfg: &Update, now: jiff::Timestamp) -> anyhow::Result<BoxFacts> {
    let running = state::running_version(&cfg.os_release)?;
    Ok(BoxFacts {
        board: cfg.board.clone(),
        // Before the first blessed boot raised it, the running version is the floor.
        floor: state::floor(&cfg.state_dir)?.or(running.clone()),
        running,
        now,
    })
}

/// Applies the bundle file `path` to the inactive slot (see the module's steps).
pub fn apply_file(
    cfg: &Update,
    path: &Path,
    marker: Option<&Path>,
    now: jiff::Timestamp,
    cut: &mut PowerCut,
) -> anyhow::Result<Outcome> {
    let mut src = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let head = bundle::read_head(&mut src)?;
    // A bundle on a disk partition (a USB stick) is followed by the partition's padding.
    let on_disk = std::os::unix::fs::FileTypeExt::is_block_device(&src.metadata()?.file_type());
    let len = if on_disk { src.seek(SeekFrom::End(0))? } else { src.metadata()?.len() };
    let expected = head.payload_offset + head.manifest.payload_size;
    if len < expected || (!on_disk && len != expected) {
        return Err(Refused::Truncated(format!("file has {len} bytes, the manifest says {expected}")).into());
    }
    let keyring = keyring::effective(&cfg.trust_root, &cfg.state_dir)?;
    verify::check(&head, &keyring, &box_facts(cfg, now)?)?;
    let manifest = head.manifest;
    let target = slots::booted(&cfg.cmdline)?.other();
    let device = target.device(cfg);
    let _marker = Marker::create(marker)?;

    let mut slot = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .with_context(|| format!("opening slot {target} ({})", device.display()))?;
    if std::os::unix::fs::FileTypeExt::is_block_device(&slot.metadata()?.file_type()) {
        let capacity = slot.seek(SeekFrom::End(0))?;
        if manifest.payload_size > capacity {
            return Err(Refused::TooBig { size: manifest.payload_size, capacity }.into());
        }
        slot.seek(SeekFrom::Start(0))?;
    }

    // 2. No entry may point at the slot while it is rewritten.
    let dir = slots::entries_dir(&cfg.esp);
    let stale: Vec<_> = slots::entries(&cfg.esp)?.into_iter().filter(|e| e.slot == target).collect();
    for e in &stale {
        cut.step("remove the inactive slot's entry")?;
        std::fs::remove_file(dir.join(&e.file_name))?;
    }
    if !stale.is_empty() {
        cut.step("fsync the ESP")?;
        crate::files::sync_dir(&dir)?;
    }

    // 3. Stream and hash.
    src.seek(SeekFrom::Start(head.payload_offset))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut left = manifest.payload_size;
    while left > 0 {
        let want = usize::try_from(left.min(CHUNK as u64))?;
        let n = src.read(&mut buf[..want])?;
        if n == 0 {
            return Err(Refused::Truncated("payload ended early".into()).into());
        }
        ctx.update(&buf[..n]);
        cut.step("write the slot")?;
        slot.write_all(&buf[..n])?;
        left -= n as u64;
    }
    if super::hex(ctx.finish().as_ref()) != manifest.payload_sha256 {
        return Err(Refused::PayloadHash("as read from the bundle").into());
    }
    cut.step("fsync the slot")?;
    slot.sync_all()?;
    drop(slot);

    // 4. Read back what the slot holds.
    cut.step("read the slot back")?;
    if hash_prefix(device, manifest.payload_size)? != manifest.payload_sha256 {
        return Err(Refused::PayloadHash("as read back from the slot").into());
    }

    // 5. The boot entry, atomically.
    let name = slots::entry_name(&manifest.version, target, cfg.boot_tries);
    let tmp = dir.join(format!(".{name}.tmp"));
    cut.step("write the new entry")?;
    let mut f = File::create(&tmp)?;
    f.write_all(slots::entry_text(&manifest.version, target).as_bytes())?;
    cut.step("fsync the new entry")?;
    f.sync_all()?;
    drop(f);
    cut.step("rename the new entry")?;
    std::fs::rename(&tmp, dir.join(&name))?;
    cut.step("fsync the ESP")?;
    crate::files::sync_dir(&dir)?;

    // 6. What rollback detection compares the booted version with.
    cut.step("record the applied version")?;
    state::set_applied(&cfg.state_dir, &manifest.version, target, now)?;
    Ok(Outcome { manifest, slot: target, entry: name })
}

/// SHA-256 (hex) of the first `len` bytes of `path`.
fn hash_prefix(path: &Path, len: u64) -> anyhow::Result<String> {
    let (read, hash) = super::bundle::hash_reader(File::open(path)?.take(len))?;
    anyhow::ensure!(read == len, "slot {} holds only {read} of {len} bytes", path.display());
    Ok(hash)
}
