//! RDE_O11 (pharmacy encoded order) and RDS_O13 (pharmacy dispense): no IG message map; the
//! order part is mapped as ORM/OML map theirs, the medication segments by
//! `resources::medication` (after the IG's RXO/RXR/TQ1 maps).
//!
//! - PATIENT: PID + PD1 → Patient, PATIENT_VISIT PV1 + PV2 → Encounter, AL1 →
//!   AllergyIntolerance, IN1 → Coverage (the shared order walk).
//! - RDE, each ORDER: ORC + RXE + the order's RXR + TIMING_ENCODED TQ1 (else TIMING TQ1) →
//!   MedicationRequest; NTE after RXE → its notes; OBX → Observation, its
//!   `supportingInformation`.
//! - RDS, each ORDER: ORC + the ENCODING RXE (else the ORDER_DETAIL RXO) → the
//!   MedicationRequest the dispense fulfils, written create-if-absent (the dispense only
//!   refers to the order an RDE wrote); RXD + RXR → MedicationDispense authorized by it. An
//!   order with neither RXE nor RXO gets no MedicationRequest.
//! - Left unconsumed (reported): the RDE ORDER_DETAIL (RXO, its RXR, RXC: the RXE is the
//!   order as encoded), RXC, FT1, BLG, CTI, TQ2, message and patient NTE.

use crate::fhir::ctx::Ctx;
use crate::fhir::model::Write;
use crate::fhir::resources::medication::{self, GiveFields, OrderParts, RXE, RXO};
use crate::fhir::resources::observation::{self, link};
use crate::fhir::resources::service_request;
use crate::hl7::parser::Segment;
use crate::hl7::structure::{Group, Grouped, Structure};

use super::order::patient_and_visit;

pub fn convert(ctx: &mut Ctx, grouped: &Grouped) {
    let root = &grouped.root;
    let (patient, encounter) = match root.group("PATIENT") {
        Some(p) => patient_and_visit(ctx, p, "PATIENT_VISIT"),
        None => (None, None),
    };
    let Some(patient) = patient else {
        let msh = ctx.msg.msh();
        ctx.warn_at(msh, 9, "pharmacy message without PID: nothing mapped");
        return;
    };
    for order in root.groups("ORDER") {
        if grouped.structure == Structure::RdsO13 {
            dispense(ctx, order, &patient, encounter.as_deref());
        } else {
            encoded_order(ctx, order, &patient, encounter.as_deref());
        }
    }
}

fn tq1s(group: &Group, timing_group: &str, ctx: &Ctx) -> Vec<usize> {
    group.groups(timing_group).filter_map(|t| t.segment(ctx.msg, "TQ1")).map(|s| s.index()).collect()
}

fn encoded_order(ctx: &mut Ctx, order: &Group, patient: &str, encounter: Option<&str>) {
    let msg = ctx.msg;
    let (Some(orc), Some(rxe)) = (order.segment(msg, "ORC"), order.segment(msg, "RXE")) else { return };
    let routes: Vec<Segment> = order.segments(msg, "RXR").collect();
    let mut timing = tq1s(order, "TIMING_ENCODED", ctx);
    if timing.is_empty() {
        timing = tq1s(order, "TIMING", ctx);
    }
    let timing: Vec<Segment> = timing.into_iter().filter_map(|i| msg.segment_at(i)).collect();
    let parts =
        OrderParts { give: (rxe, &RXE), routes: &routes, timing: &timing, patient, encounter, write: Write::Upsert };
    let Some(request) = medication::medication_request(ctx, orc, parts) else { return };
    let notes: Vec<Segment> = order.segments(msg, "NTE").collect();
    service_request::add_notes(ctx, &request, &notes);
    let order_no = observation::order_number(Some(orc), None);
    for obx in order.groups("OBSERVATION").filter_map(|g| g.segment(msg, "OBX")) {
        if let Some(k) = observation::observation(ctx, obx, Some(patient), encounter, &order_no, &[]) {
            link(ctx, &request, "supportingInformation", &k, true);
        }
    }
}

fn dispense(ctx: &mut Ctx, order: &Group, patient: &str, encounter: Option<&str>) {
    let msg = ctx.msg;
    let Some(orc) = order.segment(msg, "ORC") else { return };
    let encoding = order.group("ENCODING");
    let detail = order.group("ORDER_DETAIL");
    // The RXE with its own RXR and TIMING_ENCODED; else the RXO with its RXR and the order's TIMING.
    let give: Option<(Segment, &GiveFields, &Group, &Group, &str)> = encoding
        .and_then(|e| e.segment(msg, "RXE").map(|s| (s, &RXE, e, e, "TIMING_ENCODED")))
        .or_else(|| detail.and_then(|d| d.segment(msg, "RXO").map(|s| (s, &RXO, d, order, "TIMING"))));
    let request = give.and_then(|(seg, fields, route_group, timing_source, timing_group)| {
        let routes: Vec<Segment> = route_group.segments(msg, "RXR").collect();
        let timing: Vec<Segment> =
            tq1s(timing_source, timing_group, ctx).into_iter().filter_map(|i| msg.segment_at(i)).collect();
        let parts = OrderParts {
            give: (seg, fields),
            routes: &routes,
            timing: &timing,
            patient,
            encounter,
            write: Write::CreateIfAbsent,
        };
        medication::medication_request(ctx, orc, parts)
    });
    ctx.consume(orc.index());
    let Some(rxd) = order.segment(msg, "RXD") else { return };
    let routes: Vec<Segment> = order.segments(msg, "RXR").collect();
    let Some(d) = medication::medication_dispense(ctx, orc, rxd, &routes, patient, encounter, request.as_deref())
    else {
        return;
    };
    let notes: Vec<Segment> = order.segments(msg, "NTE").collect();
    service_request::add_notes(ctx, &d, &notes);
    let order_no = observation::order_number(Some(orc), None);
    for obx in order.groups("OBSERVATION").filter_map(|g| g.segment(msg, "OBX")) {
        if let Some(k) = observation::observation(ctx, obx, Some(patient), encounter, &order_no, &[]) {
            link(ctx, &d, "supportingInformation", &k, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fhir::convert::{convert, Conversion};
    use crate::fhir::messages::test_corpus::check_corpus;
    use crate::fhir::model::Write;
    use crate::fhir::site::SiteMaps;
    use serde_json::Value;

    #[test]
    fn corpus_counts() {
        let failures = check_corpus(&["_rde_", "_rds_"], 2);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    fn run(raw: &str) -> Conversion {
        convert(raw.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap()
    }

    fn one(c: &Conversion, kind: &str) -> (String, Value, Write) {
        let r = c.resources.iter().find(|r| r.kind == kind).unwrap();
        (r.key.clone(), r.body.clone().value(), r.write)
    }

    const RDE: &str = "MSH|^~\\&|PHARM|HOSP|GW|CLOUD|20260301120000||RDE^O11^RDE_O11|R1|P|2.5.1\r\
PID|1||M1^^^HOSP^MR||DOE^JANE\r\
PV1|1|I|4W^401^A||||||||||||||||V1^^^HOSP^VN\r\
ORC|NW|P100^EHR|F200^PHARM|||||||||1003^Grey^Meredith\r\
RXE||197361^Amlodipine 5 MG Oral Tablet^RXNORM|5||mg^^UCUM|TAB^Tablet^HL70292||||30|TAB^Tablet^HL70292|2|||RX-77\r\
TQ1|1||QD&Once daily&HL70335||||20260301080000|20260331080000|R\r\
RXR|PO^Oral^HL70162\r";

    #[test]
    fn rde_gives_a_medication_request_with_dose_route_timing_and_dispense() {
        let c = run(RDE);
        let (_, mr, write) = one(&c, "MedicationRequest");
        assert_eq!(write, Write::Upsert);
        assert_eq!(mr["status"], "active");
        assert_eq!(mr["medicationCodeableConcept"]["coding"][0]["code"], "197361");
        let dose = &mr["dosageInstruction"][0];
        assert_eq!(dose["doseAndRate"][0]["doseQuantity"]["value"], 5);
        assert_eq!(dose["route"]["coding"][0]["code"], "PO");
        assert_eq!(dose["timing"]["code"]["coding"][0]["code"], "QD");
        assert_eq!(dose["timing"]["code"]["coding"][0]["system"], "http://terminology.hl7.org/CodeSystem/v2-0335");
        assert_eq!(dose["timing"]["repeat"]["boundsPeriod"]["end"], "2026-03-31T08:00:00+00:00");
        assert_eq!(mr["dispenseRequest"]["quantity"]["value"], 30);
        assert_eq!(mr["dispenseRequest"]["numberOfRepeatsAllowed"], 2);
        assert_eq!(mr["priority"], "routine");
        assert_eq!(mr["identifier"][2]["value"], "RX-77");
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
    }

    #[test]
    fn rds_dispense_refers_to_the_order_it_fulfils() {
        let rds = RDE.replace("RDE^O11^RDE_O11", "RDS^O13^RDS_O13").replace("ORC|NW", "ORC|RE")
            + "RXD|1|197361^Amlodipine 5 MG Oral Tablet^RXNORM|20260301150000|30|TAB^Tablet^HL70292||RX-77\r\
RXR|PO^Oral^HL70162\r";
        let c = run(&rds);
        let (request, mr, write) = one(&c, "MedicationRequest");
        assert_eq!(write, Write::CreateIfAbsent);
        assert_eq!(mr["medicationCodeableConcept"]["coding"][0]["code"], "197361");
        let (_, md, _) = one(&c, "MedicationDispense");
        assert_eq!(md["authorizingPrescription"][0]["reference"], format!("local:{request}"));
        assert_eq!(md["whenHandedOver"], "2026-03-01T15:00:00+00:00");
        assert_eq!(md["quantity"]["value"], 30);
        assert_eq!(md["status"], "completed");
        assert!(c.report.unconsumed.is_empty(), "{:?}", c.report.unconsumed);
    }
}
