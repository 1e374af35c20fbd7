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

fn cap(f: &[u8]) -> &[u8] {
    &f[..f.len().min(MAX_ECHO)]
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

    let h = match msh::parse(a) {
        Ok(h) => h,
        Err(e) => panic!("the gateway's own ACK does not parse ({}): {}", e.error, show(a)),
    };
    let d = &echo.delimiters;
    assert_eq!(h.delimiters, *d, "ACK delimiters");
    assert_eq!(h.sending_application, cap(echo.receiving_application), "ACK MSH-3");
    assert_eq!(h.sending_facility, cap(echo.receiving_facility), "ACK MSH-4");
    assert_eq!(h.receiving_application, cap(echo.sending_application), "ACK MSH-5");
    assert_eq!(h.receiving_facility, cap(echo.sending_facility), "ACK MSH-6");
    assert_eq!(h.message_code, b"ACK");
    if !echo.trigger_event.is_empty() {
        assert_eq!(h.trigger_event, cap(echo.trigger_event), "ACK MSH-9.2");
    }
    assert_eq!(h.control_id, ACK_ID.as_bytes(), "ACK MSH-10");
    let pid: &[u8] = if echo.processing_id.is_empty() { b"P" } else { cap(echo.processing_id) };
    assert_eq!(h.processing_id, pid, "ACK MSH-11");
    let ver: &[u8] = if echo.version.is_empty() { b"2.5" } else { cap(echo.version) };
    assert_eq!(h.version, ver, "ACK MSH-12");
    let ne = enhanced.then_some(AckCondition::Never);
    assert_eq!((h.accept_ack, h.application_ack), (ne, ne), "an ACK is never acknowledged");
    assert_eq!(h.charset, cap(echo.charset), "ACK MSH-18");

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
        assert_eq!(msa.get(2).copied(), Some(cap(id)), "MSA-2 is not the echoed control ID: {}", show(a));
    }
    if outcome != &Outcome::Accepted {
        assert!(segs[2].starts_with(b"ERR"));
    }
}

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| Policy::new(&Accept::default()))
}

fuzz_target!(|data: &[u8]| {
    let (echo, error) = match msh::parse(data) {
        Ok(h) => {
            assert!(!h.control_id.is_empty() && !h.message_code.is_empty());
            assert!(!h.processing_id.is_empty() && !h.version.is_empty());
            assert_eq!(h.enhanced_mode(), h.accept_ack.is_some());
            let _ = h.message_type();
            let _ = policy().check(&h);
            (h.echo(), None)
        }
        Err(e) => (e.echo, Some(e.error)),
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
    // The same fields echoed in original mode and in a v2.3 message (ERR-1 style).
    let mut original = echo.clone();
    original.accept_ack = None;
    original.version = b"2.3.1";
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
