//! `gateway health`: the boot health gate (a unit ordered before `boot-complete.target`).
//! Succeeds once the configuration is valid, the journal opens (read-only: nothing is
//! written, so it runs beside the daemon) and the running daemon answers — its admin
//! `/healthz` says ok and every MLLP port accepts a connection. Retries until the timeout.
//!
//! What an update cannot break and a rollback cannot fix does not fail it: an unreachable or
//! refusing cloud (`/healthz` reports it but stays ok) and a full disk or disk budget.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::Config;

/// Pause between two rounds of checks.
const RETRY: Duration = Duration::from_millis(500);
/// Longest one connection or request may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// `/healthz` lines that do not fail the gate: storage pressure, not a broken gateway.
const TOLERATED: [&str; 2] = ["journal: disk budget", "journal: the filesystem is full"];

/// Runs the checks until they pass or `timeout` has passed; prints what it checked on `out`.
pub fn health_command(config_path: &Path, timeout: Duration, out: &mut dyn Write) -> anyhow::Result<()> {
    // A bad config does not get better by waiting.
    let config = Config::load(config_path)?;
    let deadline = Instant::now() + timeout;
    loop {
        match check(&config) {
            Ok(lines) => {
                for line in lines {
                    writeln!(out, "{line}")?;
                }
                writeln!(out, "{}: healthy", config_path.display())?;
                return Ok(());
            }
            Err(problem) if Instant::now() + RETRY >= deadline => {
                anyhow::bail!("not healthy after {} s: {problem}", timeout.as_secs())
            }
            Err(_) => std::thread::sleep(RETRY),
        }
    }
}

/// One round: what passed, or the first problem.
fn check(config: &Config) -> Result<Vec<String>, String> {
    let mut passed = Vec::new();
    let journal = config.store.path.get_ref();
    let version = crate::store::db::check_read_only(journal).map_err(|e| crate::cli::error_chain(&e.into()))?;
    passed.push(format!("journal {}: opens (schema {version})", journal.display()));
    match config.ops.admin_bind {
        Some(admin) if admin.port() == 0 => {
            passed.push(format!("admin {admin}: port 0 (chosen at start), not checked"))
        }
        Some(admin) => {
            let (status, body) = get(reachable(admin), "/healthz").map_err(|e| format!("admin {admin}: {e}"))?;
            let tolerated =
                body.lines().all(|l| TOLERATED.iter().any(|t| l.starts_with(t)) || l.starts_with("forward:"));
            if status != 200 && !(status == 503 && tolerated) {
                return Err(format!("admin {admin}: /healthz {status}: {}", body.trim().replace('\n', "; ")));
            }
            passed.push(format!("admin {admin}: /healthz {status} {}", body.trim().replace('\n', "; ")));
        }
        None => passed.push("admin endpoint disabled ([ops] admin_bind unset): /healthz not checked".into()),
    }
    for l in &config.listeners {
        if l.bind.port() == 0 {
            passed.push(format!("listener {:?}: port 0 (chosen at start), not checked", l.name));
            continue;
        }
        let addr = reachable(l.bind);
        TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(|e| format!("listener {:?} {addr}: {e}", l.name))?;
        passed.push(format!("listener {:?} {addr}: accepts", l.name));
    }
    Ok(passed)
}

/// A wildcard bind address is reached over loopback.
pub(crate) fn reachable(bind: SocketAddr) -> SocketAddr {
    match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bind.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bind.port()),
        _ => bind,
    }
}

/// A plain HTTP/1.1 GET: status and body.
pub(crate) fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response");
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        assert_eq!(reachable("0.0.0.0:2575".parse().unwrap()), "127.0.0.1:2575".parse().unwrap());
        assert_eq!(reachable("[::]:2575".parse().unwrap()), "[::1]:2575".parse().unwrap());
        assert_eq!(reachable("10.0.0.5:2575".parse().unwrap()), "10.0.0.5:2575".parse().unwrap());
    }

    #[test]
    fn an_invalid_config_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, "[store]\n").unwrap();
        let started = Instant::now();
        let e = health_command(&path, Duration::from_secs(30), &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("gateway.toml"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_journal_fails_after_the_timeout_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            "[store]\npath = \"var/journal.db\"\nkey_file = \"var/journal.key\"\n\n[[listener]]\nname = \"adt\"\nbind = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let e = health_command(&path, Duration::from_secs(1), &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("journal"), "{e}");
        assert!(!dir.path().join("var").exists(), "a read-only check creates no folder or file");
    }
}
