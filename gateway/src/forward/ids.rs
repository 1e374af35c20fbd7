//! Send-time rewriting of stored bundles against what the server already holds (the id map,
//! `store::ids`), for every profile:
//!
//! - **Write economy**: an entry whose content the server last acknowledged unchanged, less
//!   than `reassert` ago, is not sent again (it settles as delivered); nor is a create-if-absent
//!   entry (`ifNoneExist`) for a resource the server already holds. Reference-only resources
//!   (Organization, Practitioner, Location) are thus written once and then only on change.
//! - **Server ids** (salesforce): an entry for a resource the server named is `PUT <Kind>/<id>`,
//!   and references to it name that id; other entries stay `POST <Kind>` with their `urn:uuid`
//!   placeholder, which the server resolves within the batch.
//! - **Generic**: a reference to an entry left out becomes the name the server resolves without
//!   it (its conditional URL, or `<Kind>/<id>`).
//! - **Unsupported types** (`[cloud] unsupported_types`) are dropped or dead-lettered, never retried.
//!
//! After an answer, [`learn`] turns each acknowledged entry into a map row (server id from
//! `response.location`) and forgets a resource the server answers 404/410 for, so it is written
//! again from scratch.

use std::collections::{HashMap, HashSet};

use ring::digest;
use serde_json::{Map, Value};

use crate::fhir::bundle::Profile;
use crate::store::ids::{Change, Known};

/// What to do with an entry of a resource type the target does not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Unsupported {
    /// Leave it out; the rest of the bundle is delivered.
    #[default]
    Drop,
    /// Refuse the entry: a dead letter names its type.
    DeadLetter,
}

/// How bundles are rewritten for the target.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    pub(crate) profile: Profile,
    pub(crate) unsupported_types: HashSet<String>,
    pub(crate) unsupported: Unsupported,
    /// An unchanged resource is written again after this long (ms).
    pub(crate) reassert_ms: i64,
    /// Leave out what the server holds unchanged (`[cloud] write_economy`); off, every entry
    /// is written (salesforce still leaves out a create-only entry for a resource it holds,
    /// which it could not write without replacing it).
    pub(crate) economy: bool,
}

/// One stored bundle's entries after selection: what goes into the request, what settled
/// without being sent.
#[derive(Debug, Default)]
pub(crate) struct Selected {
    /// (index in the bundle, entry as stored, its content hash).
    pub(crate) send: Vec<(usize, Value, [u8; 32])>,
    /// Settled without sending (unchanged, already present, or a dropped unsupported type).
    pub(crate) skipped: Vec<usize>,
    /// Refused here (an unsupported type under `dead-letter`), with a PHI-free reason.
    pub(crate) refused: Vec<(usize, String)>,
    /// Entries left out whose placeholder must be renamed in the others (generic).
    pub(crate) outside_names: HashMap<String, String>,
    /// Placeholders of entries dropped for their type: references to them are removed.
    pub(crate) dropped: HashSet<String>,
    /// Count of entries dropped for their type (a metric).
    pub(crate) dropped_unsupported: u64,
}

/// The SHA-256 of an entry as stored (the converter writes JSON with sorted keys, so equal
/// content hashes equally across messages).
pub(crate) fn content_hash(entry: &Value) -> [u8; 32] {
    let bytes = serde_json::to_vec(entry).expect("JSON values serialize");
    digest::digest(&digest::SHA256, &bytes).as_ref().try_into().expect("SHA-256 output")
}

fn placeholder(entry: &Value) -> Option<&str> {
    entry.get("fullUrl").and_then(Value::as_str).filter(|u| u.starts_with("urn:uuid:"))
}

fn kind_of(entry: &Value) -> &str {
    entry.get("resource").and_then(|r| r.get("resourceType")).and_then(Value::as_str).unwrap_or("")
}

/// How a reference from another request names the resource an entry writes (generic).
fn outside_name(entry: &Value) -> Option<String> {
    let request = entry.get("request")?;
    let url = request.get("url")?.as_str()?;
    Some(match request.get("ifNoneExist").and_then(Value::as_str) {
        Some(query) => format!("{url}?{query}"),
        None => url.to_string(),
    })
}

/// Chooses which unsettled entries of `bundle` go into the request. `known` looks a
/// placeholder up in the id map.
pub(crate) fn select(
    bundle: &Value,
    settled: &[usize],
    rules: &Rules,
    now_ms: i64,
    known: &dyn Fn(&str) -> Option<Known>,
) -> Selected {
    let mut out = Selected::default();
    let entries = bundle.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    for (n, entry) in entries.iter().enumerate() {
        if settled.contains(&n) {
            continue;
        }
        let kind = kind_of(entry);
        if rules.unsupported_types.contains(kind) {
            match rules.unsupported {
                Unsupported::Drop => {
                    out.skipped.push(n);
                    out.dropped_unsupported += 1;
                    if let Some(p) = placeholder(entry) {
                        out.dropped.insert(p.to_string());
                    }
                }
                Unsupported::DeadLetter => {
                    out.refused.push((n, format!("entry {n}: resource type {kind} is not supported by the target")))
                }
            }
            continue;
        }
        let content = content_hash(entry);
        let prior = placeholder(entry).and_then(known);
        let unchanged = prior.as_ref().is_some_and(|k| k.content == content && now_ms - k.acked_at < rules.reassert_ms);
        let create_only = entry.get("request").and_then(|r| r.get("ifNoneExist")).is_some();
        let present = match rules.profile {
            Profile::Salesforce => prior.as_ref().is_some_and(|k| k.server_id.is_some()),
            Profile::Generic => prior.is_some(),
        };
        let skip = (rules.economy && unchanged)
            || (create_only && present && (rules.economy || rules.profile == Profile::Salesforce));
        if skip {
            out.skipped.push(n);
            if let (Some(p), Some(name)) = (placeholder(entry), outside_name(entry)) {
                out.outside_names.insert(p.to_string(), name);
            }
            continue;
        }
        out.send.push((n, entry.clone(), content));
    }
    out
}

/// What [`rewrite`] needs to know about the whole request.
#[derive(Debug, Default)]
pub(crate) struct RequestView {
    /// Placeholders of the request's entries.
    pub(crate) in_request: HashSet<String>,
    /// Names of left-out entries (generic), by placeholder.
    pub(crate) outside_names: HashMap<String, String>,
    /// Placeholders of entries dropped for their type.
    pub(crate) dropped: HashSet<String>,
}

/// The entry as it is sent: references to dropped entries removed, references to left-out
/// entries renamed (generic), or server ids applied (salesforce).
pub(crate) fn rewrite(
    entry: &Value,
    rules: &Rules,
    view: &RequestView,
    known: &dyn Fn(&str) -> Option<Known>,
) -> Value {
    let (outside_names, in_request) = (&view.outside_names, &view.in_request);
    let mut out = entry.clone();
    if !view.dropped.is_empty() {
        if let Some(resource) = out.get_mut("resource") {
            strip_references(resource, &view.dropped);
        }
    }
    let rename = |r: &str| -> Option<String> {
        if in_request.contains(r) {
            return None;
        }
        match rules.profile {
            Profile::Generic => outside_names.get(r).cloned(),
            Profile::Salesforce => known(r).and_then(|k| k.server_id),
        }
    };
    if let Some(resource) = out.get_mut("resource") {
        rename_references(resource, &rename);
    }
    if rules.profile == Profile::Salesforce {
        let server_id = placeholder(entry).and_then(known).and_then(|k| k.server_id);
        let kind = kind_of(entry).to_string();
        let request = out.get_mut("request").and_then(Value::as_object_mut);
        if let Some(request) = request {
            request.remove("ifNoneExist");
            if let Some(id) = &server_id {
                request.insert("method".into(), Value::String("PUT".into()));
                request.insert("url".into(), Value::String(id.clone()));
            } else {
                request.insert("method".into(), Value::String("POST".into()));
                request.insert("url".into(), Value::String(kind));
            }
        }
        if let (Some(id), Some(resource)) = (server_id, out.get_mut("resource").and_then(Value::as_object_mut)) {
            let bare = id.rsplit('/').next().unwrap_or(&id).to_string();
            resource.insert("id".into(), Value::String(bare));
        }
    }
    out
}

/// Removes every element that is a reference to one of `gone` (an array item, or the field).
fn strip_references(v: &mut Value, gone: &HashSet<String>) {
    let names_gone = |x: &Value| x.get("reference").and_then(Value::as_str).is_some_and(|r| gone.contains(r));
    match v {
        Value::Object(map) => {
            map.retain(|_, x| !names_gone(x));
            map.values_mut().for_each(|x| strip_references(x, gone));
            // An array emptied by the removal goes too (FHIR has no empty arrays).
            map.retain(|_, x| !matches!(x, Value::Array(a) if a.is_empty()));
        }
        Value::Array(items) => {
            items.retain(|x| !names_gone(x));
            items.iter_mut().for_each(|x| strip_references(x, gone));
        }
        _ => {}
    }
}

fn rename_references(v: &mut Value, rename: &dyn Fn(&str) -> Option<String>) {
    match v {
        Value::Object(map) => rename_in(map, rename),
        Value::Array(items) => items.iter_mut().for_each(|x| rename_references(x, rename)),
        _ => {}
    }
}

fn rename_in(map: &mut Map<String, Value>, rename: &dyn Fn(&str) -> Option<String>) {
    for (k, v) in map.iter_mut() {
        match v {
            Value::String(s) if k == "reference" => {
                if let Some(new) = rename(s) {
                    *s = new;
                }
            }
            _ => rename_references(v, rename),
        }
    }
}

/// `Kind/<id>` from a `response.location` (`Kind/id/_history/n`, relative or absolute).
pub(crate) fn server_id(location: &str, kind: &str) -> Option<String> {
    let path = location.split(['?', '#']).next()?;
    let parts: Vec<&str> = path.split('/').collect();
    let at = parts.iter().rposition(|p| *p == kind)?;
    let id = parts.get(at + 1).filter(|id| !id.is_empty())?;
    Some(format!("{kind}/{id}"))
}

/// What one sent entry taught: (placeholder, kind, content hash, its answer).
pub(crate) struct Answered<'a> {
    pub(crate) placeholder: Option<&'a str>,
    pub(crate) kind: &'a str,
    pub(crate) content: [u8; 32],
    /// The status code and `response.location` of its answer; a transaction's 2xx answers
    /// every entry with its own status.
    pub(crate) status: Option<u16>,
    pub(crate) location: Option<&'a str>,
}

/// The map changes an answer implies; `key` hashes a placeholder. A 404/410 forgets the
/// resource (the server lost it: the next attempt creates it again).
pub(crate) fn learn(answers: &[Answered<'_>], now_ms: i64, key: &dyn Fn(&str) -> [u8; 32]) -> Vec<Change> {
    let mut changes = Vec::new();
    for a in answers {
        let Some(p) = a.placeholder else { continue };
        match a.status {
            Some(200..=299) => {
                let server_id = a.location.and_then(|l| server_id(l, a.kind));
                changes.push(Change::Remember(key(p), Known { server_id, content: a.content, acked_at: now_ms }));
            }
            Some(404 | 410) => changes.push(Change::Forget(key(p))),
            _ => {}
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sf_rules() -> Rules {
        Rules { profile: Profile::Salesforce, reassert_ms: 1000, economy: true, ..Rules::default() }
    }

    fn sf_bundle() -> Value {
        json!({"type": "batch", "entry": [
            {"fullUrl": "urn:uuid:p", "request": {"method": "POST", "url": "Patient"},
             "resource": {"resourceType": "Patient", "managingOrganization": {"reference": "urn:uuid:o"}}},
            {"fullUrl": "urn:uuid:o", "request": {"method": "POST", "url": "Organization"},
             "resource": {"resourceType": "Organization"}},
            {"fullUrl": "urn:uuid:e", "request": {"method": "POST", "url": "Encounter"},
             "resource": {"resourceType": "Encounter", "subject": {"reference": "urn:uuid:p"}}},
        ]})
    }

    #[test]
    fn unchanged_entries_are_left_out_until_reasserted_and_server_ids_are_applied() {
        let b = sf_bundle();
        let entries = b["entry"].as_array().unwrap();
        let org = Known { server_id: Some("Organization/o9".into()), content: content_hash(&entries[1]), acked_at: 0 };
        let pat = Known { server_id: Some("Patient/p9".into()), content: [0; 32], acked_at: 0 };
        let map: HashMap<&str, Known> = [("urn:uuid:o", org), ("urn:uuid:p", pat)].into();
        let known = |p: &str| map.get(p).cloned();
        let rules = sf_rules();
        let s = select(&b, &[], &rules, 500, &known);
        assert_eq!(s.skipped, [1], "the unchanged Organization is not written again");
        assert_eq!(s.send.iter().map(|(n, _, _)| *n).collect::<Vec<_>>(), [0, 2]);
        let view = RequestView {
            in_request: ["urn:uuid:p".to_string(), "urn:uuid:e".to_string()].into(),
            ..RequestView::default()
        };
        let patient = rewrite(&s.send[0].1, &rules, &view, &known);
        assert_eq!(patient["request"], json!({"method": "PUT", "url": "Patient/p9"}));
        assert_eq!(patient["resource"]["id"], "p9");
        assert_eq!(patient["resource"]["managingOrganization"]["reference"], "Organization/o9");
        let encounter = rewrite(&s.send[1].1, &rules, &view, &known);
        assert_eq!(encounter["request"], json!({"method": "POST", "url": "Encounter"}));
        assert_eq!(encounter["resource"]["subject"]["reference"], "urn:uuid:p", "in the batch: the placeholder");
        // After the reassert period the Organization is written again.
        assert!(select(&b, &[], &rules, 1000, &known).skipped.is_empty());
    }

    #[test]
    fn create_if_absent_is_left_out_once_present_and_unsupported_types_are_routed() {
        let b = json!({"type": "batch", "entry": [
            {"fullUrl": "urn:uuid:p", "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=s|v"},
             "resource": {"resourceType": "Patient"}},
            {"fullUrl": "urn:uuid:v", "request": {"method": "POST", "url": "Provenance"},
             "resource": {"resourceType": "Provenance"}},
        ]});
        let pat = Known { server_id: Some("Patient/p9".into()), content: [0; 32], acked_at: 0 };
        let known = |p: &str| (p == "urn:uuid:p").then(|| pat.clone());
        let mut rules = sf_rules();
        rules.unsupported_types.insert("Provenance".into());
        let s = select(&b, &[], &rules, 0, &known);
        assert_eq!((s.skipped.as_slice(), s.dropped_unsupported), (&[0, 1][..], 1));
        assert!(s.dropped.contains("urn:uuid:v"));
        // References to a dropped entry go, with an array they leave empty.
        let view = RequestView { dropped: s.dropped.clone(), ..RequestView::default() };
        let target = json!({"fullUrl": "urn:uuid:t", "request": {"method": "POST", "url": "Observation"},
            "resource": {"resourceType": "Observation", "focus": {"reference": "urn:uuid:v"},
                         "basedOn": [{"reference": "urn:uuid:v"}], "derivedFrom": [{"reference": "urn:uuid:v"}, {"reference": "urn:uuid:x"}]}});
        let stripped = rewrite(&target, &rules, &view, &|_| None);
        assert_eq!(
            stripped["resource"],
            json!({"resourceType": "Observation", "derivedFrom": [{"reference": "urn:uuid:x"}]})
        );
        rules.unsupported = Unsupported::DeadLetter;
        let s = select(&b, &[], &rules, 0, &|_| None);
        assert_eq!(s.send.len(), 1);
        assert_eq!(s.refused, [(1, "entry 1: resource type Provenance is not supported by the target".to_string())]);
        // Unknown: POST without ifNoneExist.
        let e = rewrite(&s.send[0].1, &rules, &RequestView::default(), &|_| None);
        assert_eq!(e["request"], json!({"method": "POST", "url": "Patient"}));
    }

    #[test]
    fn generic_references_to_left_out_entries_use_their_outside_name() {
        let p = json!({"fullUrl": "urn:uuid:p", "request": {"method": "PUT", "url": "Patient?identifier=s|v"},
                       "resource": {"resourceType": "Patient"}});
        let b = json!({"type": "transaction", "entry": [p.clone(),
            {"fullUrl": "urn:uuid:o", "request": {"method": "PUT", "url": "Observation/1"},
             "resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:p"}}}]});
        let known_p = Known { server_id: None, content: content_hash(&p), acked_at: 0 };
        let known = |u: &str| (u == "urn:uuid:p").then(|| known_p.clone());
        let rules = Rules { reassert_ms: 10, economy: true, ..Rules::default() };
        let off = Rules { economy: false, ..rules.clone() };
        assert!(select(&b, &[], &off, 1, &known).skipped.is_empty(), "economy off: everything is written");
        let s = select(&b, &[], &rules, 1, &known);
        assert_eq!(s.skipped, [0]);
        let view = RequestView {
            in_request: ["urn:uuid:o".to_string()].into(),
            outside_names: s.outside_names.clone(),
            ..RequestView::default()
        };
        let obs = rewrite(&s.send[0].1, &rules, &view, &known);
        assert_eq!(obs["resource"]["subject"]["reference"], "Patient?identifier=s|v");
        assert_eq!(obs["request"]["url"], "Observation/1", "generic requests are kept");
    }

    #[test]
    fn answers_teach_server_ids_and_a_lost_resource_is_forgotten() {
        assert_eq!(server_id("Patient/abc/_history/1", "Patient").as_deref(), Some("Patient/abc"));
        assert_eq!(server_id("https://x/fhir/Patient/abc", "Patient").as_deref(), Some("Patient/abc"));
        assert_eq!(server_id("https://x/fhir/Encounter/1", "Patient"), None);
        let answers = [
            Answered {
                placeholder: Some("urn:uuid:a"),
                kind: "Patient",
                content: [1; 32],
                status: Some(201),
                location: Some("Patient/s1/_history/1"),
            },
            Answered {
                placeholder: Some("urn:uuid:b"),
                kind: "Patient",
                content: [2; 32],
                status: Some(410),
                location: None,
            },
            Answered {
                placeholder: Some("urn:uuid:c"),
                kind: "Patient",
                content: [3; 32],
                status: Some(424),
                location: None,
            },
        ];
        let key = |p: &str| [p.len() as u8 + p.as_bytes()[9]; 32];
        let changes = learn(&answers, 5, &key);
        assert_eq!(changes.len(), 2);
        assert!(
            matches!(&changes[0], Change::Remember(_, k) if k.server_id.as_deref() == Some("Patient/s1") && k.acked_at == 5)
        );
        assert!(matches!(&changes[1], Change::Forget(_)));
    }
}
