//! What the updater remembers on the data partition (`[update] state_dir`), each file
//! replaced atomically and readable by the gateway (for its metric):
//! - `floor`: the lowest version the box may ever be updated to (raised after a blessed boot);
//! - `applied`: the last version written to a slot, which slot, when;
//! - `rollbacks`: how often an applied version did not stay booted, and the last time.

use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::slots::Slot;
use super::Version;

fn read_opt(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write(state_dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(state_dir).with_context(|| format!("creating {}", state_dir.display()))?;
    let path = state_dir.join(name);
    crate::files::write_atomic(&path, text.as_bytes(), 0o644).with_context(|| format!("writing {}", path.display()))
}

pub fn floor(state_dir: &Path) -> anyhow::Result<Option<Version>> {
    let path = state_dir.join("floor");
    read_opt(&path)?.map(|t| t.parse().map_err(|e: String| anyhow::anyhow!("{}: {e}", path.display()))).transpose()
}

pub(crate) fn set_floor(state_dir: &Path, v: &Version) -> anyhow::Result<()> {
    write(state_dir, "floor", &format!("{v}\n"))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub version: Version,
    /// `a` or `b`.
    pub slot: char,
    pub at: String,
}

pub fn applied(state_dir: &Path) -> anyhow::Result<Option<Applied>> {
    let path = state_dir.join("applied");
    read_opt(&path)?
        .map(|t| serde_json::from_str(&t).with_context(|| format!("{}: unreadable", path.display())))
        .transpose()
}

pub(crate) fn set_applied(state_dir: &Path, version: &Version, slot: Slot, now: jiff::Timestamp) -> anyhow::Result<()> {
    let a = Applied { version: version.clone(), slot: slot.letter(), at: now.to_string() };
    write(state_dir, "applied", &(serde_json::to_string(&a)? + "\n"))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollbacks {
    pub count: u64,
    /// The applied version that did not stay booted, last time.
    pub last_failed: Option<Version>,
    /// The version that booted instead.
    pub last_running: Option<Version>,
    pub last_at: Option<String>,
    /// `Applied::at` of the update it was counted for (each is counted once).
    pub applied_at: Option<String>,
}

pub fn rollbacks(state_dir: &Path) -> anyhow::Result<Rollbacks> {
    let path = state_dir.join("rollbacks");
    Ok(read_opt(&path)?
        .map(|t| serde_json::from_str(&t).with_context(|| format!("{}: unreadable", path.display())))
        .transpose()?
        .unwrap_or_default())
}

pub(crate) fn set_rollbacks(state_dir: &Path, r: &Rollbacks) -> anyhow::Result<()> {
    write(state_dir, "rollbacks", &(serde_json::to_string(r)? + "\n"))
}

/// The running image version: `IMAGE_VERSION=` of an os-release file.
pub fn running_version(os_release: &Path) -> anyhow::Result<Option<Version>> {
    let Some(text) = read_opt(os_release)? else { return Ok(None) };
    text.lines()
        .find_map(|l| l.strip_prefix("IMAGE_VERSION="))
        .map(|v| v.trim_matches('"').parse().map_err(|e: String| anyhow::anyhow!("{}: {e}", os_release.display())))
        .transpose()
}
