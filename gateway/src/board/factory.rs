//! The factory reset the reset button requests: a marker file now, the restore at the next
//! start. Only the configuration file is restored (the old one is kept beside it); the
//! journal, its key and every message in it stay as they are.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::Config;

/// Writes the marker (atomically: a temp file renamed into place).
pub(crate) fn request(marker: &Path, forced: bool) -> std::io::Result<()> {
    if let Some(dir) = marker.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = marker.with_extension("tmp");
    let text = format!("requested_at_ms={}\nforced={forced}\n", crate::clock::now_ms());
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, marker)
}

/// Where the replaced configuration is kept.
pub fn backup_path(config_path: &Path) -> PathBuf {
    let mut name = config_path.file_name().unwrap_or_default().to_os_string();
    name.push(".before-factory-reset");
    config_path.with_file_name(name)
}

/// At start: when a reset was requested and `[board] factory_config` is set, copies the
/// factory config over `config_path` (the old file kept as [`backup_path`]), removes the
/// marker and returns the factory config loaded. Otherwise returns `config` unchanged. A
/// restore that fails leaves the marker and the current config in place (logged): the
/// gateway still starts.
pub fn apply_pending(config_path: &Path, config: Config) -> Config {
    let marker = config.board.reset_marker_path(&config.store);
    let Some(factory) = config.board.factory_config.as_ref().map(|p| p.get_ref().clone()) else {
        return config;
    };
    if !marker.exists() {
        return config;
    }
    match restore(config_path, &factory, &marker) {
        Ok(restored) => {
            tracing::warn!(config = %config_path.display(), factory = %factory.display(), backup = %backup_path(config_path).display(), "factory reset: the factory config is restored (the journal is kept)");
            restored
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "factory reset requested but not applied; running with the current config");
            config
        }
    }
}

fn restore(config_path: &Path, factory: &Path, marker: &Path) -> anyhow::Result<Config> {
    // Check it before replacing anything: a broken factory file must not brick the box.
    let text = std::fs::read_to_string(factory).with_context(|| format!("reading {}", factory.display()))?;
    Config::parse(&text, config_path)?;
    std::fs::copy(config_path, backup_path(config_path))
        .with_context(|| format!("keeping {}", backup_path(config_path).display()))?;
    let tmp = config_path.with_extension("factory.tmp");
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, config_path).with_context(|| format!("replacing {}", config_path.display()))?;
    std::fs::remove_file(marker).with_context(|| format!("removing {}", marker.display()))?;
    Ok(Config::load(config_path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_text(port: u16, board: &str) -> String {
        format!(
            "[store]\npath = \"var/journal.db\"\nkey_file = \"var/journal.key\"\n\n[[listener]]\nname = \"adt\"\nbind = \"127.0.0.1:{port}\"\n\n[board]\n{board}\n"
        )
    }

    #[test]
    fn a_requested_reset_restores_the_factory_config_once_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        let factory = dir.path().join("factory.toml");
        std::fs::write(&factory, config_text(2575, "")).unwrap();
        let current = config_text(3000, "factory_config = \"factory.toml\"");
        std::fs::write(&path, &current).unwrap();
        let config = Config::load(&path).unwrap();
        let marker = config.board.reset_marker_path(&config.store);
        assert_eq!(marker, dir.path().join("var/factory-reset-requested"));

        // No marker: nothing happens.
        let same = apply_pending(&path, config.clone());
        assert_eq!(same.listeners[0].bind.port(), 3000);

        request(&marker, false).unwrap();
        assert!(std::fs::read_to_string(&marker).unwrap().contains("forced=false"));
        let restored = apply_pending(&path, config);
        assert_eq!(restored.listeners[0].bind.port(), 2575);
        assert!(!marker.exists());
        assert_eq!(std::fs::read_to_string(backup_path(&path)).unwrap(), current);
    }

    #[test]
    fn a_broken_factory_config_is_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(dir.path().join("factory.toml"), "[store]\n").unwrap();
        std::fs::write(&path, config_text(3000, "factory_config = \"factory.toml\"")).unwrap();
        let config = Config::load(&path).unwrap();
        let marker = config.board.reset_marker_path(&config.store);
        request(&marker, true).unwrap();
        let kept = apply_pending(&path, config);
        assert_eq!(kept.listeners[0].bind.port(), 3000);
        assert!(marker.exists(), "the request stays for an operator to see");
        assert!(!backup_path(&path).exists());
    }
}
