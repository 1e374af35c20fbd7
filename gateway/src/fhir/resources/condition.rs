//! DG1 → Condition (IG `DG1[Condition]`) and, in the context of a visit,
//! `Encounter.diagnosis` (IG `DG1[Encounter]`).
//!
//! Choices: category `encounter-diagnosis` (IG silent; as FHIR-Converter); DG1-4 replaces the
//! code's text; DG1-16 first repetition → asserter; DG1-19 → recordedDate (the IG also lists
//! an asserted-date extension; one is enough); DG1-21 `D` → verificationStatus
//! entered-in-error. Encounter.diagnosis.use from DG1-6 (IG DiagnosisType: A → AD; codes the
//! IG leaves open stay as sent in v2-0052); rank DG1-15.

use serde_json::{json, Value};

use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::{coded_key, table_concept, val};
use crate::hl7::parser::Segment;

const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
const VER_STATUS: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";
const DIAGNOSIS_ROLE: &str = "http://terminology.hl7.org/CodeSystem/diagnosis-role";

/// Maps DG1 to a Condition of `patient` (key `Condition/dg1-<segment index>`), adds it and
/// returns its key; with `encounter`, links the encounter and adds an `Encounter.diagnosis`.
/// Consumes DG1.
pub fn condition(ctx: &mut Ctx, dg1: Segment, patient: &str, encounter: Option<&str>) -> String {
    ctx.consume(dg1.index());
    let mut code = datatypes::codeable_concept(dg1.field(3).rep(1), ctx.site, ctx.at(dg1, 3));
    let description = val(dg1.field(4));
    if !description.is_empty() {
        if code.is_null() {
            code = json!({});
        }
        code["text"] = json!(description);
    }
    let (id, identity) =
        datatypes::ei_identifier(dg1.field(20).rep(1), ctx.site).map_or((Value::Null, None), |(v, i)| (v, i));
    let asserter = datatypes::practitioner(dg1.field(16).rep(1), ctx.site).map(|p| reference(&ctx.add(p)));
    let entered_in_error = val(dg1.field(21)).eq_ignore_ascii_case("D");
    let body = Obj::new()
        .list("identifier", [id])
        .set("verificationStatus", if entered_in_error { json!({"coding": [{"system": VER_STATUS, "code": "entered-in-error"}]}) } else { Value::Null })
        .list("category", [json!({"coding": [{"system": CATEGORY, "code": "encounter-diagnosis", "display": "Encounter Diagnosis"}]})])
        .set("code", code)
        .set("subject", reference(patient))
        .set("encounter", encounter.map(reference))
        .set("onsetDateTime", datatypes::datetime(&val(dg1.field(5)), ctx.site, ctx.at(dg1, 5)))
        .set("recordedDate", datatypes::datetime(&val(dg1.field(19)), ctx.site, ctx.at(dg1, 19)))
        .set("asserter", asserter);
    // Key: DG1-20 (diagnosis identifier), else the patient and the diagnosis code.
    let identity = identity.or_else(|| {
        let what = match coded_key(dg1.field(3).rep(1)) {
            c if c.is_empty() => description.clone(),
            c => c,
        };
        Identity::source_key("Condition", &[&ctx.token_of(patient), &what])
    });
    let key = format!("Condition/dg1-{}", dg1.index());
    let key = ctx.add(Resource { kind: "Condition", key, identity, body, write: Write::Upsert });
    if let Some(enc) = encounter {
        let kind = dg1.field(6).rep(1);
        let use_ = if kind.component(1).value().trim().eq_ignore_ascii_case("A") {
            json!({"coding": [{"system": DIAGNOSIS_ROLE, "code": "AD", "display": "Admission diagnosis"}]})
        } else {
            table_concept(ctx, kind, "0052", true)
        };
        let rank = val(dg1.field(15)).parse::<u64>().ok().filter(|r| *r > 0);
        let diagnosis = Obj::new().set("condition", reference(&key)).set("use", use_).set("rank", rank).value();
        ctx.append_unique(enc, "diagnosis", diagnosis);
    }
    key
}
