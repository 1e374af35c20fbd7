//! A bundle over HTTP(S) (e.g. from the operations server over the VPN), kept in a file and
//! resumed with `Range: bytes=N-` after a broken link, so a flaky uplink never restarts a
//! large download. The head is checked as soon as it has arrived: a bundle the box would
//! refuse is not downloaded to the end.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ureq::tls::{PemItem, RootCerts, TlsConfig, TlsProvider};

use super::bundle::{self, Head};

/// System CA bundles, the first found is used (`SSL_CERT_FILE` first).
const SYSTEM_BUNDLES: &[&str] = &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];
const ATTEMPTS: u32 = 20;

fn agent() -> anyhow::Result<ureq::Agent> {
    let path = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from))
        .find(|p| p.is_file());
    let mut roots = Vec::new();
    if let Some(p) = path {
        let pem = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        roots.extend(ureq::tls::parse_pem(&pem).filter_map(|i| match i {
            Ok(PemItem::Certificate(c)) => Some(c.to_owned()),
            _ => None,
        }));
    }
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .root_certs(RootCerts::new_with_certs(&roots))
        .build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build();
    Ok(config.new_agent())
}

/// Downloads `url` into `dest`, continuing what `dest` already holds; `check` runs on the
/// head once it is in (its error stops the download).
pub fn download(url: &str, dest: &Path, check: &dyn Fn(&Head) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let agent = agent()?;
    let mut expected: Option<u64> = None;
    let mut last_error = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // Back off on a failing link (1 s, 2 s, … up to a minute).
            std::thread::sleep(Duration::from_secs(u64::from(attempt).min(60)));
        }
        match resume_once(&agent, url, dest, &mut expected, check) {
            Ok(_) => return Ok(()),
            Err(Step::Fatal(e)) => return Err(e),
            Err(Step::Retry(e)) => {
                tracing::warn!(attempt, "update: download interrupted, resuming: {e:#}");
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("download did not finish")))
        .context(format!("downloading the bundle after {ATTEMPTS} attempts"))
}

enum Step {
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

/// One request from where `dest` ends. `Ok(true)`: complete.
fn resume_once(
    agent: &ureq::Agent,
    url: &str,
    dest: &Path,
    expected: &mut Option<u64>,
    check: &dyn Fn(&Head) -> anyhow::Result<()>,
) -> Result<bool, Step> {
    let have = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    if expected.is_some_and(|e| have >= e) {
        return Ok(true);
    }
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let mut resp = req.call().map_err(|e| Step::Retry(e.into()))?;
    let status = resp.status().as_u16();
    let append = match status {
        206 => true,
        200 => false,
        416 if have > 0 => return check_complete(dest, expected, check).map(|_| true),
        s if (500..600).contains(&s) || s == 429 => return Err(Step::Retry(anyhow::anyhow!("HTTP {s}"))),
        s => return Err(Step::Fatal(anyhow::anyhow!("HTTP {s}"))),
    };
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(dest)
        .map_err(|e| Step::Fatal(e.into()))?;
    let mut written = if append { have } else { 0 };
    let mut reader = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| Step::Retry(e.into()))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(|e| Step::Fatal(e.into()))?;
        written += n as u64;
        if expected.is_none() && written >= 12 {
            file.flush().map_err(|e| Step::Fatal(e.into()))?;
            // The head is checked as soon as it is complete.
            if let Ok(head) = bundle::read_head(&mut std::fs::File::open(dest).map_err(|e| Step::Fatal(e.into()))?) {
                check(&head).map_err(Step::Fatal)?;
                *expected = Some(head.payload_offset + head.manifest.payload_size);
            }
        }
    }
    file.sync_all().map_err(|e| Step::Fatal(e.into()))?;
    check_complete(dest, expected, check)
}

fn check_complete(
    dest: &Path,
    expected: &mut Option<u64>,
    check: &dyn Fn(&Head) -> anyhow::Result<()>,
) -> Result<bool, Step> {
    let mut f = std::fs::File::open(dest).map_err(|e| Step::Fatal(e.into()))?;
    let head = bundle::read_head(&mut f).map_err(|e| Step::Fatal(e.into()))?;
    if expected.is_none() {
        check(&head).map_err(Step::Fatal)?;
    }
    let want = head.payload_offset + head.manifest.payload_size;
    *expected = Some(want);
    let have = f.metadata().map_err(|e| Step::Fatal(e.into()))?.len();
    match have.cmp(&want) {
        std::cmp::Ordering::Equal => Ok(true),
        std::cmp::Ordering::Less => Err(Step::Retry(anyhow::anyhow!("{have} of {want} bytes"))),
        std::cmp::Ordering::Greater => {
            Err(Step::Fatal(anyhow::anyhow!("server sent {have} bytes, the bundle has {want}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::update::bundle::{make, BundleSpec};
    use crate::update::keys::SigningKey;

    /// A server that breaks the first response off half-way and honours `Range` after.
    /// Returns the URL and the Range headers it saw.
    fn flaky_server(body: Vec<u8>) -> (String, std::thread::JoinHandle<Vec<Option<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/bundle", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut ranges = Vec::new();
            for (i, conn) in listener.incoming().take(2).enumerate() {
                let mut conn = conn.unwrap();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut range = None;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        range = Some(v.trim().trim_end_matches('-').to_string());
                    }
                }
                let from: usize = range.as_deref().map_or(0, |r| r.parse().unwrap());
                ranges.push(range);
                if i == 0 {
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    conn.write_all(head.as_bytes()).unwrap();
                    conn.write_all(&body[..body.len() / 2]).unwrap();
                } else {
                    let rest = &body[from..];
                    let head = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
                        rest.len(),
                        body.len() - 1,
                        body.len()
                    );
                    conn.write_all(head.as_bytes()).unwrap();
                    conn.write_all(rest).unwrap();
                }
            }
            ranges
        });
        (url, handle)
    }

    fn test_bundle(dir: &Path) -> Vec<u8> {
        let rootfs = dir.join("rootfs");
        std::fs::write(&rootfs, (0..300_000u32).map(|i| (i % 253) as u8).collect::<Vec<u8>>()).unwrap();
        let spec = BundleSpec {
            rootfs: &rootfs,
            version: "1.0.2".parse().unwrap(),
            board: "b".into(),
            min_version: "1.0".parse().unwrap(),
            expires: "2030-01-01T00:00:00Z".parse().unwrap(),
            keyring_version: 1,
        };
        let out = dir.join("src.bundle");
        make(&spec, &[SigningKey::generate().unwrap().0], &out).unwrap();
        std::fs::read(out).unwrap()
    }

    #[test]
    fn a_broken_download_resumes_where_it_stopped() {
        let tmp = tempfile::tempdir().unwrap();
        let body = test_bundle(tmp.path());
        let (url, server) = flaky_server(body.clone());
        let dest = tmp.path().join("download.bundle");
        let checks = AtomicUsize::new(0);
        download(&url, &dest, &|head| {
            assert_eq!(head.manifest.version.to_string(), "1.0.2");
            checks.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), body);
        assert_eq!(server.join().unwrap(), vec![None, Some((body.len() / 2).to_string())]);
        assert_eq!(checks.load(Ordering::Relaxed), 1, "the head is checked once, as soon as it is in");
    }

    #[test]
    fn a_refused_head_stops_the_download() {
        let tmp = tempfile::tempdir().unwrap();
        let body = test_bundle(tmp.path());
        let (url, _server) = flaky_server(body.clone());
        let dest = tmp.path().join("download.bundle");
        let e = download(&url, &dest, &|_| anyhow::bail!("wrong board")).unwrap_err();
        assert!(format!("{e:#}").contains("wrong board"), "{e:#}");
        assert!(std::fs::metadata(&dest).unwrap().len() < body.len() as u64);
    }
}
