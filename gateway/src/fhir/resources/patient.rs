//! PID (+ PD1) → Patient (IG `PID[Patient]`, `PD1[Patient]`); MRG → the replaced Patient of
//! a merge (A40); ROL/PRT (PP) → a PractitionerRole in `Patient.generalPractitioner`.
//!
//! Choices where the IG is silent or leaves the map to local implementation:
//! - Identity (the upsert key, see `record_identity`): a PID-3 identifier of a record type
//!   (`[mapping] patient_identifier_types`), never an SSN or other personal identifier.
//! - Identifiers with the same system and value are emitted once (PID-19 often repeats the
//!   PID-3 SSN).
//! - PID-13/PID-14 default `use` home/work is only added when the datatype map gave no use
//!   (so `CP` equipment keeps `mobile`).
//! - PID-10 race and PID-22 ethnicity → US Core extensions (`us_core`); PID-18 (Account),
//!   PID-21, PID-26/27/28, PID-31+ are not mapped.
//! - PD1-3 and PD1-4 → `generalPractitioner` (Organization first, then Practitioner, as the IG
//!   orders them); a ROL or PRT with role `PP` (table 0443) adds its PractitionerRole to the
//!   same list.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::fhir::codes;
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::time;
use crate::hl7::parser::{Field, Rep, Segment};

pub(crate) const EXT_BIRTH_TIME: &str = "http://hl7.org/fhir/StructureDefinition/patient-birthTime";
const EXT_MOTHERS_MAIDEN: &str = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName";
const EXT_RELIGION: &str = "http://hl7.org/fhir/StructureDefinition/patient-religion";
const EXT_BIRTH_PLACE: &str = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace";
const US_SSN: &str = "http://hl7.org/fhir/sid/us-ssn";

// ---------------------------------------------------------------------------------------
// Helpers shared by the ADT resource maps (patient, encounter, related person, …)
// ---------------------------------------------------------------------------------------

/// The trimmed first leaf of a field.
pub(crate) fn val(f: Field) -> String {
    f.value().trim().to_string()
}

/// Table 0136 Y/N → boolean (IG YesNoIndicator); anything else → `None`.
pub(crate) fn yes_no(v: &str) -> Option<bool> {
    match v.trim().to_ascii_uppercase().as_str() {
        "Y" => Some(true),
        "N" => Some(false),
        _ => None,
    }
}

/// A coded field of an HL7 table: sent as is ([`datatypes::codeable_concept`]), except that
/// a code whose coding system name (CWE.3) names this table (`HL7nnnn`) — or, with
/// `assume_table`, is empty — is placed in the table's THO system (the IG concept maps for
/// these tables are the identity). `assume_table` is for fields bound to an HL7 table the IG
/// maps (0007, 0052, 0063, 0131, 0443), not for site-defined tables.
pub(crate) fn table_concept(ctx: &mut Ctx, rep: Rep, table: &str, assume_table: bool) -> Value {
    let code = rep.component(1).value().trim().to_string();
    let name = rep.component(3).value().trim().to_string();
    let names_table = !name.is_empty()
        && codes::v2_table_system(&name) == codes::v2_table_system(table)
        && name.to_ascii_uppercase().starts_with("HL7");
    if !code.is_empty() && (names_table || (assume_table && name.is_empty())) && !code.contains(char::is_whitespace) {
        let display = rep.component(2).value().trim().to_string();
        let coding =
            Obj::new().set("system", codes::v2_table_system(table)).set("code", code).set("display", display.as_str());
        let text = rep.component(9).value().trim().to_string();
        return Obj::new()
            .list("coding", [coding.value()])
            .set("text", if text.is_empty() { display } else { text })
            .value();
    }
    datatypes::codeable_concept(rep, ctx.site, &mut ctx.report)
}

/// Collects identifiers in order, dropping repeats of the same system and value.
#[derive(Default)]
pub(crate) struct Identifiers {
    items: Vec<(Value, Option<Identity>, String)>,
    /// (system, value) of the items: a repeat is found in O(1), not by a scan per push.
    seen: HashSet<(String, String)>,
}

impl Identifiers {
    pub(crate) fn push(&mut self, id: Option<(Value, Option<Identity>)>, type_code: &str) {
        let Some((v, ident)) = id else { return };
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        if !self.seen.insert((text("system"), text("value"))) {
            return;
        }
        self.items.push((v, ident, type_code.trim().to_ascii_uppercase()));
    }

    pub(crate) fn push_cx(&mut self, ctx: &Ctx, f: Field) {
        for rep in f.reps() {
            let t = rep.component(5).value().to_string();
            self.push(datatypes::identifier(rep, ctx.site), &t);
        }
    }

    /// First with a known system and type MR, else first with a known system.
    pub(crate) fn identity(&self) -> Option<Identity> {
        self.items
            .iter()
            .find(|(_, i, t)| i.is_some() && t == "MR")
            .or_else(|| self.items.iter().find(|(_, i, _)| i.is_some()))
            .and_then(|(_, i, _)| i.clone())
    }

    pub(crate) fn values(&self) -> Vec<Value> {
        self.items.iter().map(|(v, _, _)| v.clone()).collect()
    }
}

/// A patient record's upsert key from its identifier fields (PID-3, PID-2, PID-4; MRG-1,
/// MRG-4, MRG-2): of the identifiers whose type (CX.5) is in `[mapping]
/// patient_identifier_types`, the one whose type comes first in that list (then the first
/// field, then the first repetition); an identifier without a type ranks after those. SSNs,
/// driver's licences and every other type never key a record: two patients sharing a
/// placeholder SSN must stay two patients. An identifier that names no assigning authority is
/// keyed under the sender (reported). `None` (the resource stays keyless) when there is none.
pub(crate) fn record_identity(ctx: &mut Ctx, segment: Segment, fields: &[usize]) -> Option<Identity> {
    let types = &ctx.site.patient_identifier_types;
    let mut best: Option<(usize, (Value, Option<Identity>), usize)> = None;
    for &n in fields {
        for rep in segment.field(n).reps() {
            let type_code = rep.component(5).value().trim().to_ascii_uppercase();
            let rank = match types.iter().position(|t| *t == type_code) {
                Some(rank) => rank,
                None if type_code.is_empty() => types.len(),
                None => continue,
            };
            if best.as_ref().is_some_and(|(b, _, _)| *b <= rank) {
                continue;
            }
            if let Some(id) = datatypes::identifier(rep, ctx.site) {
                best = Some((rank, id, n));
            }
        }
    }
    let (_, id, n) = best?;
    if id.1.is_none() {
        ctx.warn_at(segment, n, "record identifier without an assigning authority, keyed under the sender");
    }
    ctx.scoped_identity("Patient", Some(&id))
}

/// A coded field as a key part: `code|coding system` (CWE.1, CWE.3), else its text (CWE.2);
/// empty when neither is sent.
pub(crate) fn coded_key(rep: Rep) -> String {
    // Whole components, raw: some senders qualify a code by subcomponents (`36643-5&IMP`).
    let part = |n: usize| String::from_utf8_lossy(rep.component(n).raw()).trim().to_string();
    let code = part(1);
    if code.is_empty() {
        part(2)
    } else {
        format!("{code}|{}", part(3))
    }
}

/// An SSN sent as a plain string (PID-19, NK1-37) → Identifier (system US SSN, type SS).
pub(crate) fn ssn_identifier(ssn: &str) -> Option<(Value, Option<Identity>)> {
    let ssn = ssn.trim();
    if ssn.is_empty() {
        return None;
    }
    let v = Obj::new().set("value", ssn).set("system", US_SSN).set("type", codes::identifier_type("SS")).value();
    Some((v, Some(Identity { system: US_SSN.into(), value: ssn.into() })))
}

/// A ContactPoint with `use` set to `default_use` when the datatype map gave none.
pub(crate) fn with_default_use(mut v: Value, default_use: &str) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.entry("use").or_insert_with(|| json!(default_use));
    }
    v
}

// ---------------------------------------------------------------------------------------
// Patient
// ---------------------------------------------------------------------------------------

/// Maps PID (and PD1) to a Patient, adds it and returns its key (`Patient/pid-<segment
/// index>`). Consumes the segments.
pub fn patient(ctx: &mut Ctx, pid: Segment, pd1: Option<Segment>) -> String {
    ctx.consume(pid.index());
    let mut body = Obj::new();

    // Identifiers: PID-2, PID-3, PID-4, PID-19 (IG order).
    let mut ids = Identifiers::default();
    for n in [2, 3, 4] {
        ids.push_cx(ctx, pid.field(n));
    }
    ids.push(ssn_identifier(&val(pid.field(19))), "SS");
    body.push_all("identifier", ids.values());
    let identity = record_identity(ctx, pid, &[3, 2, 4]);

    // Names: PID-5, then PID-9 aliases.
    body.push_all("name", pid.field(5).reps().map(datatypes::human_name));
    body.push_all("name", pid.field(9).reps().map(datatypes::human_name));

    // PID-7 birth date, with the birth time extension when a time of day was sent.
    let dob = val(pid.field(7));
    body.put("birthDate", datatypes::date(&dob, ctx.at(pid, 7)));
    if body.get("birthDate").is_some() && time::has_time(&dob) {
        let dt = datatypes::datetime(&dob, ctx.site, ctx.at(pid, 7));
        if !dt.is_null() {
            body.put("_birthDate", json!({"extension": [{"url": EXT_BIRTH_TIME, "valueDateTime": dt}]}));
        }
    }

    // PID-8 gender (`""` and empty → nothing).
    let sex = val(pid.field(8));
    match codes::administrative_sex(&sex) {
        Some(g) => body.put("gender", g),
        None if !sex.is_empty() => ctx.report.unmapped("HL70001", &sex),
        None => {}
    }

    // PID-11 addresses; PID-12 county as the district of a single address without one.
    let mut addresses: Vec<Value> = pid.field(11).reps().map(datatypes::address).filter(|a| !a.is_null()).collect();
    let county = val(pid.field(12));
    if !county.is_empty() {
        match addresses.as_mut_slice() {
            [] => addresses.push(json!({"district": county})),
            [one] if one.get("district").is_none() => one["district"] = json!(county),
            _ => {}
        }
    }
    body.push_all("address", addresses);

    // Telecoms: PID-13 (home), PID-14 (work), PID-40.
    body.push_all("telecom", pid.field(13).reps().map(|r| with_default_use(datatypes::contact_point(r), "home")));
    body.push_all("telecom", pid.field(14).reps().map(|r| with_default_use(datatypes::contact_point(r), "work")));
    body.push_all("telecom", pid.field(40).reps().map(datatypes::contact_point));

    // PID-15 language, with its BCP-47 coding (the binding of `communication.language`).
    let sent = pid.field(15).rep(1);
    let lang = datatypes::codeable_concept(sent, ctx.site, ctx.at(pid, 15));
    let lang = crate::fhir::language::with_bcp47(lang, &sent.component(1).value(), &sent.component(3).value());
    body.push_all("communication", [Obj::new().set("language", lang).value()]);

    // PID-16 marital status (IG MaritalStatus; unmapped codes kept as sent).
    let marital = pid.field(16).rep(1);
    let ms = match codes::marital_status(&marital.component(1).value()) {
        Some(code) => code.concept(),
        None => datatypes::codeable_concept(marital, ctx.site, ctx.at(pid, 16)),
    };
    body.put("maritalStatus", ms);

    // Extensions: PID-6 mother's maiden name, PID-17 religion, PID-23 birth place.
    let maiden = pid.field(6).rep(1).component(1).sub(1).value().trim().to_string();
    let religion = datatypes::codeable_concept(pid.field(17).rep(1), ctx.site, ctx.at(pid, 17));
    let birth_place = val(pid.field(23));
    body.push_all(
        "extension",
        [
            Obj::new().set("url", EXT_MOTHERS_MAIDEN).set("valueString", maiden.as_str()).value(),
            if religion.is_null() {
                Value::Null
            } else {
                json!({"url": EXT_RELIGION, "valueCodeableConcept": religion})
            },
            if birth_place.is_empty() {
                Value::Null
            } else {
                json!({"url": EXT_BIRTH_PLACE, "valueAddress": {"text": birth_place}})
            },
        ]
        .into_iter()
        .filter(|e| e.get("url").is_some() && e.as_object().is_some_and(|o| o.len() > 1)),
    );

    body.push_all("extension", super::us_core::race_ethnicity(pid));

    // PID-24/25 multiple birth (order wins over the indicator).
    match val(pid.field(25)).parse::<i64>() {
        Ok(n) => body.put("multipleBirthInteger", n),
        Err(_) => body.put("multipleBirthBoolean", yes_no(&val(pid.field(24)))),
    }

    // PID-29/30 deceased (date/time wins over the indicator).
    let death = datatypes::datetime(&val(pid.field(29)), ctx.site, ctx.at(pid, 29));
    if death.is_null() {
        body.put("deceasedBoolean", yes_no(&val(pid.field(30))));
    } else {
        body.put("deceasedDateTime", death);
    }

    // PD1-3 (Organization) and PD1-4 (Practitioner) → generalPractitioner.
    if let Some(pd1) = pd1 {
        ctx.consume(pd1.index());
        let mut gps: Vec<Value> = Vec::new();
        for rep in pd1.field(3).reps() {
            if let Some(org) = datatypes::organization(rep, ctx.site) {
                gps.push(reference(&ctx.add(org)));
            }
        }
        for rep in pd1.field(4).reps() {
            if let Some(p) = datatypes::practitioner(rep, ctx.site) {
                gps.push(reference(&ctx.add(p)));
            }
        }
        gps.dedup();
        body.push_all("generalPractitioner", gps);
    }

    let key = format!("Patient/pid-{}", pid.index());
    ctx.add(Resource { kind: "Patient", key, identity, body, write: Write::Upsert })
}

/// ROL or PRT with role `PP` (table 0443) following PID → a PractitionerRole for this patient
/// that `Patient.generalPractitioner` references (IG `ROL[Patient-GeneralPractitioner]`,
/// `PRT[Patient-GeneralPractitioner-PractitionerRole]`). Returns false (and consumes nothing)
/// for other roles.
pub fn general_practitioner_role(ctx: &mut Ctx, seg: Segment, patient: &str) -> bool {
    let role = seg.field(if seg.id() == "PRT" { 4 } else { 3 }).rep(1);
    let table = role.component(3).value().trim().to_ascii_uppercase();
    if super::practitioner_role::role_code(seg) != "PP" || !(table.is_empty() || table == "HL70443") {
        return false;
    }
    let key = if seg.id() == "PRT" {
        super::practitioner_role::from_prt(ctx, seg, patient)
    } else {
        super::practitioner_role::from_rol(ctx, seg, patient)
    };
    let Some(key) = key else { return false };
    ctx.append_unique(patient, "generalPractitioner", reference(&key));
    true
}

/// MRG → the Patient replaced by a merge (A40): identifiers from MRG-1 (prior patient
/// identifier list), MRG-4 (prior patient ID) and MRG-2 (prior alternate patient ID), name
/// MRG-7, `active: false`, `link` replaced-by `surviving`; the surviving Patient gets the
/// reverse `link` (replaces). Key `Patient/mrg-<segment index>`. Consumes MRG. Returns `None`
/// (with a warning) when MRG names no prior identifier or resolves to the surviving record.
pub fn merged_patient(ctx: &mut Ctx, mrg: Segment, surviving: &str) -> Option<String> {
    let mut ids = Identifiers::default();
    for n in [1, 4, 2] {
        ids.push_cx(ctx, mrg.field(n));
    }
    if ids.values().is_empty() {
        ctx.warn_at(mrg, 1, "MRG without a prior patient identifier");
        return None;
    }
    ctx.consume(mrg.index());
    let identity = record_identity(ctx, mrg, &[1, 4, 2]);
    let body = Obj::new()
        .list("identifier", ids.values())
        .list("name", mrg.field(7).reps().map(datatypes::human_name))
        .set("active", false)
        .list("link", [json!({"other": reference(surviving), "type": "replaced-by"})]);
    let key = ctx.add(Resource {
        kind: "Patient",
        key: format!("Patient/mrg-{}", mrg.index()),
        identity,
        body,
        write: Write::Upsert,
    });
    if key == surviving {
        ctx.warn_at(mrg, 1, "MRG names the surviving patient");
        return None;
    }
    ctx.append_unique(surviving, "link", json!({"other": reference(&key), "type": "replaces"}));
    if let (Some(survivor), Some(replaced)) = (ctx.identity_of(surviving), ctx.identity_of(&key)) {
        ctx.merges.push((survivor.clone(), replaced.clone()));
    }
    Some(key)
}
