//! ADT events about patient records rather than one visit (no IG message map; the segment
//! maps are the IG's):
//!
//! - ADT_A24 (A24 link patient information): each `PATIENT` group's PID → Patient (PV1 →
//!   Encounter); the first and second Patient link each other with `seealso`. A later ADT of
//!   either record rewrites its Patient without the link (only merges are remembered).
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
use crate::fhir::resources::{encounter, patient};
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
