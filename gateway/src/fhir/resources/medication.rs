//! Pharmacy orders and dispenses: ORC + RXE (or RXO) + RXR + TQ1 → MedicationRequest, RXD →
//! MedicationDispense. The IG maps RXO\[MedicationRequest\], RXR\[MedicationRequest\] and
//! TQ1\[MedicationRequest\]; RXE and RXD have no IG map and follow RXO's shape field by field.
//!
//! MedicationRequest:
//! - status ORC-5, else ORC-1 (as the ServiceRequest map; `revoked` is `cancelled` here, DC
//!   discontinue `stopped`); intent `order` (an RXE is the pharmacy's encoding of an order);
//!   identifier ORC-2 (PLAC), ORC-3 (FILL), RXE-15 prescription number; identity placer, else
//!   filler, else a source key over the patient, the medication and ORC-9.
//! - medicationCodeableConcept RXE-2 (RXO-1); dose RXE-3..5 (RXO-2..4): `doseRange` when a
//!   maximum other than the minimum is sent (as the IG's RXO map), else `doseQuantity`;
//!   additionalInstruction RXE-7 (RXO-7); route/site/method RXR-1/2/4; timing TQ1-3 (repeat
//!   pattern → `timing.code`), TQ1-7/8 (`repeat.boundsPeriod`); priority TQ1-9.
//! - dispenseRequest: quantity RXE-10/11 (RXO-11/12), numberOfRepeatsAllowed RXE-12 (RXO-13).
//! - authoredOn ORC-9; requester ORC-12 (XCN → Practitioner).
//!
//! MedicationDispense: status `completed` (RXD reports a dispense that happened);
//! medicationCodeableConcept RXD-2; whenHandedOver RXD-3; quantity RXD-4/5; identifier RXD-7;
//! performer RXD-10; route from RXR; authorizingPrescription the order's MedicationRequest.
//! Identity: a source key over the patient, the order number, RXD-1 (dispense counter) and
//! RXD-3.

use serde_json::Value;

use super::observation::{concept, datetime, ei_typed, order_number, practitioner_ref};
use crate::fhir::codes;
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::{coded_key, val};
use crate::hl7::parser::Segment;

/// Where an order segment keeps the fields the MedicationRequest needs.
pub struct GiveFields {
    code: usize,
    min: usize,
    max: usize,
    units: usize,
    instructions: usize,
    dispense: usize,
    dispense_units: usize,
    refills: usize,
    prescription: Option<usize>,
}

/// RXE (pharmacy/treatment encoded order).
pub const RXE: GiveFields = GiveFields {
    code: 2,
    min: 3,
    max: 4,
    units: 5,
    instructions: 7,
    dispense: 10,
    dispense_units: 11,
    refills: 12,
    prescription: Some(15),
};

/// RXO (pharmacy/treatment order), as the IG's RXO\[MedicationRequest\].
pub const RXO: GiveFields = GiveFields {
    code: 1,
    min: 2,
    max: 3,
    units: 4,
    instructions: 7,
    dispense: 11,
    dispense_units: 12,
    refills: 13,
    prescription: None,
};

/// What a MedicationRequest is made of besides its ORC.
pub struct OrderParts<'s, 'm, 'a> {
    /// The RXE or RXO and where its fields are.
    pub give: (Segment<'m, 'a>, &'s GiveFields),
    pub routes: &'s [Segment<'m, 'a>],
    pub timing: &'s [Segment<'m, 'a>],
    pub patient: &'s str,
    pub encounter: Option<&'s str>,
    pub write: Write,
}

fn status(orc: Segment) -> &'static str {
    let control = val(orc.field(1)).to_ascii_uppercase();
    if control == "DC" {
        return "stopped";
    }
    let sr = codes::order_status(&orc.field(5).value())
        .or_else(|| if control == "CA" { Some("revoked") } else { codes::order_control_status(&control) })
        .unwrap_or("unknown");
    match sr {
        "revoked" => "cancelled",
        other => other,
    }
}

fn dosage(ctx: &mut Ctx, routes: &[Segment]) -> Obj {
    let mut d = Obj::new();
    if let Some(rxr) = routes.first() {
        ctx.consume(rxr.index());
        d.put("route", concept(ctx, rxr.field(1).rep(1)));
        d.put("site", concept(ctx, rxr.field(2).rep(1)));
        d.put("method", concept(ctx, rxr.field(4).rep(1)));
    }
    for extra in routes.iter().skip(1) {
        ctx.warn_at(*extra, 1, "more than one RXR: only the first is the route");
    }
    d
}

/// TQ1-3.1 (RPT repeat pattern, a CWE in subcomponents) → `Timing.code`: code, display,
/// table 0335 unless another coding system is named. `Null` when empty.
fn repeat_pattern(tq1: Segment) -> Value {
    let cwe = tq1.field(3).rep(1).component(1);
    let part = |i| cwe.sub(i).value().trim().to_string();
    let (code, display, system) = (part(1), part(2), part(3));
    if code.is_empty() {
        return Value::Null;
    }
    let system = if system.is_empty() || system.eq_ignore_ascii_case("HL70335") {
        Some(codes::v2_table_system("0335"))
    } else {
        codes::coding_system_uri(&system).map(str::to_string)
    };
    let coding = Obj::new().set("system", system).set("code", code.as_str()).set("display", display.as_str());
    let text = if display.is_empty() { code } else { display };
    Obj::new().list("coding", [coding.value()]).set("text", text).value()
}

/// Maps ORC + RXE/RXO (+ RXR, TQ1) to a MedicationRequest (key
/// `MedicationRequest/<segment id>-<index>` of the RXE/RXO), adds it and returns its key.
/// Consumes the segments it maps. `None` (warning) without a medication code.
pub fn medication_request(ctx: &mut Ctx, orc: Segment, parts: OrderParts) -> Option<String> {
    let (give, f) = parts.give;
    let medication = concept(ctx, give.field(f.code).rep(1));
    ctx.consume(orc.index());
    if medication.is_null() {
        ctx.warn_at(give, 2, "pharmacy order without a give code: no MedicationRequest");
        return None;
    }
    ctx.consume(give.index());
    let site = ctx.site;
    let placer =
        Some(orc.field(2).rep(1)).filter(|r| !r.value().trim().is_empty()).and_then(|r| ei_typed(ctx, r, "PLAC"));
    let filler =
        Some(orc.field(3).rep(1)).filter(|r| !r.value().trim().is_empty()).and_then(|r| ei_typed(ctx, r, "FILL"));
    let identity = ctx.scoped_identity("MedicationRequest", placer.as_ref().or(filler.as_ref())).or_else(|| {
        let what = format!("{}|{}", coded_key(give.field(f.code).rep(1)), val(orc.field(9)));
        Identity::source_key("MedicationRequest", &[&ctx.token_of(parts.patient), &what])
    });
    let mut body = Obj::new().set("status", status(orc)).set("intent", "order");
    body.push_all("identifier", [placer.map(|p| p.0), filler.map(|p| p.0)].into_iter().flatten());
    if let Some(n) = f.prescription {
        let rx = val(give.field(n));
        if !rx.is_empty() {
            body.push_all("identifier", [Obj::new().set("value", rx).value()]);
        }
    }
    body.put("medicationCodeableConcept", medication);
    body.put("subject", reference(parts.patient));
    body.put("encounter", parts.encounter.map(reference));
    body.put("authoredOn", datetime(ctx, orc, 9, &val(orc.field(9))));
    let requester = practitioner_ref(ctx, orc.field(12).rep(1));
    body.put("requester", requester.map(|k| reference(&k)));

    let mut dose = dosage(ctx, parts.routes);
    let units = give.field(f.units).rep(1);
    let (min, max) = (val(give.field(f.min)), val(give.field(f.max)));
    let low = datatypes::quantity(&min, units, site, ctx.at(give, f.min));
    let rate = if !max.is_empty() && max != min {
        let high = datatypes::quantity(&max, units, site, ctx.at(give, f.max));
        Obj::new().set("doseRange", Obj::new().set("low", low).set("high", high))
    } else {
        Obj::new().set("doseQuantity", low)
    };
    if !rate.is_empty() {
        let ordered =
            Obj::new().set("system", "http://terminology.hl7.org/CodeSystem/dose-rate-type").set("code", "ordered");
        let rate = rate.set("type", Obj::new().list("coding", [ordered.value()]));
        dose.push_all("doseAndRate", [rate.value()]);
    }
    dose.push_all("additionalInstruction", [concept(ctx, give.field(f.instructions).rep(1))]);
    let mut priority = None;
    if let Some(tq1) = parts.timing.first() {
        ctx.consume(tq1.index());
        let start = datetime(ctx, *tq1, 7, &val(tq1.field(7)));
        let end = datetime(ctx, *tq1, 8, &val(tq1.field(8)));
        let bounds = Obj::new().set("start", start).set("end", end);
        let repeat = Obj::new().set("boundsPeriod", bounds);
        let timing = Obj::new().set("code", repeat_pattern(*tq1)).set("repeat", repeat);
        dose.put("timing", timing);
        priority = match val(tq1.field(9)).to_ascii_uppercase().as_str() {
            "S" => Some("stat"),
            "A" => Some("asap"),
            "R" => Some("routine"),
            "T" => Some("urgent"),
            _ => None,
        };
    }
    for extra in parts.timing.iter().skip(1) {
        ctx.warn_at(*extra, 1, "more than one TQ1: only the first is the timing");
    }
    body.put("priority", priority);
    if !dose.is_empty() {
        body.push_all("dosageInstruction", [dose.value()]);
    }
    let mut dispense = Obj::new();
    let amount = val(give.field(f.dispense));
    dispense.put(
        "quantity",
        datatypes::quantity(&amount, give.field(f.dispense_units).rep(1), site, ctx.at(give, f.dispense)),
    );
    let refills = val(give.field(f.refills));
    dispense.put("numberOfRepeatsAllowed", refills.parse::<u32>().ok());
    body.put("dispenseRequest", dispense);
    let key = format!("MedicationRequest/{}-{}", give.id().to_ascii_lowercase(), give.index());
    Some(ctx.add(Resource { kind: "MedicationRequest", key, identity, body, write: parts.write }))
}

/// Maps RXD (+ RXR) to a MedicationDispense of `patient` (key `MedicationDispense/rxd-<index>`),
/// authorized by the MedicationRequest `request`. Consumes the segments. `None` (warning)
/// without RXD-2.
pub fn medication_dispense(
    ctx: &mut Ctx,
    orc: Segment,
    rxd: Segment,
    routes: &[Segment],
    patient: &str,
    encounter: Option<&str>,
    request: Option<&str>,
) -> Option<String> {
    let medication = concept(ctx, rxd.field(2).rep(1));
    if medication.is_null() {
        ctx.warn_at(rxd, 2, "no dispense/give code: no MedicationDispense");
        return None;
    }
    ctx.consume(rxd.index());
    let site = ctx.site;
    let order = order_number(Some(orc), None);
    let what = format!("{order}|{}|{}|{}", val(rxd.field(1)), coded_key(rxd.field(2).rep(1)), val(rxd.field(3)));
    let identity = Identity::source_key("MedicationDispense", &[&ctx.token_of(patient), &what]);
    let mut body = Obj::new().set("status", "completed");
    let rx = val(rxd.field(7));
    if !rx.is_empty() {
        body.push_all("identifier", [Obj::new().set("value", rx).value()]);
    }
    body.put("medicationCodeableConcept", medication);
    body.put("subject", reference(patient));
    body.put("context", encounter.map(reference));
    let performers: Vec<Value> = rxd
        .field(10)
        .reps()
        .filter_map(|x| practitioner_ref(ctx, x))
        .map(|k| Obj::new().set("actor", reference(&k)).value())
        .collect();
    body.push_all("performer", performers);
    body.push_all("authorizingPrescription", request.map(reference));
    body.put("quantity", datatypes::quantity(&val(rxd.field(4)), rxd.field(5).rep(1), site, ctx.at(rxd, 4)));
    body.put("whenHandedOver", datetime(ctx, rxd, 3, &val(rxd.field(3))));
    let dose = dosage(ctx, routes);
    if !dose.is_empty() {
        body.push_all("dosageInstruction", [dose.value()]);
    }
    let key = format!("MedicationDispense/rxd-{}", rxd.index());
    Some(ctx.add(Resource { kind: "MedicationDispense", key, identity, body, write: Write::Upsert }))
}
