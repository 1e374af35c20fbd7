//! REF_I12 (patient referral): no IG message map; RF1 and PRD by `resources::referral`, the
//! other segments as the ADT and ORU walks map them.
//!
//! - PID → Patient (create-if-absent); NK1 → RelatedPerson; PATIENT_VISIT PV1 + PV2 →
//!   Encounter; AL1 → AllergyIntolerance; IN1 (+ IN2) → Coverage; PR1 → Procedure.
//! - PROVIDER_CONTACT PRD → Practitioner by PRD-1 (table 0286): RP (referring provider) →
//!   the referral's `requester`; PP (primary care provider) → `Patient.generalPractitioner`;
//!   any other role (RT referred to, CP consulting, …) → `performer`.
//! - RF1 → ServiceRequest (category referral); DG1 → Condition and `reasonReference`;
//!   OBSERVATION OBR → DiagnosticReport, RESULTS_NOTES OBX (+ NTE) → Observations, the report
//!   in `supportingInfo`; the message's last NTEs → the referral's notes. Without RF1 no
//!   ServiceRequest (DG1 still → Condition).
//! - Left unconsumed (reported): AUT, CTD, GT1, DRG, ACC, IN3, NTE after an OBR.

use crate::fhir::ctx::Ctx;
use crate::fhir::model::reference;
use crate::fhir::resources::diagnostic_report::{self, ReportLinks};
use crate::fhir::resources::observation::{self, link};
use crate::fhir::resources::referral::{self, Providers};
use crate::fhir::resources::{
    allergy, condition, coverage, encounter, patient, procedure, related_person, service_request,
};
use crate::hl7::structure::Grouped;

pub fn convert(ctx: &mut Ctx, grouped: &Grouped) {
    let msg = ctx.msg;
    let root = &grouped.root;
    let Some(pid) = root.segment(msg, "PID") else {
        let msh = msg.msh();
        ctx.warn_at(msh, 9, "referral without PID: nothing mapped");
        return;
    };
    let p = patient::patient(ctx, pid, None);
    for nk1 in root.segments(msg, "NK1") {
        related_person::related_person(ctx, nk1, &p);
    }
    let visit = root
        .group("PATIENT_VISIT")
        .and_then(|v| v.segment(msg, "PV1").map(|pv1| (pv1, v.segment(msg, "PV2"))))
        .and_then(|(pv1, pv2)| encounter::encounter(ctx, pv1, pv2, &p));
    let visit = visit.as_deref();
    let mut providers = Providers::default();
    for prd in root.groups("PROVIDER_CONTACT").filter_map(|g| g.segment(msg, "PRD")) {
        let role = prd.field(1).rep(1).component(1).value().trim().to_ascii_uppercase();
        let Some(k) = referral::provider(ctx, prd) else { continue };
        match role.as_str() {
            "RP" if providers.requester.is_none() => providers.requester = Some(k),
            "PP" => ctx.append_unique(&p, "generalPractitioner", reference(&k)),
            _ => providers.performers.push(k),
        }
    }
    let sr = root.segment(msg, "RF1").map(|rf1| referral::referral(ctx, rf1, &p, visit, &providers));
    for al1 in root.segments(msg, "AL1") {
        allergy::allergy(ctx, al1, &p);
    }
    for g in root.groups("INSURANCE") {
        if let Some(in1) = g.segment(msg, "IN1") {
            coverage::coverage(ctx, in1, g.segment(msg, "IN2"), &p);
        }
    }
    for dg1 in root.segments(msg, "DG1") {
        let c = condition::condition(ctx, dg1, &p, visit);
        if let Some(sr) = &sr {
            link(ctx, sr, "reasonReference", &c, true);
        }
    }
    for pr1 in root.groups("PROCEDURE").filter_map(|g| g.segment(msg, "PR1")) {
        procedure::procedure(ctx, pr1, &p, visit);
    }
    for g in root.groups("OBSERVATION") {
        let Some(obr) = g.segment(msg, "OBR") else { continue };
        let order_no = observation::order_number(None, Some(obr));
        let mut observations = Vec::new();
        for r in g.groups("RESULTS_NOTES") {
            let Some(obx) = r.segment(msg, "OBX") else { continue };
            let notes: Vec<_> = r.segments(msg, "NTE").collect();
            observations.extend(observation::observation(ctx, obx, Some(&p), visit, &order_no, &notes));
        }
        let links = ReportLinks {
            patient: Some(&p),
            encounter: visit,
            observations: &observations,
            specimens: &[],
            based_on: None,
            presented_form: Vec::new(),
        };
        let report = diagnostic_report::diagnostic_report(ctx, obr, None, links);
        if let (Some(sr), Some(report)) = (&sr, report) {
            link(ctx, sr, "supportingInfo", &report, true);
        }
    }
    if let Some(sr) = &sr {
        let notes: Vec<_> = root.segments(msg, "NTE").collect();
        service_request::add_notes(ctx, sr, &notes);
    }
}

#[cfg(test)]
mod tests {
    use crate::fhir::convert::convert;
    use crate::fhir::site::SiteMaps;

    #[test]
    fn a_referral_names_who_refers_and_to_whom() {
        let raw = "MSH|^~\\&|EHR|CLINIC|GW|CLOUD|20260301120000||REF^I12^REF_I12|RF1|P|2.5.1\r\
RF1|A|R|CARD^Cardiology^L|O^Outpatient^HL70284||REF-1^EHR|20260301|20260601||R07.9^Chest pain^I10\r\
PRD|RP|Grey^Meredith|||||1003^NPI\r\
PRD|RT|Burke^Preston|1 Heart Way^^Boston^MA|||^WPN^PH^^1^617^5550100|2004^NPI\r\
PID|1||M1^^^HOSP^MR||DOE^JANE\r\
DG1|1||R07.9^Chest pain^I10\r\
NTE|1||Please see within 2 weeks.\r";
        let c = convert(raw.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        let sr = c.resources.iter().find(|r| r.kind == "ServiceRequest").unwrap().body.clone().value();
        assert_eq!(sr["status"], "active");
        assert_eq!(sr["intent"], "order");
        assert_eq!(sr["category"][0]["coding"][0]["code"], "3457005");
        assert_eq!(sr["priority"], "routine");
        assert_eq!(sr["occurrencePeriod"]["end"], "2026-06-01");
        assert_eq!(sr["identifier"][0]["value"], "REF-1");
        assert_eq!(sr["note"][0]["text"], "Please see within 2 weeks.");
        assert!(sr["reasonReference"][0]["reference"].as_str().unwrap().starts_with("local:Condition/"));
        let who = |r: &serde_json::Value| {
            let key = r["reference"].as_str().unwrap().trim_start_matches("local:");
            c.resources.iter().find(|x| x.key == key).unwrap().body.clone().value()["name"][0]["family"].clone()
        };
        assert_eq!(who(&sr["requester"]), "Grey");
        assert_eq!(who(&sr["performer"][0]), "Burke");
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
    }
}
