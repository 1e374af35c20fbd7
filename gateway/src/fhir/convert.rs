//! One HL7 v2 message → the FHIR resources it describes, plus a report of what was not
//! mapped. Dispatches on the message structure; each structure's walk over its segment groups
//! lives in `fhir::messages`, each segment's map in `fhir::resources`.

use crate::hl7::parser::{self, Message};
use crate::hl7::structure::{self, Grouped, Structure};
use crate::hl7::Hl7Error;

use super::messages;
use super::model::{Identity, Report, Resource};
use super::site::SiteMaps;

/// The result of converting one message.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub resources: Vec<Resource>,
    pub report: Report,
    /// MSH-3|MSH-4 and MSH-10: with the resource key, the seed of ids for resources that
    /// have no business identifier.
    pub sender: String,
    pub control_id: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ConvertError {
    #[error("message cannot be read: {0}")]
    Parse(#[from] Hl7Error),
}

/// Conversion state shared by the maps of one message.
pub struct Ctx<'m, 'a> {
    pub msg: &'m Message<'a>,
    pub site: &'m SiteMaps,
    pub report: Report,
    resources: Vec<Resource>,
    consumed: Vec<bool>,
}

impl<'m, 'a> Ctx<'m, 'a> {
    pub fn new(msg: &'m Message<'a>, site: &'m SiteMaps) -> Self {
        Ctx { msg, site, report: Report::default(), resources: Vec::new(), consumed: vec![false; msg.segment_count()] }
    }

    /// Marks a segment as mapped (so it is not reported as unconsumed).
    pub fn consume(&mut self, segment_index: usize) {
        if let Some(c) = self.consumed.get_mut(segment_index) {
            *c = true;
        }
    }

    /// Adds a resource and returns its key. A resource of the same kind and business
    /// identifier, or with the same key (keys are derived from content, e.g. the same location
    /// in PV1-3 and PV1-6), already added is not added twice: the first one's key is returned.
    pub fn add(&mut self, resource: Resource) -> String {
        if let Some(id) = &resource.identity {
            if let Some(existing) = self.find(resource.kind, id) {
                return existing.key.clone();
            }
        }
        if self.resources.iter().any(|r| r.key == resource.key) {
            return resource.key;
        }
        let key = resource.key.clone();
        self.resources.push(resource);
        key
    }

    pub fn find(&self, kind: &str, identity: &Identity) -> Option<&Resource> {
        self.resources.iter().find(|r| r.kind == kind && r.identity.as_ref() == Some(identity))
    }

    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// Mutable access to an added resource by key (maps that enrich an earlier resource,
    /// e.g. NK1 adding `Patient.contact`).
    pub fn resource_mut(&mut self, key: &str) -> Option<&mut Resource> {
        self.resources.iter_mut().find(|r| r.key == key)
    }

    fn finish(mut self, grouped: &Grouped) -> (Vec<Resource>, Report) {
        let msg = self.msg;
        for (i, seg) in msg.segments().enumerate() {
            let id = seg.id();
            if !self.consumed[i] {
                self.report.unconsumed.push(format!("{i}:{id}"));
            }
        }
        self.report.structure = grouped.structure.id().to_string();
        (self.resources, self.report)
    }
}

/// Z-segments the site maps (`[mapping.z_segments]`) become extensions on the message's
/// first Patient: `{url: <site url>, extension: [{url: "ZPD-2", valueString: "…"}, …]}`.
fn map_z_segments(ctx: &mut Ctx) {
    if ctx.site.z_segments.is_empty() {
        return;
    }
    let Some(patient) = ctx.resources.iter().position(|r| r.kind == "Patient") else { return };
    let msg = ctx.msg;
    for seg in msg.segments() {
        let Some(url) = ctx.site.z_segments.get(seg.id()) else { continue };
        let fields: Vec<serde_json::Value> = (1..=seg.field_count())
            .filter_map(|n| {
                let value = seg.field(n).value();
                (!value.trim().is_empty()).then(|| serde_json::json!({ "url": format!("{}-{n}", seg.id()), "valueString": value }))
            })
            .collect();
        if fields.is_empty() {
            continue;
        }
        let ext = super::json::Obj::new().set("url", url.as_str()).list("extension", fields);
        ctx.resources[patient].body.push_all("extension", [ext.value()]);
        ctx.consume(seg.index());
    }
}

/// Converts one message with the site's maps.
pub fn convert(raw: &[u8], site: &SiteMaps) -> Result<Conversion, ConvertError> {
    let msg = parser::parse(raw)?;
    let grouped = structure::group(&msg)?;
    let msh = msg.msh();
    let sender = format!("{}|{}", msh.field(3).value(), msh.field(4).value());
    let control_id = msh.field(10).value().into_owned();
    let mut ctx = Ctx::new(&msg, site);
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
    // Who sent what, when: one Provenance over everything this message produced.
    super::resources::provenance::provenance(&mut ctx);
    let (resources, report) = ctx.finish(&grouped);
    Ok(Conversion { resources, report, sender, control_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_mapped_z_segments_become_patient_extensions_and_others_are_reported() {
        let raw = b"MSH|^~\\&|EPIC|H|GW|C|20260101120000-0500||ADT^A08^ADT_A01|Z1|P|2.5.1\rEVN|A08|20260101120000-0500\rPID|1||M1^^^H^MR||DOE^JO\rPV1|1|O\rZPD|1|Y|MYCHART_ACTIVE\rZXX|1|other\r";
        let mut site = SiteMaps::empty(jiff::tz::TimeZone::UTC);
        site.z_segments.insert("ZPD".into(), "http://example.org/fhir/StructureDefinition/zpd".into());
        let c = convert(raw, &site).unwrap();
        let patient = c.resources.iter().find(|r| r.kind == "Patient").unwrap().body.clone().value();
        let ext = patient["extension"].as_array().unwrap().iter().find(|e| e["url"] == "http://example.org/fhir/StructureDefinition/zpd").unwrap();
        assert_eq!(ext["extension"][1], serde_json::json!({"url": "ZPD-2", "valueString": "Y"}));
        assert_eq!(ext["extension"][2], serde_json::json!({"url": "ZPD-3", "valueString": "MYCHART_ACTIVE"}));
        assert!(c.report.unconsumed.iter().any(|u| u.ends_with(":ZXX")), "{:?}", c.report);
        assert!(!c.report.unconsumed.iter().any(|u| u.ends_with(":ZPD")), "{:?}", c.report);
    }
}
