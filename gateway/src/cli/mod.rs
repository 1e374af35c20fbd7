//! The operators' tools that look at a message the way the gateway reads it, one file per
//! command, and what they share: reading the input file (batch files split), the site maps of
//! a configuration file, and the error line an operator sees.
//!
//! - `parse`: `gateway parse` prints each message of a file as an indented tree.
//! - `convert`: `gateway convert` prints the FHIR Bundles of each message and its report.
//! - `report`: `gateway report <seq>` prints the conversion report the daemon kept.
//! - `health`: `gateway health` is the boot health gate (config, journal, the running daemon).
//! - `provision`: `gateway provision` applies a USB stick; `keygen`, `sign`, `verify` for the office.
//! - `update`: `gateway update …`, signed A/B updates (docs/UPDATES.md).
//!
//! The input may be a single message, several concatenated ones or an FHS/BHS batch file
//! (split with [`crate::hl7::batch::split`]); `-` reads standard input. A message that fails
//! does not stop the others, but the command then fails.
//!
//! Both print patient data: they are tools for an integration engineer at the appliance's
//! console, not for logs.

pub(crate) mod check_config;
pub(crate) mod convert;
pub(crate) mod health;
pub(crate) mod parse;
pub(crate) mod provision;
pub(crate) mod report;
pub(crate) mod status;
pub mod update;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::config::Cloud;
use crate::fhir::bundle::TxLimits;
use crate::fhir::site::{MappingConfig, SiteMaps};
use crate::hl7::batch::{self, BatchWarning};

pub use check_config::{check_config_command, preflight};
pub use convert::convert_command;
pub use health::health_command;
pub use parse::parse_command;
pub use provision::{provision_command, ProvisionArgs};
pub use report::report_command;
pub use status::status_command;

/// An error and its causes for the operator, each said once: the gateway's errors leave their
/// cause to the chain, but some of other crates' also quote it (rusqlite's failures without a
/// message), and `{:#}` would print it again.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// Reads `path`, or standard input for `-`.
pub(crate) fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("reading standard input")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Only the `[mapping]` section of a configuration file; other sections are ignored here
/// (the full file is checked by `gateway check-config`).
#[derive(Debug, Default, Deserialize)]
struct MappingSection {
    #[serde(default)]
    mapping: Option<MappingConfig>,
}

/// The site maps of a configuration file's `[mapping]` section (defaults when absent), with
/// relative code map paths resolved against the file's folder. `None`: no site maps, UTC.
pub fn load_site(config: Option<&Path>) -> anyhow::Result<SiteMaps> {
    let Some(path) = config else {
        return Ok(SiteMaps::empty(TimeZone::UTC));
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let section: MappingSection = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        anyhow::anyhow!("{}:{line}: {}", path.display(), e.message().trim_end())
    })?;
    let mapping = section.mapping.unwrap_or_default();
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    SiteMaps::load(&mapping, &base).with_context(|| format!("{}: [mapping]", path.display()))
}

/// Only the `[cloud]` section of a configuration file (for the transaction limits).
#[derive(Debug, Default, Deserialize)]
struct CloudSection {
    #[serde(default)]
    cloud: Cloud,
}

/// The limits the generic profile's transactions are split under, as the daemon with this
/// configuration file sends them ([`Cloud::transaction_limits`]: `[cloud]
/// transaction_max_entries`/`transaction_max_updates` for a server, none for the local sink).
/// Without a file: a server's defaults, which a Medplum server accepts.
pub(crate) fn load_limits(config: Option<&Path>) -> anyhow::Result<TxLimits> {
    let Some(path) = config else {
        return Ok(TxLimits::default());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let section: CloudSection = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        anyhow::anyhow!("{}:{line}: {}", path.display(), e.message().trim_end())
    })?;
    Ok(section.cloud.transaction_limits())
}

/// The messages of a file, with a warning line per batch protocol deviation.
fn messages(raw: &[u8]) -> (Vec<&[u8]>, Vec<String>) {
    let split = batch::split(raw);
    let warnings = split.warnings.iter().map(describe_batch_warning).collect();
    (split.messages, warnings)
}

fn describe_batch_warning(w: &BatchWarning) -> String {
    match w {
        BatchWarning::MessageCountMismatch { batch, declared, found } => {
            format!("batch {}: BTS-1 declares {declared} messages, found {found}", batch + 1)
        }
        BatchWarning::BatchCountMismatch { declared, found } => {
            format!("FTS-1 declares {declared} batches, found {found}")
        }
        BatchWarning::UnreadableCount { batch: Some(b) } => format!("batch {}: BTS-1 is not a number", b + 1),
        BatchWarning::UnreadableCount { batch: None } => "FTS-1 is not a number".into(),
        BatchWarning::MissingBatchTrailer { batch } => format!("batch {}: no BTS", batch + 1),
        BatchWarning::MissingFileTrailer => "FHS without FTS".into(),
        BatchWarning::StraySegment { offset, id } => format!("{id} segment outside any message at byte {offset}"),
    }
}

/// The messages of an input file (batch files split), with batch warnings on `err`; an
/// error when there is none.
pub(crate) fn split_input<'r>(raw: &'r [u8], input: &Path, err: &mut dyn Write) -> anyhow::Result<Vec<&'r [u8]>> {
    let (msgs, warnings) = messages(raw);
    for w in &warnings {
        writeln!(err, "warning: {w}")?;
    }
    if msgs.is_empty() {
        anyhow::bail!("{}: no HL7 message (no MSH segment) found", input.display());
    }
    Ok(msgs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("journal {path}: {source}")]
        struct Open {
            path: String,
            source: std::io::Error,
        }
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = anyhow::Error::new(Open { path: "j.db".into(), source: io }).context("start-up");
        assert_eq!(format!("{e:#}"), "start-up: journal j.db: No such file or directory: No such file or directory");
        assert_eq!(error_chain(&e), "start-up: journal j.db: No such file or directory");
    }

    #[test]
    fn site_maps_from_a_config_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("maps")).unwrap();
        std::fs::write(dir.join("maps/lab.csv"), "source_system,source_code,target_system,target_code,target_display\nL,GLU,http://loinc.org,2345-7,Glucose\n").unwrap();
        let cfg = dir.join("site.toml");
        std::fs::write(
            &cfg,
            "[store]\npath = \"x\"\n\n[mapping]\ntime_zone = \"America/Chicago\"\ncode_maps = [\"maps/lab.csv\"]\n",
        )
        .unwrap();
        let site = load_site(Some(&cfg)).unwrap();
        assert_eq!(site.code("L", "GLU").unwrap().code, "2345-7");
        // No [mapping] section: defaults.
        std::fs::write(&cfg, "[store]\npath = \"x\"\n").unwrap();
        assert!(load_site(Some(&cfg)).unwrap().code("L", "GLU").is_none());
        // A bad [mapping] names the file.
        std::fs::write(&cfg, "[mapping]\ntime_zone = 3\n").unwrap();
        let e = format!("{:#}", load_site(Some(&cfg)).unwrap_err());
        assert!(e.contains("site.toml"), "{e}");
    }
}
