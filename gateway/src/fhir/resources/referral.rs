//! RF1 → ServiceRequest (a referral) and PRD → Practitioner (no IG segment maps; written the
//! way the ORC/OBR ServiceRequest map and the XCN Practitioner map write theirs).
//!
//! RF1 → ServiceRequest:
//! - status RF1-1 (table 0283): A accepted → `active`, P pending → `draft`, R rejected →
//!   `revoked`, E expired → `completed` (the referral's period is over); else `unknown`.
//! - intent `order`; category SNOMED CT 3457005 "Patient referral", plus RF1-4 (referral
//!   category); code RF1-3 (referral type); priority RF1-2 (table 0280: S stat, A asap, R
//!   routine); reasonCode RF1-10; identifier RF1-6 (originating referral, PLAC) and RF1-11
//!   (external referral, FILL); identity RF1-6, else RF1-11, else a source key over the
//!   patient, RF1-3 and RF1-7; authoredOn RF1-7 (effective date); occurrencePeriod RF1-7 to
//!   RF1-8 (expiration date).
//!
//! PRD → Practitioner: name PRD-2, address PRD-3, telecom PRD-5, identifier PRD-7.1. Key by
//! PRD-7.1, else family and given name (a sender-scoped source key, as XCN practitioners).

use serde_json::Value;

use super::observation::{concept, datetime, ei_typed};
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::{coded_key, val};
use crate::hl7::parser::Segment;

/// SNOMED CT 3457005 |Patient referral|: `ServiceRequest.category` of every referral.
const REFERRAL_CATEGORY: (&str, &str, &str) = ("http://snomed.info/sct", "3457005", "Patient referral");

/// Who a referral names: the referring provider and the providers it is referred to.
#[derive(Default)]
pub struct Providers {
    pub requester: Option<String>,
    pub performers: Vec<String>,
}

/// Maps RF1 to a ServiceRequest of `patient` (key `ServiceRequest/rf1-<index>`), adds it and
/// returns its key. Consumes the RF1.
pub fn referral(ctx: &mut Ctx, rf1: Segment, patient: &str, encounter: Option<&str>, providers: &Providers) -> String {
    ctx.consume(rf1.index());
    let status = match val(rf1.field(1)).to_ascii_uppercase().as_str() {
        "A" => "active",
        "P" => "draft",
        "R" => "revoked",
        "E" => "completed",
        _ => "unknown",
    };
    let originating =
        Some(rf1.field(6).rep(1)).filter(|r| !r.value().trim().is_empty()).and_then(|r| ei_typed(ctx, r, "PLAC"));
    let external =
        Some(rf1.field(11).rep(1)).filter(|r| !r.value().trim().is_empty()).and_then(|r| ei_typed(ctx, r, "FILL"));
    let identity = ctx.scoped_identity("ServiceRequest", originating.as_ref().or(external.as_ref())).or_else(|| {
        let what = format!("{}|{}", coded_key(rf1.field(3).rep(1)), val(rf1.field(7)));
        Identity::source_key("ServiceRequest", &[&ctx.token_of(patient), &what])
    });
    let (system, code, display) = REFERRAL_CATEGORY;
    let referral = Obj::new()
        .list("coding", [Obj::new().set("system", system).set("code", code).set("display", display).value()])
        .value();
    let mut body = Obj::new().set("status", status).set("intent", "order");
    body.push_all("identifier", [originating.map(|o| o.0), external.map(|e| e.0)].into_iter().flatten());
    body.push_all("category", [referral, concept(ctx, rf1.field(4).rep(1))]);
    body.put("code", concept(ctx, rf1.field(3).rep(1)));
    let priority = match val(rf1.field(2)).to_ascii_uppercase().as_str() {
        "S" => Some("stat"),
        "A" => Some("asap"),
        "R" => Some("routine"),
        _ => None,
    };
    body.put("priority", priority);
    body.put("subject", reference(patient));
    body.put("encounter", encounter.map(reference));
    let start = datetime(ctx, rf1, 7, &val(rf1.field(7)));
    let end = datetime(ctx, rf1, 8, &val(rf1.field(8)));
    body.put("occurrencePeriod", Obj::new().set("start", start.clone()).set("end", end));
    body.put("authoredOn", start);
    body.put("requester", providers.requester.as_deref().map(reference));
    body.push_all("performer", providers.performers.iter().map(|k| reference(k)));
    let reasons: Vec<Value> = rf1.field(10).reps().map(|r| concept(ctx, r)).collect();
    body.push_all("reasonCode", reasons);
    let key = format!("ServiceRequest/rf1-{}", rf1.index());
    ctx.add(Resource { kind: "ServiceRequest", key, identity, body, write: Write::Upsert })
}

/// Maps PRD to a Practitioner, adds it and returns its key. Consumes the PRD. `None` (left
/// unconsumed, warning) without a name or identifier.
pub fn provider(ctx: &mut Ctx, prd: Segment) -> Option<String> {
    let name = datatypes::human_name(prd.field(2).rep(1));
    let id = prd.field(7).rep(1).component(1).value().trim().to_string();
    if name.is_null() && id.is_empty() {
        ctx.warn_at(prd, 2, "no provider name or identifier: not mapped");
        return None;
    }
    ctx.consume(prd.index());
    let n = prd.field(2).rep(1);
    let local = if id.is_empty() {
        format!("{}-{}", n.component(1).sub(1).value().trim(), n.component(2).value().trim())
    } else {
        id.clone()
    };
    let local: String = local
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '-' })
        .collect();
    let body = Obj::new()
        .list("identifier", [Obj::new().set("value", id).value()])
        .list("name", [name])
        .list("telecom", prd.field(5).reps().map(datatypes::contact_point))
        .list("address", prd.field(3).reps().map(datatypes::address));
    let key = format!("Practitioner/{local}");
    Some(ctx.add(Resource { kind: "Practitioner", key, identity: None, body, write: Write::Upsert }))
}
