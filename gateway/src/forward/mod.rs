//! Store-and-forward to the cloud FHIR server: ureq over rustls on blocking threads,
//! per-patient lanes in journal order, retries, dead letters.
//!
//! # Layout
//! - `lanes`: the delivery loop — lanes over the outbox and the scheduler thread that
//!   decides what is sent next.
//! - `lane_set`: the lanes held in memory, the ready queue, finding them in the outbox.
//! - `worker`: worker threads that open, send and judge.
//! - `pack`: which of a job's parts go into its request, and how.
//! - `pacing`: whether to send now and how long a failing lane waits (breaker, global
//!   pauses, throttling, backoff); plain state, no database.
//! - `cloud_state`: the log lines an operator reads: each change of the link, the circuit
//!   and the credentials once, every dead letter with its reason.
//! - `record`: the recorder thread that writes outcomes in group commits.
//! - `ids`, `id_map`: send-time rewriting against what the server holds — write economy
//!   (unchanged resources are not written again), server ids learned from `response.location`
//!   (salesforce), unsupported resource types routed.
//! - `deliver`: what an answer means (delivered, retry, dead letter, auth failure), entry
//!   by entry for batches.
//! - `retry`: backoff with jitter, `Retry-After`, the circuit breaker, API-usage throttling.
//! - `client`: the `client::Target` trait and the HTTP target (one ureq Agent,
//!   rustls with the ring provider, custom CA, mTLS, proxy, timeouts).
//! - `lookup`: before a first create (salesforce), a search on identifier finds a resource
//!   the server holds but the id map lost; several matches refuse the entry.
//! - `routes`: `[cloud.base_urls]`, a batch split by base URL and its answers stitched.
//! - `resolve`: a name cache, so ureq does not spawn a lookup thread per request.
//! - The embedded default target is [`crate::sink`], a FHIR server stand-in on SQLite.
//! - `auth`: credentials for the cloud.

pub(crate) mod auth;
mod budget;
pub(crate) mod client;
mod cloud_state;
pub(crate) mod deliver;
mod id_map;
pub(crate) mod ids;
mod lane_set;
pub(crate) mod lanes;
mod lookup;
mod pacing;
mod pack;
mod record;
mod resolve;
pub(crate) mod retry;
mod routes;
mod worker;

use std::path::Path;
use std::sync::Arc;

pub use client::{Response, SendError, Target};
pub(crate) use lanes::{ForwardOptions, Forwarder};

use crate::config::Cloud;

/// The HTTP FHIR server `[cloud] url` names.
pub(crate) fn http_target(cloud: &Cloud, config_dir: &Path) -> anyhow::Result<(Arc<dyn Target>, String)> {
    let http = client::HttpTarget::from_config(cloud, config_dir)?;
    let url = cloud.url.as_ref().map(|u| u.get_ref().clone()).unwrap_or_default();
    if cloud.base_urls.is_empty() {
        return Ok((Arc::new(http), url));
    }
    let by_type = cloud.base_urls.iter().map(|(kind, base)| (kind.get_ref().clone(), base.get_ref().clone()));
    Ok((Arc::new(routes::Routes::new(http, by_type)), url))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    const BASE: &str =
        "[store]\npath = \"j.db\"\nkey_file = \"j.key\"\n\n[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:2575\"\n\n";

    #[test]
    fn cloud_defaults_to_the_local_sink() {
        let c = Config::parse(BASE, Path::new("/etc/gw/gateway.toml")).unwrap();
        assert_eq!(c.cloud.sink_dir(&c.dir).unwrap(), Path::new("/etc/gw/var/fhir-sink"));
        assert_eq!(c.cloud.concurrency.get(), 4);
        assert_eq!(c.cloud.request_max_entries.get(), 30);
        assert_eq!(
            (c.cloud.connect_timeout_secs.get(), c.cloud.read_timeout_secs.get(), c.cloud.timeout_secs.get()),
            (5, 30, 60)
        );
        assert_eq!((c.cloud.backoff_base_ms.get(), c.cloud.backoff_max_secs.get()), (500, 300));
        let c = Config::parse(&format!("{BASE}[cloud]\nsink = \"out\"\n"), Path::new("/etc/gw/gateway.toml")).unwrap();
        assert_eq!(c.cloud.sink_dir(&c.dir).unwrap(), Path::new("/etc/gw/out"));
        let text =
            format!("{BASE}[cloud]\nurl = \"https://fhir.example/r4\"\nconcurrency = 8\nprofile = \"salesforce\"\n");
        let c = Config::parse(&text, Path::new("/etc/gw/gateway.toml")).unwrap();
        assert!(c.cloud.sink_dir(&c.dir).is_none());
        assert_eq!(c.cloud.concurrency.get(), 8);
        // The salesforce profile leaves out by default the types no documented module lists.
        assert_eq!(c.cloud.unsupported_types(), ["Provenance", "Coverage", "Appointment", "Specimen"]);
        assert_eq!((c.cloud.unsupported, c.cloud.reassert_hours.get()), (crate::config::UnsupportedMode::Drop, 24));
        let text =
            format!("{BASE}[cloud]\nunsupported = \"dead-letter\"\nunsupported_types = []\ndaily_api_budget = 15000\n");
        let c = Config::parse(&text, Path::new("/etc/gw/gateway.toml")).unwrap();
        assert_eq!(c.cloud.unsupported, crate::config::UnsupportedMode::DeadLetter);
        assert!(c.cloud.unsupported_types().is_empty());
        assert_eq!(c.cloud.daily_api_budget.map(|b| b.get()), Some(15000));
        assert_eq!(c.cloud.salesforce_max_reads, 10, "the documented read limit");
        assert!(c.cloud.base_urls.is_empty());
        let text = format!(
            "{BASE}[cloud]\nprofile = \"salesforce\"\nsalesforce_max_reads = 0\n\n[cloud.base_urls]\nPatient = \"https://p.example/r4\"\nObservation = \"/services/clinical/r4\"\n"
        );
        let c = Config::parse(&text, Path::new("/etc/gw/gateway.toml")).unwrap();
        assert_eq!(c.cloud.salesforce_max_reads, 0);
        let urls: Vec<(&str, &str)> =
            c.cloud.base_urls.iter().map(|(k, v)| (k.get_ref().as_str(), v.get_ref().as_str())).collect();
        assert_eq!(urls, [("Observation", "/services/clinical/r4"), ("Patient", "https://p.example/r4")]);
    }

    #[test]
    fn cloud_errors_name_line_and_field() {
        let cases = [
            ("url = \"ftp://x\"", "cloud.url"),
            ("url = \"https://x/r4\"\nsink = \"s\"", "cloud.sink"),
            ("client_cert = \"c.pem\"", "cloud.client_key"),
            ("ca_file = \"/nonexistent/ca.pem\"", "cloud.ca_file"),
            ("proxy = \"::not a url\"", "cloud.proxy"),
            ("timeout_secs = 0", "cloud.timeout_secs"),
            ("concurrency = 0", "cloud.concurrency"),
            ("request_max_entries = 0", "cloud.request_max_entries"),
            ("batch_max_entries = 0", "cloud.batch_max_entries"),
            ("unsupported = \"retry\"", "cloud.unsupported"),
            ("reassert_hours = 0", "cloud.reassert_hours"),
            ("daily_api_budget = 0", "cloud.daily_api_budget"),
            ("salesforce_max_reads = -1", "cloud.salesforce_max_reads"),
            ("profile = \"salesforce\"\nbase_urls = { Patinet = \"https://x/r4\" }", "cloud.base_urls.Patinet"),
            ("profile = \"salesforce\"\nbase_urls = { Patient = \"ftp://x/r4\" }", "cloud.base_urls.Patient"),
            ("profile = \"salesforce\"\nbase_urls = { Patient = \"http://x.example/r4\" }", "cloud.base_urls.Patient"),
            ("base_urls = { Patient = \"https://x/r4\" }", "cloud.base_urls.Patient"),
        ];
        for (body, field) in cases {
            let text = format!("{BASE}[cloud]\n{body}\n");
            let e = Config::parse(&text, Path::new("gw.toml")).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{body}: {e}");
            assert!(e.to_string().starts_with("gw.toml"), "{e}");
            if field != "cloud.client_key" {
                assert!(e.line.is_some_and(|l| l >= 10), "{body}: {e}");
            }
        }
    }

    #[test]
    fn shipped_config_delivers_to_the_sink() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml");
        let c = Config::load(&path).unwrap();
        assert!(c.cloud.sink_dir(&c.dir).unwrap().ends_with("var/fhir-sink"));
    }
}
