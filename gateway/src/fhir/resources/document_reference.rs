//! TXA + OBX (+ NTE) → DocumentReference (IG TXA\[DocumentReference\], OBX\[DocumentReference\],
//! NTE\[DocumentReference\]).
//!
//! Choices:
//! - content: ED OBX-5 → one content per repetition (the ED's attachment). Every other type
//!   (TX, FT, ST, …) → the OBX-5 texts of all OBX joined with line feeds into one content,
//!   `text/plain` with the UTF-8 text base64-encoded. The IG's `application/text` (TX) and
//!   `text/hl7v2` (FT) are not used: the text is already unescaped (FT formatting resolved),
//!   so it is plain text. NTE-3 → one more `text/plain` content (IG NTE\[DocumentReference\]).
//! - status: TXA-19 (availability; see `codes::document_availability`), else `current`.
//! - date (an instant): TXA-6 origination when it has a time, else TXA-4 activity time.
//! - author: TXA-9 originator and TXA-5 primary activity provider (XCN → Practitioner);
//!   authenticator: TXA-10, else TXA-22.
//! - TXA-12 → masterIdentifier and identifier (the identity when its system is known);
//!   TXA-16 file name → identifier.
//! - relatesTo: MDM T09/T10 (replacement) and T07/T08 (edit) → `replaces`, T05/T06
//!   (addendum) → `appends`, target the parent document TXA-13 as a logical reference (by
//!   identifier).
//! - Notifications (MDM_T01: T01, T03, T05, T07, T09, T11) carry no content, which R4
//!   requires: the content is one attachment titled with TXA-16 (file name), else TXA-2's
//!   text, else "document notification". They only create the DocumentReference when the
//!   server has none (a notification must not replace content an MDM_T02 sent), except T11
//!   (cancel), which is written as `entered-in-error` (FHIR: the document should not have
//!   existed) and so replaces it, content included.

use serde_json::Value;

use super::observation::{concept, field_text, instant, no_rep, practitioner_ref};
use crate::fhir::codes;
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Identity, Resource, Write};
use crate::fhir::resources::patient::coded_key;
use crate::hl7::parser::Segment;

fn text_content(text: &str) -> Value {
    Obj::new()
        .set(
            "attachment",
            Obj::new().set("contentType", "text/plain").set("data", datatypes::base64_encode(text.as_bytes())),
        )
        .value()
}

/// Maps TXA with its OBX (and their NTEs) to a DocumentReference, adds it and returns its key.
/// `related` is the ServiceRequest of the MDM COMMON_ORDER (`context.related`). Consumes TXA,
/// OBX and NTE. Key `DocumentReference/txa-<segment index>`. `None` (nothing consumed) when the
/// document has no content (R4 requires one).
pub fn document_reference(
    ctx: &mut Ctx,
    txa: Segment,
    obx: &[Segment],
    notes: &[Segment],
    patient: Option<&str>,
    encounter: Option<&str>,
    related: Option<&str>,
) -> Option<String> {
    let site = ctx.site;
    let mut content = Vec::new();
    let mut lines = Vec::new();
    for o in obx {
        let ty = o.field(2).value().trim().to_ascii_uppercase();
        if ty == "ED" {
            content.extend(
                o.field(5)
                    .reps()
                    .map(datatypes::attachment)
                    .filter(|v| !v.is_null())
                    .map(|a| Obj::new().set("attachment", a).value()),
            );
        } else {
            let v = datatypes::observation_value(&ty, o.field(5), no_rep(o), site, ctx.at(*o, 5));
            for (_, value) in v {
                match value {
                    Value::String(s) => lines.push(s),
                    other => lines.push(other.to_string()),
                }
            }
        }
    }
    if !lines.is_empty() {
        content.insert(0, text_content(&lines.join("\n")));
    }
    for nte in notes {
        ctx.consume(nte.index());
        if let Some(t) = field_text(ctx, nte, nte.field(3)) {
            content.push(text_content(&t));
        }
    }
    let trigger = ctx.msg.msh().field(9).component(2).value().trim().to_ascii_uppercase();
    let notification = matches!(trigger.as_str(), "T01" | "T03" | "T05" | "T07" | "T09" | "T11");
    if content.is_empty() && notification {
        content.push(notification_content(txa));
    }
    if content.is_empty() {
        ctx.warn_at(txa, 3, "TXA without document content (OBX-5, NTE-3): no DocumentReference");
        return None;
    }
    ctx.consume(txa.index());
    for o in obx {
        ctx.consume(o.index());
    }

    let status = if trigger == "T11" {
        "entered-in-error"
    } else {
        codes::document_availability(&txa.field(19).value()).unwrap_or("current")
    };
    let mut body = Obj::new().set("status", status).set("docStatus", codes::document_status(&txa.field(17).value()));
    // Key: the unique document number (TXA-12), else the patient, the document type (TXA-2)
    // and the activity time (TXA-4).
    let number = datatypes::ei_identifier(txa.field(12).rep(1), site);
    let identity = ctx.scoped_identity("DocumentReference", number.as_ref()).or_else(|| {
        let what = format!("{}|{}", coded_key(txa.field(2).rep(1)), txa.field(4).value().trim());
        Identity::source_key("DocumentReference", &[&patient.map(|p| ctx.token_of(p)).unwrap_or_default(), &what])
    });
    if let Some((id, _)) = number {
        body.put("masterIdentifier", id.clone());
        body.push_all("identifier", [id]);
    }
    let file = txa.field(16).value().trim().to_string();
    body.push_all("identifier", [Obj::new().set("value", file).value()]);
    body.put("type", concept(ctx, txa.field(2).rep(1)));
    body.put("subject", patient.map(reference));
    let origination = txa.field(6).value().trim().to_string();
    let (date, field) = if crate::fhir::time::has_time(&origination) {
        (origination, 6)
    } else {
        (txa.field(4).value().trim().to_string(), 4)
    };
    body.put("date", instant(ctx, txa, field, &date));
    let mut authors: Vec<Value> = Vec::new();
    for xcn in txa.field(9).reps().chain(txa.field(5).reps()) {
        if let Some(k) = practitioner_ref(ctx, xcn) {
            let r = reference(&k);
            if !authors.contains(&r) {
                authors.push(r);
            }
        }
    }
    body.push_all("author", authors);
    let authenticator =
        practitioner_ref(ctx, txa.field(10).rep(1)).or_else(|| practitioner_ref(ctx, txa.field(22).rep(1)));
    body.put("authenticator", authenticator.map(|k| reference(&k)));
    body.put("description", txa.field(25).value().trim());

    let relation = match trigger.as_str() {
        "T07" | "T08" | "T09" | "T10" => Some("replaces"),
        "T05" | "T06" => Some("appends"),
        _ => None,
    };
    if let (Some(code), Some((parent, _))) = (relation, datatypes::ei_identifier(txa.field(13).rep(1), site)) {
        body.push_all(
            "relatesTo",
            [Obj::new().set("code", code).set("target", Obj::new().set("identifier", parent)).value()],
        );
    }
    body.push_all("content", content);
    let context = Obj::new().list("encounter", encounter.map(reference)).list("related", related.map(reference));
    body.put("context", context);
    let key = format!("DocumentReference/txa-{}", txa.index());
    let write = if notification && trigger != "T11" { Write::CreateIfAbsent } else { Write::Upsert };
    Some(ctx.add(Resource { kind: "DocumentReference", key, identity, body, write }))
}

/// The content of a notification without the document: an attachment with a title only.
fn notification_content(txa: Segment) -> Value {
    let file = txa.field(16).value().trim().to_string();
    let kind = txa.field(2).rep(1);
    let kind = [kind.component(2).value(), kind.component(9).value()]
        .into_iter()
        .map(|t| t.trim().to_string())
        .find(|t| !t.is_empty());
    let title = [Some(file).filter(|f| !f.is_empty()), kind].into_iter().flatten().next();
    let title = title.unwrap_or_else(|| "document notification".to_string());
    Obj::new().set("attachment", Obj::new().set("title", title)).value()
}
