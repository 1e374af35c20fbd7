//! The status page's figures ([`Status`]): sampled every `[alerts] evaluate_every_ms` by the
//! status stage (`collect`, which also runs the alerts), served by the admin endpoint as
//! HTML ([`html`], `/status`) and JSON (`/status.json`), and printed by `gateway status`
//! ([`text`]). Counts, codes, ages and sizes only: no message content, no identifiers.

pub(crate) mod collect;
pub mod html;
pub mod text;
pub(crate) mod version;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::alerts::ActiveAlert;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub device: String,
    /// Unix ms of the sample.
    pub at_ms: i64,
    pub version: Version,
    pub listeners: Vec<Feed>,
    pub queue: Queue,
    pub cloud: Cloud,
    pub dead_letters: DeadLetters,
    pub disk: Disk,
    /// Items of the conversion reports since start, by kind.
    pub conversion_warnings: BTreeMap<String, u64>,
    pub alerts: Vec<ActiveAlert>,
    /// The WireGuard tunnel; only with `[wireguard]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
}

/// The WireGuard tunnel to the cloud: state, last handshake, bytes through it. No keys, no
/// addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tunnel {
    /// `up` (a handshake within `[wireguard] handshake_max_age_secs`), `down`, or `unknown`
    /// before the gateway's first reading of it.
    pub state: String,
    /// Seconds since the last handshake; none: never, or no reading.
    pub handshake_age_secs: Option<u64>,
    /// Bytes received and sent through it (as `wg` counts them); none without a reading.
    pub rx_bytes: Option<u64>,
    pub tx_bytes: Option<u64>,
    /// Why it is down, when it is (the `tunnel_down` alert's detail).
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The gateway binary's version.
    pub binary: String,
    /// `IMAGE_VERSION` of /etc/os-release (the appliance image), when present.
    pub image: Option<String>,
    /// The root filesystem slot booted (`root=PARTLABEL=rootfs-X` on /proc/cmdline).
    pub slot: Option<String>,
}

/// One listener (feed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feed {
    pub name: String,
    /// Unix ms of the last message answered (or, before one since start, stored).
    pub last_message_ms: Option<i64>,
    /// Messages per minute over the last 5 and 15 minutes.
    pub per_minute_5: f64,
    pub per_minute_15: f64,
    /// Acknowledgments since start by MSA-1 code (AA, AE, AR, CA, CE, CR).
    pub acks: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    /// Messages received but not yet delivered.
    pub depth: i64,
    /// Age of the oldest of them, seconds.
    pub oldest_undelivered_secs: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cloud {
    /// The FHIR server URL, or "embedded sink".
    pub target: String,
    /// `ok`, `failing` or `circuit open`.
    pub link: String,
    /// `closed`, `half-open` or `open`.
    pub circuit: String,
    /// `ok` or `failing`.
    pub auth: String,
    pub delivered: u64,
    /// Failed attempts since start by class (4xx, 401, 429, 5xx, timeout, connect).
    pub failures: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetters {
    pub count: i64,
    /// The newest few, newest first.
    pub newest: Vec<DeadLetterLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterLine {
    pub id: i64,
    pub at_ms: i64,
    /// The PHI-free reason (codes, segment IDs, error kinds).
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// Journal files (database, WAL, shm).
    pub journal_bytes: u64,
    /// `[store] max_bytes`.
    pub budget_bytes: u64,
    pub budget_percent: f64,
    pub filesystem_bytes: Option<u64>,
    pub filesystem_used_bytes: Option<u64>,
    pub filesystem_percent: Option<f64>,
    /// Why the journal refuses messages now ("storage full"), if it does.
    pub storage_problem: Option<String>,
}

/// The latest sample, shared by the status stage (writer) and the admin endpoint (readers).
#[derive(Debug, Clone, Default)]
pub(crate) struct Latest(Arc<Mutex<Option<Status>>>);

impl Latest {
    pub(crate) fn set(&self, s: Status) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
    }
    pub(crate) fn get(&self) -> Option<Status> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Seconds as the page and the terminal show an age: `42 s`, `5 min 3 s`, `2 h 10 min`.
pub(crate) fn age(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s if s < 86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Bytes in binary units.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A unix ms time as UTC, e.g. `2026-01-05 08:00:00 UTC`.
pub(crate) fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
}

#[cfg(test)]
pub(crate) mod sample {
    use super::*;

    /// A status with one of everything, for the renderers' tests.
    pub(crate) fn status() -> Status {
        Status {
            device: "gw-1".into(),
            at_ms: 1_767_600_000_000,
            version: Version { binary: "0.1.0".into(), image: Some("2026.01".into()), slot: Some("b".into()) },
            listeners: vec![Feed {
                name: "adt".into(),
                last_message_ms: Some(1_767_599_990_000),
                per_minute_5: 1.2,
                per_minute_15: 0.4,
                acks: [("AA".to_string(), 6), ("AR".to_string(), 1)].into_iter().collect(),
            }],
            queue: Queue { depth: 3, oldest_undelivered_secs: Some(125) },
            cloud: Cloud {
                target: "https://fhir.example/r4".into(),
                link: "circuit open".into(),
                circuit: "open".into(),
                auth: "ok".into(),
                delivered: 9,
                failures: [("connect".to_string(), 5)].into_iter().collect(),
            },
            dead_letters: DeadLetters {
                count: 1,
                newest: vec![DeadLetterLine { id: 7, at_ms: 1_767_599_000_000, reason: "http 400 <refused>".into() }],
            },
            disk: Disk {
                journal_bytes: 3 << 20,
                budget_bytes: 4 << 20,
                budget_percent: 75.0,
                filesystem_bytes: Some(10 << 30),
                filesystem_used_bytes: Some(5 << 30),
                filesystem_percent: Some(50.0),
                storage_problem: None,
            },
            conversion_warnings: [("unmapped_code".to_string(), 2)].into_iter().collect(),
            alerts: vec![ActiveAlert {
                name: "oldest_undelivered".into(),
                listener: None,
                since_ms: 1_767_599_900_000,
                detail: "oldest undelivered message waits 125 s".into(),
            }],
            tunnel: Some(Tunnel {
                state: "down".into(),
                handshake_age_secs: Some(400),
                rx_bytes: Some(1 << 20),
                tx_bytes: Some(2048),
                problem: Some("last handshake 400 s ago (more than 180 s)".into()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes_read_well() {
        assert_eq!(age(42), "42 s");
        assert_eq!(age(303), "5 min 3 s");
        assert_eq!(age(7800), "2 h 10 min");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(3 << 20), "3.0 MiB");
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn the_json_reads_back_as_the_same_status() {
        let s = sample::status();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
    }
}
