//! ORC and/or OBR (+ TQ1, NTE, DG1) → ServiceRequest (IG ORC\[ServiceRequest\],
//! OBR\[ServiceRequest\], TQ1\[ServiceRequest\], NTE\[ServiceRequest\]).
//!
//! Choices:
//! - status: ORC-5 (OrderStatus); when ORC-5 is empty, ORC-1 (OrderControlCode) — except that
//!   ORC-1 `CA` (cancel request) gives `revoked`, not the IG's `active`: an upsert of a
//!   cancel message as `active` would re-activate the order at the receiver. No ORC or no
//!   target → `unknown` (R4 requires a status).
//! - authoredOn ORC-9 only when ORC-1 is NW (or empty), as the IG: for other order controls
//!   ORC-9 is the time of that event (cancel, result), not of the order.
//! - identity: the placer order number (the order's id at the placer) when its system is
//!   known, else the filler order number.
//! - priority: TQ1-9 / ORC-7.6 / OBR-27.6 (table 0485): S → stat, A → asap, R → routine,
//!   T → urgent; others none.
//! - occurrence: TQ1-7/TQ1-8 (period, or dateTime with only a start), else ORC-7.4/OBR-27.4
//!   (TQ start), else OBR-6 (requested date/time).

use serde_json::Value;

use super::observation::{annotation, concept, datetime, ei_typed, practitioner_ref};
use crate::fhir::codes;
use crate::fhir::ctx::Ctx;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::coded_key;
use crate::hl7::parser::{Rep, Segment};

fn priority(code: &str) -> Option<&'static str> {
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "S" => "stat",
        "A" => "asap",
        "R" => "routine",
        "T" => "urgent",
        _ => return None,
    })
}

fn valued<'a>(seg: Option<Segment<'_, 'a>>, n: usize) -> Option<Rep<'a>> {
    seg.map(|s| s.field(n)).filter(|f| !f.is_empty() && !f.is_null()).map(|f| f.rep(1))
}

/// Maps an ORC and/or OBR to a ServiceRequest, adds it and returns its key. Consumes both.
///
/// status ORC-5/ORC-1; intent `order` (OBR-11 G → reflex-order); identifier placer ORC-2/OBR-2
/// (PLAC), filler ORC-3/OBR-3 (FILL); requisition ORC-4 (PGN); code OBR-4; priority OBR-5 /
/// ORC-7.6 / OBR-27.6; occurrence ORC-7.4 / OBR-27.4 / OBR-6; authoredOn ORC-9; requester
/// ORC-12, else OBR-16 (XCN → Practitioner); reasonCode OBR-31. Key
/// `ServiceRequest/orc-<index>` (or `obr-<index>` without ORC). `None` without both.
pub fn service_request(
    ctx: &mut Ctx,
    orc: Option<Segment>,
    obr: Option<Segment>,
    patient: Option<&str>,
    encounter: Option<&str>,
) -> Option<String> {
    let anchor = orc.or(obr)?;
    for s in [orc, obr].into_iter().flatten() {
        ctx.consume(s.index());
    }
    let Some(patient) = patient else {
        // R4 requires a subject: an order for no patient is not a valid ServiceRequest.
        ctx.warn_at(anchor, 2, "order without a patient (PID): no ServiceRequest");
        return None;
    };
    let patient = Some(patient);
    let control = orc.map(|o| o.field(1).value().trim().to_ascii_uppercase()).unwrap_or_default();
    let status = orc
        .and_then(|o| codes::order_status(&o.field(5).value()))
        .or_else(|| if control == "CA" { Some("revoked") } else { codes::order_control_status(&control) })
        .unwrap_or("unknown");
    let intent = match obr.map(|o| o.field(11).value().trim().to_ascii_uppercase()).as_deref() {
        Some("G") => "reflex-order",
        _ => codes::order_intent(&control),
    };
    let placer_rep = valued(orc, 2).or_else(|| valued(obr, 2));
    let filler_rep = valued(orc, 3).or_else(|| valued(obr, 3));
    let placer = placer_rep.and_then(|r| ei_typed(ctx, r, "PLAC"));
    let filler = filler_rep.and_then(|r| ei_typed(ctx, r, "FILL"));
    // Key: the placer order number (the order's id where it was placed), else the filler's,
    // else the patient, the test (OBR-4) and the order time (ORC-9, else OBR-7).
    let identity = ctx.scoped_identity("ServiceRequest", placer.as_ref().or(filler.as_ref())).or_else(|| {
        let test = obr.map(|o| coded_key(o.field(4).rep(1))).unwrap_or_default();
        let time = orc.map(|o| o.field(9).value().trim().to_string()).filter(|t| !t.is_empty());
        let time = time.or_else(|| obr.map(|o| o.field(7).value().trim().to_string())).unwrap_or_default();
        Identity::source_key(
            "ServiceRequest",
            &[&patient.map(|p| ctx.token_of(p)).unwrap_or_default(), &format!("{test}|{time}")],
        )
    });
    let mut body = Obj::new().set("status", status).set("intent", intent);
    body.push_all(
        "identifier",
        [placer.map(|p| p.0).unwrap_or(Value::Null), filler.map(|f| f.0).unwrap_or(Value::Null)],
    );
    if let Some((pgn, _)) = valued(orc, 4).and_then(|r| ei_typed(ctx, r, "PGN")) {
        body.put("requisition", pgn);
    }
    if let Some(obr) = obr {
        body.put("code", concept(ctx, obr.field(4).rep(1)));
    }
    body.put("subject", patient.map(reference));
    body.put("encounter", encounter.map(reference));

    // ORC-7, else OBR-27 (timing/quantity), with where it was read.
    let tq_read = [(orc, 7), (obr, 27)].into_iter().find_map(|(seg, n)| Some((seg?, n, valued(seg, n)?)));
    let tq = tq_read.map(|(_, _, t)| t);
    let prio =
        obr.and_then(|o| priority(&o.field(5).value())).or_else(|| tq.and_then(|t| priority(&t.component(6).value())));
    body.put("priority", prio);
    let tq_time = |ctx: &mut Ctx, c: usize| {
        tq_read
            .map(|(seg, n, t)| datetime(ctx, seg, format!("{n}.{c}"), &t.component(c).value()))
            .unwrap_or(Value::Null)
    };
    let (tq_start, tq_end) = (tq_time(ctx, 4), tq_time(ctx, 5));
    if !tq_end.is_null() {
        body.put("occurrencePeriod", Obj::new().set("start", tq_start).set("end", tq_end));
    } else if !tq_start.is_null() {
        body.put("occurrenceDateTime", tq_start);
    } else if let Some(obr) = obr {
        body.put("occurrenceDateTime", datetime(ctx, obr, 6, &obr.field(6).value()));
    }
    if let Some(orc) = orc {
        if control.is_empty() || control == "NW" {
            body.put("authoredOn", datetime(ctx, orc, 9, &orc.field(9).value()));
        }
    }
    let requester = valued(orc, 12).or_else(|| valued(obr, 16)).and_then(|r| practitioner_ref(ctx, r));
    body.put("requester", requester.map(|k| reference(&k)));
    if let Some(obr) = obr {
        let reasons: Vec<Value> = obr.field(31).reps().map(|r| concept(ctx, r)).collect();
        body.push_all("reasonCode", reasons);
    }
    let key = format!("ServiceRequest/{}-{}", anchor.id().to_ascii_lowercase(), anchor.index());
    Some(ctx.add(Resource { kind: "ServiceRequest", key, identity, body, write: Write::Upsert }))
}

/// TQ1 → the ServiceRequest's occurrence (TQ1-7 start, TQ1-8 end) and priority (TQ1-9),
/// replacing what ORC-7/OBR-27 gave. Consumes the TQ1.
pub fn timing(ctx: &mut Ctx, key: &str, tq1: Segment) {
    ctx.consume(tq1.index());
    let start = datetime(ctx, tq1, 7, &tq1.field(7).value());
    let end = datetime(ctx, tq1, 8, &tq1.field(8).value());
    let prio = priority(&tq1.field(9).value());
    let Some(r) = ctx.resource_mut(key) else { return };
    if !start.is_null() || !end.is_null() {
        r.body = without(&r.body, &["occurrenceDateTime", "occurrencePeriod"]);
    }
    if !end.is_null() {
        r.body.put("occurrencePeriod", Obj::new().set("start", start).set("end", end));
    } else {
        r.body.put("occurrenceDateTime", start);
    }
    r.body.put("priority", prio);
}

/// A copy of `obj` without `keys` (the builder has no removal).
pub(crate) fn without(obj: &Obj, keys: &[&str]) -> Obj {
    let mut out = Obj::new();
    if let Value::Object(m) = obj.clone().value() {
        for (k, v) in m {
            if !keys.contains(&k.as_str()) {
                out.put(&k, v);
            }
        }
    }
    out
}

/// NTEs → `note` of the resource `key` (IG NTE\[ServiceRequest\]). Consumes them.
pub fn add_notes(ctx: &mut Ctx, key: &str, notes: &[Segment]) {
    let values: Vec<Value> = notes.iter().map(|n| annotation(ctx, *n)).collect();
    if let Some(r) = ctx.resource_mut(key) {
        r.body.push_all("note", values);
    }
}

/// DG1 → `reasonCode` (DG1-3) of the ServiceRequest `key`, used when no Condition is made.
/// Consumes the DG1.
pub fn add_reason_code(ctx: &mut Ctx, key: &str, dg1: Segment) {
    ctx.consume(dg1.index());
    let c = concept(ctx, dg1.field(3).rep(1));
    if let Some(r) = ctx.resource_mut(key) {
        r.body.push_all("reasonCode", [c]);
    }
}
