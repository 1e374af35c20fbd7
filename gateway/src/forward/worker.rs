//! A delivery worker: opens a job's sealed bundles, leaves out what the server holds unchanged
//! and applies server ids (`ids`), sends them — several lanes' batch bundles packed into one
//! batch request — and judges the answer part by part. Of the database it touches only the id
//! map (`id_map`); the scheduler decides what the verdicts mean for the lanes.

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::client::{Response, SendError, Target};
use super::deliver::{self, Verdict};
use super::id_map::IdMap;
use super::ids::{self, RequestView, Rules, Selected};
use super::pack;
use crate::fhir::bundle::TxLimits;
use crate::metrics::{FailClass, Metrics};
use crate::store::{Doorbell, Keys};

/// A lane's oldest pending outbox row.
pub(super) use crate::store::delivery::Head;

/// One lane's head in a job, or a later row of the same lane riding along (a follower).
#[derive(Clone)]
pub(super) struct Part {
    pub(crate) lane: String,
    pub(crate) head: Head,
    pub(crate) sealed: Vec<u8>,
    /// Entries of a batch already settled by earlier attempts (not sent again).
    pub(crate) settled: Vec<usize>,
    /// A row after its lane's head, in the same job right behind it: sent only if every
    /// earlier part of its lane is, and only if it writes nothing they write differently.
    pub(crate) follower: bool,
}

/// One request: a single bundle, or several lanes' batch bundles packed together.
pub(super) struct Job {
    pub(crate) parts: Vec<Part>,
}

/// What became of one part; `verdict` is `None` when it was left out of its pack (it writes
/// a resource another part of the pack writes differently) and should simply go again.
pub(super) struct Sent {
    pub(crate) lane: String,
    pub(crate) head: Head,
    pub(crate) verdict: Option<Verdict>,
    pub(crate) follower: bool,
    /// Entries settled before this attempt.
    pub(crate) settled: Vec<usize>,
    /// Left out while its searches rode in the request (`lookup`): it goes again first.
    pub(crate) searched_ahead: bool,
}

/// What a worker tells the scheduler.
pub(super) enum Report {
    /// Lane heads that did not fit once what needs no writing was left out: back to the
    /// queue at once, before the request is sent.
    GivenBack(Vec<Part>),
    /// The answer to a job.
    Done(Done),
}

pub(super) struct Done {
    pub(crate) parts: Vec<Sent>,
    pub(crate) signals: Signals,
    pub(crate) fill: Fill,
}

/// How a job filled its request: the entries stored in the parts it took (packed, or
/// settled without sending) and the entries it sent; the scheduler sizes later jobs by it.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Fill {
    pub(crate) stored: usize,
    pub(crate) sent: usize,
}

/// What the answers said about the server as a whole, beyond the verdicts on the parts.
#[derive(Debug, Default)]
pub(super) struct Signals {
    /// `Sforce-Limit-Info` of the last answer.
    pub(crate) limit_info: Option<String>,
    /// The longest `Retry-After` of a 5xx answer: the server is unavailable to everyone.
    pub(crate) unavailable: Option<Duration>,
}

impl Signals {
    fn of(resp: &Response) -> Signals {
        Signals { limit_info: resp.limit_info.clone(), unavailable: deliver::unavailable_for(resp, SystemTime::now()) }
    }

    /// Adds a later answer's signals.
    fn and(self, later: Signals) -> Signals {
        Signals {
            limit_info: later.limit_info.or(self.limit_info),
            unavailable: self.unavailable.max(later.unavailable),
        }
    }
}

/// What a worker works with besides the job.
pub(super) struct Ctx<'a> {
    pub(crate) target: &'a dyn Target,
    pub(crate) keys: &'a Keys,
    pub(crate) metrics: &'a Metrics,
    pub(crate) ids: &'a IdMap,
    pub(crate) rules: &'a Rules,
    /// Most entries in one request, and the target's transaction limits.
    pub(crate) max_entries: usize,
    pub(crate) tx_limits: TxLimits,
}

/// Takes jobs until the channel closes; rings the bell after each report.
pub(super) fn run(jobs: &Mutex<Receiver<Job>>, reports: &Sender<Report>, ctx: &Ctx<'_>, bell: &Doorbell) {
    loop {
        let job = match jobs.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let mut give_back = |parts: Vec<Part>| {
            let _ = reports.send(Report::GivenBack(parts));
            bell.ring();
        };
        if reports.send(Report::Done(send_parts(job.parts, ctx, &mut give_back))).is_err() {
            return;
        }
        bell.ring();
    }
}

fn undecryptable() -> Verdict {
    Verdict::Dead { class: FailClass::Client, reason: "bundle does not decrypt under the key file".into() }
}

fn not_json() -> Verdict {
    Verdict::Dead { class: FailClass::Client, reason: "bundle is not JSON".into() }
}

/// A part opened and its entries selected (see `ids`).
pub(super) struct Opened {
    pub(super) batch: bool,
    pub(super) selected: Selected,
    /// The bundle's own fields besides `entry` (kept when it is sent alone).
    fields: serde_json::Map<String, Value>,
    /// Keys of the entries left out as unchanged: the server must still hold them as they
    /// are once this part is applied. (Not a create-if-absent left out: it would change
    /// nothing anyway.)
    pub(super) unchanged: Vec<String>,
}

impl Opened {
    /// Counts what was left out without sending (once, when the part's verdict is known).
    fn count_unsent(&self, metrics: &Metrics) {
        let s = &self.selected;
        metrics.forward_entries_unchanged.add(s.skipped.len() as u64 - s.dropped_unsupported);
        metrics.forward_entries_unsupported.add(s.dropped_unsupported + s.refused.len() as u64);
    }
}

fn open_part(part: &Part, ctx: &Ctx<'_>, now: i64) -> Result<Opened, Verdict> {
    let plain = ctx.keys.open(&part.sealed).map_err(|_| undecryptable())?;
    let bundle: Value = serde_json::from_slice(&plain).map_err(|_| not_json())?;
    let batch = deliver::bundle_type(&bundle) == "batch";
    let selected = ids::select(&bundle, &part.settled, ctx.rules, now, &|p| ctx.ids.known(p));
    let entries = bundle.get("entry").and_then(Value::as_array);
    let unchanged = selected
        .skipped
        .iter()
        .filter_map(|&n| entries?.get(n))
        .filter(|e| e.get("request").and_then(|r| r.get("ifNoneExist")).is_none())
        .filter_map(pack::entry_key)
        .collect();
    let mut fields = match bundle {
        Value::Object(map) => map,
        _ => return Err(not_json()),
    };
    fields.remove("entry");
    Ok(Opened { batch, selected, fields, unchanged })
}

/// Adds what was settled without sending to the verdict on what was sent. A transaction
/// settles all or nothing: its left-out entries count only once it succeeded, since a resend
/// computes again what to leave out (and how to name it).
pub(super) fn with_unsent(verdict: Verdict, selected: &Selected, batch: bool) -> Verdict {
    let add = |ok: &mut Vec<usize>, dead: &mut Vec<(usize, String)>| {
        ok.extend(&selected.skipped);
        ok.sort_unstable();
        dead.extend(selected.refused.iter().cloned());
        dead.sort();
    };
    match verdict {
        Verdict::Settled { mut ok, mut dead } => {
            add(&mut ok, &mut dead);
            Verdict::Settled { ok, dead }
        }
        Verdict::Retry { class, after, mut ok, mut dead } if batch => {
            add(&mut ok, &mut dead);
            Verdict::Retry { class, after, ok, dead }
        }
        other => other,
    }
}

/// Sends the parts' entries that need writing in one request — one bundle, or several lanes'
/// bundles packed together (`pack`) — and judges the answer part by part. The scheduler hands
/// over more parts than fit, sized by their stored entries: what no longer fits once
/// unchanged entries are left out goes to `give_back` before the request is sent.
fn send_parts(parts: Vec<Part>, ctx: &Ctx<'_>, give_back: &mut dyn FnMut(Vec<Part>)) -> Done {
    let now = crate::store::now_ms();
    let mut verdicts: Vec<Option<Verdict>> = vec![None; parts.len()];
    let mut opened: Vec<Option<Opened>> = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        match open_part(part, ctx, now) {
            Ok(o) => opened.push(Some(o)),
            Err(v) => {
                verdicts[i] = Some(v);
                opened.push(None);
            }
        }
    }
    let batch = opened.iter().flatten().all(|o| o.batch);
    let pack::Request {
        entries: request,
        packed,
        positions,
        stand_ins,
        claimed,
        given_back,
        mut searched_ahead,
        ahead,
    } = pack::build(&parts, &opened, &mut verdicts, batch, ctx);
    if packed.is_empty() {
        // No request carries their searches: they are simply left out.
        searched_ahead.clear();
    }
    if !given_back.is_empty() {
        give_back(given_back.iter().map(|&i| parts[i].clone()).collect());
    }
    let taken = (0..parts.len()).filter(|i| verdicts[*i].is_some() || packed.contains(i));
    let stored =
        taken.map(|i| parts[i].head.shape.map_or(0, |s| s.entries.saturating_sub(parts[i].settled.len()))).sum();
    let fill = Fill { stored, sent: request.len() };
    let mut signals = Signals::default();
    if !packed.is_empty() {
        let mut view = RequestView {
            in_request: request
                .iter()
                .filter_map(|(e, _)| e.get("fullUrl").and_then(Value::as_str).map(str::to_string))
                .collect(),
            ..RequestView::default()
        };
        for o in opened.iter().flatten() {
            view.outside_names.extend(o.selected.outside_names.iter().map(|(k, v)| (k.clone(), v.clone())));
            view.dropped.extend(o.selected.dropped.iter().cloned());
        }
        // Salesforce: a create is first searched on identifier (a lost id map); see `lookup`.
        let lookup = super::lookup::before_create(&request, ahead, ctx);
        let ctx = &lookup.ctx(ctx);
        let known = |p: &str| ctx.ids.known(p);
        let entries: Vec<Value> = request.iter().map(|(e, _)| ids::rewrite(e, ctx.rules, &view, &known)).collect();
        let kind = if batch { "batch" } else { "transaction" };
        let mut fields = match (packed.as_slice(), &opened[packed[0]]) {
            ([_], Some(o)) => o.fields.clone(),
            _ => serde_json::Map::new(),
        };
        fields.insert("resourceType".into(), "Bundle".into());
        fields.insert("type".into(), kind.into());
        fields.insert("entry".into(), Value::Array(entries.clone()));
        let body = serde_json::to_vec(&fields).expect("JSON values serialize");
        ctx.metrics.forward_entries_sent.add(entries.len() as u64);
        match send(ctx.target, &body, ctx.metrics) {
            Err(e) => {
                for &i in &packed {
                    verdicts[i] = Some(deliver::judge_error(&e));
                }
            }
            Ok(mut resp) => {
                signals = Signals::of(&resp);
                learn(&request, &entries, &mut resp, batch, ctx, now);
                let judged = if batch || packed.len() > 1 {
                    deliver::judge_pack(batch, &positions, &resp, SystemTime::now())
                } else {
                    let sent: Vec<usize> = positions[0].iter().map(|&(n, _)| n).collect();
                    Some(vec![deliver::judge(kind, &sent, &resp, SystemTime::now())])
                };
                match judged {
                    Some(judged) => {
                        for ((&i, verdict), stand_ins) in packed.iter().zip(judged).zip(&stand_ins) {
                            verdicts[i] = Some(deliver::not_refused(verdict, stand_ins));
                        }
                    }
                    // A batch refused as a whole: alone, each part gets its own verdict.
                    None if packed.len() == 1 => {
                        let sent: Vec<usize> = positions[0].iter().map(|&(n, _)| n).collect();
                        verdicts[packed[0]] = Some(deliver::judge("batch", &sent, &resp, SystemTime::now()));
                    }
                    None => {
                        // A follower goes only after every earlier part of its lane settled.
                        let mut unsettled: HashSet<String> = HashSet::new();
                        for &i in &packed {
                            if parts[i].follower && unsettled.contains(&parts[i].lane) {
                                continue;
                            }
                            let alone = send_parts(vec![parts[i].clone()], ctx, &mut |_| {});
                            signals = signals.and(alone.signals);
                            verdicts[i] = alone.parts.into_iter().next().and_then(|s| s.verdict);
                            if !verdicts[i].as_ref().is_some_and(Verdict::is_final) {
                                unsettled.insert(parts[i].lane.clone());
                            }
                        }
                        ctx.ids.release(&claimed);
                        let sent = Sending {
                            packed: &packed,
                            given_back: &given_back,
                            searched_ahead: &searched_ahead,
                            alone: true,
                            fill,
                        };
                        return finish(parts, verdicts, &opened, &sent, signals, ctx.metrics);
                    }
                }
            }
        }
    }
    ctx.ids.release(&claimed);
    let sent =
        Sending { packed: &packed, given_back: &given_back, searched_ahead: &searched_ahead, alone: false, fill };
    finish(parts, verdicts, &opened, &sent, signals, ctx.metrics)
}

/// Which parts went into the request, which were given back, and whether the packed ones
/// were sent again one by one (their verdicts then come from those sends).
struct Sending<'a> {
    packed: &'a [usize],
    given_back: &'a [usize],
    searched_ahead: &'a [usize],
    alone: bool,
    fill: Fill,
}

/// The parts with their verdicts (given-back parts are the scheduler's again); a packed
/// part's verdict gains what it settled unsent (unless it was sent alone, whose verdict has
/// it already).
fn finish(
    parts: Vec<Part>,
    mut verdicts: Vec<Option<Verdict>>,
    opened: &[Option<Opened>],
    sending: &Sending<'_>,
    signals: Signals,
    metrics: &Metrics,
) -> Done {
    for (i, o) in opened.iter().enumerate() {
        let Some(o) = o else { continue };
        let packed = sending.packed.contains(&i);
        if verdicts[i].is_none() || (packed && sending.alone) {
            continue;
        }
        if packed {
            verdicts[i] = verdicts[i].take().map(|v| with_unsent(v, &o.selected, o.batch));
        }
        o.count_unsent(metrics);
    }
    let parts = parts
        .into_iter()
        .zip(verdicts)
        .enumerate()
        .filter(|(i, _)| !sending.given_back.contains(i))
        .map(|(i, (p, verdict))| Sent {
            searched_ahead: sending.searched_ahead.contains(&i),
            lane: p.lane,
            head: p.head,
            verdict,
            follower: p.follower,
            settled: p.settled,
        })
        .collect();
    Done { parts, signals, fill: sending.fill }
}

/// Updates the id map from an answer, and turns a 404/410 to a `PUT` (the server lost the
/// resource; it is forgotten) into a retry of that entry, which then creates it again.
fn learn(request: &[(Value, [u8; 32])], sent: &[Value], resp: &mut Response, batch: bool, ctx: &Ctx<'_>, now: i64) {
    if !(200..=299).contains(&resp.status) {
        return;
    }
    let Ok(mut body) = serde_json::from_slice::<Value>(&resp.body) else { return };
    let answers_entries = body.get("entry").and_then(Value::as_array).cloned().unwrap_or_default();
    let answered: Vec<ids::Answered<'_>> = request
        .iter()
        .zip(sent)
        .enumerate()
        .map(|(pos, ((stored, content), sent))| {
            let response = answers_entries.get(pos).and_then(|e| e.get("response"));
            let status = if batch {
                response
                    .and_then(|r| r.get("status"))
                    .and_then(Value::as_str)
                    .and_then(|s| s.trim().get(..3)?.parse().ok())
            } else {
                Some(resp.status)
            };
            let put = sent.get("request").and_then(|r| r.get("method")).and_then(Value::as_str) == Some("PUT");
            ids::Answered {
                placeholder: stored.get("fullUrl").and_then(Value::as_str).filter(|u| u.starts_with("urn:uuid:")),
                kind: stored.get("resource").and_then(|r| r.get("resourceType")).and_then(Value::as_str).unwrap_or(""),
                content: *content,
                status: status.filter(|s| put || !matches!(s, 404 | 410)),
                location: response.and_then(|r| r.get("location")).and_then(Value::as_str),
            }
        })
        .collect();
    let lost: Vec<usize> =
        answered.iter().enumerate().filter(|(_, a)| matches!(a.status, Some(404 | 410))).map(|(p, _)| p).collect();
    let changes = ids::learn(&answered, now, &|p| ctx.ids.key(p));
    drop(answered);
    ctx.ids.apply(changes);
    if batch && !lost.is_empty() {
        if let Some(entries) = body.get_mut("entry").and_then(Value::as_array_mut) {
            for p in lost {
                if let Some(e) = entries.get_mut(p) {
                    e["response"] = serde_json::json!({"status": "424 Failed Dependency"});
                }
            }
        }
        resp.body = serde_json::to_vec(&body).expect("JSON values serialize");
    }
}

fn send(target: &dyn Target, body: &[u8], metrics: &Metrics) -> Result<Response, SendError> {
    metrics.forward_requests.add(1);
    let started = Instant::now();
    let result = target.send(body);
    metrics.forward_latency.observe(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        tracing::debug!(error = %e, "forwarder: request failed");
    }
    result
}
