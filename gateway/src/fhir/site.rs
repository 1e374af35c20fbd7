//! Per-site mapping configuration: the site time zone, identifier systems per assigning
//! authority, and code maps (local code → standard code) loaded from CSV files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;

use super::budget::Budget;
use serde::Deserialize;

/// The `[mapping]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// IANA zone for timestamps sent without an offset (never the host's zone).
    #[serde(default = "default_zone")]
    pub time_zone: String,
    /// Assigning authority (CX.4.1 / HD namespace), or `AUTHORITY^TYPE` (CX.4.1^CX.5) for one
    /// authority's different identifier types → identifier system URI.
    #[serde(default)]
    pub identifier_systems: HashMap<String, String>,
    /// The system of an identifier whose assigning authority is not in `identifier_systems`:
    /// `{authority}` is replaced by the authority (an OID gives `urn:oid:…` without this), so
    /// a site's records keep one stable key before anyone maps the authority.
    #[serde(default = "default_identifier_system")]
    pub default_identifier_system: String,
    /// PID-3 identifier types (CX.5, table 0203) that may key a Patient, in order of
    /// preference. An identifier sent without a type comes after them; SSN, driver's licence
    /// and other types never key a record.
    #[serde(default = "default_patient_identifier_types")]
    pub patient_identifier_types: Vec<String>,
    /// CSV files: `source_system,source_code,target_system,target_code,target_display`.
    #[serde(default)]
    pub code_maps: Vec<PathBuf>,
    /// Z-segments the site maps: segment ID → extension URL. Each such segment becomes an
    /// extension on the message's Patient (one sub-extension `<ID>-<n>` per valued field);
    /// Z-segments not listed are kept in the journal and reported as unconsumed.
    #[serde(default)]
    pub z_segments: BTreeMap<String, String>,
    /// How large a message the converter takes on, and for how long (`[mapping.budget]`).
    #[serde(default)]
    pub budget: Budget,
}

fn default_zone() -> String {
    "UTC".into()
}

/// See [`MappingConfig::default_identifier_system`].
pub const DEFAULT_IDENTIFIER_SYSTEM: &str = "urn:hl7v2-gateway:authority:{authority}";

fn default_identifier_system() -> String {
    DEFAULT_IDENTIFIER_SYSTEM.into()
}

fn default_patient_identifier_types() -> Vec<String> {
    ["MR", "PI", "PT", "PN"].map(String::from).to_vec()
}

impl Default for MappingConfig {
    fn default() -> Self {
        MappingConfig {
            time_zone: default_zone(),
            identifier_systems: HashMap::new(),
            default_identifier_system: default_identifier_system(),
            patient_identifier_types: default_patient_identifier_types(),
            code_maps: Vec::new(),
            z_segments: BTreeMap::new(),
            budget: Budget::default(),
        }
    }
}

/// A standard coding a local code maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedCode {
    pub system: String,
    pub code: String,
    pub display: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("[mapping] time_zone {0:?} is not an IANA time zone name")]
    Zone(String),
    #[error("[mapping] default_identifier_system {0:?} must contain {{authority}} once and be a URI (`urn:` or `http(s)://`)")]
    DefaultSystem(String),
    #[error("code map {path}:{line}: {message}")]
    CodeMap { path: String, line: u64, message: String },
}

/// Loaded site maps, ready for the converter.
#[derive(Debug, Clone)]
pub struct SiteMaps {
    pub zone: TimeZone,
    pub identifier_systems: HashMap<String, String>,
    /// `default_identifier_system` split at `{authority}`.
    default_system: (String, String),
    /// `patient_identifier_types`, upper case.
    pub patient_identifier_types: Vec<String>,
    codes: HashMap<(String, String), MappedCode>,
    pub z_segments: BTreeMap<String, String>,
    pub budget: Budget,
}

impl SiteMaps {
    /// Loads code map files; relative paths are resolved against `base`.
    pub fn load(config: &MappingConfig, base: &Path) -> Result<SiteMaps, SiteError> {
        let zone = TimeZone::get(&config.time_zone).map_err(|_| SiteError::Zone(config.time_zone.clone()))?;
        let default_system = split_template(&config.default_identifier_system)
            .ok_or_else(|| SiteError::DefaultSystem(config.default_identifier_system.clone()))?;
        let mut codes = HashMap::new();
        for file in &config.code_maps {
            let path = base.join(file);
            load_code_map(&path, &mut codes)?;
        }
        Ok(SiteMaps {
            zone,
            identifier_systems: config.identifier_systems.clone(),
            default_system,
            patient_identifier_types: config
                .patient_identifier_types
                .iter()
                .map(|t| t.trim().to_ascii_uppercase())
                .collect(),
            codes,
            z_segments: config.z_segments.clone(),
            budget: config.budget,
        })
    }

    /// Maps with no entries, in the given zone (tests, CLI without a config).
    pub fn empty(zone: TimeZone) -> SiteMaps {
        SiteMaps {
            zone,
            identifier_systems: HashMap::new(),
            default_system: split_template(DEFAULT_IDENTIFIER_SYSTEM).expect("the default template is valid"),
            patient_identifier_types: default_patient_identifier_types(),
            codes: HashMap::new(),
            z_segments: BTreeMap::new(),
            budget: Budget::default(),
        }
    }

    /// The standard coding for a local `(coding system name, code)`, if the site maps it.
    pub fn code(&self, system: &str, code: &str) -> Option<&MappedCode> {
        self.codes.get(&(system.to_string(), code.to_string()))
    }

    /// The system for an assigning authority the site has not mapped, from
    /// `default_identifier_system`. Characters outside RFC 3986's unreserved set are
    /// percent-encoded, so any authority name gives a valid URI.
    pub fn default_system(&self, authority: &str) -> String {
        let (head, tail) = &self.default_system;
        let mut out = String::with_capacity(head.len() + authority.len() + tail.len());
        out.push_str(head);
        for b in authority.trim().bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out.push_str(tail);
        out
    }

    /// The authority a [`default_system`](Self::default_system) was made from, if `system` is one.
    pub fn default_system_authority<'s>(&self, system: &'s str) -> Option<&'s str> {
        let (head, tail) = &self.default_system;
        system.strip_prefix(head.as_str())?.strip_suffix(tail.as_str())
    }

    pub fn insert_code(&mut self, system: &str, code: &str, target: MappedCode) {
        self.codes.insert((system.to_string(), code.to_string()), target);
    }
}

/// `urn:…{authority}…` → the parts before and after the placeholder; `None` unless it occurs
/// exactly once in a `urn:` or `http(s)://` URI.
fn split_template(template: &str) -> Option<(String, String)> {
    let (head, tail) = template.split_once("{authority}")?;
    let uri = ["urn:", "http://", "https://"].iter().any(|p| head.starts_with(p));
    (uri && !tail.contains("{authority}") && !template.contains(char::is_whitespace))
        .then(|| (head.to_string(), tail.to_string()))
}

fn load_code_map(path: &Path, into: &mut HashMap<(String, String), MappedCode>) -> Result<(), SiteError> {
    let err = |line: u64, message: String| SiteError::CodeMap { path: path.display().to_string(), line, message };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| err(0, e.to_string()))?;
    for record in reader.records() {
        let record = record.map_err(|e| err(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        if record.len() < 4 {
            return Err(err(
                line,
                format!(
                    "expected 5 columns (source_system,source_code,target_system,target_code,target_display), found {}",
                    record.len()
                ),
            ));
        }
        let target = MappedCode {
            system: record[2].to_string(),
            code: record[3].to_string(),
            display: record.get(4).unwrap_or("").to_string(),
        };
        if target.system.is_empty() || target.code.is_empty() {
            return Err(err(line, "target_system and target_code must not be empty".into()));
        }
        into.insert((record[0].to_string(), record[1].to_string()), target);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_code_maps_and_reports_bad_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("lab.csv"), "source_system,source_code,target_system,target_code,target_display\nL,GLU,http://loinc.org,2345-7,\"Glucose [Mass/volume] in Serum or Plasma\"\n").unwrap();
        std::fs::write(dir.join("bad.csv"), "a,b,c,d,e\nL,X,,1,y\n").unwrap();
        let config = MappingConfig {
            time_zone: "America/New_York".into(),
            code_maps: vec!["lab.csv".into()],
            ..Default::default()
        };
        let maps = SiteMaps::load(&config, dir).unwrap();
        assert_eq!(maps.code("L", "GLU").unwrap().code, "2345-7");
        assert_eq!(maps.code("L", "GLU").unwrap().display, "Glucose [Mass/volume] in Serum or Plasma");
        assert!(maps.code("L", "NA").is_none());
        let bad = MappingConfig { code_maps: vec!["bad.csv".into()], ..Default::default() };
        let e = SiteMaps::load(&bad, dir).unwrap_err().to_string();
        assert!(e.contains("bad.csv:2"), "{e}");
        let zone = MappingConfig { time_zone: "Mars/Olympus".into(), ..Default::default() };
        assert!(SiteMaps::load(&zone, dir).is_err());
    }
}
