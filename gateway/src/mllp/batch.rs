//! An FHS/BHS batch in one frame: every message is checked as if it came alone, all are
//! stored in one transaction or none is, and the answer is one batch of ACKs (HL7 v2.5
//! chapter 2, "Batch protocol"): `[FHS] BHS {ACK} BTS [FTS]`, BHS-12 naming the sender's
//! batch, one ACK per message that asks for one (so in enhanced mode with `ER`, an empty
//! batch means every message was taken).

use std::time::Instant;

use super::ack::{self, Outcome};
use super::handler::{refusal_outcome, Handler, Reply};
use crate::hl7::msh::{self, Echo};
use crate::hl7::{batch, Delimiters, ErrorCode, Hl7Error, Location};
use crate::store::Appended;

/// Whether a frame is a batch: it starts with FHS or BHS.
pub fn is_batch(frame: &[u8]) -> bool {
    let body = msh::trim_start(frame);
    matches!(body, [b'F' | b'B', b'H', b'S', sep, ..] if !sep.is_ascii_alphanumeric())
}

/// Checks, stores and answers a batch frame.
pub async fn handle(h: &Handler, frame: &[u8], started: Instant) -> Reply {
    let split = batch::split(frame);
    let header_segment = split.batches.first().and_then(|b| b.header);
    let d = delimiters(split.file_header.or(header_segment));
    let prepared: Vec<_> = split.messages.iter().map(|raw| h.prepare(raw)).collect();
    let refused = prepared.iter().filter(|p| p.is_err()).count();
    let mut answers: Vec<(Echo, Outcome)> = Vec::with_capacity(prepared.len());
    if refused > 0 {
        let text = format!("Not stored: {refused} message(s) of the batch were refused");
        for p in prepared {
            let answer = match p {
                Err(r) => {
                    h.metrics.nak(r.reason);
                    (*r.echo, refusal_outcome(r.error, r.reason))
                }
                Ok(p) => {
                    let e = Hl7Error::with_text(ErrorCode::ApplicationInternalError, Location::NONE, text.clone());
                    (p.header.echo, Outcome::Rejected(e))
                }
            };
            answers.push(answer);
        }
        tracing::info!(listener = %h.listener, messages = answers.len(), refused, "batch refused: nothing stored");
    } else {
        let ok: Vec<_> = prepared.into_iter().flatten().collect();
        let types: Vec<(bool, String)> = ok.iter().map(|p| (p.unsupported, p.entry.0.message_type.clone())).collect();
        let entries = ok.iter().map(|p| p.entry.clone()).collect();
        match h.appender.append_all(entries).await {
            Ok(appended) => {
                for ((unsupported, message_type), a) in types.iter().zip(&appended) {
                    match a {
                        Appended::Stored(_) if *unsupported => h.count_unsupported(message_type),
                        Appended::Duplicate(_) => h.metrics.duplicates.inc(),
                        Appended::Stored(_) => {}
                    }
                }
                tracing::debug!(listener = %h.listener, messages = appended.len(), "batch stored");
                answers.extend(ok.into_iter().map(|p| (p.header.echo, Outcome::Accepted)));
            }
            Err(err) => {
                let (outcome, reason) = h.storage_refusal(&err, "batch");
                for p in ok {
                    h.metrics.nak(reason);
                    answers.push((p.header.echo, outcome.clone()));
                }
            }
        }
    }
    let ack = build(h, split.file_header, header_segment, &d, &answers);
    h.metrics.ack_latency.observe(started.elapsed().as_secs_f64());
    Reply { ack: None, batch: Some(ack) }
}

/// The batch of ACKs.
fn build(
    h: &Handler,
    file: Option<&[u8]>,
    header: Option<&[u8]>,
    d: &Delimiters,
    answers: &[(Echo, Outcome)],
) -> Vec<u8> {
    let now = jiff::Timestamp::now().strftime("%Y%m%d%H%M%S+0000").to_string();
    let mut out = Vec::new();
    if file.is_some() {
        out.extend_from_slice(&ack::batch_header(b"FHS", file, d, &h.ack_ids.next(), &now));
    }
    out.extend_from_slice(&ack::batch_header(b"BHS", header, d, &h.ack_ids.next(), &now));
    let mut count = 0;
    for (echo, outcome) in answers {
        if !ack::ack_wanted(echo.accept_ack, outcome) {
            continue;
        }
        let built = ack::build(echo, outcome, &h.ack_ids.next(), &now);
        h.metrics.ack_on(&h.listener, outcome.code(echo.accept_ack.is_some()));
        out.extend_from_slice(&built);
        if !built.ends_with(b"\r") {
            out.push(b'\r');
        }
        count += 1;
    }
    out.extend_from_slice(&ack::batch_trailer(b"BTS", count, d));
    if file.is_some() {
        out.extend_from_slice(&ack::batch_trailer(b"FTS", 1, d));
    }
    out
}

/// The delimiters a batch header declares (the defaults when it is unusable).
fn delimiters(segment: Option<&[u8]>) -> Delimiters {
    let Some(seg) = segment.filter(|s| s.len() >= 8) else { return Delimiters::default() };
    let field = seg[3];
    let enc: Vec<u8> = seg[4..].iter().copied().take_while(|&b| b != field).collect();
    let distinct = |all: &[u8]| all.iter().enumerate().all(|(i, b)| !all[..i].contains(b));
    if !(enc.len() == 4 || enc.len() == 5) || !distinct(&[&[field][..], &enc].concat()) {
        return Delimiters::default();
    }
    Delimiters {
        field,
        component: enc[0],
        repetition: enc[1],
        escape: enc[2],
        subcomponent: enc[3],
        truncation: enc.get(4).copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_frames_are_recognised() {
        assert!(is_batch(b"FHS|^~\\&|A\rBHS|^~\\&\rMSH|^~\\&\r"));
        assert!(is_batch(b"\r\nBHS|^~\\&|A\r"));
        assert!(!is_batch(b"MSH|^~\\&|A\r"));
        assert!(!is_batch(b"BHSX|"));
    }

    #[test]
    fn batch_header_answers_the_senders() {
        let d = Delimiters::default();
        let bhs = ack::batch_header(b"BHS", Some(b"BHS|^~\\&|LAB|HOSP|GW|CLOUD|20260101||||B42"), &d, "G1", "20260102");
        assert_eq!(&bhs[..], b"BHS|^~\\&|GW|CLOUD|LAB|HOSP|20260102||||G1|B42\r");
        assert_eq!(&ack::batch_trailer(b"BTS", 3, &d)[..], b"BTS|3\r");
        assert_eq!(delimiters(Some(b"BHS#*@!%#A")).field, b'#');
    }
}
