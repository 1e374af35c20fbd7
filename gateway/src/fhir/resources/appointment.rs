//! SCH (+ TQ1, NTE, AIS, AIG, AIL, AIP) → Appointment (IG SCH\[Appointment\], TQ\[Appointment\],
//! AIS/AIG/AIL/AIP\[Appointment\], NTE[Appointment-Comment]).
//!
//! Choices:
//! - status: the trigger decides for S15 (cancelled), S17 (deleted → entered-in-error) and S26
//!   (noshow); otherwise SCH-25 (FillerStatusCodes), else `booked` (S12 new, S13 reschedule,
//!   S14 modification, … all describe a booked appointment).
//! - start/end (instants): TQ1-7/TQ1-8, else SCH-11.4/SCH-11.5 (TQ\[Appointment\]), else the
//!   earliest AIS/AIL/AIP/AIG start and its start + duration; `end` = `start` +
//!   minutesDuration when only a start is known. Durations add to the wall-clock time.
//! - SCH-7 → reasonCode (IG; with CWE.3 `HL70277` → appointmentType instead) and its text →
//!   description; SCH-8 → appointmentType; SCH-6 (event reason) → cancelationReason when the
//!   appointment is cancelled or a no-show (R4 has no other place for it; the IG maps it
//!   nowhere).
//! - NTE (after SCH and after the resource segments) → `comment`, one line each (R4 has one
//!   string; the IG's Annotation extension is R5).
//! - participants: the patient(s), AIP-3 practitioners (type AIP-4), AIL-3 locations, AIG-3
//!   general resources as a logical reference (identifier CWE.1, display CWE.2; type AIG-4).
//!   Each with its period; status `accepted`, or `declined` when the resource's filler status
//!   (AIP-12, AIL-12, AIG-14) is cancelled. SCH-12/16/20 contacts are not mapped (the IG has
//!   no codes for them).

use serde_json::Value;

use super::observation::{concept, field_text, instant, location_ref, practitioner_ref, with_type};
use crate::fhir::codes;
use crate::fhir::ctx::Ctx;
use crate::fhir::datatypes;
use crate::fhir::json::Obj;
use crate::fhir::model::{reference, Resource, Write};
use crate::fhir::time::{self, V2Time};
use crate::hl7::parser::{Rep, Segment};

/// The RESOURCES segments of an SIU message, and every NTE to carry into `comment`.
#[derive(Default)]
pub struct Schedule<'m, 'a> {
    pub ais: Vec<Segment<'m, 'a>>,
    pub aig: Vec<Segment<'m, 'a>>,
    pub ail: Vec<Segment<'m, 'a>>,
    pub aip: Vec<Segment<'m, 'a>>,
    pub notes: Vec<Segment<'m, 'a>>,
}

/// Minutes in a duration of `amount` `units` (CWE.1; empty → minutes).
fn minutes(amount: &str, units: Rep) -> Option<i64> {
    let n: f64 = amount.trim().parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let factor = match units.component(1).value().trim().to_ascii_lowercase().as_str() {
        "" | "m" | "min" | "mins" | "minute" | "minutes" => 1.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 60.0,
        "d" | "day" | "days" => 1440.0,
        "s" | "sec" | "second" | "seconds" => 1.0 / 60.0,
        _ => return None,
    };
    Some((n * factor).round() as i64)
}

/// A v2 DTM plus `mins` minutes, as a v2 DTM (offset kept). `None` without a time of day.
fn plus_minutes(v2: &str, mins: i64) -> Option<String> {
    let V2Time::DateTime { at, offset_seconds, .. } = time::parse(v2).ok()? else { return None };
    // `try_minutes`: a duration from the message may be out of any span's range (it panicked).
    let at = at.checked_add(jiff::Span::new().try_minutes(mins).ok()?).ok()?;
    let mut out =
        format!("{:04}{:02}{:02}{:02}{:02}{:02}", at.year(), at.month(), at.day(), at.hour(), at.minute(), at.second());
    if let Some(o) = offset_seconds {
        let sign = if o < 0 { '-' } else { '+' };
        out.push_str(&format!("{sign}{:02}{:02}", o.abs() / 3600, (o.abs() % 3600) / 60));
    }
    Some(out)
}

/// A resource segment's period: start field, duration field and its units field.
fn period(seg: &Segment, start: usize, duration: usize, units: usize) -> (String, Option<String>) {
    let s = seg.field(start).value().trim().to_string();
    let end = minutes(&seg.field(duration).value(), seg.field(units).rep(1)).and_then(|m| plus_minutes(&s, m));
    (s, end)
}

/// Where a time was read: its segment and field (`6`, `11.4`). A period's end computed from its
/// start and a duration is located at the start.
type Read<'m, 'a> = (Segment<'m, 'a>, &'static str);

fn participant(
    ctx: &mut Ctx,
    actor: Value,
    ty: Value,
    period: (&str, Option<&str>, Read),
    filler_status: &str,
) -> Value {
    let (start, end, (seg, field)) = period;
    let start = instant(ctx, seg, field, start);
    let end = end.map(|e| instant(ctx, seg, field, e)).unwrap_or(Value::Null);
    let p = Obj::new().set("start", start).set("end", end);
    let status = if filler_status.trim().eq_ignore_ascii_case("cancelled") { "declined" } else { "accepted" };
    Obj::new().set("actor", actor).list("type", [ty]).set("period", p).set("status", status).value()
}

/// Maps SCH (with TQ1 and the RESOURCES segments) to an Appointment with the `patients` as
/// participants, adds it and returns its key. Consumes SCH, TQ1, RGS-less resource segments
/// and the NTEs. identifier SCH-1 (PLAC), SCH-2 (FILL) — the identity is the filler id, else
/// the placer id, when its system is known; minutesDuration SCH-9 (SCH-10 minutes);
/// serviceType AIS-3; basedOn SCH-26/SCH-27 (logical, by identifier). Key
/// `Appointment/sch-<segment index>`.
pub fn appointment(
    ctx: &mut Ctx,
    sch: Segment,
    tq1: Option<Segment>,
    res: &Schedule,
    patients: &[String],
) -> Option<String> {
    ctx.consume(sch.index());
    let trigger = ctx.msg.msh().field(9).component(2).value().trim().to_ascii_uppercase();
    let status = match trigger.as_str() {
        "S15" => "cancelled",
        "S17" => "entered-in-error",
        "S26" => "noshow",
        _ => codes::appointment_status(&sch.field(25).value()).unwrap_or("booked"),
    };
    let placer = super::observation::ei_typed(ctx, sch.field(1).rep(1), "PLAC");
    let filler = super::observation::ei_typed(ctx, sch.field(2).rep(1), "FILL");
    // Key: the filler appointment id (SCH-2), else the placer's (SCH-1).
    let identity = ctx.scoped_identity("Appointment", filler.as_ref().or(placer.as_ref()));
    let mut body = Obj::new().set("status", status);
    body.push_all(
        "identifier",
        [placer.map(|p| p.0).unwrap_or(Value::Null), filler.map(|f| f.0).unwrap_or(Value::Null)],
    );

    if matches!(status, "cancelled" | "noshow") {
        body.put("cancelationReason", concept(ctx, sch.field(6).rep(1)));
    }
    let reason = sch.field(7).rep(1);
    let reason_cc = concept(ctx, reason);
    if reason.component(3).value().trim().eq_ignore_ascii_case("HL70277") {
        body.put("appointmentType", reason_cc);
    } else {
        body.push_all("reasonCode", [reason_cc]);
        let text = [reason.component(9).value(), reason.component(2).value()]
            .into_iter()
            .map(|t| t.trim().to_string())
            .find(|t| !t.is_empty());
        body.put("description", text);
    }
    if body.get("appointmentType").is_none() {
        body.put("appointmentType", concept(ctx, sch.field(8).rep(1)));
    }
    let duration = minutes(&sch.field(9).value(), sch.field(10).rep(1)).filter(|m| *m > 0);
    body.put("minutesDuration", duration);
    let service_types: Vec<Value> = res.ais.iter().map(|a| concept(ctx, a.field(3).rep(1))).collect();
    body.push_all("serviceType", service_types);

    // Participants (and the earliest resource period as a fallback for start/end).
    let mut participants = Vec::new();
    for p in patients {
        participants.push(Obj::new().set("actor", reference(p)).set("status", "accepted").value());
    }
    let mut periods: Vec<(String, Option<String>, Read)> = Vec::new();
    for ais in &res.ais {
        ctx.consume(ais.index());
        let (start, end) = period(ais, 4, 7, 8);
        periods.push((start, end, (*ais, "4")));
    }
    for aip in &res.aip {
        ctx.consume(aip.index());
        let (start, end) = period(aip, 6, 9, 10);
        let ty = concept(ctx, aip.field(4).rep(1));
        for xcn in aip.field(3).reps() {
            if let Some(k) = practitioner_ref(ctx, xcn) {
                let period = (start.as_str(), end.as_deref(), (*aip, "6"));
                let v = participant(ctx, reference(&k), ty.clone(), period, &aip.field(12).value());
                participants.push(v);
            }
        }
        periods.push((start, end, (*aip, "6")));
    }
    for ail in &res.ail {
        ctx.consume(ail.index());
        let (start, end) = period(ail, 6, 9, 10);
        if let Some(k) = location_ref(ctx, ail.field(3).rep(1)) {
            let period = (start.as_str(), end.as_deref(), (*ail, "6"));
            let v = participant(ctx, reference(&k), Value::Null, period, &ail.field(12).value());
            participants.push(v);
        }
        periods.push((start, end, (*ail, "6")));
    }
    for aig in &res.aig {
        ctx.consume(aig.index());
        let (start, end) = period(aig, 8, 11, 12);
        let id = aig.field(3).rep(1);
        let actor = Obj::new()
            .set("identifier", Obj::new().set("value", id.component(1).value().trim()))
            .set("display", id.component(2).value().trim());
        let ty = concept(ctx, aig.field(4).rep(1));
        let period = (start.as_str(), end.as_deref(), (*aig, "8"));
        let v = participant(ctx, actor.value(), ty, period, &aig.field(14).value());
        participants.push(v);
        periods.push((start, end, (*aig, "8")));
    }
    body.push_all("participant", participants);

    let tq = sch.field(11).rep(1);
    let (mut start, mut end) = (tq.component(4).value().trim().to_string(), tq.component(5).value().trim().to_string());
    let (mut start_at, mut end_at): (Read, Read) = ((sch, "11.4"), (sch, "11.5"));
    if let Some(tq1) = tq1 {
        ctx.consume(tq1.index());
        let (s, e) = (tq1.field(7).value().trim().to_string(), tq1.field(8).value().trim().to_string());
        if !s.is_empty() {
            (start, end) = (s, e);
            (start_at, end_at) = ((tq1, "7"), (tq1, "8"));
        }
    }
    if start.is_empty() {
        if let Some((s, e, at)) = periods.iter().filter(|(s, _, _)| time::has_time(s)).min_by_key(|(s, _, _)| s.clone())
        {
            start = s.clone();
            end = e.clone().unwrap_or_default();
            (start_at, end_at) = (*at, *at);
        }
    }
    if end.is_empty() {
        if let Some(m) = duration {
            end = plus_minutes(&start, m).unwrap_or_default();
            end_at = start_at;
        }
    }
    body.put("start", instant(ctx, start_at.0, start_at.1, &start));
    body.put("end", instant(ctx, end_at.0, end_at.1, &end));

    let site = ctx.site;
    let based_on: Vec<Value> = [(26, "PLAC"), (27, "FILL")]
        .into_iter()
        .filter_map(|(n, ty)| datatypes::ei_identifier(sch.field(n).rep(1), site).map(|(id, _)| with_type(id, ty)))
        .map(|id| Obj::new().set("type", "ServiceRequest").set("identifier", id).value())
        .collect();
    body.push_all("basedOn", based_on);

    let mut lines = Vec::new();
    for nte in &res.notes {
        ctx.consume(nte.index());
        lines.extend(field_text(ctx, nte, nte.field(3)));
    }
    body.put("comment", lines.join("\n"));
    let key = format!("Appointment/sch-{}", sch.index());
    Some(ctx.add(Resource { kind: "Appointment", key, identity, body, write: Write::Upsert }))
}
