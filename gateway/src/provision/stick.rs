//! Reading a provisioning stick, and writing the receipt back to it. Two ways in, one
//! contract: the mountpoint the unit mounted read-only (production), or the FAT filesystem
//! read directly from an image or block device with the `fatfs` crate (tests, a box without
//! the vfat module). Either way only regular files in the stick's root are read, each bounded
//! in size before a byte is read; symlinks, folders and device files are refused.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The FAT volume label of a provisioning stick (≤ 11 characters).
pub const LABEL: &str = "GW-PROV";
/// The configuration on the stick.
pub const MANIFEST: &str = "provision.toml";
/// Its detached signatures, one line per provisioning key.
pub const SIGNATURES: &str = "provision.sig";
/// A configuration is a few KiB; anything near this is not one.
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024;
pub const MAX_SIGNATURES_BYTES: u64 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StickError {
    #[error("{name} is not on the stick")]
    Missing { name: String },
    #[error("{name} is {size} bytes, more than the {limit} allowed")]
    TooLarge { name: String, size: u64, limit: u64 },
    #[error("{name} is not a regular file (a symlink, folder or device file)")]
    NotRegular { name: String },
    #[error("not a provisioning stick: volume label {found:?}, expected {LABEL:?}")]
    Label { found: String },
    #[error("not a readable FAT filesystem: {0}")]
    NotFat(std::io::Error),
    #[error("{name}: {source}")]
    Io { name: String, source: std::io::Error },
}

/// A provisioning stick.
pub trait Stick {
    /// The whole of file `name` from the stick's root, refused past `limit` bytes.
    fn read(&mut self, name: &str, limit: u64) -> Result<Vec<u8>, StickError>;
    /// Writes (replaces) file `name` in the stick's root.
    fn write(&mut self, name: &str, data: &[u8]) -> Result<(), StickError>;
}

/// Reads at most `limit` bytes; one more means the file grew past it while read.
fn read_bounded(mut r: impl Read, name: &str, limit: u64) -> Result<Vec<u8>, StickError> {
    let mut buf = Vec::new();
    r.by_ref().take(limit + 1).read_to_end(&mut buf).map_err(|source| StickError::Io { name: name.into(), source })?;
    if buf.len() as u64 > limit {
        return Err(StickError::TooLarge { name: name.into(), size: buf.len() as u64, limit });
    }
    Ok(buf)
}

/// A stick mounted at a folder.
#[derive(Debug)]
pub struct DirStick {
    root: PathBuf,
    /// Remount read-write (noexec, nosuid, nodev kept) to write the receipt, read-only again
    /// after: the unit mounts it read-only.
    remount: bool,
}

impl DirStick {
    pub fn new(root: &Path, remount: bool) -> DirStick {
        DirStick { root: root.to_path_buf(), remount }
    }

    fn remount(&self, mode: &str) -> Result<(), StickError> {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode},noexec,nosuid,nodev")])
            .arg(&self.root)
            .status()
            .map_err(|source| StickError::Io { name: "mount".into(), source })?;
        if !status.success() {
            let source = std::io::Error::other(format!("mount -o remount,{mode} failed: {status}"));
            return Err(StickError::Io { name: "mount".into(), source });
        }
        Ok(())
    }
}

impl Stick for DirStick {
    fn read(&mut self, name: &str, limit: u64) -> Result<Vec<u8>, StickError> {
        let path = self.root.join(name);
        // O_NOFOLLOW: a symlink fails to open; O_NONBLOCK: a FIFO cannot hang the open.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ENOENT) => StickError::Missing { name: name.into() },
                Some(libc::ELOOP) => StickError::NotRegular { name: name.into() },
                _ => StickError::Io { name: name.into(), source },
            })?;
        let meta = file.metadata().map_err(|source| StickError::Io { name: name.into(), source })?;
        let kind = meta.file_type();
        if !kind.is_file() || kind.is_fifo() || kind.is_block_device() || kind.is_char_device() {
            return Err(StickError::NotRegular { name: name.into() });
        }
        if meta.len() > limit {
            return Err(StickError::TooLarge { name: name.into(), size: meta.len(), limit });
        }
        read_bounded(file, name, limit)
    }

    fn write(&mut self, name: &str, data: &[u8]) -> Result<(), StickError> {
        if self.remount {
            self.remount("rw")?;
        }
        let path = self.root.join(name);
        let written = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)?;
            f.write_all(data)?;
            f.sync_all()
        })()
        .map_err(|source| StickError::Io { name: name.into(), source });
        if self.remount {
            self.remount("ro")?;
        }
        written
    }
}

/// A FAT filesystem read directly (an image file, a block device, or anything seekable).
pub struct FatStick<T: Read + Write + Seek> {
    fs: fatfs::FileSystem<T>,
}

impl FatStick<File> {
    /// Opens an image or block device; read-write so the receipt can be written back.
    pub fn open_path(path: &Path) -> Result<FatStick<File>, StickError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|source| StickError::Io { name: path.display().to_string(), source })?;
        FatStick::new(file)
    }
}

impl<T: Read + Write + Seek> FatStick<T> {
    /// Mounts the filesystem (in memory) and checks its label.
    pub fn new(disk: T) -> Result<FatStick<T>, StickError> {
        let fs = fatfs::FileSystem::new(disk, fatfs::FsOptions::new()).map_err(StickError::NotFat)?;
        let boot_label = fs.volume_label();
        let root_label = fs.read_volume_label_from_root_dir().map_err(StickError::NotFat)?;
        let matches = |l: &str| l.trim_end() == LABEL;
        if !matches(&boot_label) && !root_label.as_deref().is_some_and(matches) {
            return Err(StickError::Label { found: root_label.unwrap_or(boot_label).trim_end().to_string() });
        }
        Ok(FatStick { fs })
    }
}

impl<T: Read + Write + Seek> Stick for FatStick<T> {
    fn read(&mut self, name: &str, limit: u64) -> Result<Vec<u8>, StickError> {
        let io = |source| StickError::Io { name: name.into(), source };
        for entry in self.fs.root_dir().iter() {
            let entry = entry.map_err(io)?;
            if !entry.file_name().eq_ignore_ascii_case(name) {
                continue;
            }
            if !entry.is_file() {
                return Err(StickError::NotRegular { name: name.into() });
            }
            // The size the directory declares is checked before reading any of it.
            if entry.len() > limit {
                return Err(StickError::TooLarge { name: name.into(), size: entry.len(), limit });
            }
            return read_bounded(entry.to_file(), name, limit);
        }
        Err(StickError::Missing { name: name.into() })
    }

    fn write(&mut self, name: &str, data: &[u8]) -> Result<(), StickError> {
        let io = |source| StickError::Io { name: name.into(), source };
        let mut f = self.fs.root_dir().create_file(name).map_err(io)?;
        f.truncate().map_err(io)?;
        f.write_all(data).map_err(io)?;
        f.flush().map_err(io)
    }
}

/// Opens what `gateway provision` was given: a folder (a mountpoint) or a FAT image/device.
pub fn open(path: &Path, remount: bool) -> Result<Box<dyn Stick>, StickError> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|source| StickError::Io { name: path.display().to_string(), source })?;
    if meta.is_dir() {
        Ok(Box::new(DirStick::new(path, remount)))
    } else {
        Ok(Box::new(FatStick::open_path(path)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_stick_reads_regular_files_only_and_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("a.toml"), "x = 1\n").unwrap();
        std::os::unix::fs::symlink(root.join("a.toml"), root.join("link.toml")).unwrap();
        std::fs::create_dir(root.join("dir.toml")).unwrap();
        let mut stick = DirStick::new(root, false);
        assert_eq!(stick.read("a.toml", 100).unwrap(), b"x = 1\n");
        assert!(matches!(stick.read("a.toml", 3), Err(StickError::TooLarge { size: 6, .. })));
        assert!(matches!(stick.read("link.toml", 100), Err(StickError::NotRegular { .. })));
        assert!(matches!(stick.read("dir.toml", 100), Err(StickError::NotRegular { .. })));
        assert!(matches!(stick.read("none.toml", 100), Err(StickError::Missing { .. })));
        stick.write("receipt.toml", b"ok").unwrap();
        assert_eq!(std::fs::read(root.join("receipt.toml")).unwrap(), b"ok");
    }
}
