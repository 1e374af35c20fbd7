//! MLLP ingest end to end: the real gateway binary, real sockets, real SQLite files.

use std::sync::Arc;

use gateway_tests::*;

const PLAIN: &str = "[[listener]]\nname = \"mllp\"\nbind = \"127.0.0.1:0\"\n";

fn msg(control_id: &str, msh9: &str, tail: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|EPIC|HOSP|GW|CLOUD|20260101120000||{msh9}|{control_id}|{tail}\rPID|1||MRN77^^^HOSP^MR||DOE^JANE\r"
    )
    .into_bytes()
}

// ---------------------------------------------------------------- framing

#[test]
fn framing_cases_over_a_real_socket() {
    let setup = Setup::new(&format!("{PLAIN}max_frame_bytes = 4096\nframe_timeout_secs = 1\n"));
    let gw = setup.start();

    // A frame split across many writes.
    let mut c = gw.connect();
    let mut wire = Vec::new();
    gateway::mllp::codec::encode(&msg("SPLIT", "ADT^A01", "P|2.5"), &mut wire);
    for chunk in wire.chunks(7) {
        c.send_raw(chunk);
    }
    assert_eq!(msa(&c.read_ack().unwrap()), ("AA".into(), "SPLIT".into()));

    // Several frames in one write, with garbage and whitespace between them: ACKs in order.
    let mut wire = b"noise\r\n".to_vec();
    for id in ["M1", "M2", "M3"] {
        gateway::mllp::codec::encode(&msg(id, "ADT^A08", "P|2.5"), &mut wire);
        wire.extend_from_slice(b" \n");
    }
    c.send_raw(&wire);
    for id in ["M1", "M2", "M3"] {
        assert_eq!(msa(&c.read_ack().unwrap()), ("AA".into(), id.into()));
    }

    // <FS> not followed by <CR>: NAK for that frame, the connection goes on.
    let mut bad = vec![0x0b];
    bad.extend_from_slice(&msg("NOCR", "ADT^A01", "P|2.5"));
    bad.extend_from_slice(b"\x1cX");
    c.send_raw(&bad);
    let ack = c.read_ack().unwrap();
    assert_eq!(msa(&ack), ("AE".into(), "NOCR".into()));
    assert!(err_segment(&ack).unwrap().contains("|100^"), "{ack}");
    assert_eq!(msa(&c.call(&msg("AFTER", "ADT^A01", "P|2.5"))), ("AA".into(), "AFTER".into()));

    // An empty frame has no MSH: NAK with an empty MSA-2.
    c.send_raw(b"\x0b\x1c\x0d");
    let ack = c.read_ack().unwrap();
    assert_eq!(msa(&ack), ("AE".into(), "".into()));

    // A frame over the limit: NAK and the connection is closed without reading the rest.
    let mut big = msg("BIG", "ADT^A01", "P|2.5");
    big.extend(std::iter::repeat_n(b'x', 10_000));
    let mut wire = vec![0x0b];
    wire.extend_from_slice(&big);
    c.send_raw(&wire[..6000]);
    let ack = c.read_ack().unwrap();
    assert_eq!(msa(&ack), ("AR".into(), "BIG".into()));
    assert!(ack.contains("frame size limit"), "{ack}");
    assert!(c.closed_by_peer());

    // A frame opened and left stalled is closed after the frame timeout.
    let mut stalled = gw.connect();
    stalled.send_raw(b"\x0bMSH|^~\\&|EPIC");
    assert!(stalled.closed_by_peer());

    assert_eq!(gw.metric("gateway_frame_timeouts_total"), 1.0);
    assert_eq!(gw.metric("gateway_naks_total{reason=\"frame_too_large\"}"), 1.0);
    assert_eq!(gw.metric("gateway_naks_total{reason=\"bad_end_block\"}"), 1.0);
    // "noise\r\n" (7) + 2 bytes of whitespace after each of 3 frames + the stray X.
    assert_eq!(gw.metric("gateway_discarded_bytes_total"), 7.0 + 6.0 + 1.0);
    let counts = journal_counts(&setup.db_path());
    for id in ["SPLIT", "M1", "M2", "M3", "AFTER"] {
        assert_eq!(counts.get(id), Some(&1), "{id}");
    }
    assert!(!counts.contains_key("NOCR") && !counts.contains_key("BIG"));
}

// ---------------------------------------------------------------- ACK rules

#[test]
fn original_mode_ack_rules() {
    let setup = Setup::new(&format!(
        "{PLAIN}[listener.accept]\nversions = [\"2.3\", \"2.5.1\"]\nprocessing_ids = [\"P\"]\nmessage_types = [\"ADT\", \"ORU^R01\"]\n"
    ));
    let gw = setup.start();
    let mut c = gw.connect();

    let ack = c.call(&msg("OK1", "ADT^A01^ADT_A01", "P|2.5.1"));
    assert_eq!(msa(&ack), ("AA".into(), "OK1".into()));
    assert!(ack.starts_with("MSH|^~\\&|GW|CLOUD|EPIC|HOSP|"), "sender/receiver swapped: {ack}");
    assert!(ack.contains("|ACK^A01^ACK|"), "{ack}");
    assert!(err_segment(&ack).is_none());

    // (control id, MSH-9, tail, MSA-1, ERR contains)
    let cases = [
        ("V1", "ADT^A01", "P|2.7", "AR", "|MSH^1^12|203^"),
        ("P1", "ADT^A01", "T|2.5.1", "AR", "|MSH^1^11|202^"),
        ("T1", "QRY^A19", "P|2.5.1", "AR", "|MSH^1^9^1|200^"),
        ("E1", "ORU^R30", "P|2.5.1", "AR", "|MSH^1^9^2|201^"),
        ("", "ADT^A01", "P|2.5.1", "AE", "|MSH^1^10|101^"),
    ];
    for (id, msh9, tail, code, err) in cases {
        let ack = c.call(&msg(id, msh9, tail));
        assert_eq!(msa(&ack), (code.into(), id.into()), "{ack}");
        let e = err_segment(&ack).unwrap_or_else(|| panic!("no ERR in {ack}"));
        assert!(e.contains(err) && e.ends_with("^HL70357|E"), "{id}: {e}");
    }

    // v2.3 reports the error in ERR-1.
    let ack = c.call(&msg("OLD", "ADT^A99", "P|2.3"));
    assert_eq!(msa(&ack).0, "AR", "a trigger the converter does not handle is refused: {ack}");
    assert!(err_segment(&ack).unwrap().starts_with("ERR|MSH^1^9^201&"), "{ack}");
    let ack = c.call(&msg("OLD2", "QRY^Q01", "P|2.3"));
    assert_eq!(err_segment(&ack), Some("ERR|MSH^1^9^200&Unsupported message type&HL70357"));

    // Bad MSH-2: data type error; no MSH at all: segment sequence error with empty MSA-2.
    let ack = c.call(b"MSH|^~|EPIC|HOSP|||||ADT^A01|X|P|2.5\r");
    assert_eq!(msa(&ack).0, "AE");
    assert!(err_segment(&ack).unwrap().contains("|MSH^1^2|102^"), "{ack}");
    let ack = c.call(b"PID|1||MRN\r");
    assert_eq!(msa(&ack), ("AE".into(), "".into()));
    assert!(err_segment(&ack).unwrap().contains("|100^"), "{ack}");

    // Custom delimiters are echoed in the ACK.
    let ack = c.call(b"MSH#*@!%#EPIC#HOSP#GW#CLOUD###ADT*A04#CUST#P#2.5.1\rPID#1##9\r");
    assert!(ack.starts_with("MSH#*@!%#GW#CLOUD#EPIC#HOSP#"), "{ack}");
    assert!(ack.contains("\rMSA#AA#CUST\r"), "{ack}");

    assert_eq!(gw.metric("gateway_naks_total{reason=\"unsupported\"}"), 6.0);
    assert_eq!(gw.metric("gateway_acks_total{code=\"AR\"}"), 6.0);
}

#[test]
fn enhanced_mode_ack_rules() {
    let setup = Setup::new(PLAIN);
    let gw = setup.start();
    let mut c = gw.connect();
    let enhanced = |id: &str, accept: &str, version: &str| msg(id, "ORU^R01", &format!("P|{version}|||{accept}|NE"));

    let ack = c.call(&enhanced("AL1", "AL", "2.5.1"));
    assert_eq!(msa(&ack), ("CA".into(), "AL1".into()));
    assert!(ack.contains("|2.5.1|||NE|NE|"), "an ACK asks for no ACK: {ack}");
    let ack = c.call(&enhanced("AL2", "AL", "2.1"));
    assert_eq!(msa(&ack), ("CR".into(), "AL2".into()));

    // NE: never. ER: only on error. SU: only on success. Pipelined: the next ACK that arrives
    // must be for the next message that wants one.
    c.send(&enhanced("NE1", "NE", "2.5.1"));
    c.send(&enhanced("NE2", "NE", "2.1"));
    c.send(&enhanced("ER1", "ER", "2.5.1"));
    c.send(&enhanced("SU1", "SU", "2.1"));
    c.send(&enhanced("ER2", "ER", "2.1"));
    assert_eq!(msa(&c.read_ack().unwrap()), ("CR".into(), "ER2".into()));
    c.send(&enhanced("SU2", "SU", "2.5.1"));
    assert_eq!(msa(&c.read_ack().unwrap()), ("CA".into(), "SU2".into()));
    let ack = c.call(b"MSH|^~\\&|A|B|C|D|||ORU^R01|CE1|P|2.5.1|||AL|NE\rnot a segment\r");
    assert_eq!(msa(&ack), ("CE".into(), "CE1".into()), "{ack}");
    assert!(err_segment(&ack).unwrap().contains("|100^"), "{ack}");
    let counts = journal_counts(&setup.db_path());
    for id in ["AL1", "NE1", "ER1", "SU2"] {
        assert_eq!(counts.get(id), Some(&1), "{id} stored even without an ACK");
    }
}

// ---------------------------------------------------------------- duplicates

#[test]
fn duplicates_are_acked_but_stored_once() {
    let setup = Setup::new(PLAIN);
    let gw = setup.start();
    let mut c = gw.connect();
    let m = adt("DUP1");
    assert_eq!(msa(&c.call(&m)), ("AA".into(), "DUP1".into()));
    assert_eq!(msa(&c.call(&m)), ("AA".into(), "DUP1".into()));
    let mut other = gw.connect();
    assert_eq!(msa(&other.call(&m)), ("AA".into(), "DUP1".into()));
    // Same control ID, different content: a different message, stored.
    let mut changed = m.clone();
    changed.extend_from_slice(b"NTE|1||changed\r");
    assert_eq!(msa(&c.call(&changed)).0, "AA");
    assert_eq!(journal_counts(&setup.db_path()).get("DUP1"), Some(&2));
    assert_eq!(gw.metric("gateway_duplicates_total"), 2.0);
}

// ---------------------------------------------------------------- encryption at rest

#[test]
fn journal_files_hold_no_patient_data() {
    let setup = Setup::new(PLAIN);
    let gw = setup.start();
    let mut c = gw.connect();
    for i in 0..50 {
        assert_eq!(msa(&c.call(&adt(&format!("ENC{i}")))).0, "AA");
    }
    // loadgen::sample_adt(…, 4242) carries this name and MRN.
    let needles: [&[u8]; 3] = [b"TESTPATIENT", b"MRN00004242", b"123 MAIN ST"];
    let mut checked = 0;
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", setup.db_path().display());
        let Ok(bytes) = std::fs::read(&path) else { continue };
        checked += 1;
        for needle in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} found in {path}",
                String::from_utf8_lossy(needle)
            );
        }
    }
    assert!(checked >= 2, "database and WAL were checked");
    let key = setup.dir.path().join("var/journal.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600);
    drop(gw);
}

// ---------------------------------------------------------------- disk budget

#[test]
fn storage_full_refuses_new_messages_and_recovers_when_space_frees() {
    let mut setup = Setup::new(PLAIN);
    // The budget counts the WAL, the shared-memory file and a reserve for unconverted rows
    // besides the live pages (store/budget.rs).
    setup.store_extra = "max_bytes = 1048576".into();
    let gw = setup.start();
    let mut c = gw.connect();
    let mut accepted = Vec::new();
    let mut refusals = 0;
    let fill = |c: &mut Mllp, accepted: &mut Vec<String>, from: usize| -> String {
        for i in from..from + 2000 {
            let id = format!("FILL{i}");
            let ack = c.call(&adt(&id));
            match msa(&ack).0.as_str() {
                "AA" => accepted.push(id),
                "AR" => {
                    assert!(ack.contains("Storage full"), "{ack}");
                    assert!(err_segment(&ack).unwrap().contains("|207^"), "{ack}");
                    return id;
                }
                other => panic!("unexpected {other}: {ack}"),
            }
        }
        panic!("the budget was never reached");
    };
    let mut refused = fill(&mut c, &mut accepted, 0);
    refusals += 1;
    assert!(accepted.len() > 20, "some messages fit: {}", accepted.len());
    // Once rows are converted and delivered, the reserve held for their bundles
    // (store/budget.rs) is settled and the background writers are done, which may leave room
    // for a few more: fill until a message is refused with nothing left to do.
    for round in 0.. {
        assert!(round < 50, "the journal never stayed full");
        wait_for("conversion and delivery", WAIT, || (undelivered(&setup.db_path()) == 0).then_some(()));
        if msa(&c.call(&adt(&refused))).0 == "AR" {
            refusals += 1;
            break;
        }
        accepted.push(refused.clone());
        refused = fill(&mut c, &mut accepted, 2000 * (round + 1));
        refusals += 1;
    }
    // Still full: refused again, and nothing already stored was dropped.
    assert_eq!(msa(&c.call(&adt("FULL2"))).0, "AR");
    refusals += 1;
    let counts = journal_counts(&setup.db_path());
    assert!(accepted.iter().all(|id| counts.get(id) == Some(&1)));
    assert!(!counts.contains_key(&refused));
    assert_eq!(gw.metric("gateway_naks_total{reason=\"storage_full\"}"), refusals as f64);
    assert_eq!(http_get(gw.admin.unwrap(), "/healthz").0, 503, "health shows the full budget");

    // Space frees (as the forwarder's purge does after delivery): acceptance resumes by itself.
    // One transaction, as the purge does: the convert stage may be writing bundles for these
    // rows meanwhile.
    let mut conn = rusqlite::Connection::open(setup.db_path()).unwrap();
    conn.busy_timeout(WAIT).unwrap();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
    let half = accepted.len() / 2;
    for id in &accepted[..half] {
        tx.execute("DELETE FROM outbox WHERE journal_seq IN (SELECT seq FROM journal WHERE control_id = ?1)", [id])
            .unwrap();
        tx.execute(
            "DELETE FROM dead_letter WHERE journal_seq IN (SELECT seq FROM journal WHERE control_id = ?1)",
            [id],
        )
        .unwrap();
        tx.execute("DELETE FROM journal WHERE control_id = ?1", [id]).unwrap();
    }
    tx.commit().unwrap();
    drop(conn);
    assert_eq!(msa(&c.call(&adt(&refused))), ("AA".into(), refused.clone()));
    assert_eq!(journal_counts(&setup.db_path()).get(&refused), Some(&1));
    assert_eq!(http_get(gw.admin.unwrap(), "/healthz").0, 200);
}

// ---------------------------------------------------------------- allowlist

#[test]
fn connections_outside_the_allowlist_are_closed_before_reading() {
    let setup = Setup::new("[[listener]]\nname = \"ward\"\nbind = \"127.0.0.1:0\"\nallow = [\"10.0.0.0/8\"]\n");
    let gw = setup.start();
    let mut c = gw.connect();
    c.send_raw(b"\x0bMSH|^~\\&|A|B|C|D|||ADT^A01|DENIED|P|2.5\x1c\x0d");
    assert!(c.closed_by_peer(), "no ACK, closed");
    assert_eq!(gw.metric("gateway_connections_refused_total{reason=\"allowlist\"}"), 1.0);
    assert!(journal_counts(&setup.db_path()).is_empty());
}

#[test]
fn connections_over_the_limit_are_refused() {
    // (An idle connection gives way to a newcomer instead: tests/limits.rs.)
    let setup = Setup::new(&format!("{PLAIN}max_connections = 2\n"));
    let gw = setup.start();
    let mut a = gw.connect();
    let mut b = gw.connect();
    // Both in the middle of a frame before the third arrives.
    let halves: Vec<Vec<u8>> = ["L1", "L2"]
        .iter()
        .map(|id| {
            let mut wire = Vec::new();
            gateway::mllp::codec::encode(&adt(id), &mut wire);
            wire
        })
        .collect();
    a.send_raw(&halves[0][..100]);
    b.send_raw(&halves[1][..100]);
    wait_metric(&gw, "gateway_connections_in_frame", 2.0, WAIT);
    let mut third = gw.connect();
    assert!(third.closed_by_peer());
    assert_eq!(gw.metric("gateway_connections_refused_total{reason=\"limit\"}"), 1.0);
    a.send_raw(&halves[0][100..]);
    assert_eq!(msa(&a.read_ack().unwrap()).0, "AA");
    drop(a);
    b.send_raw(&halves[1][100..]);
    assert_eq!(msa(&b.read_ack().unwrap()).0, "AA");
    assert_eq!(msa(&b.call(&adt("L3"))).0, "AA");
}

// ---------------------------------------------------------------- TLS

fn tls_client(addr: std::net::SocketAddr, ca_pem: &str, identity: Option<(String, String)>) -> std::io::Result<Mllp> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(WAIT))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // Finish the handshake now so a rejected certificate shows up here.
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(Mllp::over(Box::new(tls)))
}

#[test]
fn tls_and_mutual_tls_listeners() {
    let server_pki = Pki::new("Gateway Test Server CA");
    let ehr_pki = Pki::new("EHR Client CA");
    let rogue_pki = Pki::new("Rogue CA");
    let setup = Setup::new("");
    let dir = setup.dir.path();
    let (cert, key) = server_pki.issue(&["localhost"], false);
    std::fs::write(dir.join("server.pem"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    // A private key readable by others is refused at start.
    std::fs::set_permissions(dir.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(dir.join("ehr-ca.pem"), &ehr_pki.ca_pem).unwrap();
    let listeners = "[[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\n[listener.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n\n\
        [[listener]]\nname = \"mtls\"\nbind = \"127.0.0.1:0\"\n[listener.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"ehr-ca.pem\"\n";
    let setup = Setup { listeners: listeners.into(), ..setup };
    let gw = setup.start();
    let (tls_addr, mtls_addr) = (gw.mllp[0], gw.mllp[1]);

    // TLS without client certificates.
    let mut c = tls_client(tls_addr, &server_pki.ca_pem, None).unwrap();
    assert_eq!(msa(&c.call(&adt("TLS1"))), ("AA".into(), "TLS1".into()));

    // mTLS: a client certificate from the EHR's CA is accepted...
    let mut c = tls_client(mtls_addr, &server_pki.ca_pem, Some(ehr_pki.issue(&["ehr-interface"], true))).unwrap();
    assert_eq!(msa(&c.call(&adt("MTLS1"))), ("AA".into(), "MTLS1".into()));

    // ...one from another CA, or none at all, is not.
    for identity in [Some(rogue_pki.issue(&["intruder"], true)), None] {
        match tls_client(mtls_addr, &server_pki.ca_pem, identity) {
            Err(_) => {}
            // TLS 1.3 may finish the client side first; the server then closes without an ACK.
            Ok(mut c) => {
                let mut wire = Vec::new();
                gateway::mllp::codec::encode(&adt("ROGUE"), &mut wire);
                let _ = std::io::Write::write_all(&mut ClientWriter(&mut c), &wire);
                assert!(c.closed_by_peer());
            }
        }
    }
    assert!(gw.metric("gateway_tls_handshake_failures_total") >= 2.0);
    let counts = journal_counts(&setup.db_path());
    assert_eq!(counts.get("MTLS1"), Some(&1));
    assert!(!counts.contains_key("ROGUE"));
}

/// Writes that may fail (the peer is closing) without panicking.
struct ClientWriter<'a>(&'a mut Mllp);
impl std::io::Write for ClientWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.try_send_raw(buf).map(|_| buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------- shutdown and ops

#[test]
fn sigterm_finishes_what_is_committing_then_exits() {
    let setup = Setup::new(PLAIN);
    let gw = setup.start();
    let senders = Senders::start(gw.addr(), 8, "SD");
    // Let traffic flow, then stop the gateway mid-stream.
    senders.wait_for_acks(200);
    let status = gw.terminate();
    assert!(status.success(), "clean exit: {status:?}");
    let acked = senders.finish();
    assert!(acked.len() >= 200);
    let counts = journal_counts(&setup.db_path());
    for id in &acked {
        assert_eq!(counts.get(id), Some(&1), "{id} was ACKed");
    }
    // After a clean stop the WAL was checkpointed into the database.
    let wal = std::fs::metadata(format!("{}-wal", setup.db_path().display())).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal, 0);
}

#[test]
fn admin_endpoint_serves_health_and_metrics() {
    let setup = Setup::new(PLAIN);
    let gw = setup.start();
    let mut c = gw.connect();
    c.call(&adt("MET1"));
    c.call(b"garbage");
    let (status, body) = http_get(gw.admin.unwrap(), "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let text = gw.metrics();
    for series in [
        "gateway_frames_received_total 2",
        "gateway_acks_total{code=\"AA\"} 1",
        "gateway_naks_total{reason=\"unparseable\"} 1",
        "gateway_journal_depth 1",
        "gateway_connections_open 1",
        "gateway_ack_latency_seconds_count 2",
        "gateway_commit_batch_size_count 1",
        "gateway_bytes_received_total",
        "gateway_duplicates_total 0",
        "gateway_connections_refused_total{reason=\"limit\"} 0",
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
    assert!(!text.contains("TESTPATIENT") && !text.contains("MRN"), "no PHI in metrics");
    let log = gw.terminate_log();
    assert!(!log.contains("TESTPATIENT") && !log.contains("MRN0000"), "no PHI in logs:\n{log}");
}

#[test]
fn config_errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    std::fs::write(
        &path,
        "[store]\npath = \"j.db\"\nkey_file = \"j.key\"\n\n[[listener]]\nname = \"a\"\nbind = \"not an address\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(gateway_bin()).args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:7:", path.display())), "{err}");
    assert!(err.contains("bind"), "{err}");
}

// ---------------------------------------------------------------- storage errors

#[test]
fn a_storage_error_is_a_nak_never_an_ack() {
    let setup = Setup::new(PLAIN);
    let gw = setup.start();
    let mut c = gw.connect();
    assert_eq!(msa(&c.call(&adt("BEFORE"))).0, "AA");
    // Another process holds the write lock longer than the writer's busy timeout (10 s): the
    // group commit fails. The message must be refused, not acknowledged from memory.
    let blocker = rusqlite::Connection::open(setup.db_path()).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let ack = c.call(&adt("DURING"));
    assert_eq!(msa(&ack), ("AE".into(), "DURING".into()), "{ack}");
    assert!(ack.contains("Storage error") && err_segment(&ack).unwrap().contains("|207^"), "{ack}");
    assert_eq!(http_get(gw.admin.unwrap(), "/healthz").0, 503, "health shows the failing journal");
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    assert_eq!(msa(&c.call(&adt("AFTER"))).0, "AA", "acceptance resumes once the store works");
    assert_eq!(http_get(gw.admin.unwrap(), "/healthz").0, 200);
    let counts = journal_counts(&setup.db_path());
    assert!(!counts.contains_key("DURING"));
    assert_eq!((counts.get("BEFORE"), counts.get("AFTER")), (Some(&1), Some(&1)));
    assert_eq!(gw.metric("gateway_naks_total{reason=\"storage_error\"}"), 1.0);
}
