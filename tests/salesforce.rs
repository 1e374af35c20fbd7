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
