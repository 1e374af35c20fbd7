//! A counter per message type (`ADT^A15`): type codes are not PHI, but a sender chooses them,
//! so the label set is bounded and the labels are checked.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Distinct labels kept; further types are counted under [`OTHER`].
const MAX_LABELS: usize = 64;
/// The label for types past the first 64.
pub const OTHER: &str = "other";
/// The label for a type that is not a plain code (`TYPE^TRIGGER` of letters, digits and `_`).
pub const INVALID: &str = "invalid";

#[derive(Debug, Default)]
pub struct ByType(Mutex<BTreeMap<String, u64>>);

impl ByType {
    /// Counts one message of `message_type`; true the first time that label is counted (so the
    /// caller logs once per type).
    pub fn count(&self, message_type: &str) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut label = label(message_type);
        if !map.contains_key(label) && map.len() >= MAX_LABELS {
            label = OTHER;
        }
        let n = map.entry(label.to_string()).or_default();
        *n += 1;
        *n == 1
    }

    pub fn get(&self, message_type: &str) -> u64 {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(label(message_type)).copied().unwrap_or(0)
    }

    /// Prometheus lines `name{type="…"} n`, one per label.
    pub fn render(&self, out: &mut String, name: &str) {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (label, n) in map.iter() {
            let _ = writeln!(out, "{name}{{type=\"{label}\"}} {n}");
        }
    }
}

/// `message_type` itself when it is a plain code, else [`INVALID`].
pub fn label(message_type: &str) -> &str {
    let part = |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let plain = message_type.len() <= 20 && message_type.split('^').all(part) && message_type.split('^').count() <= 2;
    if plain {
        message_type
    } else {
        INVALID
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_codes_and_bounded() {
        let by = ByType::default();
        assert!(by.count("ADT^A15"));
        assert!(!by.count("ADT^A15"));
        assert_eq!(by.get("ADT^A15"), 2);
        assert!(by.count("Doe, John\"}"));
        assert_eq!(by.get(INVALID), 1);
        for i in 0..100 {
            by.count(&format!("Z{i:02}^X"));
        }
        let mut out = String::new();
        by.render(&mut out, "m");
        assert_eq!(out.lines().count(), MAX_LABELS + 1, "{out}");
        assert!(out.contains("m{type=\"ADT^A15\"} 2\n"), "{out}");
        assert!(out.contains("m{type=\"other\"} "), "{out}");
    }
}
