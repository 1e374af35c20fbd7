//! ORM_O01 and OML_O21: walks the segment groups and calls the resource maps (IG message maps
//! ORM_O01, OML_O21).
//!
//! - PATIENT: PID + PD1 → Patient; NK1 → RelatedPerson; PRT with role PP → a PractitionerRole
//!   in `Patient.generalPractitioner`; PATIENT_VISIT PV1 + PV2 → Encounter (its PRTs →
//!   PractitionerRole participants); AL1 → AllergyIntolerance; INSURANCE IN1 (+ IN2) → Coverage.
//! - Each ORDER: ORC + OBR → ServiceRequest (ORC alone when the order has no detail; an order
//!   whose detail is RXO/RQD/… is not a ServiceRequest and stays unconsumed);
//!   TIMING TQ1 → its occurrence/priority; NTE → note; DG1 → Condition and `reasonReference`;
//!   OBSERVATION OBX (+ NTE) → Observation and `supportingInfo`; (OML) SPECIMEN SPM → Specimen
//!   and `specimen`, OBX after SPM → Observation with `specimen` (also `supportingInfo`),
//!   CONTAINER SAC → `Specimen.container` (OBX after SAC as for SPM).
//! - Left unconsumed: message-level NTE, patient NTE, GT1, IN3, PRT in orders and with
//!   other roles before the visit, TQ2, TCD, CTD, FT1, CTI,
//!   BLG, SGH/SGT.

use crate::fhir::ctx::Ctx;
use crate::fhir::resources::observation::{self, link};
use crate::fhir::resources::{
    allergy, condition, coverage, encounter, patient, related_person, service_request, specimen,
};
use crate::hl7::structure::{Group, Grouped};

pub fn convert(ctx: &mut Ctx, grouped: &Grouped) {
    let root = &grouped.root;
    let (patient, encounter) = match root.group("PATIENT") {
        Some(p) => patient_and_visit(ctx, p, "PATIENT_VISIT"),
        None => (None, None),
    };
    for order in root.groups("ORDER") {
        convert_order(ctx, order, patient.as_deref(), encounter.as_deref());
    }
}

/// The patient part shared by the order and result messages: PID + PD1 → Patient, NK1 →
/// RelatedPerson, ROL/PRT with role PP → a PractitionerRole in `Patient.generalPractitioner`,
/// `visit_group` PV1 + PV2 → Encounter and its ROL/PRT → PractitionerRole participants, AL1 →
/// AllergyIntolerance, INSURANCE IN1 (+ IN2) → Coverage. Returns the Patient and Encounter keys.
pub(crate) fn patient_and_visit(ctx: &mut Ctx, group: &Group, visit_group: &str) -> (Option<String>, Option<String>) {
    let msg = ctx.msg;
    let Some(pid) = group.segment(msg, "PID") else { return (None, None) };
    let patient = patient::patient(ctx, pid, group.segment(msg, "PD1"));
    for nk1 in group.segments(msg, "NK1") {
        related_person::related_person(ctx, nk1, &patient);
    }
    for role in group.segments(msg, "ROL").chain(group.segments(msg, "PRT")) {
        patient::general_practitioner_role(ctx, role, &patient);
    }
    let visit = group.group(visit_group);
    let encounter = visit
        .and_then(|v| v.segment(msg, "PV1").map(|pv1| (pv1, v.segment(msg, "PV2"))))
        .and_then(|(pv1, pv2)| encounter::encounter(ctx, pv1, pv2, &patient));
    if let (Some(visit), Some(enc)) = (visit, &encounter) {
        for role in visit.segments(msg, "ROL").chain(visit.segments(msg, "PRT")) {
            encounter::role_participant(ctx, role, enc);
        }
    }
    for al1 in group.segments(msg, "AL1") {
        allergy::allergy(ctx, al1, &patient);
    }
    for g in group.groups("INSURANCE") {
        if let Some(in1) = g.segment(msg, "IN1") {
            coverage::coverage(ctx, in1, g.segment(msg, "IN2"), &patient);
        }
    }
    (Some(patient), encounter)
}

fn convert_order(ctx: &mut Ctx, order: &Group, patient: Option<&str>, encounter: Option<&str>) {
    let msg = ctx.msg;
    let Some(orc) = order.segment(msg, "ORC") else { return };
    // ORM: ORDER_DETAIL; OML: OBSERVATION_REQUEST.
    let detail = order.group("ORDER_DETAIL").or_else(|| order.group("OBSERVATION_REQUEST"));
    let obr = detail.and_then(|d| d.segment(msg, "OBR"));
    if detail.is_some() && obr.is_none() {
        return; // RXO, RQD, …: not a ServiceRequest.
    }
    let Some(sr) = service_request::service_request(ctx, Some(orc), obr, patient, encounter) else { return };
    for t in order.groups("TIMING") {
        if let Some(tq1) = t.segment(msg, "TQ1") {
            service_request::timing(ctx, &sr, tq1);
        }
    }
    let Some(detail) = detail else { return };
    let order_no = observation::order_number(Some(orc), obr);
    let notes: Vec<_> = detail.segments(msg, "NTE").collect();
    service_request::add_notes(ctx, &sr, &notes);
    for dg1 in detail.segments(msg, "DG1") {
        match patient {
            Some(p) => {
                let c = condition::condition(ctx, dg1, p, None);
                link(ctx, &sr, "reasonReference", &c, true);
            }
            None => service_request::add_reason_code(ctx, &sr, dg1),
        }
    }
    for g in detail.groups("OBSERVATION") {
        let Some(obx) = g.segment(msg, "OBX") else { continue };
        let notes: Vec<_> = g.segments(msg, "NTE").collect();
        if let Some(k) = observation::observation(ctx, obx, patient, encounter, &order_no, &notes) {
            link(ctx, &sr, "supportingInfo", &k, true);
        }
    }
    for g in detail.groups("SPECIMEN") {
        let Some(spm) = g.segment(msg, "SPM") else { continue };
        let Some(spec) = specimen::specimen(ctx, spm, patient) else { continue };
        link(ctx, &sr, "specimen", &spec, true);
        let containers: Vec<_> = g.groups("CONTAINER").collect();
        let obxs = g.segments(msg, "OBX").chain(containers.iter().flat_map(|c| c.segments(msg, "OBX")));
        for obx in obxs.collect::<Vec<_>>() {
            if let Some(k) = observation::observation(ctx, obx, patient, encounter, &order_no, &[]) {
                link(ctx, &k, "specimen", &spec, false);
                link(ctx, &sr, "supportingInfo", &k, true);
            }
        }
        for c in containers {
            if let Some(sac) = c.segment(msg, "SAC") {
                specimen::container(ctx, &spec, sac);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fhir::convert::convert;
    use crate::fhir::messages::test_corpus::check_corpus;
    use crate::fhir::site::SiteMaps;
    use serde_json::Value;

    #[test]
    fn corpus_counts() {
        let failures = check_corpus(&["_orm_o01_", "_oml_o21_"], 8);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    fn srs(raw: &[u8]) -> (Vec<Value>, crate::fhir::convert::Conversion) {
        let c = convert(raw, &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        (c.resources.iter().filter(|r| r.kind == "ServiceRequest").map(|r| r.body.clone().value()).collect(), c)
    }

    #[test]
    fn cancel_and_new_orders() {
        let (sr, _) = srs(include_bytes!("../../../../tests/corpus/hl7/cerner_orm_o01_01.hl7"));
        assert_eq!(sr[0]["status"], "revoked");
        assert_eq!(sr[0]["intent"], "order");
        assert!(sr[0].get("authoredOn").is_none());
        assert_eq!(sr[0]["note"][0]["text"], "Cancelled: duplicate of CP7781.");
        let (sr, c) = srs(include_bytes!("../../../../tests/corpus/hl7/epic_orm_o01_01.hl7"));
        assert_eq!(sr[0]["status"], "active");
        assert_eq!(sr[0]["priority"], "stat");
        assert_eq!(sr[0]["authoredOn"], "2026-03-15T09:00:00-05:00");
        assert_eq!(sr[0]["occurrenceDateTime"], "2026-03-15T09:30:00-05:00");
        assert_eq!(sr[0]["identifier"][0]["type"]["coding"][0]["code"], "PLAC");
        assert_eq!(sr[0]["requisition"]["value"], "GRP448810");
        assert_eq!(sr[0]["reasonCode"][0]["coding"][0]["code"], "R07.9");
        assert!(sr[0]["requester"]["reference"].as_str().unwrap().starts_with("local:Practitioner/"));
        assert!(sr[0]["reasonReference"][0]["reference"].as_str().unwrap().starts_with("local:Condition/"));
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
    }

    #[test]
    fn oml_specimen_and_container() {
        let (sr, c) = srs(include_bytes!("../../../../tests/corpus/hl7/epic_oml_o21_01.hl7"));
        let spec = c.resources.iter().find(|r| r.kind == "Specimen").unwrap();
        assert_eq!(sr[0]["specimen"][0]["reference"], format!("local:{}", spec.key).as_str());
        assert_eq!(sr[0]["priority"], "stat");
        let s = spec.body.clone().value();
        let containers = s["container"].as_array().unwrap();
        assert_eq!(containers.last().unwrap()["identifier"][0]["value"], "CT448820-1");
        assert_eq!(containers.last().unwrap()["capacity"]["value"], 5);
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
    }
}
