//! IAM → AllergyIntolerance (IG `IAM[AllergyIntolerance]`, ADT A60).
//!
//! - category/type IAM-2, code IAM-3, reaction IAM-5 (with the IAM-4 severity), criticality
//!   IAM-4, onset IAM-11 (else IAM-12 as text), recordedDate IAM-13, identifier IAM-7 — as
//!   the AL1 map does with the same fields.
//! - clinicalStatus: IAM-17 when it is an R4 code (`active`, `inactive`, `resolved`), else
//!   `active` (IG assignment).
//! - IAM-6 action `D` (delete): the allergy was removed from the list; we mark it
//!   `entered-in-error` (without clinicalStatus, invariant ait-2) rather than delete it.
//! - Key: IAM-7, else the patient and the allergen, as AL1 (so an A60 updates what an A01's
//!   AL1 created).

use serde_json::{json, Value};

use crate::fhir::codes;
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::{coded_key, val};
use crate::hl7::parser::Segment;

const CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
const VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";

/// Maps IAM to an AllergyIntolerance of `patient` (key `AllergyIntolerance/iam-<segment
/// index>`), adds it and returns its key. Consumes IAM.
pub fn allergy(ctx: &mut Ctx, iam: Segment, patient: &str) -> String {
    ctx.consume(iam.index());
    let allergen_type = iam.field(2).rep(1).component(1).value().trim().to_ascii_uppercase();
    let kind = matches!(allergen_type.as_str(), "DA" | "FA" | "MA" | "EA" | "AA" | "PA" | "LA").then_some("allergy");
    let severity = iam.field(4).rep(1).component(1).value().trim().to_string();
    let reactions: Vec<Value> = iam
        .field(5)
        .reps()
        .map(|r| r.value().trim().to_string())
        .filter(|t| !t.is_empty())
        .map(|t| {
            Obj::new()
                .list("manifestation", [json!({"text": t})])
                .set("severity", codes::reaction_severity(&severity))
                .value()
        })
        .collect();
    let deleted = val(iam.field(6)).eq_ignore_ascii_case("D");
    let sent_status = val(iam.field(17)).to_ascii_lowercase();
    let clinical = match sent_status.as_str() {
        "active" | "inactive" | "resolved" => sent_status.as_str(),
        _ => "active",
    };
    let (clinical, verification) = if deleted {
        (Value::Null, json!({"coding": [{"system": VERIFICATION, "code": "entered-in-error"}]}))
    } else {
        (json!({"coding": [{"system": CLINICAL, "code": clinical}]}), Value::Null)
    };
    let onset = datatypes::datetime(&val(iam.field(11)), ctx.site, ctx.at(iam, 11));
    let onset_text = if onset.is_null() { val(iam.field(12)) } else { String::new() };
    let (id, identity) =
        datatypes::ei_identifier(iam.field(7).rep(1), ctx.site).map_or((Value::Null, None), |(v, i)| (v, i));
    let body = Obj::new()
        .list("identifier", [id])
        .set("clinicalStatus", clinical)
        .set("verificationStatus", verification)
        .set("type", kind)
        .list("category", codes::allergy_category(&allergen_type).map(Value::from))
        .set("criticality", codes::allergy_criticality(&severity))
        .set("code", datatypes::codeable_concept(iam.field(3).rep(1), ctx.site, ctx.at(iam, 3)))
        .set("patient", reference(patient))
        .set("onsetDateTime", onset)
        .set("onsetString", onset_text)
        .set("recordedDate", datatypes::datetime(&val(iam.field(13)), ctx.site, ctx.at(iam, 13)))
        .list("reaction", reactions);
    let identity = identity.or_else(|| {
        Identity::source_key("AllergyIntolerance", &[&ctx.token_of(patient), &coded_key(iam.field(3).rep(1))])
    });
    let key = format!("AllergyIntolerance/iam-{}", iam.index());
    ctx.add(Resource { kind: "AllergyIntolerance", key, identity, body, write: Write::Upsert })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::fhir::convert::convert;
    use crate::fhir::site::SiteMaps;

    const A60: &str = "MSH|^~\\&|EHR|HOSP|GW|CLOUD|20260320120000-0500||ADT^A60^ADT_A60|I1|P|2.5.1\r\
EVN|A60|20260320120000-0500\r\
PID|1||M1^^^HOSP^MR||DOE^JANE\r\
IAM|1|DA^Drug allergy^HL70127|7980^Penicillin G^RXNORM|SV^Severe^HL70128|Hives|A|||||||||||active\r\
IAM|2|FA^Food allergy^HL70127|91935009^Allergy to peanut^SCT|MO|Rash|D\r";

    fn allergies(raw: &str) -> Vec<(Option<String>, Value)> {
        let c = convert(raw.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
        c.resources
            .iter()
            .filter(|r| r.kind == "AllergyIntolerance")
            .map(|r| (r.identity.as_ref().map(|i| i.value.clone()), r.body.clone().value()))
            .collect()
    }

    #[test]
    fn iam_adds_updates_and_deletes_allergies() {
        let a = allergies(A60);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].1["clinicalStatus"]["coding"][0]["code"], "active");
        assert_eq!(a[0].1["criticality"], "high");
        assert_eq!(a[0].1["reaction"][0]["manifestation"][0]["text"], "Hives");
        // D: entered-in-error and no clinical status (ait-2).
        assert_eq!(a[1].1["verificationStatus"]["coding"][0]["code"], "entered-in-error");
        assert!(a[1].1.get("clinicalStatus").is_none());
    }

    #[test]
    fn an_iam_updates_the_allergy_an_al1_of_the_same_allergen_created() {
        let al1 = "MSH|^~\\&|EHR|HOSP|GW|CLOUD|20260320120000-0500||ADT^A08^ADT_A01|I2|P|2.5.1\r\
EVN|A08|20260320120000-0500\r\
PID|1||M1^^^HOSP^MR||DOE^JANE\r\
PV1|1|O\r\
AL1|1|DA|7980^Penicillin G^RXNORM|SV\r";
        let c = convert(al1.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        let from_al1 = c.resources.iter().find(|r| r.kind == "AllergyIntolerance").unwrap().identity.clone();
        assert_eq!(from_al1.map(|i| i.value), allergies(A60)[0].0);
    }
}
