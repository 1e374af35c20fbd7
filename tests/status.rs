//! The status page (`/status`, `/status.json`), `gateway status` and the alerts, against the
//! real gateway binary: a healthy gateway, a cloud that is down, a full disk budget; alerts
//! raised and cleared by real conditions, logged with their MESSAGE_ID and POSTed to a
//! webhook on loopback (which fails once and gets the retry). Each page state is also loaded
//! in headless Chromium (Debian's `chromium`; CI installs it) and kept as a screenshot under
//! `target/test-output/status/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_tests::*;
use serde_json::Value;

const ADT: &str = "[[listener]]\nname = \"adt\"\nbind = \"127.0.0.1:0\"\n";
/// Alerts evaluated ten times a second, so a test sees a change at once.
const FAST: &str = "[alerts]\nevaluate_every_ms = 100\n";
const LONG: Duration = Duration::from_secs(60);

fn alert_names(s: &Value) -> Vec<String> {
    s["alerts"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_string()).collect()
}

fn page(gw: &Gateway) -> String {
    let (code, body) = http_get(gw.admin.unwrap(), "/status");
    assert_eq!(code, 200, "{body}");
    body
}

// ------------------------------------------------------------------ headless Chromium

fn output_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-output/status");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chromium(args: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output();
    match out {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run `chromium` ({e}): the status page tests need Debian's chromium \
             (`apt-get install -y chromium`; .ci/run installs it)"
        ),
    }
}

/// Loads `/status` in headless Chromium: the DOM it rendered, and a screenshot kept as
/// `target/test-output/status/<name>.png`.
fn in_chromium(gw: &Gateway, name: &str) -> String {
    let url = format!("http://{}/status", gw.admin.unwrap());
    let dom = chromium(&["--dump-dom".into(), url.clone()]);
    assert!(dom.status.success(), "chromium --dump-dom failed: {}", String::from_utf8_lossy(&dom.stderr));
    let shot = output_dir().join(format!("{name}.png"));
    let _ = std::fs::remove_file(&shot);
    let png = chromium(&[format!("--screenshot={}", shot.display()), "--window-size=1280,1600".into(), url]);
    assert!(png.status.success(), "chromium --screenshot failed: {}", String::from_utf8_lossy(&png.stderr));
    let bytes = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(bytes.starts_with(b"\x89PNG"), "{} is not a PNG", shot.display());
    String::from_utf8(dom.stdout).unwrap()
}

/// The text of the table row whose header cell is `header` in the rendered DOM.
fn row<'a>(dom: &'a str, header: &str) -> &'a str {
    let at = dom.find(&format!("<th>{header}</th>")).unwrap_or_else(|| panic!("no row {header:?} in\n{dom}"));
    let rest = &dom[at..];
    &rest[..rest.find("</tr>").unwrap()]
}

// ------------------------------------------------------------------ a webhook receiver

/// A loopback HTTP server that records each POSTed JSON body; the first `fail` requests get
/// a 500 (the gateway must retry them).
struct Hook {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
    requests: Arc<Mutex<usize>>,
}

impl Hook {
    fn start(fail: usize) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (bodies, requests) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(0)));
        let (b, r) = (bodies.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let n = {
                    let mut r = r.lock().unwrap();
                    *r += 1;
                    *r
                };
                let code = if n <= fail { "500 Internal Server Error" } else { "200 OK" };
                if n > fail {
                    b.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                }
                let _ = write!(stream, "HTTP/1.1 {code}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Hook { addr, bodies, requests }
    }

    fn url(&self) -> String {
        format!("http://{}/alerts", self.addr)
    }

    /// Waits for a POST of `alert` in `state`.
    fn wait(&self, alert: &str, state: &str) -> Value {
        wait_for(&format!("webhook {alert} {state}"), LONG, || {
            self.bodies.lock().unwrap().iter().find(|b| b["alert"] == alert && b["state"] == state).cloned()
        })
    }
}

// ------------------------------------------------------------------ the states

#[test]
fn a_healthy_gateway_shows_its_feed_an_ok_link_and_no_alerts() {
    let mut setup = Setup::new(ADT);
    setup.extra = FAST.into();
    let gw = setup.start();
    let mut c = gw.connect();
    for i in 0..3 {
        assert_eq!(msa(&c.call(&adt(&format!("H{i}")))).0, "AA");
    }
    let s = wait_status(&gw, "three AAs delivered", LONG, |s| {
        s["listeners"][0]["acks"]["AA"] == 3 && s["queue"]["depth"] == 0 && s["cloud"]["delivered"].as_u64() >= Some(1)
    });
    assert_eq!(s["listeners"][0]["name"], "adt");
    assert!(s["listeners"][0]["last_message_ms"].as_i64().unwrap() > 0);
    assert!(s["listeners"][0]["per_minute_5"].as_f64().unwrap() > 0.0);
    assert_eq!(s["cloud"]["link"], "ok");
    assert_eq!(s["cloud"]["circuit"], "closed");
    assert_eq!(s["cloud"]["auth"], "ok");
    assert_eq!(s["cloud"]["target"], "embedded sink");
    assert_eq!(s["queue"]["oldest_undelivered_secs"], Value::Null);
    assert_eq!(s["dead_letters"]["count"], 0);
    assert_eq!(s["disk"]["storage_problem"], Value::Null);
    assert!(s["version"]["binary"].as_str().unwrap().contains('.'));
    assert!(alert_names(&s).is_empty(), "{s}");

    let html = page(&gw);
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
    assert!(!html.contains("TESTPATIENT") && !html.contains("MRN"), "no PHI on the page");
    let dom = in_chromium(&gw, "healthy");
    assert!(dom.contains("No active alerts"), "{dom}");
    assert!(row(&dom, "Link").contains(">ok<"), "{dom}");
    assert!(row(&dom, "Undelivered messages").contains("<td>0</td>"), "{dom}");
    assert!(row(&dom, "Oldest undelivered").contains("none"), "{dom}");
    assert!(row(&dom, "Storage").contains(">ok<"), "{dom}");
    assert!(dom.contains("<td>adt</td>"), "{dom}");

    // `gateway status` against the same daemon (a config naming its real admin port).
    let text = std::fs::read_to_string(setup.config_path()).unwrap();
    let fixed = setup.dir.path().join("fixed.toml");
    let admin = gw.admin.unwrap();
    std::fs::write(
        &fixed,
        // An unspecified bind (as the appliance's) is reached on loopback.
        text.replace(
            "admin_bind = \"127.0.0.1:0\"",
            &format!("admin_bind = \"0.0.0.0:{}\"\nadmin_exposed = \"firewalled\"", admin.port()),
        ),
    )
    .unwrap();
    let out = Command::new(gateway_bin()).args(["status", "--config"]).arg(&fixed).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}\n{}", String::from_utf8_lossy(&out.stderr));
    for want in ["ALERTS\n  none", "  adt ", "link                 ok", "undelivered          0", "DISK"] {
        assert!(printed.contains(want), "{want:?} missing from\n{printed}");
    }
    assert!(gw.terminate().success());
    let out = Command::new(gateway_bin()).args(["status", "--config"]).arg(&fixed).output().unwrap();
    assert!(!out.status.success(), "a daemon that is gone is an error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not answer"), "{out:?}");
}

#[test]
fn feed_silence_is_raised_logged_posted_with_a_retry_and_cleared_by_a_message() {
    let hook = Hook::start(1);
    let mut setup = Setup::new(ADT);
    setup.extra = format!("{FAST}silence_secs = 1\nwebhook_url = \"{}\"\n", hook.url());
    let gw = setup.start();
    let raised = hook.wait("feed_silence", "raised");
    assert_eq!(raised["listener"], "adt");
    assert_eq!(raised["message_id"], "5b0f3c1e-7a4d-4c52-9e61-2f8d0a6b1c01");
    assert!(*hook.requests.lock().unwrap() >= 2, "the first POST got a 500 and was retried");
    let s = status_json(&gw);
    assert!(alert_names(&s).contains(&"feed_silence".to_string()), "{s}");
    assert_eq!(gw.metric("gateway_alert{name=\"feed_silence\",listener=\"adt\"}"), 1.0);
    assert!(page(&gw).contains("feed_silence"));

    assert_eq!(msa(&gw.connect().call(&adt("S1"))).0, "AA");
    let cleared = hook.wait("feed_silence", "cleared");
    assert_eq!(cleared["listener"], "adt");
    let log = gw.terminate_log();
    let raised_line = log.lines().find(|l| l.contains("alert raised: feed_silence")).expect(&log);
    assert!(raised_line.contains("WARN"), "{raised_line}");
    assert!(
        raised_line.contains("5b0f3c1e-7a4d-4c52-9e61-2f8d0a6b1c01") && raised_line.contains("message_id"),
        "{raised_line}"
    );
    let cleared_line = log.lines().find(|l| l.contains("alert cleared: feed_silence")).expect(&log);
    assert!(cleared_line.contains("INFO"), "{cleared_line}");
    let bodies = serde_json::to_string(&*hook.bodies.lock().unwrap()).unwrap();
    assert!(!bodies.contains("TESTPATIENT") && !bodies.contains("MRN"), "no PHI in the webhook: {bodies}");
}

#[test]
fn a_cloud_that_is_down_shows_a_failing_link_and_the_undelivered_age() {
    // A loopback port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut setup = Setup::new(ADT);
    setup.extra =
        format!("{}\n{FAST}oldest_undelivered_secs = 1\n", cloud(&format!("http://127.0.0.1:{port}/fhir"), 5, ""));
    let gw = setup.start();
    assert_eq!(msa(&gw.connect().call(&adt("D1"))).0, "AA");
    let s = wait_status(&gw, "link down and the alert raised", LONG, |s| {
        s["cloud"]["link"] != "ok" && alert_names(s).contains(&"oldest_undelivered".to_string())
    });
    assert_eq!(s["queue"]["depth"], 1, "{s}");
    assert!(s["queue"]["oldest_undelivered_secs"].as_i64().unwrap() >= 1, "{s}");
    assert!(s["cloud"]["failures"]["connect"].as_u64().unwrap() >= 1, "{s}");
    let dom = in_chromium(&gw, "cloud_down");
    let link = row(&dom, "Link");
    assert!(link.contains("failing") || link.contains("circuit open"), "{link}");
    assert!(row(&dom, "Undelivered messages").contains("<td>1</td>"), "{dom}");
    assert!(row(&dom, "Oldest undelivered").contains(" s<"), "{dom}");
    assert!(dom.contains("oldest_undelivered"), "{dom}");
    let log = gw.terminate_log();
    assert!(log.contains("alert raised: oldest_undelivered"), "{log}");
}

#[test]
fn oldest_undelivered_clears_once_the_cloud_is_back() {
    let fhir = FhirServer::start(&[]);
    fhir.control(serde_json::json!({"down": true}));
    let mut setup = Setup::new(ADT);
    setup.extra = format!("{}\n{FAST}oldest_undelivered_secs = 1\n", cloud(&fhir.base_url(), 5, ""));
    let gw = setup.start();
    assert_eq!(msa(&gw.connect().call(&adt("U1"))).0, "AA");
    wait_status(&gw, "oldest_undelivered raised", LONG, |s| alert_names(s).contains(&"oldest_undelivered".to_string()));
    fhir.control(serde_json::json!({"down": false}));
    let s = wait_status(&gw, "delivered and cleared", LONG, |s| {
        s["queue"]["depth"] == 0 && !alert_names(s).contains(&"oldest_undelivered".to_string())
    });
    assert_eq!(s["cloud"]["link"], "ok", "{s}");
    assert_eq!(gw.metric("gateway_alert{name=\"oldest_undelivered\"}"), 0.0);
    let log = gw.terminate_log();
    assert!(log.contains("alert cleared: oldest_undelivered"), "{log}");
}

/// An ADT^A18 (no converter): kept as a dead letter by `store_unsupported`.
fn unsupported(id: &str) -> Vec<u8> {
    String::from_utf8(adt(id)).unwrap().replacen("ADT^A01^ADT_A01", "ADT^A18", 1).into_bytes()
}

#[test]
fn a_dead_letter_spike_is_raised_and_cleared_when_it_leaves_the_window() {
    let mut setup = Setup::new(&format!("{ADT}[listener.accept]\nstore_unsupported = true\n"));
    setup.extra = format!("{FAST}dead_letter_spike = 2\ndead_letter_window_secs = 10\n");
    let gw = setup.start();
    let mut c = gw.connect();
    for i in 0..3 {
        assert_eq!(msa(&c.call(&unsupported(&format!("X{i}")))).0, "AA");
    }
    let s = wait_status(&gw, "spike raised", LONG, |s| alert_names(s).contains(&"dead_letter_spike".to_string()));
    assert_eq!(s["dead_letters"]["count"], 3, "{s}");
    let reason = s["dead_letters"]["newest"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("unsupported: no converter for message type ADT^A18"), "{reason}");
    assert!(page(&gw).contains("3 dead letters"));
    wait_status(&gw, "spike cleared", LONG, |s| !alert_names(s).contains(&"dead_letter_spike".to_string()));
    let log = gw.terminate_log();
    assert!(
        log.contains("alert raised: dead_letter_spike") && log.contains("alert cleared: dead_letter_spike"),
        "{log}"
    );
}

/// Sends messages until one is refused or `stop` says so.
fn fill(gw: &Gateway, stop: impl Fn() -> bool) -> usize {
    let mut c = gw.connect();
    for i in 0..20_000 {
        let ack = c.call(&adt(&format!("F{i}")));
        if msa(&ack).0 != "AA" || stop() {
            return i;
        }
    }
    panic!("never full");
}

#[test]
fn a_full_disk_budget_shows_storage_full_and_raises_the_disk_alert() {
    let mut setup = Setup::new(ADT);
    setup.store_extra = format!("max_bytes = {}", 2 << 20);
    setup.extra = FAST.into();
    let gw = setup.start();
    fill(&gw, || false);
    let s = wait_status(&gw, "storage full and the alert", LONG, |s| {
        s["disk"]["storage_problem"].is_string() && alert_names(s).contains(&"disk_budget".to_string())
    });
    assert_eq!(s["disk"]["budget_bytes"], 2 << 20, "{s}");
    assert!(s["alerts"][0]["detail"].as_str().unwrap().contains("refused"), "{s}");
    assert!(s["listeners"][0]["acks"]["AR"].as_u64().unwrap() >= 1, "{s}");
    let dom = in_chromium(&gw, "storage_full");
    assert!(row(&dom, "Storage").contains("storage full or failing"), "{dom}");
    assert!(dom.contains("disk_budget"), "{dom}");
    let out = gw.terminate_log();
    assert!(out.contains("alert raised: disk_budget"), "{out}");
}

#[test]
fn the_disk_budget_alert_clears_when_delivered_rows_are_purged() {
    let mut setup = Setup::new(ADT);
    setup.store_extra = format!("max_bytes = {}\nretention_secs = 1", 4 << 20);
    setup.extra = format!("{FAST}disk_percent = 30\n");
    let gw = setup.start();
    let raised = || alert_names(&status_json(&gw)).contains(&"disk_budget".to_string());
    fill(&gw, raised);
    wait_status(&gw, "disk_budget raised", LONG, |s| alert_names(s).contains(&"disk_budget".to_string()));
    // Delivered rows are purged (retention 1 s). If the fill ended on a refusal, the journal
    // reports it until a message is stored again: a sender resends its refused message.
    wait_status(&gw, "delivered rows purged", LONG, |s| s["disk"]["budget_percent"].as_f64().unwrap() <= 30.0);
    let mut c = gw.connect();
    let mut n = 0;
    wait_for("a message accepted after the purge (the WAL is truncated by a checkpoint)", LONG, || {
        n += 1;
        (msa(&c.call(&adt(&format!("AFTER{n}")))).0 == "AA").then_some(())
    });
    let s = wait_status(&gw, "disk_budget cleared after the purge", LONG, |s| {
        !alert_names(s).contains(&"disk_budget".to_string())
    });
    assert!(s["disk"]["budget_percent"].as_f64().unwrap() <= 30.0, "{s}");
    let log = gw.terminate_log();
    assert!(log.contains("alert cleared: disk_budget"), "{log}");
}

#[test]
fn a_start_after_a_kill_raises_the_restart_alert() {
    let mut setup = Setup::new(ADT);
    setup.extra = FAST.into();
    let gw = setup.start();
    status_json(&gw);
    assert!(alert_names(&status_json(&gw)).is_empty());
    gw.kill();
    let gw = setup.start();
    let s = wait_status(&gw, "restart raised", WAIT, |s| alert_names(s).contains(&"restart".to_string()));
    assert!(s["alerts"][0]["detail"].as_str().unwrap().contains("unclean stop"), "{s}");
    assert!(gw.terminate().success());
    let gw = setup.start();
    assert!(!alert_names(&status_json(&gw)).contains(&"restart".to_string()), "a clean stop before this start");
}

#[test]
fn queue_growth_is_raised_while_the_queue_rises_and_cleared_once_it_stops() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut setup = Setup::new(ADT);
    setup.extra = format!("{}\n{FAST}queue_growth_secs = 1\n", cloud(&format!("http://127.0.0.1:{port}/fhir"), 5, ""));
    let gw = setup.start();
    let mut c = gw.connect();
    let growing = |s: &Value| alert_names(s).contains(&"queue_growth".to_string());
    let mut sent = 0;
    while !growing(&status_json(&gw)) {
        assert!(sent < 200, "queue_growth not raised after {sent} messages");
        assert_eq!(msa(&c.call(&adt(&format!("Q{sent}")))).0, "AA");
        sent += 1;
        // The queue must rise across samples (100 ms apart) for the whole window.
        std::thread::sleep(Duration::from_millis(150));
    }
    // Nothing delivered and nothing new: flat, so cleared within a window.
    let s = wait_status(&gw, "queue_growth cleared", LONG, |s| !growing(s));
    assert_eq!(s["queue"]["depth"], sent, "{s}");
    let log = gw.terminate_log();
    assert!(log.contains("alert raised: queue_growth") && log.contains("alert cleared: queue_growth"), "{log}");
}

#[test]
fn auth_failing_is_raised_while_the_server_refuses_the_token_and_cleared_once_it_is_rotated() {
    use std::os::unix::fs::PermissionsExt;
    let fhir = FhirServer::start(&["--require-auth", "--static-token", "the-right-token"]);
    let mut setup = Setup::new(ADT);
    let token_file = setup.dir.path().join("token");
    std::fs::write(&token_file, "a-revoked-token\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let auth = format!("[cloud.auth]\nkind = \"bearer\"\ntoken_file = \"{}\"\n", token_file.display());
    setup.extra = format!("{}\n{FAST}", cloud(&fhir.base_url(), 5, &auth));
    let gw = setup.start();
    assert_eq!(msa(&gw.connect().call(&adt("T1"))).0, "AA");
    wait_status(&gw, "auth_failing raised", LONG, |s| alert_names(s).contains(&"auth_failing".to_string()));
    assert_eq!(gw.metric("gateway_alert{name=\"auth_failing\"}"), 1.0);
    // Rotated in place: the next try (the auth retry interval is 60 s) reads it again.
    std::fs::write(&token_file, "the-right-token\n").unwrap();
    wait_status(&gw, "delivered and cleared", LONG * 2 + Duration::from_secs(30), |s| {
        s["queue"]["depth"] == 0 && !alert_names(s).contains(&"auth_failing".to_string())
    });
    let log = gw.terminate_log();
    assert!(log.contains("alert raised: auth_failing"), "{log}");
    assert!(log.contains("alert cleared: auth_failing"), "{log}");
    assert!(!log.contains("the-right-token") && !log.contains("a-revoked-token"), "no token in the log");
}
