//! What an answer means for one outbox row: delivered, retry (and why), dead letter, or an
//! authentication failure; for a batch, entry by entry. Pure functions over the response,
//! so they are tested without a network.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::client::{Response, SendError};
use super::retry;

use crate::metrics::FailClass;

/// The forwarder's reading of a class (the class itself is a metrics label).
impl FailClass {
    /// Does this class count against the circuit breaker (the endpoint looks dead)?
    pub(crate) fn trips_breaker(self) -> bool {
        matches!(self, FailClass::Server | FailClass::Timeout | FailClass::Connect)
    }
}

/// The verdict on one attempt at one outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every entry sent is settled: `dead` lists the entries refused (with PHI-free reasons),
    /// the others are stored at the destination.
    Settled { ok: Vec<usize>, dead: Vec<(usize, String)> },
    /// Try the row again later; `ok`/`dead` are entries of a batch settled this time (not sent
    /// again), `after` a server-requested delay.
    Retry { class: FailClass, after: Option<Duration>, ok: Vec<usize>, dead: Vec<(usize, String)> },
    /// The whole bundle was refused.
    Dead { class: FailClass, reason: String },
    /// Credentials refused even after a refresh: wait and try again slowly.
    AuthFailed,
}

impl Verdict {
    /// Nothing of the row is left to send.
    pub(crate) fn is_final(&self) -> bool {
        matches!(self, Verdict::Settled { .. } | Verdict::Dead { .. })
    }
}

/// The FHIR Bundle type of a sealed bundle's JSON: `batch` or `transaction`.
pub(crate) fn bundle_type(bundle: &Value) -> &str {
    bundle.get("type").and_then(Value::as_str).unwrap_or("transaction")
}

/// The `issue[].code` values of an OperationOutcome: tokens only (letters and `-`), never
/// `diagnostics` or `details` text, which may quote patient data.
pub(crate) fn issue_codes(outcome: Option<&Value>) -> Vec<String> {
    let Some(issues) = outcome.and_then(|o| o.get("issue")).and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut codes: Vec<String> = issues
        .iter()
        .filter_map(|i| i.get("code").and_then(Value::as_str))
        .filter(|c| !c.is_empty() && c.len() <= 32 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
        .map(str::to_string)
        .collect();
    codes.dedup();
    codes.truncate(8);
    codes
}

fn reason(status: u16, codes: &[String]) -> String {
    if codes.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}; issue codes: {}", codes.join(","))
    }
}

/// The status code at the start of an entry's `response.status` ("201 Created").
fn entry_status(entry: &Value) -> Option<u16> {
    let s = entry.get("response")?.get("status")?.as_str()?;
    s.trim().get(..3)?.parse().ok()
}

/// What a status means when it is not a success.
fn class_of(status: u16) -> Option<FailClass> {
    match status {
        200..=299 => None,
        401 | 403 => Some(FailClass::Auth),
        429 => Some(FailClass::Throttled),
        408 => Some(FailClass::Timeout),
        400..=499 => Some(FailClass::Client),
        _ => Some(FailClass::Server),
    }
}

/// Judges a transport failure.
pub(crate) fn judge_error(e: &SendError) -> Verdict {
    match e {
        SendError::Timeout => Verdict::Retry { class: FailClass::Timeout, after: None, ok: vec![], dead: vec![] },
        SendError::Connect(_) => Verdict::Retry { class: FailClass::Connect, after: None, ok: vec![], dead: vec![] },
        SendError::Auth(_) => Verdict::AuthFailed,
    }
}

/// Judges an answer to a bundle whose entries are `sent` (original indexes, in the order
/// they were in the request).
pub(crate) fn judge(kind: &str, sent: &[usize], resp: &Response, now: SystemTime) -> Verdict {
    let after = resp.retry_after.as_deref().and_then(|v| retry::retry_after(v, now));
    if let Some(verdict) = judge_status(resp, after) {
        return verdict;
    }
    // 2xx. A transaction succeeded as a whole (the server commits all or nothing).
    if kind != "batch" {
        return Verdict::Settled { ok: sent.to_vec(), dead: vec![] };
    }
    match response_entries(resp) {
        Some(entries) => judge_entries(sent, &entries, after),
        // A 2xx without a readable batch-response: nothing is known per entry. Send again.
        None => Verdict::Retry { class: FailClass::Server, after, ok: vec![], dead: vec![] },
    }
}

/// Judges the answer to several bundles packed into one request (a batch, or a transaction
/// of several lanes' transactions). `parts[i]` lists, for part `i`, each entry it sent as
/// (index in its own bundle, position in the request); parts may share a position (the same
/// entry, sent once). `None` when the request was refused as a whole (a 4xx): which part is
/// at fault is unknown, so each must be sent alone.
pub(crate) fn judge_pack(
    batch: bool,
    parts: &[Vec<(usize, usize)>],
    resp: &Response,
    now: SystemTime,
) -> Option<Vec<Verdict>> {
    let after = resp.retry_after.as_deref().and_then(|v| retry::retry_after(v, now));
    match judge_status(resp, after) {
        Some(Verdict::Dead { .. }) => return None,
        Some(verdict) => return Some(vec![verdict; parts.len()]),
        None => {}
    }
    if !batch {
        // The transaction committed as a whole.
        let settled =
            |part: &Vec<(usize, usize)>| Verdict::Settled { ok: part.iter().map(|&(i, _)| i).collect(), dead: vec![] };
        return Some(parts.iter().map(settled).collect());
    }
    let entries = response_entries(resp);
    let verdicts = parts
        .iter()
        .map(|part| match &entries {
            Some(entries) => {
                let sent: Vec<usize> = part.iter().map(|&(index, _)| index).collect();
                let answers: Vec<Value> =
                    part.iter().map(|&(_, pos)| entries.get(pos).cloned().unwrap_or_default()).collect();
                judge_entries(&sent, &answers, after)
            }
            None => Verdict::Retry { class: FailClass::Server, after, ok: vec![], dead: vec![] },
        })
        .collect();
    Some(verdicts)
}

/// A part's verdict once its entries `stand_ins` (another part's entry went in their place, see
/// `pack`) are not counted as refused: the refusal is the other part's; this part sends its
/// own entries again.
pub(crate) fn not_refused(verdict: Verdict, stand_ins: &[usize]) -> Verdict {
    let theirs = |dead: Vec<(usize, String)>| dead.into_iter().filter(|(n, _)| !stand_ins.contains(n)).collect();
    match verdict {
        Verdict::Settled { ok, dead } if dead.iter().any(|(n, _)| stand_ins.contains(n)) => {
            Verdict::Retry { class: FailClass::Server, after: None, ok, dead: theirs(dead) }
        }
        Verdict::Retry { class, after, ok, dead } => Verdict::Retry { class, after, ok, dead: theirs(dead) },
        verdict => verdict,
    }
}

/// The verdict a status alone decides; `None` for a 2xx, whose body tells more.
fn judge_status(resp: &Response, after: Option<Duration>) -> Option<Verdict> {
    match class_of(resp.status)? {
        FailClass::Auth => Some(Verdict::AuthFailed),
        FailClass::Client => {
            let body: Option<Value> = serde_json::from_slice(&resp.body).ok();
            let outcome =
                body.as_ref().filter(|b| b.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome"));
            Some(Verdict::Dead { class: FailClass::Client, reason: reason(resp.status, &issue_codes(outcome)) })
        }
        FailClass::Server if resp.status == 503 && after.is_some() => {
            Some(Verdict::Retry { class: FailClass::Throttled, after, ok: vec![], dead: vec![] })
        }
        class => Some(Verdict::Retry { class, after, ok: vec![], dead: vec![] }),
    }
}

/// A 5xx answer's `Retry-After`: the server says it is unavailable to every client for that
/// long (a 429 speaks only of the request it refused).
pub(crate) fn unavailable_for(resp: &Response, now: SystemTime) -> Option<Duration> {
    if !(500..=599).contains(&resp.status) {
        return None;
    }
    resp.retry_after.as_deref().and_then(|v| retry::retry_after(v, now))
}

/// The `entry` array of a batch-response body.
fn response_entries(resp: &Response) -> Option<Vec<Value>> {
    let mut body: Value = serde_json::from_slice(&resp.body).ok()?;
    match body.get_mut("entry")?.take() {
        Value::Array(entries) => Some(entries),
        _ => None,
    }
}

/// Settles the entries `sent` (original indexes) by their answers, in the same order.
fn judge_entries(sent: &[usize], answers: &[Value], after: Option<Duration>) -> Verdict {
    let (mut ok, mut dead) = (Vec::new(), Vec::new());
    let mut retry: Option<FailClass> = None;
    for (pos, &index) in sent.iter().enumerate() {
        let entry = answers.get(pos);
        match entry.and_then(entry_status).map(class_of) {
            Some(None) => ok.push(index),
            Some(Some(FailClass::Client)) if entry.and_then(entry_status) != Some(424) => {
                let outcome = entry.and_then(|e| e.get("response")).and_then(|r| r.get("outcome"));
                let status = entry.and_then(entry_status).unwrap_or(400);
                dead.push((index, format!("entry {index}: {}", reason(status, &issue_codes(outcome)))));
            }
            // 424 Failed Dependency (a sibling failed), 429, 5xx, auth, missing: send again.
            Some(Some(FailClass::Client)) => retry = retry.or(Some(FailClass::Server)),
            Some(Some(class)) => retry = Some(worse(retry, class)),
            None => retry = retry.or(Some(FailClass::Server)),
        }
    }
    match retry {
        Some(class) => Verdict::Retry { class, after, ok, dead },
        None => Verdict::Settled { ok, dead },
    }
}

/// Auth and throttling take precedence over plain server errors when entries differ.
fn worse(current: Option<FailClass>, new: FailClass) -> FailClass {
    match (current, new) {
        (Some(FailClass::Auth), _) | (_, FailClass::Auth) => FailClass::Auth,
        (Some(FailClass::Throttled), _) | (_, FailClass::Throttled) => FailClass::Throttled,
        _ => new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resp(status: u16, body: Value) -> Response {
        Response { status, body: serde_json::to_vec(&body).unwrap(), ..Response::default() }
    }

    #[test]
    fn batch_response_settles_entries_one_by_one() {
        let body = json!({"resourceType": "Bundle", "type": "batch-response", "entry": [
            {"response": {"status": "201 Created"}},
            {"response": {"status": "424 Failed Dependency"}},
            {"response": {"status": "200 OK"}},
            {"response": {"status": "422 Unprocessable Entity", "outcome": {"resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "invalid", "diagnostics": "Patient DOE^JOHN birthDate bad"}]}}},
        ]});
        let v = judge("batch", &[0, 1, 2, 3], &resp(200, body), SystemTime::now());
        let Verdict::Retry { class, ok, dead, .. } = v else { panic!("{v:?}") };
        assert_eq!(class, FailClass::Server);
        assert_eq!(ok, [0, 2], "the 424 sibling does not cost the others");
        assert_eq!(dead, [(3, "entry 3: HTTP 422; issue codes: invalid".to_string())]);
        assert!(!dead[0].1.contains("DOE"));
        // The retry sends only entry 1, and its answer maps back to the original index.
        let kept = [1];
        let body = json!({"type": "batch-response", "entry": [{"response": {"status": "200"}}]});
        assert_eq!(
            judge("batch", &kept, &resp(200, body), SystemTime::now()),
            Verdict::Settled { ok: vec![1], dead: vec![] }
        );
    }

    #[test]
    fn a_packed_batch_is_settled_part_by_part() {
        // Part 0 sent entries 0 and 1 (of its bundle), part 1 entry 2 (0 and 1 settled before).
        let parts = [vec![(0, 0), (1, 1)], vec![(2, 2)]];
        let body = json!({"type": "batch-response", "entry": [
            {"response": {"status": "200 OK"}}, {"response": {"status": "201 Created"}},
            {"response": {"status": "503 Service Unavailable"}}]});
        let v = judge_pack(true, &parts, &resp(200, body), SystemTime::now()).unwrap();
        assert_eq!(v[0], Verdict::Settled { ok: vec![0, 1], dead: vec![] });
        assert!(matches!(&v[1], Verdict::Retry { class: FailClass::Server, ok, .. } if ok.is_empty()), "{v:?}");
        // A short answer leaves the parts it does not cover unsettled.
        let body = json!({"type": "batch-response", "entry": [{"response": {"status": "200 OK"}}]});
        let v = judge_pack(true, &parts, &resp(200, body), SystemTime::now()).unwrap();
        assert!(matches!(&v[0], Verdict::Retry { ok, .. } if *ok == [0]), "{v:?}");
        assert!(matches!(&v[1], Verdict::Retry { ok, .. } if ok.is_empty()), "{v:?}");
        // An entry both parts carry (sent once) settles for both.
        let shared = [vec![(0, 0), (1, 1)], vec![(0, 1)]];
        let body = json!({"type": "batch-response", "entry": [
            {"response": {"status": "200 OK"}}, {"response": {"status": "200 OK"}}]});
        let v = judge_pack(true, &shared, &resp(200, body), SystemTime::now()).unwrap();
        assert_eq!(v[1], Verdict::Settled { ok: vec![0], dead: vec![] });
        // The same failure for everyone; a refusal of the whole request blames no one.
        let v = judge_pack(true, &parts, &resp(500, json!({})), SystemTime::now()).unwrap();
        assert!(v.iter().all(|v| matches!(v, Verdict::Retry { class: FailClass::Server, .. })));
        assert_eq!(judge_pack(true, &parts, &resp(400, json!({})), SystemTime::now()), None);
        assert_eq!(
            judge_pack(true, &parts, &resp(401, json!({})), SystemTime::now()).unwrap(),
            [Verdict::AuthFailed, Verdict::AuthFailed]
        );
        // Several lanes' transactions in one: committed as a whole, or refused as a whole.
        let body = json!({"type": "transaction-response", "entry": []});
        let v = judge_pack(false, &parts, &resp(200, body), SystemTime::now()).unwrap();
        assert_eq!(
            v,
            [Verdict::Settled { ok: vec![0, 1], dead: vec![] }, Verdict::Settled { ok: vec![2], dead: vec![] }]
        );
        assert_eq!(judge_pack(false, &parts, &resp(422, json!({})), SystemTime::now()), None);
    }

    #[test]
    fn transaction_fails_or_succeeds_whole() {
        let v = judge("transaction", &[0, 1], &resp(200, json!({"type": "transaction-response"})), SystemTime::now());
        assert_eq!(v, Verdict::Settled { ok: vec![0, 1], dead: vec![] });
        let oo = json!({"resourceType": "OperationOutcome", "issue": [
            {"code": "required", "diagnostics": "MRN 12345 missing"}, {"code": "processing", "details": {"text": "Smith"}},
            {"code": "Not A Code <script>"}]});
        let v = judge("transaction", &[0, 1], &resp(400, oo), SystemTime::now());
        assert_eq!(
            v,
            Verdict::Dead { class: FailClass::Client, reason: "HTTP 400; issue codes: required,processing".into() }
        );
        for s in [404, 409, 412, 422] {
            assert!(
                matches!(judge("transaction", &[0], &resp(s, json!("x")), SystemTime::now()), Verdict::Dead { .. }),
                "{s}"
            );
        }
        assert_eq!(judge("transaction", &[0], &resp(401, json!({})), SystemTime::now()), Verdict::AuthFailed);
        assert_eq!(judge("transaction", &[0], &resp(403, json!({})), SystemTime::now()), Verdict::AuthFailed);
    }

    #[test]
    fn throttling_and_server_errors_retry() {
        let mut r = resp(429, json!({}));
        r.retry_after = Some("7".into());
        let v = judge("transaction", &[0], &r, SystemTime::now());
        assert_eq!(
            v,
            Verdict::Retry {
                class: FailClass::Throttled,
                after: Some(Duration::from_secs(7)),
                ok: vec![],
                dead: vec![]
            }
        );
        r.status = 503;
        assert!(matches!(
            judge("transaction", &[0], &r, SystemTime::now()),
            Verdict::Retry { class: FailClass::Throttled, .. }
        ));
        r.retry_after = None;
        assert!(matches!(
            judge("transaction", &[0], &r, SystemTime::now()),
            Verdict::Retry { class: FailClass::Server, after: None, .. }
        ));
        r.status = 500;
        r.retry_after = Some("garbage".into());
        assert!(matches!(
            judge("transaction", &[0], &r, SystemTime::now()),
            Verdict::Retry { class: FailClass::Server, after: None, .. }
        ));
        assert!(matches!(judge_error(&SendError::Timeout), Verdict::Retry { class: FailClass::Timeout, .. }));
        assert!(matches!(
            judge_error(&SendError::Connect("x".into())),
            Verdict::Retry { class: FailClass::Connect, .. }
        ));
        // Only a 5xx's Retry-After speaks for the whole server; a 429's for its request.
        let now = SystemTime::now();
        let mut r = resp(503, json!({}));
        r.retry_after = Some("9".into());
        assert_eq!(unavailable_for(&r, now), Some(Duration::from_secs(9)));
        r.status = 429;
        assert_eq!(unavailable_for(&r, now), None);
        r.status = 500;
        r.retry_after = None;
        assert_eq!(unavailable_for(&r, now), None);
        // A 2xx batch answer without entries is not proof of delivery.
        assert!(matches!(judge("batch", &[0], &resp(200, json!({})), SystemTime::now()), Verdict::Retry { .. }));
    }
}
