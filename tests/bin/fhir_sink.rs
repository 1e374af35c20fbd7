//! Minimal FHIR sink for `scripts/bench-e2e`: answers every POST of a Bundle with 200 and a
//! `transaction-response` (or `batch-response`) holding one `200 OK` entry per request entry,
//! and stores nothing — the gateway's own delivery ceiling, without a FHIR server's cost.
//!
//!     fhir-sink [--port N]
//!
//! Prints `listening http://127.0.0.1:<port>` once it accepts. `GET /__count` answers
//! `{"requests": N, "entries": M}`. HTTP/1.1 keep-alive, one thread per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    entries: AtomicU64,
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port = args
        .iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .map_or(0, |p| p.parse().expect("--port N"));
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    println!("listening http://127.0.0.1:{}", listener.local_addr()?.port());
    let counts = Arc::new(Counts::default());
    for stream in listener.incoming() {
        let counts = counts.clone();
        let stream = stream?;
        std::thread::spawn(move || {
            let _ = serve(stream, &counts);
        });
    }
    Ok(())
}

fn serve(stream: TcpStream, counts: &Counts) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let (status, reply) = if request_line.starts_with("GET") {
            let n = (counts.requests.load(Relaxed), counts.entries.load(Relaxed));
            ("200 OK", format!("{{\"requests\":{},\"entries\":{}}}", n.0, n.1))
        } else {
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(bundle) => {
                    let n = bundle["entry"].as_array().map_or(0, Vec::len);
                    counts.requests.fetch_add(1, Relaxed);
                    counts.entries.fetch_add(n as u64, Relaxed);
                    let kind = if bundle["type"] == "batch" { "batch-response" } else { "transaction-response" };
                    let entries = vec![r#"{"response":{"status":"200 OK"}}"#; n].join(",");
                    ("200 OK", format!(r#"{{"resourceType":"Bundle","type":"{kind}","entry":[{entries}]}}"#))
                }
                Err(_) => (
                    "400 Bad Request",
                    r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"structure"}]}"#.into(),
                ),
            }
        };
        // Head and body in one write: no delayed-ACK stalls.
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        writer.write_all(response.as_bytes())?;
    }
}
