//! ROL and PRT → PractitionerRole (IG `ROL[Encounter-PractitionerRole]`,
//! `ROL[Patient-GeneralPractitioner]`, `PRT[PractitionerRole]`): a practitioner in a role for
//! one visit or one patient, which `Encounter.participant.individual` and
//! `Patient.generalPractitioner` reference.
//!
//! - ROL: identifier ROL-1 (EI, only with an assigning authority: senders put a sequence
//!   number there), code ROL-3 (table 0443), practitioner ROL-4 (first
//!   repetition), period ROL-5/ROL-6, telecom ROL-12, location ROL-13 (PL chain),
//!   organization ROL-14 (XON).
//! - PRT: code PRT-4 (table 0443), practitioner PRT-5, specialty PRT-6, organization PRT-8,
//!   location PRT-9, period PRT-11/PRT-12, telecom PRT-15. A PRT without a person (PRT-5) is
//!   about a device or an organization: not mapped here (left unconsumed, so reported).
//! - Action code ROL-2/PRT-2 `D`/`DE` (delete): not mapped (reported), as before.
//!
//! Identity: a source key over the practitioner's key, the role (system|code of its first
//! coding, else its text) and the key of the Encounter or Patient it is for: the same doctor as
//! attending of two visits is two PractitionerRoles, and a resend updates the same one.

use serde_json::Value;

use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::observation::{location_ref, organization_ref, practitioner_ref};
use crate::fhir::resources::patient::{table_concept, val};
use crate::hl7::parser::Segment;

/// A role segment read into FHIR values, before it becomes a PractitionerRole.
struct Role {
    practitioner: String,
    code: Value,
    specialty: Value,
    start: Value,
    end: Value,
    organization: Option<String>,
    location: Option<String>,
    telecom: Vec<Value>,
    identifier: Value,
}

/// True for a delete action code (table 0287 `DE`; PRT senders also send `D`).
fn is_delete(action: &str) -> bool {
    matches!(action.trim().to_ascii_uppercase().as_str(), "D" | "DE")
}

/// The role code of a ROL or PRT (table 0443): `PP` for a primary care provider.
pub fn role_code(seg: Segment) -> String {
    let field = if seg.id() == "PRT" { 4 } else { 3 };
    seg.field(field).rep(1).component(1).value().trim().to_ascii_uppercase()
}

/// ROL → PractitionerRole for `context` (an Encounter or Patient key); its key. `None` (ROL
/// left unconsumed) for a delete or without a ROL-4 person.
pub fn from_rol(ctx: &mut Ctx, rol: Segment, context: &str) -> Option<String> {
    if is_delete(&val(rol.field(2))) {
        return None;
    }
    let practitioner = practitioner_ref(ctx, rol.field(4).rep(1))?;
    ctx.consume(rol.index());
    let site = ctx.site;
    let role = Role {
        practitioner,
        code: table_concept(ctx, rol.field(3).rep(1), "0443", true),
        specialty: Value::Null,
        start: datatypes::datetime(&val(rol.field(5)), site, ctx.at(rol, 5)),
        end: datatypes::datetime(&val(rol.field(6)), site, ctx.at(rol, 6)),
        organization: organization_ref(ctx, rol.field(14).rep(1)),
        location: location_ref(ctx, rol.field(13).rep(1)),
        telecom: rol.field(12).reps().map(datatypes::contact_point).collect(),
        identifier: role_instance_id(rol, site),
    };
    Some(add(ctx, role, context, &format!("rol-{}", rol.index())))
}

/// PRT → PractitionerRole for `context`; its key. `None` (PRT left unconsumed) for a delete
/// or without a PRT-5 person.
pub fn from_prt(ctx: &mut Ctx, prt: Segment, context: &str) -> Option<String> {
    if is_delete(&val(prt.field(2))) {
        return None;
    }
    let practitioner = practitioner_ref(ctx, prt.field(5).rep(1))?;
    ctx.consume(prt.index());
    let site = ctx.site;
    let role = Role {
        practitioner,
        code: table_concept(ctx, prt.field(4).rep(1), "0443", true),
        specialty: datatypes::codeable_concept(prt.field(6).rep(1), site, ctx.at(prt, 6)),
        start: datatypes::datetime(&val(prt.field(11)), site, ctx.at(prt, 11)),
        end: datatypes::datetime(&val(prt.field(12)), site, ctx.at(prt, 12)),
        organization: organization_ref(ctx, prt.field(8).rep(1)),
        location: location_ref(ctx, prt.field(9).rep(1)),
        telecom: prt.field(15).reps().map(datatypes::contact_point).collect(),
        identifier: Value::Null,
    };
    Some(add(ctx, role, context, &format!("prt-{}", prt.index())))
}

/// ROL-1 (role instance id) → identifier, only when it names an assigning authority (EI.2–4):
/// senders fill ROL-1 with the segment's sequence number (`1`, `2`), which identifies nothing.
fn role_instance_id(rol: Segment, site: &crate::fhir::site::SiteMaps) -> Value {
    let ei = rol.field(1).rep(1);
    if (2..=4).all(|i| ei.component(i).value().trim().is_empty()) {
        return Value::Null;
    }
    datatypes::ei_identifier(ei, site).map_or(Value::Null, |(v, _)| v)
}

/// The role as a key part: system|code of its first coding, else its text.
fn role_key(code: &Value) -> String {
    let coding = &code["coding"][0];
    match (coding["system"].as_str(), coding["code"].as_str()) {
        (system, Some(c)) => format!("{}|{c}", system.unwrap_or_default()),
        _ => code["text"].as_str().unwrap_or_default().to_string(),
    }
}

fn add(ctx: &mut Ctx, role: Role, context: &str, local: &str) -> String {
    let identity = Identity::source_key(
        "PractitionerRole",
        &[&ctx.token_of(&role.practitioner), &role_key(&role.code), &ctx.token_of(context)],
    );
    let body = Obj::new()
        .list("identifier", [role.identifier])
        .set("practitioner", reference(&role.practitioner))
        .list("code", [role.code])
        .list("specialty", [role.specialty])
        .set("period", Obj::new().set("start", role.start).set("end", role.end))
        .set("organization", role.organization.as_deref().map(reference))
        .list("location", role.location.as_deref().map(reference))
        .list("telecom", role.telecom);
    let key = format!("PractitionerRole/{local}");
    ctx.add(Resource { kind: "PractitionerRole", key, identity, body, write: Write::Upsert })
}

#[cfg(test)]
mod tests {
    use crate::fhir::convert::convert;
    use crate::fhir::site::SiteMaps;
    use serde_json::{json, Value};

    fn roles(raw: &str) -> (crate::fhir::convert::Conversion, Vec<Value>) {
        let c = convert(raw.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
        let roles =
            c.resources.iter().filter(|r| r.kind == "PractitionerRole").map(|r| r.body.clone().value()).collect();
        (c, roles)
    }

    const MSH: &str = "MSH|^~\\&|EPIC|UHMC|GW|CLOUD|20260315083000-0500||ADT^A01^ADT_A01|C1|P|2.8\rEVN|A01|20260315083000-0500\rPID|1||M1^^^UHMC^MR||Doe^Jane\r";

    #[test]
    fn rol_after_pv1_is_a_participant_role_of_the_visit() {
        let raw = format!(
            "{MSH}PV1|1|I|4W^401^A^UHMC||||||||||||||||V1^^^UHMC^VN\rROL|1|AD|AT^Attending^HL70443|1001^Welby^Marcus^^^Dr^^^UHMC|20260315081500|20260316||||||^WPN^PH^^1^217^5550100|4W^^^UHMC|Welby Group^^77\r"
        );
        let (c, roles) = roles(&raw);
        assert_eq!(roles.len(), 1);
        let r = &roles[0];
        assert_eq!(r["code"][0]["coding"][0]["code"], "AT");
        assert_eq!(r["period"], json!({"start": "2026-03-15T08:15:00-05:00", "end": "2026-03-16"}));
        assert_eq!(r["telecom"][0]["value"], "+1 217 5550100");
        assert!(r["practitioner"]["reference"].as_str().unwrap().contains("Practitioner/"));
        assert!(r["organization"]["reference"].as_str().unwrap().contains("Organization/"));
        assert!(r["location"][0]["reference"].as_str().unwrap().contains("Location/"));
        let role_key = &c.resources.iter().find(|r| r.kind == "PractitionerRole").unwrap().key;
        let enc = c.resources.iter().find(|r| r.kind == "Encounter").unwrap().body.clone().value();
        let part = enc["participant"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["individual"]["reference"].as_str().unwrap().ends_with(role_key.as_str()));
        let part = part.expect("the Encounter references the PractitionerRole");
        assert_eq!(part["type"][0]["coding"][0]["code"], "AT");
        assert_eq!(part["period"]["start"], "2026-03-15T08:15:00-05:00");
        assert!(c.report.unconsumed.iter().all(|u| !u.ends_with(":ROL")), "{:?}", c.report.unconsumed);
    }

    #[test]
    fn prt_pp_before_pv1_is_the_general_practitioner_and_deletes_are_left_out() {
        let raw = format!(
            "{MSH}PRT|1|AD||PP^Primary Care Provider^HL70443|4455^Nguyen^Tam^^^^^^UHMC|FM^Family medicine^L||Springfield Practice^^5001|||20250101\rPRT|2|D||PP^Primary Care Provider^HL70443|9999^Gone^Doc^^^^^^UHMC\rPV1|1|I|4W^401^A^UHMC||||||||||||||||V1^^^UHMC^VN\rPRT|3|AD||AT^Attending^HL70443|1001^Welby^Marcus^^^^^^UHMC\r"
        );
        let (c, roles) = roles(&raw);
        assert_eq!(roles.len(), 2);
        let gp = roles.iter().find(|r| r["code"][0]["coding"][0]["code"] == "PP").unwrap();
        assert_eq!(gp["specialty"][0]["coding"][0]["code"], "FM");
        assert_eq!(gp["period"]["start"], "2025-01-01");
        let patient = c.resources.iter().find(|r| r.kind == "Patient").unwrap().body.clone().value();
        let gps = patient["generalPractitioner"].as_array().unwrap();
        assert_eq!(gps.len(), 1);
        assert!(gps[0]["reference"].as_str().unwrap().contains("PractitionerRole/"));
        let enc = c.resources.iter().find(|r| r.kind == "Encounter").unwrap().body.clone().value();
        assert!(enc["participant"][0]["individual"]["reference"].as_str().unwrap().contains("PractitionerRole/"));
        // The delete is reported as unconsumed, not mapped.
        assert_eq!(c.report.unconsumed.iter().filter(|u| u.ends_with(":PRT")).count(), 1);
    }

    #[test]
    fn oru_patient_and_visit_prts_are_roles_too() {
        let raw = "MSH|^~\\&|LAB|UHMC|GW|CLOUD|20260315083000-0500||ORU^R01^ORU_R01|C2|P|2.8\r\
PID|1||M1^^^UHMC^MR||Doe^Jane\r\
PRT|1|AD||PP^Primary Care Provider^HL70443|4455^Nguyen^Tam^^^^^^UHMC\r\
PV1|1|I|4W^401^A^UHMC||||||||||||||||V1^^^UHMC^VN\r\
PRT|2|AD||AT^Attending^HL70443|1001^Welby^Marcus^^^^^^UHMC\r\
OBR|1||F1^LAB|GLU^Glucose^L\r\
OBX|1|NM|GLU^Glucose^L||5|mg/dL|||||F\r";
        let (c, roles) = roles(raw);
        assert_eq!(roles.len(), 2, "{:?}", c.report);
        let patient = c.resources.iter().find(|r| r.kind == "Patient").unwrap().body.clone().value();
        assert!(patient["generalPractitioner"][0]["reference"].as_str().unwrap().contains("PractitionerRole/"));
        let enc = c.resources.iter().find(|r| r.kind == "Encounter").unwrap().body.clone().value();
        assert!(enc["participant"][0]["individual"]["reference"].as_str().unwrap().contains("PractitionerRole/"));
        assert!(c.report.unconsumed.iter().all(|u| !u.ends_with(":PRT")), "{:?}", c.report.unconsumed);
    }

    #[test]
    fn identity_is_practitioner_role_and_context() {
        let visit = |visit: &str, role: &str| {
            let raw = format!(
                "{MSH}PV1|1|I|4W||||||||||||||||{visit}^^^UHMC^VN\rROL|1|AD|{role}^^HL70443|1001^Welby^Marcus^^^^^^UHMC\r"
            );
            let c = convert(raw.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap();
            c.resources.iter().find(|r| r.kind == "PractitionerRole").unwrap().identity.clone().unwrap()
        };
        assert_eq!(visit("V1", "AT"), visit("V1", "AT"), "a resend updates the same role");
        assert_ne!(visit("V1", "AT"), visit("V2", "AT"), "another visit, another role");
        assert_ne!(visit("V1", "AT"), visit("V1", "CP"), "another role in the same visit");
    }
}
