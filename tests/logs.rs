//! What the gateway logs at the most verbose level: the real binary with `RUST_LOG=trace`,
//! a bearer token, delivering corpus messages to the Node FHIR test server over loopback.
//! Nothing it prints may carry a patient's name, identifiers, an allergy, a bundle or the
//! token; only `GATEWAY_UNSAFE_TRACE=1` lets dependency crates log their wire traffic, and
//! it says so at start.
//!
//! Needs Node 20.19+ and `npm ci --prefix tests/fhir-server`, and `cargo build -p gateway`.

use std::path::Path;
use std::time::Duration;

use gateway_tests::*;

const PLAIN: &str = "[[listener]]\nname = \"mllp\"\nbind = \"127.0.0.1:0\"\n";
/// A token the server accepts; it must never appear in the log.
const TOKEN: &str = "tok-3f9a1c77e2b84d0aa6c1-SECRET";

/// Corpus messages (MSH-15 made `AL`, so they are always ACKed) and what each carries that
/// must stay out of the log: names, MRN, SSN, other identifiers, an allergy, an address.
const MESSAGES: &[(&str, &[&str])] = &[
    (
        "epic_adt_a01_01.hl7",
        &[
            "Carter",
            "Evelyn",
            "Hughes",
            "E1000001",
            "999-12-3456",
            "900100001",
            "Penicillin",
            "1200 Elm St",
            "evelyn.carter",
        ],
    ),
    ("cerner_adt_a01_01.hl7", &["Garcia", "Maria", "7700123", "999-44-1122", "88001234", "Aspirin", "45 Ocean Ave"]),
];

fn corpus_message(name: &str) -> Vec<u8> {
    let raw = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/hl7").join(name)).unwrap();
    String::from_utf8(raw).unwrap().replace("|||ER|", "|||AL|").into_bytes()
}

/// A gateway delivering to `server` with a bearer token file, the golden site maps (so
/// Patients are conditional updates `Patient?identifier=…|<MRN>`), logging with `env`.
fn start(server: &FhirServer, env: &[(&str, &str)]) -> (Setup, Gateway) {
    use std::os::unix::fs::PermissionsExt;
    let mut setup = Setup::new(PLAIN);
    let token_file = setup.dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let auth = format!("[cloud.auth]\nkind = \"bearer\"\ntoken_file = \"{}\"\n", token_file.display());
    setup.extra = format!("{}\n{}", cloud(&server.base_url(), 15, &auth), mapping());
    let gw = setup.start_with_env(env);
    (setup, gw)
}

/// Lines of `log` holding `needle` (case-insensitive), for the failure message.
fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    let needle = needle.to_ascii_lowercase();
    log.lines().filter(|l| l.to_ascii_lowercase().contains(&needle)).take(3).collect()
}

#[test]
fn trace_logs_carry_no_phi_no_bundle_and_no_token() {
    let server = FhirServer::start(&["--require-auth", "--static-token", TOKEN]);
    let (_setup, gw) = start(&server, &[("RUST_LOG", "trace")]);
    let mut c = gw.connect();
    for (name, _) in MESSAGES {
        let ack = c.call(&corpus_message(name));
        assert!(matches!(msa(&ack).0.as_str(), "AA" | "CA"), "{name}: {ack:?}");
    }
    wait_metric(&gw, "gateway_forward_delivered_total", MESSAGES.len() as f64, Duration::from_secs(90));
    assert!(server.status()["counters"]["entries_written"].as_u64().unwrap() >= 2, "delivered with the token");
    drop(c);
    let log = gw.terminate_log();

    // Trace is on for the gateway's own targets: its debug lines are there.
    assert!(log.contains("DEBUG") && log.contains("EPC2026031508300001"), "the gateway's own debug lines are kept");
    let mut forbidden: Vec<&str> = MESSAGES.iter().flat_map(|(_, phi)| phi.iter().copied()).collect();
    // The token, the header that carries it, and any bundle JSON.
    forbidden.extend([TOKEN, "Authorization", "Bearer ", "resourceType", "\"entry\"", "identifier="]);
    let leaks: Vec<(&str, Vec<&str>)> =
        forbidden.iter().map(|f| (*f, lines_with(&log, f))).filter(|(_, l)| !l.is_empty()).collect();
    assert!(leaks.is_empty(), "{} log lines; leaked: {leaks:#?}", log.lines().count());
    assert!(!log.contains("GATEWAY_UNSAFE_TRACE"), "no unsafe-trace warning without the switch");
}

#[test]
fn the_unsafe_switch_lets_dependencies_trace_and_says_so_once_at_start() {
    let server = FhirServer::start(&["--require-auth", "--static-token", TOKEN]);
    let (_setup, gw) = start(&server, &[("RUST_LOG", "trace"), ("GATEWAY_UNSAFE_TRACE", "1")]);
    let mut c = gw.connect();
    let (name, _) = MESSAGES[0];
    let ack = c.call(&corpus_message(name));
    assert!(matches!(msa(&ack).0.as_str(), "AA" | "CA"), "{name}: {ack:?}");
    wait_metric(&gw, "gateway_forward_delivered_total", 1.0, Duration::from_secs(90));
    assert_eq!(gw.metric("gateway_log_unsafe_trace"), 1.0, "visible in /metrics");
    drop(c);
    let log = gw.terminate_log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("GATEWAY_UNSAFE_TRACE")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("WARN") && warnings[0].contains("PHI"), "{}", warnings[0]);
    assert!(log.contains("TRACE ureq"), "with the switch, the HTTP client's trace lines are there");
}
