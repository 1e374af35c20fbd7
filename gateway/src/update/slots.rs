//! The two root filesystem slots and their boot entries on the ESP.
//!
//! The booted slot is the kernel command line's `root=PARTLABEL=rootfs-a|b`; the other one
//! is the one an update writes. Each slot has at most one Boot Loader Specification entry,
//! `loader/entries/gateway-<version>-<slot>[+<left>[-<done>]].conf` (the `+` part is
//! systemd-boot's boot counter; systemd-bless-boot drops it after a good boot).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::Version;
use crate::config::Update;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn letter(self) -> char {
        match self {
            Slot::A => 'a',
            Slot::B => 'b',
        }
    }

    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub fn device(self, cfg: &Update) -> &Path {
        match self {
            Slot::A => &cfg.slot_a,
            Slot::B => &cfg.slot_b,
        }
    }

    fn from_letter(c: &str) -> Option<Slot> {
        match c {
            "a" => Some(Slot::A),
            "b" => Some(Slot::B),
            _ => None,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// The booted slot, from a kernel command line file.
pub fn booted(cmdline: &Path) -> anyhow::Result<Slot> {
    let text = std::fs::read_to_string(cmdline).with_context(|| format!("reading {}", cmdline.display()))?;
    text.split_whitespace()
        .find_map(|arg| arg.strip_prefix("root=PARTLABEL=rootfs-").and_then(Slot::from_letter))
        .ok_or_else(|| {
            anyhow::anyhow!("{}: no root=PARTLABEL=rootfs-a|b: cannot tell the booted slot", cmdline.display())
        })
}

/// One of our boot entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub file_name: String,
    pub version: Version,
    pub slot: Slot,
    /// Tries left, `None` once blessed.
    pub tries_left: Option<u32>,
}

pub(crate) fn entries_dir(esp: &Path) -> PathBuf {
    esp.join("loader/entries")
}

/// Parses `gateway-<version>-<slot>[+<left>[-<done>]].conf`.
pub(crate) fn parse_entry_name(name: &str) -> Option<Entry> {
    let stem = name.strip_prefix("gateway-")?.strip_suffix(".conf")?;
    let (id, counter) = match stem.split_once('+') {
        Some((id, c)) => (id, Some(c)),
        None => (stem, None),
    };
    let (version, slot) = id.rsplit_once('-')?;
    let tries_left = match counter {
        Some(c) => Some(c.split('-').next()?.parse().ok()?),
        None => None,
    };
    Some(Entry { file_name: name.into(), version: version.parse().ok()?, slot: Slot::from_letter(slot)?, tries_left })
}

/// Our entries on the ESP, sorted by file name.
pub fn entries(esp: &Path) -> anyhow::Result<Vec<Entry>> {
    let dir = entries_dir(esp);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        if let Some(e) = entry?.file_name().to_str().and_then(parse_entry_name) {
            out.push(e);
        }
    }
    out.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok(out)
}

/// A new entry's file name, with `tries` boot tries.
pub(crate) fn entry_name(version: &Version, slot: Slot, tries: u32) -> String {
    format!("gateway-{version}-{slot}+{tries}.conf")
}

/// A new entry's text: the same kernel, initrd and options as the image's own entries
/// (image/mkimage.sh build_esp), for `slot`.
pub(crate) fn entry_text(version: &Version, slot: Slot) -> String {
    format!(
        "title    HL7 gateway {version} ({slot})\nversion  {version}\nsort-key gateway\nlinux    /{slot}/vmlinuz\ninitrd   /{slot}/initrd.img\noptions  root=PARTLABEL=rootfs-{slot} rootfstype=squashfs ro panic=10 console=tty0 console=ttyS0,115200\n"
    )
}
