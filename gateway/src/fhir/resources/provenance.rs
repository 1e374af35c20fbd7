//! One Provenance per message (IG `MSH[Provenance-Source]` + `EVN[Provenance]`, combined).
//!
//! - target: every resource converted so far.
//! - recorded: MSH-7 as an instant, else EVN-2. Both missing (or without a time of day) → no
//!   Provenance (recorded is required) and a warning.
//! - activity: MSH-9.2 trigger event in v2-0003 (the IG puts `message - MSG.1^MSG.2^MSG.3`
//!   in a display; we give the coded event).
//! - agent: type author, who = the sending facility MSH-4 (else the sending application
//!   MSH-3) as an Organization ([`datatypes::organization`]). Neither → no Provenance (agent
//!   is required) and a warning.
//! - occurredDateTime: EVN-6.

use serde_json::{json, Value};

use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Resource, Write};
use crate::fhir::time;

const V2_0003: &str = "http://terminology.hl7.org/CodeSystem/v2-0003";
const PARTICIPANT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/provenance-participant-type";

/// Adds the message's Provenance (key `Provenance/message`). Call once, after all other maps.
pub fn provenance(ctx: &mut Ctx) {
    let msg = ctx.msg;
    let targets: Vec<Value> =
        ctx.resources().iter().filter(|r| r.kind != "Provenance").map(|r| reference(&r.key)).collect();
    if targets.is_empty() {
        return;
    }
    let msh = msg.msh();
    let evn = msg.segment("EVN");
    let offset = ctx.report.message_offset;
    let as_instant = |v: &str| time::to_fhir_instant_in(v.trim(), offset, &ctx.site.zone).ok().flatten();
    let msh7 = msh.field(7).value();
    let evn2 = evn.map(|e| e.field(2).value().into_owned()).unwrap_or_default();
    let Some(recorded) = as_instant(&msh7).or_else(|| as_instant(&evn2)) else {
        ctx.warn_at(msh, 7, "no MSH-7/EVN-2 with a time of day: Provenance not created");
        return;
    };
    let org = datatypes::organization(msh.field(4).rep(1), ctx.site)
        .or_else(|| datatypes::organization(msh.field(3).rep(1), ctx.site));
    let Some(org) = org else {
        ctx.warn_at(msh, 4, "no MSH-4/MSH-3 sender: Provenance not created");
        return;
    };
    let org_key = ctx.add(org);
    let trigger = msh.field(9).component(2).value().trim().to_string();
    let activity = if trigger.is_empty() || trigger.contains(char::is_whitespace) {
        Value::Null
    } else {
        json!({"coding": [{"system": V2_0003, "code": trigger}]})
    };
    let occurred = evn.map(|e| datatypes::datetime(&e.field(6).value(), ctx.site, ctx.at(e, 6))).unwrap_or(Value::Null);
    let agent = json!({
        "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author", "display": "Author"}]},
        "who": reference(&org_key),
    });
    let body = Obj::new()
        .list("target", targets)
        .set("occurredDateTime", occurred)
        .set("recorded", recorded)
        .set("activity", activity)
        .list("agent", [agent]);
    ctx.add(Resource {
        kind: "Provenance",
        key: "Provenance/message".into(),
        identity: None,
        body,
        write: Write::Upsert,
    });
}
