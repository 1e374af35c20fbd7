//! What a FHIR server holds after clinical stories (issue 10, item 5): one scripted story per
//! patient (A04 → A01 → ORU preliminary → final → corrected → A08 → MDM T02 → A03 → SIU S12,
//! S15 → VXU → A04 of a duplicate record → A40 → A08), sent through the real gateway to the
//! Node (Medplum) FHIR test server (generic and salesforce profiles) and to the embedded sink,
//! then the final state is checked resource by resource and must not change when the stories
//! are replayed (same control IDs, new control IDs, shuffled across patients).
//!
//! The site configuration is the shipped one (`config/gateway.toml`'s `[mapping]`), and the
//! MRN authority `SITEHOSP` is not in its `[mapping.identifier_systems]`: what a new site gets.
//! Every check adds to a list of problems and each test asserts that list is empty at its
//! end, so a failing run names everything that is wrong, not only the first thing.
//!
//! Needs Node 20.19+ and `npm ci --prefix tests/fhir-server`, and `cargo build -p gateway`.

#[path = "story/messages.rs"]
mod messages;
#[path = "story/state.rs"]
mod state;

use std::collections::BTreeMap;
use std::time::Duration;

use gateway_tests::*;
use messages::*;
use serde_json::{json, Value};
use state::*;

const PLAIN: &str = "[[listener]]\nname = \"mllp\"\nbind = \"127.0.0.1:0\"\n";
/// Longest one delivery phase may take.
const DELIVERY: Duration = Duration::from_secs(120);
/// Patients (stories) per backend.
const STORIES: usize = 3;
/// Seed of the shuffled replay.
const SEED: u64 = 0x5eed_0010;

// ---------------------------------------------------------------- backends

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Generic,
    Salesforce,
    Sink,
}

/// A gateway with the shipped site maps, its destination and one MLLP connection.
struct Rig {
    backend: Backend,
    server: Option<FhirServer>,
    setup: Setup,
    gw: Gateway,
    c: Mllp,
    dead_seen: usize,
}

impl Rig {
    fn start(backend: Backend) -> Rig {
        let mut setup = Setup::new(PLAIN);
        let server = (backend != Backend::Sink).then(|| FhirServer::start(&["--medplum-tx-limits"]));
        setup.extra = match &server {
            Some(s) => {
                let profile = if backend == Backend::Salesforce {
                    s.control(json!({"salesforce": true}));
                    "profile = \"salesforce\""
                } else {
                    ""
                };
                format!("{}\n{}", cloud(&s.base_url(), 15, profile), shipped_mapping())
            }
            // No `[cloud]`: the embedded sink in its default place, as on a new appliance.
            None => shipped_mapping(),
        };
        let gw = setup.start();
        let c = gw.connect();
        Rig { backend, server, setup, gw, c, dead_seen: 0 }
    }

    fn send(&mut self, messages: &[Msg]) {
        for m in messages {
            let ack = self.c.call(&m.raw);
            assert!(matches!(msa(&ack).0.as_str(), "AA" | "CA"), "{} not accepted: {ack:?}", m.step);
        }
    }

    /// Waits until every journal row is delivered or dead; new dead letters are problems.
    fn settle(&mut self, phase: &str, problems: &mut Vec<String>) {
        let db = self.setup.db_path();
        wait_for(&format!("{phase}: every message delivered"), DELIVERY, || (undelivered(&db) == 0).then_some(()));
        assert!(self.gw.child.try_wait().unwrap().is_none(), "{phase}: the gateway exited");
        let dead = dead_letters(&db);
        for (stage, reason, control_id) in &dead[self.dead_seen..] {
            problems.push(format!("{phase}: {control_id} dead-lettered at {stage}: {reason}"));
        }
        self.dead_seen = dead.len();
    }

    fn state(&self) -> State {
        match &self.server {
            Some(s) => dump_state(&s.dump()),
            None => sink_state(&self.setup),
        }
    }
}

// ---------------------------------------------------------------- checks

/// `kind` holds exactly `want` resources in all.
fn expect_total(state: &State, kind: &str, want: usize, problems: &mut Vec<String>) {
    let have = of(state, kind).len();
    if have != want {
        let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
        for r in of(state, kind) {
            *statuses.entry(r["status"].as_str().unwrap_or("-")).or_default() += 1;
        }
        problems.push(format!("{kind}: expected {want}, the server holds {have} (by status {statuses:?})"));
    }
}

/// No two resources of a type share an identifier (system + value). Identifiers without a
/// system are left out: they name nothing uniquely (bed `A` is in every room, a plan ID is on
/// every member's Coverage), and the per-type counts catch their duplicates.
fn check_unique_identifiers(state: &State, problems: &mut Vec<String>) {
    for (kind, list) in state {
        let mut seen: BTreeMap<(&str, &str), Vec<&Value>> = BTreeMap::new();
        for r in list {
            let mut own: Vec<(&str, &str)> = identifiers(r)
                .filter_map(|i| Some((i["system"].as_str().filter(|s| !s.is_empty())?, i["value"].as_str()?)))
                .collect();
            own.sort();
            own.dedup();
            for key in own {
                seen.entry(key).or_default().push(r);
            }
        }
        for ((system, value), rs) in seen.into_iter().filter(|(_, rs)| rs.len() > 1) {
            problems.push(format!("{kind}: identifier {system}|{value} is on {} resources: {}", rs.len(), briefs(&rs)));
        }
    }
}

/// A test on one stored resource.
type Check<'a> = Box<dyn Fn(&Value) -> bool + 'a>;

/// "`bad` of `all` `label` `what`" when some of `records` fail `ok`.
fn each(records: &[&Value], label: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Option<String> {
    let bad: Vec<&Value> = records.iter().copied().filter(|r| !ok(r)).collect();
    (!bad.is_empty()).then(|| format!("{} of {} {label} {what}: {}", bad.len(), records.len(), briefs(&bad)))
}

/// True when `r` has a link of type `kind` to a stored Patient with identifier `mrn`.
fn links_to(state: &State, r: &Value, kind: &str, mrn: &str) -> bool {
    r["link"].as_array().into_iter().flatten().any(|l| l["type"] == kind && names_patient(state, &l["other"], mrn))
}

/// Types the salesforce profile leaves out by default: no documented module of the Salesforce
/// Healthcare API lists them (`[cloud] unsupported_types`, docs/CONVERSION.md).
const SALESFORCE_DROPS: [&str; 2] = ["Appointment", "Coverage"];

/// How many `kind` resources the backend should hold where the story sends `n`.
fn wanted(backend: Backend, kind: &str, n: usize) -> usize {
    if backend == Backend::Salesforce && SALESFORCE_DROPS.contains(&kind) {
        0
    } else {
        n
    }
}

/// The final state of stories `1..=stories`, resource by resource.
fn check_stories(backend: Backend, state: &State, stories: usize, problems: &mut Vec<String>) {
    // Totals: everything sent, once.
    let per_story = [
        ("Patient", 2),
        ("Encounter", 1),
        ("Observation", 2),
        ("DiagnosticReport", 1),
        ("ServiceRequest", 1),
        ("DocumentReference", 1),
        ("Appointment", 1),
        ("Immunization", 1),
        ("AllergyIntolerance", 2),
        ("Condition", 1),
        ("Coverage", 1),
        ("RelatedPerson", 1),
    ];
    for (kind, n) in per_story {
        expect_total(state, kind, wanted(backend, kind, n * stories), problems);
    }
    expect_total(state, "Practitioner", PRACTITIONERS, problems);
    expect_total(state, "Organization", ORGANIZATIONS, problems);
    expect_total(state, "Location", LOCATIONS_PER_STORY * stories + SHARED_LOCATIONS, problems);
    check_unique_identifiers(state, problems);
    let stale: Vec<&Value> =
        of(state, "Observation").iter().filter(|o| o["valueQuantity"]["value"].as_f64() == Some(182.0)).collect();
    if !stale.is_empty() {
        problems.push(format!("{} Observations still hold the corrected value 182: {}", stale.len(), briefs(&stale)));
    }
    for n in 1..=stories {
        let mut found = Vec::new();
        check_patients(state, n, &mut found);
        check_visit(state, n, &mut found);
        check_clinical(backend, state, n, &mut found);
        problems.extend(found.into_iter().map(|p| format!("story {n}: {p}")));
    }
}

/// The patient and its merged duplicate: one record each, the ADT demographics intact, the
/// merge links on both.
fn check_patients(state: &State, n: usize, problems: &mut Vec<String>) {
    let (p_mrn, q_mrn) = (mrn(n), dup_mrn(n));
    let ps = with_identifier(state, "Patient", &p_mrn);
    let qs = with_identifier(state, "Patient", &q_mrn);
    for (mrn, found) in [(&p_mrn, &ps), (&q_mrn, &qs)] {
        if found.len() != 1 {
            problems.push(format!("expected 1 Patient {mrn}, the server holds {}: {}", found.len(), briefs(found)));
        }
    }
    check_demographics(state, n, problems);
    problems.extend(each(
        &ps,
        &format!("Patient {p_mrn} records"),
        &format!("lack the link `replaces` → {q_mrn}"),
        |p| links_to(state, p, "replaces", &q_mrn),
    ));
    let q_label = format!("Patient {q_mrn} records");
    problems.extend(each(&qs, &q_label, &format!("lack the link `replaced-by` → {p_mrn}"), |q| {
        links_to(state, q, "replaced-by", &p_mrn)
    }));
    problems.extend(each(&qs, &q_label, "are not active=false (merged)", |q| q["active"] == false));
}

/// The demographics the ADTs sent (after the A08's new phone), in every stored record of the
/// patient (today there are many): lab, document, scheduling and immunization messages must
/// not erase them.
fn check_demographics(state: &State, n: usize, problems: &mut Vec<String>) {
    let p_mrn = mrn(n);
    let ps = with_identifier(state, "Patient", &p_mrn);
    let p_label = format!("Patient {p_mrn} records");
    let telecoms = |p: &Value| -> Vec<String> {
        p["telecom"].as_array().into_iter().flatten().filter_map(|t| t["value"].as_str()).map(digits).collect()
    };
    let (new_phone, old_phone) = (home_phone(n, true), home_phone(n, false));
    let street = format!("{n} Main St");
    let checks: [(&str, Check); 8] = [
        (
            "have no system on the MRN (unmapped authority)",
            Box::new(|p| {
                identifiers(p)
                    .any(|i| i["value"] == p_mrn.as_str() && i["system"].as_str().is_some_and(|s| !s.is_empty()))
            }),
        ),
        ("lack the A08's home phone", Box::new(|p| telecoms(p).iter().any(|d| d.ends_with(&new_phone)))),
        ("still have the old home phone", Box::new(|p| !telecoms(p).iter().any(|d| d.ends_with(&old_phone)))),
        (
            "lost the address",
            Box::new(|p| p["address"].as_array().into_iter().flatten().any(|a| a["line"][0] == street.as_str())),
        ),
        (
            "lost the SSN identifier",
            Box::new(|p| identifiers(p).any(|i| i["system"] == US_SSN && i["value"] == ssn(n).as_str())),
        ),
        ("lost the marital status", Box::new(|p| p["maritalStatus"]["coding"][0]["code"] == "M")),
        ("lost the language", Box::new(|p| p["communication"][0]["language"]["coding"][0]["code"] == "eng")),
        (
            "lost the GP (Practitioner 4455)",
            Box::new(|p| {
                p["generalPractitioner"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| resolve(state, r))
                    .any(|g| g["resourceType"] == "Practitioner" && has_identifier(g, "4455"))
            }),
        ),
    ];
    for (what, ok) in &checks {
        problems.extend(each(&ps, &p_label, what, ok));
    }
}

/// The visit: one Encounter, finished, with its period and discharge disposition.
fn check_visit(state: &State, n: usize, problems: &mut Vec<String>) {
    let encounters = with_identifier(state, "Encounter", &visit(n));
    if encounters.len() != 1 {
        problems.push(format!(
            "expected 1 Encounter {}, the server holds {}: {}",
            visit(n),
            encounters.len(),
            briefs(&encounters)
        ));
    }
    let label = format!("Encounter {} records", visit(n));
    let p_mrn = mrn(n);
    let checks: [(&str, Check); 4] = [
        ("are not finished", Box::new(|e| e["status"] == "finished")),
        (
            "lack period.start or period.end",
            Box::new(|e| !e["period"]["start"].is_null() && !e["period"]["end"].is_null()),
        ),
        ("lack the discharge disposition", Box::new(|e| !e["hospitalization"]["dischargeDisposition"].is_null())),
        ("are not of the patient", Box::new(|e| names_patient(state, &e["subject"], &p_mrn))),
    ];
    for (what, ok) in &checks {
        problems.extend(each(&encounters, &label, what, ok));
    }
}

/// The patient's clinical resources (found by what they point at): counts and statuses.
fn check_clinical(backend: Backend, state: &State, n: usize, problems: &mut Vec<String>) {
    let p_mrn = mrn(n);
    let per_patient = [
        ("Observation", 2),
        ("DiagnosticReport", 1),
        ("ServiceRequest", 1),
        ("DocumentReference", 1),
        ("Appointment", 1),
        ("Immunization", 1),
        ("AllergyIntolerance", 2),
        ("Condition", 1),
        ("Coverage", 1),
        ("RelatedPerson", 1),
    ];
    for (kind, want) in per_patient {
        let want = wanted(backend, kind, want);
        let found = of_patient(state, kind, &p_mrn);
        if found.len() != want {
            problems.push(format!(
                "expected {want} {kind} of Patient {p_mrn}, the server holds {}: {}",
                found.len(),
                briefs(&found)
            ));
        }
    }
    let observations = of_patient(state, "Observation", &p_mrn);
    for (code, status, value) in [("2951-2", "corrected", Some(128.0)), ("6598-7", "final", None)] {
        let found: Vec<&Value> = observations.iter().copied().filter(|o| code_of(o).contains(&code)).collect();
        if found.len() != 1 {
            problems.push(format!(
                "expected 1 Observation {code}, the server holds {}: {}",
                found.len(),
                briefs(&found)
            ));
        }
        let label = format!("Observation {code} records");
        problems.extend(each(&found, &label, &format!("are not {status}"), |o| o["status"] == status));
        if let Some(v) = value {
            problems.extend(each(&found, &label, &format!("do not hold {v}"), |o| {
                o["valueQuantity"]["value"].as_f64() == Some(v)
            }));
        }
    }
    for (kind, status) in [("DiagnosticReport", "corrected"), ("Appointment", "cancelled")] {
        let found = of_patient(state, kind, &p_mrn);
        problems
            .extend(each(&found, &format!("{kind} records"), &format!("are not {status}"), |r| r["status"] == status));
    }
}

const US_SSN: &str = "http://hl7.org/fhir/sid/us-ssn";

// ---------------------------------------------------------------- the stories

/// Sends the stories, checks the final state, then replays them three ways; each replay must
/// leave the state exactly as it was.
fn stories_then_replays(backend: Backend) {
    let mut rig = Rig::start(backend);
    let mut problems = Vec::new();

    // First pass: every story up to the duplicate's registration, then the merges (which
    // come long after the registration they merge).
    let first = stories("S1", STORIES);
    let split: Vec<(Vec<Msg>, Vec<Msg>)> = first
        .iter()
        .map(|s| {
            let (a, b) = s.split_at(s.len() - AFTER_MERGE);
            (a.to_vec(), b.to_vec())
        })
        .collect();
    let (before_merge, merges): (Vec<Vec<Msg>>, Vec<Vec<Msg>>) = split.into_iter().unzip();
    rig.send(&round_robin(&before_merge));
    rig.settle("first pass", &mut problems);
    // Each patient's last message so far is the VXU: after it, what the ADTs set must stand.
    let state = rig.state();
    for n in 1..=STORIES {
        let mut found = Vec::new();
        check_demographics(&state, n, &mut found);
        check_visit(&state, n, &mut found);
        problems.extend(found.into_iter().map(|p| format!("after the VXU (before the merges): story {n}: {p}")));
    }
    rig.send(&round_robin(&merges));
    rig.settle("first pass (merges)", &mut problems);
    let state = rig.state();
    eprintln!("{backend:?}: after the stories: {:?}", counts(&state));
    let mut found = Vec::new();
    check_stories(backend, &state, STORIES, &mut found);
    problems.extend(found.into_iter().map(|p| format!("after the stories: {p}")));
    if backend == Backend::Salesforce && rig.gw.metric("gateway_forward_entries_unsupported_total") == 0.0 {
        problems.push("the unsupported types were not counted as dropped".into());
    }

    let replays = [
        ("replay with the same control IDs", round_robin(&first)),
        ("replay with new control IDs", round_robin(&stories("S2", STORIES))),
        ("replay shuffled across patients", shuffled(&stories("S3", STORIES), SEED)),
    ];
    let mut before = state;
    for (what, messages) in replays {
        rig.send(&messages);
        rig.settle(what, &mut problems);
        let after = rig.state();
        let diff = state_diff(&before, &after);
        eprintln!("{backend:?}: {what}: {} differences", diff.len());
        problems.extend(diff.into_iter().map(|d| format!("{what}: {d}")));
        before = after;
    }
    assert!(
        problems.is_empty(),
        "{:?}: final state {:?}; {} problems:\n{}",
        rig.backend,
        counts(&before),
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn story_on_the_fhir_server_generic_profile() {
    stories_then_replays(Backend::Generic);
}

#[test]
fn story_on_the_fhir_server_salesforce_profile() {
    stories_then_replays(Backend::Salesforce);
}

#[test]
fn story_in_the_embedded_sink() {
    stories_then_replays(Backend::Sink);
}

// ---------------------------------------------------------------- updates and placeholder SSNs

#[test]
fn forty_patients_ten_ordered_updates_each_end_at_their_last_update() {
    const PATIENTS: usize = 40;
    const UPDATES: usize = 10;
    let mut rig = Rig::start(Backend::Generic);
    let mut problems = Vec::new();
    // Update 0 of every patient, then update 1, …: each patient's own updates in order.
    let messages: Vec<Msg> = (0..UPDATES)
        .flat_map(|u| (1..=PATIENTS).map(move |p| Msg { step: "update", raw: update(p, u, &format!("U{p}-{u}")) }))
        .collect();
    rig.send(&messages);
    rig.settle("40 x 10 updates", &mut problems);
    let state = rig.state();
    expect_total(&state, "Patient", PATIENTS, &mut problems);
    expect_total(&state, "Encounter", PATIENTS, &mut problems);
    expect_total(&state, "Organization", 1, &mut problems);
    let mut wrong = Vec::new();
    for p in 1..=PATIENTS {
        let found = with_identifier(&state, "Patient", &format!("M{p}"));
        let givens: Vec<&str> = found.iter().filter_map(|r| r["name"][0]["given"][0].as_str()).collect();
        if givens != [format!("P{p}U{}", UPDATES - 1)] {
            wrong.push(format!("M{p} holds {givens:?}"));
        }
    }
    if !wrong.is_empty() {
        problems.push(format!(
            "{} of {PATIENTS} patients are not one Patient at its last update (P<n>U{}): {}",
            wrong.len(),
            UPDATES - 1,
            wrong[..wrong.len().min(3)].join("; ")
        ));
    }
    assert!(problems.is_empty(), "state {:?}; {} problems:\n{}", counts(&state), problems.len(), problems.join("\n"));
}

/// Two different patients (own MRNs under an unmapped authority) with the placeholder SSN.
fn placeholder_ssn(backend: Backend) {
    let mut rig = Rig::start(backend);
    let mut problems = Vec::new();
    let people = [("T1", "Alpha^Ann", "F"), ("T2", "Beta^Bob", "M")];
    let messages: Vec<Msg> = people
        .iter()
        .enumerate()
        .map(|(i, (mrn, name, sex))| Msg { step: "A01", raw: placeholder_ssn_a01(i, mrn, name, sex) })
        .collect();
    rig.send(&messages);
    rig.settle("two patients, one SSN", &mut problems);
    let state = rig.state();
    expect_total(&state, "Patient", 2, &mut problems);
    for (mrn, name, _) in people {
        let family = name.split('^').next().unwrap();
        let found = with_identifier(&state, "Patient", mrn);
        let families: Vec<&str> = found.iter().filter_map(|r| r["name"][0]["family"].as_str()).collect();
        if families != [family] {
            problems.push(format!("MRN {mrn}: expected one Patient {family}, the server holds {families:?}"));
        }
        // Kept on the resource, never its key.
        problems.extend(each(&found, &format!("Patient {mrn} records"), "lack the SSN", |p| {
            identifiers(p).any(|i| i["value"] == "999-99-9999")
        }));
    }
    assert!(problems.is_empty(), "{:?}: state {:?}; problems:\n{}", rig.backend, counts(&state), problems.join("\n"));
}

#[test]
fn two_patients_sharing_a_placeholder_ssn_stay_two_on_the_fhir_server() {
    placeholder_ssn(Backend::Generic);
}

#[test]
fn two_patients_sharing_a_placeholder_ssn_stay_two_in_the_embedded_sink() {
    placeholder_ssn(Backend::Sink);
}

// ---------------------------------------------------------------- the builders themselves

/// The replays send the same messages: only MSH-10 differs between runs, and the shuffle
/// keeps each story's order, deterministically.
#[test]
fn replays_are_the_same_messages_in_story_order() {
    let without_control_id = |m: &Msg| {
        let text = String::from_utf8(m.raw.clone()).unwrap();
        let (msh, rest) = text.split_once('\r').unwrap();
        let mut fields: Vec<&str> = msh.split('|').collect();
        fields[9] = "";
        format!("{}\r{rest}", fields.join("|"))
    };
    let (a, b) = (stories("S1", STORIES), stories("S2", STORIES));
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert_ne!(x.raw, y.raw, "{}: another control ID", x.step);
        assert_eq!(without_control_id(x), without_control_id(y), "{}", x.step);
    }
    let steps = |ms: &[Msg]| ms.iter().map(|m| m.step).collect::<Vec<_>>();
    let s = shuffled(&b, SEED);
    assert_eq!(
        s.iter().map(|m| &m.raw).collect::<Vec<_>>(),
        shuffled(&b, SEED).iter().map(|m| &m.raw).collect::<Vec<_>>()
    );
    assert_ne!(steps(&s), steps(&round_robin(&b)), "the shuffle changes the order across patients");
    for (n, own) in b.iter().enumerate() {
        let tag = format!("|S2-{}-", n + 1);
        let mine: Vec<Msg> = s.iter().filter(|m| String::from_utf8_lossy(&m.raw).contains(&tag)).cloned().collect();
        assert_eq!(steps(&mine), steps(own), "story {} keeps its order", n + 1);
    }
}
