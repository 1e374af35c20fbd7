//! After the ACK: the real gateway converts journal rows into sealed FHIR bundles in the
//! outbox; a message that cannot be converted goes to dead letters and the rest go on.

use std::path::Path;
use std::time::Instant;

use gateway::store::Keys;
use gateway_tests::*;

const PLAIN: &str = "[[listener]]\nname = \"mllp\"\nbind = \"127.0.0.1:0\"\n";

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/hl7").join(name)).unwrap()
}

/// Waits (bounded) until the gateway has converted or dead-lettered `n` messages.
fn wait_until_processed(gw: &Gateway, n: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = gw.metrics();
        let done =
            metric_value(&text, "gateway_messages_converted_total") + metric_value(&text, "gateway_dead_letters_total");
        if done >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {done} of {n} messages processed");
        std::thread::yield_now();
    }
}

#[test]
fn acked_messages_become_sealed_bundles_and_poison_goes_to_dead_letters() {
    let setup = Setup::new(&format!("{PLAIN}[listener.accept]\nstore_unsupported = true\n"));
    let gw = setup.start();
    let mut c = gw.connect();
    let files = ["epic_adt_a01_01.hl7", "cerner_oru_r01_01.hl7", "athena_siu_s12_01.hl7", "meditech_vxu_v04_01.hl7"];
    let accepted = |ack: String| matches!(msa(&ack).0.as_str(), "AA" | "CA");
    for f in files {
        assert!(accepted(c.call(&corpus(f))), "{f}");
    }
    // No structure maps A99: a listener with store_unsupported keeps it, as a dead letter.
    let poison = b"MSH|^~\\&|EPIC|HOSP|GW|CLOUD|20260101120000||ADT^A99|POISON1|P|2.5.1\rPID|1||MRN99^^^HOSP^MR||SECRETNAME^JO\r";
    assert_eq!(msa(&c.call(poison)).0, "AA", "ACK means custody, not convertibility");
    for f in files.iter().skip(1) {
        // Re-sending is a duplicate: neither stored nor converted twice.
        assert!(accepted(c.call(&corpus(f))), "{f}");
    }
    wait_until_processed(&gw, files.len() as f64 + 1.0);
    assert_eq!(gw.metric("gateway_messages_converted_total"), files.len() as f64);
    assert_eq!(gw.metric("gateway_dead_letters_total"), 1.0);
    drop(gw);

    let db = rusqlite::Connection::open(setup.db_path()).unwrap();
    let states: Vec<(String, String)> = db
        .prepare("SELECT control_id, state FROM journal ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(states.len(), files.len() + 1);
    // Converted, and maybe already delivered to the embedded sink by the forwarder.
    assert_eq!(states.iter().filter(|(_, s)| s == "converted" || s == "delivered").count(), files.len());
    assert!(states.contains(&("POISON1".into(), "dead".into())));
    let reason: String = db.query_row("SELECT reason FROM dead_letter", [], |r| r.get(0)).unwrap();
    assert!(reason.contains("201"), "table 0357 code in the reason: {reason}");
    assert!(!reason.contains("SECRETNAME") && !reason.contains("MRN99"), "no PHI in the reason: {reason}");

    // Every converted row has its bundle in the outbox, sealed, with the row's lane.
    let keys = Keys::load_or_create(&setup.dir.path().join("var/journal.key")).unwrap();
    /// journal seq, outbox lane, journal lane, sealed bundle
    type OutboxRow = (i64, Option<String>, Option<String>, Vec<u8>);
    let rows: Vec<OutboxRow> = db
        .prepare("SELECT o.journal_seq, o.lane, j.lane, o.bundle FROM outbox o JOIN journal j ON j.seq = o.journal_seq ORDER BY o.id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), files.len(), "generic profile: one transaction bundle per message");
    for (seq, outbox_lane, journal_lane, sealed) in rows {
        assert_eq!(outbox_lane, journal_lane, "row {seq} keeps its lane");
        assert!(outbox_lane.is_some());
        let bundle: serde_json::Value = serde_json::from_slice(&keys.open(&sealed).unwrap()).unwrap();
        assert_eq!(bundle["resourceType"], "Bundle");
        assert_eq!(bundle["type"], "transaction");
        let kinds: Vec<&str> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"Patient"), "row {seq}: {kinds:?}");
    }
    drop(db);
    // The outbox is encrypted like the journal.
    for suffix in ["", "-wal"] {
        if let Ok(bytes) = std::fs::read(format!("{}{suffix}", setup.db_path().display())) {
            assert!(!bytes.windows(10).any(|w| w == b"SECRETNAME"));
            assert!(!bytes.windows(12).any(|w| w == b"\"resourceType"));
        }
    }
}

/// Messages that stopped or swamped the convert stage: an AIS duration past any time span
/// (a panic killed the thread; every later message stayed unconverted), 16,000 PID-3
/// repetitions (quadratic: 8.9 s), 50,000 OBX (quadratic: 13.7 s and 1 GB of RSS) and 6,000
/// OBX (~120 MB of heap). Each is converted or dead-lettered with a reason naming the budget,
/// the stage goes on, and `/healthz` says every stage is alive.
#[test]
fn no_message_stops_or_swamps_the_convert_stage() {
    let setup = Setup::new(PLAIN);
    let gw = setup.start();
    let mut c = gw.connect();
    let msh = |id: &str, ty: &str| format!("MSH|^~\\&|EPIC|HOSP|GW|CLOUD|20261115080000-0500||{ty}|{id}|P|2.5.1\r");
    let siu = msh("SIU1", "SIU^S12^SIU_S12")
        + "SCH|1|F1|||||||30|MIN\rPID|1||M1^^^HOSP^MR||DOE^JO\rRGS|1\rAIS|1||CONSULT^Consult|202611150900-0500|||99999999999|MIN\r";
    let ids: Vec<String> = (0..16_000).map(|i| format!("{i}^^^HOSP^MR")).collect();
    let many_ids =
        msh("REPS1", "ADT^A08^ADT_A01") + "EVN|A08|20261115080000-0500\rPID|1||" + &ids.join("~") + "||DOE^JO\r";
    let oru = |id: &str, n: usize| {
        let mut m = msh(id, "ORU^R01^ORU_R01") + "PID|1||M2^^^HOSP^MR||DOE^JO\rOBR|1|P1|F1|24323-8^Panel^LN\r";
        for i in 1..=n {
            m.push_str(&format!("OBX|{i}|NM|{i}-1^Test {i}^LN||{i}|mmol/L|1-9|N|||F\r"));
        }
        m
    };
    // Past the segment budget; inside it but past the memory budget.
    let (obx_50k, obx_6k) = (oru("OBX50K", 50_000), oru("OBX6K", 6_000));
    for m in
        [siu.as_bytes(), many_ids.as_bytes(), obx_50k.as_bytes(), obx_6k.as_bytes(), &corpus("epic_adt_a01_01.hl7")]
    {
        assert!(matches!(msa(&c.call(m)).0.as_str(), "AA" | "CA"));
    }
    wait_until_processed(&gw, 5.0);
    assert_eq!(gw.metric("gateway_messages_converted_total"), 2.0, "the SIU and the ADT after it");
    assert_eq!(gw.metric("gateway_dead_letters_total"), 3.0);
    let (status, body) = http_get(gw.admin.unwrap(), "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(gw.metric("gateway_stage_up{stage=\"convert\"}"), 1.0);
    drop(gw);

    let db = rusqlite::Connection::open(setup.db_path()).unwrap();
    let reasons: Vec<(String, String)> = db
        .prepare(
            "SELECT j.control_id, d.reason FROM dead_letter d JOIN journal j ON j.seq = d.journal_seq ORDER BY j.seq",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let reason = |id: &str| reasons.iter().find(|(c, _)| c == id).map(|(_, r)| r.as_str()).unwrap_or_default();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reason("REPS1").contains("max_repetitions"), "{reasons:?}");
    assert!(reason("OBX50K").contains("max_segments"), "{reasons:?}");
    assert!(reason("OBX6K").contains("max_convert_mib"), "{reasons:?}");
}

/// The `convert_stage` fuzz target's seeds and the crash inputs it found, through the
/// daemon's convert path: none may need the panic guard.
#[test]
fn fuzz_seeds_and_crash_inputs_convert_without_a_panic() {
    use gateway::pipeline::convert::{convert_message, INTERNAL_ERROR};
    let site = gateway::fhir::site::SiteMaps::empty(jiff::tz::TimeZone::UTC);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/fuzz/corpus/convert_stage");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let raw = std::fs::read(&path).unwrap();
        for profile in [gateway::fhir::bundle::Profile::Generic, gateway::fhir::bundle::Profile::Salesforce] {
            if let Err(reason) = convert_message(&raw, &site, profile) {
                assert!(!reason.starts_with(INTERNAL_ERROR), "{}: {reason}", path.display());
            }
        }
        seen += 1;
    }
    assert!(seen > 60, "seeds found: {seen}");
}

/// Without `[cloud] url` bundles go to the embedded sink: each resource is stored once, a
/// resend under a new control ID (same content) changes nothing, not even a version, and
/// `gateway sink export` writes what is stored as NDJSON.
#[test]
fn the_embedded_sink_stores_each_resource_once_and_exports_ndjson() {
    use std::collections::BTreeMap;

    use gateway::sink::Sink;
    use serde_json::Value;

    let setup = Setup::new(PLAIN);
    let gw = setup.start();
    let mut c = gw.connect();
    let adt = corpus("epic_adt_a01_01.hl7");
    let delivered = |n: i64| {
        wait_for(&format!("{n} delivered"), WAIT, || {
            (journal_states(&setup.db_path()).get("delivered") == Some(&n)).then_some(())
        })
    };
    assert!(matches!(msa(&c.call(&adt)).0.as_str(), "AA" | "CA"));
    delivered(1);
    let sink = Sink::open_read(&setup.dir.path().join("var/fhir-sink")).unwrap();
    let state = |sink: &Sink| -> BTreeMap<String, Vec<Value>> {
        sink.types().unwrap().into_iter().map(|t| (t.clone(), sink.resources(&t).unwrap())).collect()
    };
    let first = state(&sink);
    assert_eq!(first["Patient"].len(), 1);
    assert!(first["Encounter"][0]["subject"]["reference"].as_str().unwrap().starts_with("Patient/"));
    let resent = String::from_utf8(adt).unwrap().replace("EPC2026031508300001", "RESENT0001");
    assert!(matches!(msa(&c.call(resent.as_bytes())).0.as_str(), "AA" | "CA"));
    delivered(2);
    assert_eq!(state(&sink), first, "an unchanged resend is a no-op");
    assert!(first.values().flatten().all(|r| r["meta"]["versionId"] == "1"));
    drop(gw);

    let out = std::process::Command::new(gateway_bin())
        .args(["sink", "export", "--config"])
        .arg(setup.config_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (kind, resources) in &first {
        let text = std::fs::read_to_string(setup.dir.path().join(format!("var/fhir-sink/{kind}.ndjson"))).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(&lines, resources, "{kind}");
    }
}
