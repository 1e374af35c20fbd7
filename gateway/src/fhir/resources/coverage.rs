//! IN1 (+ IN2) → Coverage (IG `IN1[Coverage]`).
//!
//! - status `active` (required; the IG assigns none).
//! - payor: one Organization for the insurer, name IN1-4.1, identifiers IN1-3 (the IG leaves
//!   IN1-3 unmapped; FHIR-Converter uses it as the payor identifier), address IN1-5. Key
//!   `Organization/payor-<IN1-3.1 or name>`, identity when IN1-3 has a known system. Without
//!   any insurer data there is no Coverage (R4 requires a payor) and a warning is reported.
//! - identifier IN1-2 (plan ID, CWE\[Identifier\]: CWE.1 as value); type IN1-15; period
//!   IN1-12/13 (dates); relationship IN1-17; subscriber the patient when IN1-17 is `SEL`
//!   (a non-self subscriber RelatedPerson from IN1-16 is not created); subscriberId IN1-49.1
//!   (the IG's R5 subscriberId extension target), else IN1-36 policy number.
//! - IN2 has no IG map: it is left unconsumed (reported).

use serde_json::Value;

use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::{table_concept, val, Identifiers};
use crate::hl7::parser::Segment;

fn key_fragment(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '-' }).collect()
}

/// Maps IN1 to a Coverage for `patient` (key `Coverage/in1-<segment index>`), adds it and
/// returns its key. Consumes IN1 (not IN2; see the module notes).
pub fn coverage(ctx: &mut Ctx, in1: Segment, in2: Option<Segment>, patient: &str) -> Option<String> {
    let _ = in2;
    ctx.consume(in1.index());

    // Payor Organization.
    let mut payor_ids = Identifiers::default();
    payor_ids.push_cx(ctx, in1.field(3));
    let name = in1.field(4).rep(1).component(1).value().trim().to_string();
    let payor = if payor_ids.values().is_empty() && name.is_empty() {
        // R4 requires a payor: without one there is no valid Coverage.
        ctx.warn_at(in1, 3, "IN1 without insurance company (IN1-3/IN1-4): no Coverage");
        return None;
    } else {
        let id_value = val(in1.field(3));
        let org_key =
            format!("Organization/payor-{}", key_fragment(if id_value.is_empty() { &name } else { &id_value }));
        let body = Obj::new()
            .set("name", name.as_str())
            .list("identifier", payor_ids.values())
            .list("address", in1.field(5).reps().map(datatypes::address));
        reference(&ctx.add(Resource {
            kind: "Organization",
            key: org_key,
            identity: payor_ids.identity(),
            body,
            write: Write::Upsert,
        }))
    };

    let plan = in1.field(2).rep(1).component(1).value().trim().to_string();
    let relationship = in1.field(17).rep(1);
    let is_self = relationship.component(1).value().trim().eq_ignore_ascii_case("SEL");
    let subscriber_id = {
        let id = in1.field(49).rep(1).component(1).value().trim().to_string();
        if id.is_empty() {
            val(in1.field(36))
        } else {
            id
        }
    };
    let body = Obj::new()
        .list("identifier", [Obj::new().set("value", plan).value()])
        .set("status", "active")
        .set("type", table_concept(ctx, in1.field(15).rep(1), "0086", false))
        .set("subscriber", if is_self { reference(patient) } else { Value::Null })
        .set("subscriberId", subscriber_id)
        .set("beneficiary", reference(patient))
        .set("relationship", table_concept(ctx, relationship, "0063", true))
        .set(
            "period",
            Obj::new()
                .set("start", datatypes::date(&val(in1.field(12)), ctx.at(in1, 12)))
                .set("end", datatypes::date(&val(in1.field(13)), ctx.at(in1, 13))),
        )
        .list("payor", [payor]);
    // Key: the patient and the plan, company and policy number (IN1-2, IN1-3, IN1-36).
    let policy = format!("{}|{}|{}", val(in1.field(2)), val(in1.field(3)), val(in1.field(36)));
    let identity =
        (policy != "||").then(|| Identity::source_key("Coverage", &[&ctx.token_of(patient), &policy])).flatten();
    let key = format!("Coverage/in1-{}", in1.index());
    Some(ctx.add(Resource { kind: "Coverage", key, identity, body, write: Write::Upsert }))
}
