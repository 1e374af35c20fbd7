//! Helpers shared by the end-to-end tests: the real `gateway` binary as a child process,
//! a blocking MLLP client (plain or TLS), and readers for the journal and `/metrics`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use gateway::mllp::codec::{self, Decoded, Decoder};

/// Longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// Path of the `gateway` binary built by `cargo build` (scripts/test builds it first).
pub fn gateway_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GATEWAY_BIN") {
        return p.into();
    }
    // target/<profile>/deps/<test-exe> → target/<profile>/gateway
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe.parent().and_then(Path::parent).expect("target dir").join("gateway");
    assert!(bin.exists(), "{} not found: run `cargo build -p gateway` first (scripts/test does)", bin.display());
    bin
}

/// A gateway configuration written to a temp folder; `listeners` is TOML for the
/// `[[listener]]` tables (use port 0: the real addresses are read from the log).
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub store_extra: String,
    pub listeners: String,
    /// More TOML appended after `[ops]` (e.g. a `[cloud]` table).
    pub extra: String,
}

impl Setup {
    pub fn new(listeners: &str) -> Setup {
        Setup {
            dir: tempfile::tempdir().unwrap(),
            store_extra: String::new(),
            listeners: listeners.to_string(),
            extra: String::new(),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("var/journal.db")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    fn write_config(&self) {
        let text = format!(
            "[store]\npath = \"var/journal.db\"\nkey_file = \"var/journal.key\"\n{}\n\n{}\n\n[ops]\nadmin_bind = \"127.0.0.1:0\"\n\n{}\n",
            self.store_extra, self.listeners, self.extra
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Starts the gateway and waits until every listener and the admin endpoint are up.
    pub fn start(&self) -> Gateway {
        self.start_with_env(&[])
    }

    /// Like [`Setup::start`], with extra environment variables for the gateway process
    /// (e.g. `HTTPS_PROXY`, to check that it is ignored).
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Gateway {
        self.start_with(&[], env)
    }

    /// Like [`Setup::start_with_env`], with extra `gateway run` arguments.
    pub fn start_with(&self, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        self.write_config();
        let mut child = Command::new(gateway_bin())
            .args(["run", "--config"])
            .arg(self.config_path())
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gateway");
        let expected = self.listeners.matches("[[listener]]").count();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("GATEWAY_TEST_LOG").is_some() {
                    eprintln!("[gateway] {line}");
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut gw = Gateway { child, mllp: Vec::new(), admin: None, log: rx, lines: Vec::new() };
        let deadline = Instant::now() + WAIT;
        while gw.mllp.len() < expected || gw.admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line =
                gw.log.recv_timeout(left).unwrap_or_else(|_| panic!("gateway did not start; log: {:#?}", gw.lines));
            if line.contains("mllp listening") {
                gw.mllp.push(field(&line, "addr=").parse().unwrap());
            } else if line.contains("admin listening") {
                gw.admin = Some(field(&line, "addr=").parse().unwrap());
            }
            gw.lines.push(line);
        }
        gw
    }
}

fn field(line: &str, key: &str) -> String {
    let start = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len();
    line[start..].split_whitespace().next().unwrap().to_string()
}

/// A running gateway process.
pub struct Gateway {
    pub child: Child,
    /// MLLP listener addresses, in config order.
    pub mllp: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    log: mpsc::Receiver<String>,
    pub lines: Vec<String>,
}

impl Gateway {
    pub fn addr(&self) -> SocketAddr {
        self.mllp[0]
    }

    pub fn connect(&self) -> Mllp {
        Mllp::plain(self.addr())
    }

    /// SIGTERM, then wait for the exit (bounded).
    pub fn terminate(mut self) -> ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait_exit()
    }

    /// SIGTERM, wait for the exit, and return everything the gateway logged.
    pub fn terminate_log(mut self) -> String {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.wait_exit();
        assert!(status.success(), "{status:?}");
        while let Ok(line) = self.log.recv_timeout(WAIT) {
            self.lines.push(line);
        }
        self.lines.join("\n")
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "gateway did not exit within {WAIT:?}");
            // Drain the log while waiting; the pipe must not fill up.
            if let Ok(line) = self.log.recv_timeout(Duration::from_millis(20)) {
                self.lines.push(line);
            }
        }
    }

    /// The Prometheus text from `/metrics`.
    pub fn metrics(&self) -> String {
        http_get(self.admin.unwrap(), "/metrics").1
    }

    /// A metric sample's value, e.g. `gateway_acks_total{code="AA"}`.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) process `pid` has used so far, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} not in metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// A blocking HTTP/1.0 GET; returns status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The first `/status.json` sample the gateway serves (waits for the status stage's first).
pub fn status_json(gw: &Gateway) -> serde_json::Value {
    wait_for("a status sample", WAIT, || {
        let (code, body) = http_get(gw.admin.unwrap(), "/status.json");
        (code == 200).then(|| serde_json::from_str(&body).unwrap())
    })
}

/// Polls `/status.json` until `ok` holds; on timeout the panic shows the last sample.
pub fn wait_status(
    gw: &Gateway,
    what: &str,
    limit: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let s = status_json(gw);
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last status: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Any byte stream an MLLP client can talk over.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A blocking MLLP client with a read timeout.
pub struct Mllp {
    stream: Box<dyn Stream>,
    decoder: Decoder,
    pending: Vec<u8>,
}

impl Mllp {
    pub fn plain(addr: SocketAddr) -> Mllp {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_nodelay(true).unwrap();
        Mllp::over(Box::new(s))
    }

    pub fn over(stream: Box<dyn Stream>) -> Mllp {
        Mllp { stream, decoder: Decoder::new(1 << 20), pending: Vec::new() }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    pub fn send(&mut self, message: &[u8]) {
        self.try_send(message).unwrap();
    }

    /// Like [`Mllp::send_raw`], for when the peer may already be closing.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    pub fn try_send(&mut self, message: &[u8]) -> std::io::Result<()> {
        let mut wire = Vec::new();
        codec::encode(message, &mut wire);
        self.try_send_raw(&wire)
    }

    /// Sends a message and returns the ACK as text.
    pub fn call(&mut self, message: &[u8]) -> String {
        self.send(message);
        self.read_ack().expect("an ACK")
    }

    /// The next frame from the gateway, or `None` if it closed the connection.
    pub fn read_ack(&mut self) -> Option<String> {
        let mut chunk = [0u8; 4096];
        loop {
            while !self.pending.is_empty() {
                let (used, found) = self.decoder.decode(&self.pending);
                self.pending.drain(..used);
                if let Decoded::Frame(f) = found {
                    return Some(String::from_utf8(f).unwrap());
                }
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    panic!("no ACK and no close within {WAIT:?}")
                }
                // Reset, broken pipe, a TLS alert: the gateway ended the connection.
                Err(_) => return None,
            }
        }
    }

    /// True when the gateway closes the connection (within [`WAIT`]) without sending more.
    pub fn closed_by_peer(&mut self) -> bool {
        self.read_ack().is_none()
    }
}

/// Senders that keep one message outstanding each, like EHR interfaces, until the gateway
/// stops answering or `Senders::stop` is called.
pub struct Senders {
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Senders {
    /// Starts `n` senders on `addr`; control IDs are `{prefix}S{sender}N{i}`.
    pub fn start(addr: SocketAddr, n: usize, prefix: &str) -> Senders {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicUsize::new(0));
        let threads = (0..n)
            .map(|s| {
                let (stop, acks, prefix) = (stop.clone(), acks.clone(), prefix.to_string());
                std::thread::spawn(move || {
                    let mut c = Mllp::plain(addr);
                    let mut acked = Vec::new();
                    for i in 0..1_000_000 {
                        let id = format!("{prefix}S{s}N{i}");
                        if stop.load(Ordering::Relaxed) || c.try_send(&adt(&id)).is_err() {
                            break;
                        }
                        let Some(ack) = c.read_ack() else { break };
                        assert_eq!(msa(&ack), ("AA".into(), id.clone()));
                        acked.push(id);
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    acked
                })
            })
            .collect();
        Senders { stop, acks, threads }
    }

    /// ACKs received so far, by all senders.
    pub fn acks(&self) -> usize {
        self.acks.load(Ordering::Relaxed)
    }

    /// Waits (bounded by [`WAIT`]) until at least `n` ACKs arrived.
    pub fn wait_for_acks(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.acks() < n && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }

    /// Stops the senders and returns every control ID that was ACKed.
    pub fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    }
}

/// MSA-1 and MSA-2 of an ACK.
pub fn msa(ack: &str) -> (String, String) {
    let (code, id) = gateway::loadgen::msa(ack.as_bytes()).unwrap_or_else(|| panic!("no MSA in {ack:?}"));
    (code, id)
}

/// The ERR segment of an ACK, if any.
pub fn err_segment(ack: &str) -> Option<&str> {
    ack.split('\r').find(|s| s.starts_with("ERR"))
}

/// A valid ADT^A01 with the given control ID (about 1 KB, with a patient name and MRN).
pub fn adt(control_id: &str) -> Vec<u8> {
    gateway::loadgen::sample_adt(control_id, 4242)
}

/// Control IDs in the journal with their row counts.
pub fn journal_counts(db: &Path) -> std::collections::HashMap<String, i64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(WAIT).unwrap();
    let mut stmt = conn.prepare("SELECT control_id, count(*) FROM journal GROUP BY control_id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

// ---------------------------------------------------------------- FHIR test server

/// A blocking HTTP/1.0 request with an optional JSON body; returns status code and body.
pub fn http_request(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    let mut wire = req.into_bytes();
    wire.extend_from_slice(body.unwrap_or_default());
    s.write_all(&wire).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status =
        text.split_whitespace().nth(1).unwrap_or_else(|| panic!("no HTTP status in {text:?}")).parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Path of the Node FHIR test server (`tests/fhir-server/server.mjs`).
pub fn fhir_server_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fhir-server/server.mjs")
}

/// The Node (Medplum) FHIR test server as a child process, on an ephemeral loopback port.
/// Its stdin is a pipe, so it also exits when the test process dies; killed on drop.
pub struct FhirServer {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<std::sync::Mutex<Vec<String>>>,
    /// Where the control routes (`/__control`, `/__dump`, `/__log`) answer over plain HTTP:
    /// `addr`, or with `--tls-cert` the server's separate plain-HTTP control listener.
    pub control_addr: SocketAddr,
    /// `https` when started with `--tls-cert`, else `http`.
    pub scheme: &'static str,
}

impl FhirServer {
    /// The Node process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `node --experimental-websocket server.mjs --port 0 <flags>` and waits (bounded)
    /// for its `listening http://127.0.0.1:<port>` line (with `--tls-cert`:
    /// `listening https://127.0.0.1:<port> control http://127.0.0.1:<control port>`).
    pub fn start(flags: &[&str]) -> FhirServer {
        let node = std::env::var_os("NODE").unwrap_or_else(|| "node".into());
        let mut child = Command::new(node)
            .arg("--experimental-websocket")
            .arg(fhir_server_script())
            .args(["--port", "0"])
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node (the FHIR test server needs Node 20.19+ and `npm ci --prefix tests/fhir-server`)");
        let stderr = Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let (pipe, lines) = (child.stderr.take().unwrap(), stderr.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if std::env::var_os("FHIR_TEST_LOG").is_some() {
                        eprintln!("[fhir] {line}");
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Loading the definitions takes ~3 s; allow for a busy machine.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (addr, control_addr, scheme) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("listening http://") {
                        let addr = url.trim().trim_end_matches('/').parse::<SocketAddr>().unwrap();
                        break (addr, addr, "http");
                    }
                    if let Some(rest) = line.strip_prefix("listening https://") {
                        let (url, control) = rest
                            .split_once(" control http://")
                            .unwrap_or_else(|| panic!("no control address in {line:?}"));
                        let parse = |u: &str| u.trim().trim_end_matches('/').parse::<SocketAddr>().unwrap();
                        break (parse(url), parse(control), "https");
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("FHIR test server did not start; stderr: {:#?}", stderr.lock().unwrap());
                }
            }
        };
        FhirServer { child, addr, stderr, control_addr, scheme }
    }

    /// The FHIR base URL (`http://127.0.0.1:<port>/fhir/R4`; `https://` with `--tls-cert`).
    pub fn base_url(&self) -> String {
        format!("{}://{}/fhir/R4", self.scheme, self.addr)
    }

    /// The OAuth token URL (`http://127.0.0.1:<port>/token`; `https://` with `--tls-cert`).
    pub fn token_url(&self) -> String {
        format!("{}://{}/token", self.scheme, self.addr)
    }

    /// What the server logged on stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    fn json(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> serde_json::Value {
        let body = body.map(|b| b.to_string().into_bytes());
        let (status, text) = http_request(self.control_addr, method, path, body.as_deref());
        assert!((200..300).contains(&status), "{method} {path}: HTTP {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
    }

    /// `POST /__control` with fault switches; returns the new state and counters.
    pub fn control(&self, switches: serde_json::Value) -> serde_json::Value {
        self.json("POST", "/__control", Some(&switches))
    }

    /// Empties the store, the log and the counters.
    pub fn reset(&self) {
        self.control(serde_json::json!({"reset": true}));
    }

    /// `GET /__control`: `{state, counters, ...}`.
    pub fn status(&self) -> serde_json::Value {
        self.json("GET", "/__control", None)
    }

    /// `GET /__dump`: `{ "<ResourceType>": [resources…] }`.
    pub fn dump(&self) -> serde_json::Value {
        self.json("GET", "/__dump", None)
    }

    /// Resources stored, per type.
    pub fn counts(&self) -> std::collections::BTreeMap<String, usize> {
        dump_counts(&self.dump())
    }

    /// `GET /__log?<query>`: executed entries in order.
    pub fn log(&self, query: &str) -> Vec<serde_json::Value> {
        let path = if query.is_empty() { "/__log".to_string() } else { format!("/__log?{query}") };
        match self.json("GET", &path, None) {
            serde_json::Value::Array(items) => items,
            other => panic!("/__log is not an array: {other}"),
        }
    }

    /// A FHIR GET (no auth), e.g. `/Patient/<id>/_history`. Plain-HTTP servers only (with
    /// `--tls-cert` the control listener has no FHIR routes).
    pub fn fhir_get(&self, path: &str) -> serde_json::Value {
        self.json("GET", &format!("/fhir/R4{path}"), None)
    }
}

impl Drop for FhirServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resources per type in a `/__dump` answer.
pub fn dump_counts(dump: &serde_json::Value) -> std::collections::BTreeMap<String, usize> {
    dump.as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_array().map_or(0, Vec::len))).filter(|(_, n)| *n > 0).collect())
        .unwrap_or_default()
}

/// Polls `f` (every 20 ms) until it returns `Some`, or panics with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Journal rows by state (`received`, `converted`, `delivered`, `dead`).
pub fn journal_states(db: &Path) -> std::collections::HashMap<String, i64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(WAIT).unwrap();
    let mut stmt = conn.prepare("SELECT state, count(*) FROM journal GROUP BY state").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

/// Journal rows not yet delivered or dead-lettered (`received` + `converted`).
pub fn undelivered(db: &Path) -> i64 {
    let s = journal_states(db);
    s.get("received").copied().unwrap_or(0) + s.get("converted").copied().unwrap_or(0)
}

/// Polls `/metrics` (bounded by `limit`) until `series` reaches `n`.
pub fn wait_metric(gw: &Gateway, series: &str, n: f64, limit: Duration) {
    wait_for(&format!("{series} >= {n}"), limit, || (gw.metric(series) >= n).then_some(()));
}

// ---------------------------------------------------------------- store-and-forward scenarios

/// TOML for `[cloud]` pointing at `url`, with quick retries (no jitter), a 2 s connect timeout
/// and the given read timeout; `more` adds keys (or a `[cloud.auth]` table).
pub fn cloud(url: &str, read_timeout_secs: u64, more: &str) -> String {
    format!(
        "[cloud]\nurl = \"{url}\"\nbackoff_base_ms = 50\nbackoff_max_secs = 1\nretry_jitter = false\n\
         connect_timeout_secs = 2\nread_timeout_secs = {read_timeout_secs}\ntimeout_secs = 30\n{more}\n"
    )
}

/// Path of the golden tests' site file, `tests/golden/site.toml`.
pub fn site_toml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/site.toml")
}

/// The `[mapping]` of tests/golden/site.toml with its relative paths made absolute. With it,
/// PID-3 `…^^^OPENEMR^MR` has an identifier system, so a patient's updates are conditional
/// updates of one Patient.
pub fn mapping() -> String {
    let text = std::fs::read_to_string(site_toml()).unwrap();
    let golden = site_toml().parent().unwrap().to_path_buf();
    text.replace("\"../../config/", &format!("\"{}/../../config/", golden.display()))
}

/// The `[mapping]` of the shipped `config/gateway.toml` (what a new site runs with), its code
/// map paths made absolute.
pub fn shipped_mapping() -> String {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let text = std::fs::read_to_string(config.join("gateway.toml")).unwrap();
    let start = text.find("\n[mapping]").expect("[mapping] in config/gateway.toml");
    text[start..].replace("\"maps/", &format!("\"{}/maps/", config.display()))
}

/// Dead letters in journal order: stage, reason and the journal row's control ID.
pub fn dead_letters(db: &Path) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(WAIT).unwrap();
    let mut stmt = conn
        .prepare("SELECT d.stage, d.reason, j.control_id FROM dead_letter d JOIN journal j ON j.seq = d.journal_seq ORDER BY d.rowid")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

/// An ADT^A08 for patient `P<patient>` whose given name carries the sequence number
/// (`S0007` for `seq` 7).
pub fn a08(patient: usize, seq: usize, control_id: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|OPENEMR|Greenfield Clinic|HL7GW|FHIRHUB|20260324080000-0600||ADT^A08^ADT_A01|{control_id}|P|2.5.1|||AL|NE\r\
         EVN|A08|20260324080000-0600\r\
         PID|1||P{patient}^^^OPENEMR^MR||Order^S{seq:04}||20010214|F\r\
         PV1|1|O|CLINIC1^^^Greenfield Clinic||||||||||||||||VP{patient}^^^OPENEMR^VN\r"
    )
    .into_bytes()
}

/// Sends update number `seq` (an [`a08`], control ID `{prefix}{seq}`) for patient
/// `seq % patients + 1` and checks it was accepted (`AA` or `CA`).
pub fn send_update(c: &mut Mllp, seq: usize, patients: usize, prefix: &str) {
    let ack = c.call(&a08(seq % patients + 1, seq, &format!("{prefix}{seq}")));
    assert!(matches!(msa(&ack).0.as_str(), "AA" | "CA"), "A08 {prefix}{seq}: {ack:?}");
}

/// After [`send_update`] of every sequence number in `seqs` for `patients` patients: each
/// Patient exists once, its `_history` (oldest first) carries exactly the sequence numbers
/// sent for it, in send order, and the server logged one Patient write per update.
pub fn check_per_patient_order(server: &FhirServer, patients: usize, seqs: &[usize]) {
    let dump = server.dump();
    let stored = dump["Patient"].as_array().unwrap();
    assert_eq!(stored.len(), patients, "one Patient per PID-3");
    for p in stored {
        let mrn = p["identifier"][0]["value"].as_str().unwrap().to_string();
        let id = p["id"].as_str().unwrap();
        let history = server.fhir_get(&format!("/Patient/{id}/_history"));
        let mut versions: Vec<(String, String)> = history["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["resource"]["meta"]["lastUpdated"].as_str().unwrap().to_string(),
                    e["resource"]["name"][0]["given"][0].as_str().unwrap().to_string(),
                )
            })
            .collect();
        // The history is newest first; lastUpdated may tie within a millisecond, so keep
        // the server's order and only check it is consistent with the timestamps.
        versions.reverse();
        assert!(versions.windows(2).all(|w| w[0].0 <= w[1].0), "{mrn}: history order {versions:?}");
        let got: Vec<usize> = versions.iter().map(|(_, g)| g.trim_start_matches('S').parse().unwrap()).collect();
        let patient: usize = mrn.trim_start_matches('P').parse().unwrap();
        let sent: Vec<usize> = seqs.iter().copied().filter(|s| s % patients + 1 == patient).collect();
        assert_eq!(got, sent, "{mrn}: every update once, in send order");
    }
    // Exactly one Patient write per update: nothing was sent twice.
    assert_eq!(server.log("writes=1&type=Patient").len(), seqs.len(), "one Patient write per update");
}

// ---------------------------------------------------------------- a private PKI

/// A private CA (rcgen) that issues server and client certificates as PEM strings.
pub struct Pki {
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM.
    pub ca_pem: String,
}

impl Pki {
    /// A new self-signed CA with common name `name`.
    pub fn new(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki { ca_pem: cert.pem(), ca: rcgen::Issuer::new(params, key) }
    }

    /// (certificate PEM, key PEM): a server certificate for `names` (IP addresses become IP
    /// SANs), or a client certificate with common name `names[0]`.
    pub fn issue(&self, names: &[&str], client: bool) -> (String, String) {
        let sans = if client { Vec::new() } else { names.iter().map(|n| n.to_string()).collect() };
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}
