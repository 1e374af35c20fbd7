//! What real senders send, over real MLLP sockets: lenient headers and character sets,
//! messages the converter cannot convert (refused at ingest, or kept as "unsupported" dead
//! letters), and several messages in one frame (NAK without a batch header, one batch ACK with).

use gateway_tests::*;

const PLAIN: &str = "[[listener]]\nname = \"mllp\"\nbind = \"127.0.0.1:0\"\n";

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/hl7").join(name)).unwrap()
}

fn msg(control_id: &str, msh9: &str, tail: &str) -> String {
    format!(
        "MSH|^~\\&|LAB|HOSP|GW|CLOUD|20260101120000||{msh9}|{control_id}|{tail}\rPID|1||MRN77^^^HOSP^MR||DOE^JANE\r"
    )
}

/// Dead-letter reasons by control ID.
fn dead_letters(db: &std::path::Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let sql = "SELECT j.control_id, d.reason FROM dead_letter d JOIN journal j ON j.seq = d.journal_seq ORDER BY d.id";
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    rows
}

#[test]
fn vendor_style_headers_and_character_sets_are_accepted() {
    let setup = Setup::new(PLAIN);
    let gw = setup.start();
    let mut c = gw.connect();
    // Empty MSH-11: P by default, echoed in the ACK.
    let ack = c.call(&corpus("labfeed_adt_a01_01.hl7"));
    assert_eq!(msa(&ack), ("AA".into(), "LF-0001".into()), "{ack}");
    assert!(ack.split('\r').next().unwrap().ends_with("|P|2.5.1"), "MSH-11 of the ACK: {ack}");
    // Padded coded fields: "AL " is enhanced mode (CA), "NE " is read.
    let ack = c.call(&corpus("labfeed_adt_a08_01.hl7"));
    assert_eq!(msa(&ack), ("CA".into(), "LF-0002".into()), "{ack}");
    // 8859/15 with latin-9 bytes.
    assert_eq!(msa(&c.call(&corpus("labfeed_adt_a04_01.hl7"))).0, "CA");
    // UNICODE, a blank MSH-15 and an unknown MSH-16: original mode.
    let ack = c.call(&corpus("labfeed_adt_a31_01.hl7"));
    assert_eq!(msa(&ack), ("AA".into(), "LF-0004".into()), "{ack}");
    // Table 0211 values and aliases.
    for (i, cs) in ["UTF-8", "UNICODE", "8859/15", "ISO-8859-1", "ISO IR6", "ASCII", "UNICODE UTF-8", "ISO IR100"]
        .iter()
        .enumerate()
    {
        let ack = c.call(msg(&format!("CS{i}"), "ADT^A08", &format!("P|2.5.1||||||{cs}")).as_bytes());
        assert_eq!(msa(&ack).0, "AA", "{cs}: {ack}");
    }
    // Bytes that are not valid in the declared set, and a set with no decoder: AE 102.
    let mut bad = msg("BADUTF", "ADT^A08", "P|2.5.1||||||UTF-8").into_bytes();
    bad.extend_from_slice(b"NTE|1||M\xfcller\r");
    let ack = c.call(&bad);
    assert_eq!(msa(&ack).0, "AE", "{ack}");
    assert!(err_segment(&ack).unwrap().contains("|102^"), "{ack}");
    let ack = c.call(msg("JIS212", "ADT^A08", "P|2.5.1||||||ISO IR159").as_bytes());
    assert_eq!(msa(&ack).0, "AE", "{ack}");
    assert!(err_segment(&ack).unwrap().contains("|MSH^1^18|102^"), "{ack}");
    let stored = journal_counts(&setup.db_path());
    assert_eq!(stored.len(), 4 + 8, "{stored:?}");
    assert!(!stored.contains_key("BADUTF") && !stored.contains_key("JIS212"));
    // Every stored message converts (none became a dead letter).
    wait_metric(&gw, "gateway_messages_converted_total", 12.0, WAIT);
    assert_eq!(gw.metric("gateway_dead_letters_total"), 0.0);
}

#[test]
fn a_listener_without_a_default_refuses_an_empty_msh11() {
    let setup = Setup::new(&format!("{PLAIN}[listener.accept]\ndefault_processing_id = \"\"\n"));
    let gw = setup.start();
    let ack = gw.connect().call(msg("R1", "ADT^A01", "|2.5.1").as_bytes());
    assert_eq!(msa(&ack).0, "AE", "{ack}");
    assert!(err_segment(&ack).unwrap().contains("|MSH^1^11|101^"), "{ack}");
}

#[test]
fn unconvertible_types_are_refused_at_ingest() {
    let setup = Setup::new(PLAIN);
    let gw = setup.start();
    let mut c = gw.connect();
    for (id, msh9, code) in [("U1", "ADT^A18", "201"), ("U2", "MDM^T12", "201"), ("U3", "ADT^A30", "201")] {
        let ack = c.call(msg(id, msh9, "P|2.5.1").as_bytes());
        assert_eq!(msa(&ack), ("AR".into(), id.into()), "{ack}");
        let e = err_segment(&ack).unwrap();
        assert!(e.contains(&format!("|MSH^1^9^2|{code}^")), "{e}");
        assert!(ack.contains(&msh9.replace('^', "\\S\\")), "the type is named: {ack}");
    }
    // Enhanced mode: CR.
    let ack = c.call(msg("U4", "ADT^A12", "P|2.5.1|||AL|NE").as_bytes());
    assert_eq!(msa(&ack).0, "CR", "{ack}");
    assert!(journal_counts(&setup.db_path()).is_empty(), "nothing stored");
    assert_eq!(gw.metric("gateway_naks_total{reason=\"unsupported\"}"), 4.0);
}

#[test]
fn store_unsupported_keeps_them_as_counted_dead_letters() {
    let setup = Setup::new(&format!("{PLAIN}[listener.accept]\nstore_unsupported = true\n"));
    let gw = setup.start();
    let mut c = gw.connect();
    for (id, msh9) in [("S1", "ADT^A18"), ("S2", "ADT^A18"), ("S3", "MDM^T12")] {
        assert_eq!(msa(&c.call(msg(id, msh9, "P|2.5.1").as_bytes())), ("AA".into(), id.into()));
    }
    assert_eq!(msa(&c.call(msg("OK1", "ADT^A08", "P|2.5.1").as_bytes())).0, "AA");
    assert_eq!(gw.metric("gateway_unsupported_messages_total{type=\"ADT^A18\"}"), 2.0);
    assert_eq!(gw.metric("gateway_unsupported_messages_total{type=\"MDM^T12\"}"), 1.0);
    assert_eq!(gw.metric("gateway_dead_letters_total"), 3.0);
    let dead = dead_letters(&setup.db_path());
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert_eq!(dead[0], ("S1".into(), "unsupported: no converter for message type ADT^A18 (201)".into()));
    assert!(dead[2].1.contains("MDM^T12"), "{dead:?}");
    assert_eq!(journal_states(&setup.db_path()).get("dead"), Some(&3));
    let log = gw.terminate_log();
    assert_eq!(log.matches("message type the converter does not handle").count(), 2, "one WARN per type: {log}");
    assert!(!log.contains("MRN77") && !log.contains("DOE"), "no PHI in the log");
}

#[test]
fn several_messages_in_one_frame_need_a_batch_header() {
    let setup = Setup::new(PLAIN);
    let gw = setup.start();
    let mut c = gw.connect();
    let frame: String = (1..=7).map(|i| msg(&format!("M{i}"), "ADT^A08", "P|2.5.1")).collect();
    let ack = c.call(frame.as_bytes());
    assert_eq!(msa(&ack), ("AR".into(), "M1".into()), "{ack}");
    assert!(ack.contains("frame holds 7 messages without a batch header (FHS/BHS)"), "{ack}");
    assert!(journal_counts(&setup.db_path()).is_empty(), "nothing stored");
    assert_eq!(gw.metric("gateway_naks_total{reason=\"no_batch_header\"}"), 1.0);
}

fn batch(ids: &[(&str, &str)]) -> String {
    let mut b =
        String::from("FHS|^~\\&|LAB|HOSP|GW|CLOUD|20260101120000\rBHS|^~\\&|LAB|HOSP|GW|CLOUD|20260101120000||||B42\r");
    for (id, msh9) in ids {
        b.push_str(&msg(id, msh9, "P|2.5.1"));
    }
    b.push_str(&format!("BTS|{}\rFTS|1\r", ids.len()));
    b
}

#[test]
fn a_batch_is_stored_whole_and_answered_with_a_batch_of_acks() {
    let setup = Setup::new(PLAIN);
    let gw = setup.start();
    let mut c = gw.connect();
    let ack = c.call(batch(&[("B1", "ADT^A08"), ("B2", "ORU^R01"), ("B3", "ADT^A01")]).as_bytes());
    let segs: Vec<&str> = ack.split('\r').filter(|s| !s.is_empty()).collect();
    assert!(segs[0].starts_with("FHS|^~\\&|GW|CLOUD|LAB|HOSP|"), "{ack}");
    assert!(segs[1].starts_with("BHS|^~\\&|GW|CLOUD|LAB|HOSP|") && segs[1].ends_with("|B42"), "{ack}");
    let msas: Vec<&str> = segs.iter().filter(|s| s.starts_with("MSA")).copied().collect();
    assert_eq!(msas, ["MSA|AA|B1", "MSA|AA|B2", "MSA|AA|B3"], "{ack}");
    assert_eq!(&segs[segs.len() - 2..], ["BTS|3", "FTS|1"], "{ack}");
    let stored = journal_counts(&setup.db_path());
    assert_eq!(stored.len(), 3, "{stored:?}");

    // One message the converter cannot convert: nothing of the batch is stored.
    let ack = c.call(batch(&[("C1", "ADT^A08"), ("C2", "ADT^A18")]).as_bytes());
    let msas: Vec<&str> = ack.split('\r').filter(|s| s.starts_with("MSA")).collect();
    assert_eq!(msas.len(), 2, "{ack}");
    assert!(msas[0].starts_with("MSA|AR|C1|Not stored"), "{ack}");
    assert!(msas[1].starts_with("MSA|AR|C2|"), "{ack}");
    assert!(ack.contains("|201^"), "{ack}");
    let stored = journal_counts(&setup.db_path());
    assert_eq!(stored.len(), 3, "none of the second batch: {stored:?}");
}

#[test]
fn a_replayed_unsupported_dead_letter_is_still_unsupported() {
    let setup = Setup::new(&format!("{PLAIN}[listener.accept]\nstore_unsupported = true\n"));
    let gw = setup.start();
    let mut c = gw.connect();
    assert_eq!(msa(&c.call(msg("R1", "ADT^A18", "P|2.5.1").as_bytes())).0, "AA");
    assert!(gw.terminate().success());
    let reason = "unsupported: no converter for message type ADT^A18 (201)";
    assert_eq!(dead_letters(&setup.db_path()), [("R1".to_string(), reason.to_string())]);
    let db = setup.db_path();
    let id: i64 =
        rusqlite::Connection::open(&db).unwrap().query_row("SELECT id FROM dead_letter", [], |r| r.get(0)).unwrap();

    let out = std::process::Command::new(gateway_bin())
        .args(["deadletter", "--config"])
        .arg(setup.config_path())
        .args(["--actor", "operator", "replay", &id.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dead_letters(&db).is_empty(), "replayed: the dead letter is gone until the convert stage runs");
    assert_eq!(journal_states(&db).get("received"), Some(&1));

    // The convert stage cannot convert it either: a dead letter again, still "unsupported".
    let gw = setup.start();
    wait_for("the replayed message dead-lettered again", WAIT, || {
        (journal_states(&db).get("dead") == Some(&1)).then_some(())
    });
    assert_eq!(dead_letters(&db), [("R1".to_string(), reason.to_string())]);
    assert!(gw.terminate().success());
}
