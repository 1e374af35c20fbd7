//! ORU_R01: walks the segment groups and calls the resource maps (IG message map ORU_R01).
//!
//! Per PATIENT_RESULT:
//! - PATIENT: PID + PD1 → Patient; NK1 → RelatedPerson; PRT with role PP (IG: PP of table
//!   0443) → a PractitionerRole in `Patient.generalPractitioner`; PATIENT_OBSERVATION OBX →
//!   Observation of the patient; VISIT PV1 + PV2 → Encounter, its PRTs → PractitionerRole
//!   participants. NTE (patient notes) left unconsumed (the IG maps them nowhere).
//! - Each ORDER_OBSERVATION:
//!   - ORC (when present, as the IG's "IF ORC VALUED") + OBR → ServiceRequest, the report's
//!     `basedOn`; the NTEs after OBR become its notes (the IG gives them no target;
//!     FHIR-Converter puts them on the ServiceRequest). Without ORC those NTEs stay unconsumed.
//!   - OBSERVATION: OBX (+ its NTEs) → Observation (subject, encounter); ED values become the
//!     report's presentedForm. Without OBX-14, OBR-7 is the Observation's effective time.
//!   - SPECIMEN: SPM → Specimen; the OBX after SPM → Observations with `specimen` (they are
//!     also results of the report, as in the IG's Observation\[3\] under the report).
//!   - OBR (+ ORC) → DiagnosticReport with result, specimen, basedOn, presentedForm.
//! - Left unconsumed: PRT in orders and observations and with other roles in PATIENT, TQ1/TQ2,
//!   CTD, FT1, CTI, DSC, SFT, UAC.

use super::order::patient_and_visit;
use crate::fhir::ctx::Ctx;
use crate::fhir::resources::diagnostic_report::{self, ReportLinks};
use crate::fhir::resources::observation::{self, attachments, link};
use crate::fhir::resources::{service_request, specimen};
use crate::hl7::parser::Segment;
use crate::hl7::structure::{Group, Grouped};

pub fn convert(ctx: &mut Ctx, grouped: &Grouped) {
    for pr in grouped.root.groups("PATIENT_RESULT") {
        patient_result(ctx, pr);
    }
}

fn patient_result(ctx: &mut Ctx, pr: &Group) {
    let msg = ctx.msg;
    let (patient, encounter) = match pr.group("PATIENT") {
        Some(p) => {
            let (patient, encounter) = patient_and_visit(ctx, p, "VISIT");
            if let Some(pat) = &patient {
                for g in p.groups("PATIENT_OBSERVATION") {
                    if let Some(obx) = g.segment(msg, "OBX") {
                        observation::observation(ctx, obx, Some(pat), None, "", &[]);
                    }
                }
            }
            (patient, encounter)
        }
        None => (None, None),
    };
    let (patient, encounter) = (patient.as_deref(), encounter.as_deref());
    for oo in pr.groups("ORDER_OBSERVATION") {
        order_observation(ctx, oo, patient, encounter);
    }
}

/// OBR-7 (observation date/time, the collection time) → `effectiveDateTime` of the order's
/// Observations that have none from OBX-14 (IG ORU_R01, as FHIR-Converter).
fn observed_at_collection(ctx: &mut Ctx, obr: Segment, observations: &[String]) {
    let when = crate::fhir::datatypes::datetime(obr.field(7).value().trim(), ctx.site, ctx.at(obr, 7));
    if when.is_null() {
        return;
    }
    for key in observations {
        if let Some(r) = ctx.resource_mut(key) {
            if r.body.get("effectiveDateTime").is_none() && r.body.get("effectivePeriod").is_none() {
                r.body.put("effectiveDateTime", when.clone());
            }
        }
    }
}

fn order_observation(ctx: &mut Ctx, oo: &Group, patient: Option<&str>, encounter: Option<&str>) {
    let msg = ctx.msg;
    let Some(obr) = oo.segment(msg, "OBR") else { return };
    let orc = oo.segment(msg, "ORC");
    let based_on = match orc {
        Some(orc) => {
            // The ServiceRequest consumes ORC and OBR; the report consumes them again.
            let key = service_request::service_request(ctx, Some(orc), Some(obr), patient, encounter);
            if let Some(k) = &key {
                let notes: Vec<_> = oo.segments(msg, "NTE").collect();
                service_request::add_notes(ctx, k, &notes);
            }
            key
        }
        None => None,
    };
    let order = observation::order_number(orc, Some(obr));
    let mut observations = Vec::new();
    let mut presented_form = Vec::new();
    for g in oo.groups("OBSERVATION") {
        let Some(obx) = g.segment(msg, "OBX") else { continue };
        let notes: Vec<_> = g.segments(msg, "NTE").collect();
        presented_form.extend(attachments(&obx));
        if let Some(k) = observation::observation(ctx, obx, patient, encounter, &order, &notes) {
            observations.push(k);
        }
    }
    let mut specimens = Vec::new();
    for g in oo.groups("SPECIMEN") {
        let Some(spm) = g.segment(msg, "SPM") else { continue };
        let spec = specimen::specimen(ctx, spm, patient);
        for obx in g.segments(msg, "OBX") {
            presented_form.extend(attachments(&obx));
            if let Some(k) = observation::observation(ctx, obx, patient, encounter, &order, &[]) {
                if let Some(s) = &spec {
                    link(ctx, &k, "specimen", s, false);
                }
                observations.push(k);
            }
        }
        specimens.extend(spec);
    }
    let links = ReportLinks {
        patient,
        encounter,
        observations: &observations,
        specimens: &specimens,
        based_on: based_on.as_deref(),
        presented_form,
    };
    report(ctx, obr, orc, links);
}

/// The order's DiagnosticReport (ORU, OUL), once OBR-7 is the effective time of its results
/// that have none of their own.
pub(crate) fn report(ctx: &mut Ctx, obr: Segment, orc: Option<Segment>, links: ReportLinks) {
    observed_at_collection(ctx, obr, links.observations);
    diagnostic_report::diagnostic_report(ctx, obr, orc, links);
}

#[cfg(test)]
mod tests {
    use crate::fhir::convert::convert;
    use crate::fhir::messages::test_corpus::check_corpus;
    use crate::fhir::site::SiteMaps;
    use serde_json::Value;

    #[test]
    fn corpus_counts() {
        let failures = check_corpus(&["_oru_r01_"], 10);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    fn by_kind(c: &crate::fhir::convert::Conversion, kind: &str) -> Vec<Value> {
        c.resources.iter().filter(|r| r.kind == kind).map(|r| r.body.clone().value()).collect()
    }

    #[test]
    fn obr_7_is_the_effective_time_of_results_without_obx_14() {
        let raw = "MSH|^~\\&|LAB|HOSP|GW|CLOUD|20260101120000||ORU^R01^ORU_R01|L1|P|2.5.1\r\
PID|1||M1^^^HOSP^MR||DOE^JANE\r\
OBR|1|P1^EHR|F1^LAB|24331-1^Lipid panel^LN|||20260101073000-0500\r\
OBX|1|NM|2093-3^Cholesterol^LN||182|mg/dL|||||F\r\
OBX|2|NM|2571-8^Triglyceride^LN||90|mg/dL|||||F|||20260101080000-0500\r";
        let c = convert(raw.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        let obs = by_kind(&c, "Observation");
        assert_eq!(obs[0]["effectiveDateTime"], "2026-01-01T07:30:00-05:00");
        assert_eq!(obs[1]["effectiveDateTime"], "2026-01-01T08:00:00-05:00", "OBX-14 wins");
    }

    #[test]
    fn obx_after_spm_references_the_specimen() {
        let raw = include_bytes!("../../../../tests/corpus/hl7/openemr_oru_r01_01.hl7");
        let c = convert(raw, &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        let specs: Vec<_> = c.resources.iter().filter(|r| r.kind == "Specimen").collect();
        assert_eq!(specs.len(), 1);
        let spec_ref = format!("local:{}", specs[0].key);
        let s = specs[0].body.clone().value();
        assert_eq!(s["collection"]["collectedDateTime"], "2026-03-17T10:00:00-06:00");
        assert_eq!(s["receivedTime"], "2026-03-17T11:30:00-06:00");
        assert_eq!(s["identifier"][0]["value"], "SP-7001");
        let obs = by_kind(&c, "Observation");
        let with_spec: Vec<_> = obs.iter().filter(|o| o["specimen"]["reference"] == spec_ref.as_str()).collect();
        assert_eq!(with_spec.len(), 2);
        let reports = by_kind(&c, "DiagnosticReport");
        assert_eq!(reports[0]["specimen"][0]["reference"], spec_ref.as_str());
        assert_eq!(reports[0]["result"].as_array().unwrap().len(), 4);
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
    }

    #[test]
    fn ed_becomes_presented_form() {
        let raw = include_bytes!("../../../../tests/corpus/hl7/athena_oru_r01_01.hl7");
        let c = convert(raw, &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        let dr = &by_kind(&c, "DiagnosticReport")[0];
        assert_eq!(dr["presentedForm"][0]["contentType"], "application/pdf");
        assert!(dr["presentedForm"][0]["data"].as_str().unwrap().starts_with("JVBERi0xLjQK"));
        assert_eq!(dr["status"], "final");
        assert!(dr["basedOn"][0]["reference"].as_str().unwrap().starts_with("local:ServiceRequest/"));
        let sr = &by_kind(&c, "ServiceRequest")[0];
        assert_eq!(sr["note"].as_array().unwrap().len(), 2);
        assert_eq!(sr["status"], "completed");
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
    }

    #[test]
    fn report_fields() {
        let raw = include_bytes!("../../../../tests/corpus/hl7/epic_oru_r01_01.hl7");
        let c = convert(raw, &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        let dr = &by_kind(&c, "DiagnosticReport")[0];
        assert_eq!(dr["issued"], "2026-03-15T10:12:00-05:00");
        assert_eq!(dr["effectiveDateTime"], "2026-03-15T08:45:00-05:00");
        assert_eq!(dr["identifier"][0]["value"], "ORD448801");
        assert_eq!(dr["identifier"][1]["type"]["coding"][0]["code"], "FILL");
        assert_eq!(dr["result"].as_array().unwrap().len(), 4);
        let obs = by_kind(&c, "Observation");
        assert_eq!(obs[1]["note"][0]["text"], "Hgb decreased from prior (10.4 on 20260301).");
        assert_eq!(obs[6]["status"], "corrected");
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
    }
}
