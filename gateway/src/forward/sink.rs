//! The embedded default target: a local FHIR sink, one NDJSON file per resource type
//! (`Patient.ndjson`, …), one line per resource. Every entry is an upsert keyed by the
//! resource id (a conditional update's id comes from its `urn:uuid` fullUrl, which the
//! bundle builder derives from the business identifier), so delivering a bundle twice leaves
//! one line per resource. Files are rewritten atomically (temp file, fsync, rename).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::client::{Response, SendError, Target};

pub struct SinkTarget {
    dir: PathBuf,
    /// One writer at a time: each upsert rewrites whole files.
    lock: Mutex<()>,
}

/// Namespace for ids of entries that carry neither an id nor a `urn:uuid` fullUrl.
const SINK_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b1f_1f0c_58a4_4d1e_9b0e_5a1d_2c3e_4f50);

impl SinkTarget {
    pub fn new(dir: &Path) -> std::io::Result<SinkTarget> {
        std::fs::create_dir_all(dir)?;
        Ok(SinkTarget { dir: dir.to_path_buf(), lock: Mutex::new(()) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn upsert(&self, kind: &str, resources: Vec<(String, Value)>) -> std::io::Result<()> {
        let path = self.dir.join(format!("{kind}.ndjson"));
        let mut order: Vec<String> = Vec::new();
        let mut lines: BTreeMap<String, String> = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let id = serde_json::from_str::<Value>(line)
                    .ok()
                    .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string));
                let id = id.unwrap_or_else(|| format!("line-{}", order.len()));
                if lines.insert(id.clone(), line.to_string()).is_none() {
                    order.push(id);
                }
            }
        }
        for (id, resource) in resources {
            if lines.insert(id.clone(), resource.to_string()).is_none() {
                order.push(id);
            }
        }
        let tmp = self.dir.join(format!(".{kind}.ndjson.tmp"));
        let mut f = File::create(&tmp)?;
        let mut buf = String::new();
        for id in &order {
            buf.push_str(&lines[id]);
            buf.push('\n');
        }
        f.write_all(buf.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()
    }
}

fn entry_id(entry: &Value, resource: &Value) -> String {
    if let Some(id) = resource.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        return id.to_string();
    }
    if let Some(uuid) = entry.get("fullUrl").and_then(Value::as_str).and_then(|u| u.strip_prefix("urn:uuid:")) {
        return uuid.to_string();
    }
    let url = entry.get("request").and_then(|r| r.get("url")).and_then(Value::as_str).unwrap_or("");
    uuid::Uuid::new_v5(&SINK_NAMESPACE, url.as_bytes()).to_string()
}

fn outcome(code: &str) -> Value {
    json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code}]})
}

impl Target for SinkTarget {
    fn send(&self, bundle: &[u8]) -> Result<Response, SendError> {
        let bad =
            |code: &str| Response { status: 400, body: outcome(code).to_string().into_bytes(), ..Response::default() };
        let Ok(bundle) = serde_json::from_slice::<Value>(bundle) else { return Ok(bad("structure")) };
        let kind = bundle.get("type").and_then(Value::as_str).unwrap_or("transaction").to_string();
        let entries = bundle.get("entry").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut by_type: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
        let mut statuses = Vec::with_capacity(entries.len());
        for entry in &entries {
            let resource = entry.get("resource").cloned().unwrap_or(Value::Null);
            let rtype = resource.get("resourceType").and_then(Value::as_str).unwrap_or("");
            if rtype.is_empty() || !rtype.bytes().all(|b| b.is_ascii_alphabetic()) {
                if kind != "batch" {
                    return Ok(bad("invalid"));
                }
                statuses.push(json!({"response": {"status": "400 Bad Request", "outcome": outcome("invalid")}}));
                continue;
            }
            let id = entry_id(entry, &resource);
            let mut resource = resource.clone();
            resource["id"] = Value::String(id.clone());
            statuses.push(json!({"response": {"status": "200 OK", "location": format!("{rtype}/{id}")}}));
            by_type.entry(rtype.to_string()).or_default().push((id, resource));
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        for (rtype, resources) in by_type {
            self.upsert(&rtype, resources)
                .map_err(|e| SendError::Connect(format!("sink write failed: {:?}", e.kind())))?;
        }
        let body = json!({"resourceType": "Bundle", "type": format!("{kind}-response"), "entry": statuses});
        Ok(Response { status: 200, body: body.to_string().into_bytes(), ..Response::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivering_twice_keeps_one_line_per_resource() {
        let dir = std::env::temp_dir().join(format!("gw-sink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sink = SinkTarget::new(&dir).unwrap();
        let bundle = |family: &str| {
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": "urn:uuid:11111111-1111-5111-8111-111111111111",
                 "resource": {"resourceType": "Patient", "name": [{"family": family}]},
                 "request": {"method": "PUT", "url": "Patient?identifier=urn:mrn|1"}},
                {"resource": {"resourceType": "Encounter", "id": "e1"}, "request": {"method": "PUT", "url": "Encounter/e1"}},
                {"resource": {"resourceType": "Observation", "status": "final"}, "request": {"method": "PUT", "url": "Observation?identifier=x|y"}},
            ]})
            .to_string()
        };
        let r = sink.send(bundle("Doe").as_bytes()).unwrap();
        assert_eq!(r.status, 200);
        let answer: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(answer["type"], "transaction-response");
        assert_eq!(answer["entry"].as_array().unwrap().len(), 3);
        sink.send(bundle("Doe").as_bytes()).unwrap();
        sink.send(bundle("Roe").as_bytes()).unwrap();
        let patients = std::fs::read_to_string(dir.join("Patient.ndjson")).unwrap();
        assert_eq!(patients.lines().count(), 1, "{patients}");
        let p: Value = serde_json::from_str(patients.lines().next().unwrap()).unwrap();
        assert_eq!(p["id"], "11111111-1111-5111-8111-111111111111");
        assert_eq!(p["name"][0]["family"], "Roe", "the last delivery wins");
        for kind in ["Encounter", "Observation"] {
            assert_eq!(std::fs::read_to_string(dir.join(format!("{kind}.ndjson"))).unwrap().lines().count(), 1);
        }
        // A second patient appends; the first keeps its place.
        let other = json!({"type": "batch", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p2"}, "request": {"method": "PUT", "url": "Patient/p2"}},
            {"resource": {"resourceType": "../etc"}, "request": {"method": "PUT", "url": "x"}}]});
        let r = sink.send(other.to_string().as_bytes()).unwrap();
        let answer: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(answer["entry"][1]["response"]["status"], "400 Bad Request");
        let patients = std::fs::read_to_string(dir.join("Patient.ndjson")).unwrap();
        assert_eq!(patients.lines().count(), 2);
        assert!(patients.lines().nth(1).unwrap().contains("\"p2\""));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
