//! Per message structure: which groups and segments become which resources.

pub mod adt;
pub mod adt_records;
pub mod billing;
pub mod mdm;
pub mod order;
pub mod oru;
pub mod oul;
pub mod pharmacy;
pub mod problem;
pub mod referral;
pub mod siu;
pub mod vxu;

/// The HL7 corpus (`tests/corpus/hl7`) and its expected resource counts
/// (`tests/corpus/expected.json`), for the message maps' unit tests.
// Inline so that the conformance test, which takes the converter's string literals from
// these sources up to the first `#[cfg(test)]`, does not count the helper's as the converter's.
#[cfg(test)]
pub(crate) mod test_corpus {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use serde_json::Value;

    use crate::fhir::convert::convert;
    use crate::fhir::site::SiteMaps;

    fn corpus_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus")
    }

    fn expected() -> Value {
        serde_json::from_str(&std::fs::read_to_string(corpus_dir().join("expected.json")).unwrap()).unwrap()
    }

    /// True when a JSON value holds an empty string, array or object (or a null) anywhere.
    fn has_empty(v: &Value) -> bool {
        match v {
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty() || a.iter().any(has_empty),
            Value::Object(o) => o.is_empty() || o.values().any(has_empty),
            Value::Null => true,
            _ => false,
        }
    }

    /// Converts every corpus file of `expected.json` whose name contains one of `families`
    /// (`"_oru_r01_"`), asserting there are `files` of them, that each has the expected structure
    /// and that no resource holds an empty value; returns the resource counts that differ from
    /// the expected ones (for the types listed there).
    pub(crate) fn check_corpus(families: &[&str], files: usize) -> Vec<String> {
        let expected = expected();
        let mut failures = Vec::new();
        let mut checked = 0;
        for (name, exp) in expected.as_object().unwrap() {
            if !families.iter().any(|f| name.contains(f)) {
                continue;
            }
            checked += 1;
            let raw = std::fs::read(corpus_dir().join("hl7").join(name)).unwrap();
            let c = convert(&raw, &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
            let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
            for r in &c.resources {
                *counts.entry(r.kind).or_default() += 1;
                assert!(!has_empty(&r.body.clone().value()), "{name}: {} has an empty value", r.key);
            }
            assert_eq!(exp["structure"], c.report.structure, "{name}");
            for (kind, n) in exp["resources"].as_object().unwrap() {
                let got = counts.get(kind.as_str()).copied().unwrap_or(0);
                if got != n.as_u64().unwrap() {
                    failures.push(format!("{name}: {kind} expected {n}, got {got}"));
                }
            }
        }
        assert_eq!(checked, files, "corpus files of {families:?} in expected.json");
        failures
    }
}
