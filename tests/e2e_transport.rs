//! Transport requirements of store-and-forward, end to end: the real gateway binary against
//! the Node (Medplum) FHIR test server in `tests/fhir-server/` over TLS with a private CA,
//! mutual TLS, an HTTP proxy (a small CONNECT proxy in this file), read timeouts on hung
//! requests, and SIGKILL while requests are in flight.
//!
//! Every test starts its own server and gateway (both killed on drop), binds to 127.0.0.1
//! only, and waits for events by polling `/metrics`, the journal, or the server's
//! `/__control`, `/__dump` and `/__log`, each wait bounded.
//!
//! Needs Node 20.19+ and `npm ci --prefix tests/fhir-server`, and `cargo build -p gateway`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_tests::*;
use serde_json::{json, Value};

const PLAIN: &str = "[[listener]]\nname = \"mllp\"\nbind = \"127.0.0.1:0\"\n";
/// Longest a whole delivery phase may take.
const DELIVERY: Duration = Duration::from_secs(90);
const CONNECT_FAILURES: &str = "gateway_forward_failures_total{class=\"connect\"}";
const TIMEOUT_FAILURES: &str = "gateway_forward_failures_total{class=\"timeout\"}";

// ---------------------------------------------------------------- helpers

/// [`cloud`] for `url` and the golden tests' site maps ([`mapping`]), so that a patient's
/// updates are conditional updates of one Patient.
fn extra(url: &str, read_timeout_secs: u64, more: &str) -> String {
    format!("{}\n{}", cloud(url, read_timeout_secs, more), mapping())
}

fn dead_letter_rows(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(WAIT).unwrap();
    conn.query_row("SELECT count(*) FROM dead_letter", [], |r| r.get(0)).unwrap()
}

/// A server counter by JSON pointer under `counters`, e.g. `/faults/hang` or `/tls/handshakes`.
fn counter(server: &FhirServer, pointer: &str) -> u64 {
    server.status()["counters"].pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

// ---------------------------------------------------------------- a private PKI

/// Writes `text` to `dir/name` (keys with mode 0600) and returns the path.
fn write_pem(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    if name.ends_with(".key") {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

/// PEM files of one test: `ca.pem` (the CA the gateway trusts), `server.pem`/`server.key`
/// (127.0.0.1, localhost; signed by `server_ca`), `client.pem`/`client.key` (CN gateway-client,
/// signed by the trusted CA).
struct Pems {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn pems(dir: &Path, trusted: &Pki, server_ca: &Pki) -> Pems {
    let (server_cert, server_key) = server_ca.issue(&["127.0.0.1", "localhost"], false);
    let (client_cert, client_key) = trusted.issue(&["gateway-client"], true);
    Pems {
        ca: write_pem(dir, "ca.pem", &trusted.ca_pem),
        server_cert: write_pem(dir, "server.pem", &server_cert),
        server_key: write_pem(dir, "server.key", &server_key),
        client_cert: write_pem(dir, "client.pem", &client_cert),
        client_key: write_pem(dir, "client.key", &client_key),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `node server.mjs --tls-cert … --tls-key …` (and `--tls-client-ca` for mTLS).
fn tls_server(pems: &Pems, client_ca: Option<&Path>) -> FhirServer {
    let mut flags = vec!["--tls-cert", s(&pems.server_cert), "--tls-key", s(&pems.server_key)];
    if let Some(ca) = client_ca {
        flags.extend(["--tls-client-ca", s(ca)]);
    }
    let server = FhirServer::start(&flags);
    assert_eq!(server.scheme, "https");
    server
}

/// Phase "the cloud refuses the transport": `n` messages are converted, attempts fail with
/// class `connect` and are retried (never dead-lettered), nothing reaches the FHIR layer of the
/// server, and the server saw refused handshakes. Returns the failure count seen.
fn assert_nothing_gets_through(gw: &Gateway, setup: &Setup, server: &FhirServer, n: usize) -> f64 {
    wait_metric(gw, "gateway_messages_converted_total", n as f64, DELIVERY);
    // Several attempts: the failure is retried, not final.
    wait_metric(gw, CONNECT_FAILURES, 3.0, DELIVERY);
    wait_for("refused handshakes at the server", WAIT, || {
        (counter(server, "/tls/handshake_errors") >= 3).then_some(())
    });
    let m = gw.metrics();
    assert_eq!(metric_value(&m, "gateway_forward_delivered_total"), 0.0);
    assert_eq!(metric_value(&m, "gateway_dead_letters_total"), 0.0);
    assert!(metric_value(&m, "gateway_forward_retries_total") >= 2.0, "failed attempts are retried");
    for class in ["4xx", "401", "429", "5xx"] {
        assert_eq!(
            metric_value(&m, &format!("gateway_forward_failures_total{{class=\"{class}\"}}")),
            0.0,
            "class {class}"
        );
    }
    assert_eq!(undelivered(&setup.db_path()), n as i64, "rows stay pending");
    assert_eq!(dead_letter_rows(&setup.db_path()), 0);
    let status = server.status();
    assert_eq!(status["counters"]["requests"], 0, "no HTTP request got past TLS: {}", status["counters"]);
    assert_eq!(status["counters"]["tls"]["handshakes"], 0, "{}", status["counters"]);
    metric_value(&m, CONNECT_FAILURES)
}

/// Phase "delivered": the `n` messages sent with [`send_update`] arrived, each Patient update
/// written exactly once, nothing dead-lettered.
fn assert_delivered_once(gw: &Gateway, setup: &Setup, server: &FhirServer, n: usize, patients: usize) {
    wait_metric(gw, "gateway_forward_delivered_total", n as f64, DELIVERY);
    assert_eq!(undelivered(&setup.db_path()), 0);
    assert_eq!(journal_states(&setup.db_path()).get("delivered"), Some(&(n as i64)));
    assert_eq!(gw.metric("gateway_dead_letters_total"), 0.0);
    assert_eq!(dead_letter_rows(&setup.db_path()), 0);
    assert_eq!(server.counts().get("Patient"), Some(&patients), "one Patient per PID-3");
    assert_eq!(server.log("writes=1&type=Patient").len(), n, "one Patient update per message");
}

// ---------------------------------------------------------------- 1. TLS with a private CA

#[test]
fn tls_with_a_private_ca_delivers() {
    let mut setup = Setup::new(PLAIN);
    let pki = Pki::new("transport test CA");
    let pems = pems(&setup.dir.path().join("pki"), &pki, &pki);
    let server = tls_server(&pems, None);
    assert!(server.base_url().starts_with("https://127.0.0.1:"));
    setup.extra = extra(&server.base_url(), 15, &format!("ca_file = \"{}\"", pems.ca.display()));
    let gw = setup.start();
    let mut c = gw.connect();
    const N: usize = 6;
    for seq in 0..N {
        send_update(&mut c, seq, 3, "TLS");
    }
    assert_delivered_once(&gw, &setup, &server, N, 3);
    let tls = server.status()["counters"]["tls"].clone();
    assert!(tls["handshakes"].as_u64().unwrap() >= 1, "{tls}");
    assert_eq!(tls["handshake_errors"], 0, "{tls}");
    assert_eq!(gw.metric(CONNECT_FAILURES), 0.0);
    eprintln!("server TLS counters: {tls}");
}

// ---------------------------------------------------------------- 2. mutual TLS

/// The server requires a client certificate: without one nothing gets through and the rows
/// wait; restarted with `client_cert`/`client_key`, the gateway delivers them, once each.
#[test]
fn mtls_without_a_client_certificate_waits_and_with_one_delivers() {
    let mut setup = Setup::new(PLAIN);
    let pki = Pki::new("transport test CA");
    let pems = pems(&setup.dir.path().join("pki"), &pki, &pki);
    let server = tls_server(&pems, Some(&pems.ca));
    let ca = format!("ca_file = \"{}\"", pems.ca.display());
    setup.extra = extra(&server.base_url(), 15, &ca);
    let gw = setup.start();
    let mut c = gw.connect();
    const N: usize = 4;
    for seq in 0..N {
        send_update(&mut c, seq, 2, "MTLS");
    }
    let failures = assert_nothing_gets_through(&gw, &setup, &server, N);
    let errors = server.status()["counters"]["tls"]["errors"].clone();
    eprintln!("without a client certificate: {failures} connect failures; server TLS errors {errors}");
    assert!(errors["ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE"].as_u64().unwrap_or(0) >= 1, "{errors}");
    assert!(gw.terminate().success());

    // Same journal, now with the client certificate.
    setup.extra = extra(
        &server.base_url(),
        15,
        &format!(
            "{ca}\nclient_cert = \"{}\"\nclient_key = \"{}\"",
            pems.client_cert.display(),
            pems.client_key.display()
        ),
    );
    let gw = setup.start();
    assert_delivered_once(&gw, &setup, &server, N, 2);
    assert_eq!(gw.metric(CONNECT_FAILURES), 0.0);
    let tls = server.status()["counters"]["tls"].clone();
    assert!(
        tls["client_certs"]["gateway-client"].as_u64().unwrap_or(0) >= 1,
        "the server saw the gateway's certificate: {tls}"
    );
}

// ---------------------------------------------------------------- 3. untrusted server certificate

/// The server's certificate is signed by a CA the gateway does not trust: nothing is sent
/// (the gateway aborts the handshake), the rows wait; trusting that CA, they are delivered.
#[test]
fn a_server_certificate_from_an_untrusted_ca_gets_nothing() {
    let mut setup = Setup::new(PLAIN);
    let trusted = Pki::new("the CA the gateway trusts");
    let rogue = Pki::new("some other CA");
    let pems = pems(&setup.dir.path().join("pki"), &trusted, &rogue);
    let rogue_ca = write_pem(&setup.dir.path().join("pki"), "rogue-ca.pem", &rogue.ca_pem);
    let server = tls_server(&pems, None);
    setup.extra = extra(&server.base_url(), 15, &format!("ca_file = \"{}\"", pems.ca.display()));
    let gw = setup.start();
    let mut c = gw.connect();
    const N: usize = 4;
    for seq in 0..N {
        send_update(&mut c, seq, 2, "ROGUE");
    }
    let failures = assert_nothing_gets_through(&gw, &setup, &server, N);
    eprintln!(
        "untrusted server certificate: {failures} connect failures; server TLS {}",
        server.status()["counters"]["tls"]
    );
    assert!(gw.terminate().success());

    // Trusting the server's CA, the same rows go out.
    setup.extra = extra(&server.base_url(), 15, &format!("ca_file = \"{}\"", rogue_ca.display()));
    let gw = setup.start();
    assert_delivered_once(&gw, &setup, &server, N, 2);
}

/// The server's certificate comes from the trusted CA but names another host: the gateway
/// checks the name (127.0.0.1 is not in it) and sends nothing.
#[test]
fn a_server_certificate_for_another_host_gets_nothing() {
    let mut setup = Setup::new(PLAIN);
    let pki = Pki::new("transport test CA");
    let dir = setup.dir.path().join("pki");
    let mut pems = pems(&dir, &pki, &pki);
    let (cert, key) = pki.issue(&["fhir.example.org"], false);
    pems.server_cert = write_pem(&dir, "other-host.pem", &cert);
    pems.server_key = write_pem(&dir, "other-host.key", &key);
    let server = tls_server(&pems, None);
    setup.extra = extra(&server.base_url(), 15, &format!("ca_file = \"{}\"", pems.ca.display()));
    let gw = setup.start();
    let mut c = gw.connect();
    const N: usize = 2;
    for seq in 0..N {
        send_update(&mut c, seq, 2, "NAME");
    }
    let failures = assert_nothing_gets_through(&gw, &setup, &server, N);
    eprintln!(
        "certificate for another host: {failures} connect failures; server TLS {}",
        server.status()["counters"]["tls"]
    );
}

// ---------------------------------------------------------------- 4. HTTP proxy

/// What the test proxy saw.
#[derive(Default)]
struct ProxyStats {
    connections: AtomicUsize,
    /// CONNECT tunnels opened, and to where.
    tunnels: AtomicUsize,
    targets: Mutex<Vec<String>>,
    /// Requests in any other form (absolute-form `POST http://…`): answered 501.
    other: AtomicUsize,
    /// `POST /fhir/R4` request lines seen in the client→server bytes of tunnels (plain HTTP
    /// only: inside a TLS tunnel the proxy sees none).
    posts: AtomicUsize,
    bytes_up: AtomicU64,
}

/// A tiny HTTP forward proxy on 127.0.0.1 (std threads): `CONNECT host:port` tunnels to
/// loopback targets only. ureq 3 uses CONNECT for every target through an `http://` proxy,
/// `http://` targets included (ureq's `ConnectProxyConnector`), so absolute-form requests are
/// not forwarded but counted and refused, which a test can assert never happens.
struct Proxy {
    addr: SocketAddr,
    stats: Arc<ProxyStats>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(ProxyStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (stats, stop) = (stats.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    stats.connections.fetch_add(1, Ordering::SeqCst);
                    let stats = stats.clone();
                    std::thread::spawn(move || {
                        let _ = proxy_connection(conn, &stats);
                    });
                }
            })
        };
        Proxy { addr, stats, stop, accept: Some(accept) }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn tunnels(&self) -> usize {
        self.stats.tunnels.load(Ordering::SeqCst)
    }

    fn posts(&self) -> usize {
        self.stats.posts.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn proxy_connection(mut client: TcpStream, stats: &ProxyStats) -> std::io::Result<()> {
    client.set_read_timeout(Some(WAIT))?;
    // The request head, byte by byte: nothing after it may be consumed here.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "CONNECT" {
        stats.other.fetch_add(1, Ordering::SeqCst);
        client.write_all(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let Some(addr) = target.parse::<SocketAddr>().ok().filter(|a| a.ip().is_loopback()) else {
        client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    };
    let Ok(upstream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    };
    stats.tunnels.fetch_add(1, Ordering::SeqCst);
    stats.targets.lock().unwrap().push(target.to_string());
    client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")?;
    client.set_read_timeout(None)?;
    // server → client on its own thread; client → server here, counting request lines.
    let (mut up_read, mut client_write) = (upstream.try_clone()?, client.try_clone()?);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_read, &mut client_write);
        let _ = client_write.shutdown(Shutdown::Write);
    });
    const PATTERN: &[u8] = b"POST /fhir/R4";
    let mut up_write = upstream;
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Count the pattern across chunk boundaries: the tail is shorter than the pattern,
        // so a match in tail + chunk is never counted twice.
        tail.extend_from_slice(&buf[..n]);
        let found = tail.windows(PATTERN.len()).filter(|w| *w == PATTERN).count();
        stats.posts.fetch_add(found, Ordering::SeqCst);
        let keep = tail.len().min(PATTERN.len() - 1);
        tail.drain(..tail.len() - keep);
        stats.bytes_up.fetch_add(n as u64, Ordering::SeqCst);
        if up_write.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = up_write.shutdown(Shutdown::Write);
    Ok(())
}

/// With `[cloud] proxy`, every request goes through the proxy (a CONNECT tunnel to the
/// server); without it, nothing does, even with the usual proxy variables set in the
/// gateway's environment (`[cloud] proxy` is documented as the only source).
#[test]
fn the_proxy_carries_every_request_and_is_not_used_without_the_setting() {
    let proxy = Proxy::start();
    let server = FhirServer::start(&[]);
    let mut setup = Setup::new(PLAIN);
    setup.extra = extra(&server.base_url(), 15, &format!("proxy = \"{}\"", proxy.url()));
    let gw = setup.start();
    let mut c = gw.connect();
    const N: usize = 6;
    for seq in 0..N {
        send_update(&mut c, seq, 3, "PXY");
    }
    assert_delivered_once(&gw, &setup, &server, N, 3);
    let requests = counter(&server, "/requests") as usize;
    assert!(requests >= N, "{requests}");
    assert!(proxy.tunnels() >= 1);
    assert_eq!(proxy.posts(), requests, "every FHIR request the server saw came through the proxy");
    assert_eq!(proxy.stats.other.load(Ordering::SeqCst), 0, "ureq tunnels http:// targets too");
    let target = server.addr.to_string();
    assert!(proxy.stats.targets.lock().unwrap().iter().all(|t| *t == target), "tunnels go to the server");
    eprintln!(
        "via the proxy: {} connections, {} tunnels, {requests} POSTs, {} bytes up",
        proxy.connections(),
        proxy.tunnels(),
        proxy.stats.bytes_up.load(Ordering::SeqCst)
    );
    assert!(gw.terminate().success());

    // No `proxy` key: a new gateway (own journal) with the proxy in its environment.
    let (connections, tunnels) = (proxy.connections(), proxy.tunnels());
    server.reset();
    let mut direct = Setup::new(PLAIN);
    direct.extra = extra(&server.base_url(), 15, "");
    let url = proxy.url();
    let env: Vec<(&str, &str)> = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"]
        .iter()
        .map(|k| (*k, url.as_str()))
        .collect();
    let gw = direct.start_with_env(&env);
    let mut c = gw.connect();
    for seq in 0..N {
        send_update(&mut c, seq, 3, "DIRECT");
    }
    assert_delivered_once(&gw, &direct, &server, N, 3);
    assert_eq!((proxy.connections(), proxy.tunnels()), (connections, tunnels), "nothing went through the proxy");
}

/// HTTPS through the proxy: the tunnel carries TLS end to end (the proxy sees no request
/// line), and the private CA is still what the gateway checks.
#[test]
fn tls_goes_end_to_end_through_the_proxy() {
    let proxy = Proxy::start();
    let mut setup = Setup::new(PLAIN);
    let pki = Pki::new("transport test CA");
    let pems = pems(&setup.dir.path().join("pki"), &pki, &pki);
    let server = tls_server(&pems, Some(&pems.ca));
    setup.extra = extra(
        &server.base_url(),
        15,
        &format!(
            "proxy = \"{}\"\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
            proxy.url(),
            pems.ca.display(),
            pems.client_cert.display(),
            pems.client_key.display()
        ),
    );
    let gw = setup.start();
    let mut c = gw.connect();
    const N: usize = 4;
    for seq in 0..N {
        send_update(&mut c, seq, 2, "PXYTLS");
    }
    assert_delivered_once(&gw, &setup, &server, N, 2);
    let tls = server.status()["counters"]["tls"].clone();
    assert!(proxy.tunnels() >= 1);
    assert!(
        proxy.tunnels() >= tls["handshakes"].as_u64().unwrap() as usize,
        "every TLS session came through a tunnel: {tls}"
    );
    assert_eq!(proxy.posts(), 0, "the proxy saw only ciphertext");
    assert!(tls["client_certs"]["gateway-client"].as_u64().unwrap_or(0) >= 1, "{tls}");
}

// ---------------------------------------------------------------- 5. hung requests → read timeout

/// Every 3rd request is read by the server and never answered. With `read_timeout_secs = 1`
/// (and `timeout_secs = 30`), each hung request fails as a timeout after about a second, is
/// retried, and everything arrives exactly once, in per-patient order.
#[test]
fn hung_requests_time_out_and_are_retried_exactly_once_in_order() {
    let server = FhirServer::start(&[]);
    server.control(json!({"hang_every_n": 3}));
    let mut setup = Setup::new(PLAIN);
    setup.extra = extra(&server.base_url(), 1, "");
    let gw = setup.start();
    let mut c = gw.connect();
    const N: usize = 18;
    const PATIENTS: usize = 3;
    for seq in 0..N {
        send_update(&mut c, seq, PATIENTS, "HANG");
    }
    // The read timeout applies, not the 30 s whole-request timeout.
    wait_for("a hung request", DELIVERY, || (counter(&server, "/faults/hang") >= 1).then_some(()));
    let hung_at = Instant::now();
    wait_metric(&gw, TIMEOUT_FAILURES, 1.0, Duration::from_secs(20));
    let first_timeout = hung_at.elapsed();
    assert!(
        first_timeout < Duration::from_secs(10),
        "a hung request timed out after {first_timeout:?} (read_timeout_secs = 1)"
    );

    assert_delivered_once(&gw, &setup, &server, N, PATIENTS);
    let hangs = counter(&server, "/faults/hang");
    let timeouts = gw.metric(TIMEOUT_FAILURES);
    eprintln!("{hangs} hung requests, {timeouts} timeouts; first timed out {first_timeout:?} after it hung");
    assert!(hangs >= 2);
    // A request carries one or several patients' transactions: each of them times out.
    assert!(timeouts >= hangs as f64, "each hung request is at least one timeout");
    assert_eq!(gw.metric(CONNECT_FAILURES), 0.0);
    assert!(gw.metric("gateway_forward_retries_total") >= hangs as f64);
    server.control(json!({"hang_every_n": 0})); // the history reads below are FHIR requests too
    check_per_patient_order(&server, PATIENTS, &(0..N).collect::<Vec<_>>());
}

// ---------------------------------------------------------------- 6. SIGKILL with requests in flight

/// The server holds every request unanswered; the gateway is SIGKILLed with a request in
/// flight on each patient lane. Restarted on the same journal, it sends them again: every
/// message is at the server exactly once, in per-patient order.
#[test]
fn sigkill_with_requests_in_flight_delivers_each_message_once_in_order() {
    let server = FhirServer::start(&[]);
    let mut setup = Setup::new(PLAIN);
    // A read timeout longer than the test's wait: the requests are still in flight at the kill.
    // One bundle per request, so each lane has a request of its own in flight.
    setup.extra = extra(&server.base_url(), 30, "request_max_entries = 1");
    let gw = setup.start();
    let mut c = gw.connect();
    const PATIENTS: usize = 3;
    const FIRST: usize = 6;
    const N: usize = 15;
    for seq in 0..FIRST {
        send_update(&mut c, seq, PATIENTS, "KILL");
    }
    wait_metric(&gw, "gateway_forward_delivered_total", FIRST as f64, DELIVERY);

    server.control(json!({"hang_every_n": 1}));
    for seq in FIRST..N {
        send_update(&mut c, seq, PATIENTS, "KILL");
    }
    // One request in flight per patient lane (concurrency 4 > 3 lanes).
    wait_for("a request in flight on every lane", DELIVERY, || {
        (counter(&server, "/faults/hang") >= PATIENTS as u64).then_some(())
    });
    assert_eq!(gw.metric("gateway_forward_delivered_total"), FIRST as f64);
    assert_eq!(gw.metric(TIMEOUT_FAILURES), 0.0, "still in flight");
    drop(c);
    gw.kill();
    assert_eq!(undelivered(&setup.db_path()), (N - FIRST) as i64, "nothing in flight was marked delivered");

    server.control(json!({"hang_every_n": 0}));
    let gw = setup.start();
    wait_metric(&gw, "gateway_forward_delivered_total", (N - FIRST) as f64, DELIVERY);
    assert_eq!(undelivered(&setup.db_path()), 0);
    assert_eq!(journal_states(&setup.db_path()).get("delivered"), Some(&(N as i64)));
    assert_eq!(
        gw.metric("gateway_forward_delivered_total"),
        (N - FIRST) as f64,
        "what was delivered before the kill is not sent again"
    );
    assert_eq!(gw.metric("gateway_dead_letters_total"), 0.0);
    assert_eq!(dead_letter_rows(&setup.db_path()), 0);
    check_per_patient_order(&server, PATIENTS, &(0..N).collect::<Vec<_>>());
}
