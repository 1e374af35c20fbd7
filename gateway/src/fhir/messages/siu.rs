//! SIU_S12 family (S12–S26): walks the segment groups and calls the resource maps (IG message
//! map SIU_S12).
//!
//! - PATIENT: PID + PD1 → Patient (an Appointment participant); PV1 + PV2 → Encounter; OBX →
//!   Observation; DG1 → Condition.
//! - SCH + TQ1 + NTE + RESOURCES (RGS consumed as a group marker; SERVICE AIS, GENERAL_RESOURCE
//!   AIG, LOCATION_RESOURCE AIL, PERSONNEL_RESOURCE AIP, each with its NTEs) → one Appointment
//!   (see `resources::appointment` for status by trigger and SCH-25).
//! - AIS → ServiceRequest (IG AIS\[ServiceRequest\]) is not produced: the service is the
//!   Appointment's serviceType. AIS/AIG/AIL/AIP that the grouper could not place (sent out of
//!   the grammar's order) are still mapped. Left unconsumed: ARV, UAC, SFT.

use crate::fhir::ctx::Ctx;
use crate::fhir::resources::appointment::{self, Schedule};
use crate::fhir::resources::{condition, encounter, observation, patient};
use crate::hl7::structure::Grouped;

pub fn convert(ctx: &mut Ctx, grouped: &Grouped) {
    let msg = ctx.msg;
    let root = &grouped.root;
    let mut patients = Vec::new();
    for g in root.groups("PATIENT") {
        let Some(pid) = g.segment(msg, "PID") else { continue };
        let pat = patient::patient(ctx, pid, g.segment(msg, "PD1"));
        let enc = g.segment(msg, "PV1").and_then(|pv1| encounter::encounter(ctx, pv1, g.segment(msg, "PV2"), &pat));
        for obx in g.segments(msg, "OBX") {
            observation::observation(ctx, obx, Some(&pat), enc.as_deref(), "", &[]);
        }
        for dg1 in g.segments(msg, "DG1") {
            condition::condition(ctx, dg1, &pat, enc.as_deref());
        }
        patients.push(pat);
    }
    let Some(sch) = root.segment(msg, "SCH") else { return };
    let mut res = Schedule { notes: root.segments(msg, "NTE").collect(), ..Schedule::default() };
    for r in root.groups("RESOURCES") {
        if let Some(rgs) = r.segment(msg, "RGS") {
            ctx.consume(rgs.index());
        }
        for (group, id) in [
            ("SERVICE", "AIS"),
            ("GENERAL_RESOURCE", "AIG"),
            ("LOCATION_RESOURCE", "AIL"),
            ("PERSONNEL_RESOURCE", "AIP"),
        ] {
            for g in r.groups(group) {
                let Some(seg) = g.segment(msg, id) else { continue };
                match id {
                    "AIS" => res.ais.push(seg),
                    "AIG" => res.aig.push(seg),
                    "AIL" => res.ail.push(seg),
                    _ => res.aip.push(seg),
                }
                res.notes.extend(g.segments(msg, "NTE"));
            }
        }
    }
    // Resource segments out of the grammar's order (e.g. AIG after AIL) are not placed in the
    // tree; their order carries no meaning, so they are taken from the grouper's leftovers.
    for u in &grouped.unconsumed {
        let Some(seg) = msg.segment_at(u.index) else { continue };
        match seg.id() {
            "AIS" => res.ais.push(seg),
            "AIG" => res.aig.push(seg),
            "AIL" => res.ail.push(seg),
            "AIP" => res.aip.push(seg),
            _ => {}
        }
    }
    appointment::appointment(ctx, sch, root.segment(msg, "TQ1"), &res, &patients);
}

#[cfg(test)]
mod tests {
    use crate::fhir::convert::convert;
    use crate::fhir::messages::test_corpus::check_corpus;
    use crate::fhir::site::SiteMaps;
    use serde_json::Value;

    #[test]
    fn corpus_counts() {
        let failures = check_corpus(&["_siu_"], 7);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    fn appt(raw: &[u8]) -> (Value, crate::fhir::convert::Conversion) {
        let c = convert(raw, &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        (c.resources.iter().find(|r| r.kind == "Appointment").unwrap().body.clone().value(), c)
    }

    #[test]
    fn statuses_by_trigger_and_filler_status() {
        for (raw, status) in [
            (&include_bytes!("../../../../tests/corpus/hl7/epic_siu_s12_01.hl7")[..], "booked"),
            (&include_bytes!("../../../../tests/corpus/hl7/cerner_siu_s13_01.hl7")[..], "booked"),
            (&include_bytes!("../../../../tests/corpus/hl7/athena_siu_s15_01.hl7")[..], "cancelled"),
            (&include_bytes!("../../../../tests/corpus/hl7/epic_siu_s26_01.hl7")[..], "noshow"),
        ] {
            let (a, c) = appt(raw);
            assert_eq!(a["status"], status);
            assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
        }
        let (a, c) = appt(include_bytes!("../../../../tests/corpus/hl7/meditech_siu_s14_01.hl7"));
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
        assert_eq!(a["participant"].as_array().unwrap().len(), 3); // patient, room, wheelchair
        let (a, _) = appt(include_bytes!("../../../../tests/corpus/hl7/athena_siu_s15_01.hl7"));
        assert_eq!(a["cancelationReason"]["coding"][0]["code"], "PATCAN");
        assert_eq!(a["participant"][1]["status"], "declined");
    }

    #[test]
    fn booking_details() {
        let (a, _) = appt(include_bytes!("../../../../tests/corpus/hl7/epic_siu_s12_01.hl7"));
        assert_eq!(a["start"], "2026-04-07T14:00:00-05:00");
        assert_eq!(a["end"], "2026-04-07T14:30:00-05:00");
        assert_eq!(a["minutesDuration"], 30);
        assert_eq!(a["identifier"][1]["value"], "77001");
        assert_eq!(a["serviceType"][0]["coding"][0]["code"], "93000");
        assert_eq!(a["reasonCode"][0]["coding"][0]["code"], "FU");
        assert_eq!(a["appointmentType"]["coding"][0]["code"], "FOLLOWUP");
        let parts = a["participant"].as_array().unwrap();
        assert_eq!(parts.len(), 4); // patient, practitioner, location, ECG cart
        assert!(parts[0]["actor"]["reference"].as_str().unwrap().starts_with("local:Patient/"));
        assert_eq!(parts[1]["period"]["end"], "2026-04-07T14:30:00-05:00");
        assert_eq!(a["comment"].as_str().unwrap().lines().count(), 3);
        // Start from the AIS when SCH-11 and TQ1 are absent.
        let (a, _) = appt(
            b"MSH|^~\\&|A|B|C|D|20260101||SIU^S12^SIU_S12|1|P|2.5.1\rSCH|1|2\rPID|1||9^^^H^MR||X^Y\rRGS|1\rAIS|1||S^Svc^L|202604011000|||45|MIN",
        );
        assert_eq!(a["start"], "2026-04-01T10:00:00+00:00");
        assert_eq!(a["end"], "2026-04-01T10:45:00+00:00");
    }
}
