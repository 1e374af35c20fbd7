//! OUL_R22 (unsolicited specimen-oriented observation): no IG message map; the segments are
//! mapped as in ORU_R01 (see `messages::oru`), grouped by specimen instead of by order.
//!
//! - PATIENT: PID + PD1 → Patient. VISIT: PV1 + PV2 → Encounter.
//! - Each SPECIMEN: SPM → Specimen; the OBX right after SPM → Observations of the specimen
//!   (`specimen`; in no report: they describe the specimen); CONTAINER SAC →
//!   `Specimen.container`.
//! - Each ORDER of the specimen: ORC (when present) + OBR → ServiceRequest (its NTEs the
//!   notes); RESULT OBX (+ NTE) → Observation with `specimen`, OBR-7 as effective time when
//!   OBX-14 is empty; OBR → DiagnosticReport with the results, the specimen and `basedOn`.
//! - Left unconsumed (reported): PRT, patient NTE, INV, TQ1/TQ2, TCD, SID, CTI, DSC; an NTE
//!   after an OBR without ORC (nothing to note it on).

use super::oru::report;
use crate::fhir::ctx::Ctx;
use crate::fhir::resources::diagnostic_report::ReportLinks;
use crate::fhir::resources::observation::{self, attachments, link};
use crate::fhir::resources::{encounter, patient, service_request, specimen};
use crate::hl7::structure::{Group, Grouped};

pub fn convert(ctx: &mut Ctx, grouped: &Grouped) {
    let msg = ctx.msg;
    let root = &grouped.root;
    let patient = root
        .group("PATIENT")
        .and_then(|g| g.segment(msg, "PID").map(|pid| patient::patient(ctx, pid, g.segment(msg, "PD1"))));
    let encounter = match (&patient, root.group("VISIT")) {
        (Some(p), Some(v)) => {
            v.segment(msg, "PV1").and_then(|pv1| encounter::encounter(ctx, pv1, v.segment(msg, "PV2"), p))
        }
        _ => None,
    };
    for g in root.groups("SPECIMEN") {
        specimen_group(ctx, g, patient.as_deref(), encounter.as_deref());
    }
}

fn specimen_group(ctx: &mut Ctx, g: &Group, patient: Option<&str>, encounter: Option<&str>) {
    let msg = ctx.msg;
    let Some(spm) = g.segment(msg, "SPM") else { return };
    let spec = specimen::specimen(ctx, spm, patient);
    for obx in g.segments(msg, "OBX") {
        if let Some(k) = observation::observation(ctx, obx, patient, encounter, "", &[]) {
            if let Some(s) = &spec {
                link(ctx, &k, "specimen", s, false);
            }
        }
    }
    if let Some(s) = &spec {
        for sac in g.groups("CONTAINER").filter_map(|c| c.segment(msg, "SAC")) {
            specimen::container(ctx, s, sac);
        }
    }
    for order in g.groups("ORDER") {
        let Some(obr) = order.segment(msg, "OBR") else { continue };
        let orc = order.segment(msg, "ORC");
        let based_on = orc.and_then(|orc| {
            // The ServiceRequest consumes ORC and OBR; the report consumes them again.
            let key = service_request::service_request(ctx, Some(orc), Some(obr), patient, encounter)?;
            let notes: Vec<_> = order.segments(msg, "NTE").collect();
            service_request::add_notes(ctx, &key, &notes);
            Some(key)
        });
        let order_no = observation::order_number(orc, Some(obr));
        let mut observations = Vec::new();
        let mut presented_form = Vec::new();
        for r in order.groups("RESULT") {
            let Some(obx) = r.segment(msg, "OBX") else { continue };
            let notes: Vec<_> = r.segments(msg, "NTE").collect();
            presented_form.extend(attachments(&obx));
            if let Some(k) = observation::observation(ctx, obx, patient, encounter, &order_no, &notes) {
                if let Some(s) = &spec {
                    link(ctx, &k, "specimen", s, false);
                }
                observations.push(k);
            }
        }
        let specimens: Vec<String> = spec.iter().cloned().collect();
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
}

#[cfg(test)]
mod tests {
    use crate::fhir::convert::convert;
    use crate::fhir::messages::test_corpus::check_corpus;
    use crate::fhir::site::SiteMaps;

    #[test]
    fn corpus_counts() {
        let failures = check_corpus(&["_oul_", "_omg_"], 2);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn results_refer_to_their_specimen_and_report() {
        let raw = "MSH|^~\\&|LIS|LAB|GW|CLOUD|20260301120000||OUL^R22^OUL_R22|U1|P|2.5.1\r\
PID|1||M1^^^HOSP^MR||DOE^JANE\r\
SPM|1|S1&LIS||BLD^Blood^HL70487|||||||||||||20260301080000\r\
OBX|1|NM|SPECVOL^Specimen volume^L||5|mL|||||F\r\
OBR|1|P1^EHR|F1^LIS|2951-2^Sodium^LN|||20260301080000\r\
ORC|SC|P1^EHR|F1^LIS\r\
OBX|1|NM|2951-2^Sodium^LN||140|mmol/L|||||F\r";
        let c = convert(raw.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        let spec = c.resources.iter().find(|r| r.kind == "Specimen").unwrap().key.clone();
        let obs: Vec<_> =
            c.resources.iter().filter(|r| r.kind == "Observation").map(|r| r.body.clone().value()).collect();
        assert_eq!(obs.len(), 2);
        assert!(obs.iter().all(|o| o["specimen"]["reference"] == format!("local:{spec}").as_str()));
        assert_eq!(obs[1]["effectiveDateTime"], "2026-03-01T08:00:00+00:00");
        let report = c.resources.iter().find(|r| r.kind == "DiagnosticReport").unwrap().body.clone().value();
        assert_eq!(report["result"].as_array().unwrap().len(), 1);
        assert_eq!(report["specimen"][0]["reference"], format!("local:{spec}").as_str());
        assert!(report["basedOn"][0]["reference"].as_str().unwrap().starts_with("local:ServiceRequest/"));
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
    }
}
