//! PID (+ PD1) → Patient.

use crate::fhir::convert::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::Resource;
use crate::hl7::parser::Segment;

/// Maps PID (and PD1) to a Patient, adds it and returns its key. Consumes the segments.
pub fn patient(ctx: &mut Ctx, pid: Segment, pd1: Option<Segment>) -> String {
    ctx.consume(pid.index());
    if let Some(pd1) = pd1 {
        ctx.consume(pd1.index());
    }
    let mut body = Obj::new();
    let mut identity = None;
    for cx in pid.field(3).reps() {
        if let Some((id, ident)) = datatypes::identifier(cx, ctx.site) {
            body.push_all("identifier", [id]);
            identity = identity.or(ident);
        }
    }
    body.push_all("name", pid.field(5).reps().map(datatypes::human_name));
    let key = format!("Patient/pid-{}", pid.index());
    ctx.add(Resource { kind: "Patient", key, identity, body })
}
