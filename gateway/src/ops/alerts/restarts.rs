//! Whether the previous run stopped cleanly: a marker file beside the journal exists while
//! the daemon runs and is removed at the end of an orderly stop. Found at start, it means the
//! last run was killed, crashed or was restarted by the watchdog (the `restart` alert).

use std::path::{Path, PathBuf};

fn marker(journal: &Path) -> PathBuf {
    let mut p = journal.as_os_str().to_owned();
    p.push(".running");
    PathBuf::from(p)
}

/// Marks this run as started; returns whether the previous one stopped uncleanly.
pub(crate) fn started(journal: &Path) -> bool {
    let path = marker(journal);
    let unclean = path.exists();
    if let Err(e) = std::fs::write(&path, b"") {
        tracing::warn!(error = %e, "cannot write the run marker; an unclean stop will not be noticed");
    }
    unclean
}

/// Marks the run as stopped cleanly.
pub(crate) fn stopped(journal: &Path) {
    let _ = std::fs::remove_file(marker(journal));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_without_a_clean_stop_before_it_is_unclean() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.db");
        assert!(!started(&journal), "first start");
        stopped(&journal);
        assert!(!started(&journal), "after a clean stop");
        assert!(started(&journal), "the previous run never said it stopped");
    }
}
