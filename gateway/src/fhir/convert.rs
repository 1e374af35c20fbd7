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

/// Applies earlier merges to the Patients an ADT writes in full (an ADT replaces the whole
/// Patient, links included; other messages only create a Patient the server does not have):
/// - a surviving record gets its `replaces` links again; the record it replaced is referred to
///   through a create-if-absent Patient holding its key (the merge wrote that record);
/// - a record a merge replaced is left as the merge wrote it (identifiers, name, inactive,
///   `replaced-by`): a later message under the old identifier only creates it if it is gone,
///   so the result does not depend on whether it arrives before or after the merge.
fn apply_merges(ctx: &mut Ctx) {
    let patients: Vec<(String, Identity)> = ctx
        .resources()
        .iter()
        .filter(|r| r.kind == "Patient" && r.write == Write::Upsert)
        .filter_map(|r| Some((r.key.clone(), r.identity.clone()?)))
        .collect();
    for (key, identity) in patients {
        let links = ctx.memory.links(&identity);
        if links.iter().any(|l| l.relation == Relation::ReplacedBy) && !ctx.merges.iter().any(|m| m.1 == identity) {
            if let Some(r) = ctx.resource_mut(&key) {
                r.write = Write::CreateIfAbsent;
            }
            continue;
        }
        for link in links.into_iter().filter(|l| l.relation == Relation::Replaces) {
            let other = match ctx.find("Patient", &link.other) {
                Some(r) => r.key.clone(),
                None => {
                    let mut body = super::json::Obj::new();
                    if link.other.system != SOURCE_KEY_SYSTEM {
                        body.push_all("identifier", [json!({"system": link.other.system, "value": link.other.value})]);
                    }
                    body.put("active", false);
                    body.push_all("link", [json!({"other": reference(&key), "type": Relation::ReplacedBy.code()})]);
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
        | Structure::AdtA15
        | Structure::AdtA16
        | Structure::AdtA21
        | Structure::AdtA60
        | Structure::AdtA39 => messages::adt::convert(&mut ctx, &grouped),
        Structure::AdtA17 | Structure::AdtA24 | Structure::AdtA30 | Structure::AdtA37 | Structure::AdtA45 => {
            messages::adt_records::convert(&mut ctx, &grouped)
        }
        Structure::OruR01 => messages::oru::convert(&mut ctx, &grouped),
        Structure::OrmO01 | Structure::OmlO21 | Structure::OmgO19 => messages::order::convert(&mut ctx, &grouped),
        Structure::OulR22 => messages::oul::convert(&mut ctx, &grouped),
        Structure::SiuS12 => messages::siu::convert(&mut ctx, &grouped),
        Structure::MdmT01 | Structure::MdmT02 => messages::mdm::convert(&mut ctx, &grouped),
        Structure::BarP01 | Structure::BarP06 | Structure::DftP03 | Structure::DftP11 => {
            messages::billing::convert(&mut ctx, &grouped)
        }
        Structure::RdeO11 | Structure::RdsO13 => messages::pharmacy::convert(&mut ctx, &grouped),
        Structure::RefI12 => messages::referral::convert(&mut ctx, &grouped),
        Structure::PprPc1 => messages::problem::convert(&mut ctx, &grouped),
        Structure::VxuV04 => messages::vxu::convert(&mut ctx, &grouped),
    }
    map_z_segments(&mut ctx);
    // Who sent what, when: one Provenance over everything this message produced (not over
    // what earlier merges add below, so a resend before or after a merge is the same).
    super::resources::provenance::provenance(&mut ctx);
    let adt = grouped.structure.id().starts_with("ADT");
    if adt {
        apply_merges(&mut ctx);
    }
    if let Some(over) = ctx.over_budget() {
        return Err(over.into());
    }
    let merges = std::mem::take(&mut ctx.merges);
    let (mut resources, report) = ctx.finish(&grouped);
    if !adt {
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

    fn key_of(c: &Conversion, kind: &str) -> Vec<Identity> {
        c.resources.iter().filter(|r| r.kind == kind).filter_map(|r| r.identity.clone()).collect()
    }

    #[test]
    fn a_patient_is_keyed_by_a_record_identifier_never_an_ssn() {
        let with_pid =
            |pid: &str| run(&ADT.replace("PID|1||M1^^^HOSP&2.16.840.1.113883.3.1&ISO^MR||DOE^JANE||19800101|F", pid));
        // Two patients sharing a placeholder SSN, MRNs under an unmapped authority: two keys,
        // both under the default system, reported.
        let a = with_pid("PID|1||A100^^^SITEHOSP^MR||DOE^JANE||19800101|F|||||||||||999-99-9999");
        let b = with_pid("PID|1||B200^^^SITEHOSP^MR||ROE^JOAN||19700101|F|||||||||||999-99-9999");
        let (ka, kb) = (key_of(&a, "Patient"), key_of(&b, "Patient"));
        assert_eq!(ka, [Identity { system: "urn:hl7v2-gateway:authority:SITEHOSP".into(), value: "A100".into() }]);
        assert_ne!(ka, kb);
        assert_eq!(a.report.default_systems, ["SITEHOSP -> urn:hl7v2-gateway:authority:SITEHOSP"]);
        // Only an SSN and a driver's licence: keyless (reported), not keyed by the SSN.
        let c = with_pid("PID|1||123-45-6789^^^SSA^SS~D55^^^DMV^DL||DOE^JANE");
        assert!(key_of(&c, "Patient").is_empty());
        assert!(c.report.keyless.contains(&"Patient".to_string()));
        // The configured order wins over the repetition order; an untyped id comes last.
        let d = with_pid("PID|1||U1^^^H~P7^^^H^PI~M9^^^H^MR||DOE^JANE");
        assert_eq!(key_of(&d, "Patient")[0].value, "M9");
        let e = with_pid("PID|1||U1^^^H~S1^^^SSA^SS||DOE^JANE");
        assert_eq!(key_of(&e, "Patient")[0].value, "U1");
        // No authority at all: keyed under the sender, so another facility's 42 is another patient.
        let f = with_pid("PID|1||42^^^^MR||DOE^JANE");
        let g = run(&set_msh(&ADT.replace("M1^^^HOSP&2.16.840.1.113883.3.1&ISO^MR", "42^^^^MR"), 4, "OTHER"));
        assert_eq!(key_of(&f, "Patient")[0].system, crate::fhir::model::SOURCE_KEY_SYSTEM);
        assert_ne!(key_of(&f, "Patient"), key_of(&g, "Patient"));
    }

    const ORU: &str = "MSH|^~\\&|LAB|HOSP|GW|CLOUD|20260101120000||ORU^R01^ORU_R01|L1|P|2.5.1\r\
PID|1||M1^^^HOSP^MR||DOE^JANE\r\
PV1|1|I|4W^401^A||||||||||||||||V1^^^HOSP^VN\r\
ORC|RE|P1^EHR|F1^LAB\r\
OBR|1|P1^EHR|F1^LAB|2951-2^Sodium^LN|||20260101100000|||||||||||||||20260101110000||CH|P\r\
OBX|1|NM|2951-2^Sodium^LN||182|mmol/L|||||P|||20260101100000\r";

    #[test]
    fn a_correction_updates_the_result_it_corrects_and_leaves_the_patient_alone() {
        let prelim = run(ORU);
        let corrected =
            run(&ORU.replace("||182|", "||128|").replace("|||||P|||", "|||||C|||").replace("|CH|P", "|CH|C"));
        for kind in ["Observation", "DiagnosticReport", "ServiceRequest", "Patient", "Encounter"] {
            assert_eq!(key_of(&prelim, kind), key_of(&corrected, kind), "{kind}");
            assert_eq!(key_of(&prelim, kind).len(), 1, "{kind}");
        }
        let b = bundles(&corrected, Profile::Generic).unwrap().remove(0);
        for e in b["entry"].as_array().unwrap() {
            let kind = e["resource"]["resourceType"].as_str().unwrap();
            let method = e["request"]["method"].as_str().unwrap();
            if ADT_OWNED.contains(&kind) {
                // A lab message never replaces what an ADT set: create when absent only.
                assert_eq!((method, e["request"]["url"].as_str().unwrap()), ("POST", kind));
                assert!(e["request"]["ifNoneExist"].as_str().unwrap().starts_with("identifier="));
            } else if kind != "Provenance" {
                assert_eq!(method, "PUT", "{kind}");
            }
        }
    }

    /// A memory holding one merge.
    struct Remembers(Identity, Identity);

    impl Memory for Remembers {
        fn links(&self, patient: &Identity) -> Vec<crate::fhir::memory::PatientLink> {
            let link =
                |other: &Identity, relation| vec![crate::fhir::memory::PatientLink { other: other.clone(), relation }];
            if *patient == self.0 {
                link(&self.1, Relation::Replaces)
            } else if *patient == self.1 {
                link(&self.0, Relation::ReplacedBy)
            } else {
                Vec::new()
            }
        }
    }

    #[test]
    fn updates_after_a_merge_keep_its_links_and_salesforce_marks_create_if_absent() {
        let merge = "MSH|^~\\&|A|HOSP|R|RF|20260329010000||ADT^A40^ADT_A39|1|P|2.5.1\rEVN|A40|20260329010000\rPID|1||S1^^^HOSP^MR||New^Name\rMRG|O1^^^HOSP^MR||||||Old^Name";
        let merged = run(merge);
        let (survivor, replaced) = merged.merges[0].clone();
        assert_eq!((survivor.value.as_str(), replaced.value.as_str()), ("S1", "O1"));

        let update =
            ADT.replace("M1^^^HOSP&2.16.840.1.113883.3.1&ISO^MR", "S1^^^HOSP^MR").replace("ADT^A01", "ADT^A08");
        let memory = Remembers(survivor.clone(), replaced.clone());
        let c = convert_with(update.as_bytes(), &site(), &memory).unwrap();
        let patients: Vec<&Resource> = c.resources.iter().filter(|r| r.kind == "Patient").collect();
        assert_eq!(patients.len(), 2, "the survivor and a create-if-absent stub of the merged record");
        let (p, stub) = (patients[0], patients[1]);
        assert_eq!(p.body.get("link").unwrap()[0]["type"], "replaces");
        assert_eq!((stub.write, stub.identity.as_ref()), (Write::CreateIfAbsent, Some(&replaced)));
        assert_eq!(stub.body.get("link").unwrap()[0]["type"], "replaced-by");
        let sf = crate::fhir::bundle::bundles(&c, Profile::Salesforce).unwrap();
        let kinds: Vec<&str> = sf
            .iter()
            .flat_map(|b| b["entry"].as_array().unwrap())
            .map(|e| e["resource"]["resourceType"].as_str().unwrap())
            .collect();
        assert_eq!(kinds.iter().filter(|k| **k == "Patient").count(), 2, "an ADT writes its patient even when sent");

        // An update under the merged-away identifier leaves that record as the merge wrote it.
        let stale = ADT.replace("M1^^^HOSP&2.16.840.1.113883.3.1&ISO^MR", "O1^^^HOSP^MR").replace("ADT^A01", "ADT^A08");
        let c = convert_with(stale.as_bytes(), &site(), &memory).unwrap();
        let p = c.resources.iter().find(|r| r.kind == "Patient").unwrap();
        assert_eq!((p.identity.as_ref(), p.write), (Some(&replaced), Write::CreateIfAbsent));

        // A lab result for the survivor: the Patient it would only create carries `ifNoneExist`
        // (the forwarder leaves it out once the server holds it), and the Observation refers to
        // it by its placeholder.
        let oru = ORU.replace("M1^^^HOSP^MR", "S1^^^HOSP^MR");
        let c = convert_with(oru.as_bytes(), &site(), &memory).unwrap();
        let sf = crate::fhir::bundle::bundles(&c, Profile::Salesforce).unwrap();
        let entries: Vec<&Value> = sf.iter().flat_map(|b| b["entry"].as_array().unwrap()).collect();
        let patient = entries
            .iter()
            .find(|e| e["resource"]["resourceType"] == "Patient" && e["resource"]["identifier"][0]["value"] == "S1")
            .unwrap();
        assert!(patient["request"]["ifNoneExist"].as_str().unwrap().starts_with("identifier="));
        let obs = entries.iter().find(|e| e["resource"]["resourceType"] == "Observation").unwrap();
        assert_eq!(obs["resource"]["subject"]["reference"], patient["fullUrl"]);
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
