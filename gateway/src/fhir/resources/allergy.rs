//! AL1 → AllergyIntolerance (IG `AL1[AllergyIntolerance]`).
//!
//! - clinicalStatus `active` (IG assignment; needed by constraint ait-1).
//! - AL1-2 → category (IG AllergenType) and type `allergy` (IG AllergyType; MC → none). The
//!   IG's alternate-codes extension with the original AL1-2 code is not emitted.
//! - AL1-4: the IG offers criticality (when the sender uses severity as criticality) or
//!   reaction.severity. We set criticality (SV → high, MI → low) and, when AL1-5 gives a
//!   reaction, also that reaction's severity (SV/MO/MI), so MO is not lost.
//! - AL1-5 repetitions → one reaction with one manifestation (text) each.
//! - AL1-6 → onsetDateTime.

use serde_json::{json, Value};

use crate::fhir::codes;
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::{coded_key, val};
use crate::hl7::parser::Segment;

const CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";

/// Maps AL1 to an AllergyIntolerance of `patient` (key `AllergyIntolerance/al1-<segment
/// index>`), adds it and returns its key. Consumes AL1.
pub fn allergy(ctx: &mut Ctx, al1: Segment, patient: &str) -> String {
    ctx.consume(al1.index());
    let allergen_type = al1.field(2).rep(1).component(1).value().trim().to_ascii_uppercase();
    let category = codes::allergy_category(&allergen_type);
    let kind = match allergen_type.as_str() {
        "DA" | "FA" | "MA" | "EA" | "AA" | "PA" | "LA" => Some("allergy"),
        _ => None,
    };
    let severity = al1.field(4).rep(1).component(1).value().trim().to_string();
    let reaction_severity = codes::reaction_severity(&severity);
    let reactions: Vec<Value> = al1
        .field(5)
        .reps()
        .map(|r| r.value().trim().to_string())
        .filter(|t| !t.is_empty())
        .map(|t| Obj::new().list("manifestation", [json!({"text": t})]).set("severity", reaction_severity).value())
        .collect();
    let body = Obj::new()
        .set("clinicalStatus", json!({"coding": [{"system": CLINICAL, "code": "active", "display": "Active"}]}))
        .set("type", kind)
        .list("category", category.map(Value::from))
        .set("criticality", codes::allergy_criticality(&severity))
        .set("code", datatypes::codeable_concept(al1.field(3).rep(1), ctx.site, ctx.at(al1, 3)))
        .set("patient", reference(patient))
        .set("onsetDateTime", datatypes::datetime(&val(al1.field(6)), ctx.site, ctx.at(al1, 6)))
        .list("reaction", reactions);
    // Key: the patient and the allergen (AL1-3 code and coding system, else its text).
    let allergen = coded_key(al1.field(3).rep(1));
    let identity = Identity::source_key("AllergyIntolerance", &[&ctx.token_of(patient), &allergen]);
    let key = format!("AllergyIntolerance/al1-{}", al1.index());
    ctx.add(Resource { kind: "AllergyIntolerance", key, identity, body, write: Write::Upsert })
}
