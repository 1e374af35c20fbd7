//! A `transaction` or `batch` Bundle against the sink's database, as a FHIR R4 server
//! processes it, in one SQLite transaction (one fsync per Bundle):
//!
//! 1. every entry is read ([`Request::parse`]) and, in FHIR's order (DELETE, POST, PUT, GET;
//!    bundle order within each), resolved to the resource it addresses: `PUT Type/id` that id;
//!    a conditional update its one match, or a new id (the resource's own, else the fullUrl's
//!    `urn:uuid`, else a random UUID) when there is none, 412 when there are several; a POST a
//!    new random id, or with `ifNoneExist` its one match, left as it is;
//! 2. every `reference` equal to an entry's `fullUrl` is rewritten to that entry's `Type/id`,
//!    and the entries are carried out in the same order. An update whose content equals what is
//!    stored is a no-op (no new version), as on a real server.
//!
//! A transaction is all-or-nothing: the first refused entry rolls everything back and is the
//! answer (4xx, OperationOutcome). A batch answers entry by entry, each in its own savepoint.
//! Two conditional entries of one bundle with the same search resolve to the same resource.

use std::collections::{BTreeSet, HashMap, HashSet};

use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, TransactionBehavior};
use serde_json::{json, Map, Value};

use super::db;
use super::references;
use super::request::{status_line, valid_id, EntryError, Method, Request, Target};
use super::search::Query;

/// The answer to one POSTed Bundle: HTTP status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    fn refused(e: &EntryError) -> Answer {
        Answer { status: e.status, body: e.outcome() }
    }
}

/// Why an entry could not be carried out: refused (answered), or the database failed (the
/// whole request fails; the gateway tries again).
enum Fail {
    Entry(EntryError),
    Db(rusqlite::Error),
}

impl From<EntryError> for Fail {
    fn from(e: EntryError) -> Fail {
        Fail::Entry(e)
    }
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Fail {
        Fail::Db(e)
    }
}

/// What an entry resolved to in step 1.
#[derive(Debug, Clone)]
enum Plan {
    /// Store the entry's resource as `id` (created when absent).
    Write(String),
    /// `ifNoneExist` matched `id`: nothing is written.
    Keep(String),
    Delete(Vec<String>),
    Read,
}

/// Resolution state shared by a bundle's entries.
#[derive(Default)]
struct Resolver {
    /// (type, search text) → the id an earlier entry's search resolved to.
    searched: HashMap<(String, String), String>,
    /// (type, id) of every entry resolved so far.
    addressed: HashSet<(String, String)>,
}

/// Processes one Bundle; `now` is the `meta.lastUpdated` of everything it writes.
pub fn process(conn: &mut Connection, bundle: &[u8], now: &str) -> rusqlite::Result<Answer> {
    let bundle = match read_bundle(bundle) {
        Ok(b) => b,
        Err(e) => return Ok(Answer::refused(&e)),
    };
    let transaction = bundle.kind == "transaction";
    let requests: Vec<Result<Request, EntryError>> =
        bundle.entries.iter().enumerate().map(|(i, e)| Request::parse(e).map_err(|e| e.at(i))).collect();
    if transaction {
        if let Some(Err(e)) = requests.iter().find(|r| r.is_err()) {
            return Ok(Answer::refused(e));
        }
    }
    let mut order: Vec<(Method, usize)> =
        requests.iter().enumerate().filter_map(|(i, r)| Some((r.as_ref().ok()?.method, i))).collect();
    order.sort();

    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut plans: Vec<Option<Result<Plan, EntryError>>> = vec![None; requests.len()];
    let mut resolver = Resolver::default();
    for &(_, i) in &order {
        let request = requests[i].as_ref().expect("ordered entries parsed");
        match resolver.resolve(&tx, request, transaction) {
            Ok(plan) => plans[i] = Some(Ok(plan)),
            Err(Fail::Entry(e)) if transaction => return Ok(Answer::refused(&e.at(i))),
            Err(Fail::Entry(e)) => plans[i] = Some(Err(e.at(i))),
            Err(Fail::Db(e)) => return Err(e),
        }
    }
    let targets = full_url_targets(&requests, &plans);

    let mut responses: Vec<Value> = requests
        .iter()
        .map(|r| match r {
            Err(e) => error_entry(e),
            Ok(_) => Value::Null,
        })
        .collect();
    for &(_, i) in &order {
        let request = requests[i].as_ref().expect("ordered entries parsed");
        let plan = match &plans[i] {
            Some(Ok(plan)) => plan,
            Some(Err(e)) => {
                responses[i] = error_entry(e);
                continue;
            }
            None => unreachable!("every ordered entry was resolved"),
        };
        let done = if transaction {
            carry_out(&tx, request, plan, &targets, now)
        } else {
            let sp = tx.savepoint()?;
            let done = carry_out(&sp, request, plan, &targets, now);
            if done.is_ok() {
                sp.commit()?;
            }
            done
        };
        match done {
            Ok(entry) => responses[i] = entry,
            Err(Fail::Entry(e)) if transaction => return Ok(Answer::refused(&e.at(i))),
            Err(Fail::Entry(e)) => responses[i] = error_entry(&e.at(i)),
            Err(Fail::Db(e)) => return Err(e),
        }
    }
    tx.commit()?;
    let body = json!({"resourceType": "Bundle", "type": format!("{}-response", bundle.kind), "entry": responses});
    Ok(Answer { status: 200, body })
}

struct Bundle {
    kind: &'static str,
    entries: Vec<Value>,
}

fn read_bundle(bytes: &[u8]) -> Result<Bundle, EntryError> {
    let structure = |d: &str| EntryError { status: 400, code: "structure", diagnostics: d.to_string() };
    let Ok(Value::Object(mut bundle)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(structure("the body is not a JSON object"));
    };
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(structure("the body is not a Bundle"));
    }
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => "transaction",
        Some("batch") => "batch",
        _ => return Err(EntryError::not_supported("Bundle.type must be transaction or batch")),
    };
    let entries = match bundle.remove("entry") {
        None => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(structure("Bundle.entry is not an array")),
    };
    Ok(Bundle { kind, entries })
}

fn error_entry(e: &EntryError) -> Value {
    json!({"response": {"status": status_line(e.status), "outcome": e.outcome()}})
}

/// fullUrl → `Type/id` for every entry that resolved to a resource.
fn full_url_targets(
    requests: &[Result<Request, EntryError>],
    plans: &[Option<Result<Plan, EntryError>>],
) -> HashMap<String, String> {
    let mut targets = HashMap::new();
    for (request, plan) in requests.iter().zip(plans) {
        if let (Ok(request), Some(Ok(Plan::Write(id) | Plan::Keep(id)))) = (request, plan) {
            if let Some(full_url) = &request.full_url {
                targets.insert(full_url.clone(), format!("{}/{id}", request.kind));
            }
        }
    }
    targets
}

impl Resolver {
    fn resolve(&mut self, conn: &Connection, request: &Request, transaction: bool) -> Result<Plan, Fail> {
        let kind = request.kind.as_str();
        let plan = match (request.method, &request.target) {
            (Method::Put, Target::Instance(id)) => Plan::Write(id.clone()),
            (Method::Put, Target::Search(text, query)) => match self.search(conn, kind, text, query)?[..] {
                [] => Plan::Write(self.new_id(conn, request)?),
                [ref id] => {
                    if request.resource.as_ref().and_then(|r| r.get("id")).is_some_and(|v| v.as_str() != Some(id)) {
                        return Err(
                            EntryError::invalid("resource.id differs from the resource the search matched").into()
                        );
                    }
                    Plan::Write(id.clone())
                }
                _ => return Err(precondition("the conditional update matched several resources")),
            },
            // A created resource takes the fullUrl's id when free (any id is a server's to
            // choose; this one makes both profiles end at the same ids).
            (Method::Post, _) => match &request.if_none_exist {
                None => Plan::Write(self.new_id(conn, request)?),
                Some((text, query)) => match self.search(conn, kind, text, query)?[..] {
                    [] => Plan::Write(self.new_id(conn, request)?),
                    [ref id] => Plan::Keep(id.clone()),
                    _ => return Err(precondition("ifNoneExist matched several resources")),
                },
            },
            (Method::Delete, Target::Instance(id)) => Plan::Delete(vec![id.clone()]),
            (Method::Delete, Target::Search(text, query)) => match self.search(conn, kind, text, query)?[..] {
                [] => Plan::Delete(Vec::new()),
                [ref id] => Plan::Delete(vec![id.clone()]),
                _ => return Err(precondition("the conditional delete matched several resources")),
            },
            (Method::Get, _) => Plan::Read,
            _ => return Err(EntryError::invalid("request.url does not fit the method").into()),
        };
        let ids: &[String] = match &plan {
            Plan::Write(id) | Plan::Keep(id) => std::slice::from_ref(id),
            Plan::Delete(ids) => ids,
            Plan::Read => &[],
        };
        for id in ids {
            // A transaction may not touch one resource twice (its outcome would depend on
            // the order); a batch's entries are independent requests.
            if !self.addressed.insert((kind.to_string(), id.clone())) && transaction {
                return Err(EntryError::invalid("two entries of the transaction address the same resource").into());
            }
        }
        if let (Plan::Write(id) | Plan::Keep(id), Some(text)) = (&plan, search_text(request)) {
            self.searched.insert((kind.to_string(), text.to_string()), id.clone());
        }
        Ok(plan)
    }

    /// The ids a search matches, an earlier entry's resolution of the same search first.
    fn search(&self, conn: &Connection, kind: &str, text: &str, query: &Query) -> Result<Vec<String>, Fail> {
        if let Some(id) = self.searched.get(&(kind.to_string(), text.to_string())) {
            return Ok(vec![id.clone()]);
        }
        Ok(query.matches(conn, kind)?.into_iter().collect())
    }

    /// The id of a conditional update that matched nothing: the resource's own id, else the
    /// fullUrl's `urn:uuid` (the gateway's deterministic id), unless taken; else a random one.
    fn new_id(&self, conn: &Connection, request: &Request) -> Result<String, Fail> {
        let own = request.resource.as_ref().and_then(|r| r.get("id")).and_then(Value::as_str);
        let from_full_url = request.full_url.as_deref().and_then(|u| u.strip_prefix("urn:uuid:"));
        for id in own.into_iter().chain(from_full_url).filter(|id| valid_id(id)) {
            let taken = self.addressed.contains(&(request.kind.clone(), id.to_string()))
                || db::get(conn, &request.kind, id)?.is_some();
            if !taken {
                return Ok(id.to_string());
            }
        }
        Ok(random_id())
    }
}

fn search_text(request: &Request) -> Option<&str> {
    match (&request.target, &request.if_none_exist) {
        (Target::Search(text, _), _) | (_, Some((text, _))) => Some(text),
        _ => None,
    }
}

fn precondition(diagnostics: &str) -> Fail {
    Fail::Entry(EntryError { status: 412, code: "multiple-matches", diagnostics: diagnostics.to_string() })
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).expect("system random source");
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// Step 2 for one entry: its response entry.
fn carry_out(
    conn: &Connection,
    request: &Request,
    plan: &Plan,
    targets: &HashMap<String, String>,
    now: &str,
) -> Result<Value, Fail> {
    let kind = request.kind.as_str();
    match plan {
        Plan::Write(id) => {
            let resource = request.resource.clone().expect("PUT and POST carry a resource");
            write(conn, kind, id, resource, targets, now)
        }
        Plan::Keep(id) => {
            let stored = db::get(conn, kind, id)?.ok_or_else(|| EntryError::invalid("matched resource vanished"))?;
            let last = last_updated(&serde_json::from_str(&stored.json).unwrap_or(Value::Null));
            Ok(response("200 OK", kind, id, stored.version, last.as_deref()))
        }
        Plan::Delete(ids) => {
            for id in ids {
                db::delete(conn, kind, id)?;
            }
            Ok(json!({"response": {"status": status_line(204)}}))
        }
        Plan::Read => read(conn, request),
    }
}

fn write(
    conn: &Connection,
    kind: &str,
    id: &str,
    resource: Map<String, Value>,
    targets: &HashMap<String, String>,
    now: &str,
) -> Result<Value, Fail> {
    let mut resource = Value::Object(resource);
    references::resolve(&mut resource, targets)
        .map_err(|_| EntryError::invalid("a urn:uuid or urn:oid reference names no entry of the bundle"))?;
    resource["id"] = Value::String(id.to_string());
    let stored = db::get(conn, kind, id)?;
    if let Some(stored) = &stored {
        // A stored row that does not parse is simply replaced.
        if let Ok(old) = serde_json::from_str::<Value>(&stored.json) {
            if without_version(&old) == without_version(&resource) {
                return Ok(response("200 OK", kind, id, stored.version, last_updated(&old).as_deref()));
            }
        }
    }
    let version = stored.as_ref().map_or(1, |s| s.version + 1);
    set_version(&mut resource, version, now);
    let json = resource.to_string();
    if stored.is_some() {
        db::update(conn, kind, id, version, &json)?;
    } else {
        db::insert(conn, kind, id, version, &json)?;
    }
    db::set_identifiers(conn, kind, id, &identifiers(&resource))?;
    let status = if stored.is_some() { "200 OK" } else { "201 Created" };
    Ok(response(status, kind, id, version, Some(now)))
}

fn read(conn: &Connection, request: &Request) -> Result<Value, Fail> {
    let kind = request.kind.as_str();
    let ids: Vec<String> = match &request.target {
        Target::Instance(id) => vec![id.clone()],
        Target::Search(_, query) => query.matches(conn, kind)?.into_iter().collect(),
        Target::Type => return Err(EntryError::not_supported("GET of a whole type").into()),
    };
    let mut found = Vec::with_capacity(ids.len());
    for id in &ids {
        if let Some(stored) = db::get(conn, kind, id)? {
            found.push(serde_json::from_str::<Value>(&stored.json).unwrap_or(Value::Null));
        }
    }
    let resource = match &request.target {
        Target::Instance(_) => found.pop().ok_or_else(|| EntryError {
            status: 404,
            code: "not-found",
            diagnostics: "no such resource".into(),
        })?,
        _ => json!({"resourceType": "Bundle", "type": "searchset", "total": found.len(),
                    "entry": found.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()}),
    };
    Ok(json!({"resource": resource, "response": {"status": status_line(200)}}))
}

fn response(status: &str, kind: &str, id: &str, version: i64, last_modified: Option<&str>) -> Value {
    let mut r = json!({"status": status, "location": format!("{kind}/{id}/_history/{version}"),
                       "etag": format!("W/\"{version}\"")});
    if let Some(at) = last_modified {
        r["lastModified"] = Value::String(at.to_string());
    }
    json!({"response": r})
}

/// The resource without `meta.versionId` and `meta.lastUpdated` (and without `meta` if that
/// leaves it empty): what must differ for an update to make a new version.
fn without_version(resource: &Value) -> Value {
    let mut r = resource.clone();
    if let Some(map) = r.as_object_mut() {
        if let Some(Value::Object(meta)) = map.get_mut("meta") {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                map.remove("meta");
            }
        }
    }
    r
}

fn set_version(resource: &mut Value, version: i64, now: &str) {
    if !resource.get("meta").is_some_and(Value::is_object) {
        resource["meta"] = json!({});
    }
    resource["meta"]["versionId"] = Value::String(version.to_string());
    resource["meta"]["lastUpdated"] = Value::String(now.to_string());
}

fn last_updated(resource: &Value) -> Option<String> {
    resource.get("meta")?.get("lastUpdated")?.as_str().map(str::to_string)
}

/// The (system, value) pairs of `identifier[]` with a value; no system is "".
fn identifiers(resource: &Value) -> Vec<(String, String)> {
    let Some(list) = resource.get("identifier").and_then(Value::as_array) else { return Vec::new() };
    let pairs: BTreeSet<(String, String)> = list
        .iter()
        .filter_map(|i| {
            let value = i.get("value")?.as_str().filter(|v| !v.is_empty())?;
            let system = i.get("system").and_then(Value::as_str).unwrap_or("");
            Some((system.to_string(), value.to_string()))
        })
        .collect();
    pairs.into_iter().collect()
}
