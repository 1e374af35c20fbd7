//! The WireGuard tunnel's health, from `wg show wg0 dump` (wireguard-tools, in the image):
//! the peer's last handshake and transfer counters for `/metrics` and the status stage, which
//! shows them on the status page and raises the `tunnel_down` alert while the tunnel is down.
//! No `wg`, no `wg0`, no peer: no tunnel metrics at all.
//!
//! Reading a WireGuard device needs CAP_NET_ADMIN, which the sandboxed gateway does not have:
//! on the appliance `gateway-wg-dump.timer` (root) writes the dump to [`DUMP_FILE`] every
//! 30 s and the gateway reads that (`[wireguard] status_file`); without the file it runs `wg`
//! itself.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::WireGuard;
use crate::stage::Stage;

/// The central peer as `wg` last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatus {
    /// Unix seconds of the last handshake; 0: never.
    pub latest_handshake: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl PeerStatus {
    /// Seconds since the last handshake at `now`; `None` before the first.
    pub fn handshake_age(&self, now: u64) -> Option<u64> {
        (self.latest_handshake != 0).then(|| now.saturating_sub(self.latest_handshake))
    }
}

/// The first peer of a `wg show <if> dump`: the interface line first, then one line per peer
/// (public key, preshared key, endpoint, allowed IPs, latest handshake, rx, tx, keepalive).
pub(crate) fn parse_dump(text: &str) -> Option<PeerStatus> {
    let peer = text.lines().nth(1)?;
    let f: Vec<&str> = peer.split('\t').collect();
    if f.len() < 8 {
        return None;
    }
    Some(PeerStatus {
        latest_handshake: f[4].parse().ok()?,
        rx_bytes: f[5].parse().ok()?,
        tx_bytes: f[6].parse().ok()?,
    })
}

/// What the watcher read last: `None` before its first reading; then the peer (`None`:
/// wg0 could not be read) with the configured maximum handshake age.
static LAST: Mutex<Option<Reading>> = Mutex::new(None);

/// One reading of the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The central peer; `None` when neither the dump nor `wg` gave one.
    pub peer: Option<PeerStatus>,
    /// `[wireguard] handshake_max_age_secs`.
    pub max_age_secs: u64,
}

/// The tunnel's last reading; `None` before the first (or without `[wireguard]`).
pub fn latest() -> Option<Reading> {
    *LAST.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a tunnel whose last handshake was `age` seconds ago (`None`: never) is up: the
/// one rule `/metrics`, the status page and the `tunnel_down` alert share.
pub fn is_up(age: Option<u64>, max_age_secs: u64) -> bool {
    age.is_some_and(|a| a <= max_age_secs)
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Prometheus lines for the tunnel; empty without a reading.
pub fn render_metrics() -> String {
    let Some(Reading { peer: Some(peer), max_age_secs }) = latest() else { return String::new() };
    render(&peer, max_age_secs, now_secs())
}

pub(crate) fn render(peer: &PeerStatus, max_age: u64, now: u64) -> String {
    let mut s = String::new();
    let age = peer.handshake_age(now);
    if let Some(age) = age {
        let _ =
            writeln!(s, "# HELP gateway_wireguard_handshake_age_seconds Seconds since the tunnel's last handshake.");
        let _ = writeln!(s, "# TYPE gateway_wireguard_handshake_age_seconds gauge");
        let _ = writeln!(s, "gateway_wireguard_handshake_age_seconds {age}");
    }
    let _ = writeln!(s, "# HELP gateway_wireguard_up 1 while the tunnel's last handshake is recent enough.");
    let _ = writeln!(s, "# TYPE gateway_wireguard_up gauge");
    let _ = writeln!(s, "gateway_wireguard_up {}", u8::from(is_up(age, max_age)));
    for (name, v) in [("rx", peer.rx_bytes), ("tx", peer.tx_bytes)] {
        let _ = writeln!(s, "# HELP gateway_wireguard_{name}_bytes_total Bytes {name} through the tunnel.");
        let _ = writeln!(s, "# TYPE gateway_wireguard_{name}_bytes_total counter");
        let _ = writeln!(s, "gateway_wireguard_{name}_bytes_total {v}");
    }
    s
}

/// The dump `gateway-wg-dump.service` writes (the default `[wireguard] status_file`).
pub const DUMP_FILE: &str = crate::config::WG_DUMP_FILE;
/// An older dump file is not the tunnel's state any more (the timer writes every 30 s).
const DUMP_FRESH: Duration = Duration::from_secs(120);
/// A dump has one line per peer.
const DUMP_MAX_BYTES: u64 = 64 * 1024;

/// The peer from `dump_file` when it exists (a stale one gives none), else from `wg`.
fn read_dump(dump_file: &Path) -> Option<PeerStatus> {
    if let Ok(meta) = std::fs::metadata(dump_file) {
        let fresh = meta.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age <= DUMP_FRESH);
        let mut text = Vec::new();
        std::fs::File::open(dump_file).ok()?.take(DUMP_MAX_BYTES + 1).read_to_end(&mut text).ok()?;
        if !fresh || text.len() as u64 > DUMP_MAX_BYTES {
            return None;
        }
        return parse_dump(&String::from_utf8_lossy(&text));
    }
    let out = std::process::Command::new("wg").args(["show", super::network::INTERFACE, "dump"]).output().ok()?;
    out.status.success().then(|| parse_dump(&String::from_utf8_lossy(&out.stdout))).flatten()
}

/// Reads the tunnel every `[wireguard] poll_secs` while the gateway runs, for `/metrics`
/// and the status stage (which raises `tunnel_down` from it).
pub(crate) fn watch(wg: &WireGuard) -> Stage {
    let max_age_secs = wg.handshake_max_age_secs;
    let dump_file = wg.status_file.get_ref().clone();
    let every = Duration::from_secs(wg.poll_secs.get());
    let (wake, sleeper) = std::sync::mpsc::channel::<()>();
    Stage::spawn(
        "tunnel",
        move || {
            let _ = wake.send(());
        },
        move |stopping| {
            while !stopping.requested() {
                let reading = Reading { peer: read_dump(&dump_file), max_age_secs };
                *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some(reading);
                if sleeper.recv_timeout(every).is_ok() {
                    break;
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wg_dump_gives_the_peers_handshake_and_counters() {
        let dump = "cHJpdg==\tcHVi\t51820\toff\n\
                    cGVlcg==\t(none)\t203.0.113.5:51820\t10.100.0.0/16\t1700000000\t1234\t5678\t25\n";
        let peer = parse_dump(dump).unwrap();
        assert_eq!(peer, PeerStatus { latest_handshake: 1_700_000_000, rx_bytes: 1234, tx_bytes: 5678 });
        let text = render(&peer, 180, 1_700_000_100);
        assert!(text.contains("gateway_wireguard_handshake_age_seconds 100\n"), "{text}");
        assert!(text.contains("gateway_wireguard_up 1\n") && text.contains("gateway_wireguard_tx_bytes_total 5678\n"));
        assert!(render(&peer, 180, 1_700_001_000).contains("gateway_wireguard_up 0\n"));
        // Never shook hands: down, no age.
        let never = PeerStatus { latest_handshake: 0, ..peer };
        let text = render(&never, 180, 1_700_000_100);
        assert!(!text.contains("handshake_age") && text.contains("gateway_wireguard_up 0\n"), "{text}");
        // No peer line: nothing.
        assert!(parse_dump("cHJpdg==\tcHVi\t51820\toff\n").is_none());
    }

    #[test]
    fn a_stale_or_oversized_status_file_gives_no_reading() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("wg0.dump");
        let dump =
            "cHJpdg==\tcHVi\t51820\toff\ncGVlcg==\t(none)\t203.0.113.5:51820\t10.100.0.0/16\t1700000000\t1\t2\t25\n";
        std::fs::write(&file, dump).unwrap();
        assert_eq!(read_dump(&file).map(|p| p.tx_bytes), Some(2));
        let old = std::time::SystemTime::now() - Duration::from_secs(600);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();
        assert_eq!(read_dump(&file), None, "the timer stopped writing it: not the tunnel's state");
        std::fs::write(&file, dump.repeat(2000)).unwrap();
        assert_eq!(read_dump(&file), None);
    }
}
