//! What happens at boot (two units, image/systemd):
//! - `gateway update boot-check`, before the gateway starts: if the booted version is older
//!   than the last applied one, the applied slot did not stay booted (systemd-boot fell back
//!   after its tries): count a rollback once per applied version, and say so in the journal
//!   with a stable `MESSAGE_ID` (the gateway reads the count for
//!   `gateway_update_rollbacks_total`).
//! - `gateway update confirm`, after `boot-complete.target` (the health gate passed): the
//!   floor rises to the running version. Only a blessed boot raises it, so a slot that never
//!   passes the health gate never locks the box out of the version it came from.

use std::path::Path;

use super::state::{self, Rollbacks};
use super::Version;
use crate::config::Update;

/// `MESSAGE_ID` of the journal entry of a rollback (`journalctl MESSAGE_ID=…`).
pub const ROLLBACK_MESSAGE_ID: &str = "6d1f1c5e0b8a4c2f9e3a7b4d2c1e0f58";
/// `MESSAGE_ID` of the journal entry of a raised floor.
pub const FLOOR_MESSAGE_ID: &str = "a3c47e2b91d54f6c8e0b1d2f3a4c5e69";

/// A rollback found at boot.
#[derive(Debug, PartialEq, Eq)]
pub struct Rollback {
    pub failed: Version,
    pub running: Version,
}

/// Detects (and records it once per applied update) a rollback. `None`: none, or already recorded.
pub fn check_rollback(cfg: &Update, now: jiff::Timestamp) -> anyhow::Result<Option<Rollback>> {
    let (Some(running), Some(applied)) = (state::running_version(&cfg.os_release)?, state::applied(&cfg.state_dir)?)
    else {
        return Ok(None);
    };
    let mut record = state::rollbacks(&cfg.state_dir)?;
    if running >= applied.version || record.applied_at.as_ref() == Some(&applied.at) {
        return Ok(None);
    }
    record = Rollbacks {
        count: record.count + 1,
        last_failed: Some(applied.version.clone()),
        last_running: Some(running.clone()),
        last_at: Some(now.to_string()),
        applied_at: Some(applied.at.clone()),
    };
    state::set_rollbacks(&cfg.state_dir, &record)?;
    let text = format!(
        "update rolled back: version {} did not stay booted, running {running} (rollback {} on this box)",
        applied.version, record.count
    );
    journal(ROLLBACK_MESSAGE_ID, 4, &text);
    Ok(Some(Rollback { failed: applied.version, running }))
}

/// Raises the floor to the running version (never lowers it). Returns the new floor if it
/// moved.
pub fn confirm(cfg: &Update) -> anyhow::Result<Option<Version>> {
    let Some(running) = state::running_version(&cfg.os_release)? else {
        anyhow::bail!("{}: no IMAGE_VERSION: cannot raise the floor", cfg.os_release.display());
    };
    if state::floor(&cfg.state_dir)?.is_some_and(|f| f >= running) {
        return Ok(None);
    }
    state::set_floor(&cfg.state_dir, &running)?;
    journal(FLOOR_MESSAGE_ID, 6, &format!("update: boot of {running} blessed, version floor raised to it"));
    Ok(Some(running))
}

/// The rollback count for the metric (0 when unknown).
pub fn rollback_count(state_dir: &Path) -> u64 {
    state::rollbacks(state_dir).map(|r| r.count).unwrap_or(0)
}

/// One journal entry with structured fields, over journald's native socket; on stderr as
/// well (the unit's output goes to the journal too, without the fields).
fn journal(message_id: &str, priority: u8, text: &str) {
    eprintln!("{text}");
    let entry =
        format!("MESSAGE_ID={message_id}\nPRIORITY={priority}\nSYSLOG_IDENTIFIER=gateway-update\nMESSAGE={text}\n");
    if let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = sock.send_to(entry.as_bytes(), "/run/systemd/journal/socket");
    }
}
