//! Parser and converter on arbitrary bytes: parsing, grouping, path lookups, conversion and
//! both bundle profiles must never panic; every bundle serializes; converting twice gives the
//! same bytes (determinism); the parser's index stays proportional to the input.
#![no_main]

use gateway::fhir::bundle::{self, Profile};
use gateway::fhir::convert;
use gateway::fhir::site::SiteMaps;
use gateway::hl7::{parser, structure};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn site() -> &'static SiteMaps {
    static S: OnceLock<SiteMaps> = OnceLock::new();
    S.get_or_init(|| SiteMaps::empty(jiff::tz::TimeZone::get("America/New_York").unwrap()))
}

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = parser::parse(data) else { return };
    for seg in msg.segments() {
        for f in 0..seg.field_count() + 2 {
            let field = seg.field(f);
            for rep in field.reps() {
                for c in rep.components() {
                    let _ = c.value();
                }
            }
        }
    }
    for path in ["PID-3", "PID-3[2].4.1", "OBX(2)-5", "MSH-9.2", "PV1-3.1.1", "ZZZ-999[9].9.9"] {
        let _ = msg.get(path);
    }
    let _ = structure::group(&msg);
    let Ok(first) = convert::convert(data, site()) else { return };
    let again = convert::convert(data, site()).expect("second conversion of the same input");
    for profile in [Profile::Generic, Profile::Salesforce] {
        let a = bundle::bundles(&first, profile);
        let b = bundle::bundles(&again, profile);
        match (a, b) {
            (Ok(a), Ok(b)) => {
                let (a, b) = (serde_json::to_vec(&a).unwrap(), serde_json::to_vec(&b).unwrap());
                assert_eq!(a, b, "same input, same bundles");
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("nondeterministic bundling: {:?} vs {:?}", a.is_ok(), b.is_ok()),
        }
    }
});
