//! MDM_T02 family (T02, T04, T06, T08, T10; IG message map MDM_T02) and the MDM_T01
//! notifications (T01, T03, T05, T07, T09, T11: the same groups without OBSERVATION, no IG
//! map): walks the segment groups and calls the resource maps.
//!
//! - EVN: consumed (the Provenance map reads it). PID → Patient; PV1 → Encounter.
//! - COMMON_ORDER: ORC + OBR (+ TQ1, NTE) → ServiceRequest, the document's `context.related`.
//! - TXA + every OBSERVATION OBX (+ NTE) → one DocumentReference (the OBX are its content, not
//!   Observations); a notification's TXA → a DocumentReference whose content is a title only
//!   (see `resources::document_reference`). Left unconsumed: CON, SFT, UAC, TQ2.

use crate::fhir::ctx::Ctx;
use crate::fhir::resources::{document_reference, encounter, patient, service_request};
use crate::hl7::structure::Grouped;

pub fn convert(ctx: &mut Ctx, grouped: &Grouped) {
    let msg = ctx.msg;
    let root = &grouped.root;
    if let Some(evn) = root.segment(msg, "EVN") {
        ctx.consume(evn.index());
    }
    let patient = root.segment(msg, "PID").map(|pid| patient::patient(ctx, pid, root.segment(msg, "PD1")));
    let encounter = match (&patient, root.segment(msg, "PV1")) {
        (Some(p), Some(pv1)) => encounter::encounter(ctx, pv1, root.segment(msg, "PV2"), p),
        _ => None,
    };
    let mut related = None;
    for g in root.groups("COMMON_ORDER") {
        let sr = service_request::service_request(
            ctx,
            g.segment(msg, "ORC"),
            g.segment(msg, "OBR"),
            patient.as_deref(),
            encounter.as_deref(),
        );
        if let Some(sr) = &sr {
            for t in g.groups("TIMING") {
                if let Some(tq1) = t.segment(msg, "TQ1") {
                    service_request::timing(ctx, sr, tq1);
                }
            }
            let notes: Vec<_> = g.segments(msg, "NTE").collect();
            service_request::add_notes(ctx, sr, &notes);
        }
        related = related.or(sr);
    }
    let Some(txa) = root.segment(msg, "TXA") else { return };
    let (mut obx, mut notes) = (Vec::new(), Vec::new());
    for g in root.groups("OBSERVATION") {
        obx.extend(g.segments(msg, "OBX"));
        notes.extend(g.segments(msg, "NTE"));
    }
    document_reference::document_reference(
        ctx,
        txa,
        &obx,
        &notes,
        patient.as_deref(),
        encounter.as_deref(),
        related.as_deref(),
    );
}

#[cfg(test)]
mod tests {
    use crate::fhir::convert::convert;
    use crate::fhir::messages::test_corpus::check_corpus;
    use crate::fhir::site::SiteMaps;
    use serde_json::Value;

    #[test]
    fn corpus_counts() {
        let failures = check_corpus(&["_mdm_"], 11);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    fn doc(raw: &[u8]) -> (Value, crate::fhir::convert::Conversion) {
        let c = convert(raw, &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        (c.resources.iter().find(|r| r.kind == "DocumentReference").unwrap().body.clone().value(), c)
    }

    fn decode(b64: &str) -> String {
        use base64::Engine as _;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
    }

    #[test]
    fn t10_replaces_parent() {
        let (d, c) = doc(include_bytes!("../../../../tests/corpus/hl7/athena_mdm_t10_01.hl7"));
        assert_eq!(d["relatesTo"][0]["code"], "replaces");
        assert_eq!(d["relatesTo"][0]["target"]["identifier"]["value"], "ATHDOC-3001");
        assert_eq!(d["masterIdentifier"]["value"], "ATHDOC-3002");
        assert_eq!(d["status"], "current");
        assert_eq!(d["docStatus"], "final");
        assert!(
            decode(d["content"][0]["attachment"]["data"].as_str().unwrap()).contains("Left (not right) knee effusion.")
        );
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
        let (d, _) = doc(include_bytes!("../../../../tests/corpus/hl7/meditech_mdm_t06_01.hl7"));
        assert_eq!(d["relatesTo"][0]["code"], "appends");
        assert_eq!(d["content"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn notifications_without_content() {
        use crate::fhir::model::Write;
        let (d, c) = doc(include_bytes!("../../../../tests/corpus/hl7/epic_mdm_t01_01.hl7"));
        assert_eq!(d["content"][0]["attachment"]["title"], "consult_0101.txt");
        assert_eq!(d["status"], "current");
        let r = c.resources.iter().find(|r| r.kind == "DocumentReference").unwrap();
        assert_eq!(r.write, Write::CreateIfAbsent, "a notification never replaces content");
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
        // T11 cancels the same document (same TXA-12): entered-in-error, written in full.
        let (d, c) = doc(include_bytes!("../../../../tests/corpus/hl7/epic_mdm_t11_01.hl7"));
        assert_eq!(d["status"], "entered-in-error");
        let cancelled = c.resources.iter().find(|r| r.kind == "DocumentReference").unwrap();
        assert_eq!((cancelled.write, &cancelled.identity), (Write::Upsert, &r.identity));
        let (d, _) = doc(include_bytes!("../../../../tests/corpus/hl7/openemr_mdm_t09_01.hl7"));
        assert_eq!(d["relatesTo"][0]["code"], "replaces");
        assert_eq!(d["relatesTo"][0]["target"]["identifier"]["value"], "OE-DOC-901");
        let (d, _) = doc(include_bytes!("../../../../tests/corpus/hl7/meditech_mdm_t05_01.hl7"));
        assert_eq!(d["relatesTo"][0]["code"], "appends");
        assert_eq!(d["content"][0]["attachment"]["title"], "Progress note");
    }

    #[test]
    fn text_lines_and_ed_attachment() {
        let (d, c) = doc(include_bytes!("../../../../tests/corpus/hl7/epic_mdm_t02_01.hl7"));
        let text = decode(d["content"][0]["attachment"]["data"].as_str().unwrap());
        assert_eq!(text.lines().count(), 4);
        assert!(text.contains("Dx: NSTEMI & HTN. BP 128^76 at discharge."));
        assert_eq!(d["content"][0]["attachment"]["contentType"], "text/plain");
        assert_eq!(d["date"], "2026-03-20T14:00:00-05:00");
        assert!(d["author"][0]["reference"].as_str().unwrap().starts_with("local:Practitioner/"));
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
        let (d, _) = doc(include_bytes!("../../../../tests/corpus/hl7/cerner_mdm_t02_01.hl7"));
        assert_eq!(d["content"][0]["attachment"]["contentType"], "application/pdf");
        assert!(d["content"][0]["attachment"]["data"].as_str().unwrap().starts_with("JVBERi0xLjQK"));
        assert_eq!(d["identifier"][1]["value"], "oprpt_55001.pdf");
        let (d, _) = doc(include_bytes!("../../../../tests/corpus/hl7/openemr_mdm_t02_01.hl7"));
        assert_eq!(d["docStatus"], "preliminary");
        assert_eq!(decode(d["content"][0]["attachment"]["data"].as_str().unwrap()).lines().count(), 3);
    }
}
