//! FT1 → ChargeItem (no IG segment map; the fields as FHIR-Converter's DFT template and the
//! FT1 definition suggest, written the way the other segment maps write theirs).
//!
//! - Only charges: FT1-6 transaction type CG (charge), CD (credit) or empty. Payments (PY),
//!   adjustments (AJ) and co-payments (CO) are not ChargeItems: the FT1 is left unconsumed
//!   (reported) with a warning.
//! - status `billable` (the sender posts the charge for billing); code FT1-7 (required: an
//!   FT1 without it gives no ChargeItem); quantity FT1-10; occurrence FT1-4 (DR: start, end;
//!   a period when the end is sent); enteredDate FT1-5 (posting date); performer FT1-20
//!   (XCN → Practitioner); reason FT1-19 (diagnoses); priceOverride FT1-11.1 (MO) when its
//!   currency is an ISO 4217 code; subject the Patient, context the Encounter, account the
//!   message's Account.
//! - identity: FT1-2 transaction ID (scoped to the sender: it is the sender's number), else a
//!   source key over the patient, the visit, FT1-1, FT1-4, FT1-6, FT1-7 and FT1-10, so a
//!   resend updates the same ChargeItem and two charges of one message stay two.

use serde_json::Value;

use super::observation::{concept, datetime, practitioner_ref};
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::{coded_key, val};
use crate::hl7::parser::Segment;

/// Where a charge belongs: the Patient, the visit's Encounter and the Account.
pub struct ChargeLinks<'a> {
    pub patient: &'a str,
    pub encounter: Option<&'a str>,
    pub account: Option<&'a str>,
}

/// Maps one FT1 to a ChargeItem (key `ChargeItem/ft1-<segment index>`), adds it and returns
/// its key. Consumes the FT1 when it maps it.
pub fn charge_item(ctx: &mut Ctx, ft1: Segment, links: &ChargeLinks) -> Option<String> {
    let kind = val(ft1.field(6)).to_ascii_uppercase();
    if !matches!(kind.as_str(), "" | "CG" | "CD") {
        ctx.warn_at(ft1, 6, "transaction type is not a charge: no ChargeItem");
        return None;
    }
    let code = concept(ctx, ft1.field(7).rep(1));
    if code.is_null() {
        ctx.warn_at(ft1, 7, "no transaction code: no ChargeItem");
        return None;
    }
    ctx.consume(ft1.index());
    let transaction_id = val(ft1.field(2));
    let identifier = Obj::new().set("value", transaction_id.as_str()).value();
    let identity = if transaction_id.is_empty() {
        let what =
            [val(ft1.field(1)), val(ft1.field(4)), kind.clone(), coded_key(ft1.field(7).rep(1)), val(ft1.field(10))]
                .join("|");
        let visit = links.encounter.map(|e| ctx.token_of(e)).unwrap_or_default();
        Identity::source_key("ChargeItem", &[&ctx.token_of(links.patient), &format!("{visit}|{what}")])
    } else {
        ctx.scoped_identity("ChargeItem", Some(&(identifier.clone(), None)))
    };
    let mut body = Obj::new().set("status", "billable").set("code", code).set("subject", reference(links.patient));
    if !transaction_id.is_empty() {
        body.push_all("identifier", [identifier]);
    }
    body.put("context", links.encounter.map(reference));
    let range = ft1.field(4).rep(1);
    let start = datetime(ctx, ft1, "4.1", &range.component(1).value());
    let end = datetime(ctx, ft1, "4.2", &range.component(2).value());
    if end.is_null() {
        body.put("occurrenceDateTime", start);
    } else {
        body.put("occurrencePeriod", Obj::new().set("start", start).set("end", end));
    }
    if let Some(n) = datatypes::decimal(&val(ft1.field(10))) {
        body.put("quantity", Obj::new().set("value", n));
    }
    body.put("enteredDate", datetime(ctx, ft1, 5, &val(ft1.field(5))));
    let performers: Vec<Value> = ft1
        .field(20)
        .reps()
        .filter_map(|x| practitioner_ref(ctx, x))
        .map(|k| Obj::new().set("actor", reference(&k)).value())
        .collect();
    body.push_all("performer", performers);
    let reasons: Vec<Value> = ft1.field(19).reps().map(|r| concept(ctx, r)).collect();
    body.push_all("reason", reasons);
    let price = ft1.field(11).rep(1).component(1);
    let currency = price.sub(2).value().trim().to_string();
    if let Some(amount) = datatypes::decimal(&price.sub(1).value()) {
        if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
            body.put("priceOverride", Obj::new().set("value", amount).set("currency", currency));
        }
    }
    body.push_all("account", links.account.map(reference));
    let key = format!("ChargeItem/ft1-{}", ft1.index());
    Some(ctx.add(Resource { kind: "ChargeItem", key, identity, body, write: Write::Upsert }))
}
