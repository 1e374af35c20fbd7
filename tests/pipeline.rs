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
        let done = metric_value(&text, "gateway_messages_converted_total") + metric_value(&text, "gateway_dead_letters_total");
        if done >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {done} of {n} messages processed");
        std::thread::yield_now();
    }
}

#[test]
fn acked_messages_become_sealed_bundles_and_poison_goes_to_dead_letters() {
    let setup = Setup::new(PLAIN);
    let gw = setup.start();
    let mut c = gw.connect();
    let files = ["epic_adt_a01_01.hl7", "cerner_oru_r01_01.hl7", "athena_siu_s12_01.hl7", "meditech_vxu_v04_01.hl7"];
    let accepted = |ack: String| matches!(msa(&ack).0.as_str(), "AA" | "CA");
    for f in files {
        assert!(accepted(c.call(&corpus(f))), "{f}");
    }
    // Accepted by the listener (any ADT trigger), but no structure maps A99: a poison message.
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
        let kinds: Vec<&str> = bundle["entry"].as_array().unwrap().iter().map(|e| e["resource"]["resourceType"].as_str().unwrap()).collect();
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
