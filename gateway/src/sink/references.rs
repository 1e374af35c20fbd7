//! Resolving a bundle's `fullUrl`s: every `reference` equal to an entry's `fullUrl` becomes
//! the `Type/id` that entry ended at, as a FHIR server does within a transaction.

use std::collections::HashMap;

use serde_json::Value;

/// Rewrites, anywhere in `value`, each `reference` that `targets` maps. A `urn:uuid:` or
/// `urn:oid:` reference it does not map is returned as an error: it names nothing outside
/// the bundle, so storing it would leave a dangling reference.
pub fn resolve(value: &mut Value, targets: &HashMap<String, String>) -> Result<(), Unresolved> {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(s) if key == "reference" => {
                        if let Some(target) = targets.get(s.as_str()) {
                            *s = target.clone();
                        } else if s.starts_with("urn:uuid:") || s.starts_with("urn:oid:") {
                            return Err(Unresolved);
                        }
                    }
                    _ => resolve(child, targets)?,
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|v| resolve(v, targets)),
        _ => Ok(()),
    }
}

/// A placeholder reference no entry of the bundle resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unresolved;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rewrites_nested_references_and_refuses_dangling_placeholders() {
        let targets = HashMap::from([("urn:uuid:p".to_string(), "Patient/42".to_string())]);
        let mut v = json!({"subject": {"reference": "urn:uuid:p"},
                           "participant": [{"individual": {"reference": "urn:uuid:p", "display": "x"}}],
                           "other": {"reference": "Practitioner/7"}, "note": [{"text": "urn:uuid:q"}]});
        resolve(&mut v, &targets).unwrap();
        assert_eq!(v["subject"]["reference"], "Patient/42");
        assert_eq!(v["participant"][0]["individual"]["reference"], "Patient/42");
        assert_eq!(v["other"]["reference"], "Practitioner/7");
        assert_eq!(v["note"][0]["text"], "urn:uuid:q", "only references are rewritten");
        let mut dangling = json!({"subject": {"reference": "urn:uuid:q"}});
        assert_eq!(resolve(&mut dangling, &targets), Err(Unresolved));
    }
}
