//! PV1 (+ PV2) → Encounter (IG `PV1[Encounter]`, `PV2[Encounter]`); ROL/PRT after PV1 →
//! a PractitionerRole that an `Encounter.participant` references (IG
//! `ROL[Encounter-PractitionerRole]`).
//!
//! Status (IG: PV1-45 valued → finished, else PV1-2 by PatientClass\[EncounterStatus\]; the
//! A11 message map adds Event\[EncounterStatus\]). Events that change the visit's state win
//! over PV1: A03 → finished, A11/A27/A38 (cancels) → cancelled, A13 (cancel discharge) →
//! in-progress with no end, A05/A14 (pre-admit, pending admit) → planned. Otherwise PV1-45 →
//! finished, else the patient class (P → planned, U → unknown, other known classes →
//! in-progress), else Event\[EncounterStatus\] (A04 planned, A08 unknown, A01/A02 in-progress),
//! else unknown. A03 without PV1-45 takes the period end from EVN-6, else EVN-2.
//!
//! Not mapped: PV1-11 location classification extension, PV1-37 (DLD), PV1-40 (bed status on
//! Location), PV1-43, PV1-53/54 (EpisodeOfCare), PV2-7/10/21/22/38/40 (extensions without a
//! published R4 URL), PV2-12 (narrative).

use serde_json::{json, Value};

use crate::fhir::codes;
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::observation::location_ref;
use crate::fhir::resources::patient::{table_concept, val, Identifiers};
use crate::fhir::resources::practitioner_role;
use crate::hl7::parser::{Field, Segment};

const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const EXT_PLANNED_START: &str = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedStartDate";
const EXT_PLANNED_END: &str = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate";

/// Maps PV1 (and PV2) to an Encounter of `patient`; `None` when PV1 carries no visit.
/// Consumes the segments. Status from PV1 alone (see [`encounter_for_event`]).
pub fn encounter(ctx: &mut Ctx, pv1: Segment, pv2: Option<Segment>, patient: &str) -> Option<String> {
    encounter_for_event(ctx, pv1, pv2, patient, "", "")
}

/// True when PV1 describes no visit: patient class empty or `N` (not applicable) and no
/// other field after PV1-2 valued (e.g. the pseudo `PV1|1|N` of A28/A31).
pub fn is_empty_visit(pv1: Segment) -> bool {
    let class = val(pv1.field(2)).to_ascii_uppercase();
    (class.is_empty() || class == "N")
        && (3..=pv1.field_count().max(3)).all(|n| {
            let f = pv1.field(n);
            f.is_empty() || f.is_null()
        })
}

/// [`encounter`] in the context of an ADT event: `trigger` is MSH-9.2 (EVN-1), `event_time`
/// the raw EVN-6 (else EVN-2) for the end of a discharge without PV1-45.
pub fn encounter_for_event(
    ctx: &mut Ctx,
    pv1: Segment,
    pv2: Option<Segment>,
    patient: &str,
    trigger: &str,
    event_time: &str,
) -> Option<String> {
    ctx.consume(pv1.index());
    if let Some(pv2) = pv2 {
        ctx.consume(pv2.index());
    }
    if is_empty_visit(pv1) {
        return None;
    }
    let trigger = trigger.trim().to_ascii_uppercase();
    let mut body = Obj::new().set("subject", reference(patient));

    // Class (PV1-2).
    let class_code = val(pv1.field(2)).to_ascii_uppercase();
    let class = match codes::encounter_class(&class_code) {
        Some(c) => c.coding(),
        None => {
            if !class_code.is_empty() {
                ctx.report.unmapped("HL70004", &class_code);
            }
            Obj::new().set("system", codes::v2_table_system("0004")).set("code", class_code.as_str()).value()
        }
    };
    let class = if class.get("code").is_none() {
        codes::encounter_class("U").map(|c| c.coding()).unwrap_or(Value::Null)
    } else {
        class
    };
    body.put("class", class);

    // Period (PV1-44/45) and status.
    let discharge = val(pv1.field(45));
    let start = datatypes::datetime(&val(pv1.field(44)), ctx.site, ctx.at(pv1, 44));
    let mut end = datatypes::datetime(&discharge, ctx.site, ctx.at(pv1, 45));
    let status = match trigger.as_str() {
        "A03" => {
            if end.is_null() {
                // Checked where EVN is read (`adt::checked_event_time`): valid or empty.
                end = datatypes::datetime(event_time, ctx.site, &mut ctx.report);
            }
            "finished"
        }
        "A11" | "A27" | "A38" => "cancelled",
        "A13" => {
            end = Value::Null;
            "in-progress"
        }
        "A05" | "A14" => "planned",
        _ if !discharge.is_empty() => "finished",
        _ => match class_code.as_str() {
            "P" => "planned",
            "U" => "unknown",
            "E" | "I" | "O" | "R" | "B" | "C" | "N" => "in-progress",
            _ => match trigger.as_str() {
                "A01" | "A02" => "in-progress",
                "A04" => "planned",
                _ => "unknown",
            },
        },
    };
    body.put("status", status);
    body.put("period", Obj::new().set("start", start).set("end", end));

    // Identifiers: PV1-19 visit number (type VN when none sent), PV1-50 alternate visit ID.
    let mut ids = Identifiers::default();
    for rep in pv1.field(19).reps() {
        let t = rep.component(5).value().to_string();
        let id = datatypes::identifier(rep, ctx.site).map(|(mut v, i)| {
            if v.get("type").is_none() {
                v["type"] = json!({"coding": [{"system": codes::V2_0203, "code": "VN"}], "text": "visit number"});
            }
            (v, i)
        });
        ids.push(id, if t.trim().is_empty() { "VN" } else { &t });
    }
    ids.push_cx(ctx, pv1.field(50));
    body.push_all("identifier", ids.values());
    // Key: the visit number (PV1-19), else the patient and the admit time (PV1-44).
    let visit = datatypes::identifier(pv1.field(19).rep(1), ctx.site);
    let identity = ctx
        .scoped_identity("Encounter", visit.as_ref())
        .or_else(|| Identity::source_key("Encounter", &[&ctx.token_of(patient), &val(pv1.field(44))]));

    // Type (PV1-4), service type (PV1-10), priority (PV2-25), reason (PV2-3).
    body.push_all("type", [table_concept(ctx, pv1.field(4).rep(1), "0007", true)]);
    body.put("serviceType", table_concept(ctx, pv1.field(10).rep(1), "0069", false));

    // Participants: PV1-7 attender, PV1-8 referrer, PV1-9 consultant, PV1-17 admitter,
    // PV1-52 participation, PV2-13 referral source.
    let mut participants = Vec::new();
    for (field, code, display) in [
        (7, "ATND", "attender"),
        (8, "REF", "referrer"),
        (9, "CON", "consultant"),
        (17, "ADM", "admitter"),
        (52, "PART", "Participation"),
    ] {
        participants.extend(practitioner_participants(ctx, pv1.field(field), code, display));
    }

    // Locations: PV1-3 current (planned for a pre-admit), PV1-6 prior (completed), PV1-11
    // temporary (active), PV1-42 pending (reserved), PV2-1 prior pending (planned).
    let current_status = if class_code == "P" { "planned" } else { "active" };
    let mut locations = Vec::new();
    for (field, status) in [
        (pv1.field(3), current_status),
        (pv1.field(6), "completed"),
        (pv1.field(11), "active"),
        (pv1.field(42), "reserved"),
    ] {
        locations.extend(location_entry(ctx, field, status));
    }

    // Hospitalization.
    let mut hosp = Obj::new();
    if let Some((v, _)) = datatypes::identifier(pv1.field(5).rep(1), ctx.site) {
        hosp.put("preAdmissionIdentifier", v);
    }
    hosp.put("reAdmission", datatypes::codeable_concept(pv1.field(13).rep(1), ctx.site, ctx.at(pv1, 13)));
    hosp.put("admitSource", table_concept(ctx, pv1.field(14).rep(1), "0023", false));
    let arrangements: Vec<Value> =
        pv1.field(15).reps().map(|r| datatypes::codeable_concept(r, ctx.site, ctx.at(pv1, 15))).collect();
    hosp.push_all("specialArrangement", arrangements);
    // R4: a list (0..*), one per repetition.
    let courtesies: Vec<Value> =
        pv1.field(16).reps().map(|r| datatypes::codeable_concept(r, ctx.site, ctx.at(pv1, 16))).collect();
    hosp.push_all("specialCourtesy", courtesies);
    hosp.put("dischargeDisposition", table_concept(ctx, pv1.field(36).rep(1), "0112", false));
    hosp.push_all("dietPreference", [datatypes::codeable_concept(pv1.field(38).rep(1), ctx.site, ctx.at(pv1, 38))]);

    // Service provider: PV1-39 servicing facility (IG silent; as FHIR-Converter).
    if let Some(org) = datatypes::organization(pv1.field(39).rep(1), ctx.site) {
        body.put("serviceProvider", reference(&ctx.add(org)));
    }

    if let Some(pv2) = pv2 {
        locations.extend(location_entry(ctx, pv2.field(1), "planned"));
        body.push_all("reasonCode", [datatypes::codeable_concept(pv2.field(3).rep(1), ctx.site, ctx.at(pv2, 3))]);
        let planned_start = datatypes::datetime(&val(pv2.field(8)), ctx.site, ctx.at(pv2, 8));
        let planned_end = datatypes::datetime(&val(pv2.field(9)), ctx.site, ctx.at(pv2, 9));
        body.push_all(
            "extension",
            [(EXT_PLANNED_START, planned_start), (EXT_PLANNED_END, planned_end)]
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(url, v)| json!({"url": url, "valueDateTime": v})),
        );
        if let Some(n) = datatypes::decimal(&val(pv2.field(11))) {
            body.put("length", json!({"value": n, "unit": "days", "system": codes::UCUM, "code": "d"}));
        }
        participants.extend(practitioner_participants(ctx, pv2.field(13), "REF", "referrer"));
        body.put("priority", datatypes::codeable_concept(pv2.field(25).rep(1), ctx.site, ctx.at(pv2, 25)));
    }
    body.push_all("participant", participants);
    body.push_all("location", locations);
    body.put("hospitalization", hosp);

    let key = format!("Encounter/pv1-{}", pv1.index());
    Some(ctx.add(Resource { kind: "Encounter", key, identity, body, write: Write::Upsert }))
}

fn practitioner_participants(ctx: &mut Ctx, f: Field, code: &str, display: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for rep in f.reps() {
        if let Some(p) = datatypes::practitioner(rep, ctx.site) {
            let key = ctx.add(p);
            out.push(json!({
                "type": [{"coding": [{"system": PARTICIPATION_TYPE, "code": code, "display": display}]}],
                "individual": reference(&key),
            }));
        }
    }
    out
}

fn location_entry(ctx: &mut Ctx, f: Field, status: &str) -> Option<Value> {
    let key = location_ref(ctx, f.rep(1))?;
    Some(json!({"location": reference(&key), "status": status}))
}

/// ROL or PRT following PV1 → a PractitionerRole for this visit (see [`practitioner_role`])
/// and an `Encounter.participant` referencing it (IG `ROL[Encounter-PractitionerRole]`): type
/// the role (ROL-3/PRT-4, table 0443), period ROL-5/6 or PRT-11/12. Consumes the segment when
/// mapped; returns whether it was (a delete or a segment without a person is not).
pub fn role_participant(ctx: &mut Ctx, seg: Segment, encounter: &str) -> bool {
    let role = if seg.id() == "PRT" {
        practitioner_role::from_prt(ctx, seg, encounter)
    } else {
        practitioner_role::from_rol(ctx, seg, encounter)
    };
    let Some(role) = role else { return false };
    let (ty, period) = match ctx.resource_mut(&role) {
        Some(r) => (
            r.body.get("code").and_then(|c| c.get(0)).cloned().unwrap_or(Value::Null),
            r.body.get("period").cloned().unwrap_or(Value::Null),
        ),
        None => (Value::Null, Value::Null),
    };
    let participant = Obj::new().list("type", [ty]).set("individual", reference(&role)).set("period", period).value();
    ctx.append_unique(encounter, "participant", participant);
    true
}
