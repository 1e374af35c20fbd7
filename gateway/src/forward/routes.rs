//! `[cloud.base_urls]`: resource types a Salesforce org serves under another base URL (one
//! version of the docs puts the Patient API on its own domain; modules have their own paths).
//!
//! [`Routes`] wraps the HTTP target. A batch whose entries all go to one base is sent there
//! unchanged. Otherwise its entries are split by base and sent in rounds: each round visits the
//! bases — configured ones first (ranked so referenced types such as Organization and Patient
//! go early), the default base last — and sends each one the entries that are ready, i.e.
//! whose `urn:uuid:` references name entries created already (renamed to the `Type/id` of
//! their `response.location`) or sent in the same request. So an Encounter on the default base
//! names the Patient the Patient API created a moment before. An entry whose dependency failed
//! gets a synthetic `424 Failed Dependency` without being sent, as does one still waiting when
//! a round makes no progress (a reference cycle between bases); the worker sends 424 entries
//! again. The per-base batch-responses are stitched into one, in the request's entry order,
//! so the worker judges and learns as for one server.
//! Transactions are never split (`base_urls` needs the salesforce profile).

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::client::{HttpTarget, Response, SendError, Target};

/// A target that also posts to other base URLs of the same org (same agent and credentials).
pub(crate) trait Bases: Target {
    fn send_to(&self, base: &str, bundle: &[u8]) -> Result<Response, SendError>;
}

impl Bases for HttpTarget {
    fn send_to(&self, base: &str, bundle: &[u8]) -> Result<Response, SendError> {
        HttpTarget::send_to(self, base, bundle)
    }
}

/// Types other resources usually reference, in the order their groups are sent (a group's
/// rank is its best type's); unlisted types come after them.
const REFERENCED_FIRST: [&str; 7] =
    ["Organization", "Location", "Practitioner", "Patient", "RelatedPerson", "PractitionerRole", "Encounter"];

/// The HTTP target with per-type base URLs.
pub(crate) struct Routes<T> {
    inner: T,
    /// Resource type → base URL.
    by_type: HashMap<String, String>,
}

impl<T: Bases> Routes<T> {
    pub(crate) fn new(inner: T, by_type: impl IntoIterator<Item = (String, String)>) -> Routes<T> {
        Routes { inner, by_type: by_type.into_iter().collect() }
    }

    /// The request's entries grouped by base (`None`: the default base), in sending order.
    fn groups(&self, entries: &[Value]) -> Vec<(Option<&str>, Vec<usize>)> {
        let mut groups: Vec<(Option<&str>, Vec<usize>)> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let base = self.by_type.get(entry_kind(entry)).map(String::as_str);
            match groups.iter_mut().find(|(b, _)| *b == base) {
                Some((_, members)) => members.push(i),
                None => groups.push((base, vec![i])),
            }
        }
        let rank = |(base, members): &(Option<&str>, Vec<usize>)| {
            let best = members
                .iter()
                .map(|&i| {
                    REFERENCED_FIRST
                        .iter()
                        .position(|t| *t == entry_kind(&entries[i]))
                        .unwrap_or(REFERENCED_FIRST.len())
                })
                .min();
            (base.is_none(), best, base.map(str::to_string))
        };
        groups.sort_by_key(rank);
        groups
    }

    fn send_group(&self, base: Option<&str>, body: &[u8]) -> Result<Response, SendError> {
        match base {
            Some(base) => self.inner.send_to(base, body),
            None => self.inner.send(body),
        }
    }

    /// Sends the groups in rounds and stitches their answers. Each round visits the groups in
    /// order and sends each one's entries that are ready: every placeholder they reference is
    /// created already, or by an entry sent with them. An entry whose dependency failed gets a
    /// 424 at once; one still waiting when no round makes progress (a cycle between bases)
    /// gets a 424 at the end.
    fn send_groups(
        &self,
        fields: &Map<String, Value>,
        entries: &[Value],
        groups: &[(Option<&str>, Vec<usize>)],
    ) -> Result<Response, SendError> {
        let mut group_of = vec![0; entries.len()];
        for (g, (_, members)) in groups.iter().enumerate() {
            members.iter().for_each(|&i| group_of[i] = g);
        }
        let created_by: HashMap<&str, usize> =
            entries.iter().enumerate().filter_map(|(i, e)| Some((placeholder(e)?, i))).collect();
        let mut answers: Vec<Option<Value>> = vec![None; entries.len()];
        let mut resolved: HashMap<String, String> = HashMap::new();
        let (mut applied, mut retry_after, mut limit_info) = (false, None, None);
        let mut progress = true;
        while progress {
            progress = false;
            for (g, (base, members)) in groups.iter().enumerate() {
                let plan = Plan { entries, group_of: &group_of, created_by: &created_by, resolved: &resolved };
                let (send, failed) = plan.ready(members, g, &answers);
                failed.iter().for_each(|&i| answers[i] = Some(failed_dependency()));
                progress |= !failed.is_empty() || !send.is_empty();
                if send.is_empty() {
                    continue;
                }
                let group: Vec<Value> = send.iter().map(|&i| with_resolved(&entries[i], &resolved)).collect();
                let result = self.send_group(*base, &batch_body(fields, group));
                let answered = match &result {
                    Ok(resp) => {
                        limit_info = resp.limit_info.clone().or(limit_info);
                        retry_after = resp.retry_after.clone().or(retry_after);
                        batch_answers(resp, send.len())
                    }
                    Err(_) => None,
                };
                match (answered, result) {
                    (Some(group_answers), _) => {
                        for (&i, answer) in send.iter().zip(group_answers) {
                            if let Some(id) = created_id(&entries[i], &answer) {
                                resolved.insert(placeholder(&entries[i]).unwrap_or_default().to_string(), id);
                            }
                            answers[i] = Some(answer);
                        }
                        applied = true;
                    }
                    // Nothing was written yet: the answer stands for the whole request.
                    (None, result) if !applied => return result,
                    (None, result) => {
                        let answer = failed_group(&result);
                        send.iter().for_each(|&i| answers[i] = Some(answer.clone()));
                    }
                }
            }
        }
        let entry: Vec<Value> = answers.into_iter().map(|a| a.unwrap_or_else(failed_dependency)).collect();
        let body = json!({"resourceType": "Bundle", "type": "batch-response", "entry": entry});
        Ok(Response {
            status: 200,
            retry_after,
            limit_info,
            body: serde_json::to_vec(&body).expect("JSON values serialize"),
        })
    }
}

/// What a round knows about the request.
struct Plan<'a> {
    entries: &'a [Value],
    group_of: &'a [usize],
    /// Placeholder → the entry that creates it.
    created_by: &'a HashMap<&'a str, usize>,
    /// Placeholder → `Type/id` created so far.
    resolved: &'a HashMap<String, String>,
}

impl Plan<'_> {
    /// Of group `g`'s unanswered members: those to send now (in request order), and those whose
    /// dependency failed (answered, not created; or failed itself).
    fn ready(&self, members: &[usize], g: usize, answers: &[Option<Value>]) -> (Vec<usize>, HashSet<usize>) {
        let mut ready: HashSet<usize> = members.iter().copied().filter(|&i| answers[i].is_none()).collect();
        let mut failed = HashSet::new();
        loop {
            let before = (ready.len(), failed.len());
            for &i in members {
                if !ready.contains(&i) {
                    continue;
                }
                let mut refs = Vec::new();
                placeholder_references(self.entries[i].get("resource").unwrap_or(&Value::Null), &mut refs);
                for r in refs {
                    let Some(&j) = self.created_by.get(r).filter(|&&j| j != i) else { continue };
                    let dead = failed.contains(&j) || (answers[j].is_some() && !self.resolved.contains_key(r));
                    let waits = answers[j].is_none() && !(self.group_of[j] == g && ready.contains(&j));
                    if dead || waits {
                        ready.remove(&i);
                        if dead {
                            failed.insert(i);
                        }
                        break;
                    }
                }
            }
            if (ready.len(), failed.len()) == before {
                let send = members.iter().copied().filter(|i| ready.contains(i)).collect();
                return (send, failed);
            }
        }
    }
}

impl<T: Bases> Target for Routes<T> {
    fn send(&self, bundle: &[u8]) -> Result<Response, SendError> {
        let Some((fields, entries)) = parse_batch(bundle) else { return self.inner.send(bundle) };
        let groups = self.groups(&entries);
        match groups.as_slice() {
            [] | [(None, _)] => self.inner.send(bundle),
            [(Some(base), _)] => self.inner.send_to(base, bundle),
            _ => self.send_groups(&fields, &entries, &groups),
        }
    }

    fn token_refreshes(&self) -> u64 {
        self.inner.token_refreshes()
    }

    fn max_reads(&self) -> usize {
        self.inner.max_reads()
    }
}

/// A batch Bundle's own fields and its entries; `None` for anything else (sent unchanged).
pub(super) fn parse_batch(bundle: &[u8]) -> Option<(Map<String, Value>, Vec<Value>)> {
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(bundle) else { return None };
    if fields.get("type").and_then(Value::as_str) != Some("batch") {
        return None;
    }
    match fields.remove("entry") {
        Some(Value::Array(entries)) => Some((fields, entries)),
        _ => None,
    }
}

/// A batch Bundle of `entries` with the request's other fields.
pub(super) fn batch_body(fields: &Map<String, Value>, entries: Vec<Value>) -> Vec<u8> {
    let mut body = fields.clone();
    body.insert("entry".into(), Value::Array(entries));
    serde_json::to_vec(&body).expect("JSON values serialize")
}

/// The `entry` answers of a 2xx batch-response with exactly `count` entries.
pub(super) fn batch_answers(resp: &Response, count: usize) -> Option<Vec<Value>> {
    if !(200..=299).contains(&resp.status) {
        return None;
    }
    let mut body: Value = serde_json::from_slice(&resp.body).ok()?;
    match body.get_mut("entry").map(Value::take) {
        Some(Value::Array(answers)) if answers.len() == count => Some(answers),
        _ => None,
    }
}

/// The resource type an entry writes or reads (`GET Patient?identifier=…` reads Patient).
fn entry_kind(entry: &Value) -> &str {
    if let Some(kind) = entry.get("resource").and_then(|r| r.get("resourceType")).and_then(Value::as_str) {
        return kind;
    }
    let url = entry.get("request").and_then(|r| r.get("url")).and_then(Value::as_str).unwrap_or("");
    url.split(['/', '?']).next().unwrap_or("")
}

fn placeholder(entry: &Value) -> Option<&str> {
    entry.get("fullUrl").and_then(Value::as_str).filter(|u| u.starts_with("urn:uuid:"))
}

/// Every `urn:uuid:` reference under `v`.
pub(super) fn placeholder_references<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match x {
                    Value::String(r) if k == "reference" && r.starts_with("urn:uuid:") => out.push(r),
                    _ => placeholder_references(x, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| placeholder_references(x, out)),
        _ => {}
    }
}

/// The entry with references to placeholders earlier groups created renamed to their ids.
pub(super) fn with_resolved(entry: &Value, resolved: &HashMap<String, String>) -> Value {
    fn walk(v: &mut Value, resolved: &HashMap<String, String>) {
        match v {
            Value::Object(map) => {
                for (k, x) in map.iter_mut() {
                    match x {
                        Value::String(r) if k == "reference" => {
                            if let Some(id) = resolved.get(r.as_str()) {
                                *r = id.clone();
                            }
                        }
                        _ => walk(x, resolved),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|x| walk(x, resolved)),
            _ => {}
        }
    }
    let mut out = entry.clone();
    if !resolved.is_empty() {
        if let Some(resource) = out.get_mut("resource") {
            walk(resource, resolved);
        }
    }
    out
}

/// `Type/id` of what a 2xx answer says the entry wrote.
fn created_id(entry: &Value, answer: &Value) -> Option<String> {
    let response = answer.get("response")?;
    let status = response.get("status")?.as_str()?;
    if !status.trim_start().starts_with('2') {
        return None;
    }
    placeholder(entry)?;
    super::ids::server_id(response.get("location")?.as_str()?, entry_kind(entry))
}

pub(super) fn entry_answer(status: &str, code: &str) -> Value {
    json!({"response": {"status": status, "outcome": {
        "resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code}]}}})
}

/// The synthetic answer of an entry whose dependency was not created (sent again later).
pub(super) fn failed_dependency() -> Value {
    entry_answer("424 Failed Dependency", "processing")
}

/// The answer each entry of a group gets when the group's request failed as a whole after an
/// earlier group was written (so the stitched answer still reports what that one created).
fn failed_group(result: &Result<Response, SendError>) -> Value {
    match result {
        Ok(resp) if (200..=299).contains(&resp.status) => entry_answer("502 Bad Gateway", "exception"),
        Ok(resp) => {
            let outcome: Option<Value> = serde_json::from_slice(&resp.body).ok();
            let outcome = outcome.filter(|o| o.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome"));
            let status = format!("{} Failed", resp.status);
            match outcome {
                Some(o) => json!({"response": {"status": status, "outcome": o}}),
                None => json!({"response": {"status": status}}),
            }
        }
        Err(SendError::Timeout) => entry_answer("504 Gateway Timeout", "timeout"),
        Err(SendError::Connect(_)) => entry_answer("502 Bad Gateway", "transient"),
        Err(SendError::Auth(_)) => entry_answer("401 Unauthorized", "login"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Answers every entry as the test server's salesforce mode would (creates get an id,
    /// `Type/s<n>`), records (base, entries), and can fail one base.
    #[derive(Default)]
    struct Fake {
        sent: Mutex<Vec<(String, Vec<Value>)>>,
        fail_base: Option<(String, Result<u16, SendError>)>,
    }

    impl Fake {
        fn answer(&self, base: &str, bundle: &[u8]) -> Result<Response, SendError> {
            let mut sent = self.sent.lock().unwrap();
            let n = sent.len();
            let Some((_, entries)) = parse_batch(bundle) else {
                sent.push((base.to_string(), vec![]));
                return Err(SendError::Connect("not a batch".into()));
            };
            sent.push((base.to_string(), entries.clone()));
            if let Some((b, outcome)) = &self.fail_base {
                if b == base {
                    let status = outcome.clone()?;
                    return Ok(Response { status, body: b"{}".to_vec(), ..Response::default() });
                }
            }
            let answers: Vec<Value> = entries
                .iter()
                .enumerate()
                .map(|(k, e)| {
                    let kind = entry_kind(e);
                    json!({"response": {"status": "201 Created", "location": format!("{kind}/s{n}{k}/_history/1")}})
                })
                .collect();
            let body = json!({"resourceType": "Bundle", "type": "batch-response", "entry": answers});
            Ok(Response {
                status: 200,
                limit_info: Some(format!("api-usage={n}/100")),
                body: serde_json::to_vec(&body).unwrap(),
                ..Response::default()
            })
        }
    }

    impl Target for Fake {
        fn send(&self, bundle: &[u8]) -> Result<Response, SendError> {
            self.answer("default", bundle)
        }
    }

    impl Bases for Fake {
        fn send_to(&self, base: &str, bundle: &[u8]) -> Result<Response, SendError> {
            self.answer(base, bundle)
        }
    }

    fn entry(p: &str, kind: &str, refs: &[&str]) -> Value {
        let refs: Vec<Value> = refs.iter().map(|r| json!({"reference": r})).collect();
        json!({"fullUrl": format!("urn:uuid:{p}"), "request": {"method": "POST", "url": kind},
               "resource": {"resourceType": kind, "ref": refs}})
    }

    fn batch(entries: &[Value]) -> Vec<u8> {
        serde_json::to_vec(&json!({"resourceType": "Bundle", "type": "batch", "entry": entries})).unwrap()
    }

    fn routes(fake: Fake) -> Routes<Fake> {
        Routes::new(fake, [("Patient".to_string(), "patient-api".to_string())])
    }

    fn statuses(resp: &Response) -> Vec<String> {
        let body: Value = serde_json::from_slice(&resp.body).unwrap();
        body["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["response"]["status"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn one_base_is_sent_unchanged_and_reads_go_where_their_type_lives() {
        let r = routes(Fake::default());
        let only_patient = batch(&[entry("p", "Patient", &[])]);
        r.send(&only_patient).unwrap();
        let search = json!({"request": {"method": "GET", "url": "Patient?identifier=s|v"}});
        r.send(&batch(&[search])).unwrap();
        r.send(&batch(&[entry("o", "Observation", &[])])).unwrap();
        let transaction = br#"{"resourceType":"Bundle","type":"transaction","entry":[]}"#;
        r.send(transaction).unwrap_err();
        let sent = r.inner.sent.lock().unwrap();
        let bases: Vec<&str> = sent.iter().map(|(b, _)| b.as_str()).collect();
        assert_eq!(bases, ["patient-api", "patient-api", "default", "default"], "a transaction is sent as is");
    }

    #[test]
    fn later_groups_name_what_earlier_groups_created_and_answers_keep_the_request_order() {
        let r = routes(Fake::default());
        let entries = [
            entry("e", "Encounter", &["urn:uuid:p", "urn:uuid:o"]),
            entry("p", "Patient", &["urn:uuid:o"]),
            entry("o", "Organization", &[]),
        ];
        let resp = r.send(&batch(&entries)).unwrap();
        let sent = r.inner.sent.lock().unwrap();
        // The Patient names an Organization the default base creates: the first round sends
        // only the Organization, the second the Patient (naming the Organization's new id)
        // and then the Encounter (naming the Patient's).
        let bases: Vec<&str> = sent.iter().map(|(b, _)| b.as_str()).collect();
        assert_eq!(bases, ["default", "patient-api", "default"]);
        assert_eq!(sent[0].1, [entries[2].clone()]);
        assert_eq!(sent[1].1[0]["resource"]["ref"][0]["reference"], "Organization/s00");
        assert_eq!(
            sent[2].1[0]["resource"]["ref"],
            json!([{"reference": "Patient/s10"}, {"reference": "Organization/s00"}])
        );
        assert_eq!(statuses(&resp), ["201 Created", "201 Created", "201 Created"]);
        drop(sent);

        // Once the Organization is known (the id map names it), the Patient goes first and the
        // Encounter names the Patient's new id.
        let r = routes(Fake::default());
        let entries =
            [entry("e", "Encounter", &["urn:uuid:p", "Organization/o1"]), entry("p", "Patient", &["Organization/o1"])];
        let resp = r.send(&batch(&entries)).unwrap();
        let sent = r.inner.sent.lock().unwrap();
        assert_eq!((sent[0].0.as_str(), sent[1].0.as_str()), ("patient-api", "default"));
        assert_eq!(sent[1].1[0]["resource"]["ref"][0]["reference"], "Patient/s00");
        assert_eq!(sent[1].1[0]["resource"]["ref"][1]["reference"], "Organization/o1");
        let body: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(body["type"], "batch-response");
        assert_eq!(body["entry"][0]["response"]["location"], "Encounter/s10/_history/1");
        assert_eq!(body["entry"][1]["response"]["location"], "Patient/s00/_history/1");
        assert_eq!(resp.limit_info.as_deref(), Some("api-usage=1/100"), "the last answer's usage");
    }

    #[test]
    fn a_reference_cycle_between_bases_is_answered_424_without_a_request() {
        let r = routes(Fake::default());
        let entries = [entry("p", "Patient", &["urn:uuid:o"]), entry("o", "Organization", &["urn:uuid:p"])];
        let resp = r.send(&batch(&entries)).unwrap();
        assert_eq!(statuses(&resp), ["424 Failed Dependency", "424 Failed Dependency"]);
        assert!(r.inner.sent.lock().unwrap().is_empty());
    }

    #[test]
    fn a_failed_group_is_the_answer_until_something_was_written_then_its_entries_fail_alone() {
        let entries =
            [entry("p", "Patient", &[]), entry("e", "Encounter", &["urn:uuid:p"]), entry("x", "Observation", &[])];
        // The first group refused as a whole: that answer stands for the request.
        let fake = Fake { fail_base: Some(("patient-api".into(), Ok(503))), ..Fake::default() };
        let r = routes(fake);
        assert_eq!(r.send(&batch(&entries)).unwrap().status, 503);
        assert_eq!(r.inner.sent.lock().unwrap().len(), 1, "nothing else was sent");
        let fake = Fake { fail_base: Some(("patient-api".into(), Err(SendError::Timeout))), ..Fake::default() };
        assert_eq!(routes(fake).send(&batch(&entries)).unwrap_err(), SendError::Timeout);

        // A later group failing: the earlier group's creates are still reported.
        let fake = Fake { fail_base: Some(("default".into(), Err(SendError::Timeout))), ..Fake::default() };
        let resp = routes(fake).send(&batch(&entries)).unwrap();
        assert_eq!(statuses(&resp), ["201 Created", "504 Gateway Timeout", "504 Gateway Timeout"]);
    }

    #[test]
    fn dependants_of_an_entry_that_was_not_created_are_held_back_too() {
        // The Patient group's answer has the Patient failing: the Encounter (default base),
        // and the Observation that names the Encounter, get 424 without being sent.
        struct Failing(Fake);
        impl Target for Failing {
            fn send(&self, bundle: &[u8]) -> Result<Response, SendError> {
                self.0.send(bundle)
            }
        }
        impl Bases for Failing {
            fn send_to(&self, _: &str, _: &[u8]) -> Result<Response, SendError> {
                let body = json!({"type": "batch-response", "entry": [{"response": {"status": "400 Bad Request"}}]});
                Ok(Response { status: 200, body: serde_json::to_vec(&body).unwrap(), ..Response::default() })
            }
        }
        let r = Routes::new(Failing(Fake::default()), [("Patient".to_string(), "patient-api".to_string())]);
        let entries = [
            entry("x", "Observation", &["urn:uuid:e"]),
            entry("p", "Patient", &[]),
            entry("e", "Encounter", &["urn:uuid:p"]),
            entry("y", "Observation", &[]),
        ];
        let resp = r.send(&batch(&entries)).unwrap();
        assert_eq!(
            statuses(&resp),
            ["424 Failed Dependency", "400 Bad Request", "424 Failed Dependency", "201 Created"]
        );
        let sent = r.inner.0.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1.len(), 1, "only the independent Observation went to the default base");
    }
}
