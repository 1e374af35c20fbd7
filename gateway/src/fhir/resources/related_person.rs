//! NK1 → RelatedPerson (IG `NK1[RelatedPerson]`) or `Patient.contact` (IG `NK1[Patient]`).
//!
//! The ADT_A01 message map creates no RelatedPerson when NK1-3.1 is `EMR`, `E`, `F`, `I` or
//! `S` (employer, agencies, insurer): such a party only becomes a `Patient.contact`. For the
//! other NK1s the IG lists both targets but notes that "typically each NK1 will be translated
//! to either a new RelatedPerson resource or added as a new occurrence of Patient.contact":
//! we create the RelatedPerson only (no duplicate contact). The exclusion is applied for every
//! message structure (the other maps give no condition).

use serde_json::Value;

use crate::fhir::codes;
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::{ssn_identifier, table_concept, val, with_default_use, Identifiers};
use crate::hl7::parser::{Rep, Segment};

/// NK1-3.1 codes that are not a related person (ADT_A01 message map).
pub const NOT_RELATED_PERSON: [&str; 5] = ["EMR", "E", "F", "I", "S"];

/// True when the NK1 describes an organisation-like party (see [`NOT_RELATED_PERSON`]).
pub fn is_contact_only(nk1: Segment) -> bool {
    let rel = nk1.field(3).rep(1).component(1).value().trim().to_ascii_uppercase();
    NOT_RELATED_PERSON.contains(&rel.as_str())
}

/// NK1-3 (table 0063) → the IG Relationship coding, else as sent (table 0063 system when no
/// coding system was named).
pub(crate) fn relationship(ctx: &mut Ctx, rep: Rep) -> Value {
    match codes::relationship(&rep.component(1).value()) {
        Some(code) => {
            let text = rep.component(2).value().trim().to_string();
            Obj::new().list("coding", [code.coding()]).set("text", text).value()
        }
        None => table_concept(ctx, rep, "0063", true),
    }
}

/// Maps NK1 to a RelatedPerson of `patient` (key `RelatedPerson/nk1-<segment index>`) and
/// consumes it; for an employer/agency/insurer NK1 (see [`is_contact_only`]) adds a
/// `Patient.contact` instead and returns `None`.
pub fn related_person(ctx: &mut Ctx, nk1: Segment, patient: &str) -> Option<String> {
    if is_contact_only(nk1) {
        patient_contact(ctx, nk1, patient);
        return None;
    }
    ctx.consume(nk1.index());
    let mut ids = Identifiers::default();
    ids.push_cx(ctx, nk1.field(12));
    ids.push_cx(ctx, nk1.field(33));
    ids.push(ssn_identifier(&val(nk1.field(37))), "SS");
    let rel = relationship(ctx, nk1.field(3).rep(1));
    let role = table_concept(ctx, nk1.field(7).rep(1), "0131", true);
    let mut body = Obj::new()
        .set("patient", reference(patient))
        .list("identifier", ids.values())
        .list(
            "name",
            nk1.field(2).reps().map(datatypes::human_name).chain(nk1.field(30).reps().map(datatypes::human_name)),
        )
        .list("relationship", [rel, role])
        .list(
            "address",
            nk1.field(4).reps().map(datatypes::address).chain(nk1.field(32).reps().map(datatypes::address)),
        );
    body.push_all("telecom", nk1.field(5).reps().map(datatypes::contact_point));
    body.push_all("telecom", nk1.field(6).reps().map(|r| with_default_use(datatypes::contact_point(r), "work")));
    for n in [31, 40, 41] {
        body.push_all("telecom", nk1.field(n).reps().map(datatypes::contact_point));
    }
    let start = datatypes::date(&val(nk1.field(8)), ctx.at(nk1, 8));
    let end = datatypes::date(&val(nk1.field(9)), ctx.at(nk1, 9));
    body.put("period", Obj::new().set("start", start).set("end", end));
    body.put("gender", codes::administrative_sex(&val(nk1.field(15))));
    body.put("birthDate", datatypes::date(&val(nk1.field(16)), ctx.at(nk1, 16)));
    let lang = datatypes::codeable_concept(nk1.field(20).rep(1), ctx.site, ctx.at(nk1, 20));
    body.push_all("communication", [Obj::new().set("language", lang).value()]);
    // Key: the patient, the person's name and the relationship (NK1 identifiers are often an
    // SSN, which never keys a record).
    let name = nk1.field(2).rep(1);
    let who = format!(
        "{}^{}|{}",
        name.component(1).sub(1).value().trim(),
        name.component(2).value().trim(),
        val(nk1.field(3))
    );
    let identity = (!val(nk1.field(2)).is_empty())
        .then(|| Identity::source_key("RelatedPerson", &[&ctx.token_of(patient), &who]))
        .flatten();
    let key = format!("RelatedPerson/nk1-{}", nk1.index());
    Some(ctx.add(Resource { kind: "RelatedPerson", key, identity, body, write: Write::Upsert }))
}

/// NK1 → one `Patient.contact` on `patient` (IG `NK1[Patient]`): name NK1-2 (first), the
/// relationships NK1-3 and NK1-7, address NK1-4 (first), telecoms NK1-5/6/40/41, period
/// NK1-8/9, gender NK1-15, organization NK1-13 (with NK1-30–32 as the Organization's
/// contact). Consumes NK1.
pub fn patient_contact(ctx: &mut Ctx, nk1: Segment, patient: &str) {
    ctx.consume(nk1.index());
    let rel = relationship(ctx, nk1.field(3).rep(1));
    let role = table_concept(ctx, nk1.field(7).rep(1), "0131", true);
    let relationships: Vec<Value> = if rel == role { vec![rel] } else { vec![rel, role] };
    let mut contact = Obj::new()
        .set("name", datatypes::human_name(nk1.field(2).rep(1)))
        .list("relationship", relationships)
        .set("address", datatypes::address(nk1.field(4).rep(1)));
    contact.push_all("telecom", nk1.field(5).reps().map(datatypes::contact_point));
    contact.push_all("telecom", nk1.field(6).reps().map(|r| with_default_use(datatypes::contact_point(r), "work")));
    for n in [40, 41] {
        contact.push_all("telecom", nk1.field(n).reps().map(datatypes::contact_point));
    }
    let start = datatypes::date(&val(nk1.field(8)), ctx.at(nk1, 8));
    let end = datatypes::date(&val(nk1.field(9)), ctx.at(nk1, 9));
    contact.put("period", Obj::new().set("start", start).set("end", end));
    contact.put("gender", codes::administrative_sex(&val(nk1.field(15))));
    if let Some(mut org) = datatypes::organization(nk1.field(13).rep(1), ctx.site) {
        let org_contact = Obj::new()
            .set("name", datatypes::human_name(nk1.field(30).rep(1)))
            .list("telecom", nk1.field(31).reps().map(datatypes::contact_point))
            .set("address", datatypes::address(nk1.field(32).rep(1)));
        if !org_contact.is_empty() {
            org.body.push_all("contact", [org_contact.value()]);
        }
        contact.put("organization", reference(&ctx.add(org)));
    }
    if !contact.is_empty() {
        ctx.append_unique(patient, "contact", contact.value());
    }
}
