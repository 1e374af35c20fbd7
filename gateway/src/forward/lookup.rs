//! Lookup before create (salesforce): a lost id map is rebuilt by a search on identifier.
//!
//! Before a request would create a resource — a `POST`, because the id map names no server id
//! for its placeholder — that carries a business identifier (`identifier` with system and
//! value), the server is asked `GET Type?identifier=system|value`, all such searches of the
//! request packed into batches of at most `[cloud] salesforce_max_reads` entries (the
//! documented read limit of a batch is 10), as few as they fit in; `pack` gives a request only
//! the creates one batch covers. A Patient's own records (its Encounters, its next of kin)
//! created with it are searched in a second round, and only when the server holds the Patient:
//! a new patient costs one search. Then:
//!
//! - one match: its id goes into the id map, so `ids::rewrite` writes `PUT Type/<id>` — the
//!   journal or its id map was lost, the server record is updated rather than duplicated. A
//!   create-only entry (`ifNoneExist`: the message only refers to the resource, e.g. the
//!   Patient of a lab result) is not sent at all: it is answered `200 OK` with the found id,
//!   and the request's references to it name that id, so the server record stays as is;
//! - no match: the entry creates the resource as before (the negative answer is kept only for
//!   this send);
//! - several matches: the gateway does not guess. The entry, and the entries of the request
//!   that reference it, are answered without being sent by a synthetic
//!   `412 Precondition Failed` with issue code `multiple-matches` (what FHIR's conditional
//!   create answers), which the worker turns into a dead letter naming only that code; an
//!   operator merges the duplicates on the server and replays the dead letter.
//! - a failed search (no answer, an error, or not a searchset): nothing of the request is sent;
//!   it gets the search's answer (a 503 if only that search failed) and is retried like any
//!   failed request — a create sent without its search's answer could duplicate a record.
//!
//! A search costs a round trip before the writes that wait for it, so a request that writes
//! parts needing none carries the searches of parts that do (*searches ahead*, chosen by
//! `pack`, at most one batch's reads): those parts wait for a later request, a match goes
//! into the id map and "none found" is noted for a while (`IdMap::note_searched`), so when they
//! are sent nothing is searched again. Only a request whose every part needs a search makes
//! its searches first.
//!
//! Searches are counted in `gateway_forward_lookups_total{result}` and their requests in
//! `gateway_forward_requests_total`, which the daily API budget counts.
//! Only the Administration types are searched: the records later messages update.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::client::{Response, SendError, Target};
use super::id_map::{IdMap, Searched};
use super::routes;
use super::worker::Ctx;
use crate::fhir::bundle::Profile;
use crate::metrics::{LookupResult, Metrics};
use crate::store::ids::{Change, Known};

/// Types searched before a create, in the order their searches are sent: the Salesforce
/// Administration module, the records messages update.
const SEARCHED: [&str; 7] =
    ["Patient", "Encounter", "Practitioner", "Organization", "Location", "RelatedPerson", "PractitionerRole"];

/// The lookup's outcome for one send: a target that answers the refused entries itself.
pub(super) struct Lookup<'a> {
    guard: Refusing<'a>,
}

impl Lookup<'_> {
    /// The worker's context with the target that answers refused entries without sending them.
    pub(super) fn ctx<'s>(&'s self, ctx: &Ctx<'s>) -> Ctx<'s> {
        Ctx { target: &self.guard, ..*ctx }
    }

    #[cfg(test)]
    fn refused(&self) -> Vec<&str> {
        let mut r: Vec<&str> = self.guard.refused.iter().map(String::as_str).collect();
        r.sort_unstable();
        r
    }
}

/// Searches what the request would create (see the module doc), learns single matches into
/// the id map and returns the refusals. A Patient's own records (its Encounters, its next of
/// kin) are searched only after their Patient, when the request creates it too, and only if
/// the server holds it: a Patient the server does not hold has none of them (the gateway
/// writes them after, or with, their Patient), so a new patient costs one search.
///
/// `ahead` are the searches of parts that wait for a later request (see `pack`): they ride in
/// this request's batch, and their answers are kept for those parts.
pub(super) fn before_create<'a>(request: &[(Value, [u8; 32])], ahead: Searches, ctx: &Ctx<'a>) -> Lookup<'a> {
    let mut lookup = Lookup {
        guard: Refusing {
            inner: ctx.target,
            refused: HashSet::new(),
            present: HashMap::new(),
            failed: None,
            ahead: Mutex::new(ahead.wanted),
            ids: ctx.ids,
            metrics: ctx.metrics,
        },
    };
    let (wanted, create_only) = searches_for(request, ctx);
    let patients: HashSet<String> =
        wanted.iter().filter(|s| s.kind() == "Patient").flat_map(|s| s.placeholders.clone()).collect();
    let (after_patient, first): (Vec<Search>, Vec<Search>) =
        wanted.into_iter().partition(|s| s.patient.as_deref().is_some_and(|p| patients.contains(p)));
    let absent = search(first, &create_only, ctx, &mut lookup);
    if lookup.guard.failed.is_some() {
        return lookup;
    }
    let second: Vec<Search> =
        after_patient.into_iter().filter(|s| !s.patient.as_ref().is_some_and(|p| absent.contains(p))).collect();
    search(second, &create_only, ctx, &mut lookup);
    lookup
}

/// Sends `wanted` in as few batches as the read limit allows and applies the answers; returns
/// the placeholders the server holds nothing for.
fn search(
    mut wanted: Vec<Search>,
    create_only: &HashSet<&str>,
    ctx: &Ctx<'_>,
    lookup: &mut Lookup<'_>,
) -> HashSet<String> {
    let mut absent = HashSet::new();
    if wanted.is_empty() {
        return absent;
    }
    wanted.sort_by_key(|s| s.rank);
    let mut answers: Vec<Option<Value>> = Vec::with_capacity(wanted.len());
    for chunk in wanted.chunks(ctx.target.max_reads()) {
        let searches: Vec<Value> = chunk.iter().map(Search::batch_entry).collect();
        let body = json!({"resourceType": "Bundle", "type": "batch", "entry": searches});
        ctx.metrics.forward_requests.add(1);
        let answer = ctx.target.send(&serde_json::to_vec(&body).expect("JSON values serialize"));
        match answer.as_ref().ok().and_then(|resp| routes::batch_answers(resp, chunk.len())) {
            Some(got) => answers.extend(got.into_iter().map(Some)),
            None => {
                answers.resize(answers.len() + chunk.len(), None);
                let unusable = matches!(&answer, Ok(r) if (200..=299).contains(&r.status));
                lookup.guard.failed.get_or_insert(if unusable { Ok(unavailable()) } else { answer });
            }
        }
    }
    let mut changes = Vec::new();
    for (s, answer) in wanted.iter().zip(&answers) {
        let kind = s.kind();
        let result = match judge(s, answer.as_ref()) {
            Found::Unknown => {
                // Without its answer a create could duplicate a record: nothing is sent.
                lookup.guard.failed.get_or_insert_with(|| Ok(unavailable()));
                LookupResult::Failed
            }
            Found::None => {
                absent.extend(s.placeholders.iter().cloned());
                LookupResult::Absent
            }
            Found::One(server_id) => {
                for p in &s.placeholders {
                    changes.push(remember(ctx.ids, p, &server_id));
                    if create_only.contains(p.as_str()) {
                        lookup.guard.present.insert(p.clone(), server_id.clone());
                    }
                }
                LookupResult::Found
            }
            Found::Several(matches) => {
                tracing::warn!(
                    kind,
                    matches,
                    "forwarder: several server records carry the identifier of a {kind} to create; the entry is refused, not guessed"
                );
                lookup.guard.refused.extend(s.placeholders.iter().cloned());
                LookupResult::Ambiguous
            }
        };
        ctx.metrics.lookup(result);
    }
    ctx.ids.apply(changes);
    absent
}

/// What a search's answer says about the records it looked for.
enum Found {
    /// No usable answer.
    Unknown,
    None,
    /// `Type/id`.
    One(String),
    Several(usize),
}

fn judge(s: &Search, answer: Option<&Value>) -> Found {
    match answer.and_then(|a| matches(a, s.kind())).as_deref() {
        None => Found::Unknown,
        Some([]) => Found::None,
        Some([id]) => Found::One(format!("{}/{id}", s.kind())),
        Some(ids) => Found::Several(ids.len()),
    }
}

/// The id map's change for a record found on the server (its content unknown: written next).
fn remember(ids: &IdMap, placeholder: &str, server_id: &str) -> Change {
    Change::Remember(
        ids.key(placeholder),
        Known { server_id: Some(server_id.to_string()), content: [0; 32], acked_at: 0 },
    )
}

/// Keeps the answers to searches ahead for the parts they were made for: a record found goes
/// into the id map, the rest is noted for a while (`IdMap::note_searched`): none found, or
/// several matches or no usable answer, after which the part searches again in its own
/// request and is refused or waits there — never searched ahead in a loop.
fn learn_ahead(ahead: &[Search], answers: &[Value], ids: &IdMap, metrics: &Metrics) {
    let mut changes = Vec::new();
    for (s, answer) in ahead.iter().zip(answers) {
        match judge(s, Some(answer)) {
            Found::None => {
                ids.note_searched(s.placeholders.iter().map(String::as_str), Searched::Absent);
                metrics.lookup(LookupResult::Absent);
            }
            Found::One(server_id) => {
                changes.extend(s.placeholders.iter().map(|p| remember(ids, p, &server_id)));
                metrics.lookup(LookupResult::Found);
            }
            Found::Unknown | Found::Several(_) => {
                ids.note_searched(s.placeholders.iter().map(String::as_str), Searched::Unsettled)
            }
        }
    }
    ids.apply(changes);
}

/// What a request whose searches came back unusable is answered: retried like a 503.
fn unavailable() -> Response {
    Response { status: 503, ..Response::default() }
}

/// One search and the would-be creates its answer decides.
struct Search {
    /// Rank of its type in [`SEARCHED`]: the order searches are sent in.
    rank: usize,
    /// `Type?identifier=…`.
    query: String,
    placeholders: Vec<String>,
    /// For a Patient's own record (an Encounter, a RelatedPerson), the placeholder its
    /// reference to the Patient names, when it names one.
    patient: Option<String>,
}

impl Search {
    fn kind(&self) -> &str {
        self.query.split('?').next().unwrap_or("")
    }

    fn batch_entry(&self) -> Value {
        json!({"request": {"method": "GET", "url": self.query}})
    }
}

/// Adds `s` to `wanted`, once per query.
fn merge(wanted: &mut Vec<Search>, s: Search) {
    match wanted.iter_mut().find(|w| w.query == s.query) {
        Some(w) => w.placeholders.extend(s.placeholders),
        None => wanted.push(s),
    }
}

/// The searches creates will need first ([`before_create`]), gathered as parts join a request
/// (or wait for a later one, searched ahead), so that they fit in one batch's reads: a
/// Patient's own records count only when their Patient is not searched too (they wait for its
/// answer).
#[derive(Default)]
pub(super) struct Searches {
    wanted: Vec<Search>,
    patients: HashSet<String>,
}

impl Searches {
    /// What writing `entries` (a part's writes new to the request) would add.
    pub(super) fn added<'e>(&self, entries: impl Iterator<Item = &'e Value>, ctx: &Ctx<'_>) -> Searches {
        let needed: Vec<Search> = entries.filter_map(|e| search_for(e, ctx)).collect();
        let patients: HashSet<String> =
            needed.iter().filter(|s| s.kind() == "Patient").flat_map(|s| s.placeholders.clone()).collect();
        let mut wanted = Vec::new();
        for s in needed {
            let waits = s.patient.as_ref().is_some_and(|p| self.patients.contains(p) || patients.contains(p));
            if !waits && !self.wanted.iter().any(|w| w.query == s.query) {
                merge(&mut wanted, s);
            }
        }
        Searches { wanted, patients }
    }

    pub(super) fn count(&self) -> usize {
        self.wanted.len()
    }

    /// Whether one of them was searched ahead already without a usable answer: its part
    /// searches in its own request now.
    pub(super) fn unsettled(&self, ctx: &Ctx<'_>) -> bool {
        self.wanted.iter().flat_map(|s| &s.placeholders).any(|p| ctx.ids.searched(p) == Some(Searched::Unsettled))
    }

    pub(super) fn extend(&mut self, more: Searches) {
        for s in more.wanted {
            merge(&mut self.wanted, s);
        }
        self.patients.extend(more.patients);
    }
}

/// The search a would-be create needs before it is sent (salesforce, lookup on); `None` for
/// anything else.
fn search_for(entry: &Value, ctx: &Ctx<'_>) -> Option<Search> {
    if ctx.rules.profile != Profile::Salesforce || ctx.target.max_reads() == 0 {
        return None;
    }
    let p = placeholder(entry)?;
    let resource = entry.get("resource")?;
    let kind = resource.get("resourceType").and_then(Value::as_str).unwrap_or("");
    let rank = SEARCHED.iter().position(|t| *t == kind)?;
    if ctx.ids.known(p).and_then(|k| k.server_id).is_some() || ctx.ids.searched(p) == Some(Searched::Absent) {
        return None;
    }
    let patient_field = match kind {
        "Encounter" => "subject",
        "RelatedPerson" => "patient",
        _ => "",
    };
    let patient = resource
        .get(patient_field)
        .and_then(|r| r.get("reference"))
        .and_then(Value::as_str)
        .filter(|r| r.starts_with("urn:uuid:"))
        .map(str::to_string);
    // A Patient the server holds nothing for has none of its own records there either.
    if patient.as_deref().is_some_and(|p| ctx.ids.searched(p) == Some(Searched::Absent)) {
        return None;
    }
    Some(Search { rank, query: identifier_query(kind, resource)?, placeholders: vec![p.to_string()], patient })
}

/// The searches the request's would-be creates need, and which of those are create-only.
fn searches_for<'r>(request: &'r [(Value, [u8; 32])], ctx: &Ctx<'_>) -> (Vec<Search>, HashSet<&'r str>) {
    let mut wanted: Vec<Search> = Vec::new();
    let mut create_only = HashSet::new();
    for (entry, _) in request {
        let (Some(p), Some(search)) = (placeholder(entry), search_for(entry, ctx)) else { continue };
        if entry.get("request").and_then(|r| r.get("ifNoneExist")).is_some() {
            create_only.insert(p);
        }
        merge(&mut wanted, search);
    }
    (wanted, create_only)
}

fn placeholder(entry: &Value) -> Option<&str> {
    entry.get("fullUrl").and_then(Value::as_str).filter(|u| u.starts_with("urn:uuid:"))
}

/// `Type?identifier=system|value` of the resource's first identifier with both, escaped as
/// FHIR search wants (`\` before `|`, `,`, `$`, `\`) and percent-encoded.
fn identifier_query(kind: &str, resource: &Value) -> Option<String> {
    let identifiers = resource.get("identifier")?.as_array()?;
    let (system, value) = identifiers.iter().find_map(|i| {
        let system = i.get("system")?.as_str().filter(|s| !s.is_empty())?;
        let value = i.get("value")?.as_str().filter(|v| !v.is_empty())?;
        Some((system, value))
    })?;
    Some(format!("{kind}?identifier={}|{}", encode(system), encode(value)))
}

fn encode(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    for c in token.chars() {
        if matches!(c, '\\' | '|' | ',' | '$') {
            out.push_str("%5C");
        }
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~') {
            out.push(c);
        } else {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// A FHIR logical id (`[A-Za-z0-9\-.]{1,64}`): what may go into `PUT Type/<id>`.
fn fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The ids of the `kind` resources a search's answer matched; `None` unless it is a 2xx
/// answer holding a searchset whose matches all have FHIR ids.
fn matches(answer: &Value, kind: &str) -> Option<Vec<String>> {
    let status = answer.get("response")?.get("status")?.as_str()?;
    if !status.trim_start().starts_with('2') {
        return None;
    }
    let bundle = answer.get("resource")?;
    if bundle.get("type").and_then(Value::as_str) != Some("searchset") {
        return None;
    }
    let mut ids: Vec<String> = Vec::new();
    for e in bundle.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        let mode = e.get("search").and_then(|s| s.get("mode")).and_then(Value::as_str).unwrap_or("match");
        let resource = e.get("resource");
        let of_kind = resource.and_then(|r| r.get("resourceType")).and_then(Value::as_str) == Some(kind);
        let id = resource.and_then(|r| r.get("id")).and_then(Value::as_str);
        if let (true, true, Some(id)) = (mode == "match", of_kind, id) {
            if !fhir_id(id) {
                return None;
            }
            if !ids.iter().any(|x| x == id) {
                ids.push(id.to_string());
            }
        }
    }
    Some(ids)
}

/// The target for one send: entries whose lookup found several matches, and the entries that
/// reference them, are answered `412 multiple-matches` without being sent; create-only entries
/// found on the server are answered `200 OK` with their id, and references to them renamed;
/// the searches ahead go with the batch.
struct Refusing<'a> {
    inner: &'a dyn Target,
    /// Placeholders of the entries refused.
    refused: HashSet<String>,
    /// Placeholders of create-only entries the server holds → `Type/id`.
    present: HashMap<String, String>,
    /// A search that got no usable answer: the request is not sent, and gets that answer
    /// (a 503 when the batch came back but one search in it failed), so it is retried.
    failed: Option<Result<Response, SendError>>,
    /// Searches ahead, sent with the first batch that goes.
    ahead: Mutex<Vec<Search>>,
    ids: &'a IdMap,
    metrics: &'a Metrics,
}

impl Refusing<'_> {
    /// The request's entries to refuse: the refused placeholders and what references them.
    fn refused_entries(&self, entries: &[Value]) -> HashSet<usize> {
        let mut gone: HashSet<&str> = self.refused.iter().map(String::as_str).collect();
        let mut out = HashSet::new();
        loop {
            let before = out.len();
            for (i, e) in entries.iter().enumerate() {
                if out.contains(&i) {
                    continue;
                }
                let mut refs = Vec::new();
                routes::placeholder_references(e.get("resource").unwrap_or(&Value::Null), &mut refs);
                if placeholder(e).is_some_and(|p| gone.contains(p)) || refs.iter().any(|r| gone.contains(r)) {
                    out.insert(i);
                    gone.extend(placeholder(e));
                }
            }
            if out.len() == before {
                return out;
            }
        }
    }

    /// Sends `bundle` with the searches ahead after its own entries (the first time only, and
    /// not those of records it writes itself), keeps their answers (`learn_ahead`) and returns
    /// the answer to the bundle's own entries.
    fn send_with_ahead(&self, bundle: &[u8]) -> Result<Response, SendError> {
        let mut ahead = std::mem::take(&mut *self.ahead.lock().unwrap_or_else(|e| e.into_inner()));
        if ahead.is_empty() {
            return self.inner.send(bundle);
        }
        let Some((fields, mut entries)) = routes::parse_batch(bundle) else { return self.inner.send(bundle) };
        let written: HashSet<&str> = entries.iter().filter_map(placeholder).collect();
        ahead.retain(|s| !s.placeholders.iter().all(|p| written.contains(p.as_str())));
        drop(written);
        let own = entries.len();
        entries.extend(ahead.iter().map(Search::batch_entry));
        let mut resp = self.inner.send(&routes::batch_body(&fields, entries))?;
        let Some(mut answers) = routes::batch_answers(&resp, own + ahead.len()) else { return Ok(resp) };
        learn_ahead(&ahead, &answers.split_off(own), self.ids, self.metrics);
        let body = json!({"resourceType": "Bundle", "type": "batch-response", "entry": answers});
        resp.body = serde_json::to_vec(&body).expect("JSON values serialize");
        Ok(resp)
    }
}

impl Target for Refusing<'_> {
    fn send(&self, bundle: &[u8]) -> Result<Response, SendError> {
        if let Some(failed) = &self.failed {
            return failed.clone();
        }
        if self.refused.is_empty() && self.present.is_empty() {
            return self.send_with_ahead(bundle);
        }
        let Some((fields, entries)) = routes::parse_batch(bundle) else { return self.send_with_ahead(bundle) };
        let refusal = routes::entry_answer("412 Precondition Failed", "multiple-matches");
        let mut answered: HashMap<usize, Value> =
            self.refused_entries(&entries).into_iter().map(|i| (i, refusal.clone())).collect();
        for (i, e) in entries.iter().enumerate() {
            if let Some(id) = placeholder(e).and_then(|p| self.present.get(p)) {
                answered.entry(i).or_insert_with(|| json!({"response": {"status": "200 OK", "location": id}}));
            }
        }
        if answered.is_empty() {
            return self.send_with_ahead(bundle);
        }
        let unanswered: Vec<usize> = (0..entries.len()).filter(|i| !answered.contains_key(i)).collect();
        let mut resp = Response { status: 200, ..Response::default() };
        if !unanswered.is_empty() {
            let rest = unanswered.iter().map(|&i| routes::with_resolved(&entries[i], &self.present)).collect();
            resp = self.send_with_ahead(&routes::batch_body(&fields, rest))?;
            let Some(answers) = routes::batch_answers(&resp, unanswered.len()) else { return Ok(resp) };
            answered.extend(unanswered.into_iter().zip(answers));
        }
        let entry: Vec<Value> = (0..entries.len()).map(|i| answered.remove(&i).unwrap_or_default()).collect();
        let body = json!({"resourceType": "Bundle", "type": "batch-response", "entry": entry});
        resp.body = serde_json::to_vec(&body).expect("JSON values serialize");
        Ok(resp)
    }

    fn token_refreshes(&self) -> u64 {
        self.inner.token_refreshes()
    }

    fn max_reads(&self) -> usize {
        self.inner.max_reads()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::forward::id_map::IdMap;
    use crate::forward::ids::Rules;
    use crate::metrics::Metrics;
    use crate::store::db::{self, Synchronous};
    use crate::store::{Keys, WriteGate};

    /// Answers searches from `found` (query → ids) and writes with 201; records each body.
    struct Fake {
        found: HashMap<String, Vec<&'static str>>,
        sent: Mutex<Vec<Vec<Value>>>,
    }

    impl Fake {
        /// Each request's entry URLs.
        fn urls(&self) -> Vec<Vec<String>> {
            let url = |e: &Value| e["request"]["url"].as_str().unwrap().to_string();
            self.sent.lock().unwrap().iter().map(|r| r.iter().map(url).collect()).collect()
        }
    }

    impl Target for Fake {
        fn send(&self, bundle: &[u8]) -> Result<Response, SendError> {
            let (_, entries) = routes::parse_batch(bundle).unwrap();
            self.sent.lock().unwrap().push(entries.clone());
            let answers: Vec<Value> = entries
                .iter()
                .map(|e| {
                    let url = e["request"]["url"].as_str().unwrap();
                    match e["request"]["method"].as_str() {
                        Some("GET") => {
                            let kind = url.split('?').next().unwrap();
                            let hits: Vec<Value> = self.found.get(url).cloned().unwrap_or_default().iter()
                                .map(|id| json!({"search": {"mode": "match"}, "resource": {"resourceType": kind, "id": id}}))
                                .collect();
                            json!({"response": {"status": "200 OK"}, "resource": {"resourceType": "Bundle", "type": "searchset", "entry": hits}})
                        }
                        _ => json!({"response": {"status": "201 Created", "location": format!("{url}/new/_history/1")}}),
                    }
                })
                .collect();
            let body = json!({"resourceType": "Bundle", "type": "batch-response", "entry": answers});
            Ok(Response { status: 200, body: serde_json::to_vec(&body).unwrap(), ..Response::default() })
        }

        fn max_reads(&self) -> usize {
            3
        }
    }

    struct World {
        _dir: tempfile::TempDir,
        keys: Keys,
        metrics: Metrics,
        ids: IdMap,
        rules: Rules,
    }

    fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut conn = db::open(&path, None, Synchronous::Normal).unwrap();
        db::migrate(&mut conn, &path).unwrap();
        let keys = Arc::new(Keys::from_master(&[9; 32]));
        let ids = IdMap::open(&path, Synchronous::Normal, keys, Arc::new(WriteGate::default())).unwrap();
        let rules = Rules { profile: Profile::Salesforce, ..Rules::default() };
        World { _dir: dir, keys: Keys::from_master(&[9; 32]), metrics: Metrics::default(), ids, rules }
    }

    fn ctx<'a>(w: &'a World, target: &'a dyn Target) -> Ctx<'a> {
        let (max_entries, tx_limits) = (30, crate::fhir::bundle::TxLimits::NONE);
        Ctx { target, keys: &w.keys, metrics: &w.metrics, ids: &w.ids, rules: &w.rules, max_entries, tx_limits }
    }

    fn entry(p: &str, kind: &str, identifier: Option<(&str, &str)>, refs: &[&str]) -> (Value, [u8; 32]) {
        let identifier: Vec<Value> = identifier.iter().map(|(s, v)| json!({"system": s, "value": v})).collect();
        let refs: Vec<Value> = refs.iter().map(|r| json!({"reference": r})).collect();
        let e = json!({"fullUrl": format!("urn:uuid:{p}"), "request": {"method": "POST", "url": kind},
                       "resource": {"resourceType": kind, "identifier": identifier, "ref": refs}});
        (e, [0; 32])
    }

    fn create_only((mut e, hash): (Value, [u8; 32])) -> (Value, [u8; 32]) {
        e["request"]["ifNoneExist"] = json!("identifier=x");
        (e, hash)
    }

    #[test]
    fn a_single_match_is_learnt_none_is_created_several_are_refused() {
        let w = world();
        let fake = Fake {
            found: [
                ("Patient?identifier=urn%3Amrn|P1".to_string(), vec!["p9"]),
                ("Encounter?identifier=urn%3Avn|V1".to_string(), vec!["e1", "e2"]),
                ("Practitioner?identifier=urn%3Anpi|N1".to_string(), vec!["dr7"]),
            ]
            .into(),
            sent: Mutex::default(),
        };
        let request = [
            entry("obs", "Observation", Some(("urn:obs", "O1")), &["urn:uuid:enc"]),
            entry("enc", "Encounter", Some(("urn:vn", "V1")), &["urn:uuid:pat"]),
            entry("pat", "Patient", Some(("urn:mrn", "P1")), &[]),
            entry("org", "Organization", Some(("urn:org", "a|b")), &[]),
            entry("loc", "Location", None, &["urn:uuid:dr"]),
            create_only(entry("dr", "Practitioner", Some(("urn:npi", "N1")), &[])),
        ];
        let lookup = before_create(&request, Searches::default(), &ctx(&w, &fake));
        let searched: Vec<Vec<Value>> = fake.sent.lock().unwrap()[..2]
            .iter()
            .map(|r| r.iter().map(|e| e["request"]["url"].clone()).collect())
            .collect();
        // Three reads allowed per batch: the Patient, the Encounter and the Practitioner (by
        // rank), then the Organization in a second batch; the Observation is not a searched
        // type, the Location has no identifier.
        assert_eq!(
            searched,
            [
                vec![
                    json!("Patient?identifier=urn%3Amrn|P1"),
                    json!("Encounter?identifier=urn%3Avn|V1"),
                    json!("Practitioner?identifier=urn%3Anpi|N1")
                ],
                vec![json!("Organization?identifier=urn%3Aorg|a%5C%7Cb")]
            ]
        );
        assert_eq!(w.ids.known("urn:uuid:pat").and_then(|k| k.server_id).as_deref(), Some("Patient/p9"));
        assert_eq!(lookup.refused(), ["urn:uuid:enc"]);
        assert_eq!(
            [LookupResult::Found, LookupResult::Absent, LookupResult::Ambiguous, LookupResult::Failed]
                .map(|r| w.metrics.lookups(r)),
            [2, 1, 1, 0]
        );
        assert_eq!(w.metrics.forward_requests.get(), 2, "as few search requests as the read limit allows");

        // The send through the lookup's target: the Encounter and the Observation that names
        // it are answered 412 without being sent; the create-only Practitioner the server holds
        // is answered with its id (not overwritten) and the Location names that id; the others go.
        let c = ctx(&w, &fake);
        let guarded = lookup.ctx(&c);
        let body = json!({"resourceType": "Bundle", "type": "batch",
                          "entry": request.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>()});
        let resp = guarded.target.send(&serde_json::to_vec(&body).unwrap()).unwrap();
        let answered: Value = serde_json::from_slice(&resp.body).unwrap();
        let statuses: Vec<&str> =
            answered["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
        assert_eq!(
            statuses,
            [
                "412 Precondition Failed",
                "412 Precondition Failed",
                "201 Created",
                "201 Created",
                "201 Created",
                "200 OK"
            ]
        );
        assert_eq!(answered["entry"][5]["response"]["location"], "Practitioner/dr7");
        assert_eq!(answered["entry"][0]["response"]["outcome"]["issue"][0]["code"], "multiple-matches");
        let sent = fake.sent.lock().unwrap();
        let urls: Vec<&str> = sent[2].iter().map(|e| e["request"]["url"].as_str().unwrap()).collect();
        assert_eq!(urls, ["Patient", "Organization", "Location"]);
        assert_eq!(sent[2][2]["resource"]["ref"][0]["reference"], "Practitioner/dr7");
        assert_eq!(encode("a|b,c$d\\e f"), "a%5C%7Cb%5C%2Cc%5C%24d%5C%5Ce%20f");
        assert!(fhir_id("a-1.B") && !fhir_id("a/b") && !fhir_id("") && !fhir_id(&"x".repeat(65)));
    }

    #[test]
    fn a_patients_own_records_are_searched_only_when_the_server_holds_the_patient() {
        let w = world();
        let fake = Fake {
            found: [
                ("Patient?identifier=urn%3Amrn|OLD".to_string(), vec!["p1"]),
                ("Encounter?identifier=urn%3Avn|V-OLD".to_string(), vec!["e1"]),
            ]
            .into(),
            sent: Mutex::default(),
        };
        let own = |p: &str, kind: &str, field: &str, value: &str, patient: &str| {
            let (mut e, hash) = entry(p, kind, Some(("urn:vn", value)), &[]);
            e["resource"][field] = json!({"reference": format!("urn:uuid:{patient}")});
            (e, hash)
        };
        let request = [
            entry("new", "Patient", Some(("urn:mrn", "NEW")), &[]),
            own("enc-new", "Encounter", "subject", "V-NEW", "new"),
            own("kin-new", "RelatedPerson", "patient", "K-NEW", "new"),
            entry("old", "Patient", Some(("urn:mrn", "OLD")), &[]),
            own("enc-old", "Encounter", "subject", "V-OLD", "old"),
        ];
        before_create(&request, Searches::default(), &ctx(&w, &fake));
        let sent = fake.urls();
        // The new patient's Encounter and next of kin are not searched; the known patient's are.
        assert_eq!(
            sent,
            [
                vec!["Patient?identifier=urn%3Amrn|NEW", "Patient?identifier=urn%3Amrn|OLD"],
                vec!["Encounter?identifier=urn%3Avn|V-OLD"]
            ]
        );
        assert_eq!(w.ids.known("urn:uuid:enc-old").and_then(|k| k.server_id).as_deref(), Some("Encounter/e1"));
        assert!(w.ids.known("urn:uuid:enc-new").is_none());
    }

    #[test]
    fn searches_ahead_ride_in_the_first_batch_sent_and_their_answers_wait_for_their_parts() {
        let w = world();
        let fake = Fake {
            found: [
                ("Patient?identifier=urn%3Amrn|OLD".to_string(), vec!["p1"]),
                ("Patient?identifier=urn%3Amrn|TWO".to_string(), vec!["p2", "p3"]),
            ]
            .into(),
            sent: Mutex::default(),
        };
        let c = ctx(&w, &fake);
        let mut enc_new = entry("enc-new", "Encounter", Some(("urn:vn", "V-NEW")), &[]);
        enc_new.0["resource"]["subject"] = json!({"reference": "urn:uuid:new"});
        let dup = entry("dup", "Patient", Some(("urn:mrn", "DUP")), &[]);
        // Parts waiting for a later request: a new patient with its Encounter, a known one, one
        // the server holds twice, and a patient the request itself creates.
        let waiting = [
            entry("new", "Patient", Some(("urn:mrn", "NEW")), &[]),
            enc_new.clone(),
            entry("old", "Patient", Some(("urn:mrn", "OLD")), &[]),
            entry("two", "Patient", Some(("urn:mrn", "TWO")), &[]),
            dup.clone(),
        ];
        let ahead = Searches::default().added(waiting.iter().map(|(e, _)| e), &c);
        assert_eq!(ahead.count(), 4, "the Encounter waits for its Patient's answer");
        let request = [dup, entry("obs", "Observation", None, &[])];
        let lookup = before_create(&request, ahead, &c);
        let guarded = lookup.ctx(&c);
        let body = json!({"resourceType": "Bundle", "type": "batch",
                          "entry": request.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>()});
        let resp = guarded.target.send(&serde_json::to_vec(&body).unwrap()).unwrap();
        let answered: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(answered["entry"].as_array().unwrap().len(), 2, "the request's own answers only");
        guarded.target.send(&serde_json::to_vec(&body).unwrap()).unwrap();
        let urls = fake.urls();
        // The request's own search first; then the write with the searches ahead, except the
        // patient it creates itself; sent again, it goes without them.
        assert_eq!(
            urls,
            [
                vec!["Patient?identifier=urn%3Amrn|DUP"],
                vec![
                    "Patient",
                    "Observation",
                    "Patient?identifier=urn%3Amrn|NEW",
                    "Patient?identifier=urn%3Amrn|OLD",
                    "Patient?identifier=urn%3Amrn|TWO"
                ],
                vec!["Patient", "Observation"],
            ]
        );
        assert_eq!(w.ids.known("urn:uuid:old").and_then(|k| k.server_id).as_deref(), Some("Patient/p1"));
        assert_eq!(w.ids.searched("urn:uuid:new"), Some(Searched::Absent));
        assert_eq!(w.ids.searched("urn:uuid:old"), None, "the id map names it");
        // When the waiting parts come round, neither the new patient nor its Encounter needs a
        // search; the patient held twice is searched in its own request (and refused there).
        assert_eq!(Searches::default().added(waiting[..3].iter().map(|(e, _)| e), &c).count(), 0);
        let two = Searches::default().added(std::iter::once(&waiting[3].0), &c);
        assert!(two.count() == 1 && two.unsettled(&c));
        assert_eq!(w.metrics.lookups(LookupResult::Absent), 2, "DUP inline, NEW ahead");
        assert_eq!(w.metrics.lookups(LookupResult::Found), 1);
    }

    #[test]
    fn a_failed_search_sends_nothing_and_the_request_gets_its_answer() {
        /// Refuses everything (503, Retry-After) and counts the requests.
        struct Down(Mutex<usize>);
        impl Target for Down {
            fn send(&self, _: &[u8]) -> Result<Response, SendError> {
                *self.0.lock().unwrap() += 1;
                Ok(Response { status: 503, retry_after: Some("7".into()), ..Response::default() })
            }
            fn max_reads(&self) -> usize {
                10
            }
        }
        let w = world();
        let down = Down(Mutex::new(0));
        let request = [entry("pat", "Patient", Some(("urn:mrn", "P1")), &[])];
        let lookup = before_create(&request, Searches::default(), &ctx(&w, &down));
        let c = ctx(&w, &down);
        let answer = lookup.ctx(&c).target.send(b"{}").unwrap();
        assert_eq!((answer.status, answer.retry_after.as_deref()), (503, Some("7")));
        assert_eq!(*down.0.lock().unwrap(), 1, "the search only: the create was not sent");
        assert_eq!(w.metrics.lookups(LookupResult::Failed), 1);
    }

    #[test]
    fn nothing_is_searched_for_known_ids_other_profiles_or_a_zero_read_limit() {
        let mut w = world();
        let fake = Fake { found: HashMap::new(), sent: Mutex::default() };
        let key = w.ids.key("urn:uuid:pat");
        w.ids.apply(vec![Change::Remember(
            key,
            Known { server_id: Some("Patient/p1".into()), content: [0; 32], acked_at: 0 },
        )]);
        let request = [entry("pat", "Patient", Some(("urn:mrn", "P1")), &[])];
        before_create(&request, Searches::default(), &ctx(&w, &fake));
        assert!(fake.sent.lock().unwrap().is_empty(), "the id map names it");
        let other = [entry("new", "Patient", Some(("urn:mrn", "P2")), &[])];
        before_create(&other, Searches::default(), &ctx(&w, &fake));
        assert_eq!(fake.sent.lock().unwrap().len(), 1);
        assert_eq!(w.metrics.lookups(LookupResult::Absent), 1);
        w.rules.profile = Profile::Generic;
        before_create(&other, Searches::default(), &ctx(&w, &fake));
        assert_eq!(fake.sent.lock().unwrap().len(), 1, "generic: no lookup");
    }
}
