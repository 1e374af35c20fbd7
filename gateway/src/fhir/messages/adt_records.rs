//! ADT events about patient records rather than one visit (no IG message map; the segment
//! maps are the IG's):
//!
//! - ADT_A24 (A24 link patient information): each `PATIENT` group's PID → Patient (PV1 →
//!   Encounter); the first and second Patient link each other with `seealso`. A later ADT of
//!   either record rewrites its Patient without the link (only merges are remembered).
//! - ADT_A17 (A17 swap patients; IG message map ADT_A17): each `PATIENT` group's PID → Patient,
//!   PV1 (+ PV2) → Encounter of that Patient (the swapped bed is its location), OBX →
//!   Observation of that Patient and visit. No link between the two.
//! - ADT_A37 (A37 unlink patient information): both PIDs → Patients written in full without
//!   the `seealso` links an A24 added: a Patient upsert replaces the whole resource, so the
//!   links are gone at the server (links are not remembered, only merges are).
//! - ADT_A30 (A47 change patient identifier list): PID → the Patient under its new
//!   identifiers; MRG → the record under the old ones, replaced by it — the A40 merge rule
//!   (inactive, `replaced-by`/`replaces`, remembered), since the old key must no longer be
//!   written to as a live record.
//! - ADT_A45 (A45 move visit information): PID → Patient; each MERGE_INFO PV1 → an Encounter
//!   of that patient (keyed by its visit number, so the moved visit changes subject). MRG
//!   (where the visit was) is left unconsumed, so reported.

use serde_json::json;

use crate::fhir::ctx::Ctx;
use crate::fhir::model::reference;
use crate::fhir::resources::{encounter, observation, patient};
use crate::hl7::structure::{Grouped, Structure};

pub fn convert(ctx: &mut Ctx, grouped: &Grouped) {
    let msg = ctx.msg;
    let root = &grouped.root;
    let trigger = msg.msh().field(9).component(2).value().trim().to_ascii_uppercase();
    let mut event_time = String::new();
    if let Some(evn) = root.segment(msg, "EVN") {
        ctx.consume(evn.index());
        event_time = super::adt::checked_event_time(ctx, evn, 2);
    }
    match grouped.structure {
        Structure::AdtA24 => {
            let mut patients = Vec::new();
            for g in root.groups("PATIENT") {
                let Some(pid) = g.segment(msg, "PID") else { continue };
                let p = patient::patient(ctx, pid, g.segment(msg, "PD1"));
                if let Some(pv1) = g.segment(msg, "PV1") {
                    encounter::encounter_for_event(ctx, pv1, None, &p, &trigger, &event_time);
                }
                patients.push(p);
            }
            if let [first, second, ..] = patients.as_slice() {
                if first != second {
                    ctx.append_unique(first, "link", json!({"other": reference(second), "type": "seealso"}));
                    ctx.append_unique(second, "link", json!({"other": reference(first), "type": "seealso"}));
                }
            }
        }
        Structure::AdtA17 => {
            for g in root.groups("PATIENT") {
                let Some(pid) = g.segment(msg, "PID") else { continue };
                let p = patient::patient(ctx, pid, g.segment(msg, "PD1"));
                let visit = g.segment(msg, "PV1").and_then(|pv1| {
                    encounter::encounter_for_event(ctx, pv1, g.segment(msg, "PV2"), &p, &trigger, &event_time)
                });
                for obx in g.groups("OBSERVATION").filter_map(|o| o.segment(msg, "OBX")) {
                    observation::observation(ctx, obx, Some(&p), visit.as_deref(), "", &[]);
                }
            }
        }
        Structure::AdtA37 => {
            for g in root.groups("PATIENT") {
                let Some(pid) = g.segment(msg, "PID") else { continue };
                let p = patient::patient(ctx, pid, g.segment(msg, "PD1"));
                if let Some(pv1) = g.segment(msg, "PV1") {
                    encounter::encounter_for_event(ctx, pv1, None, &p, &trigger, &event_time);
                }
            }
        }
        Structure::AdtA30 | Structure::AdtA45 => {
            let Some(pid) = root.segment(msg, "PID") else {
                let msh = msg.msh();
                ctx.warn_at(msh, 9, "ADT message without PID: nothing mapped");
                return;
            };
            let p = patient::patient(ctx, pid, root.segment(msg, "PD1"));
            if let Some(mrg) = root.segment(msg, "MRG") {
                patient::merged_patient(ctx, mrg, &p);
            }
            for g in root.groups("MERGE_INFO") {
                if let Some(pv1) = g.segment(msg, "PV1") {
                    encounter::encounter_for_event(ctx, pv1, None, &p, &trigger, &event_time);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::fhir::convert::{convert, Conversion};
    use crate::fhir::model::LOCAL_REF;
    use crate::fhir::site::SiteMaps;

    fn run(raw: &str) -> Conversion {
        convert(raw.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap()
    }

    fn bodies(c: &Conversion, kind: &str) -> Vec<(String, Value)> {
        c.resources.iter().filter(|r| r.kind == kind).map(|r| (r.key.clone(), r.body.clone().value())).collect()
    }

    #[test]
    fn a24_links_two_records_both_ways() {
        let c = run("MSH|^~\\&|A|F|R|RF|20260301||ADT^A24^ADT_A24|1|P|2.5.1\rEVN|A24|20260301\r\
PID|1||M1^^^H^MR||Doe^Jane\rPV1|1|O|CLINIC||||||||||||||||V1^^^H^VN\rPID|1||M2^^^H^MR||Doe^Jane");
        let p = bodies(&c, "Patient");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].1["link"][0]["other"]["reference"], format!("{LOCAL_REF}{}", p[1].0));
        assert_eq!(p[1].1["link"][0]["other"]["reference"], format!("{LOCAL_REF}{}", p[0].0));
        assert_eq!(p[0].1["link"][0]["type"], "seealso");
        assert_eq!(bodies(&c, "Encounter").len(), 1);
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
    }

    const A24: &str = "MSH|^~\\&|A|F|R|RF|20260301||ADT^A24^ADT_A24|1|P|2.5.1\rEVN|A24|20260301\r\
PID|1||M1^^^H^MR||Doe^Jane\rPID|1||M2^^^H^MR||Doe^Jane";

    #[test]
    fn a37_after_a24_writes_both_records_without_the_links() {
        use crate::fhir::model::Write;
        let linked = run(A24);
        let unlinked = run(&A24.replace("A24", "A37"));
        assert_eq!(unlinked.report.structure, "ADT_A37");
        let ids = |c: &Conversion| {
            c.resources
                .iter()
                .filter(|r| r.kind == "Patient")
                .map(|r| (r.identity.clone(), r.write))
                .collect::<Vec<_>>()
        };
        // The same two records, each replaced in full (an upsert), so the server drops the links.
        assert_eq!(ids(&linked), ids(&unlinked));
        assert!(ids(&unlinked).iter().all(|(id, w)| id.is_some() && *w == Write::Upsert));
        assert!(bodies(&linked, "Patient").iter().all(|(_, b)| b.get("link").is_some()));
        assert!(bodies(&unlinked, "Patient").iter().all(|(_, b)| b.get("link").is_none()));
        assert!(unlinked.merges.is_empty());
    }

    #[test]
    fn a17_swaps_two_patients_each_with_its_visit() {
        let c = run("MSH|^~\\&|A|F|R|RF|20260301||ADT^A17^ADT_A17|1|P|2.5.1\rEVN|A17|20260301\r\
PID|1||M1^^^H^MR||Doe^Jane\rPV1|1|I|4W^401^A||||||||||||||||V1^^^H^VN\rOBX|1|NM|8302-2^Height^LN||170|cm|||||F\r\
PID|1||M2^^^H^MR||Roe^Joan\rPV1|1|I|4W^402^A||||||||||||||||V2^^^H^VN");
        let p = bodies(&c, "Patient");
        let e = bodies(&c, "Encounter");
        assert_eq!((p.len(), e.len()), (2, 2));
        for i in 0..2 {
            assert_eq!(e[i].1["subject"]["reference"], format!("{LOCAL_REF}{}", p[i].0));
            assert!(p[i].1.get("link").is_none());
        }
        let o = bodies(&c, "Observation");
        assert_eq!(o[0].1["encounter"]["reference"], format!("{LOCAL_REF}{}", e[0].0));
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
    }

    #[test]
    fn a47_replaces_the_old_identifier_as_a_merge_does() {
        let c = run("MSH|^~\\&|A|F|R|RF|20260301||ADT^A47^ADT_A30|1|P|2.5.1\rEVN|A47|20260301\r\
PID|1||NEW1^^^H^MR||Doe^Jane\rMRG|OLD1^^^H^MR");
        let p = bodies(&c, "Patient");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].1["link"][0]["type"], "replaces");
        assert_eq!(p[1].1["active"], false);
        assert_eq!(p[1].1["identifier"][0]["value"], "OLD1");
        assert_eq!(c.merges.len(), 1, "remembered like an A40");
    }

    #[test]
    fn a45_gives_the_moved_visit_to_the_patient() {
        let c = run("MSH|^~\\&|A|F|R|RF|20260301||ADT^A45^ADT_A45|1|P|2.5.1\rEVN|A45|20260301\r\
PID|1||M1^^^H^MR||Doe^Jane\rMRG|M9^^^H^MR||||V7^^^H^VN\rPV1|1|I|4W^401^A||||||||||||||||V7^^^H^VN");
        let p = bodies(&c, "Patient");
        let e = bodies(&c, "Encounter");
        assert_eq!(p.len(), 1);
        assert_eq!(e[0].1["subject"]["reference"], format!("{LOCAL_REF}{}", p[0].0));
        assert_eq!(e[0].1["identifier"][0]["value"], "V7");
        assert_eq!(c.report.unconsumed, ["3:MRG"]);
    }
}
