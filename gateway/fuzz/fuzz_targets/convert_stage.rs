//! The daemon's convert path on arbitrary bytes: `pipeline::convert::convert_message` (parse,
//! budget, convert, bundle, serialize) with the default budget, both profiles. It turns a
//! panic into a dead-letter reason so the stage lives on; here that reason is a crash, since
//! it means a defect the guard had to catch (the SIU whose AIS duration overflowed a time
//! span was one). Crash inputs are kept in corpus/convert_stage as regression seeds, replayed
//! by `cargo test` (tests/pipeline.rs).
#![no_main]

use gateway::fhir::bundle::Profile;
use gateway::fhir::site::SiteMaps;
use gateway::pipeline::convert::{convert_message, INTERNAL_ERROR};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn site() -> &'static SiteMaps {
    static S: OnceLock<SiteMaps> = OnceLock::new();
    S.get_or_init(|| SiteMaps::empty(jiff::tz::TimeZone::get("America/New_York").unwrap()))
}

fuzz_target!(|data: &[u8]| {
    for profile in [Profile::Generic, Profile::Salesforce] {
        if let Err(reason) = convert_message(data, site(), profile) {
            assert!(!reason.starts_with(INTERNAL_ERROR), "the converter panicked");
        }
    }
});
