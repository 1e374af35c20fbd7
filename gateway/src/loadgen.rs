//! `gateway loadgen`: N connections, each with one outstanding message like a real EHR
//! interface; checks every ACK's MSA-1 and MSA-2 and reports throughput and ACK latency.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::mllp::codec::{self, Decoded, Decoder};

/// A minimal MLLP client: send a message, wait for its ACK.
pub(crate) struct Client {
    stream: TcpStream,
    decoder: Decoder,
    buf: Vec<u8>,
    pending: Vec<u8>,
}

impl Client {
    pub(crate) async fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client { stream, decoder: Decoder::new(1 << 20), buf: Vec::new(), pending: Vec::new() })
    }

    /// Sends one message and returns the next frame the peer sends back.
    pub(crate) async fn call(&mut self, message: &[u8]) -> std::io::Result<Vec<u8>> {
        self.buf.clear();
        codec::encode(message, &mut self.buf);
        self.stream.write_all(&self.buf).await?;
        self.read_frame().await
    }

    /// Reads the next frame.
    pub(crate) async fn read_frame(&mut self) -> std::io::Result<Vec<u8>> {
        let mut chunk = [0u8; 4096];
        loop {
            while !self.pending.is_empty() {
                let (used, found) = self.decoder.decode(&self.pending);
                self.pending.drain(..used);
                match found {
                    Decoded::Frame(f) => return Ok(f),
                    Decoded::Incomplete => {}
                    Decoded::Error(e) => return Err(std::io::Error::other(format!("bad frame from peer: {e:?}"))),
                }
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

/// MSA-1 and MSA-2 of an ACK.
pub fn msa(ack: &[u8]) -> Option<(String, String)> {
    let seg = ack.split(|&b| b == b'\r').find(|s| s.starts_with(b"MSA"))?;
    let sep = *seg.get(3)?;
    let mut fields = seg.split(|&b| b == sep).skip(1);
    let code = String::from_utf8_lossy(fields.next()?).into_owned();
    let id = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    Some((code, id))
}

/// A realistic ADT^A01 (about 1 KB) with the given control ID and patient number.
pub fn sample_adt(control_id: &str, patient: u64) -> Vec<u8> {
    format!(
        "MSH|^~\\&|EPIC|MAIN_HOSP|GATEWAY|CLOUD|20261121093000-0500||ADT^A01^ADT_A01|{control_id}|P|2.5.1||||||UNICODE UTF-8\r\
EVN|A01|20261121093000-0500|||JSMITH^Smith^John^^^Dr.\r\
PID|1||MRN{patient:08}^^^MAIN_HOSP^MR~{patient:09}^^^USSSA^SS||TESTPATIENT^ALEX^Q^^^^L||19800101|F|||123 MAIN ST^APT 4^SPRINGFIELD^IL^62701^USA^H||(217)555-0100^PRN^PH~^NET^Internet^alex@example.org|||M|CHR|ACCT{patient:07}|||N\r\
PD1|||MAIN HOSPITAL^^1234|1234567890^PRIMARY^PAT^^^^^^NPI\r\
NK1|1|TESTPATIENT^SAM|SPO^Spouse^HL70063|123 MAIN ST^^SPRINGFIELD^IL^62701|(217)555-0101\r\
PV1|1|I|4WEST^401^A^MAIN_HOSP^^^^4W|E|||1234567890^ATTEND^ANNA^^^^^^NPI|||MED||||1|||1234567890^ATTEND^ANNA^^^^^^NPI|IN||BC|||||||||||||||||||MAIN_HOSP||ADM|||20261121092500-0500\r\
PV2|||^CHEST PAIN\r\
DG1|1|I10|R07.9^Chest pain, unspecified^I10|Chest pain||A\r\
AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives\r\
IN1|1|BCBS01^Blue Cross PPO|12345|BLUE CROSS||||GRP001|||||||TESTPATIENT^ALEX|SEL|19800101\r"
    )
    .into_bytes()
}

#[derive(Debug, Clone)]
pub struct Report {
    pub(crate) connections: usize,
    pub(crate) messages: usize,
    /// ACKs the gateway gave for messages it already had (from its `/metrics`), when known.
    pub duplicates: Option<u64>,
    pub(crate) elapsed: Duration,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
}

impl Report {
    pub(crate) fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    /// Most ACKs were for messages the gateway already had: nothing was stored, and the rate
    /// measures duplicate detection, not durable ingest.
    pub fn mostly_duplicates(&self) -> bool {
        self.duplicates.is_some_and(|d| d.saturating_mul(2) > self.messages as u64)
    }
}

/// A run id no earlier run used (base 36 of the Unix time in milliseconds), so the control
/// IDs of a re-run are not taken for re-sent messages.
pub fn unique_run_id() -> String {
    let mut ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let mut digits = Vec::new();
    while ms > 0 {
        digits.push(char::from_digit((ms % 36) as u32, 36).expect("below 36"));
        ms /= 36;
    }
    format!("LG{}", digits.iter().rev().collect::<String>().to_ascii_uppercase())
}

/// `gateway_duplicates_total` from the admin endpoint at `admin`; `None` if it cannot be read.
pub async fn duplicates_counter(admin: SocketAddr) -> Option<u64> {
    let read = async {
        let mut stream = TcpStream::connect(admin).await.ok()?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: loadgen\r\n\r\n").await.ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await.ok()?;
        metric(&text, "gateway_duplicates_total")
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.ok().flatten()
}

/// The value of an unlabelled Prometheus sample.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).map(|v| v as u64)
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "connections={} messages={} seconds={:.2} msg_per_s={:.0} ack_p50_ms={:.3} ack_p99_ms={:.3} ack_max_ms={:.3}",
            self.connections,
            self.messages,
            self.elapsed.as_secs_f64(),
            self.rate(),
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )?;
        match self.duplicates {
            Some(d) => write!(f, " duplicates={d}"),
            None => Ok(()),
        }
    }
}

/// Runs `connections` senders of `per_connection` messages each against `addr`. Each
/// connection's messages are about one patient, or with `patients` set, every message is
/// about the next of that many patients (many patient lanes).
/// Fails if any ACK is not AA/CA for the message's own control ID.
pub async fn run(
    addr: SocketAddr,
    connections: usize,
    per_connection: usize,
    patients: Option<u64>,
    run_id: &str,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let run_id = run_id.to_string();
        tasks.spawn(async move {
            let mut client = Client::connect(addr).await.context("connect")?;
            let mut latencies = Vec::with_capacity(per_connection);
            for i in 0..per_connection {
                let control_id = format!("{run_id}-{c}-{i}");
                let patient = patients.map_or(c as u64, |n| (c * per_connection + i) as u64 % n.max(1));
                let message = sample_adt(&control_id, patient);
                let sent = Instant::now();
                let ack = client.call(&message).await.context("waiting for ACK")?;
                latencies.push(sent.elapsed());
                match msa(&ack) {
                    Some((code, id)) if (code == "AA" || code == "CA") && id == control_id => {}
                    other => bail!("message {control_id}: unexpected acknowledgment {other:?}"),
                }
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::with_capacity(connections * per_connection);
    while let Some(result) = tasks.join_next().await {
        all.extend(result??);
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default()
    };
    Ok(Report {
        connections,
        messages: all.len(),
        elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
        max: all.last().copied().unwrap_or_default(),
        duplicates: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_differ_between_runs_and_most_duplicates_is_flagged() {
        let a = unique_run_id();
        std::thread::sleep(Duration::from_millis(2));
        assert_ne!(a, unique_run_id());
        assert!(a.starts_with("LG") && a.len() <= 12, "{a}");
        let report = |duplicates| Report {
            connections: 1,
            messages: 100,
            duplicates,
            elapsed: Duration::from_secs(1),
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            max: Duration::ZERO,
        };
        assert!(report(Some(51)).mostly_duplicates());
        assert!(!report(Some(50)).mostly_duplicates() && !report(None).mostly_duplicates());
        assert_eq!(metric("# x\ngateway_duplicates_total 7\n", "gateway_duplicates_total"), Some(7));
    }

    #[test]
    fn msa_fields() {
        assert_eq!(msa(b"MSH|^~\\&\rMSA|AA|X1\r"), Some(("AA".into(), "X1".into())));
        assert_eq!(msa(b"MSH|^~\\&\rMSA|AE\r"), Some(("AE".into(), "".into())));
        assert_eq!(msa(b"MSH|^~\\&\r"), None);
    }
}
