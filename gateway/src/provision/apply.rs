//! Installing a provisioned configuration: atomically (a temporary file, fsync, rename, the
//! folder fsynced), the previous one kept for one rollback, and the highest `config_version`
//! the box has accepted (with the hash of that file, to tell a replay from an older stick).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context as _;

/// The live configuration in the provisioning state folder.
pub const LIVE: &str = "gateway.toml";
/// The one before it (`gateway provision rollback` puts it back).
pub const PREVIOUS: &str = "gateway.toml.prev";
/// `<config_version> <sha256 hex>` of the last applied stick.
pub const VERSION: &str = "config_version";

/// [`crate::files::write_atomic`], its error naming the file.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    crate::files::write_atomic(path, data, mode).with_context(|| format!("writing {}", path.display()))
}

/// The last applied version and hash, if any.
pub fn last_version(state: &Path) -> anyhow::Result<Option<(u64, String)>> {
    let path = state.join(VERSION);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut parts = text.split_whitespace();
            let version = parts.next().and_then(|v| v.parse().ok());
            let hash = parts.next().map(str::to_string);
            match (version, hash) {
                (Some(v), Some(h)) => Ok(Some((v, h))),
                // A box that cannot tell its version must not accept any old stick.
                _ => anyhow::bail!("{} is damaged; refusing every stick until it is repaired", path.display()),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| path.display().to_string()),
    }
}

/// Installs `text` as the live configuration of `state`, keeping the current one as the
/// previous; then records its version. Readable by the gateway's group only (it may hold
/// credentials).
pub(crate) fn install(state: &Path, text: &[u8], version: u64, hash: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let (live, previous) = (state.join(LIVE), state.join(PREVIOUS));
    if let Ok(current) = std::fs::read(&live) {
        write_atomic(&previous, &current, 0o640)?;
        give_to_gateway(&previous)?;
    }
    write_atomic(&live, text, 0o640)?;
    give_to_gateway(&live)?;
    write_atomic(&state.join(VERSION), format!("{version} {hash}\n").as_bytes(), 0o644)
}

/// Puts the previous configuration back (once: the previous is consumed). The version record
/// stays: the rolled-back-from stick is not accepted again.
pub fn rollback(state: &Path) -> anyhow::Result<()> {
    let (live, previous) = (state.join(LIVE), state.join(PREVIOUS));
    anyhow::ensure!(previous.exists(), "no previous configuration in {}", state.display());
    crate::config::Config::load(&previous).context("the previous configuration")?;
    std::fs::rename(&previous, &live).with_context(|| format!("renaming {}", previous.display()))?;
    crate::files::sync_dir(state)?;
    Ok(())
}

fn give_to_gateway(path: &Path) -> anyhow::Result<()> {
    if rustix::process::geteuid().is_root() {
        if let Some((_, gid)) = user_ids("gateway") {
            rustix::fs::chown(path, None, Some(gid)).with_context(|| format!("chgrp {}", path.display()))?;
        }
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640))?;
    Ok(())
}

/// A system user's uid and gid from /etc/passwd.
pub(crate) fn user_ids(name: &str) -> Option<(rustix::fs::Uid, rustix::fs::Gid)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let (uid, gid) = (f.nth(1)?.parse().ok()?, f.next()?.parse().ok()?);
        Some((rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_keeps_one_previous_and_records_the_version() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path();
        assert!(last_version(state).unwrap().is_none());
        install(state, b"one", 1, "h1").unwrap();
        install(state, b"two", 2, "h2").unwrap();
        assert_eq!(std::fs::read(state.join(LIVE)).unwrap(), b"two");
        assert_eq!(std::fs::read(state.join(PREVIOUS)).unwrap(), b"one");
        assert_eq!(last_version(state).unwrap(), Some((2, "h2".into())));
        std::fs::write(state.join(VERSION), "garbage").unwrap();
        assert!(last_version(state).is_err());
    }
}
