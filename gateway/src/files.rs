//! Durable file writes shared by the store, updates and provisioning: a file replaced whole
//! or not at all, a new private file, and the folder fsync that makes a rename durable.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `data` to `path` so that a power cut leaves the old file or the new one: a
/// temporary file beside it (never through a symlink), fsync, rename, fsync of the folder.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let _ = std::fs::remove_file(&tmp);
        let mut f =
            OpenOptions::new().write(true).create_new(true).mode(mode).custom_flags(libc::O_NOFOLLOW).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates `path` (refused if it exists, even as a dangling symlink) mode 0600 from its
/// creation, writes `data` and fsyncs it; returns the open file (to hand it to its owner).
pub(crate) fn create_private(path: &Path, data: &[u8]) -> std::io::Result<File> {
    let mut f =
        OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(f)
}

/// fsync of a folder: makes a rename or a new entry in it durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_writes_replace_whole_files_and_private_files_are_new_and_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.toml");
        write_atomic(&path, b"one", 0o644).unwrap();
        write_atomic(&path, b"two", 0o640).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "no temporary file left");
        let key = tmp.path().join("k.key");
        create_private(&key, b"secret").unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(create_private(&key, b"again").is_err(), "an existing file is not overwritten");
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), tmp.path().join("link")).unwrap();
        assert!(create_private(&tmp.path().join("link"), b"x").is_err(), "not through a symlink");
    }
}
