//! PR1 → Procedure (IG `PR1[Procedure]`).
//!
//! - status: the IG leaves it to the message context and says `unknown` when unclear; an ADT's
//!   PR1 is a record of a procedure whose state the segment does not give, so `unknown`.
//! - code PR1-3 (text PR1-4 when PR1-3.9 is empty); category PR1-6 (table 0230); reasonCode PR1-15;
//!   identifier PR1-19; location PR1-23 (first repetition).
//! - performed: PR1-5 as `performedDateTime`; with PR1-7 minutes and PR1-5 precise to the
//!   minute, `performedPeriod` start PR1-5, end PR1-5 + PR1-7 minutes.
//! - performers: PR1-8 anesthesiologist (SNOMED 88189002), PR1-11 surgeon (304292004), PR1-12
//!   procedure practitioner (no function), first repetition each, as the IG numbers them.
//! - Not mapped: PR1-16 modifiers (the IG joins them to the code), PR1-25 parent procedure,
//!   ROL in the group (left unconsumed, so reported).
//!
//! Key: PR1-19, else the patient + PR1-3 code (else PR1-4 text) + PR1-5 time.

use serde_json::{json, Value};

use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::{coded_key, table_concept, val};
use crate::hl7::parser::Segment;

const SNOMED: &str = "http://snomed.info/sct";
const ANESTHESIOLOGIST: &str = "88189002";
const SURGEON: &str = "304292004";

/// Maps PR1 to a Procedure of `patient` (and `encounter`), adds it and returns its key
/// (`Procedure/pr1-<segment index>`). Consumes PR1.
pub fn procedure(ctx: &mut Ctx, pr1: Segment, patient: &str, encounter: Option<&str>) -> String {
    ctx.consume(pr1.index());
    let mut code = datatypes::codeable_concept(pr1.field(3).rep(1), ctx.site, ctx.at(pr1, 3));
    let description = val(pr1.field(4));
    if !description.is_empty() && pr1.field(3).rep(1).component(9).value().trim().is_empty() {
        if code.is_null() {
            code = json!({});
        }
        code["text"] = json!(description);
    }
    let when = val(pr1.field(5));
    let start = datatypes::datetime(&when, ctx.site, ctx.at(pr1, 5));
    let minutes = val(pr1.field(7)).parse::<i64>().ok().filter(|m| *m >= 0);
    let end = match (start.as_str(), minutes) {
        (Some(s), Some(m)) if when.len() >= 12 => plus_minutes(s, m),
        _ => None,
    };
    let mut performers = Vec::new();
    for (field, function) in [(8, Some(ANESTHESIOLOGIST)), (11, Some(SURGEON)), (12, None)] {
        let Some(p) = datatypes::practitioner(pr1.field(field).rep(1), ctx.site) else { continue };
        let actor = reference(&ctx.add(p));
        let function = function.map(|code| json!({"coding": [{"system": SNOMED, "code": code}]}));
        performers.push(Obj::new().set("function", function).set("actor", actor).value());
    }
    let location = super::observation::location_ref(ctx, pr1.field(23).rep(1)).map(|k| reference(&k));
    let (id, identity) =
        datatypes::ei_identifier(pr1.field(19).rep(1), ctx.site).map_or((Value::Null, None), |(v, i)| (v, i));
    let mut body = Obj::new()
        .list("identifier", [id])
        .set("status", "unknown")
        .set("category", table_concept(ctx, pr1.field(6).rep(1), "0230", true))
        .set("code", code)
        .set("subject", reference(patient))
        .set("encounter", encounter.map(reference));
    body = match end {
        Some(end) => body.set("performedPeriod", json!({"start": start, "end": end})),
        None => body.set("performedDateTime", start),
    };
    let body = body
        .list("performer", performers)
        .set("location", location)
        .list("reasonCode", [datatypes::codeable_concept(pr1.field(15).rep(1), ctx.site, ctx.at(pr1, 15))]);
    let identity = identity.or_else(|| {
        let what = match coded_key(pr1.field(3).rep(1)) {
            c if c.is_empty() => description.clone(),
            c => c,
        };
        Identity::source_key("Procedure", &[&ctx.token_of(patient), &what, &when])
    });
    let key = format!("Procedure/pr1-{}", pr1.index());
    ctx.add(Resource { kind: "Procedure", key, identity, body, write: Write::Upsert })
}

/// A FHIR dateTime with a time of day (`2026-03-15T07:59:00-05:00`) plus `minutes`, in the
/// same offset. `None` for a date without time.
fn plus_minutes(start: &str, minutes: i64) -> Option<String> {
    let civil: jiff::civil::DateTime = start.get(..19)?.parse().ok()?;
    // The offset (or Z) after the seconds and any fraction.
    let rest = &start[19..];
    let offset = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let end = civil.checked_add(jiff::Span::new().minutes(minutes)).ok()?;
    Some(format!("{}{offset}", end.strftime("%Y-%m-%dT%H:%M:%S")))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::fhir::convert::convert;
    use crate::fhir::site::SiteMaps;

    const ADT: &str = "MSH|^~\\&|EHR|HOSP|GW|CLOUD|20260320120000-0500||ADT^A03^ADT_A03|P1|P|2.5.1\r\
EVN|A03|20260320120000-0500\r\
PID|1||M1^^^HOSP^MR||DOE^JANE\r\
PV1|1|I|4W^401^A||||||||||||||||V1^^^HOSP^VN\r\
PR1|1||0DTJ4ZZ^Resection of appendix^ICD10PCS||20260318074500-0500|D^Diagnostic^HL70230|95|\
2001^Gas^Ann^^^Dr|||3001^Cutter^Sam^^^Dr||||K35.80^Acute appendicitis^I10||||||||OR1^^^HOSP\r\
PR1|2|||Wound check|20260319\r";

    fn run(raw: &str) -> Vec<Value> {
        let c = convert(raw.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        assert!(!c.report.unconsumed.iter().any(|u| u.ends_with(":PR1")), "{:?}", c.report.unconsumed);
        c.resources.iter().filter(|r| r.kind == "Procedure").map(|r| r.body.clone().value()).collect()
    }

    #[test]
    fn pr1_maps_code_period_performers_and_reason() {
        let p = run(ADT);
        assert_eq!(p.len(), 2);
        let first = &p[0];
        assert_eq!(first["status"], "unknown");
        assert_eq!(first["code"]["coding"][0]["code"], "0DTJ4ZZ");
        assert_eq!(
            first["performedPeriod"],
            json!({"start": "2026-03-18T07:45:00-05:00", "end": "2026-03-18T09:20:00-05:00"})
        );
        assert!(first.get("performedDateTime").is_none());
        let functions: Vec<&Value> = first["performer"].as_array().unwrap().iter().map(|p| &p["function"]).collect();
        assert_eq!(functions[0]["coding"][0]["code"], "88189002");
        assert_eq!(functions[1]["coding"][0]["code"], "304292004");
        assert_eq!(first["reasonCode"][0]["coding"][0]["code"], "K35.80");
        assert_eq!(first["category"]["coding"][0]["code"], "D");
        assert!(first["encounter"]["reference"].is_string());
        // Only a text (PR1-4) and a date: no period, the date as is.
        assert_eq!(p[1]["code"], json!({"text": "Wound check"}));
        assert_eq!(p[1]["performedDateTime"], "2026-03-19");
    }

    #[test]
    fn the_same_procedure_resent_has_the_same_key_and_another_time_another() {
        let key = |raw: &str| {
            let c = convert(raw.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
            c.resources.iter().filter(|r| r.kind == "Procedure").map(|r| r.identity.clone()).collect::<Vec<_>>()
        };
        let a = key(ADT);
        assert!(a.iter().all(Option::is_some));
        // A new duration (the value) keeps the key; a new time is another procedure.
        assert_eq!(key(&ADT.replace("|95|", "|120|")), a);
        assert_ne!(key(&ADT.replace("20260318074500", "20260318084500"))[0], a[0]);
        // PR1-19 wins when sent.
        let with_id = ADT.replace("||||||||OR1^^^HOSP", "||||PX-9^HOSP||||OR1^^^HOSP");
        assert_eq!(key(&with_id)[0].as_ref().unwrap().value, "PX-9");
    }

    #[test]
    fn minutes_cross_midnight_in_the_same_offset() {
        assert_eq!(super::plus_minutes("2026-03-18T23:30:00-05:00", 45).unwrap(), "2026-03-19T00:15:00-05:00");
        assert_eq!(super::plus_minutes("2026-03-18T23:30:00.5Z", 30).unwrap(), "2026-03-19T00:00:00Z");
        assert!(super::plus_minutes("2026-03-18", 30).is_none());
    }
}
