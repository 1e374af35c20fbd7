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

/// Two Patients with the MRN of `patient`'s messages, created behind the gateway's back: one
/// by a gateway whose id map is then thrown away, its twin by a client of the server.
fn held_twice(server: &FhirServer, patient: usize) {
    let setup = setup_for(server, "");
    let gw = setup.start();
    send_ok(&mut gw.connect(), &a08(patient, 1, &format!("TWICE-{patient}")));
    delivered(&setup);
    gw.terminate();
    let mut twin = patients(server).into_iter().last().unwrap();
    twin.as_object_mut().unwrap().remove("id");
    let twin_batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001", "request": {"method": "POST", "url": "Patient"}, "resource": twin}
    ]});
    let (status, text) = http_request(server.addr, "POST", "/fhir/R4", Some(twin_batch.to_string().as_bytes()));
    assert!(status == 200 && text.contains("201 Created"), "{status} {text}");
}

/// A gateway started while the server is down, `messages` queued as a backlog, then the
/// server up and everything delivered (or dead-lettered).
fn backlog_delivered(server: &FhirServer, messages: &[Vec<u8>]) -> (Setup, Gateway) {
    server.control(json!({"down": true}));
    let setup = setup_for(server, "");
    let gw = setup.start();
    let mut c = gw.connect();
    for m in messages {
        send_ok(&mut c, m);
    }
    wait_metric(&gw, "gateway_messages_converted_total", messages.len() as f64, DELIVERY);
    server.control(json!({"down": false}));
    delivered(&setup);
    (setup, gw)
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
fn a_lost_id_map_under_a_backlog_searches_every_create_and_duplicates_nothing() {
    const N: usize = 12;
    let server = salesforce_server();
    let setup = setup_for(&server, "");
    let gw = setup.start();
    let mut c = gw.connect();
    for p in 1..=N {
        send_ok(&mut c, &a08(p, 1, &format!("BL-A{p}")));
    }
    delivered(&setup);
    assert_eq!(patients(&server).len(), N);
    drop(c);
    gw.terminate();

    // A new gateway with no id map builds a backlog of updates to all of them: requests pack
    // several patients, yet each create is searched first (at most 10 reads per batch, which
    // the server enforces), so nothing is created twice.
    let updates: Vec<Vec<u8>> = (1..=N).map(|p| a08(p, 2, &format!("BL-B{p}"))).collect();
    let (setup, gw) = backlog_delivered(&server, &updates);
    assert!(dead_letters(&setup.db_path()).is_empty(), "{:?}", server.stderr());
    let after = patients(&server);
    assert_eq!(after.len(), N, "no Patient created twice");
    assert!(after.iter().all(|p| p["name"][0]["given"][0] == "S0002"), "every update applied");
    assert_eq!(server.dump()["Encounter"].as_array().unwrap().len(), N, "no Encounter created twice");
    assert!(gw.metric("gateway_forward_lookups_total{result=\"found\"}") >= 2.0 * N as f64);
    let requests = gw.metric("gateway_forward_requests_total");
    assert!(requests < 2.0 * N as f64, "{requests} requests: several patients per request");
}

/// A backlog of new patients with the lookup on: the searches of the creates that wait ride in
/// the requests that write the others (a batch may hold 10 reads among its 30 entries) rather
/// than each going first in a request of its own; every new patient is still searched and none
/// is created twice; one the org holds twice is refused after at most one search ahead.
#[test]
fn a_backlogs_searches_ride_in_the_requests_that_write() {
    const N: usize = 60;
    const TWICE: usize = 30;
    let server = salesforce_server();
    held_twice(&server, TWICE);
    // Answers take long enough for requests to overlap, as the documented ~3 s do.
    server.control(json!({"salesforce_latency_ms": 300}));
    let admissions: Vec<Vec<u8>> = (1..=N).map(|p| a08(p, 1, &format!("RIDE-{p}"))).collect();
    let (setup, gw) = backlog_delivered(&server, &admissions);
    let dead = dead_letters(&setup.db_path());
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].1.contains("multiple-matches"), "{dead:?}");
    assert_eq!(patients(&server).len(), N + 1, "no Patient created twice");
    let searched = gw.metric("gateway_forward_lookups_total{result=\"absent\"}");
    assert!(searched >= (N - 1) as f64, "every new patient searched: {searched}");
    // Searched once by the gateway that created it, then at most once ahead and once in the
    // request that refuses it.
    let mrn = format!("|P{TWICE}");
    let twice_searched = server.log("").iter().filter(|e| e["url"].as_str().is_some_and(|u| u.ends_with(&mrn))).count();
    assert!(twice_searched <= 3, "searched {twice_searched} times");
    assert!(sf_counter(&server, "reads_with_writes") > 0, "no search rode in a write request");
    assert!(sf_counter(&server, "max_in_flight") <= 5);
}

#[test]
fn several_records_with_the_identifier_are_refused_not_guessed() {
    let server = salesforce_server();
    held_twice(&server, 11);
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

#[test]
fn the_daily_api_budget_raises_an_alert_at_80_percent_and_stops_sending_when_spent() {
    let server = salesforce_server();
    const BUDGET: u64 = 6;
    let setup = setup_for(&server, &format!("daily_api_budget = {BUDGET}\nrequest_max_entries = 5"));
    let gw = setup.start();
    let mut c = gw.connect();
    // Forty admissions: far more requests than the budget allows.
    for p in 1..=40 {
        send_ok(&mut c, &gateway::loadgen::sample_adt(&format!("BUD-{p}"), p));
    }
    wait_metric(&gw, "gateway_forward_api_budget_permille", 1000.0, DELIVERY);
    let raised = || gw.metrics().contains("gateway_alert{name=\"api_budget\"} 1\n").then_some(());
    wait_for("the api_budget alert", DELIVERY, raised);
    assert!(undelivered(&setup.db_path()) > 0, "the backlog waits for the next day");
    // What was under way when the budget ran out still finished; nothing was started after.
    let requests = sf_counter(&server, "requests");
    assert!(requests >= BUDGET, "{requests} requests");
    assert!(requests <= BUDGET + 2 * 5, "{requests} requests for a budget of {BUDGET}");
    drop(c);
    let log = gw.terminate_log();
    assert_eq!(log.matches("80 % of the daily API budget used").count(), 1, "one WARN: {log}");
}

// ---------------------------------------------------------------- the API budget (bench)

/// An ORU^R01 for `patient` with the PID and PV1 of their latest ADT message `adt` (as an EHR
/// sends them): a basic panel of three results of its own (order `n`).
fn oru(adt: &[u8], patient: u64, n: u64, control_id: &str) -> Vec<u8> {
    let v = |base: u64| base + (patient * 7 + n * 3) % 9;
    let adt = String::from_utf8_lossy(adt);
    let segment = |id: &str| adt.split('\r').find(|s| s.starts_with(id)).unwrap().to_string();
    let pid_pv1 = format!("{}\r{}\r", segment("PID|"), segment("PV1|"));
    format!(
        "MSH|^~\\&|EPIC|MAIN_HOSP|GATEWAY|CLOUD|20261121103000-0500||ORU^R01^ORU_R01|{control_id}|P|2.5.1||||||UNICODE UTF-8\r\
{pid_pv1}\
ORC|RE|P{patient}-{n}^EPIC|F{patient}-{n}^LAB\r\
OBR|1|P{patient}-{n}^EPIC|F{patient}-{n}^LAB|80048^Basic metabolic panel^CPT|||20261121100000-0500|||||||||1999999999^LAB^LEO^^^^^^NPI||||||20261121102500-0500|||F\r\
OBX|1|NM|2951-2^Sodium^LN||{}|mmol/L^mmol/L^UCUM|136-145||||F|||20261121100000-0500\r\
OBX|2|NM|2823-3^Potassium^LN||{}.{}|mmol/L^mmol/L^UCUM|3.5-5.1||||F|||20261121100000-0500\r\
OBX|3|NM|2345-7^Glucose^LN||{}|mg/dL^mg/dL^UCUM|70-99||||F|||20261121100000-0500\r",
        v(136),
        v(3),
        n % 10,
        v(85)
    )
    .into_bytes()
}

/// An ADT^A08 for `patient` as [`gateway::loadgen::sample_adt`] admitted them, the name
/// corrected (`version`): only the Patient changes.
fn a08_of(patient: u64, version: u64, control_id: &str) -> Vec<u8> {
    String::from_utf8(gateway::loadgen::sample_adt(control_id, patient))
        .unwrap()
        .replace("ADT^A01^ADT_A01", "ADT^A08^ADT_A01")
        .replace("EVN|A01|", "EVN|A08|")
        .replace("TESTPATIENT^ALEX^Q", &format!("TESTPATIENT^ALEX{version}^Q"))
        .into_bytes()
}

/// A realistic mix, five messages per patient on average: 60 % ADT (an A01, then two A08 that
/// correct the name), 25 % ORU (a panel of three new results), 15 % other (corpus SIU and VXU
/// messages, the same few again under new control IDs). Patients interleave, as a day's
/// traffic does.
fn budget_mix(patients: u64) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/hl7");
    let corpus = |f: &str| String::from_utf8_lossy(&std::fs::read(dir.join(f)).unwrap()).replace("|ER|", "|AL|");
    let other = ["athena_siu_s12_01.hl7", "cerner_vxu_v04_01.hl7", "athena_vxu_v04_01.hl7"];
    let with_control_id = |raw: String, id: &str| {
        let mut fields: Vec<String> = raw.splitn(11, '|').map(str::to_string).collect();
        fields[9] = id.to_string();
        fields.join("|").into_bytes()
    };
    let (orus, others) = (patients * 5 / 4, patients * 3 / 4);
    let mut out = Vec::new();
    let mut latest_adt: Vec<Vec<u8>> = vec![Vec::new(); patients as usize + 1];
    for step in 0..5 {
        for p in 1..=patients {
            let adt = match step {
                0 => Some(gateway::loadgen::sample_adt(&format!("B-A01-{p}"), p)),
                1 | 3 => Some(a08_of(p, step, &format!("B-A08-{p}-{step}"))),
                _ => None,
            };
            if let Some(adt) = adt {
                latest_adt[p as usize] = adt.clone();
                out.push(adt);
            }
            // ORU and other messages spread over the steps.
            let n = step * patients + p;
            if n <= orus {
                out.push(oru(&latest_adt[p as usize], p, n, &format!("B-ORU-{n}")));
            }
            if n <= others {
                out.push(with_control_id(corpus(other[n as usize % other.len()]), &format!("B-OTH-{n}")));
            }
        }
    }
    out
}

/// What one run measured.
struct Run {
    entries_per_message: f64,
    requests_per_message: f64,
    /// Messages per second from the target coming back until the backlog was delivered.
    drain_rate: f64,
    /// Messages per second from 10 % to 90 % of the backlog delivered.
    sustained_rate: f64,
    /// CPU milliseconds per message during the drain: the gateway's, the test server's.
    cpu_ms_per_message: (f64, f64),
    /// The server's writes and searches per message, by `METHOD Type`.
    by_kind: std::collections::BTreeMap<String, f64>,
}

/// Sends `mix` to a gateway (`[cloud]` keys `more`) while the target is down (a backlog, as
/// after an outage), then brings the target up with `latency_ms` per answer and waits until all
/// is delivered.
fn budget_run(mix: &[Vec<u8>], profile: &str, economy: bool, latency_ms: u64, more: &str) -> Run {
    // Medplum's transaction limits kept: a generic request over them would be refused.
    let server = FhirServer::start(if profile == "generic" { &["--medplum-tx-limits"] } else { &[] });
    let latency = if profile == "salesforce" {
        json!({"salesforce": true, "salesforce_latency_ms": latency_ms})
    } else {
        json!({"latency_ms": latency_ms})
    };
    server.control(json!({"down": true}));
    let mut setup = Setup::new(PLAIN);
    let keys = format!("profile = \"{profile}\"\nwrite_economy = {economy}\n{more}");
    setup.extra = format!("{}\n{}", cloud(&server.base_url(), 30, &keys), mapping());
    let gw = setup.start();
    let mut c = gw.connect();
    for m in mix {
        send_ok(&mut c, m);
    }
    server.control(latency);
    let (requests_down, started) = (gw.metric("gateway_forward_requests_total"), std::time::Instant::now());
    let cpu = || (cpu_seconds(gw.child.id()), cpu_seconds(server.pid()));
    let cpu_before = cpu();
    server.control(json!({"down": false}));
    let n = mix.len() as f64;
    // When 10 % and 90 % of the mix were delivered: the rate in between is the sustained one,
    // without the first requests (which create the shared records the others name) and the
    // last (a patient's last corrections go one after the other).
    let (mut tenth, mut ninetieth) = (None, None);
    wait_for("the mix delivered", Duration::from_secs(900), || {
        let left = undelivered(&setup.db_path()) as f64;
        if left <= 0.9 * n {
            tenth.get_or_insert_with(std::time::Instant::now);
        }
        if left <= 0.1 * n {
            ninetieth.get_or_insert_with(std::time::Instant::now);
        }
        (left == 0.0).then_some(())
    });
    let drain = started.elapsed().as_secs_f64();
    let middle = ninetieth.zip(tenth).map_or(0.0, |(end, start)| end.duration_since(start).as_secs_f64());
    let cpu_after = cpu();
    assert!(dead_letters(&setup.db_path()).is_empty(), "a bench run left dead letters");
    let mut by_kind = std::collections::BTreeMap::new();
    for e in server.log("") {
        let search = e["interaction"].as_str().is_some_and(|i| i.starts_with("search"));
        let kind = if search { "search" } else { e["method"].as_str().unwrap_or("?") };
        let url_type = e["url"].as_str().and_then(|u| u.split(['/', '?']).find(|s| !s.is_empty())).unwrap_or("?");
        *by_kind.entry(format!("{kind} {}", e["type"].as_str().unwrap_or(url_type))).or_insert(0.0) += 1.0 / n;
    }
    Run {
        by_kind,
        entries_per_message: gw.metric("gateway_forward_entries_sent_total") / n,
        requests_per_message: (gw.metric("gateway_forward_requests_total") - requests_down) / n,
        drain_rate: n / drain,
        sustained_rate: 0.8 * n / middle,
        cpu_ms_per_message: ((cpu_after.0 - cpu_before.0) * 1e3 / n, (cpu_after.1 - cpu_before.1) * 1e3 / n),
    }
}

/// `scripts/bench-cloud`: for the mix, entries and requests per message without and with
/// write economy (no latency), and the measured drain of a backlog at the documented
/// Salesforce pace (5 concurrent requests of ~3 s) and for a generic server at 300 ms.
#[test]
#[ignore = "a benchmark: scripts/bench-cloud"]
fn bench_cloud_budget() {
    let patients: u64 = std::env::var("BENCH_PATIENTS").ok().and_then(|p| p.parse().ok()).unwrap_or(200);
    let mix = budget_mix(patients);
    println!("mix: {} messages, {patients} patients, 60 % ADT / 25 % ORU / 15 % other", mix.len());
    println!("{:<12} {:<8} {:>10} {:>11}", "profile", "economy", "entries/m", "requests/m");
    for profile in ["salesforce", "generic"] {
        for economy in [false, true] {
            let run = budget_run(&mix, profile, economy, 0, "concurrency = 5");
            let on = if economy { "on" } else { "off" };
            println!("{profile:<12} {on:<8} {:>10.2} {:>11.3}", run.entries_per_message, run.requests_per_message);
            if economy {
                println!("  per message at the server: {}", per_kind(&run));
            }
        }
    }
    let drains = [
        ("salesforce", 3000, "concurrency = 5", "lookup before create on"),
        ("salesforce", 3000, "concurrency = 5\nsalesforce_max_reads = 0", "lookup off"),
        ("generic", 300, "concurrency = 16", ""),
        ("generic", 300, "concurrency = 32", ""),
        ("generic", 300, "concurrency = 64", ""),
    ];
    for (profile, latency_ms, keys, what) in drains {
        let run = budget_run(&mix, profile, true, latency_ms, keys);
        println!(
            "drain {profile}, {latency_ms} ms per request, {}, economy on {what}: {:.1} msg/s, sustained (10-90 %) {:.1} msg/s ({:.3} requests/message, {:.2} entries/message)",
            keys.lines().next().unwrap_or(""),
            run.drain_rate,
            run.sustained_rate,
            run.requests_per_message,
            run.entries_per_message
        );
        let (gateway, server) = run.cpu_ms_per_message;
        println!("  CPU per message: gateway {gateway:.2} ms, test server {server:.2} ms");
        println!("  per message at the server: {}", per_kind(&run));
    }
}

/// A run's writes and searches per message at the server, by `METHOD Type`.
fn per_kind(run: &Run) -> String {
    let kinds: Vec<String> = run.by_kind.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
    kinds.join(", ")
}
