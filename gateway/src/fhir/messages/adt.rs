//! ADT messages: walks the segment groups and calls the resource maps (IG message maps
//! ADT_A01/A02/A05/A06/A09/A11; A40 by the merge rule below; the structures the IG has no
//! map for — ADT_A15, ADT_A16, ADT_A21, ADT_A60 — by the same walk, their segments being a
//! subset of ADT_A01's). A21 (leave of absence) → Encounter `onleave`; A23 (delete a patient
//! visit) → Encounter `entered-in-error`; A29 (delete person information) → the Patient as
//! the message gives it: FHIR has no "deleted" Patient state and `active: false` means a
//! record no longer in use (not one whose information was deleted), so it is not inferred.
//!
//! - EVN: consumed; EVN-6 (else EVN-2) is the end of an A03 visit without PV1-45 (Provenance
//!   reads EVN itself).
//! - PID + PD1 → Patient; ROL/PRT before PV1 with role PP → a PractitionerRole in
//!   `Patient.generalPractitioner`.
//! - NK1 → RelatedPerson, or `Patient.contact` for employer/agency/insurer parties.
//! - PV1 + PV2 → Encounter with the event's status (A03 finished, A11 cancelled, A13
//!   in-progress, …; see `resources::encounter`); ROL/PRT after PV1 → PractitionerRoles,
//!   the visit's participants.
//! - AL1 and IAM (A60) → AllergyIntolerance; DG1 → Condition (+ `Encounter.diagnosis`); IN1 → Coverage;
//!   PR1 (PROCEDURE groups) → Procedure of the patient and visit; GT1 → the guarantors of one
//!   Account (PID-18).
//! - OBX (OBSERVATION groups) → Observation of the patient and visit.
//! - Left unconsumed (so reported):
//!   DB1, ROL/PRT in PROCEDURE, OBSERVATION and INSURANCE groups, ACC, UB1/UB2, DRG, IN2/IN3,
//!   ROL/PRT with other roles before PV1 (CareTeam), ROL/PRT deletes (action code D/DE),
//!   and MRG in ADT_A06 (A06/A07), which the IG maps to an Account only.
//! - ADT_A39 (A39/A40): per PATIENT group, PID → the surviving Patient, MRG → the replaced
//!   Patient (`active: false`, link `replaced-by`), and the survivor gets link `replaces`;
//!   an optional PV1 → Encounter. For A41/A42 (account/visit merges) MRG is left unconsumed.

use crate::fhir::ctx::Ctx;
use crate::fhir::resources::{
    account, allergy, condition, coverage, encounter, iam, observation, patient, procedure, related_person,
};
use crate::hl7::parser::Message;
use crate::hl7::structure::{Group, Grouped, Structure};

pub fn convert(ctx: &mut Ctx, grouped: &Grouped) {
    let msg = ctx.msg;
    let root = &grouped.root;
    let evn = root.segment(msg, "EVN");
    let mut trigger = msg.msh().field(9).component(2).value().trim().to_ascii_uppercase();
    let mut event_time = String::new();
    if let Some(evn) = evn {
        ctx.consume(evn.index());
        if trigger.is_empty() {
            trigger = evn.field(1).value().trim().to_ascii_uppercase();
        }
        let occurred = evn.field(6).value().trim().to_string();
        event_time = checked_event_time(ctx, evn, if occurred.is_empty() { 2 } else { 6 });
    }
    if grouped.structure == Structure::AdtA39 {
        merge(ctx, msg, root, &trigger, &event_time);
        return;
    }
    let Some(pid) = root.segment(msg, "PID") else {
        let msh = ctx.msg.msh();
        ctx.warn_at(msh, 9, "ADT message without PID: nothing mapped");
        return;
    };
    let patient = patient::patient(ctx, pid, root.segment(msg, "PD1"));

    let pv1 = root.segment(msg, "PV1");
    let pv1_at = pv1.map_or(usize::MAX, |s| s.index());
    for role in root.segments(msg, "ROL").chain(root.segments(msg, "PRT")).filter(|r| r.index() < pv1_at) {
        patient::general_practitioner_role(ctx, role, &patient);
    }
    for nk1 in root.groups("NEXT_OF_KIN").filter_map(|g| g.segment(msg, "NK1")) {
        related_person::related_person(ctx, nk1, &patient);
    }
    let encounter = pv1.and_then(|pv1| {
        encounter::encounter_for_event(ctx, pv1, root.segment(msg, "PV2"), &patient, &trigger, &event_time)
    });
    let event_status = match trigger.as_str() {
        // A21: the patient went on leave of absence (A22, the return, gets the class's status).
        "A21" => Some("onleave"),
        // A23: the visit is deleted, i.e. it should never have existed (FHIR Encounter.status
        // `entered-in-error`; no delete is sent, so the record stays as evidence).
        "A23" => Some("entered-in-error"),
        _ => None,
    };
    if let (Some(enc), Some(status)) = (encounter.as_deref(), event_status) {
        if let Some(r) = ctx.resource_mut(enc) {
            r.body.put("status", status);
        }
    }
    if let Some(enc) = &encounter {
        for role in root.segments(msg, "ROL").chain(root.segments(msg, "PRT")).filter(|r| r.index() > pv1_at) {
            encounter::role_participant(ctx, role, enc);
        }
    }
    for obx in root.groups("OBSERVATION").filter_map(|g| g.segment(msg, "OBX")) {
        observation::observation(ctx, obx, Some(&patient), encounter.as_deref(), "", &[]);
    }
    for al1 in root.segments(msg, "AL1") {
        allergy::allergy(ctx, al1, &patient);
    }
    for iam in root.segments(msg, "IAM") {
        iam::allergy(ctx, iam, &patient);
    }
    for dg1 in root.segments(msg, "DG1") {
        condition::condition(ctx, dg1, &patient, encounter.as_deref());
    }
    for pr1 in root.groups("PROCEDURE").filter_map(|g| g.segment(msg, "PR1")) {
        procedure::procedure(ctx, pr1, &patient, encounter.as_deref());
    }
    let gt1s: Vec<_> = root.segments(msg, "GT1").collect();
    if !gt1s.is_empty() {
        account::guarantor_account(ctx, pid, &gt1s, &patient);
    }
    for g in root.groups("INSURANCE") {
        if let Some(in1) = g.segment(msg, "IN1") {
            coverage::coverage(ctx, in1, g.segment(msg, "IN2"), &patient);
        }
    }
}

/// The event time EVN-`n` (trimmed), checked here, where its field is known: the maps it is
/// passed to see a valid time or none. Invalid → empty, with a located warning.
pub(crate) fn checked_event_time(ctx: &mut Ctx, evn: crate::hl7::parser::Segment, n: usize) -> String {
    let v = evn.field(n).value().trim().to_string();
    if v.is_empty() || crate::fhir::time::to_fhir_datetime(&v, &ctx.site.zone).is_ok() {
        return v;
    }
    ctx.warn_at(evn, n, "invalid date/time");
    String::new()
}

/// ADT_A39: one surviving Patient per PATIENT group, linked both ways with the Patient its
/// MRG replaces (A39/A40 only).
fn merge(ctx: &mut Ctx, msg: &Message, root: &Group, trigger: &str, event_time: &str) {
    let merges_patient = matches!(trigger, "A39" | "A40");
    for g in root.groups("PATIENT") {
        let Some(pid) = g.segment(msg, "PID") else { continue };
        let surviving = patient::patient(ctx, pid, g.segment(msg, "PD1"));
        if merges_patient {
            if let Some(mrg) = g.segment(msg, "MRG") {
                patient::merged_patient(ctx, mrg, &surviving);
            }
        }
        if let Some(pv1) = g.segment(msg, "PV1") {
            encounter::encounter_for_event(ctx, pv1, None, &surviving, trigger, event_time);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{json, Value};

    use crate::fhir::convert::{convert, Conversion};
    use crate::fhir::model::{Resource, LOCAL_REF};
    use crate::fhir::resources::provenance::provenance;
    use crate::fhir::site::SiteMaps;

    /// The resource types the ADT walk produces and expected.json asserts.
    const TYPES: [&str; 9] = [
        "Account",
        "Patient",
        "Encounter",
        "RelatedPerson",
        "AllergyIntolerance",
        "Condition",
        "Coverage",
        "Observation",
        "Procedure",
    ];

    fn site() -> SiteMaps {
        SiteMaps::empty(jiff::tz::TimeZone::UTC)
    }

    fn run(raw: &[u8]) -> Conversion {
        convert(raw, &site()).expect("converts")
    }

    fn of<'c>(c: &'c Conversion, kind: &str) -> Vec<&'c Resource> {
        c.resources.iter().filter(|r| r.kind == kind).collect()
    }

    fn body(r: &Resource) -> Value {
        r.body.clone().value()
    }

    fn r(key: &str) -> Value {
        json!({ "reference": format!("{LOCAL_REF}{key}") })
    }

    /// No empty string, array or object anywhere (FHIR forbids them).
    fn assert_no_empty(v: &Value, path: &str) {
        match v {
            Value::String(s) => assert!(!s.is_empty(), "empty string at {path}"),
            Value::Array(a) => {
                assert!(!a.is_empty(), "empty array at {path}");
                for (i, x) in a.iter().enumerate() {
                    assert_no_empty(x, &format!("{path}[{i}]"));
                }
            }
            Value::Object(o) => {
                assert!(!o.is_empty(), "empty object at {path}");
                for (k, x) in o {
                    assert_no_empty(x, &format!("{path}.{k}"));
                }
            }
            Value::Null => panic!("null at {path}"),
            _ => {}
        }
    }

    #[test]
    fn corpus_counts_match_expected() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus");
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        let mut checked = 0;
        for (file, exp) in expected.as_object().unwrap() {
            if !file.contains("_adt_") {
                continue;
            }
            let raw = std::fs::read(dir.join("hl7").join(file)).unwrap();
            let c = run(&raw);
            assert_eq!(c.report.structure, exp["structure"], "{file}");
            let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
            for res in &c.resources {
                *counts.entry(res.kind).or_default() += 1;
                assert_no_empty(&body(res), &format!("{file}:{}", res.key));
            }
            let asserted = exp["resources"].as_object().unwrap();
            if asserted.is_empty() {
                continue; // ADT_A39: no counts asserted
            }
            for t in TYPES {
                let want = asserted.get(t).and_then(Value::as_u64).unwrap_or(0);
                assert_eq!(counts.get(t).copied().unwrap_or(0), want, "{file}: {t}");
            }
            checked += 1;
        }
        assert_eq!(checked, 47);
    }

    #[test]
    fn a23_deletes_the_visit_as_entered_in_error_and_a29_infers_nothing() {
        let raw = include_bytes!("../../../../tests/corpus/hl7/cerner_adt_a23_01.hl7");
        let deleted = run(raw);
        let e = of(&deleted, "Encounter");
        assert_eq!(body(e[0])["status"], "entered-in-error");
        // The same visit an A08 updates: the deletion marks that Encounter, not a new one.
        let text = String::from_utf8(raw.to_vec()).unwrap();
        let update = run(text.replace("ADT^A23^ADT_A21", "ADT^A08^ADT_A01").replace("EVN|A23", "EVN|A08").as_bytes());
        assert_eq!(of(&update, "Encounter")[0].identity, e[0].identity);
        assert_ne!(body(of(&update, "Encounter")[0])["status"], "entered-in-error");

        let c = run(include_bytes!("../../../../tests/corpus/hl7/meditech_adt_a29_01.hl7"));
        let p = of(&c, "Patient");
        assert_eq!(p.len(), 1);
        assert!(body(p[0]).get("active").is_none(), "A29 does not say the record is inactive");
        assert!(of(&c, "Encounter").is_empty(), "the pseudo PV1 N is no visit");
    }

    #[test]
    fn a40_links_both_ways() {
        let c = run(include_bytes!("../../../../tests/corpus/hl7/cerner_adt_a40_01.hl7"));
        let patients = of(&c, "Patient");
        assert_eq!(patients.len(), 4);
        for (survivor, old, mrn) in
            [("Patient/pid-2", "Patient/mrg-3", "7709001"), ("Patient/pid-4", "Patient/mrg-5", "7709002")]
        {
            let s = body(patients.iter().find(|p| p.key == survivor).unwrap());
            let o = body(patients.iter().find(|p| p.key == old).unwrap());
            assert_eq!(s["link"], json!([{"other": r(old), "type": "replaces"}]));
            assert_eq!(o["link"], json!([{"other": r(survivor), "type": "replaced-by"}]));
            assert_eq!(o["active"], json!(false));
            assert_eq!(o["identifier"][0]["value"], mrn);
            assert!(s.get("active").is_none());
        }
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report);

        let c = run(include_bytes!("../../../../tests/corpus/hl7/epic_adt_a40_01.hl7"));
        let old = of(&c, "Patient").into_iter().find(|p| p.key.starts_with("Patient/mrg-")).map(body).unwrap();
        assert_eq!(old["identifier"].as_array().unwrap().len(), 2);
        assert_eq!(old["link"][0]["type"], "replaced-by");
        assert_eq!(old["name"][0]["family"], "Carter", "prior name from MRG-7");
        let raw = b"MSH|^~\\&|A|F|R|RF|20260329010000-0500||ADT^A40^ADT_A39|1|P|2.5.1\rEVN|A40|20260329010000-0500\rPID|1||S1^^^X^MR||New^Name\rMRG|O1^^^X^MR||||||Old^Name";
        let c = run(raw);
        let old = of(&c, "Patient").into_iter().find(|p| p.key.starts_with("Patient/mrg-")).map(body).unwrap();
        assert_eq!(old["name"][0]["family"], "Old");
    }

    #[test]
    fn birth_time_extension_and_patient_fields() {
        let c = run(include_bytes!("../../../../tests/corpus/hl7/epic_adt_a08_01.hl7"));
        let p = body(of(&c, "Patient")[0]);
        assert_eq!(p["birthDate"], "1985-02-17");
        assert_eq!(
            p["_birthDate"],
            json!({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1985-02-17T14:30:00-05:00"}]})
        );
        assert_eq!(p["name"].as_array().unwrap().len(), 2);
        assert_eq!(p["identifier"].as_array().unwrap().len(), 3);
        // PD1-3 → generalPractitioner Organization.
        assert_eq!(p["generalPractitioner"].as_array().unwrap().len(), 1);

        let c = run(include_bytes!("../../../../tests/corpus/hl7/epic_adt_a01_01.hl7"));
        let p = body(of(&c, "Patient")[0]);
        assert!(p.get("_birthDate").is_none());
        assert_eq!(p["gender"], "female");
        assert_eq!(p["maritalStatus"]["coding"][0]["code"], "M");
        assert_eq!(p["communication"][0]["language"]["coding"][0]["code"], "eng");
        assert_eq!(p["telecom"].as_array().unwrap().len(), 3);
        assert_eq!(p["telecom"][2]["use"], "work");
        // SSN identifier (PID-3 SS rep) has the registry system; identity prefers it over
        // MR identifiers without a configured system.
        let ssn = p["identifier"].as_array().unwrap().iter().find(|i| i["value"] == "999-12-3456").unwrap();
        assert_eq!(ssn["system"], "http://hl7.org/fhir/sid/us-ssn");
        // PD1-3 Organization + PD1-4 Practitioner, then the ROL PP's PractitionerRole (the same
        // practitioner as primary care provider of this patient).
        let gps = p["generalPractitioner"].as_array().unwrap();
        assert_eq!(gps.len(), 3);
        assert!(gps[2]["reference"].as_str().unwrap().starts_with("local:PractitionerRole/"), "{gps:?}");
        assert_eq!(p["extension"][0]["valueString"], "Hughes");
    }

    #[test]
    fn null_gender_is_omitted() {
        let c = run(include_bytes!("../../../../tests/corpus/hl7/cerner_adt_a04_01.hl7"));
        let p = body(of(&c, "Patient")[0]);
        assert!(p.get("gender").is_none());
        assert!(p.get("address").is_none());
        assert!(p.get("birthDate").is_none());
        assert!(c.report.unmapped_codes.iter().all(|u| !u.starts_with("HL70001")));
    }

    #[test]
    fn employer_nk1_becomes_patient_contact() {
        let c = run(include_bytes!("../../../../tests/corpus/hl7/cerner_adt_a01_01.hl7"));
        assert_eq!(of(&c, "RelatedPerson").len(), 2);
        let p = body(of(&c, "Patient")[0]);
        let contacts = p["contact"].as_array().unwrap();
        assert_eq!(contacts.len(), 1);
        assert_eq!(contacts[0]["name"]["family"], "Acme Widgets (FAKE)");
        let codes: Vec<&str> = contacts[0]["relationship"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["E"]);
        assert_eq!(contacts[0]["telecom"][0]["value"], "(207)555-0900");
        // PID-19 repeats the PID-3 SSN: emitted once.
        let ids = p["identifier"].as_array().unwrap();
        assert_eq!(ids.iter().filter(|i| i["value"] == "999-44-1122").count(), 1);
        // All segments but the Z-segment are consumed.
        assert_eq!(c.report.unconsumed, vec!["9:ZPV".to_string()]);
        // The related persons point at the patient.
        let rp = body(of(&c, "RelatedPerson")[0]);
        assert_eq!(rp["patient"], r(&of(&c, "Patient")[0].key));
        assert_eq!(rp["relationship"][0]["coding"][0]["code"], "HUS");
    }

    #[test]
    fn a03_is_finished_with_end() {
        let c = run(include_bytes!("../../../../tests/corpus/hl7/athena_adt_a03_01.hl7"));
        let e = body(of(&c, "Encounter")[0]);
        assert_eq!(e["status"], "finished");
        assert_eq!(e["period"], json!({"start": "2026-03-15T07:59:59-05:00", "end": "2026-03-20T11:30:00-05:00"}));
        assert_eq!(e["hospitalization"]["dischargeDisposition"]["coding"][0]["code"], "01");
        assert_eq!(e["diagnosis"].as_array().unwrap().len(), 2);
        // Without PV1-45 the end comes from the event.
        let raw = b"MSH|^~\\&|A|F|R|RF|20260318093000+0000||ADT^A03|1|P|2.5\rEVN|A03|20260318093000+0000\rPID|1||1^^^X^MR||Doe^J\rPV1|1|I|W^1^1||||||||||||||||V1";
        let e = body(of(&run(raw), "Encounter")[0]);
        assert_eq!(e["status"], "finished");
        assert_eq!(e["period"]["end"], "2026-03-18T09:30:00+00:00");
    }

    #[test]
    fn event_statuses_and_locations() {
        let status = |raw: &[u8]| body(of(&run(raw), "Encounter")[0])["status"].clone();
        assert_eq!(status(include_bytes!("../../../../tests/corpus/hl7/meditech_adt_a11_01.hl7")), "cancelled");
        assert_eq!(status(include_bytes!("../../../../tests/corpus/hl7/cerner_adt_a13_01.hl7")), "in-progress");
        assert_eq!(status(include_bytes!("../../../../tests/corpus/hl7/meditech_adt_a05_01.hl7")), "planned");
        assert_eq!(status(include_bytes!("../../../../tests/corpus/hl7/epic_adt_a01_01.hl7")), "in-progress");

        let c = run(include_bytes!("../../../../tests/corpus/hl7/epic_adt_a02_01.hl7"));
        let e = body(of(&c, "Encounter")[0]);
        let locs = e["location"].as_array().unwrap();
        assert_eq!(locs.len(), 2);
        assert_eq!(locs[0]["status"], "active");
        assert_eq!(locs[1]["status"], "completed");
        assert_ne!(locs[0]["location"], locs[1]["location"]);
        // ROL after PV1 → participant; attending from PV1-7.
        assert_eq!(e["participant"].as_array().unwrap().len(), 2);
        assert_eq!(e["identifier"][0]["type"]["coding"][0]["code"], "VN");

        // Pseudo PV1 (A31) → no Encounter, segment consumed.
        let c = run(include_bytes!("../../../../tests/corpus/hl7/epic_adt_a31_01.hl7"));
        assert!(of(&c, "Encounter").is_empty());
        assert!(!c.report.unconsumed.iter().any(|u| u.ends_with(":PV1")));
    }

    #[test]
    fn allergies_conditions_coverages() {
        let c = run(include_bytes!("../../../../tests/corpus/hl7/epic_adt_a01_01.hl7"));
        let a = body(of(&c, "AllergyIntolerance")[0]);
        assert_eq!(a["category"], json!(["medication"]));
        assert_eq!(a["criticality"], "high");
        assert_eq!(a["type"], "allergy");
        assert_eq!(a["reaction"][0]["manifestation"][0]["text"], "Anaphylaxis");
        assert_eq!(a["onsetDateTime"], "2010-01-01");
        assert_eq!(body(of(&c, "AllergyIntolerance")[2])["reaction"].as_array().unwrap().len(), 2);

        let enc = of(&c, "Encounter")[0].key.clone();
        let cond = body(of(&c, "Condition")[0]);
        assert_eq!(cond["encounter"], r(&enc));
        assert_eq!(cond["code"]["coding"][0]["system"], "http://hl7.org/fhir/sid/icd-10");
        let e = body(of(&c, "Encounter")[0]);
        assert_eq!(e["diagnosis"][0]["use"]["coding"][0]["code"], "AD");
        assert_eq!(e["reasonCode"][0]["coding"][0]["code"], "R07.9");

        let cov = of(&c, "Coverage");
        let first = body(cov[0]);
        assert_eq!(first["status"], "active");
        assert_eq!(first["subscriberId"], "W123456789");
        assert_eq!(first["subscriber"], first["beneficiary"]);
        assert_eq!(first["period"], json!({"start": "2026-01-01", "end": "2026-12-31"}));
        let payor_key = first["payor"][0]["reference"].as_str().unwrap().trim_start_matches(LOCAL_REF).to_string();
        let payor = c.resources.iter().find(|r| r.key == payor_key).unwrap();
        assert_eq!(payor.kind, "Organization");
        assert_eq!(body(payor)["name"], "Aetna Health (FAKE)");
        assert_eq!(body(cov[1])["subscriberId"], "1EG4TE5MK72");
        // IN2 is reported unconsumed; nothing else but the Z-segment.
        let ids: Vec<&str> = c.report.unconsumed.iter().map(|u| u.split(':').nth(1).unwrap()).collect();
        assert_eq!(ids, ["IN2", "ZPD"]);
    }

    #[test]
    fn provenance_targets_everything() {
        let raw = include_bytes!("../../../../tests/corpus/hl7/epic_adt_a01_01.hl7");
        let msg = crate::hl7::parser::parse(raw).unwrap();
        let grouped = crate::hl7::structure::group(&msg).unwrap();
        let s = site();
        let mut ctx = crate::fhir::ctx::Ctx::new(&msg, &s);
        super::convert(&mut ctx, &grouped);
        let n = ctx.resources().len();
        provenance(&mut ctx);
        let prov = ctx.resources().iter().find(|r| r.kind == "Provenance").unwrap();
        let b = prov.body.clone().value();
        assert_eq!(b["target"].as_array().unwrap().len(), n);
        assert_eq!(b["recorded"], "2026-03-15T08:30:00-05:00");
        assert_eq!(b["occurredDateTime"], "2026-03-15T08:25:00-05:00");
        assert_eq!(b["activity"]["coding"][0]["code"], "A01");
        let who = b["agent"][0]["who"]["reference"].as_str().unwrap().trim_start_matches(LOCAL_REF);
        assert!(ctx.resources().iter().any(|r| r.key == who && r.kind == "Organization"));

        // MSH-7 and EVN-2 at date precision only: no Provenance, a warning.
        let raw = include_bytes!("../../../../tests/corpus/hl7/openemr_adt_a01_01.hl7");
        let msg = crate::hl7::parser::parse(raw).unwrap();
        let grouped = crate::hl7::structure::group(&msg).unwrap();
        let mut ctx = crate::fhir::ctx::Ctx::new(&msg, &s);
        super::convert(&mut ctx, &grouped);
        provenance(&mut ctx);
        assert!(ctx.resources().iter().all(|r| r.kind != "Provenance"));
        assert!(ctx.report.warnings.iter().any(|w| w.contains("Provenance")));
    }
}
