//! The sink's FHIR semantics, one behaviour per test, through `Target::send` as the forwarder
//! calls it.

use serde_json::{json, Value};

use super::*;
use crate::fhir::bundle::conditional_url;
use crate::fhir::model::Identity;

const MRN: &str = "http://hosp.example/mrn";
const U1: &str = "11111111-1111-5111-8111-111111111111";
const U2: &str = "22222222-2222-5222-8222-222222222222";

fn sink() -> (tempfile::TempDir, Sink) {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::open(&dir.path().join("fhir-sink")).unwrap();
    (dir, sink)
}

fn send(sink: &Sink, bundle: &Value) -> (u16, Value) {
    let r = sink.send(bundle.to_string().as_bytes()).unwrap();
    (r.status, serde_json::from_slice(&r.body).unwrap())
}

fn transaction(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn batch(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "batch", "entry": entries})
}

/// `PUT Patient?identifier=<MRN>|<mrn>` as the gateway writes it.
fn patient(full_url: &str, mrn: &str, family: &str) -> Value {
    let url = conditional_url("Patient", &Identity { system: MRN.into(), value: mrn.into() });
    json!({"fullUrl": format!("urn:uuid:{full_url}"),
           "resource": {"resourceType": "Patient", "identifier": [{"system": MRN, "value": mrn}],
                        "name": [{"family": family}]},
           "request": {"method": "PUT", "url": url}})
}

fn observation(id: &str, subject: &str, value: i64) -> Value {
    json!({"fullUrl": format!("urn:uuid:{id}"),
           "resource": {"resourceType": "Observation", "id": id, "status": "final",
                        "subject": {"reference": subject}, "valueQuantity": {"value": value}},
           "request": {"method": "PUT", "url": format!("Observation/{id}")}})
}

fn statuses(answer: &Value) -> Vec<String> {
    answer["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap().to_string()).collect()
}

fn issue_code(answer: &Value) -> &str {
    assert_eq!(answer["resourceType"], "OperationOutcome", "{answer}");
    answer["issue"][0]["code"].as_str().unwrap()
}

#[test]
fn conditional_update_creates_then_updates_then_refuses_two_matches() {
    let (_d, sink) = sink();
    // Search escapes and percent-encoding on the way: the value holds `|`, `,` and a space.
    let mrn = "A|1, 2";
    let (status, answer) = send(&sink, &transaction(vec![patient(U1, mrn, "Doe")]));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["type"], "transaction-response");
    assert_eq!(statuses(&answer), ["201 Created"]);
    assert_eq!(answer["entry"][0]["response"]["location"], format!("Patient/{U1}/_history/1"), "the fullUrl's id");

    let (_, answer) = send(&sink, &transaction(vec![patient(U2, mrn, "Roe")]));
    assert_eq!(statuses(&answer), ["200 OK"]);
    assert_eq!(answer["entry"][0]["response"]["location"], format!("Patient/{U1}/_history/2"), "the match is updated");
    let stored = sink.resources("Patient").unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((&stored[0]["name"][0]["family"], &stored[0]["meta"]["versionId"]), (&json!("Roe"), &json!("2")));

    // A second resource with the same identifier: the conditional update no longer knows which.
    let twin = json!({"resource": {"resourceType": "Patient", "id": "twin", "identifier": [{"system": MRN, "value": mrn}]},
                      "request": {"method": "PUT", "url": "Patient/twin"}});
    assert_eq!(send(&sink, &transaction(vec![twin])).0, 200);
    let (status, answer) = send(&sink, &transaction(vec![patient(U1, mrn, "Poe")]));
    assert_eq!(status, 412);
    assert_eq!(issue_code(&answer), "multiple-matches");
    assert!(!answer.to_string().contains("A|1") && !answer.to_string().contains(MRN), "no identifier in the outcome");
    assert_eq!(sink.read("Patient", U1).unwrap().unwrap()["name"][0]["family"], "Roe");
}

#[test]
fn if_none_exist_leaves_a_match_alone_and_creates_otherwise() {
    let (_d, sink) = sink();
    let post = |family: &str| {
        json!({"fullUrl": format!("urn:uuid:{U1}"),
               "resource": {"resourceType": "Patient", "identifier": [{"system": MRN, "value": "7"}], "name": [{"family": family}]},
               "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={MRN}|7")}})
    };
    let (status, answer) = send(&sink, &transaction(vec![post("Doe"), observation(U2, &format!("urn:uuid:{U1}"), 1)]));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(statuses(&answer), ["201 Created", "201 Created"]);
    let id = sink.resources("Patient").unwrap()[0]["id"].as_str().unwrap().to_string();
    assert_eq!(id, U1, "a created resource takes the fullUrl's id when it is free");
    assert_eq!(sink.read("Observation", U2).unwrap().unwrap()["subject"]["reference"], format!("Patient/{id}"));

    let (_, answer) = send(&sink, &transaction(vec![post("Changed"), observation(U2, &format!("urn:uuid:{U1}"), 2)]));
    assert_eq!(statuses(&answer), ["200 OK", "200 OK"]);
    assert_eq!(answer["entry"][0]["response"]["location"], format!("Patient/{id}/_history/1"));
    let patients = sink.resources("Patient").unwrap();
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0]["name"][0]["family"], "Doe", "nothing written on a match");
    assert_eq!(patients[0]["meta"]["versionId"], "1");
    assert_eq!(sink.read("Observation", U2).unwrap().unwrap()["subject"]["reference"], format!("Patient/{id}"));

    // A plain POST always creates.
    let plain = json!({"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}});
    let (_, answer) = send(&sink, &batch(vec![plain.clone(), plain]));
    assert_eq!(statuses(&answer), ["201 Created", "201 Created"]);
    assert_eq!(sink.count("Patient").unwrap(), 3);
}

#[test]
fn a_transaction_with_a_bad_entry_writes_nothing() {
    let (_d, sink) = sink();
    let good = || patient(U1, "1", "Doe");
    let mismatched =
        json!({"resource": {"resourceType": "Observation"}, "request": {"method": "PUT", "url": "Patient/x"}});
    let dangling = observation(U2, "urn:uuid:33333333-3333-5333-8333-333333333333", 1);
    let plain_obs = observation(U2, "Patient/elsewhere", 1);
    let twice = observation(U2, "Patient/elsewhere", 2);
    let cases = [
        vec![good(), plain_obs.clone(), mismatched],
        // Refused in the second step, after the patient was written.
        vec![good(), dangling],
        vec![good(), plain_obs.clone(), twice],
    ];
    for entries in cases {
        let (status, answer) = send(&sink, &transaction(entries));
        assert_eq!(status, 400, "{answer}");
        assert_eq!(issue_code(&answer), "invalid");
        assert!(answer["issue"][0]["diagnostics"].as_str().unwrap().starts_with("Bundle.entry["));
        assert!(sink.types().unwrap().is_empty(), "rolled back: {:?}", sink.types());
    }
    // A 412 in the middle of a transaction rolls back what came before it.
    for i in ["a", "b"] {
        let twin = json!({"resource": {"resourceType": "Patient", "id": i, "identifier": [{"system": MRN, "value": "9"}]},
                          "request": {"method": "PUT", "url": format!("Patient/{i}")}});
        send(&sink, &transaction(vec![twin]));
    }
    let (s, _) = send(&sink, &transaction(vec![good(), patient(U2, "9", "Twin"), plain_obs]));
    assert_eq!(s, 412);
    assert_eq!(sink.count("Patient").unwrap(), 2);
    assert_eq!(sink.count("Observation").unwrap(), 0);
}

#[test]
fn references_to_full_urls_become_the_ids_the_entries_ended_at() {
    let (_d, sink) = sink();
    // The patient already exists under another id: the conditional update finds it, and the
    // observation's reference to the entry's fullUrl follows it there.
    let existing = json!({"resource": {"resourceType": "Patient", "id": "p-old", "identifier": [{"system": MRN, "value": "5"}]},
                          "request": {"method": "PUT", "url": "Patient/p-old"}});
    send(&sink, &transaction(vec![existing]));
    // The observation comes first in the bundle: resolution does not depend on entry order.
    let (status, answer) =
        send(&sink, &transaction(vec![observation(U2, &format!("urn:uuid:{U1}"), 3), patient(U1, "5", "Doe")]));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(sink.read("Observation", U2).unwrap().unwrap()["subject"]["reference"], "Patient/p-old");
    assert_eq!(sink.count("Patient").unwrap(), 1);
    // In a batch too.
    let (_, answer) =
        send(&sink, &batch(vec![observation("o2", &format!("urn:uuid:{U1}"), 4), patient(U1, "6", "New")]));
    assert_eq!(statuses(&answer), ["201 Created", "201 Created"]);
    assert_eq!(sink.read("Observation", "o2").unwrap().unwrap()["subject"]["reference"], format!("Patient/{U1}"));
}

#[test]
fn an_unchanged_update_keeps_its_version() {
    let (_d, sink) = sink();
    let bundle = transaction(vec![patient(U1, "1", "Doe"), observation(U2, &format!("urn:uuid:{U1}"), 5)]);
    send(&sink, &bundle);
    let before = sink.read("Patient", U1).unwrap().unwrap();
    let (_, answer) = send(&sink, &bundle);
    assert_eq!(statuses(&answer), ["200 OK", "200 OK"]);
    assert_eq!(answer["entry"][0]["response"]["location"], format!("Patient/{U1}/_history/1"));
    assert_eq!(answer["entry"][0]["response"]["lastModified"], before["meta"]["lastUpdated"]);
    assert_eq!(sink.read("Patient", U1).unwrap().unwrap(), before, "not even lastUpdated moves");
    let (_, answer) = send(&sink, &transaction(vec![observation(U2, &format!("Patient/{U1}"), 6)]));
    assert_eq!(answer["entry"][0]["response"]["location"], format!("Observation/{U2}/_history/2"));
    let obs = sink.read("Observation", U2).unwrap().unwrap();
    assert_eq!((&obs["meta"]["versionId"], &obs["valueQuantity"]["value"]), (&json!("2"), &json!(6)));
    let at = obs["meta"]["lastUpdated"].as_str().unwrap();
    assert!(at.parse::<jiff::Timestamp>().is_ok() && at.ends_with('Z') && at.len() == 24, "{at}");
}

#[test]
fn a_reopened_sink_keeps_its_resources_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    {
        let sink = Sink::open(dir.path()).unwrap();
        send(&sink, &transaction(vec![patient(U1, "1", "Doe")]));
    }
    let reader = Sink::open_read(dir.path()).unwrap();
    assert_eq!(reader.count("Patient").unwrap(), 1);
    let sink = Sink::open(dir.path()).unwrap();
    let (_, answer) = send(&sink, &transaction(vec![patient(U2, "1", "Roe")]));
    assert_eq!(answer["entry"][0]["response"]["location"], format!("Patient/{U1}/_history/2"));
    assert_eq!(reader.resources("Patient").unwrap()[0]["name"][0]["family"], "Roe", "a reader sees commits");
    assert!(matches!(Sink::open_read(&dir.path().join("none")), Err(OpenError::Missing { .. })));
}

#[test]
fn batch_entries_succeed_or_fail_on_their_own() {
    let (_d, sink) = sink();
    for i in ["a", "b"] {
        let twin = json!({"resource": {"resourceType": "Patient", "id": i, "identifier": [{"system": MRN, "value": "9"}]},
                          "request": {"method": "PUT", "url": format!("Patient/{i}")}});
        send(&sink, &batch(vec![twin]));
    }
    let broken = json!({"resource": {"resourceType": "../etc"}, "request": {"method": "PUT", "url": "x"}});
    let read_missing = json!({"request": {"method": "GET", "url": "Patient/nobody"}});
    let read_a = json!({"request": {"method": "GET", "url": "Patient/a"}});
    let entries = vec![patient(U1, "1", "Doe"), patient(U2, "9", "Twin"), broken, read_missing, read_a];
    let (status, answer) = send(&sink, &batch(entries));
    assert_eq!(status, 200);
    assert_eq!(answer["type"], "batch-response");
    assert_eq!(
        statuses(&answer),
        ["201 Created", "412 Precondition Failed", "400 Bad Request", "404 Not Found", "200 OK"]
    );
    assert_eq!(answer["entry"][1]["response"]["outcome"]["issue"][0]["code"], "multiple-matches");
    assert_eq!(answer["entry"][4]["resource"]["id"], "a");
    assert_eq!(sink.count("Patient").unwrap(), 3);
}

#[test]
fn identifiers_are_reindexed_on_update_and_delete() {
    let (_d, sink) = sink();
    send(&sink, &transaction(vec![patient(U1, "old", "Doe")]));
    // The same resource by id, now with another identifier.
    let renumbered = json!({"resource": {"resourceType": "Patient", "id": U1, "identifier": [{"system": MRN, "value": "new"}]},
                            "request": {"method": "PUT", "url": format!("Patient/{U1}")}});
    send(&sink, &transaction(vec![renumbered]));
    let (_, answer) = send(&sink, &transaction(vec![patient(U2, "new", "Doe")]));
    assert_eq!(answer["entry"][0]["response"]["location"], format!("Patient/{U1}/_history/3"), "found by the new one");
    let (_, answer) = send(&sink, &transaction(vec![patient(U2, "old", "Doe")]));
    assert_eq!(statuses(&answer), ["201 Created"], "the old identifier no longer matches");
    assert_eq!(sink.count("Patient").unwrap(), 2);

    // DELETE goes first in a transaction, so a conditional update after it creates anew.
    let delete = json!({"request": {"method": "DELETE", "url": format!("Patient?identifier={MRN}|new")}});
    let (status, answer) =
        send(&sink, &transaction(vec![patient("33333333-3333-5333-8333-333333333333", "x", "X"), delete]));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(statuses(&answer), ["201 Created", "204 No Content"]);
    assert!(sink.read("Patient", U1).unwrap().is_none());
    let (_, answer) = send(&sink, &transaction(vec![patient(U1, "new", "Back")]));
    assert_eq!(statuses(&answer), ["201 Created"]);
}

#[test]
fn malformed_bundles_get_400_without_content() {
    let (_d, sink) = sink();
    let cases: [(&[u8], &str); 5] = [
        (b"{not json", "structure"),
        (b"[]", "structure"),
        (br#"{"resourceType": "Patient", "type": "transaction"}"#, "structure"),
        (br#"{"resourceType": "Bundle", "type": "collection"}"#, "not-supported"),
        (br#"{"resourceType": "Bundle", "type": "batch", "entry": {}}"#, "structure"),
    ];
    for (body, code) in cases {
        let r = sink.send(body).unwrap();
        assert_eq!(r.status, 400);
        let answer: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(issue_code(&answer), code);
    }
    let secret = json!({"resource": {"resourceType": "Patient", "id": "SECRET-NAME"}, "request": {"method": "PUT", "url": "Patient/SECRET-MRN"}});
    let (status, answer) = send(&sink, &transaction(vec![secret]));
    assert_eq!(status, 400);
    assert!(!answer.to_string().contains("SECRET"), "{answer}");
    let (status, answer) = send(&sink, &transaction(vec![]));
    assert_eq!((status, &answer["entry"]), (200, &json!([])));
}

#[test]
fn export_writes_one_ndjson_file_per_type() {
    let (dir, sink) = sink();
    send(&sink, &transaction(vec![patient(U1, "1", "Doe"), observation(U2, &format!("urn:uuid:{U1}"), 1)]));
    send(&sink, &transaction(vec![patient("33333333-3333-5333-8333-333333333333", "2", "Roe")]));
    let out = dir.path().join("out");
    let counts = export::export(&Sink::open_read(sink.dir()).unwrap(), &out).unwrap();
    assert_eq!(counts, vec![("Observation".to_string(), 1), ("Patient".to_string(), 2)]);
    let mut files: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files, ["Observation.ndjson", "Patient.ndjson"], "no temporary file left");
    let text = std::fs::read_to_string(out.join("Patient.ndjson")).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        lines.iter().map(|p| p["id"].as_str().unwrap()).collect::<Vec<_>>(),
        [U1, "33333333-3333-5333-8333-333333333333"]
    );
}

/// Every bundle the converter makes of the HL7 corpus, in the generic profile: stored without
/// a refused entry, and a replay of the whole corpus adds nothing (conditional writes). The
/// salesforce profile's bundles are not idempotent on their own: its first writes are POSTs
/// that the forwarder's id map turns into PUTs (tests/salesforce.rs, tests/story.rs).
#[test]
fn the_corpus_is_stored_once() {
    use crate::fhir::bundle::Profile;
    use crate::fhir::site::SiteMaps;

    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/hl7");
    let mut files: Vec<_> = std::fs::read_dir(&corpus).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() > 50);
    let site = SiteMaps::empty(jiff::tz::TimeZone::UTC);
    {
        let profile = Profile::Generic;
        let (_d, sink) = sink();
        let deliver_all = || {
            for file in &files {
                let raw = std::fs::read(file).unwrap();
                let conv = crate::fhir::convert::convert(&raw, &site).unwrap();
                for b in crate::fhir::bundle::bundles(&conv, profile).unwrap() {
                    let r = sink.send(b.to_string().as_bytes()).unwrap();
                    let answer: Value = serde_json::from_slice(&r.body).unwrap();
                    assert_eq!(r.status, 200, "{} {profile}: {answer}", file.display());
                    for s in statuses(&answer) {
                        assert!(s.starts_with('2'), "{} {profile}: {s} in {answer}", file.display());
                    }
                }
            }
            let types = sink.types().unwrap();
            let ids: Vec<(String, String)> = types
                .iter()
                .flat_map(|t| {
                    sink.resources(t).unwrap().into_iter().map(|r| (t.clone(), r["id"].as_str().unwrap().to_string()))
                })
                .collect();
            ids
        };
        let first = deliver_all();
        assert!(first.len() > 300, "{}", first.len());
        assert_eq!(deliver_all(), first, "{profile}: a replay adds nothing");
    }
}
