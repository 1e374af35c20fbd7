//! RXA (+ RXR, ORC, OBX) → Immunization (IG RXA\[Immunization\], RXR\[Immunization\],
//! ORC\[Immunization\]; the VXU map's note that some OBX map into the Immunization).
//!
//! Choices:
//! - status: RXA-21 `D` → entered-in-error; else RXA-20 (CompletionStatus: CP/PA completed,
//!   RE/NA not-done); empty → completed (IG). statusReason RXA-18 only for not-done.
//! - RXA-6 `999` (IIS "amount unknown") gives no doseQuantity.
//! - RXA-9 (NIP001, as FHIR-Converter): `00` → primarySource true; any other code →
//!   primarySource false and reportOrigin = RXA-9.
//! - manufacturer RXA-17 (CWE\[Organization\]): identifier CWE.1 in the CWE.3 system (MVX),
//!   name CWE.2; the identity when the system is known.
//! - location RXA-27 (v2.6+), else RXA-11 (PL, v2.5).
//! - performer: RXA-10 function AP, ORC-12 function OP (v2-0443).
//! - OBX by LOINC OBX-3 (CDC IIS guide): 64994-7 → programEligibility; 30963-3 →
//!   fundingSource; VIS 69764-9 (document type: `education.documentType` = CWE.1),
//!   29768-9 (publicationDate), 29769-7 (presentationDate), grouped into one `education` per
//!   OBX-4 sub-id (dates without a document type are not education: R4 needs one). Other OBX
//!   are left to the caller (Observation, `partOf` this Immunization); see [`mapped_obx`].

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::observation::{concept, datetime, ei_typed, location_ref, practitioner_ref};
use crate::fhir::codes;
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::coded_key;
use crate::hl7::parser::{Rep, Segment};

const V2_0443: &str = "http://terminology.hl7.org/CodeSystem/v2-0443";
const ELIGIBILITY: &str = "64994-7";
const FUNDING: &str = "30963-3";
const VIS_DOC: &str = "69764-9";
const VIS_PUBLISHED: &str = "29768-9";
const VIS_PRESENTED: &str = "29769-7";

fn obx_code(obx: &Segment) -> String {
    obx.field(3).rep(1).component(1).value().trim().to_string()
}

/// The segment indexes of the OBX [`immunization`] maps into the Immunization: eligibility
/// and funding always; VIS publication/presentation dates only with a VIS document type
/// (69764-9) of the same OBX-4 sub-id (R4 education needs a documentType). The caller maps
/// the others as Observations.
pub fn mapped_obx(obx: &[Segment]) -> Vec<usize> {
    let sub = |o: &Segment| o.field(4).value().trim().to_string();
    let vis_groups: Vec<String> = obx.iter().filter(|o| obx_code(o) == VIS_DOC).map(sub).collect();
    obx.iter()
        .filter(|o| match obx_code(o).as_str() {
            ELIGIBILITY | FUNDING | VIS_DOC => true,
            VIS_PUBLISHED | VIS_PRESENTED => vis_groups.contains(&sub(o)),
            _ => false,
        })
        .map(|o| o.index())
        .collect()
}

fn function(code: &str) -> Value {
    json!({"coding": [{"system": V2_0443, "code": code}]})
}

/// CWE[Organization] (RXA-17) → Organization key.
fn manufacturer(ctx: &mut Ctx, cwe: Rep) -> Option<String> {
    let c = |i: usize| cwe.component(i).value().trim().to_string();
    let (code, name, system_name) = (c(1), c(2), c(3));
    if code.is_empty() && name.is_empty() {
        return None;
    }
    let system = codes::coding_system_uri(&system_name);
    let identifier = Obj::new().set("value", code.as_str()).set("system", system);
    let body = Obj::new()
        .set("name", if name.is_empty() { code.clone() } else { name.clone() })
        .list("identifier", [identifier.value()]);
    let identity = system.filter(|_| !code.is_empty()).map(|s| Identity { system: s.to_string(), value: code.clone() });
    let key_src = if code.is_empty() { name } else { format!("{code}-{system_name}") };
    let key: String = key_src
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_') { ch } else { '-' })
        .collect();
    Some(ctx.add(Resource {
        kind: "Organization",
        key: format!("Organization/{key}"),
        identity,
        body,
        write: Write::Upsert,
    }))
}

/// Maps RXA (with RXR, ORC and the order's OBX) to an Immunization of `patient`, adds it and
/// returns its key. Consumes RXA, RXR, ORC and the OBX it maps (see [`mapped_obx`]).
///
/// identifier ORC-2 (PLAC), ORC-3 (FILL) — the identity is the filler id, else the placer id,
/// when its system is known; vaccineCode RXA-5; occurrenceDateTime RXA-3; recorded RXA-22
/// (RXA-21 `A`), else ORC-9; doseQuantity RXA-6/RXA-7; lotNumber RXA-15; expirationDate
/// RXA-16; reasonCode RXA-19; route RXR-1; site RXR-2. Key `Immunization/rxa-<segment index>`.
pub fn immunization(
    ctx: &mut Ctx,
    rxa: Segment,
    rxr: Option<Segment>,
    orc: Option<Segment>,
    obx: &[Segment],
    patient: &str,
) -> Option<String> {
    let vaccine = concept(ctx, rxa.field(5).rep(1));
    let occurrence = datetime(ctx, rxa, 3, &rxa.field(3).value());
    if vaccine.is_null() || occurrence.is_null() {
        ctx.warn_at(rxa, 5, "RXA without RXA-5 vaccine or RXA-3 date: no Immunization");
        return None;
    }
    ctx.consume(rxa.index());
    let action = rxa.field(21).value().trim().to_ascii_uppercase();
    let status = if action == "D" {
        "entered-in-error"
    } else {
        codes::immunization_status(&rxa.field(20).value()).unwrap_or("completed")
    };
    let mut body = Obj::new()
        .set("status", status)
        .set("vaccineCode", vaccine)
        .set("patient", reference(patient))
        .set("occurrenceDateTime", occurrence);
    if status == "not-done" {
        body.put("statusReason", concept(ctx, rxa.field(18).rep(1)));
    }
    let mut identity = None;
    if let Some(orc) = orc {
        ctx.consume(orc.index());
        let placer = ei_typed(ctx, orc.field(2).rep(1), "PLAC");
        let filler = ei_typed(ctx, orc.field(3).rep(1), "FILL");
        identity = ctx.scoped_identity("Immunization", filler.as_ref().or(placer.as_ref()));
        body.push_all(
            "identifier",
            [placer.map(|p| p.0).unwrap_or(Value::Null), filler.map(|f| f.0).unwrap_or(Value::Null)],
        );
    }
    let recorded = if action == "A" { datetime(ctx, rxa, 22, &rxa.field(22).value()) } else { Value::Null };
    let recorded = match (recorded, orc) {
        (Value::Null, Some(orc)) => datetime(ctx, orc, 9, &orc.field(9).value()),
        (r, _) => r,
    };
    body.put("recorded", recorded);
    let source = rxa.field(9).rep(1);
    let source_code = source.component(1).value().trim().to_string();
    if !source_code.is_empty() {
        body.put("primarySource", source_code == "00");
        if source_code != "00" {
            body.put("reportOrigin", concept(ctx, source));
        }
    }
    let location = location_ref(ctx, rxa.field(27).rep(1)).or_else(|| location_ref(ctx, rxa.field(11).rep(1)));
    body.put("location", location.map(|k| reference(&k)));
    let mfr = manufacturer(ctx, rxa.field(17).rep(1));
    body.put("manufacturer", mfr.map(|k| reference(&k)));
    body.put("lotNumber", rxa.field(15).value().trim());
    body.put("expirationDate", datatypes::date(&rxa.field(16).value(), ctx.at(rxa, 16)));
    let amount = rxa.field(6).value().trim().to_string();
    if amount != "999" {
        let site = ctx.site;
        body.put("doseQuantity", datatypes::quantity(&amount, rxa.field(7).rep(1), site, ctx.at(rxa, 6)));
    }
    let mut performers = Vec::new();
    for xcn in rxa.field(10).reps() {
        if let Some(k) = practitioner_ref(ctx, xcn) {
            performers.push(json!({"function": function("AP"), "actor": reference(&k)}));
        }
    }
    if let Some(k) = orc.and_then(|o| practitioner_ref(ctx, o.field(12).rep(1))) {
        performers.push(json!({"function": function("OP"), "actor": reference(&k)}));
    }
    body.push_all("performer", performers);
    let reasons: Vec<Value> = rxa.field(19).reps().map(|r| concept(ctx, r)).collect();
    body.push_all("reasonCode", reasons);
    if let Some(rxr) = rxr {
        ctx.consume(rxr.index());
        body.put("route", concept(ctx, rxr.field(1).rep(1)));
        body.put("site", concept(ctx, rxr.field(2).rep(1)));
    }
    // Eligibility, funding and VIS education from the OBX.
    let mut education: BTreeMap<String, Obj> = BTreeMap::new();
    let mapped = mapped_obx(obx);
    for o in obx.iter().filter(|o| mapped.contains(&o.index())) {
        ctx.consume(o.index());
        let value = o.field(5).rep(1);
        let sub_id = o.field(4).value().trim().to_string();
        match obx_code(o).as_str() {
            ELIGIBILITY => {
                let c = concept(ctx, value);
                body.push_all("programEligibility", [c]);
            }
            FUNDING => body.put("fundingSource", concept(ctx, value)),
            code => {
                let e = education.entry(sub_id).or_default();
                match code {
                    VIS_DOC => e.put("documentType", value.component(1).value().trim()),
                    VIS_PUBLISHED => e.put("publicationDate", datetime(ctx, *o, 5, &value.value())),
                    _ => e.put("presentationDate", datetime(ctx, *o, 5, &value.value())),
                }
            }
        }
    }
    body.push_all("education", education.into_values().map(Obj::value));
    // Without an order number: the patient, the vaccine (RXA-5) and the administration time (RXA-3).
    let identity = identity.or_else(|| {
        let what = format!("{}|{}", coded_key(rxa.field(5).rep(1)), rxa.field(3).value().trim());
        Identity::source_key("Immunization", &[&ctx.token_of(patient), &what])
    });
    let key = format!("Immunization/rxa-{}", rxa.index());
    Some(ctx.add(Resource { kind: "Immunization", key, identity, body, write: Write::Upsert }))
}
