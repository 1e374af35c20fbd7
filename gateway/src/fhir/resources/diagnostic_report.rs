//! OBR (+ ORC) → DiagnosticReport (IG OBR\[DiagnosticReport\], ORC\[DiagnosticReport\]).
//!
//! Choices:
//! - status: OBR-25 by ResultStatus; empty or without a target → `unknown` (R4 requires one).
//! - The identity (conditional-update key) is the filler order number (ORC-3, else OBR-3) when
//!   its system is known — the lab's report id — else the placer order number.
//! - OBR-32 (NDL: a CNN in component 1, parts as subcomponents) → resultsInterpreter
//!   Practitioner (identifier CNN.1, family CNN.2, given CNN.3); IG targets PractitionerRole,
//!   FHIR-Converter a Practitioner.
//! - OBR-24 (table 0074) → category in the v2-0074 system.

use serde_json::Value;

use super::observation::{concept, datetime, ei_typed, instant};
use crate::fhir::codes;
use crate::fhir::ctx::Ctx;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::coded_key;
use crate::hl7::parser::{Rep, Segment};

/// What a DiagnosticReport links to, besides its OBR/ORC.
#[derive(Debug, Default)]
pub struct ReportLinks<'k> {
    pub patient: Option<&'k str>,
    pub encounter: Option<&'k str>,
    /// Observation keys (`result`).
    pub observations: &'k [String],
    /// Specimen keys (`specimen`).
    pub specimens: &'k [String],
    /// The ServiceRequest key (`basedOn`).
    pub based_on: Option<&'k str>,
    /// Attachments of ED OBX (`presentedForm`).
    pub presented_form: Vec<Value>,
}

/// NDL.1 (CNN as subcomponents) → Practitioner key.
fn ndl_practitioner(ctx: &mut Ctx, ndl: Rep) -> Option<String> {
    let cnn = ndl.component(1);
    let s = |i: usize| cnn.sub(i).value().trim().to_string();
    let (id, family, given) = (s(1), s(2), s(3));
    if id.is_empty() && family.is_empty() {
        return None;
    }
    let name =
        Obj::new().set("family", family.as_str()).list("given", [Value::from(given.as_str()), Value::from(s(4))]);
    let body =
        Obj::new().list("identifier", [Obj::new().set("value", id.as_str()).value()]).list("name", [name.value()]);
    let key_src = if id.is_empty() { format!("{family}-{given}") } else { id };
    let key: String = key_src
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '-' })
        .collect();
    Some(ctx.add(Resource {
        kind: "Practitioner",
        key: format!("Practitioner/{key}"),
        identity: None,
        body,
        write: Write::Upsert,
    }))
}

/// Maps OBR (with its ORC) to a DiagnosticReport, adds it and returns its key. Consumes the OBR
/// (and the ORC, when given).
///
/// identifier placer ORC-2/OBR-2 (PLAC), filler ORC-3/OBR-3 (FILL); code OBR-4; status OBR-25;
/// effectiveDateTime OBR-7 (effectivePeriod OBR-7..OBR-8 when OBR-8 is valued); issued OBR-22;
/// category OBR-24; resultsInterpreter OBR-32; result/specimen/basedOn/presentedForm from
/// `links`. Key `DiagnosticReport/obr-<segment index>`. `None` (OBR left unconsumed, warning)
/// without OBR-4: `DiagnosticReport.code` is required.
pub fn diagnostic_report(ctx: &mut Ctx, obr: Segment, orc: Option<Segment>, links: ReportLinks) -> Option<String> {
    let code = concept(ctx, obr.field(4).rep(1));
    if code.is_null() {
        ctx.warn_at(obr, 4, "OBR without OBR-4 universal service identifier: no DiagnosticReport");
        return None;
    }
    ctx.consume(obr.index());
    if let Some(orc) = orc {
        ctx.consume(orc.index());
    }
    let pick = |n_orc: usize, n_obr: usize| match orc {
        Some(o) if !o.field(n_orc).is_empty() && !o.field(n_orc).is_null() => o.field(n_orc).rep(1),
        _ => obr.field(n_obr).rep(1),
    };
    let placer = ei_typed(ctx, pick(2, 2), "PLAC");
    let filler = ei_typed(ctx, pick(3, 3), "FILL");
    // Key: the filler order number (the lab's report id), else the placer's, else the patient,
    // the test (OBR-4) and the observation time (OBR-7).
    let identity = ctx.scoped_identity("DiagnosticReport", filler.as_ref().or(placer.as_ref())).or_else(|| {
        let what = format!("{}|{}", coded_key(obr.field(4).rep(1)), obr.field(7).value().trim());
        Identity::source_key("DiagnosticReport", &[&links.patient.map(|p| ctx.token_of(p)).unwrap_or_default(), &what])
    });
    let mut body = Obj::new();
    body.push_all(
        "identifier",
        [placer.map(|p| p.0).unwrap_or(Value::Null), filler.map(|f| f.0).unwrap_or(Value::Null)],
    );
    body.push_all("basedOn", links.based_on.map(reference));
    let status = codes::result_status(&obr.field(25).value()).unwrap_or("unknown");
    body.put("status", status);
    let section = obr.field(24).value().trim().to_string();
    if !section.is_empty() && !section.contains(char::is_whitespace) {
        let coding = Obj::new().set("system", codes::v2_table_system("0074")).set("code", section);
        body.push_all("category", [Obj::new().list("coding", [coding.value()]).value()]);
    }
    body.put("code", code);
    body.put("subject", links.patient.map(reference));
    body.put("encounter", links.encounter.map(reference));
    let start = datetime(ctx, obr, 7, &obr.field(7).value());
    let end = datetime(ctx, obr, 8, &obr.field(8).value());
    if end.is_null() {
        body.put("effectiveDateTime", start);
    } else {
        body.put("effectivePeriod", Obj::new().set("start", start).set("end", end));
    }
    body.put("issued", instant(ctx, obr, 22, &obr.field(22).value()));
    let interpreters: Vec<Value> =
        obr.field(32).reps().filter_map(|r| ndl_practitioner(ctx, r)).map(|k| reference(&k)).collect();
    body.push_all("resultsInterpreter", interpreters);
    body.push_all("specimen", links.specimens.iter().map(|k| reference(k)));
    body.push_all("result", links.observations.iter().map(|k| reference(k)));
    body.push_all("presentedForm", links.presented_form);
    let key = format!("DiagnosticReport/obr-{}", obr.index());
    Some(ctx.add(Resource { kind: "DiagnosticReport", key, identity, body, write: Write::Upsert }))
}
