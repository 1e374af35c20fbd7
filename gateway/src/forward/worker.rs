//! A delivery worker: opens a job's sealed bundles, sends them — several lanes' batch bundles
//! packed into one batch request — and judges the answer part by part. It never touches the
//! database; the scheduler decides what the verdicts mean for the lanes.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde_json::value::RawValue;
use serde_json::Value;

use super::client::{Response, SendError, Target};
use super::deliver::{self, Verdict};
use crate::metrics::{FailClass, Metrics};
use crate::store::{Doorbell, Keys};

/// A lane's oldest pending outbox row.
pub(super) use crate::store::delivery::Head;

/// One lane's head in a job.
pub(super) struct Part {
    pub(crate) lane: String,
    pub(crate) head: Head,
    pub(crate) sealed: Vec<u8>,
    /// Entries of a batch already settled by earlier attempts (not sent again).
    pub(crate) settled: Vec<usize>,
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
}

pub(super) struct Done {
    pub(crate) parts: Vec<Sent>,
    pub(crate) signals: Signals,
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

/// Takes jobs until the channel closes; rings the bell after each result.
pub(super) fn run(
    jobs: &Mutex<Receiver<Job>>,
    done: &Sender<Done>,
    target: &dyn Target,
    keys: &Keys,
    metrics: &Metrics,
    bell: &Doorbell,
) {
    loop {
        let job = match jobs.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let result = match job.parts.len() {
            1 => {
                let part = job.parts.into_iter().next().expect("one part");
                let (verdict, signals) = send_alone(&part, target, keys, metrics);
                Done { parts: vec![Sent { lane: part.lane, head: part.head, verdict: Some(verdict) }], signals }
            }
            _ => send_packed(job.parts, target, keys, metrics),
        };
        if done.send(result).is_err() {
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

/// Sends one bundle (the entries not yet settled) on its own.
fn send_alone(part: &Part, target: &dyn Target, keys: &Keys, metrics: &Metrics) -> (Verdict, Signals) {
    let Ok(plain) = keys.open(&part.sealed) else { return (undecryptable(), Signals::default()) };
    // The common case needs no parsing: the stored shape says what is sent.
    let (kind, body, sent) = match part.head.shape {
        Some(shape) if part.settled.is_empty() => {
            (if shape.batch { "batch" } else { "transaction" }, plain, (0..shape.entries).collect())
        }
        _ => {
            let Ok(bundle) = serde_json::from_slice::<Value>(&plain) else { return (not_json(), Signals::default()) };
            let kind = if deliver::bundle_type(&bundle) == "batch" { "batch" } else { "transaction" };
            let (sub, sent) = deliver::remaining(&bundle, &part.settled);
            (kind, serde_json::to_vec(&sub).expect("JSON values serialize"), sent)
        }
    };
    match send(target, &body, metrics) {
        Ok(resp) => (deliver::judge(kind, &sent, &resp, SystemTime::now()), Signals::of(&resp)),
        Err(e) => (deliver::judge_error(&e), Signals::default()),
    }
}

/// The entries of a sealed bundle, unparsed: each entry's JSON text and its `request.url`.
#[derive(serde::Deserialize)]
struct RawBundle<'a> {
    #[serde(borrow, default)]
    entry: Vec<&'a RawValue>,
}

#[derive(serde::Deserialize)]
struct EntryRequest<'a> {
    #[serde(borrow)]
    request: Option<RequestUrl<'a>>,
}

#[derive(serde::Deserialize)]
struct RequestUrl<'a> {
    #[serde(borrow)]
    url: Option<std::borrow::Cow<'a, str>>,
}

fn entry_url(entry: &RawValue) -> Option<String> {
    serde_json::from_str::<EntryRequest>(entry.get()).ok()?.request?.url.map(|u| u.into_owned())
}

/// Packs the parts' unsettled entries into one batch request, splicing the entries' JSON
/// text (no tree is built). An entry two parts carry identically (a shared Practitioner, say)
/// is sent once; a part that writes a resource differently from an earlier part waits for the
/// next request, since a batch's entries may be applied in any order.
fn send_packed(parts: Vec<Part>, target: &dyn Target, keys: &Keys, metrics: &Metrics) -> Done {
    let mut verdicts: Vec<Option<Verdict>> = vec![None; parts.len()];
    let opened: Vec<Option<Vec<u8>>> = parts.iter().map(|p| keys.open(&p.sealed).ok()).collect();
    let mut body = br#"{"resourceType":"Bundle","type":"batch","entry":["#.to_vec();
    let mut entries = 0usize;
    // Request position and text of each entry with a URL, by URL.
    let mut by_url: HashMap<String, (usize, &str)> = HashMap::new();
    // The packed parts (indexes in `parts`) and, per packed part, (entry index in its bundle,
    // request position) of each entry it sent.
    let mut packed: Vec<usize> = Vec::new();
    let mut positions: Vec<Vec<(usize, usize)>> = Vec::new();
    for (i, (part, plain)) in parts.iter().zip(&opened).enumerate() {
        let Some(plain) = plain else {
            verdicts[i] = Some(undecryptable());
            continue;
        };
        let Ok(bundle) = serde_json::from_slice::<RawBundle>(plain) else {
            verdicts[i] = Some(not_json());
            continue;
        };
        let own: Vec<(usize, &str, Option<String>)> = bundle
            .entry
            .iter()
            .enumerate()
            .filter(|(n, _)| !part.settled.contains(n))
            .map(|(n, e)| (n, e.get(), entry_url(e)))
            .collect();
        let conflicts = own
            .iter()
            .any(|(_, text, url)| url.as_ref().and_then(|u| by_url.get(u)).is_some_and(|(_, seen)| seen != text));
        if conflicts {
            continue;
        }
        let mut sent = Vec::with_capacity(own.len());
        for (n, text, url) in own {
            if let Some(&(pos, _)) = url.as_ref().and_then(|u| by_url.get(u)) {
                sent.push((n, pos));
                continue;
            }
            if entries > 0 {
                body.push(b',');
            }
            body.extend_from_slice(text.as_bytes());
            if let Some(url) = url {
                by_url.insert(url, (entries, text));
            }
            sent.push((n, entries));
            entries += 1;
        }
        packed.push(i);
        positions.push(sent);
    }
    body.extend_from_slice(b"]}");
    let mut signals = Signals::default();
    if !packed.is_empty() {
        match send(target, &body, metrics) {
            Err(e) => {
                for i in &packed {
                    verdicts[*i] = Some(deliver::judge_error(&e));
                }
            }
            Ok(resp) => {
                signals = Signals::of(&resp);
                match deliver::judge_pack(&positions, &resp, SystemTime::now()) {
                    Some(judged) => {
                        for (i, verdict) in packed.iter().zip(judged) {
                            verdicts[*i] = Some(verdict);
                        }
                    }
                    // Refused as a whole: find the culprit by sending each part alone.
                    None => {
                        for i in &packed {
                            let (verdict, alone) = send_alone(&parts[*i], target, keys, metrics);
                            verdicts[*i] = Some(verdict);
                            signals = signals.and(alone);
                        }
                    }
                }
            }
        }
    }
    let parts =
        parts.into_iter().zip(verdicts).map(|(p, verdict)| Sent { lane: p.lane, head: p.head, verdict }).collect();
    Done { parts, signals }
}

fn send(target: &dyn Target, body: &[u8], metrics: &Metrics) -> Result<Response, SendError> {
    let started = Instant::now();
    let result = target.send(body);
    metrics.forward_latency.observe(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        tracing::debug!(error = %e, "forwarder: request failed");
    }
    result
}
