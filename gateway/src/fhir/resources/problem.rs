//! PRB → Condition on the problem list (no IG segment map; written as the DG1 map writes its
//! Condition, with the PRB fields that FHIR's Condition has).
//!
//! - category `problem-list-item`; code PRB-3; identifier PRB-4 (problem instance ID; the
//!   identity, scoped to the sender without a system), else a source key over the patient,
//!   PRB-3 and PRB-7; recordedDate PRB-7; onsetDateTime PRB-16, else onsetString PRB-17;
//!   abatementDateTime PRB-9.
//! - clinicalStatus PRB-14 (life cycle status, by code or text: active, inactive, resolved,
//!   remission, recurrence, relapse; A/I/R as their initials); without it `active`, or
//!   `resolved` when PRB-9 is sent. An abated problem (PRB-9) whose status says otherwise is
//!   `resolved` (invariant con-4).
//! - verificationStatus PRB-13 (confirmation status: C confirmed, P provisional, D
//!   differential, R refuted, U unconfirmed, or those words). PRB-1 `DE` (delete) →
//!   `entered-in-error`, without clinicalStatus (invariant con-5).

use serde_json::Value;

use super::observation::{concept, datetime};
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::{coded_key, val};
use crate::hl7::parser::{Rep, Segment};

const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
const CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const VER_STATUS: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";

fn status_concept(system: &str, code: &str) -> Value {
    Obj::new().list("coding", [Obj::new().set("system", system).set("code", code).value()]).value()
}

/// The code and text of a CWE, lowercased, for matching by either.
fn words(rep: Rep) -> [String; 2] {
    [rep.component(1).value().trim().to_ascii_lowercase(), rep.component(2).value().trim().to_ascii_lowercase()]
}

fn clinical_status(rep: Rep) -> Option<&'static str> {
    words(rep).iter().find_map(|w| {
        Some(match w.as_str() {
            "a" | "active" => "active",
            "i" | "inactive" => "inactive",
            "r" | "resolved" => "resolved",
            "remission" => "remission",
            "recurrence" => "recurrence",
            "relapse" => "relapse",
            _ => return None,
        })
    })
}

fn verification_status(rep: Rep) -> Option<&'static str> {
    words(rep).iter().find_map(|w| {
        Some(match w.as_str() {
            "c" | "confirmed" => "confirmed",
            "p" | "provisional" => "provisional",
            "d" | "differential" => "differential",
            "r" | "refuted" | "ruled out" => "refuted",
            "u" | "unconfirmed" => "unconfirmed",
            _ => return None,
        })
    })
}

/// Maps PRB to a problem-list Condition of `patient` (key `Condition/prb-<segment index>`),
/// adds it and returns its key. Consumes the PRB. `None` (warning) without PRB-3.
pub fn problem(ctx: &mut Ctx, prb: Segment, patient: &str, encounter: Option<&str>) -> Option<String> {
    let code = concept(ctx, prb.field(3).rep(1));
    if code.is_null() {
        ctx.warn_at(prb, 3, "no problem ID: no Condition");
        return None;
    }
    ctx.consume(prb.index());
    let instance = datatypes::ei_identifier(prb.field(4).rep(1), ctx.site);
    let identity = ctx.scoped_identity("Condition", instance.as_ref()).or_else(|| {
        let what = format!("{}|{}", coded_key(prb.field(3).rep(1)), val(prb.field(7)));
        Identity::source_key("Condition", &[&ctx.token_of(patient), &what])
    });
    let abatement = datetime(ctx, prb, 9, &val(prb.field(9)));
    let deleted = val(prb.field(1)).eq_ignore_ascii_case("DE");
    let clinical = match (clinical_status(prb.field(14).rep(1)), abatement.is_null()) {
        (Some(s @ ("inactive" | "resolved" | "remission")), false) => s,
        (_, false) => "resolved",
        (Some(s), true) => s,
        (None, true) => "active",
    };
    let verification = if deleted { Some("entered-in-error") } else { verification_status(prb.field(13).rep(1)) };
    let mut body = Obj::new().list("identifier", instance.map(|(v, _)| v));
    if !deleted {
        body.put("clinicalStatus", status_concept(CLINICAL, clinical));
    }
    body.put("verificationStatus", verification.map(|v| status_concept(VER_STATUS, v)));
    body.push_all("category", [status_concept(CATEGORY, "problem-list-item")]);
    body.put("code", code);
    body.put("subject", reference(patient));
    body.put("encounter", encounter.map(reference));
    let onset = datetime(ctx, prb, 16, &val(prb.field(16)));
    if onset.is_null() {
        body.put("onsetString", val(prb.field(17)));
    } else {
        body.put("onsetDateTime", onset);
    }
    body.put("abatementDateTime", abatement);
    body.put("recordedDate", datetime(ctx, prb, 7, &val(prb.field(7))));
    let key = format!("Condition/prb-{}", prb.index());
    Some(ctx.add(Resource { kind: "Condition", key, identity, body, write: Write::Upsert }))
}
