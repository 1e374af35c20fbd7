//! PPR_PC1 (PC1 problem add): no IG message map; PID, PV1 and OBX are mapped as elsewhere,
//! PRB by `resources::problem`.
//!
//! - PID + PD1 → Patient (create-if-absent, as in every non-ADT message); PATIENT_VISIT PV1 +
//!   PV2 → Encounter.
//! - Each PROBLEM: PRB → Condition (problem-list-item); its NTEs → `Condition.note`; the first
//!   PROBLEM_ROLE ROL-4 (XCN → Practitioner) → `asserter`; PROBLEM_OBSERVATION OBX →
//!   Observation, referenced from `evidence.detail`.
//! - The Condition is created when the server has none and otherwise left as it is: a
//!   Condition belongs to ADT messages (see `convert::ADT_OWNED`), and PC1 adds a problem.
//! - Left unconsumed (reported): VAR, further ROL, PATHWAY (PTH), GOAL (GOL …), ORDER (ORC …).

use crate::fhir::ctx::Ctx;
use crate::fhir::json::Obj;
use crate::fhir::model::reference;
use crate::fhir::resources::observation::{self, annotation, practitioner_ref};
use crate::fhir::resources::{encounter, patient, problem};
use crate::hl7::structure::Grouped;

pub fn convert(ctx: &mut Ctx, grouped: &Grouped) {
    let msg = ctx.msg;
    let root = &grouped.root;
    let Some(pid) = root.segment(msg, "PID") else {
        let msh = msg.msh();
        ctx.warn_at(msh, 9, "problem message without PID: nothing mapped");
        return;
    };
    let p = patient::patient(ctx, pid, None);
    let visit = root
        .group("PATIENT_VISIT")
        .and_then(|v| v.segment(msg, "PV1").map(|pv1| (pv1, v.segment(msg, "PV2"))))
        .and_then(|(pv1, pv2)| encounter::encounter(ctx, pv1, pv2, &p));
    for g in root.groups("PROBLEM") {
        let Some(prb) = g.segment(msg, "PRB") else { continue };
        let Some(condition) = problem::problem(ctx, prb, &p, visit.as_deref()) else { continue };
        let notes: Vec<_> = g.segments(msg, "NTE").map(|n| annotation(ctx, n)).collect();
        let asserter = g.groups("PROBLEM_ROLE").filter_map(|r| r.segment(msg, "ROL")).next().and_then(|rol| {
            let who = practitioner_ref(ctx, rol.field(4).rep(1))?;
            ctx.consume(rol.index());
            Some(who)
        });
        let mut evidence = Vec::new();
        for obx in g.groups("PROBLEM_OBSERVATION").filter_map(|o| o.segment(msg, "OBX")) {
            if let Some(k) = observation::observation(ctx, obx, Some(&p), visit.as_deref(), "", &[]) {
                evidence.push(Obj::new().list("detail", [reference(&k)]).value());
            }
        }
        if let Some(r) = ctx.resource_mut(&condition) {
            r.body.push_all("note", notes);
            r.body.put("asserter", asserter.map(|k| reference(&k)));
            r.body.push_all("evidence", evidence);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fhir::convert::convert;
    use crate::fhir::messages::test_corpus::check_corpus;
    use crate::fhir::site::SiteMaps;

    #[test]
    fn corpus_counts() {
        let failures = check_corpus(&["_ppr_", "_ref_"], 2);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn a_problem_becomes_a_problem_list_condition() {
        let raw = "MSH|^~\\&|EHR|HOSP|GW|CLOUD|20260301120000||PPR^PC1^PPR_PC1|PB1|P|2.5.1\r\
PID|1||M1^^^HOSP^MR||DOE^JANE\r\
PRB|AD|20260301|44054006^Diabetes mellitus type 2^SCT|PRB-1^EHR|||20250101||20260201||||C^Confirmed|A^Active||20240601\r\
NTE|1||Diet controlled.\r\
ROL|1|AD|PP|1003^Grey^Meredith\r\
OBX|1|NM|4548-4^HbA1c^LN||6.9|%|||||F\r";
        let c = convert(raw.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        let cond = c.resources.iter().find(|r| r.kind == "Condition").unwrap().body.clone().value();
        assert_eq!(cond["category"][0]["coding"][0]["code"], "problem-list-item");
        assert_eq!(cond["verificationStatus"]["coding"][0]["code"], "confirmed");
        // PRB-9 (resolved 2026-02-01) wins over the active life cycle status (con-4).
        assert_eq!(cond["clinicalStatus"]["coding"][0]["code"], "resolved");
        assert_eq!(cond["abatementDateTime"], "2026-02-01");
        assert_eq!(cond["onsetDateTime"], "2024-06-01");
        assert_eq!(cond["note"][0]["text"], "Diet controlled.");
        assert!(cond["asserter"]["reference"].as_str().unwrap().starts_with("local:Practitioner/"));
        assert!(cond["evidence"][0]["detail"][0]["reference"].as_str().unwrap().starts_with("local:Observation/"));
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
    }
}
