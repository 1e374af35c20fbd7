//! PID-10 race and PID-22 ethnicity → the US Core race and ethnicity extensions on Patient
//! (the IG leaves these fields to local extensions; US Core is what US servers expect).
//!
//! - A code in the CDC Race & Ethnicity code system (CWE.3 `CDCREC`, or `HL70005`/`HL70189`,
//!   whose values are the CDC codes) becomes a coding: `ombCategory` for the OMB categories,
//!   `detailed` for any other code. Other coding systems give no coding (US Core binds both
//!   sub-extensions to CDC codes) — their text is still kept.
//! - `text` (required by US Core): the first repetition's display (CWE.2), else its original
//!   text (CWE.9), else its code. No extension when neither field is sent.

use serde_json::{json, Value};

use crate::hl7::parser::{Field, Rep, Segment};

const EXT_RACE: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race";
const EXT_ETHNICITY: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity";
const CDCREC: &str = "urn:oid:2.16.840.1.113883.6.238";
/// OMB race categories (US Core `omb-race-category`).
const OMB_RACE: [&str; 5] = ["1002-5", "2028-9", "2054-5", "2076-8", "2106-3"];
/// OMB ethnicity categories (US Core `omb-ethnicity-category`).
const OMB_ETHNICITY: [&str; 2] = ["2135-2", "2186-5"];

/// The US Core race (PID-10) and ethnicity (PID-22) extensions the PID carries.
pub fn race_ethnicity(pid: Segment) -> Vec<Value> {
    [(pid.field(10), EXT_RACE, &OMB_RACE[..], "HL70005"), (pid.field(22), EXT_ETHNICITY, &OMB_ETHNICITY[..], "HL70189")]
        .into_iter()
        .filter_map(|(field, url, omb, table)| extension(field, url, omb, table))
        .collect()
}

fn extension(field: Field, url: &str, omb: &[&str], table: &str) -> Option<Value> {
    let part = |rep: &Rep, n: usize| rep.component(n).value().trim().to_string();
    let mut parts: Vec<Value> = Vec::new();
    let mut omb_seen = 0;
    let mut text = String::new();
    for rep in field.reps() {
        if rep.is_null() {
            continue;
        }
        let (code, display) = (part(&rep, 1), part(&rep, 2));
        if text.is_empty() {
            text =
                [display.clone(), part(&rep, 9), code.clone()].into_iter().find(|t| !t.is_empty()).unwrap_or_default();
        }
        let system = part(&rep, 3);
        let cdc = system.eq_ignore_ascii_case("CDCREC") || system.eq_ignore_ascii_case(table);
        if code.is_empty() || !cdc {
            continue;
        }
        // US Core allows one ethnicity category; a further one is kept as detailed.
        let is_omb = omb.contains(&code.as_str()) && (omb.len() > 2 || omb_seen == 0);
        omb_seen += usize::from(is_omb);
        let mut coding = json!({"system": CDCREC, "code": code});
        if !display.is_empty() {
            coding["display"] = json!(display);
        }
        parts.push(json!({"url": if is_omb { "ombCategory" } else { "detailed" }, "valueCoding": coding}));
    }
    if text.is_empty() {
        return None;
    }
    parts.push(json!({"url": "text", "valueString": text}));
    Some(json!({"url": url, "extension": parts}))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::hl7::parser::parse;

    fn exts(pid: &str) -> Vec<serde_json::Value> {
        let raw = format!("MSH|^~\\&|A|F|R|RF|20260101||ADT^A08|1|P|2.5.1\r{pid}\r");
        let msg = parse(raw.as_bytes()).unwrap();
        let pid = msg.segments().find(|s| s.id() == "PID").unwrap();
        super::race_ethnicity(pid)
    }

    #[test]
    fn cdc_codes_become_omb_or_detailed_codings_with_text() {
        let e = exts("PID|1||1^^^X^MR||Doe^J|||||2106-3^White^CDCREC~2029-7^Asian Indian^CDCREC||||||||||||2135-2^Hispanic or Latino^CDCREC");
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0],
            json!({"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [
                {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3", "display": "White"}},
                {"url": "detailed", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2029-7", "display": "Asian Indian"}},
                {"url": "text", "valueString": "White"}
            ]})
        );
        assert_eq!(e[1]["url"], "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity");
        assert_eq!(e[1]["extension"][0]["url"], "ombCategory");
    }

    #[test]
    fn local_codes_keep_only_their_text_and_nothing_sent_gives_nothing() {
        let e = exts("PID|1||1^^^X^MR||Doe^J|||||W^White^LOCAL");
        assert_eq!(
            e,
            [
                json!({"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [{"url": "text", "valueString": "White"}]})
            ]
        );
        // Table 0005 values are the CDC codes; no display → the code is the text.
        let e = exts("PID|1||1^^^X^MR||Doe^J|||||2054-5^^HL70005");
        assert_eq!(e[0]["extension"][0]["valueCoding"]["code"], "2054-5");
        assert_eq!(e[0]["extension"][1]["valueString"], "2054-5");
        assert!(exts("PID|1||1^^^X^MR||Doe^J|||||\"\"").is_empty());
        assert!(exts("PID|1||1^^^X^MR||Doe^J").is_empty());
    }

    #[test]
    fn a_second_ethnicity_category_is_detailed() {
        let e = exts("PID|1||1^^^X^MR||Doe^J|||||||||||||||||2135-2^^CDCREC~2186-5^^CDCREC");
        let urls: Vec<&str> =
            e[0]["extension"].as_array().unwrap().iter().map(|x| x["url"].as_str().unwrap()).collect();
        assert_eq!(urls, ["ombCategory", "detailed", "text"]);
    }
}
