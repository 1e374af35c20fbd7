//! `gateway convert FILE`: converts each message with the site maps of a configuration file
//! and prints the FHIR Bundles as the daemon would send them: JSON on stdout (one
//! pretty-printed document per Bundle, in sending order, so a message is a JSON stream when it
//! takes several — `jq -s` reads it), the conversion report on stderr. The generic profile's
//! transactions are split under the file's `[cloud]` limits ([`super::load_limits`]); the
//! memory of earlier messages the daemon has is not used (each message stands alone).

use std::io::Write;
use std::path::Path;

use super::{load_limits, load_site, read_input, split_input};
use crate::fhir::bundle::{self, Profile};
use crate::fhir::convert;

/// `gateway convert FILE`: Bundles on `out`, the report of each message on `err`. Fails when
/// a message cannot be converted or bundled (after handling the others).
pub fn convert_command(
    config: Option<&Path>,
    profile: Profile,
    input: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let site = load_site(config)?;
    let limits = load_limits(config)?;
    let raw = read_input(input)?;
    let msgs = split_input(&raw, input, err)?;
    let mut failed = 0;
    for (n, m) in msgs.iter().enumerate() {
        let label = if msgs.len() > 1 { format!("message {} of {}", n + 1, msgs.len()) } else { "message".to_string() };
        let conv = match convert::convert(m, &site) {
            Ok(c) => c,
            Err(e) => {
                failed += 1;
                writeln!(err, "{label}: cannot be converted: {e}")?;
                continue;
            }
        };
        let bundles = match bundle::bundles_within(&conv, profile, limits) {
            Ok(b) => b,
            Err(e) => {
                failed += 1;
                writeln!(err, "{label} (MSH-10 {}): cannot be bundled: {e}", conv.control_id)?;
                continue;
            }
        };
        for b in &bundles {
            serde_json::to_writer_pretty(&mut *out, b)?;
            writeln!(out)?;
        }
        let entries: usize = bundles.iter().map(|b| b["entry"].as_array().map_or(0, Vec::len)).sum();
        let r = &conv.report;
        writeln!(err, "{label} (MSH-10 {}): structure {}", conv.control_id, r.structure)?;
        writeln!(
            err,
            "  {} resources in {} {profile} bundle(s), {entries} entries",
            conv.resources.len(),
            bundles.len()
        )?;
        let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
        writeln!(err, "  unconsumed segments: {}", list(&r.unconsumed))?;
        writeln!(err, "  unmapped codes: {}", list(&r.unmapped_codes))?;
        writeln!(err, "  authorities keyed under default_identifier_system: {}", list(&r.default_systems))?;
        writeln!(err, "  types with a keyless resource: {}", list(&r.keyless))?;
        if r.warnings.is_empty() {
            writeln!(err, "  warnings: none")?;
        } else {
            writeln!(err, "  warnings:")?;
            for w in &r.warnings {
                writeln!(err, "    - {w}")?;
            }
        }
    }
    out.flush()?;
    if failed > 0 {
        anyhow::bail!("{failed} of {} messages could not be converted", msgs.len());
    }
    Ok(())
}
