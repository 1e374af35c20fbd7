//! PV1 (+ PV2) → Encounter.

use serde_json::json;

use crate::fhir::convert::Ctx;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Resource};
use crate::hl7::parser::Segment;

/// Maps PV1 (and PV2) to an Encounter of `patient`; `None` when PV1 carries no visit.
/// Consumes the segments.
pub fn encounter(ctx: &mut Ctx, pv1: Segment, pv2: Option<Segment>, patient: &str) -> Option<String> {
    ctx.consume(pv1.index());
    if let Some(pv2) = pv2 {
        ctx.consume(pv2.index());
    }
    let body = Obj::new()
        .set("status", "unknown")
        .set("class", json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}))
        .set("subject", reference(patient));
    let key = format!("Encounter/pv1-{}", pv1.index());
    Some(ctx.add(Resource { kind: "Encounter", key, identity: None, body }))
}
