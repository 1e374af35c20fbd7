//! The salesforce profile against the test server's salesforce mode, which behaves as the
//! Salesforce Healthcare API documentation describes (server-assigned ids, `urn:uuid`
//! placeholders resolved within a batch, 424 for a failed dependency, a list of supported
//! types): write economy, the id map across a restart, 424 handling and unsupported types.
//!
//! Needs Node 20.19+ and `npm ci --prefix tests/fhir-server`, and `cargo build -p gateway`.

use std::time::Duration;

use gateway_tests::*;
use serde_json::{json, Value};

const PLAIN: &str = "[[listener]]\nname = \"mllp\"\nbind = \"127.0.0.1:0\"\n";
const DELIVERY: Duration = Duration::from_secs(60);

fn salesforce_server() -> FhirServer {
    let server = FhirServer::start(&[]);
    server.control(json!({"salesforce": true}));
    server
}

fn setup_for(server: &FhirServer, more: &str) -> Setup {
    let mut setup = Setup::new(PLAIN);
    let keys = format!("profile = \"salesforce\"\n{more}");
    setup.extra = format!("{}\n{}", cloud(&server.base_url(), 15, &keys), mapping());
    setup
}

fn send_ok(c: &mut Mllp, raw: &[u8]) {
    let ack = c.call(raw);
    assert!(matches!(msa(&ack).0.as_str(), "AA" | "CA"), "not accepted: {ack:?}");
}

fn delivered(setup: &Setup) {
    wait_for("every message delivered", DELIVERY, || (undelivered(&setup.db_path()) == 0).then_some(()));
}

fn sf_counter(server: &FhirServer, name: &str) -> u64 {
    server.status()["counters"]["salesforce"][name].as_u64().unwrap()
}

fn patients(server: &FhirServer) -> Vec<Value> {
    server.dump()["Patient"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_second_identical_message_writes_nothing() {
    let server = salesforce_server();
    let setup = setup_for(&server, "");
    let gw = setup.start();
    let mut c = gw.connect();
    send_ok(&mut c, &adt("SAME-1"));
    delivered(&setup);
    let (requests, entries) = (sf_counter(&server, "requests"), sf_counter(&server, "entries"));
    let sent = gw.metric("gateway_forward_entries_sent_total");
    assert!(entries > 0 && sent > 0.0);
    // The same message again (an EHR resend: new control ID).
    send_ok(&mut c, &adt("SAME-2"));
    delivered(&setup);
    assert_eq!(sf_counter(&server, "requests"), requests, "no request for an unchanged message");
    assert_eq!(sf_counter(&server, "entries"), entries, "no entry written");
    assert_eq!(gw.metric("gateway_forward_entries_sent_total"), sent);
    assert!(gw.metric("gateway_forward_entries_unchanged_total") > 0.0);
    assert!(dead_letters(&setup.db_path()).is_empty());
}

#[test]
fn the_id_map_survives_a_restart_and_updates_go_to_the_server_id() {
    let server = salesforce_server();
    let setup = setup_for(&server, "");
    let gw = setup.start();
    let mut c = gw.connect();
    send_ok(&mut c, &a08(1, 1, "UPD-1"));
    delivered(&setup);
    let first = patients(&server);
    assert_eq!(first.len(), 1);
    let id = first[0]["id"].as_str().unwrap().to_string();
    drop(c);
    gw.terminate();

    let gw = setup.start();
    let mut c = gw.connect();
    let creates = sf_counter(&server, "creates");
    send_ok(&mut c, &a08(1, 2, "UPD-2"));
    delivered(&setup);
    let after = patients(&server);
    assert_eq!(after.len(), 1, "the update after the restart did not create a second Patient");
    assert_eq!(after[0]["id"], id.as_str());
    assert_eq!(after[0]["name"][0]["given"][0], "S0002");
    assert_eq!(sf_counter(&server, "creates"), creates, "nothing created: the Patient and Encounter were PUT");
    assert!(sf_counter(&server, "updates") >= 1);
    assert!(dead_letters(&setup.db_path()).is_empty());
}

#[test]
fn entries_answered_424_are_sent_again_once_their_dependency_succeeds() {
    let server = salesforce_server();
    // The Patient fails once: the Encounter that references it answers 424.
    server.control(json!({"salesforce_fail_type": "Patient", "salesforce_fail_count": 1}));
    let setup = setup_for(&server, "");
    let gw = setup.start();
    let mut c = gw.connect();
    send_ok(&mut c, &a08(7, 1, "DEP-1"));
    delivered(&setup);
    assert!(sf_counter(&server, "failed_dependency") >= 1, "the server answered 424");
    assert!(dead_letters(&setup.db_path()).is_empty());
    let dump = server.dump();
    let patient = &dump["Patient"].as_array().unwrap()[0];
    let encounters = dump["Encounter"].as_array().unwrap();
    assert_eq!(encounters.len(), 1);
    let subject = encounters[0]["subject"]["reference"].as_str().unwrap();
    assert_eq!(subject, format!("Patient/{}", patient["id"].as_str().unwrap()));
    assert!(gw.metric("gateway_forward_retries_total") >= 1.0);
}

#[test]
fn unsupported_types_are_dropped_and_counted_or_dead_lettered() {
    // Default (drop): the ADT's Coverage never reaches the server, the rest does.
    let server = salesforce_server();
    let setup = setup_for(&server, "");
    let gw = setup.start();
    let mut c = gw.connect();
    send_ok(&mut c, &adt("UNS-1"));
    delivered(&setup);
    assert!(gw.metric("gateway_forward_entries_unsupported_total") >= 1.0);
    assert_eq!(sf_counter(&server, "refused_types"), 0, "nothing unsupported was sent");
    assert!(server.dump().get("Coverage").is_none_or(|c| c.as_array().unwrap().is_empty()));
    assert_eq!(patients(&server).len(), 1);
    assert!(dead_letters(&setup.db_path()).is_empty());
    drop(c);
    gw.terminate();

    // dead-letter: the entry is refused at once (no retry), named by type only.
    let server = salesforce_server();
    let setup = setup_for(&server, "unsupported = \"dead-letter\"\nunsupported_types = [\"Encounter\"]");
    let gw = setup.start();
    let mut c = gw.connect();
    send_ok(&mut c, &a08(3, 1, "UNS-2"));
    delivered(&setup);
    let dead = dead_letters(&setup.db_path());
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].1.contains("resource type Encounter is not supported"), "{dead:?}");
    assert!(!dead[0].1.contains("P3"), "no identifiers in the reason");
    assert_eq!(patients(&server).len(), 1, "the Patient was delivered");
    assert_eq!(gw.metric("gateway_forward_retries_total"), 0.0);
}

#[test]
fn a_lost_id_map_is_rebuilt_by_a_search_on_identifier() {
    let server = salesforce_server();
    let setup = setup_for(&server, "");
    let gw = setup.start();
    let mut c = gw.connect();
    send_ok(&mut c, &a08(9, 1, "LOST-1"));
    delivered(&setup);
    let first = patients(&server);
    assert_eq!(first.len(), 1);
    let id = first[0]["id"].as_str().unwrap().to_string();
    assert_eq!(server.dump()["Encounter"].as_array().unwrap().len(), 1);
    drop(c);
    gw.terminate();

    // A new gateway (fresh journal, no id map), the same server: the update finds the records
    // by their identifiers (MRN, visit number) instead of creating them again.
    let setup = setup_for(&server, "");
    let gw = setup.start();
    let mut c = gw.connect();
    let reads = sf_counter(&server, "reads");
    send_ok(&mut c, &a08(9, 2, "LOST-2"));
    delivered(&setup);
    let after = patients(&server);
    assert_eq!(after.len(), 1, "still exactly one Patient");
    assert_eq!(after[0]["id"], id.as_str());
    assert_eq!(after[0]["name"][0]["given"][0], "S0002", "the update was applied to it");
    let dump = server.dump();
    let encounters = dump["Encounter"].as_array().unwrap();
    assert_eq!(encounters.len(), 1, "still exactly one Encounter (the visit number is its identifier)");
    assert_eq!(encounters[0]["subject"]["reference"], format!("Patient/{id}"));
    assert!(gw.metric("gateway_forward_lookups_total{result=\"found\"}") >= 2.0, "the Patient and the Encounter");
    assert!(sf_counter(&server, "reads") > reads);
    assert!(dead_letters(&setup.db_path()).is_empty());
}

#[test]
fn several_records_with_the_identifier_are_refused_not_guessed() {
    let server = salesforce_server();
    // Two Patients with the MRN the message carries, created behind the gateway's back.
    let first = {
        let setup = setup_for(&server, "");
        let gw = setup.start();
        send_ok(&mut gw.connect(), &a08(11, 1, "DUP-1"));
        delivered(&setup);
        gw.terminate();
        patients(&server)[0].clone()
    };
    let mut twin = first.clone();
    twin.as_object_mut().unwrap().remove("id");
    let twin_batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001", "request": {"method": "POST", "url": "Patient"}, "resource": twin}
    ]});
    let (status, text) = http_request(server.addr, "POST", "/fhir/R4", Some(twin_batch.to_string().as_bytes()));
    assert!(status == 200 && text.contains("201 Created"), "{status} {text}");
    let setup = setup_for(&server, "");
    let gw = setup.start();
    send_ok(&mut gw.connect(), &a08(11, 2, "DUP-2"));
    delivered(&setup);
    assert_eq!(patients(&server).len(), 2, "no third Patient");
    let dead = dead_letters(&setup.db_path());
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].1.contains("HTTP 412; issue codes: multiple-matches"), "{dead:?}");
    assert!(!dead[0].1.contains("P11"), "no identifiers in the reason");
    assert!(gw.metric("gateway_forward_lookups_total{result=\"ambiguous\"}") >= 1.0);
}

#[test]
fn patients_go_to_their_own_base_url_and_encounters_name_their_server_id() {
    let server = salesforce_server();
    server.control(json!({"salesforce_patient_base": "/patient-api"}));
    let patient_api = server.base_url().replace("/fhir/R4", "/patient-api");
    let setup = setup_for(&server, &format!("\n[cloud.base_urls]\nPatient = \"{patient_api}\"\n"));
    let gw = setup.start();
    let mut c = gw.connect();
    send_ok(&mut c, &adt("ROUTE-1"));
    delivered(&setup);
    assert!(dead_letters(&setup.db_path()).is_empty());
    let dump = server.dump();
    let patients = dump["Patient"].as_array().unwrap();
    assert_eq!(patients.len(), 1);
    let encounters = dump["Encounter"].as_array().unwrap();
    assert_eq!(encounters.len(), 1);
    let subject = encounters[0]["subject"]["reference"].as_str().unwrap();
    assert_eq!(subject, format!("Patient/{}", patients[0]["id"].as_str().unwrap()));
    assert!(sf_counter(&server, "patient_api_requests") >= 1);
    assert_eq!(sf_counter(&server, "refused_types"), 0, "no Patient entry reached the main base");
    // The Patient (naming its Organization) and the Encounter (naming the Patient) went in
    // rounds of one send: nothing waited for a resend.
    assert_eq!(gw.metric("gateway_forward_retries_total"), 0.0);
}

// ---------------------------------------------------------------- the API budget (bench)

/// A realistic mix of 100 messages for 20 patients: 60 % ADT (an A01, then two A08 that
/// change the name), 25 % ORU, 15 % other (SIU, VXU), each with its own control ID.
fn budget_mix() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/hl7");
    let corpus = |f: &str| String::from_utf8_lossy(&std::fs::read(dir.join(f)).unwrap()).replace("|ER|", "|AL|");
    let oru = ["epic_oru_r01_01.hl7", "cerner_oru_r01_01.hl7", "athena_oru_r01_01.hl7", "athena_oru_r01_02.hl7"];
    let other = ["athena_siu_s12_01.hl7", "cerner_vxu_v04_01.hl7", "athena_vxu_v04_01.hl7"];
    let with_control_id = |raw: String, id: &str| {
        let mut fields: Vec<String> = raw.splitn(11, '|').map(str::to_string).collect();
        fields[9] = id.to_string();
        fields.join("|").into_bytes()
    };
    let mut out = Vec::new();
    for p in 1..=20u64 {
        out.push(gateway::loadgen::sample_adt(&format!("B-A01-{p}"), p));
        for u in 1..=2 {
            out.push(a08(p as usize, u, &format!("B-A08-{p}-{u}")));
        }
    }
    for n in 0..25 {
        out.push(with_control_id(corpus(oru[n % oru.len()]), &format!("B-ORU-{n}")));
    }
    for n in 0..15 {
        out.push(with_control_id(corpus(other[n % other.len()]), &format!("B-OTH-{n}")));
    }
    out
}

/// Sends the mix through a gateway with `profile` and `economy`; returns (entries per
/// message, requests per message, drain seconds).
fn budget_run(profile: &str, economy: bool, latency_ms: u64) -> (f64, f64, f64) {
    let server = FhirServer::start(&[]);
    if profile == "salesforce" {
        server.control(json!({"salesforce": true, "salesforce_latency_ms": latency_ms}));
    }
    let mut setup = Setup::new(PLAIN);
    let keys = format!("profile = \"{profile}\"\nwrite_economy = {economy}\nconcurrency = 5");
    setup.extra = format!("{}\n{}", cloud(&server.base_url(), 30, &keys), mapping());
    let gw = setup.start();
    let mut c = gw.connect();
    let mix = budget_mix();
    let started = std::time::Instant::now();
    for m in &mix {
        c.call(m);
    }
    wait_for("the mix delivered", Duration::from_secs(600), || (undelivered(&setup.db_path()) == 0).then_some(()));
    let drain = started.elapsed().as_secs_f64();
    let n = mix.len() as f64;
    let entries = gw.metric("gateway_forward_entries_sent_total") / n;
    let requests = gw.metric("gateway_forward_requests_total") / n;
    (entries, requests, drain)
}

/// `scripts/bench-cloud`: entries and requests per message for the mix, without and with
/// write economy, and the sustainable rate at the documented Salesforce limits (5 concurrent
/// requests of ~3 s) and for a generic server at 300 ms.
#[test]
#[ignore = "a benchmark: scripts/bench-cloud"]
fn bench_cloud_budget() {
    println!("mix: 100 messages, 20 patients, 60 % ADT / 25 % ORU / 15 % other");
    println!("{:<12} {:<8} {:>10} {:>10} {:>14}", "profile", "economy", "entries/m", "requests/m", "sustainable");
    for (profile, per_request_s, concurrent) in [("salesforce", 3.0, 5.0), ("generic", 0.3, 5.0)] {
        for economy in [false, true] {
            let (entries, requests, _) = budget_run(profile, economy, 0);
            let rate = concurrent / per_request_s / requests;
            println!(
                "{profile:<12} {:<8} {entries:>10.2} {requests:>10.2} {:>10.1} msg/s",
                if economy { "on" } else { "off" },
                rate
            );
        }
    }
    let (_, requests, drain) = budget_run("salesforce", true, 3000);
    println!("salesforce, 3 s per request, 5 concurrent, economy on: 100 messages drained in {drain:.1} s ({:.1} msg/s measured, {requests:.2} requests/message)", 100.0 / drain);
}
