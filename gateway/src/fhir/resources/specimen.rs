//! SPM (+ SAC) → Specimen (IG SPM\[Specimen\]).
//!
//! Choices:
//! - SPM-2/SPM-3 are EIP (two EIs as components, their parts as subcomponents), which
//!   `datatypes::ei_identifier` (a repetition-level EI) cannot read. The identifier system is
//!   taken from the site's `identifier_systems` by namespace (EI.2) or an ISO OID universal id
//!   (EI.3); otherwise the namespace becomes the assigner's display, as `ei_identifier` does.
//! - OBR\[Specimen\] (the IG's Specimen from OBR-15 etc. in ORU/OML) is not produced: SPM is the
//!   specimen segment of v2.5+ and the corpus senders use it.
//! - SAC (OML CONTAINER): container identifier SAC-3, capacity SAC-21/SAC-22 (v2.5 numbering).

use serde_json::Value;

use super::observation::{concept, datetime, no_rep, with_type};
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::coded_key;
use crate::hl7::parser::{Component, Segment};

fn looks_like_oid(s: &str) -> bool {
    s.contains('.') && s.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// One EI carried as subcomponents of a component (EIP.1 / EIP.2) → typed Identifier.
fn ei_component(ctx: &Ctx, c: Component, type_code: &str) -> Option<(Value, Option<Identity>)> {
    let s = |i: usize| c.sub(i).value().trim().to_string();
    let (value, ns, uid, uid_type) = (s(1), s(2), s(3), s(4));
    if value.is_empty() {
        return None;
    }
    let system = [ns.as_str(), uid.as_str()]
        .iter()
        .filter(|k| !k.is_empty())
        .find_map(|k| ctx.site.identifier_systems.get(*k).filter(|s| !s.is_empty()).cloned())
        .or_else(|| {
            (looks_like_oid(&uid) && (uid_type.is_empty() || uid_type.eq_ignore_ascii_case("ISO")))
                .then(|| format!("urn:oid:{uid}"))
        });
    let mut o = Obj::new().set("value", value.as_str()).set("system", system.clone());
    if system.is_none() && !ns.is_empty() {
        o.put("assigner", Obj::new().set("display", ns.as_str()));
    }
    let identity = system.map(|system| Identity { system, value });
    Some((with_type(o.value(), type_code), identity))
}

/// Maps SPM to a Specimen of `patient`, adds it and returns its key. Consumes the SPM.
///
/// identifier SPM-2 (EIP: placer PLAC, filler FILL; the identity is the filler id, else the
/// placer id, when its system is known); parent SPM-3 (by identifier); type SPM-4;
/// container additive SPM-6; collection method SPM-7, bodySite SPM-8, quantity SPM-12,
/// collectedDateTime SPM-17.1 (collectedPeriod when SPM-17.2 is valued); note SPM-14;
/// receivedTime SPM-18; status SPM-20 (Y available, N unavailable); condition SPM-24;
/// container type SPM-27; accessionIdentifier SPM-30. Key `Specimen/spm-<segment index>`.
pub fn specimen(ctx: &mut Ctx, spm: Segment, patient: Option<&str>) -> Option<String> {
    ctx.consume(spm.index());
    let site = ctx.site;
    let mut body = Obj::new();
    let eip = spm.field(2).rep(1);
    let placer = ei_component(ctx, eip.component(1), "PLAC");
    let filler = ei_component(ctx, eip.component(2), "FILL");
    // Key: the filler's specimen id, else the placer's, else the patient, the specimen type
    // (SPM-4) and the collection time (SPM-17).
    let identity = ctx.scoped_identity("Specimen", filler.as_ref().or(placer.as_ref())).or_else(|| {
        let what = format!("{}|{}", coded_key(spm.field(4).rep(1)), spm.field(17).value().trim());
        Identity::source_key("Specimen", &[&patient.map(|p| ctx.token_of(p)).unwrap_or_default(), &what])
    });
    body.push_all(
        "identifier",
        [placer.map(|p| p.0).unwrap_or(Value::Null), filler.map(|f| f.0).unwrap_or(Value::Null)],
    );
    let parents: Vec<Value> = spm
        .field(3)
        .reps()
        .filter_map(|r| ei_component(ctx, r.component(1), "PLAC").or_else(|| ei_component(ctx, r.component(2), "FILL")))
        .map(|(id, _)| Obj::new().set("identifier", id).value())
        .collect();
    body.push_all("parent", parents);
    body.put("type", concept(ctx, spm.field(4).rep(1)));
    body.put("subject", patient.map(reference));

    let collected = spm.field(17).rep(1);
    let start = datetime(ctx, spm, "17.1", &collected.component(1).value());
    let end = datetime(ctx, spm, "17.2", &collected.component(2).value());
    let amount = spm.field(12).rep(1);
    let quantity = datatypes::quantity(&amount.component(1).value(), no_rep(&spm), site, ctx.at(spm, "12.1"));
    let quantity = match (quantity, amount.component(2).sub(1).value().trim()) {
        (Value::Object(mut q), unit) if !unit.is_empty() => {
            q.insert("unit".into(), Value::String(unit.to_string()));
            Value::Object(q)
        }
        (q, _) => q,
    };
    let mut collection = Obj::new()
        .set("method", concept(ctx, spm.field(7).rep(1)))
        .set("bodySite", concept(ctx, spm.field(8).rep(1)))
        .set("quantity", quantity);
    if end.is_null() {
        collection.put("collectedDateTime", start);
    } else {
        collection.put("collectedPeriod", Obj::new().set("start", start).set("end", end));
    }
    body.put("collection", collection);
    body.put("receivedTime", datetime(ctx, spm, 18, &spm.field(18).value()));
    let note = super::observation::field_text(ctx, &spm, spm.field(14)).map(|t| Obj::new().set("text", t).value());
    body.push_all("note", note);
    body.put(
        "status",
        match spm.field(20).value().trim().to_ascii_uppercase().as_str() {
            "Y" => Some("available"),
            "N" => Some("unavailable"),
            _ => None,
        },
    );
    let conditions: Vec<Value> = spm.field(24).reps().map(|r| concept(ctx, r)).collect();
    body.push_all("condition", conditions);
    let container = Obj::new()
        .set("type", concept(ctx, spm.field(27).rep(1)))
        .set("additiveCodeableConcept", concept(ctx, spm.field(6).rep(1)));
    body.push_all("container", [container.value()]);
    if let Some((acc, _)) = datatypes::identifier(spm.field(30).rep(1), site) {
        body.put("accessionIdentifier", acc);
    }
    let key = format!("Specimen/spm-{}", spm.index());
    Some(ctx.add(Resource { kind: "Specimen", key, identity, body, write: Write::Upsert }))
}

/// SAC → a `container` of the Specimen `specimen` (identifier SAC-3, capacity SAC-21 with
/// units SAC-22). Consumes the SAC.
pub fn container(ctx: &mut Ctx, specimen: &str, sac: Segment) {
    ctx.consume(sac.index());
    let site = ctx.site;
    let id = datatypes::ei_identifier(sac.field(3).rep(1), site).map(|(v, _)| v);
    let capacity = datatypes::quantity(&sac.field(21).value(), sac.field(22).rep(1), site, ctx.at(sac, 21));
    let c = Obj::new().list("identifier", id).set("capacity", capacity);
    if c.is_empty() {
        return;
    }
    if let Some(r) = ctx.resource_mut(specimen) {
        r.body.push_all("container", [c.value()]);
    }
}
