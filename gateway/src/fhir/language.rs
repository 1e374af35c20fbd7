//! Languages: HL7 table 0296 / ISO 639-2 codes (PID-15 `eng`, `SPA`, …) → BCP-47 (`en`,
//! `es`, …), the code system FHIR binds `communication.language` to. The original coding
//! stays first; the BCP-47 one is added after it.

use serde_json::{json, Value};

/// BCP-47 system.
const BCP47: &str = "urn:ietf:bcp:47";

/// ISO 639-2 (bibliographic and terminologic forms) → ISO 639-1, the languages US and
/// European feeds send most; a code not listed keeps its original coding only.
const ISO639_2_TO_1: [(&str, &str); 40] = [
    ("ara", "ar"),
    ("arm", "hy"),
    ("hye", "hy"),
    ("ben", "bn"),
    ("chi", "zh"),
    ("zho", "zh"),
    ("cze", "cs"),
    ("ces", "cs"),
    ("dan", "da"),
    ("dut", "nl"),
    ("nld", "nl"),
    ("eng", "en"),
    ("fre", "fr"),
    ("fra", "fr"),
    ("ger", "de"),
    ("deu", "de"),
    ("gre", "el"),
    ("ell", "el"),
    ("guj", "gu"),
    ("hat", "ht"),
    ("heb", "he"),
    ("hin", "hi"),
    ("ita", "it"),
    ("jpn", "ja"),
    ("kor", "ko"),
    ("per", "fa"),
    ("fas", "fa"),
    ("pol", "pl"),
    ("por", "pt"),
    ("pan", "pa"),
    ("rus", "ru"),
    ("som", "so"),
    ("spa", "es"),
    ("swe", "sv"),
    ("tgl", "tl"),
    ("tur", "tr"),
    ("ukr", "uk"),
    ("urd", "ur"),
    ("vie", "vi"),
    ("yid", "yi"),
];

/// Coding system names under which a 3-letter code is an ISO 639-2 language.
fn is_language_system(name: &str) -> bool {
    name.is_empty() || ["HL70296", "ISO6392", "ISO639"].iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The BCP-47 code of a table 0296 / ISO 639-2 code (case-insensitive).
pub fn bcp47(code: &str, system_name: &str) -> Option<&'static str> {
    if !is_language_system(system_name.trim()) {
        return None;
    }
    let code = code.trim().to_ascii_lowercase();
    ISO639_2_TO_1.iter().find(|(three, _)| *three == code).map(|(_, two)| *two)
}

/// `concept` (PID-15 as sent) with the BCP-47 coding appended when `code`/`system_name`
/// name a known language and the concept has no BCP-47 coding yet.
pub fn with_bcp47(mut concept: Value, code: &str, system_name: &str) -> Value {
    let Some(tag) = bcp47(code, system_name) else { return concept };
    let Some(codings) = concept.get_mut("coding").and_then(Value::as_array_mut) else { return concept };
    if !codings.iter().any(|c| c["system"] == BCP47) {
        codings.push(json!({"system": BCP47, "code": tag}));
    }
    concept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_0296_and_iso_codes_map_to_bcp47() {
        assert_eq!(bcp47("eng", "HL70296"), Some("en"));
        assert_eq!(bcp47("SPA", ""), Some("es"));
        assert_eq!(bcp47("fre", "ISO6392"), Some("fr"));
        assert_eq!(bcp47("xyz", "HL70296"), None);
        // Another coding system's "eng" is not a language code.
        assert_eq!(bcp47("eng", "LOCAL"), None);
    }

    #[test]
    fn the_bcp47_coding_is_added_after_the_original() {
        let sent = json!({"coding": [{"code": "eng", "display": "English"}], "text": "English"});
        let v = with_bcp47(sent, "eng", "ISO6392");
        assert_eq!(v["coding"][0]["code"], "eng");
        assert_eq!(v["coding"][1], json!({"system": "urn:ietf:bcp:47", "code": "en"}));
        assert_eq!(with_bcp47(Value::Null, "eng", ""), Value::Null);
    }
}
