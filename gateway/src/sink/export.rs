//! `gateway sink export`: the sink's resources as NDJSON, one `<Type>.ndjson` per resource
//! type (one line per resource, current version, in creation order), each written atomically
//! (temporary file, fsync, rename; then the folder is fsynced). All files come from one read
//! transaction, so they are one consistent state even while the gateway delivers.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::{ReadError, Sink};
use crate::config::Config;

/// `gateway sink <command>`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Write `<Type>.ndjson` for every resource type in the sink (default: into the sink
    /// folder itself). Safe while the gateway runs.
    Export {
        /// Folder to write to (created if missing).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs a command against the sink named by the config file's `[cloud]` section.
pub fn run(config: &Path, command: Command, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let Some(dir) = config.cloud.sink_dir(&config.dir) else {
        bail!("[cloud] url is set: bundles go to the FHIR server, there is no embedded sink");
    };
    match command {
        Command::Export { out: folder } => {
            let folder = folder.unwrap_or_else(|| dir.clone());
            let sink = Sink::open_read(&dir)?;
            let counts = export(&sink, &folder).with_context(|| format!("export to {}", folder.display()))?;
            for (kind, n) in &counts {
                writeln!(out, "{kind:<28} {n}")?;
            }
            let total: u64 = counts.iter().map(|(_, n)| n).sum();
            writeln!(out, "{total} resources in {} files under {}", counts.len(), folder.display())?;
            Ok(())
        }
    }
}

/// Writes `<Type>.ndjson` into `folder` for every stored type; returns (type, lines).
pub fn export(sink: &Sink, folder: &Path) -> Result<Vec<(String, u64)>, ReadError> {
    std::fs::create_dir_all(folder)?;
    let conn = sink.conn();
    // One snapshot for every file.
    let snapshot = conn.unchecked_transaction()?;
    let mut counts = Vec::new();
    for kind in super::db::types(&snapshot)? {
        let tmp = folder.join(format!(".{kind}.ndjson.tmp"));
        let mut file = BufWriter::new(File::create(&tmp)?);
        let mut lines = 0u64;
        super::db::each_json(&snapshot, &kind, &mut |json| {
            file.write_all(json.as_bytes())?;
            file.write_all(b"\n")?;
            lines += 1;
            Ok(())
        })?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, folder.join(format!("{kind}.ndjson")))?;
        counts.push((kind, lines));
    }
    snapshot.finish()?;
    File::open(folder)?.sync_all()?;
    Ok(counts)
}
