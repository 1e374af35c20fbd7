//! The WireGuard tunnel on the status page and its `tunnel_down` alert, against the real
//! gateway binary: the tunnel's state comes from the `wg show wg0 dump` file the appliance's
//! timer writes (`[wireguard] status_file`, read every `poll_secs`), written here with a stale
//! handshake, then a fresh one.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gateway_tests::*;
use serde_json::Value;

const ADT: &str = "[[listener]]\nname = \"adt\"\nbind = \"127.0.0.1:0\"\n";
const LONG: Duration = Duration::from_secs(30);

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Writes a dump whose peer last shook hands at `handshake` (unix s; 0: never), atomically
/// as the timer does.
fn write_dump(path: &Path, handshake: u64, rx: u64, tx: u64) {
    let text = format!(
        "cHJpdg==\tcHVi\t51820\toff\ncGVlcg==\t(none)\t203.0.113.5:51820\t10.100.0.0/16\t{handshake}\t{rx}\t{tx}\t25\n"
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn raised(s: &Value, name: &str) -> bool {
    s["alerts"].as_array().unwrap().iter().any(|a| a["name"] == name)
}

#[test]
fn a_stale_handshake_raises_tunnel_down_and_a_fresh_one_clears_it() {
    let mut setup = Setup::new(ADT);
    let dump = setup.dir.path().join("wg0.dump");
    setup.extra = format!(
        "[alerts]\nevaluate_every_ms = 100\n\n[wireguard]\naddress = [\"10.99.0.17/32\"]\n\
         peer_public_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\nendpoint = \"203.0.113.5:51820\"\n\
         allowed_ips = [\"10.100.0.0/16\"]\nhandshake_max_age_secs = 180\nstatus_file = \"{}\"\npoll_secs = 1\n",
        dump.display()
    );
    write_dump(&dump, now_secs() - 1000, 4096, 1024);
    let gw = setup.start();

    let s = wait_status(&gw, "the tunnel down", LONG, |s| s["tunnel"]["state"] == "down" && raised(s, "tunnel_down"));
    let t = &s["tunnel"];
    assert!(t["handshake_age_secs"].as_u64().unwrap() >= 1000, "{t}");
    assert_eq!((t["rx_bytes"].as_u64(), t["tx_bytes"].as_u64()), (Some(4096), Some(1024)), "{t}");
    assert!(t["problem"].as_str().unwrap().contains("more than 180 s"), "{t}");
    assert_eq!(gw.metric("gateway_alert{name=\"tunnel_down\"}"), 1.0);
    assert_eq!(gw.metric("gateway_wireguard_up"), 0.0);
    let (_, page) = http_get(gw.admin.unwrap(), "/status");
    assert!(page.contains("<h2>Tunnel</h2>") && page.contains("4.0 KiB"), "{page}");
    assert!(!page.contains("203.0.113.5") && !page.contains("AAAAAAAA"), "no endpoint, no keys on the page");

    write_dump(&dump, now_secs(), 8192, 2048);
    let s = wait_status(&gw, "the tunnel up", LONG, |s| s["tunnel"]["state"] == "up" && !raised(s, "tunnel_down"));
    let t = &s["tunnel"];
    assert!(t["handshake_age_secs"].as_u64().unwrap() <= 180, "{t}");
    assert_eq!((t["rx_bytes"].as_u64(), t["problem"].clone()), (Some(8192), Value::Null), "{t}");
    assert_eq!(gw.metric("gateway_alert{name=\"tunnel_down\"}"), 0.0);
    assert_eq!(gw.metric("gateway_wireguard_up"), 1.0);

    // One WARN for the raise, one INFO for the clear, nothing repeating.
    let log = gw.terminate_log();
    let tunnel_lines: Vec<&str> = log.lines().filter(|l| l.contains("tunnel")).collect();
    assert_eq!(tunnel_lines.iter().filter(|l| l.contains("WARN")).count(), 1, "{tunnel_lines:#?}");
    let raised_line = tunnel_lines.iter().find(|l| l.contains("alert raised: tunnel_down")).expect(&log);
    assert!(
        raised_line.contains("WARN") && raised_line.contains("5b0f3c1e-7a4d-4c52-9e61-2f8d0a6b1c09"),
        "{raised_line}"
    );
    let cleared_line = tunnel_lines.iter().find(|l| l.contains("alert cleared: tunnel_down")).expect(&log);
    assert!(cleared_line.contains("INFO"), "{cleared_line}");
}

#[test]
fn without_wireguard_there_is_no_tunnel_section() {
    let mut setup = Setup::new(ADT);
    setup.extra = "[alerts]\nevaluate_every_ms = 100\n".into();
    let gw = setup.start();
    let s = status_json(&gw);
    assert!(s.get("tunnel").is_none(), "{s}");
    let (_, page) = http_get(gw.admin.unwrap(), "/status");
    assert!(!page.contains("Tunnel"), "{page}");
}
