//! BAR (P01 add, P05 update, P06 end account) and DFT (P03, P11 post charges): no IG message
//! map; the segments are mapped as the ADT walk maps them (see docs/CONVERSION.md).
//!
//! - EVN: consumed (Provenance reads it). PID + PD1 → Patient (create-if-absent: only ADT owns
//!   demographics).
//! - The account (IG `PID[Account]`): one Account of the patient, PID-18 its identifier, every
//!   GT1 of the message a guarantor (as the ADT GT1 map); BAR P06 → `inactive`, else `active`.
//!   Each Encounter gets it as `Encounter.account`.
//! - BAR_P01 (P01/P05) VISIT groups: PV1 + PV2 → Encounter; OBX → Observation; AL1 →
//!   AllergyIntolerance; DG1 → Condition; PR1 → Procedure; NK1 → RelatedPerson; IN1 (+ IN2)
//!   → Coverage. BAR_P06: per PATIENT group PID → Patient and its Account, PV1 → Encounter.
//! - DFT_P03/P11: PV1 + PV2 → Encounter; COMMON_ORDER / FINANCIAL_COMMON_ORDER ORC + OBR →
//!   ServiceRequest, their OBX → Observation; FINANCIAL FT1 → ChargeItem
//!   (`resources::charge_item`), FINANCIAL_PROCEDURE PR1 → Procedure; DG1 → Condition; IN1
//!   → Coverage.
//! - Left unconsumed (reported): ROL, DB1, DRG, ACC, UB1/UB2, ABS, BLC, RMI, IN3, TQ1/TQ2,
//!   NTE, and FT1 that are payments or adjustments.

use crate::fhir::ctx::Ctx;
use crate::fhir::model::reference;
use crate::fhir::resources::charge_item::{self, ChargeLinks};
use crate::fhir::resources::{
    account, allergy, condition, coverage, encounter, observation, patient, procedure, related_person, service_request,
};
use crate::hl7::parser::Segment;
use crate::hl7::structure::{Group, Grouped, Structure};

pub fn convert(ctx: &mut Ctx, grouped: &Grouped) {
    let msg = ctx.msg;
    let root = &grouped.root;
    if let Some(evn) = root.segment(msg, "EVN") {
        ctx.consume(evn.index());
    }
    match grouped.structure {
        Structure::BarP01 => bar_p01(ctx, root),
        Structure::BarP06 => {
            for g in root.groups("PATIENT") {
                let Some(pid) = g.segment(msg, "PID") else { continue };
                let p = patient::patient(ctx, pid, None);
                let account = account::patient_account(ctx, pid, &[], &p, "inactive");
                if let Some(pv1) = g.segment(msg, "PV1") {
                    let visit = encounter::encounter(ctx, pv1, None, &p);
                    link_account(ctx, visit.as_deref(), account.as_deref());
                }
            }
        }
        _ => dft(ctx, root),
    }
}

fn link_account(ctx: &mut Ctx, encounter: Option<&str>, account: Option<&str>) {
    if let (Some(e), Some(a)) = (encounter, account) {
        ctx.append_unique(e, "account", reference(a));
    }
}

/// The message's PID → its Patient (PID and the key); without a PID nothing is mapped (warned).
fn billed_patient<'m, 'a>(ctx: &mut Ctx<'m, 'a>, root: &Group) -> Option<(Segment<'m, 'a>, String)> {
    let msg = ctx.msg;
    let Some(pid) = root.segment(msg, "PID") else {
        ctx.warn_at(msg.msh(), 9, "billing message without PID: nothing mapped");
        return None;
    };
    let p = patient::patient(ctx, pid, root.segment(msg, "PD1"));
    Some((pid, p))
}

fn bar_p01(ctx: &mut Ctx, root: &Group) {
    let msg = ctx.msg;
    let Some((pid, p)) = billed_patient(ctx, root) else { return };
    let visits: Vec<&Group> = root.groups("VISIT").collect();
    let gt1s: Vec<Segment> = visits.iter().flat_map(|v| v.segments(msg, "GT1")).collect();
    let account = account::patient_account(ctx, pid, &gt1s, &p, "active");
    for v in visits {
        let visit = v.segment(msg, "PV1").and_then(|pv1| encounter::encounter(ctx, pv1, v.segment(msg, "PV2"), &p));
        link_account(ctx, visit.as_deref(), account.as_deref());
        let visit = visit.as_deref();
        for obx in v.segments(msg, "OBX") {
            observation::observation(ctx, obx, Some(&p), visit, "", &[]);
        }
        for al1 in v.segments(msg, "AL1") {
            allergy::allergy(ctx, al1, &p);
        }
        for dg1 in v.segments(msg, "DG1") {
            condition::condition(ctx, dg1, &p, visit);
        }
        for pr1 in v.groups("PROCEDURE").filter_map(|g| g.segment(msg, "PR1")) {
            procedure::procedure(ctx, pr1, &p, visit);
        }
        for nk1 in v.segments(msg, "NK1") {
            related_person::related_person(ctx, nk1, &p);
        }
        insurance(ctx, v.groups("INSURANCE"), &p);
    }
}

fn insurance<'g>(ctx: &mut Ctx, groups: impl Iterator<Item = &'g Group>, patient: &str) {
    let msg = ctx.msg;
    for g in groups {
        if let Some(in1) = g.segment(msg, "IN1") {
            coverage::coverage(ctx, in1, g.segment(msg, "IN2"), patient);
        }
    }
}

/// An order group of a DFT (`COMMON_ORDER`, `FINANCIAL_COMMON_ORDER`): ORC + OBR →
/// ServiceRequest, OBX → Observation.
fn order(ctx: &mut Ctx, g: &Group, patient: &str, visit: Option<&str>) {
    let msg = ctx.msg;
    let detail = g.group("ORDER").or_else(|| g.group("FINANCIAL_ORDER"));
    let obr = detail.and_then(|d| d.segment(msg, "OBR"));
    service_request::service_request(ctx, g.segment(msg, "ORC"), obr, Some(patient), visit);
    let results = g.groups("OBSERVATION").chain(g.groups("FINANCIAL_OBSERVATION"));
    let order_no = observation::order_number(g.segment(msg, "ORC"), obr);
    for obx in results.filter_map(|o| o.segment(msg, "OBX")).collect::<Vec<_>>() {
        observation::observation(ctx, obx, Some(patient), visit, &order_no, &[]);
    }
}

fn dft(ctx: &mut Ctx, root: &Group) {
    let msg = ctx.msg;
    let Some((pid, p)) = billed_patient(ctx, root) else { return };
    let visit = root.segment(msg, "PV1").and_then(|pv1| encounter::encounter(ctx, pv1, root.segment(msg, "PV2"), &p));
    let financial: Vec<&Group> = root.groups("FINANCIAL").collect();
    let gt1s: Vec<Segment> =
        root.segments(msg, "GT1").chain(financial.iter().flat_map(|f| f.segments(msg, "GT1"))).collect();
    let account = account::patient_account(ctx, pid, &gt1s, &p, "active");
    link_account(ctx, visit.as_deref(), account.as_deref());
    let visit = visit.as_deref();
    for g in root.groups("COMMON_ORDER") {
        order(ctx, g, &p, visit);
    }
    let dg1s = root.segments(msg, "DG1").chain(financial.iter().flat_map(|f| f.segments(msg, "DG1")));
    for dg1 in dg1s.collect::<Vec<_>>() {
        condition::condition(ctx, dg1, &p, visit);
    }
    let links = ChargeLinks { patient: &p, encounter: visit, account: account.as_deref() };
    for f in &financial {
        if let Some(ft1) = f.segment(msg, "FT1") {
            charge_item::charge_item(ctx, ft1, &links);
        }
        for pr1 in f.groups("FINANCIAL_PROCEDURE").filter_map(|g| g.segment(msg, "PR1")) {
            procedure::procedure(ctx, pr1, &p, visit);
        }
        for g in f.groups("FINANCIAL_COMMON_ORDER") {
            order(ctx, g, &p, visit);
        }
    }
    insurance(ctx, root.groups("INSURANCE").chain(financial.iter().flat_map(|f| f.groups("FINANCIAL_INSURANCE"))), &p);
}

#[cfg(test)]
mod tests {
    use crate::fhir::convert::{convert, Conversion};
    use crate::fhir::messages::test_corpus::check_corpus;
    use crate::fhir::site::SiteMaps;
    use serde_json::Value;

    #[test]
    fn corpus_counts() {
        let failures = check_corpus(&["_bar_", "_dft_"], 5);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    fn run(raw: &str) -> Conversion {
        convert(raw.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap()
    }

    fn bodies(c: &Conversion, kind: &str) -> Vec<Value> {
        c.resources.iter().filter(|r| r.kind == kind).map(|r| r.body.clone().value()).collect()
    }

    const DFT: &str = "MSH|^~\\&|BILL|HOSP|GW|CLOUD|20260301120000||DFT^P03^DFT_P03|D1|P|2.5.1\r\
EVN|P03|20260301120000\r\
PID|1||M1^^^HOSP^MR||DOE^JANE|||||||||||||AC-9^^^HOSP^AN\r\
PV1|1|O|CLINIC||||||||||||||||V1^^^HOSP^VN\r\
FT1|1|TX-1||20260301093000||CG|99213^Office visit^CPT|||1|125.00&USD\r\
FT1|2|||20260301094000||CG|85025^CBC^CPT|||2\r\
FT1|3|||20260301||PY|PAY^Payment^L|||1\r";

    #[test]
    fn each_charge_is_a_charge_item_of_the_visit_and_account() {
        let c = run(DFT);
        let items = bodies(&c, "ChargeItem");
        assert_eq!(items.len(), 2, "the payment is not a charge");
        let account = c.resources.iter().find(|r| r.kind == "Account").unwrap();
        let visit = c.resources.iter().find(|r| r.kind == "Encounter").unwrap();
        assert_eq!(items[0]["code"]["coding"][0]["code"], "99213");
        assert_eq!(items[0]["quantity"]["value"], 1);
        assert_eq!(items[0]["priceOverride"]["value"], 125.0);
        assert_eq!(items[0]["occurrenceDateTime"], "2026-03-01T09:30:00+00:00");
        assert_eq!(items[0]["account"][0]["reference"], format!("local:{}", account.key));
        assert_eq!(items[1]["context"]["reference"], format!("local:{}", visit.key));
        assert_eq!(visit.body.get("account").unwrap()[0]["reference"], format!("local:{}", account.key));
        assert!(c.report.unconsumed.iter().any(|u| u.ends_with(":FT1")));
        // Identity: FT1-2 when sent, else a key of the charge's parts, stable across resends.
        let ids: Vec<_> = c.resources.iter().filter(|r| r.kind == "ChargeItem").map(|r| r.identity.clone()).collect();
        assert!(ids.iter().all(Option::is_some));
        let again = run(&DFT.replace("|D1|", "|D2|"));
        let ids2: Vec<_> =
            again.resources.iter().filter(|r| r.kind == "ChargeItem").map(|r| r.identity.clone()).collect();
        assert_eq!(ids, ids2);
        let other_qty = run(&DFT.replace("CBC^CPT|||2", "CBC^CPT|||3"));
        let ids3: Vec<_> =
            other_qty.resources.iter().filter(|r| r.kind == "ChargeItem").map(|r| r.identity.clone()).collect();
        assert_eq!(ids[0], ids3[0]);
        assert_ne!(ids[1], ids3[1]);
    }

    #[test]
    fn bar_p06_ends_the_account() {
        let c = run("MSH|^~\\&|BILL|HOSP|GW|CLOUD|20260301||BAR^P06^BAR_P06|B6|P|2.5.1\rEVN|P06|20260301\r\
PID|1||M1^^^HOSP^MR||DOE^JANE|||||||||||||AC-9^^^HOSP^AN\rPV1|1|O||||||||||||||||||V1^^^HOSP^VN");
        let a = bodies(&c, "Account");
        assert_eq!(a[0]["status"], "inactive");
        assert_eq!(a[0]["identifier"][0]["value"], "AC-9");
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
    }
}
