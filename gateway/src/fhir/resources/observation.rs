//! OBX (+ NTE) → Observation (IG OBX\[Observation\], OBX[Observation-Component], NTE\[Observation\]),
//! plus small helpers the other order/result maps share (NTE → Annotation, XCN → Practitioner
//! reference, typed identifiers).
//!
//! Choices where the IG is silent or not representable in R4:
//! - OBX-11 empty or without an IG target (N, O): `status` = `unknown` (R4 requires a status;
//!   FHIR-Converter leaves it out, which is invalid). N also sets `dataAbsentReason` not-asked
//!   when there is no value (IG).
//! - More than one value (repeating OBX-5 of NM, SN, CWE, DT, TM, …) → one `component` per
//!   repetition, each with the OBX-3 code and the reference range text (IG
//!   OBX[Observation-Component]); string types are joined into one `valueString` by
//!   [`datatypes::observation_value`].
//! - ED (and any attachment value): R4 has no `valueAttachment`; the Observation is created
//!   without a value and the caller places [`attachments`] (DiagnosticReport.presentedForm or
//!   DocumentReference.content), so the (possibly large) payload is carried once.
//! - OBX-7: always `referenceRange.text` (IG); additionally `low`/`high` when the text is
//!   `a-b`, `<b`, `<=b`, `>a` or `>=a` with numbers (units from OBX-6).
//! - OBX-8 codes with an IG InterpretationCodes target use the v3 coding; others are kept as
//!   sent.
//! - Not mapped: OBX-4 sub-id, OBX-10, OBX-15, OBX-18 (device), OBX-20 (bodySite: senders put
//!   other data there, e.g. the analysis time, which would become a bogus code), OBX-24/25,
//!   OBX-29/30, OBX-33.

use serde_json::{json, Value};

use crate::fhir::codes;
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::coded_key;
use crate::hl7::parser::{Field, Rep, Segment};

const DATA_ABSENT_REASON: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
const EXT_ANALYSIS_DATE: &str = "http://hl7.org/fhir/StructureDefinition/observation-analysis-date-time";

/// An empty repetition (no units, …).
pub(crate) fn no_rep<'a>(seg: &Segment<'_, 'a>) -> Rep<'a> {
    seg.field(10_000).rep(1)
}

/// A free-text field (ST/TX/FT, repeating) as one string, formatting escapes resolved,
/// repetitions joined with `"\n"`. Empty → `None`.
pub(crate) fn field_text(ctx: &mut Ctx, seg: &Segment, field: Field) -> Option<String> {
    let site = ctx.site;
    let v = datatypes::observation_value("FT", field, no_rep(seg), site, &mut ctx.report);
    v.into_iter().find_map(|(_, v)| v.as_str().map(str::to_string)).filter(|s| !s.trim().is_empty())
}

/// XCN → Practitioner added to the conversion; its key.
pub(crate) fn practitioner_ref(ctx: &mut Ctx, xcn: Rep) -> Option<String> {
    let p = datatypes::practitioner(xcn, ctx.site)?;
    Some(ctx.add(p))
}

/// XON/HD → Organization added to the conversion; its key.
pub(crate) fn organization_ref(ctx: &mut Ctx, xon: Rep) -> Option<String> {
    let o = datatypes::organization(xon, ctx.site)?;
    Some(ctx.add(o))
}

/// PL → its chain of Locations (bed → room → … → facility, see [`datatypes::locations`])
/// added to the conversion; the key of the most specific one.
pub(crate) fn location_ref(ctx: &mut Ctx, pl: Rep) -> Option<String> {
    datatypes::locations(pl).into_iter().map(|l| ctx.add(l)).last()
}

/// A CWE/CE field repetition as a CodeableConcept (`Null` when empty).
pub(crate) fn concept(ctx: &mut Ctx, cwe: Rep) -> Value {
    let site = ctx.site;
    datatypes::codeable_concept(cwe, site, &mut ctx.report)
}

/// A v2 DTM read from `field` of `seg` (`7`, `27.4`) as a FHIR dateTime in the site zone
/// (`Null` when empty or invalid; a warning located at that field when invalid).
pub(crate) fn datetime(ctx: &mut Ctx, seg: Segment, field: impl std::fmt::Display, v: &str) -> Value {
    let site = ctx.site;
    datatypes::datetime(v, site, ctx.at(seg, field))
}

/// A v2 DTM read from `field` of `seg` as a FHIR instant (`Null` when empty, invalid or
/// without a time of day; a located warning when not empty).
pub(crate) fn instant(ctx: &mut Ctx, seg: Segment, field: impl std::fmt::Display, v: &str) -> Value {
    let site = ctx.site;
    datatypes::instant(v, site, ctx.at(seg, field))
}

/// An `Identifier.type` of table 0203 (PLAC, FILL, PGN, …).
pub(crate) fn with_type(mut id: Value, code: &str) -> Value {
    if let Value::Object(o) = &mut id {
        o.insert("type".into(), codes::identifier_type(code));
    }
    id
}

/// EI repetition → typed Identifier (PLAC, FILL, …) and its identity when the system is known.
/// The order a result belongs to, as a key part: the filler order number (ORC-3, else OBR-3),
/// else the placer's (ORC-2, else OBR-2), each `number^namespace`; empty when none is sent.
pub fn order_number(orc: Option<Segment>, obr: Option<Segment>) -> String {
    let ei = |seg: Option<Segment>, n: usize| {
        seg.map(|s| {
            let rep = s.field(n).rep(1);
            let number = rep.component(1).value().trim().to_string();
            if number.is_empty() {
                number
            } else {
                format!("{number}^{}", rep.component(2).value().trim())
            }
        })
        .unwrap_or_default()
    };
    [ei(orc, 3), ei(obr, 3), ei(orc, 2), ei(obr, 2)].into_iter().find(|n| !n.is_empty()).unwrap_or_default()
}

pub(crate) fn ei_typed(ctx: &Ctx, ei: Rep, type_code: &str) -> Option<(Value, Option<Identity>)> {
    datatypes::ei_identifier(ei, ctx.site).map(|(v, id)| (with_type(v, type_code), id))
}

/// NTE → Annotation (IG NTE\[Observation\]/NTE\[ServiceRequest\]): text NTE-3 (repetitions joined
/// with a line feed), authorReference NTE-5 (XCN → Practitioner), time NTE-6. Consumes the
/// NTE. `Null` when NTE-3 is empty (an Annotation needs text).
pub fn annotation(ctx: &mut Ctx, nte: Segment) -> Value {
    ctx.consume(nte.index());
    let Some(text) = field_text(ctx, &nte, nte.field(3)) else { return Value::Null };
    let author = practitioner_ref(ctx, nte.field(5).rep(1)).map(|k| reference(&k));
    let time = datetime(ctx, nte, 6, &nte.field(6).value());
    Obj::new().set("text", text).set("authorReference", author).set("time", time).value()
}

/// The attachments of an ED (or RP-free) OBX-5, one per repetition; empty for other types.
pub fn attachments(obx: &Segment) -> Vec<Value> {
    if !obx.field(2).value().trim().eq_ignore_ascii_case("ED") {
        return Vec::new();
    }
    obx.field(5).reps().map(datatypes::attachment).filter(|v| !v.is_null()).collect()
}

/// Range bounds from OBX-7 text: `a-b`, `<b`, `<=b`, `>a`, `>=a` with NM numbers.
fn range_bounds(text: &str) -> Option<(Option<&str>, Option<&str>)> {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("<=").or_else(|| t.strip_prefix('<')) {
        return datatypes::decimal(rest).map(|_| (None, Some(rest.trim())));
    }
    if let Some(rest) = t.strip_prefix(">=").or_else(|| t.strip_prefix('>')) {
        return datatypes::decimal(rest).map(|_| (Some(rest.trim()), None));
    }
    // The separating hyphen is not the first character (a negative low bound).
    let at = t.char_indices().skip(1).find(|(_, c)| *c == '-').map(|(i, _)| i)?;
    let (lo, hi) = (t[..at].trim(), t[at + 1..].trim());
    (datatypes::decimal(lo).is_some() && datatypes::decimal(hi).is_some()).then_some((Some(lo), Some(hi)))
}

/// OBX-7 → referenceRange (text, and low/high when parseable).
fn reference_range(ctx: &mut Ctx, obx: &Segment) -> Value {
    let text = obx.field(7).value().trim().to_string();
    if text.is_empty() {
        return Value::Null;
    }
    let units = obx.field(6).rep(1);
    let site = ctx.site;
    let mut o = Obj::new().set("text", text.as_str());
    if let Some((lo, hi)) = range_bounds(&text) {
        if let Some(lo) = lo {
            o.put("low", datatypes::quantity(lo, units, site, ctx.at(*obx, 7)));
        }
        if let Some(hi) = hi {
            o.put("high", datatypes::quantity(hi, units, site, ctx.at(*obx, 7)));
        }
    }
    o.value()
}

/// OBX-8 (repeating) → interpretation.
fn interpretations(ctx: &mut Ctx, obx: &Segment) -> Vec<Value> {
    let mut out = Vec::new();
    for rep in obx.field(8).reps() {
        let code = rep.value().trim().to_string();
        match codes::interpretation(&code) {
            Some(c) => out.push(c.concept()),
            None => out.push(concept(ctx, rep)),
        }
    }
    out
}

/// Maps one OBX (with the NTEs that follow it) to an Observation, adds it and returns its key.
///
/// IG OBX\[Observation\]: code OBX-3; value OBX-5 by OBX-2 (see module notes for repetitions and
/// ED); referenceRange OBX-7; interpretation OBX-8; status OBX-11; effectiveDateTime OBX-14;
/// performer OBX-16 (XCN → Practitioner) and OBX-23 (XON → Organization); method OBX-17;
/// analysis date-time extension OBX-19; identifier OBX-21 (type FILL, the
/// identity when its system is known); note NTE-3. Key `Observation/obx-<segment index>`.
///
/// Consumes the OBX and the NTEs. `None` (OBX left unconsumed, a warning reported) when OBX-3
/// is empty: `Observation.code` is required.
pub fn observation(
    ctx: &mut Ctx,
    obx: Segment,
    patient: Option<&str>,
    encounter: Option<&str>,
    order: &str,
    notes: &[Segment],
) -> Option<String> {
    // Warnings about OBX-3 belong to this OBX, which is consumed only once it maps.
    ctx.report.locate(format!("{}:{}", obx.index(), obx.id()));
    let code = concept(ctx, obx.field(3).rep(1));
    if code.is_null() {
        ctx.warn_at(obx, 3, "OBX without OBX-3 observation identifier not mapped");
        return None;
    }
    ctx.consume(obx.index());
    let site = ctx.site;
    let value_type = obx.field(2).value().trim().to_ascii_uppercase();
    let values: Vec<(&'static str, Value)> =
        datatypes::observation_value(&value_type, obx.field(5), obx.field(6).rep(1), site, ctx.at(obx, 5))
            .into_iter()
            .filter(|(k, _)| *k != "attachment")
            .collect();
    let range = reference_range(ctx, &obx);
    let status_code = obx.field(11).value().trim().to_ascii_uppercase();
    let status = codes::observation_status(&status_code).unwrap_or("unknown");

    let mut body = Obj::new().set("status", status).set("code", code.clone());
    match values.len() {
        0 => {
            if status_code == "N" {
                body.put("dataAbsentReason", json!({"coding": [{"system": DATA_ABSENT_REASON, "code": "not-asked"}]}));
            }
        }
        1 => {
            let (k, v) = values.into_iter().next().unwrap_or(("", Value::Null));
            body.put(k, v);
            body.push_all("referenceRange", [range]);
        }
        _ => {
            let components: Vec<Value> = values
                .into_iter()
                .map(|(k, v)| {
                    Obj::new().set("code", code.clone()).set(k, v).list("referenceRange", [range.clone()]).value()
                })
                .collect();
            body.push_all("component", components);
        }
    }
    body.put("subject", patient.map(reference));
    body.put("encounter", encounter.map(reference));
    body.put("effectiveDateTime", datetime(ctx, obx, 14, &obx.field(14).value()));
    let interp = interpretations(ctx, &obx);
    body.push_all("interpretation", interp);
    let mut performers = Vec::new();
    for xcn in obx.field(16).reps() {
        if let Some(k) = practitioner_ref(ctx, xcn) {
            performers.push(reference(&k));
        }
    }
    if let Some(k) = organization_ref(ctx, obx.field(23).rep(1)) {
        performers.push(reference(&k));
    }
    body.push_all("performer", performers);
    body.put("method", concept(ctx, obx.field(17).rep(1)));
    let analysis = datetime(ctx, obx, 19, &obx.field(19).value());
    if !analysis.is_null() {
        body.push_all("extension", [json!({"url": EXT_ANALYSIS_DATE, "valueDateTime": analysis})]);
    }
    let mut identity = None;
    if let Some((id, ident)) = ei_typed(ctx, obx.field(21).rep(1), "FILL") {
        body.push_all("identifier", [id]);
        identity = ident;
    }
    // Key: OBX-21, else the patient, the order (`order`; without one, the observation time
    // OBX-14), OBX-3 and OBX-4 — never the value or status, so a correction (OBX-11 C)
    // updates the Observation it corrects.
    let identity = identity.or_else(|| {
        let context = if order.is_empty() { obx.field(14).value().trim().to_string() } else { order.to_string() };
        let what = format!("{context}|{}|{}", coded_key(obx.field(3).rep(1)), obx.field(4).value().trim());
        Identity::source_key("Observation", &[&patient.map(|p| ctx.token_of(p)).unwrap_or_default(), &what])
    });
    let note: Vec<Value> = notes.iter().map(|n| annotation(ctx, *n)).collect();
    body.push_all("note", note);
    let key = format!("Observation/obx-{}", obx.index());
    Some(ctx.add(Resource { kind: "Observation", key, identity, body, write: Write::Upsert }))
}

/// Sets a reference (or appends to a reference list) on an added resource.
pub(crate) fn link(ctx: &mut Ctx, key: &str, field: &str, target: &str, many: bool) {
    if let Some(r) = ctx.resource_mut(key) {
        if many {
            r.body.push_all(field, [reference(target)]);
        } else {
            r.body.put(field, reference(target));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::convert::convert;
    use crate::fhir::site::SiteMaps;

    fn conv(segments: &str) -> crate::fhir::convert::Conversion {
        let raw = format!("MSH|^~\\&|LAB|HOSP|GW|CLOUD|20260101120000||ORU^R01^ORU_R01|C1|P|2.5.1\r{segments}\r");
        convert(raw.as_bytes(), &SiteMaps::empty(jiff::tz::TimeZone::UTC)).unwrap()
    }

    fn obs(c: &crate::fhir::convert::Conversion) -> Vec<Value> {
        c.resources.iter().filter(|r| r.kind == "Observation").map(|r| r.body.clone().value()).collect()
    }

    #[test]
    fn repeating_nm_becomes_components() {
        let c =
            conv("PID|1||1^^^H^MR\rOBR|1||F1|X^X^L\rOBX|1|NM|8480-6^Systolic^LN||120~118|mm[Hg]^^UCUM|90-120|N|||F");
        let o = &obs(&c)[0];
        assert!(o.get("valueQuantity").is_none());
        let comps = o["component"].as_array().unwrap();
        assert_eq!(comps.len(), 2);
        assert_eq!(comps[0]["code"]["coding"][0]["code"], "8480-6");
        assert_eq!(comps[1]["valueQuantity"]["value"], 118);
        assert_eq!(comps[0]["referenceRange"][0]["low"]["value"], 90);
        assert_eq!(o["status"], "final");
    }

    #[test]
    fn structured_numerics() {
        let c = conv(
            "OBR|1||F1|X^X^L\rOBX|1|SN|A^A^LN||>^10|mg/L^^UCUM|<5|H|||F\rOBX|2|SN|B^B^LN||^10^-^20|ng/mL^^UCUM\rOBX|3|SN|C^C^LN||^1^:^128",
        );
        let o = obs(&c);
        assert_eq!(o[0]["valueQuantity"]["comparator"], ">");
        assert_eq!(
            o[0]["referenceRange"][0],
            json!({"text":"<5","high":{"value":5,"unit":"mg/L","system":"http://unitsofmeasure.org","code":"mg/L"}})
        );
        assert_eq!(o[0]["interpretation"][0]["coding"][0]["code"], "H");
        assert_eq!(o[1]["valueRange"]["low"]["value"], 10);
        assert_eq!(o[1]["valueRange"]["high"]["value"], 20);
        assert_eq!(o[2]["valueRatio"], json!({"numerator":{"value":1},"denominator":{"value":128}}));
        // No OBX-11: status unknown (required in R4).
        assert_eq!(o[1]["status"], "unknown");
    }

    #[test]
    fn range_parsing() {
        assert_eq!(range_bounds("0.57-1.00"), Some((Some("0.57"), Some("1.00"))));
        assert_eq!(range_bounds("-5-5"), Some((Some("-5"), Some("5"))));
        assert_eq!(range_bounds(">=0"), Some((Some("0"), None)));
        assert_eq!(range_bounds("<1:8"), None);
        assert_eq!(range_bounds("negative"), None);
    }

    #[test]
    fn notes_and_missing_code() {
        let c = conv("OBR|1||F1|X^X^L\rOBX|1|ST|||text\rOBX|2|ST|A^A^LN||x||||||N\rNTE|1|L|Note one|||20260101");
        let o = obs(&c);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0]["note"][0]["text"], "Note one");
        assert!(c.report.unconsumed.iter().any(|u| u.ends_with(":OBX")));
        assert!(!c.report.unconsumed.iter().any(|u| u.ends_with(":NTE")));
    }
}
