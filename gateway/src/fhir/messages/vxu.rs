//! VXU_V04: walks the segment groups and calls the resource maps (IG message map VXU_V04).
//!
//! - PID + PD1 → Patient; NK1 → RelatedPerson; PATIENT_VISIT PV1 + PV2 → Encounter (the IG's
//!   "only if the system wants to know": we keep it when PV1 describes a visit); INSURANCE IN1
//!   (+ IN2) → Coverage.
//! - PERSON_OBSERVATION OBX (+ NTE) → Observation of the patient.
//! - Each ORDER: ORC + RXA + RXR + OBX → Immunization (eligibility, funding and VIS OBX become
//!   Immunization fields); the other OBX (+ NTE) → Observation with `partOf` the Immunization.
//!   ORC → ServiceRequest is not produced (the IG's optional "only if the system wants to know
//!   about the order").
//! - Left unconsumed: GT1, IN3, PRT, TQ1/TQ2, ARV, SFT, UAC.

use super::order::patient_and_visit;
use crate::fhir::ctx::Ctx;
use crate::fhir::resources::immunization;
use crate::fhir::resources::observation::{self, link};
use crate::hl7::structure::Grouped;

pub fn convert(ctx: &mut Ctx, grouped: &Grouped) {
    let msg = ctx.msg;
    let root = &grouped.root;
    let (Some(patient), encounter) = patient_and_visit(ctx, root, "PATIENT_VISIT") else {
        let msh = ctx.msg.msh();
        ctx.warn_at(msh, 9, "VXU message without PID: nothing mapped");
        return;
    };
    for g in root.groups("PERSON_OBSERVATION") {
        if let Some(obx) = g.segment(msg, "OBX") {
            let notes: Vec<_> = g.segments(msg, "NTE").collect();
            observation::observation(ctx, obx, Some(&patient), encounter.as_deref(), "", &notes);
        }
    }
    for order in root.groups("ORDER") {
        let Some(rxa) = order.segment(msg, "RXA") else { continue };
        let groups: Vec<_> = order.groups("OBSERVATION").collect();
        let obx: Vec<_> = groups.iter().filter_map(|g| g.segment(msg, "OBX")).collect();
        let imm =
            immunization::immunization(ctx, rxa, order.segment(msg, "RXR"), order.segment(msg, "ORC"), &obx, &patient);
        if let (Some(imm), Some(enc)) = (&imm, &encounter) {
            link(ctx, imm, "encounter", enc, false);
        }
        let mapped = immunization::mapped_obx(&obx);
        let order_no = observation::order_number(order.segment(msg, "ORC"), None);
        for g in groups {
            let Some(o) = g.segment(msg, "OBX") else { continue };
            if imm.is_some() && mapped.contains(&o.index()) {
                continue;
            }
            let notes: Vec<_> = g.segments(msg, "NTE").collect();
            if let (Some(k), Some(imm)) =
                (observation::observation(ctx, o, Some(&patient), encounter.as_deref(), &order_no, &notes), &imm)
            {
                link(ctx, &k, "partOf", imm, true);
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
        let failures = check_corpus(&["_vxu_v04_"], 5);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    fn imms(raw: &[u8]) -> (Vec<Value>, crate::fhir::convert::Conversion) {
        let c = convert(raw, &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        (c.resources.iter().filter(|r| r.kind == "Immunization").map(|r| r.body.clone().value()).collect(), c)
    }

    #[test]
    fn refusal_is_not_done_with_reason() {
        let (i, c) = imms(include_bytes!("../../../../tests/corpus/hl7/athena_vxu_v04_01.hl7"));
        assert_eq!(i.len(), 1);
        assert_eq!(i[0]["status"], "not-done");
        assert_eq!(i[0]["statusReason"]["coding"][0]["code"], "00");
        assert!(i[0].get("doseQuantity").is_none());
        // The contraindication OBX is an Observation that is part of the Immunization.
        let obs: Vec<_> = c.resources.iter().filter(|r| r.kind == "Observation").collect();
        assert_eq!(obs.len(), 1);
        assert!(obs[0].body.clone().value()["partOf"][0]["reference"]
            .as_str()
            .unwrap()
            .starts_with("local:Immunization/"));
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
    }

    #[test]
    fn administered_dose_fields() {
        let (i, c) = imms(include_bytes!("../../../../tests/corpus/hl7/epic_vxu_v04_01.hl7"));
        assert_eq!(i.len(), 2);
        let a = &i[0];
        assert_eq!(a["status"], "completed");
        assert_eq!(a["vaccineCode"]["coding"][0]["system"], "http://hl7.org/fhir/sid/cvx");
        assert_eq!(a["occurrenceDateTime"], "2026-03-25T09:30:00-05:00");
        assert_eq!(a["doseQuantity"]["value"], 0.5);
        assert_eq!(a["lotNumber"], "HB2026A");
        assert_eq!(a["expirationDate"], "2027-01-31");
        assert_eq!(a["primarySource"], true);
        assert_eq!(a["route"]["coding"][0]["code"], "C28161");
        assert_eq!(a["site"]["coding"][0]["code"], "RT");
        assert_eq!(a["identifier"][0]["value"], "IZ-9001");
        assert_eq!(a["programEligibility"][0]["coding"][0]["code"], "V02");
        assert_eq!(a["performer"].as_array().unwrap().len(), 2);
        assert!(a["manufacturer"]["reference"].as_str().unwrap().starts_with("local:Organization/"));
        // First order: VIS dates without a document type stay Observations; second: education.
        assert!(a.get("education").is_none());
        assert_eq!(i[1]["education"][0]["documentType"], "253088698300017211160720");
        assert_eq!(i[1]["education"][0]["presentationDate"], "2026-03-25");
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
        let (i, _) = imms(include_bytes!("../../../../tests/corpus/hl7/openemr_vxu_v04_01.hl7"));
        assert_eq!(i[1]["occurrenceDateTime"], "2017-02");
        assert_eq!(i[0]["primarySource"], false);
        assert_eq!(i[0]["reportOrigin"]["coding"][0]["code"], "01");
    }
}
