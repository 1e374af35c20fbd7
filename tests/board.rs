//! The gateway and its appliance: systemd notifications and the service watchdog (fed only
//! while the stages live), SIGHUP as an orderly stop, the reset button through a board file,
//! and `gateway health`, the boot health gate — all against the real binary.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gateway_tests::{adt, gateway_bin, http_get, msa, Mllp, Setup, WAIT};

const LISTENER: &str = "[[listener]]\nname = \"adt\"\nbind = \"127.0.0.1:0\"\n";

/// systemd's end of `NOTIFY_SOCKET`.
struct Systemd {
    socket: UnixDatagram,
    path: String,
}

impl Systemd {
    fn bind(dir: &Path) -> Systemd {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        Systemd { socket, path: path.to_str().unwrap().to_string() }
    }

    /// The next notification, or `None` when none comes within `within`.
    fn next(&self, within: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 256];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
            Err(e) => panic!("notify socket: {e}"),
        }
    }
}

#[test]
fn ready_after_the_listeners_then_watchdog_pings_that_stop_when_the_writer_wedges() {
    let setup = Setup::new(LISTENER);
    let systemd = Systemd::bind(setup.dir.path());
    let gw = setup.start_with_env(&[
        ("NOTIFY_SOCKET", &systemd.path),
        ("WATCHDOG_USEC", "400000"),
        // Debug-build test hooks: the writer blocks on its first message; 1 s without
        // progress is a stall.
        ("GATEWAY_TEST_WEDGE", "journal writer"),
        ("GATEWAY_TEST_STALL_MS", "1000"),
    ]);
    assert_eq!(systemd.next(WAIT).as_deref(), Some("READY=1"), "the first notification");
    // READY=1 came after the bind: the MLLP port accepts now.
    TcpStream::connect(gw.addr()).expect("the MLLP port accepts once READY=1 was sent");
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(systemd.next(Duration::from_secs(2)).as_deref(), Some("WATCHDOG=1"));
    }
    assert!(started.elapsed() < Duration::from_secs(2), "pinged every 200 ms (half of 400 ms)");
    assert!(gw.metric("gateway_watchdog_pings_total") >= 3.0);
    assert_eq!(gw.metric("gateway_board_led_state{state=\"healthy\"}"), 1.0);

    // Wedge the journal writer: its first message never commits.
    let mut client = gw.connect();
    client.send(&adt("WEDGE1"));
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "watchdog pings went on with a wedged writer");
        match systemd.next(Duration::from_millis(1_200)) {
            Some(n) => assert_eq!(n, "WATCHDOG=1"),
            None => break, // three intervals without a ping: stopped
        }
    }
    let (status, body) = http_get(gw.admin.unwrap(), "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("journal writer stage: no progress"), "{body}");
    assert_eq!(gw.metric("gateway_board_led_state{state=\"storage_fault\"}"), 1.0);
    // Still no ping: systemd would now restart the service.
    assert_eq!(systemd.next(Duration::from_millis(600)), None);
    gw.kill();
}

#[test]
fn sighup_is_an_orderly_stop_that_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let systemd = Systemd::bind(dir.path());
    let mut daemon = Daemon::start("", &[("NOTIFY_SOCKET", &systemd.path)]);
    assert_eq!(systemd.next(WAIT).as_deref(), Some("READY=1"));
    let ack = Mllp::plain(daemon.mllp).call(&adt("HUP1"));
    assert_eq!(msa(&ack).0, "AA");
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGHUP) };
    // Without WATCHDOG_USEC no pings are sent: the next notification is the stop.
    assert_eq!(systemd.next(WAIT).as_deref(), Some("STOPPING=1"));
    let status = daemon.wait();
    assert!(status.success(), "SIGHUP is an orderly stop: {status:?}");
    let log = std::fs::read_to_string(daemon.dir.path().join("gateway.log")).unwrap();
    assert!(log.contains("SIGHUP: shutting down") && log.contains("stopped"), "{log}");
    assert_eq!(systemd.next(Duration::from_millis(100)), None, "nothing after STOPPING=1");
}

#[test]
fn a_short_press_of_a_file_backed_button_logs_the_health_summary() {
    let mut setup = Setup::new(LISTENER);
    let button = setup.dir.path().join("button");
    std::fs::write(&button, "0\n").unwrap();
    std::fs::write(
        setup.dir.path().join("board.toml"),
        format!("name = \"test\"\n[button]\ninput_file = \"{}\"\n", button.display()),
    )
    .unwrap();
    setup.extra = "[board]\nfile = \"board.toml\"\n".into();
    let gw = setup.start();
    assert!(gw.lines.iter().any(|l| l.contains("board=test")), "{:#?}", gw.lines);
    assert_eq!(gw.metric("gateway_button_presses_total{press=\"short\"}"), 0.0);
    // The board thread has polled once it shows the state after start-up; a button already
    // down at its first poll would be ignored.
    let deadline = Instant::now() + WAIT;
    while gw.metric("gateway_board_led_state{state=\"healthy\"}") < 1.0 {
        assert!(Instant::now() < deadline, "the board stage did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The input: released for 200 ms (past the 30 ms debounce: the button's known state), then
    // held 300 ms (far from the 10 s long press).
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&button, "1\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&button, "0\n").unwrap();
    let deadline = Instant::now() + WAIT;
    while gw.metric("gateway_button_presses_total{press=\"short\"}") < 1.0 {
        assert!(Instant::now() < deadline, "the press was not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = gw.terminate_log();
    assert!(log.contains("reset button: health summary"), "{log}");
    assert!(log.contains("led=\"healthy\"") || log.contains("led=healthy"), "{log}");
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A config with fixed ports (the health gate probes what the file says) and a daemon on it.
struct Daemon {
    dir: tempfile::TempDir,
    child: Child,
    mllp: SocketAddr,
}

impl Daemon {
    fn start(cloud: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let (mllp, admin) = (free_port(), free_port());
        let text = format!(
            "[store]\npath = \"var/journal.db\"\nkey_file = \"var/journal.key\"\n\n[[listener]]\nname = \"adt\"\nbind = \"127.0.0.1:{mllp}\"\n\n[ops]\nadmin_bind = \"127.0.0.1:{admin}\"\n\n{cloud}\n"
        );
        std::fs::write(dir.path().join("gateway.toml"), text).unwrap();
        let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
        let child = Command::new(gateway_bin())
            .args(["run", "--config"])
            .arg(dir.path().join("gateway.toml"))
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon { dir, child, mllp: SocketAddr::from(([127, 0, 0, 1], mllp)) }
    }

    /// `gateway health` on this daemon's config: exit status and output.
    fn health(&self, timeout_secs: u64) -> (bool, String) {
        let out = Command::new(gateway_bin())
            .args(["health", "--timeout", &timeout_secs.to_string(), "--config"])
            .arg(self.dir.path().join("gateway.toml"))
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    fn stop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert!(self.wait().success());
    }

    /// Waits (bounded) for the process to exit.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "gateway did not exit within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_health_gate_passes_on_a_running_gateway_and_fails_on_a_stopped_one() {
    let mut daemon = Daemon::start("", &[]);
    // It waits for the start-up itself (retrying until its timeout).
    let (ok, out) = daemon.health(30);
    assert!(ok, "{out}");
    assert!(out.contains("/healthz 200") && out.contains("accepts") && out.contains("opens"), "{out}");
    daemon.stop();
    let journal = daemon.dir.path().join("var/journal.db");
    let files = || std::fs::read_dir(journal.parent().unwrap()).unwrap().count();
    let (before, files_before) = (std::fs::read(&journal).unwrap(), files());
    let (ok, out) = daemon.health(1);
    assert!(!ok, "a stopped gateway is not healthy: {out}");
    assert!(out.contains("not healthy after 1 s"), "{out}");
    assert!(std::fs::read(&journal).unwrap() == before && files() == files_before, "the gate writes nothing");
}

#[test]
fn the_health_gate_passes_while_the_cloud_is_unreachable() {
    let cloud = format!(
        "[cloud]\nurl = \"http://127.0.0.1:{}/fhir\"\nconnect_timeout_secs = 1\ntimeout_secs = 2\n",
        free_port()
    );
    let daemon = Daemon::start(&cloud, &[]);
    let (ok, out) = daemon.health(30);
    assert!(ok, "{out}");
    // A message waits for the unreachable cloud; the gate still passes.
    let ack = Mllp::plain(daemon.mllp).call(&adt("CLOUD1"));
    assert_eq!(msa(&ack).0, "AA");
    let (ok, out) = daemon.health(10);
    assert!(ok, "{out}");
}

#[test]
fn a_board_pin_that_does_not_open_is_logged_and_ingest_goes_on() {
    let mut setup = Setup::new(LISTENER);
    std::fs::write(setup.dir.path().join("board.toml"), "[button]\ninput_file = \"missing/value\"\n").unwrap();
    setup.extra = "[board]\nfile = \"board.toml\"\n".into();
    let gw = setup.start();
    assert_eq!(msa(&gw.connect().call(&adt("PIN1"))).0, "AA");
    let log = gw.terminate_log();
    assert!(
        log.contains("reset button cannot be opened; running without it") && log.contains("missing/value"),
        "{log}"
    );
}
