//! Fuzzes header parsing and ACK building: `gateway::hl7::msh::parse`,
//! `gateway::mllp::ack::build`, `policy::check_segments`, `policy::Policy::check` and
//! `msh::patient_identifier`.
//!
//! For every input, whether its MSH parses or not, the gateway answers with an ACK built
//! from the echoed fields. Checks that each ACK (accepted, errored, rejected; original and
//! enhanced mode; v2.3 and v2.5 style ERR):
//! - fits its buffer (`len() < ACK_CAPACITY`), starts with `MSH` and ends with `\r`;
//! - is itself a parseable message with valid segment IDs, in the sender's delimiters,
//!   with sender/receiver swapped and the echoed fields (capped at 180 bytes) intact;
//! - has MSA-1 per the outcome and mode, MSA-2 equal to the echoed control ID (capped);
//! - can be framed with MLLP: it contains no `<VT>`/`<FS>` when the message had none
//!   (frames the decoder hands over never do).
//!
//! Regression seeds `corpus/msh_ack/bug_*.hl7`: senders whose delimiters include `+` or `.`
//! (the ACK's own timestamp and default version must be escaped for them).
#![no_main]

use gateway::config::Accept;
use gateway::hl7::msh::{self, Echo};
use gateway::hl7::{AckCondition, ErrorCode, Hl7Error, Location};
use gateway::mllp::ack::{self, Outcome, ACK_CAPACITY};
use gateway::mllp::codec::{END, START};
use gateway::mllp::policy::{self, Policy};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// `MAX_ECHO` in ack.rs (private there).
const MAX_ECHO: usize = 180;
const ACK_ID: &str = "ACKID";
const TIMESTAMP: &str = "20260101000000+0000";

/// The echo cap of ack.rs: at most MAX_ECHO bytes, never splitting a UTF-8 character or an
/// escape sequence.
fn cap(f: &[u8], escape: u8) -> &[u8] {
    let mut cut = f.len().min(MAX_ECHO);
    while cut < f.len() && cut > 0 && f[cut] & 0xC0 == 0x80 {
        cut -= 1;
    }
    if f[..cut].iter().filter(|&&b| b == escape).count() % 2 == 1 {
        cut = f[..cut].iter().rposition(|&b| b == escape).unwrap_or(0);
    }
    &f[..cut]
}

fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

fn check_ack(msg: &[u8], echo: &Echo, outcome: &Outcome) {
    let enhanced = echo.accept_ack.is_some();
    let a = ack::build(echo, outcome, ACK_ID, TIMESTAMP);
    let a: &[u8] = &a;
    assert!(a.len() < ACK_CAPACITY, "ACK of {} bytes fills its buffer", a.len());
    assert!(a.starts_with(b"MSH"), "ACK does not start with MSH: {}", show(a));
    assert!(a.ends_with(b"\r"), "ACK does not end with CR: {}", show(a));
    if !msg.contains(&START) && !msg.contains(&END) {
        assert!(!a.contains(&START) && !a.contains(&END), "ACK cannot be MLLP-framed: {}", show(a));
    }
    check_ack_header(a, echo);

    let d = &echo.delimiters;
    if let Err(e) = policy::check_segments(a, d.field) {
        panic!("ACK has an invalid segment ({e}): {}", show(a));
    }
    let segs: Vec<&[u8]> = a.split(|&b| b == b'\r').filter(|s| !s.is_empty()).collect();
    let want_segs = if outcome == &Outcome::Accepted { 2 } else { 3 };
    assert_eq!(segs.len(), want_segs, "ACK segments: {}", show(a));
    assert!(segs[1].starts_with(b"MSA"));
    let msa: Vec<&[u8]> = segs[1].split(|&b| b == d.field).collect();
    assert_eq!(msa[0], b"MSA");
    assert_eq!(msa[1], outcome.code(enhanced).as_bytes(), "MSA-1");
    let id = echo.control_id;
    if !id.contains(&b'\r') && !id.contains(&b'\n') {
        assert_eq!(msa.get(2).copied(), Some(cap(id, d.escape)), "MSA-2 is not the echoed control ID: {}", show(a));
    }
    if outcome != &Outcome::Accepted {
        assert!(segs[2].starts_with(b"ERR"));
    }
}

/// The ACK's MSH re-parsed: the sender's delimiters, swapped and echoed fields.
fn check_ack_header(a: &[u8], echo: &Echo) {
    let h = match msh::parse(a) {
        Ok(h) => h,
        Err(e) => panic!("the gateway's own ACK does not parse ({}): {}", e.error, show(a)),
    };
    let e = &h.echo;
    let esc = echo.delimiters.escape;
    assert_eq!(e.delimiters, echo.delimiters, "ACK delimiters");
    assert_eq!(e.sending_application, cap(echo.receiving_application, esc), "ACK MSH-3");
    assert_eq!(e.sending_facility, cap(echo.receiving_facility, esc), "ACK MSH-4");
    assert_eq!(e.receiving_application, cap(echo.sending_application, esc), "ACK MSH-5");
    assert_eq!(e.receiving_facility, cap(echo.sending_facility, esc), "ACK MSH-6");
    assert_eq!(h.message_code, b"ACK");
    if !echo.trigger_event.is_empty() {
        assert_eq!(e.trigger_event, cap(echo.trigger_event, esc), "ACK MSH-9.2");
    }
    assert_eq!(e.control_id, ACK_ID.as_bytes(), "ACK MSH-10");
    let pid_ok = !echo.processing_id.is_empty() && echo.processing_id.iter().all(u8::is_ascii_alphanumeric);
    assert_eq!(e.processing_id, if pid_ok { echo.processing_id } else { b"P" }, "ACK MSH-11");
    let v = echo.version;
    let ver_ok = !v.is_empty() && v.len() <= 16 && v.iter().all(|b| b.is_ascii_digit() || *b == b'.');
    if ver_ok && !contains_delimiter(v, &echo.delimiters) {
        assert_eq!(e.version, v, "ACK MSH-12");
    } else if !ver_ok && !contains_delimiter(b"2.5", &echo.delimiters) {
        assert_eq!(e.version, b"2.5", "ACK MSH-12 default");
    }
    let ne = echo.accept_ack.is_some().then_some(AckCondition::Never);
    assert_eq!((e.accept_ack, h.application_ack), (ne, ne), "an ACK is never acknowledged");
    assert_eq!(e.charset, cap(echo.charset, esc), "ACK MSH-18");
}

fn contains_delimiter(text: &[u8], d: &gateway::hl7::Delimiters) -> bool {
    text.iter().any(|b| [d.field, d.component, d.repetition, d.escape, d.subcomponent].contains(b))
}

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| Policy::new(&Accept::default()))
}

fuzz_target!(|data: &[u8]| {
    let (echo, error) = match msh::parse(data) {
        Ok(h) => {
            let e = &h.echo;
            assert!(!e.control_id.is_empty() && !h.message_code.is_empty());
            assert!(!e.processing_id.is_empty() && !e.version.is_empty());
            assert_eq!(h.enhanced_mode(), e.accept_ack.is_some());
            let _ = h.message_type();
            let _ = policy().check(&h);
            (h.echo, None)
        }
        Err(e) => (*e.echo, Some(e.error)),
    };

    let outcomes = [
        Outcome::Accepted,
        Outcome::Errored(error.unwrap_or_else(|| Hl7Error::at(ErrorCode::DataTypeError, Location::component("PID", 3, 1)))),
        Outcome::Rejected(Hl7Error::new(
            ErrorCode::ApplicationInternalError,
            Location::NONE,
            "Message exceeds the frame size limit",
        )),
        Outcome::Errored(Hl7Error::at(ErrorCode::RequiredFieldMissing, Location::field("PID", 3))),
    ];
    for outcome in &outcomes {
        check_ack(data, &echo, outcome);
        let _ = ack::ack_wanted(echo.accept_ack, outcome);
    }
    // The same fields echoed in original mode and in a v2.3 message (ERR-1 style), unless
    // `.` is a delimiter (then a sender could not have written "2.3.1" unescaped either).
    let mut original = echo.clone();
    original.accept_ack = None;
    let d = &echo.delimiters;
    if ![d.field, d.component, d.repetition, d.escape, d.subcomponent].contains(&b'.') {
        original.version = b"2.3.1";
    }
    for outcome in &outcomes {
        check_ack(data, &original, outcome);
    }

    let d = echo.delimiters;
    let _ = policy::check_segments(msh::trim_start(data), d.field);
    if let Some((id, authority)) = msh::patient_identifier(data, &d) {
        assert!(!id.is_empty());
        for f in [id, authority] {
            assert!(
                !f.iter().any(|&b| b == b'\r' || b == b'\n' || b == d.field || b == d.repetition || b == d.component),
                "PID-3 part contains a delimiter: {}",
                show(f)
            );
        }
    }
});
