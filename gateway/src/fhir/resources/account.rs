//! GT1 → `Account.guarantor` (the IG's message maps list GT1 without a target; this follows
//! FHIR-Converter: one Account per message for the patient's account, PID-18 its identifier
//! as in the IG's `PID[Account]`, each GT1 a guarantor).
//!
//! - The guarantor party: the Patient when GT1-11 is `SEL` (self); else a RelatedPerson from
//!   the person fields (name GT1-3, address GT1-5, phones GT1-6 home / GT1-7 work, birth date
//!   GT1-8, sex GT1-9, relationship GT1-11, identifier GT1-2), keyed like an NK1 (patient +
//!   name + relationship); else the Organization GT1-21. A GT1 with none of these is skipped
//!   with a warning. Period GT1-13/GT1-14.
//! - Key: PID-18 (an account number without an authority is scoped to the sender); without
//!   PID-18 the Account is keyless (reported).

use crate::fhir::codes;
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::{val, with_default_use, Identifiers};
use crate::fhir::resources::related_person::relationship;
use crate::hl7::parser::Segment;

/// Maps the GT1 segments to one Account of `patient` (key `Account/gt1-<first GT1 index>`),
/// consuming them. `None` when no GT1 names a guarantor.
pub fn guarantor_account(ctx: &mut Ctx, pid: Segment, gt1s: &[Segment], patient: &str) -> Option<String> {
    let guarantors = guarantors(ctx, gt1s, patient);
    let first = gt1s.first().filter(|_| !guarantors.is_empty())?;
    let key = format!("Account/gt1-{}", first.index());
    Some(add_account(ctx, pid, guarantors, patient, "active", key))
}

/// The account a billing message (BAR, DFT) is about (IG `PID[Account]`): PID-18 its
/// identifier, `status` (BAR P06 end of account → `inactive`), the GT1 guarantors as in
/// [`guarantor_account`]. Key `Account/pid-<PID index>`. `None` without PID-18 and without
/// guarantors (nothing would identify or describe it).
pub fn patient_account(ctx: &mut Ctx, pid: Segment, gt1s: &[Segment], patient: &str, status: &str) -> Option<String> {
    let guarantors = guarantors(ctx, gt1s, patient);
    if guarantors.is_empty() && val(pid.field(18)).is_empty() {
        return None;
    }
    let key = format!("Account/pid-{}", pid.index());
    Some(add_account(ctx, pid, guarantors, patient, status, key))
}

fn add_account(
    ctx: &mut Ctx,
    pid: Segment,
    guarantors: Vec<serde_json::Value>,
    patient: &str,
    status: &str,
    key: String,
) -> String {
    let account_number = datatypes::identifier(pid.field(18).rep(1), ctx.site);
    let identity = ctx.scoped_identity("Account", account_number.as_ref());
    let body = Obj::new()
        .list("identifier", account_number.map(|(v, _)| v))
        .set("status", status)
        .list("subject", [reference(patient)])
        .list("guarantor", guarantors);
    ctx.add(Resource { kind: "Account", key, identity, body, write: Write::Upsert })
}

/// `Account.guarantor` entries of the GT1 segments, consuming them.
fn guarantors(ctx: &mut Ctx, gt1s: &[Segment], patient: &str) -> Vec<serde_json::Value> {
    let mut guarantors = Vec::new();
    for &gt1 in gt1s {
        ctx.consume(gt1.index());
        let Some(party) = party(ctx, gt1, patient) else {
            ctx.warn_at(gt1, 3, "guarantor without name, organization or self relationship: not mapped");
            continue;
        };
        let start = datatypes::date(&val(gt1.field(13)), ctx.at(gt1, 13));
        let end = datatypes::date(&val(gt1.field(14)), ctx.at(gt1, 14));
        guarantors.push(
            Obj::new()
                .set("party", reference(&party))
                .set("period", Obj::new().set("start", start).set("end", end))
                .value(),
        );
    }
    guarantors
}

/// The guarantor of one GT1: the patient (self), a RelatedPerson, or an Organization.
fn party(ctx: &mut Ctx, gt1: Segment, patient: &str) -> Option<String> {
    let rel = gt1.field(11).rep(1);
    if rel.component(1).value().trim().eq_ignore_ascii_case("SEL") {
        return Some(patient.to_string());
    }
    if !val(gt1.field(3)).is_empty() {
        let mut ids = Identifiers::default();
        ids.push_cx(ctx, gt1.field(2));
        let relationship = relationship(ctx, rel);
        let mut body = Obj::new()
            .set("patient", reference(patient))
            .list("identifier", ids.values())
            .list("name", gt1.field(3).reps().map(datatypes::human_name))
            .list("relationship", [relationship])
            .list("address", gt1.field(5).reps().map(datatypes::address));
        body.push_all("telecom", gt1.field(6).reps().map(|r| with_default_use(datatypes::contact_point(r), "home")));
        body.push_all("telecom", gt1.field(7).reps().map(|r| with_default_use(datatypes::contact_point(r), "work")));
        body.put("gender", codes::administrative_sex(&val(gt1.field(9))));
        body.put("birthDate", datatypes::date(&val(gt1.field(8)), ctx.at(gt1, 8)));
        let name = gt1.field(3).rep(1);
        let who = format!(
            "{}^{}|{}",
            name.component(1).sub(1).value().trim(),
            name.component(2).value().trim(),
            rel.component(1).value().trim()
        );
        let identity = Identity::source_key("RelatedPerson", &[&ctx.token_of(patient), &who]);
        let key = format!("RelatedPerson/gt1-{}", gt1.index());
        return Some(ctx.add(Resource { kind: "RelatedPerson", key, identity, body, write: Write::Upsert }));
    }
    let org = datatypes::organization(gt1.field(21).rep(1), ctx.site)?;
    Some(ctx.add(org))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::fhir::convert::{convert, Conversion};
    use crate::fhir::model::{Identity, LOCAL_REF};
    use crate::fhir::site::SiteMaps;

    const ADT: &str = "MSH|^~\\&|EHR|HOSP|GW|CLOUD|20260320120000-0500||ADT^A04^ADT_A01|G1|P|2.5.1\r\
EVN|A04|20260320120000-0500\r\
PID|1||M1^^^HOSP^MR||DOE^JANE|||||||||||||AC-77^^^HOSP^AN\r\
PV1|1|O\r\
GT1|1||DOE^JANE||||||||SEL^Self^HL70063||20260101\r\
GT1|2|G9^^^HOSP|DOE^JOHN||1 Main St^^Town^ME^04000|^PRN^PH^^1^207^5550100||19700101|M||SPO^Spouse^HL70063\r\
GT1|3||||||||||||||||||||Acme Employer Trust\r\
GT1|4\r";

    fn run(raw: &str) -> Conversion {
        convert(raw.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap()
    }

    fn kind_of(c: &Conversion, reference: &Value) -> &'static str {
        let key = reference["reference"].as_str().unwrap().trim_start_matches(LOCAL_REF);
        c.resources.iter().find(|r| r.key == key).unwrap().kind
    }

    #[test]
    fn each_guarantor_is_a_party_of_the_patients_account() {
        let c = run(ADT);
        let accounts: Vec<_> = c.resources.iter().filter(|r| r.kind == "Account").collect();
        assert_eq!(accounts.len(), 1);
        let a = accounts[0].body.clone().value();
        assert_eq!(a["status"], "active");
        assert_eq!(a["identifier"][0]["value"], "AC-77");
        let parties: Vec<&str> = a["guarantor"].as_array().unwrap().iter().map(|g| kind_of(&c, &g["party"])).collect();
        assert_eq!(parties, ["Patient", "RelatedPerson", "Organization"]);
        assert_eq!(a["guarantor"][0]["period"]["start"], "2026-01-01");
        let spouse = c.resources.iter().find(|r| r.key.starts_with("RelatedPerson/gt1-")).unwrap().body.clone().value();
        assert_eq!(spouse["name"][0]["family"], "DOE");
        // SPO (table 0063) → the IG's RoleCode SPS.
        assert_eq!(spouse["relationship"][0]["coding"][0]["code"], "SPS");
        assert_eq!(spouse["birthDate"], "1970-01-01");
        // The empty GT1-4 is consumed and reported as a warning, not silently dropped.
        assert!(c.report.unconsumed.iter().all(|u| !u.ends_with(":GT1")));
        assert!(c.report.warnings.iter().any(|w| w.contains(":GT1-3: guarantor without")));
    }

    #[test]
    fn the_account_is_keyed_by_pid_18_else_keyless() {
        let key = |raw: &str| c_identity(&run(raw));
        let a = key(ADT);
        assert_eq!(a.as_ref().map(|i| i.value.as_str()), Some("AC-77"));
        // Another guarantor list, the same account.
        assert_eq!(key(&ADT.replace("GT1|4\r", "")), a);
        let c = run(&ADT.replace("AC-77^^^HOSP^AN", ""));
        assert_eq!(c_identity(&c), None);
        assert!(c.report.keyless.contains(&"Account".to_string()));
    }

    fn c_identity(c: &Conversion) -> Option<Identity> {
        c.resources.iter().find(|r| r.kind == "Account").and_then(|r| r.identity.clone())
    }
}
