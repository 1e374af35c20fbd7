//! Whether the embedded sink's cost per Bundle stays flat as it fills: bundles/s (one
//! transaction per message, as the forwarder sends: a conditional update of the Patient, an
//! Encounter and three Observations referencing it through its `urn:uuid` fullUrl) into an
//! empty sink, then after 10,000 and 50,000 stored patients, each with its ratio to the empty
//! sink's rate. Flat (≈1.0) means O(log n) writes. Each Bundle is committed with
//! `synchronous=FULL`, so the figures include the disk's fsync.
//! `cargo bench -p gateway --bench sink`

use std::path::Path;
use std::time::Instant;

use gateway::forward::Target;
use gateway::sink::Sink;
use serde_json::{json, Value};

const MRN: &str = "http://hosp.example/mrn";

fn id(kind: &str, patient: u64, n: u64) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{kind}/{patient}/{n}").as_bytes()).to_string()
}

/// The entries of one message for `patient`; `round` changes the observation values.
fn message(patient: u64, round: u64) -> Vec<Value> {
    let pid = id("Patient", patient, 0);
    let subject = json!({"reference": format!("urn:uuid:{pid}")});
    let mut entries = vec![json!({
        "fullUrl": format!("urn:uuid:{pid}"),
        "resource": {"resourceType": "Patient", "identifier": [{"system": MRN, "value": format!("MRN{patient}")}],
                     "name": [{"family": "Doe", "given": ["Jane"]}], "gender": "female", "birthDate": "1980-01-01"},
        "request": {"method": "PUT", "url": format!("Patient?identifier={MRN}|MRN{patient}")},
    })];
    let enc = id("Encounter", patient, 0);
    entries.push(json!({
        "fullUrl": format!("urn:uuid:{enc}"),
        "resource": {"resourceType": "Encounter", "id": enc, "status": "in-progress", "class": {"code": "IMP"}, "subject": subject},
        "request": {"method": "PUT", "url": format!("Encounter/{enc}")},
    }));
    for n in 0..3 {
        let obs = id("Observation", patient, n);
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{obs}"),
            "resource": {"resourceType": "Observation", "id": obs, "status": "final", "code": {"text": format!("test {n}")},
                         "subject": subject, "encounter": {"reference": format!("urn:uuid:{enc}")},
                         "valueQuantity": {"value": 100 + round + n, "unit": "mmol/L"}},
            "request": {"method": "PUT", "url": format!("Observation/{obs}")},
        }));
    }
    entries
}

fn bundle(entries: Vec<Value>) -> Vec<u8> {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string().into_bytes()
}

fn send(sink: &Sink, body: &[u8]) {
    let r = sink.send(body).expect("sink answers");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// Stores patients `from..to`, 100 per transaction.
fn fill(sink: &Sink, from: u64, to: u64) {
    let mut p = from;
    while p < to {
        let end = (p + 100).min(to);
        send(sink, &bundle((p..end).flat_map(|q| message(q, 0)).collect()));
        p = end;
    }
}

/// Bundles/s for `n` messages of new patients from `first`, then for a second message (new
/// observation values) of each of them.
fn measure(sink: &Sink, first: u64, n: u64, round: u64) -> (f64, f64) {
    let bodies: Vec<Vec<u8>> = (first..first + n).map(|p| bundle(message(p, 0))).collect();
    let started = Instant::now();
    bodies.iter().for_each(|b| send(sink, b));
    let creates = n as f64 / started.elapsed().as_secs_f64();
    let bodies: Vec<Vec<u8>> = (first..first + n).map(|p| bundle(message(p, round))).collect();
    let started = Instant::now();
    bodies.iter().for_each(|b| send(sink, b));
    (creates, n as f64 / started.elapsed().as_secs_f64())
}

fn size_mb(dir: &Path) -> f64 {
    let len = |f: &str| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len());
    (len("fhir.db") + len("fhir.db-wal")) as f64 / 1e6
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (stages, n): (&[u64], u64) = if quick { (&[0, 200, 1_000], 10) } else { (&[0, 10_000, 50_000], 300) };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sink = Sink::open(dir.path()).unwrap();
    // Measured patients get numbers far above the filled ones.
    let mut next = 1_000_000_000;
    let mut stored = 0;
    let mut base: Option<(f64, f64)> = None;
    println!(
        "{:>9} {:>9} {:>14} {:>8} {:>14} {:>8}",
        "patients", "db MB", "new bundles/s", "ratio", "updates/s", "ratio"
    );
    for (round, &stage) in stages.iter().enumerate() {
        if stage > stored {
            let started = Instant::now();
            fill(&sink, stored, stage);
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "filled {} patients in {secs:.1} s ({:.0} patients/s)",
                stage - stored,
                (stage - stored) as f64 / secs
            );
            stored = stage;
        }
        let (creates, updates) = measure(&sink, next, n, round as u64 + 1);
        next += n;
        let (c0, u0) = *base.get_or_insert((creates, updates));
        println!(
            "{stage:>9} {:>9.1} {creates:>14.0} {:>8.2} {updates:>14.0} {:>8.2}",
            size_mb(dir.path()),
            creates / c0,
            updates / u0
        );
    }
}
