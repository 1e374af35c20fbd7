//! One HL7 v2 message → the FHIR resources it describes, plus a report of what was not
//! mapped. Dispatches on the message structure; each structure's walk over its segment groups
//! lives in `fhir::messages`, each segment's map in `fhir::resources`.

use std::fmt::Write as _;

use crate::hl7::parser::{self, Message};
use crate::hl7::structure::{self, Structure};
use crate::hl7::Hl7Error;

use super::budget::OverBudget;
use super::ctx::Ctx;
use super::messages;
use serde_json::json;

use super::memory::{Forgetful, Memory, Relation};
use super::model::{reference, Identity, Report, Resource, Write, SOURCE_KEY_SYSTEM};
use super::site::SiteMaps;

/// The result of converting one message.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub resources: Vec<Resource>,
    pub report: Report,
    /// MSH-3|MSH-4. With [`content_key`](Self::content_key) and the resource key, the seed of
    /// ids for resources that have no business identifier.
    pub sender: String,
    /// MSH-10, for logs and error messages. Not part of any id: a resend under a new control
    /// ID must update what the first send created.
    pub control_id: String,
    /// [`content_key`] of the message: SHA-256 (lowercase hex) of its segments with MSH-7 and
    /// MSH-10 blanked.
    pub content_key: String,
    /// (surviving, replaced) record keys of the merges the message makes, for the memory.
    pub merges: Vec<(Identity, Identity)>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ConvertError {
    #[error("message cannot be read: {0}")]
    Parse(#[from] Hl7Error),
    #[error("{0}")]
    OverBudget(#[from] OverBudget),
}

/// What ADT messages own: a lab, order, document, scheduling or immunization message creates
/// these when the server has none and otherwise leaves them as the last ADT set them.
pub const ADT_OWNED: [&str; 6] =
    ["Patient", "Encounter", "RelatedPerson", "Coverage", "AllergyIntolerance", "Condition"];

/// Z-segments the site maps (`[mapping.z_segments]`) become extensions on the message's
/// first Patient: `{url: <site url>, extension: [{url: "ZPD-2", valueString: "…"}, …]}`.
fn map_z_segments(ctx: &mut Ctx) {
    if ctx.site.z_segments.is_empty() {
        return;
    }
    let Some(patient) = ctx.resources().iter().find(|r| r.kind == "Patient").map(|r| r.key.clone()) else { return };
    let msg = ctx.msg;
    for seg in msg.segments() {
        let Some(url) = ctx.site.z_segments.get(seg.id()) else { continue };
        let fields: Vec<serde_json::Value> = (1..=seg.field_count())
            .filter_map(|n| {
                let value = seg.field(n).value();
                (!value.trim().is_empty())
                    .then(|| serde_json::json!({ "url": format!("{}-{n}", seg.id()), "valueString": value }))
            })
            .collect();
        if fields.is_empty() {
            continue;
        }
        let ext = super::json::Obj::new().set("url", url.as_str()).list("extension", fields);
        if let Some(p) = ctx.resource_mut(&patient) {
            p.body.push_all("extension", [ext.value()]);
        }
        ctx.consume(seg.index());
    }
}

/// Writes again, on every Patient this message writes in full, the links earlier merges made
/// from it (an ADT replaces the whole Patient, links included). The other record is referred
/// to through a create-if-absent Patient holding only its key, unless this message writes it.
fn carry_links(ctx: &mut Ctx) {
    let patients: Vec<(String, Identity)> = ctx
        .resources()
        .iter()
        .filter(|r| r.kind == "Patient" && r.write == Write::Upsert)
        .filter_map(|r| Some((r.key.clone(), r.identity.clone()?)))
        .collect();
    for (key, identity) in patients {
        for link in ctx.memory.links(&identity) {
            let other = match ctx.find("Patient", &link.other) {
                Some(r) => r.key.clone(),
                None => {
                    let mut body = super::json::Obj::new();
                    if link.other.system != SOURCE_KEY_SYSTEM {
                        body.push_all("identifier", [json!({"system": link.other.system, "value": link.other.value})]);
                    }
                    if link.relation == Relation::Replaces {
                        body.put("active", false);
                        body.push_all("link", [json!({"other": reference(&key), "type": Relation::ReplacedBy.code()})]);
                    }
                    let local = format!("Patient/link-{}", ctx.resources().len());
                    let stub = Resource {
                        kind: "Patient",
                        key: local,
                        identity: Some(link.other.clone()),
                        body,
                        write: Write::CreateIfAbsent,
                    };
                    ctx.add(stub)
                }
            };
            ctx.append_unique(&key, "link", json!({"other": reference(&other), "type": link.relation.code()}));
        }
    }
}

/// Converts one message with the site's maps, on its own (no memory of earlier messages).
pub fn convert(raw: &[u8], site: &SiteMaps) -> Result<Conversion, ConvertError> {
    convert_with(raw, site, &Forgetful)
}

/// Converts one message with the site's maps and what earlier messages left in `memory`.
pub fn convert_with(raw: &[u8], site: &SiteMaps, memory: &dyn Memory) -> Result<Conversion, ConvertError> {
    let msg = parser::parse(raw)?;
    site.budget.check(&msg)?;
    let grouped = structure::group(&msg)?;
    let msh = msg.msh();
    let sender = format!("{}|{}", msh.field(3).value(), msh.field(4).value());
    let control_id = msh.field(10).value().into_owned();
    let content_key = content_key(&msg);
    let mut ctx = Ctx::with_memory(&msg, site, memory);
    ctx.consume(msh.index());
    match grouped.structure {
        Structure::AdtA01
        | Structure::AdtA02
        | Structure::AdtA03
        | Structure::AdtA05
        | Structure::AdtA06
        | Structure::AdtA09
        | Structure::AdtA39 => messages::adt::convert(&mut ctx, &grouped),
        Structure::OruR01 => messages::oru::convert(&mut ctx, &grouped),
        Structure::OrmO01 | Structure::OmlO21 => messages::order::convert(&mut ctx, &grouped),
        Structure::SiuS12 => messages::siu::convert(&mut ctx, &grouped),
        Structure::MdmT02 => messages::mdm::convert(&mut ctx, &grouped),
        Structure::VxuV04 => messages::vxu::convert(&mut ctx, &grouped),
    }
    map_z_segments(&mut ctx);
    carry_links(&mut ctx);
    // Who sent what, when: one Provenance over everything this message produced.
    super::resources::provenance::provenance(&mut ctx);
    if let Some(over) = ctx.over_budget() {
        return Err(over.into());
    }
    let merges = std::mem::take(&mut ctx.merges);
    let (mut resources, report) = ctx.finish(&grouped);
    if !grouped.structure.id().starts_with("ADT") {
        // Only ADT messages carry demographics and visit state; the others only refer to them.
        for r in resources.iter_mut().filter(|r| ADT_OWNED.contains(&r.kind)) {
            r.write = Write::CreateIfAbsent;
        }
    }
    Ok(Conversion { resources, report, sender, control_id, content_key, merges })
}

/// MSH fields a resend regenerates, left out of [`content_key`]: MSH-7 (date/time of message)
/// and MSH-10 (message control ID).
const RESEND_FIELDS: [usize; 2] = [7, 10];

/// A fingerprint of what a message says, blind to what a resend changes: SHA-256, as lowercase
/// hex, over the parsed segments in order, each followed by a CR, where
///
/// - the MSH is rebuilt from its fields with MSH-7 and MSH-10 empty (MSH-1 is the field
///   separator itself, MSH-2 the encoding characters: HL7 numbering, as [`Segment::field`]
///   counts);
/// - segment terminators are whatever the parser split on (CR, LF, CRLF), so a resend with
///   other line endings has the same key; blank lines, a leading BOM and whitespace at the
///   end of a segment do not count.
///
/// Everything else (escapes, charset bytes, repetitions, trailing delimiters) counts byte for
/// byte: any other change of content gives another key.
///
/// [`Segment::field`]: crate::hl7::parser::Segment::field
pub fn content_key(msg: &Message) -> String {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut msh = Vec::new();
    for seg in msg.segments() {
        let bytes = if seg.index() == 0 {
            // The MSH: "MSH" then, per field from MSH-2 on, the separator and the field.
            let sep = msg.delimiters().field;
            msh.extend_from_slice(seg.id().as_bytes());
            for n in 2..=seg.field_count() {
                msh.push(sep);
                if !RESEND_FIELDS.contains(&n) {
                    msh.extend_from_slice(seg.field(n).raw());
                }
            }
            &msh[..]
        } else {
            seg.raw()
        };
        hash.update(bytes.trim_ascii_end());
        hash.update(b"\r");
    }
    let mut out = String::with_capacity(64);
    for b in hash.finish().as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::bundle::{bundles, Profile};
    use serde_json::Value;

    /// An ADT with identifier-less resources of every common kind (Encounter without a visit
    /// number, RelatedPerson, Observation, AllergyIntolerance, Condition, Provenance) and a
    /// Patient with an upsert key.
    const ADT: &str = "MSH|^~\\&|EPIC|HOSP|GW|CLOUD|20260101120000-0500||ADT^A01^ADT_A01|C1|P|2.5.1\r\
EVN|A01|20260101115500-0500\r\
PID|1||M1^^^HOSP&2.16.840.1.113883.3.1&ISO^MR||DOE^JANE||19800101|F\r\
NK1|1|DOE^JOHN|BRO^Brother^HL70063\r\
PV1|1|I|4W^401^A\r\
OBX|1|NM|8302-2^Body height^LN||172|cm^centimeter^UCUM|||||F\r\
AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives\r\
DG1|1||R07.9^Chest pain^I10|||A\r";

    /// `raw` with MSH-`n` (HL7 numbering: MSH-1 is the field separator) set to `value`.
    fn set_msh(raw: &str, n: usize, value: &str) -> String {
        let (msh, rest) = raw.split_once('\r').unwrap();
        let mut fields: Vec<&str> = msh.split('|').collect();
        // fields[0] = "MSH", fields[1] = MSH-2: MSH-n is fields[n - 1].
        fields[n - 1] = value;
        format!("{}\r{rest}", fields.join("|"))
    }

    fn site() -> SiteMaps {
        SiteMaps::empty(jiff::tz::TimeZone::UTC)
    }

    fn run(raw: &str) -> Conversion {
        convert(raw.as_bytes(), &site()).unwrap()
    }

    /// (resourceType, fullUrl, request.url) per entry of the generic transaction.
    fn entries(c: &Conversion) -> Vec<(String, String, String)> {
        let b = bundles(c, Profile::Generic).unwrap().remove(0);
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let s = |v: &Value| v.as_str().unwrap().to_string();
                (s(&e["resource"]["resourceType"]), s(&e["fullUrl"]), s(&e["request"]["url"]))
            })
            .collect()
    }

    fn json(c: &Conversion, profile: Profile) -> Vec<u8> {
        serde_json::to_vec(&bundles(c, profile).unwrap()).unwrap()
    }

    #[test]
    fn resend_under_new_control_id_and_time_yields_the_same_bundles() {
        let first = run(ADT);
        // The sample is meaningful: its visit has neither number nor admit time, so the
        // Encounter (like the Provenance) is keyed by the message; everything else by its key.
        let by_id: Vec<String> =
            entries(&first).into_iter().filter(|(_, _, url)| !url.contains('?')).map(|(k, _, _)| k).collect();
        assert_eq!(by_id, ["Encounter", "Provenance"]);
        assert_eq!(first.report.keyless, ["Encounter"]);
        assert!(entries(&first).iter().any(|(k, _, url)| k == "Patient" && url.starts_with("Patient?identifier=")));

        // A resend tool's copy: new MSH-10, other line endings, a trailing blank line.
        let resent = set_msh(ADT, 10, "RESEND-0001").replace('\r', "\r\n") + "\r\n";
        let resent = run(&resent);
        assert_ne!(resent.control_id, first.control_id);
        assert_eq!(resent.content_key, first.content_key);
        for profile in [Profile::Generic, Profile::Salesforce] {
            assert_eq!(json(&resent, profile), json(&first, profile), "{profile}");
        }

        // New MSH-10 and MSH-7: the same ids everywhere. Provenance.recorded is MSH-7, so the
        // resend updates that one value of the same Provenance; everything else is byte-equal.
        let retimed = run(&set_msh(&set_msh(ADT, 10, "RESEND-0002"), 7, "20260102093000-0500"));
        assert_eq!(retimed.content_key, first.content_key);
        assert_eq!(entries(&retimed), entries(&first));
        let without_recorded = |c: &Conversion, profile| {
            let mut v = serde_json::to_value(bundles(c, profile).unwrap()).unwrap();
            let mut recorded = Vec::new();
            for b in v.as_array_mut().unwrap() {
                for e in b["entry"].as_array_mut().unwrap() {
                    if e["resource"]["resourceType"] == "Provenance" {
                        recorded.push(e["resource"].as_object_mut().unwrap().remove("recorded").unwrap());
                    }
                }
            }
            (serde_json::to_vec(&v).unwrap(), recorded)
        };
        for profile in [Profile::Generic, Profile::Salesforce] {
            let (a, ra) = without_recorded(&first, profile);
            let (b, rb) = without_recorded(&retimed, profile);
            assert_eq!(a, b, "{profile}");
            assert_eq!(ra, ["2026-01-01T12:00:00-05:00"]);
            assert_eq!(rb, ["2026-01-02T09:30:00-05:00"]);
        }
    }

    #[test]
    fn a_changed_value_updates_the_same_resources() {
        let first = entries(&run(ADT));
        let changed = entries(&run(&ADT.replace("||172|cm", "||173|cm")));
        assert_eq!(first.len(), changed.len());
        for (a, b) in first.iter().zip(&changed) {
            if matches!(a.0.as_str(), "Provenance" | "Encounter") {
                // Keyed by the message (see above): a new message, a new one.
                assert_ne!(a.1, b.1, "{}", a.0);
            } else {
                // The Observation whose value changed included: same key, same request.
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn another_sender_gets_other_ids() {
        let first = entries(&run(ADT));
        for (n, sender) in [(3, "CERNER"), (4, "OTHER_HOSP")] {
            let other = entries(&run(&set_msh(ADT, n, sender)));
            for (a, b) in first.iter().zip(&other) {
                if a.0 == "Patient" {
                    assert_eq!(a, b, "identified resources keep their ids");
                } else if !a.2.contains('?') {
                    assert_ne!(a.1, b.1, "MSH-{n}: {} keeps its id", a.0);
                }
            }
        }
    }

    #[test]
    fn content_key_blanks_exactly_msh_7_and_msh_10() {
        let key = |raw: &str| content_key(&parser::parse(raw.as_bytes()).unwrap());
        let base = key(ADT);
        assert_eq!(base.len(), 64);
        assert!(base.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(key(&set_msh(ADT, 7, "20300101000000")), base);
        assert_eq!(key(&set_msh(ADT, 10, "X")), base);
        assert_eq!(key(&set_msh(ADT, 7, "")), base);
        // Their neighbours count (an off-by-one in MSH numbering would blank these instead).
        for (n, value) in [(6, "ELSEWHERE"), (8, "SEC"), (9, "ADT^A08^ADT_A01"), (11, "T")] {
            assert_ne!(key(&set_msh(ADT, n, value)), base, "MSH-{n}");
        }
        // So does anything else: a segment, a value, the segment order.
        assert_ne!(key(&ADT.replace("DOE^JANE", "DOE^JANET")), base);
        assert_ne!(key(ADT.split_inclusive('\r').filter(|s| !s.starts_with("DG1")).collect::<String>().as_str()), base);
        let mut segs: Vec<&str> = ADT.split_inclusive('\r').collect();
        segs.swap(6, 7);
        assert_ne!(key(&segs.concat()), base);
        // Line endings, trailing whitespace and blank lines do not.
        assert_eq!(key(&ADT.replace('\r', "\n")), base);
        assert_eq!(key(&ADT.replace('\r', "\r\n")), base);
        assert_eq!(key(&(ADT.replace("|F\r", "|F  \r") + "\r\r")), base);
    }

    #[test]
    fn site_mapped_z_segments_become_patient_extensions_and_others_are_reported() {
        let raw = b"MSH|^~\\&|EPIC|H|GW|C|20260101120000-0500||ADT^A08^ADT_A01|Z1|P|2.5.1\rEVN|A08|20260101120000-0500\rPID|1||M1^^^H^MR||DOE^JO\rPV1|1|O\rZPD|1|Y|MYCHART_ACTIVE\rZXX|1|other\r";
        let mut site = SiteMaps::empty(jiff::tz::TimeZone::UTC);
        site.z_segments.insert("ZPD".into(), "http://example.org/fhir/StructureDefinition/zpd".into());
        let c = convert(raw, &site).unwrap();
        let patient = c.resources.iter().find(|r| r.kind == "Patient").unwrap().body.clone().value();
        let ext = patient["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["url"] == "http://example.org/fhir/StructureDefinition/zpd")
            .unwrap();
        assert_eq!(ext["extension"][1], serde_json::json!({"url": "ZPD-2", "valueString": "Y"}));
        assert_eq!(ext["extension"][2], serde_json::json!({"url": "ZPD-3", "valueString": "MYCHART_ACTIVE"}));
        assert!(c.report.unconsumed.iter().any(|u| u.ends_with(":ZXX")), "{:?}", c.report);
        assert!(!c.report.unconsumed.iter().any(|u| u.ends_with(":ZPD")), "{:?}", c.report);
    }
}
