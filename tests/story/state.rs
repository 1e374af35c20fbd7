//! Reading a FHIR server's final state (the Node test server's `/__dump`, the embedded sink)
//! and finding things in it: resources by identifier, references, differences between two
//! states.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use gateway_tests::{gateway_bin, Setup};
use serde_json::Value;

/// A server's resources by type (types with none are left out).
pub type State = BTreeMap<String, Vec<Value>>;

pub fn dump_state(dump: &Value) -> State {
    let mut state = State::new();
    for (kind, list) in dump.as_object().expect("/__dump is an object") {
        let list = list.as_array().cloned().unwrap_or_default();
        if !list.is_empty() {
            state.insert(kind.clone(), list);
        }
    }
    state
}

/// The embedded sink's final state. Through `gateway sink export` (issue 10 item 4) once the
/// binary has that command, else from the sink's `<Type>.ndjson` files as they are today.
pub fn sink_state(setup: &Setup) -> State {
    let has_export =
        Command::new(gateway_bin()).args(["sink", "export", "--help"]).output().is_ok_and(|o| o.status.success());
    if !has_export {
        return ndjson_state(&setup.dir.path().join("var/fhir-sink"));
    }
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(gateway_bin())
        .args(["sink", "export", "--config"])
        .arg(setup.config_path())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "gateway sink export: {run:?}");
    ndjson_state(out.path())
}

/// Every resource of every `*.ndjson` file in `dir`, by its `resourceType`.
pub fn ndjson_state(dir: &Path) -> State {
    let mut state = State::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return state };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "ndjson") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines().filter(|l| !l.trim().is_empty()) {
            let r: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let kind = r["resourceType"].as_str().unwrap_or("?").to_string();
            state.entry(kind).or_default().push(r);
        }
    }
    state
}

pub fn of<'s>(state: &'s State, kind: &str) -> &'s [Value] {
    state.get(kind).map_or(&[], Vec::as_slice)
}

pub fn counts(state: &State) -> BTreeMap<&str, usize> {
    state.iter().map(|(k, v)| (k.as_str(), v.len())).collect()
}

pub fn identifiers(r: &Value) -> impl Iterator<Item = &Value> {
    r["identifier"].as_array().into_iter().flatten()
}

pub fn has_identifier(r: &Value, value: &str) -> bool {
    identifiers(r).any(|i| i["value"].as_str() == Some(value))
}

pub fn with_identifier<'s>(state: &'s State, kind: &str, value: &str) -> Vec<&'s Value> {
    of(state, kind).iter().filter(|r| has_identifier(r, value)).collect()
}

/// The stored resource a reference names: `Type/id` (server, salesforce) or `urn:uuid:<id>`
/// (the sink keeps the transaction's fullUrls).
pub fn resolve<'s>(state: &'s State, reference: &Value) -> Option<&'s Value> {
    let text = reference["reference"].as_str()?;
    if let Some(id) = text.strip_prefix("urn:uuid:") {
        return state.values().flatten().find(|r| r["id"].as_str() == Some(id));
    }
    let mut parts = text.split('/');
    let (kind, id) = (parts.next()?, parts.next()?);
    of(state, kind).iter().find(|r| r["id"].as_str() == Some(id))
}

/// True when `reference` names a stored Patient with identifier `mrn`.
pub fn names_patient(state: &State, reference: &Value, mrn: &str) -> bool {
    resolve(state, reference).is_some_and(|p| p["resourceType"] == "Patient" && has_identifier(p, mrn))
}

/// Where each clinical type points at its patient.
pub fn patient_refs(r: &Value) -> Vec<&Value> {
    let kind = r["resourceType"].as_str().unwrap_or("");
    match kind {
        "Appointment" => r["participant"].as_array().into_iter().flatten().map(|p| &p["actor"]).collect(),
        "Immunization" | "AllergyIntolerance" | "RelatedPerson" => vec![&r["patient"]],
        "Coverage" => vec![&r["beneficiary"]],
        _ => vec![&r["subject"]],
    }
}

/// The resources of `kind` that belong to the patient with MRN `mrn`.
pub fn of_patient<'s>(state: &'s State, kind: &str, mrn: &str) -> Vec<&'s Value> {
    of(state, kind).iter().filter(|r| patient_refs(r).into_iter().any(|x| names_patient(state, x, mrn))).collect()
}

/// `Type/<id prefix> <status> [identifier values]`, for assertion messages.
pub fn brief(r: &Value) -> String {
    let ids: Vec<&str> = identifiers(r).filter_map(|i| i["value"].as_str()).collect();
    let id = r["id"].as_str().unwrap_or("?");
    let status = r["status"].as_str().unwrap_or("-");
    format!("{}/{} {status} {ids:?}", r["resourceType"].as_str().unwrap_or("?"), &id[..id.len().min(8)])
}

/// The first few [`brief`]s of `rs`.
pub fn briefs(rs: &[&Value]) -> String {
    let mut out: Vec<String> = rs.iter().take(4).map(|r| brief(r)).collect();
    if rs.len() > 4 {
        out.push(format!("… {} more", rs.len() - 4));
    }
    out.join("; ")
}

pub fn code_of(r: &Value) -> Vec<&str> {
    r["code"]["coding"].as_array().into_iter().flatten().filter_map(|c| c["code"].as_str()).collect()
}

pub fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// The state without `meta` (version ids and timestamps change on every write).
pub fn without_meta(state: &State) -> State {
    let mut out = state.clone();
    for list in out.values_mut() {
        for r in list.iter_mut() {
            if let Some(o) = r.as_object_mut() {
                o.remove("meta");
            }
        }
        list.sort_by_key(|r| (r["id"].as_str().unwrap_or("").to_string(), r.to_string()));
    }
    out
}

/// What differs between two states: counts, resources added or removed, fields changed.
pub fn state_diff(before: &State, after: &State) -> Vec<String> {
    let (before, after) = (without_meta(before), without_meta(after));
    let mut out = Vec::new();
    let kinds: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for kind in kinds {
        let by_id = |s: &State| -> BTreeMap<String, Value> {
            of(s, kind).iter().map(|r| (r["id"].as_str().unwrap_or("").to_string(), r.clone())).collect()
        };
        let (b, a) = (by_id(&before), by_id(&after));
        if b.len() != a.len() {
            out.push(format!("{kind}: {} before, {} after", b.len(), a.len()));
        }
        for (id, r) in &b {
            match a.get(id) {
                None => out.push(format!("{kind}/{id} is gone ({})", brief(r))),
                Some(new) if new != r => {
                    let fields: Vec<&String> = r
                        .as_object()
                        .into_iter()
                        .chain(new.as_object())
                        .flat_map(|o| o.keys())
                        .filter(|k| r[k.as_str()] != new[k.as_str()])
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    let show: Vec<String> =
                        fields.iter().map(|f| format!("{f}: {} -> {}", r[f.as_str()], new[f.as_str()])).collect();
                    out.push(format!("{kind}/{id} changed in {fields:?} {show:?}"));
                }
                Some(_) => {}
            }
        }
        for (id, r) in &a {
            if !b.contains_key(id) {
                out.push(format!("{kind}/{id} is new ({})", brief(r)));
            }
        }
    }
    out
}
