//! Honest health and loud logs, with the real binary: `/healthz` is 503 with its reason when
//! the journal refuses messages, `/readyz` is 503 while the FHIR server is unreachable; a cloud
//! outage writes exactly one WARN line and its end one INFO line; a token endpoint that cannot
//! be reached is a connect failure retried on the normal backoff (not "credentials refused");
//! `gateway_journal_depth` counts pending rows only; a dead letter keeps its id across a
//! replay that fails again.
//!
//! Needs `cargo build -p gateway` (the real binary).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway_tests::*;

const PLAIN: &str = "[[listener]]\nname = \"mllp\"\nbind = \"127.0.0.1:0\"\n";

/// A loopback port nothing listens on (yet).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The minimal FHIR server (`tests/bin/fhir_sink.rs`: 200 for every bundle) on `port`.
struct FhirSink(Child);

impl FhirSink {
    fn start(port: u16) -> FhirSink {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fhir-sink"))
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("listening"), "{line}");
        FhirSink(child)
    }
}

impl Drop for FhirSink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Answers every HTTP request on `listener` with `status` and the JSON `body`, one request per
/// connection, on a thread of its own.
fn answer_every_request(listener: TcpListener, status: u16, body: &'static str) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = answer(&mut stream, status, body);
        }
    });
}

fn answer(stream: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(WAIT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut request_body = vec![0; length];
    reader.read_exact(&mut request_body)?;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn readyz(gw: &Gateway) -> (u16, String) {
    http_get(gw.admin.unwrap(), "/readyz")
}

/// Log lines at `level` holding `text`.
fn lines<'a>(log: &'a str, level: &str, text: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(&format!(" {level} ")) && l.contains(text)).collect()
}

#[test]
fn storage_full_makes_healthz_503_with_its_reason_while_readyz_stays_ok() {
    let mut setup = Setup::new(PLAIN);
    // Smaller than the empty journal: every message is refused for its disk budget.
    setup.store_extra = "max_bytes = 4096\n".into();
    let gw = setup.start();
    assert_eq!(http_get(gw.admin.unwrap(), "/healthz").0, 200);
    let mut c = gw.connect();
    assert_eq!(msa(&c.call(&adt("FULL1"))).0, "AR");
    let (status, body) = http_get(gw.admin.unwrap(), "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("disk budget") && body.contains("refused"), "{body}");
    assert_eq!(readyz(&gw).0, 200, "delivery (the local sink) is fine");
}

#[test]
fn a_cloud_outage_is_one_warn_line_and_its_end_one_info_line() {
    let port = closed_port();
    let mut setup = Setup::new(PLAIN);
    setup.extra = cloud(&format!("http://127.0.0.1:{port}/fhir"), 5, "");
    let gw = setup.start();
    let mut c = gw.connect();
    for id in ["OUT1", "OUT2", "OUT3"] {
        assert_eq!(msa(&c.call(&adt(id))).0, "AA");
    }
    // Enough failed requests in a row (5) to open the circuit.
    wait_for("the circuit open", WAIT, || {
        let failures = gw.metric("gateway_forward_failures_total{class=\"connect\"}");
        (failures >= 5.0 && gw.metric("gateway_forward_circuit_state") == 2.0).then_some(())
    });
    let (status, body) = readyz(&gw);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unreachable"), "{body}");
    assert_eq!(http_get(gw.admin.unwrap(), "/healthz").0, 200, "ingest still takes custody");

    let _sink = FhirSink::start(port);
    wait_for("delivery after the outage", WAIT, || (gw.metric("gateway_forward_delivered_total") >= 3.0).then_some(()));
    wait_for("/readyz ok", WAIT, || (readyz(&gw).0 == 200).then_some(()));
    let log = gw.terminate_log();
    let warns = lines(&log, "WARN", "forwarder:");
    assert_eq!(warns.len(), 1, "one WARN line for the outage: {warns:#?}");
    assert!(warns[0].contains("unreachable"), "{warns:#?}");
    let back = lines(&log, "INFO", "reachable again");
    assert_eq!(back.len(), 1, "{back:#?}");
    assert!(lines(&log, "INFO", "circuit closed").len() <= 1, "{log}");
}

/// An EC P-384 private key (PKCS#8 PEM) for SMART Backend Services.
fn smart_key() -> String {
    use base64::Engine as _;
    use ring::signature::{EcdsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &ring::rand::SystemRandom::new()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
}

#[test]
fn an_unreachable_token_endpoint_is_a_connect_failure_and_delivery_resumes_promptly() {
    let fhir_port = closed_port();
    let _sink = FhirSink::start(fhir_port);
    let token_port = closed_port();
    let mut setup = Setup::new(PLAIN);
    let key = setup.dir.path().join("smart.pem");
    std::fs::write(&key, smart_key()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let auth = format!(
        "[cloud.auth]\nkind = \"smart\"\ntoken_url = \"http://127.0.0.1:{token_port}/token\"\nclient_id = \"gw\"\n\
         key_file = \"smart.pem\"\nalg = \"ES384\"\nkid = \"k1\"\n"
    );
    setup.extra = cloud(&format!("http://127.0.0.1:{fhir_port}/fhir"), 5, &auth);
    let gw = setup.start();
    assert_eq!(msa(&gw.connect().call(&adt("TOK1"))).0, "AA");
    wait_for("connect failures at the token endpoint", WAIT, || {
        (gw.metric("gateway_forward_failures_total{class=\"connect\"}") >= 3.0).then_some(())
    });
    assert_eq!(gw.metric("gateway_forward_failures_total{class=\"401\"}"), 0.0);
    assert_eq!(gw.metric("gateway_forward_auth_failing"), 0.0);

    let listener = TcpListener::bind(("127.0.0.1", token_port)).unwrap();
    answer_every_request(listener, 200, r#"{"access_token":"tok-1","token_type":"bearer","expires_in":300}"#);
    let back = Instant::now();
    wait_for("delivery once the token endpoint answers", WAIT, || {
        (gw.metric("gateway_forward_delivered_total") >= 1.0).then_some(())
    });
    // The credentials' slow retry (60 s) would take far longer than the backoff's.
    assert!(back.elapsed() < Duration::from_secs(10), "{:?}", back.elapsed());
    let log = gw.terminate_log();
    assert!(lines(&log, "WARN", "refuses the gateway's credentials").is_empty(), "{log}");
    assert!(lines(&log, "ERROR", "credentials").is_empty(), "{log}");
    assert_eq!(lines(&log, "WARN", "forwarder: the FHIR server is unreachable").len(), 1, "{log}");
}

/// `gateway deadletter <args…>` beside the running daemon.
fn deadletter(setup: &Setup, args: &[&str]) -> String {
    let out = Command::new(gateway_bin())
        .arg("deadletter")
        .arg("--config")
        .arg(setup.config_path())
        .args(["--actor", "test"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "deadletter {args:?}: {text}");
    text
}

/// The ids `deadletter list` shows (its rows: ID SEQ STAGE CREATED CONTROL_ID TYPE REASON).
fn listed(setup: &Setup) -> Vec<i64> {
    let text = deadletter(setup, &["list"]);
    let rows = text.lines().skip(1).filter(|l| l.split_whitespace().count() >= 7);
    rows.filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect()
}

#[test]
fn dead_rows_are_not_pending_and_a_dead_letter_keeps_its_id_across_a_replay() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    answer_every_request(
        listener,
        422,
        r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}"#,
    );
    let mut setup = Setup::new(PLAIN);
    setup.extra = cloud(&format!("http://127.0.0.1:{port}/fhir"), 5, "");
    let gw = setup.start();
    assert_eq!(msa(&gw.connect().call(&adt("DL1"))).0, "AA");
    wait_for("a dead letter", WAIT, || (gw.metric("gateway_dead_letters_total") >= 1.0).then_some(()));
    wait_for("depth 0: a dead row is not pending", WAIT, || (gw.metric("gateway_journal_depth") == 0.0).then_some(()));
    // The message went as several transactions (the server's limits): one dead letter each.
    let ids = listed(&setup);
    assert!(!ids.is_empty(), "{ids:?}");
    let dead_before = gw.metric("gateway_dead_letters_total");
    let id = ids[0];

    assert!(deadletter(&setup, &["replay", &id.to_string()]).contains("re-queued for delivery"));
    wait_for("failed again", WAIT, || (gw.metric("gateway_dead_letters_total") >= 2.0 * dead_before).then_some(()));
    wait_for("listed again under the same ids", WAIT, || (listed(&setup) == ids).then_some(()));
    assert!(deadletter(&setup, &["purge", &id.to_string()]).contains(&format!("dead letter {id} purged")));
    assert!(listed(&setup).is_empty());
    wait_for("depth 0 after the replay", WAIT, || (gw.metric("gateway_journal_depth") == 0.0).then_some(()));

    let log = gw.terminate_log();
    let dead = lines(&log, "WARN", "moved to dead letters");
    assert_eq!(dead.len(), 2 * ids.len(), "one line per dead letter: {dead:#?}");
    assert!(dead.iter().all(|l| l.contains("HTTP 422") && l.contains("invalid") && !l.contains("DL1")), "{dead:#?}");
}
