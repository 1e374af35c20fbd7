//! One frame in, one ACK out: validate the header, seal and journal the message, and say
//! AA/CA only once the journal has it durably.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::ack::{self, Ack, Outcome};
use super::policy::{self, Policy};
use crate::hl7::msh::{self, Echo, Header};
use crate::hl7::structure::Structure;
use crate::hl7::{batch, Charset, ErrorCode, Hl7Error, Location};
use crate::log_limit::{self, Repeats};
use crate::metrics::{Metrics, NakReason};
use crate::store::{AppendError, Appended, Appender, Keys, NewMessage};

/// Refusals for a full or failing journal: one line a minute with a count, not one per message.
static STORAGE_REFUSALS: Repeats = Repeats::new(log_limit::EVERY);
/// MSH-15/16 values outside table 0155, read as original mode: one line a minute.
static UNKNOWN_ACK: Repeats = Repeats::new(log_limit::EVERY);

/// Shared by every connection of one listener.
pub(crate) struct Handler {
    pub(crate) listener: Arc<str>,
    pub(crate) policy: Policy,
    pub(crate) keys: Arc<Keys>,
    pub(crate) appender: Appender,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) ack_ids: Arc<AckIds>,
}

/// A message checked and ready for the journal.
pub(super) struct Prepared<'f> {
    pub header: Header<'f>,
    /// The message, and its dead-letter reason when it is stored only to be kept.
    pub entry: (NewMessage, Option<String>),
    pub unsupported: bool,
}

/// A message refused before the journal: what its NAK echoes and says.
pub(super) struct Refusal<'f> {
    pub echo: Box<Echo<'f>>,
    pub error: Hl7Error,
    pub reason: NakReason,
}

/// What to do after a frame.
pub(crate) struct Reply {
    /// The ACK to send, if the sender asked for one.
    pub(crate) ack: Option<Ack>,
    /// The answer to a batch frame: a batch of ACKs.
    pub(crate) batch: Option<Vec<u8>>,
}

impl Handler {
    /// Handles a complete frame.
    pub(crate) async fn frame(&self, frame: &[u8], started: Instant) -> Reply {
        self.metrics.frames_received.inc();
        self.metrics.bytes_received.add(frame.len() as u64);
        if super::batch::is_batch(frame) {
            return super::batch::handle(self, frame, started).await;
        }
        let prepared = match self.prepare(frame) {
            Ok(p) => p,
            Err(r) => return self.refuse(&r.echo, r.error, r.reason, started),
        };
        let echo = &prepared.header.echo;
        let (control_id, message_type) = (prepared.entry.0.control_id.clone(), prepared.entry.0.message_type.clone());
        let appended = match prepared.entry {
            (message, Some(reason)) => self.appender.append_dead(message, reason).await,
            (message, None) => self.appender.append(message).await,
        };
        if prepared.unsupported && matches!(appended, Ok(Appended::Stored(_))) {
            self.count_unsupported(&message_type);
        }
        match appended {
            Ok(Appended::Stored(seq)) => {
                tracing::debug!(listener = %self.listener, %control_id, %message_type, seq, "stored");
                self.answer(echo, Outcome::Accepted, started)
            }
            Ok(Appended::Duplicate(seq)) => {
                self.metrics.duplicates.inc();
                tracing::info!(listener = %self.listener, %control_id, %message_type, seq, "duplicate acknowledged, not stored again");
                self.answer(echo, Outcome::Accepted, started)
            }
            Err(err) => {
                let (outcome, reason) = self.storage_refusal(&err, &control_id);
                self.nak(echo, outcome, reason, started)
            }
        }
    }

    /// Checks one message and makes it ready for the journal.
    pub(super) fn prepare<'f>(&'f self, raw: &'f [u8]) -> Result<Prepared<'f>, Refusal<'f>> {
        let mut header = match msh::parse(raw) {
            Ok(h) => h,
            Err(e) => return Err(Refusal { echo: e.echo, error: e.error, reason: NakReason::Unparseable }),
        };
        self.policy.fill_in(&mut header);
        if let Err((error, reason)) = self.check(raw, &header) {
            return Err(Refusal { echo: Box::new(header.echo), error, reason });
        }
        let unsupported = self.unsupported(&header);
        if let Some(error) = unsupported.clone().filter(|_| !self.policy.store_unsupported) {
            return Err(Refusal { echo: Box::new(header.echo), error, reason: NakReason::Unsupported });
        }
        let echo = &header.echo;
        let message_type = header.message_type();
        let dead_letter = unsupported.as_ref().map(|e| {
            crate::store::dead_letters::unsupported_reason(crate::metrics::by_type::label(&message_type), e.code.code())
        });
        let lane = msh::patient_identifier(raw, &echo.delimiters).map(|(id, auth)| self.keys.lane(id, auth));
        let message = NewMessage {
            listener: self.listener.clone(),
            sender: format!(
                "{}|{}",
                String::from_utf8_lossy(echo.sending_application),
                String::from_utf8_lossy(echo.sending_facility)
            ),
            control_id: String::from_utf8_lossy(echo.control_id).into_owned(),
            message_type,
            lane,
            payload_hash: self.keys.payload_hash(raw),
            sealed: self.keys.seal(raw),
        };
        Ok(Prepared { unsupported: unsupported.is_some(), entry: (message, dead_letter), header })
    }

    /// Counts a stored unsupported message; the first of its type is logged.
    pub(super) fn count_unsupported(&self, message_type: &str) {
        let label = crate::metrics::by_type::label(message_type);
        if self.metrics.unsupported.count(label) {
            tracing::warn!(listener = %self.listener, message_type = %label, "message type the converter does not handle: stored as a dead letter (store_unsupported); further ones are only counted");
        }
    }

    /// The answer to a message the journal did not take.
    pub(super) fn storage_refusal(&self, err: &AppendError, control_id: &str) -> (Outcome, NakReason) {
        match err {
            AppendError::StorageFull => {
                if let Some(repeated) = STORAGE_REFUSALS.hit("full") {
                    tracing::warn!(listener = %self.listener, %control_id, "storage full: message refused{repeated}");
                }
                let e = Hl7Error::new(ErrorCode::ApplicationInternalError, Location::NONE, "Storage full");
                (Outcome::Rejected(e), NakReason::StorageFull)
            }
            err => {
                if let Some(repeated) = STORAGE_REFUSALS.hit("error") {
                    tracing::error!(listener = %self.listener, %control_id, error = %err, "message not stored{repeated}");
                }
                let e = Hl7Error::new(ErrorCode::ApplicationInternalError, Location::NONE, "Storage error");
                (Outcome::Errored(e), NakReason::StorageError)
            }
        }
    }

    /// The listener's policy, then the frame as a whole: one message, valid segment IDs,
    /// bytes that read in the declared character set.
    fn check(&self, frame: &[u8], header: &Header) -> Result<(), (Hl7Error, NakReason)> {
        let echo = &header.echo;
        if let Err(e) = self.policy.check(header) {
            let reason = if e.code.is_rejection() { NakReason::Unsupported } else { NakReason::Unparseable };
            return Err((e, reason));
        }
        let body = msh::trim_start(frame);
        policy::check_segments(body, echo.delimiters.field).map_err(|e| (e, NakReason::Unparseable))?;
        let messages = batch::split(body).message_count();
        if messages > 1 {
            let text = format!("frame holds {messages} messages without a batch header (FHS/BHS)");
            let e = Hl7Error::with_text(ErrorCode::SegmentSequenceError, Location::NONE, text);
            // Refused, not errored: the frame is not something to resend as is.
            return Err((e, NakReason::NoBatchHeader));
        }
        Charset::from_msh18(header.charset_field, echo.delimiters.repetition)
            .and_then(|charset| charset.encoding(body, &echo.delimiters))
            .map_err(|e| (e, NakReason::Unparseable))?;
        if !header.unknown_ack_fields.is_empty() {
            if let Some(repeated) = UNKNOWN_ACK.hit(&self.listener) {
                tracing::warn!(listener = %self.listener, fields = ?header.unknown_ack_fields, "MSH-15/MSH-16 not in table 0155: answered in original acknowledgment mode{repeated}");
            }
        }
        Ok(())
    }

    /// Why the converter could not convert this message (its type and trigger have no
    /// structure the converter handles); `None` when it can.
    fn unsupported(&self, header: &Header) -> Option<Hl7Error> {
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        let (code, trigger) = (text(header.message_code), text(header.echo.trigger_event));
        if Structure::of(&code, &trigger, &text(header.message_structure)).is_some() {
            return None;
        }
        let e = Structure::unsupported(&code);
        let label = crate::metrics::by_type::label(&header.message_type()).to_string();
        Some(Hl7Error::with_text(e.code, e.location, format!("{}: {label} (no converter)", e.text)))
    }

    /// NAK for a frame over the size limit; `head` is its beginning, for the MSH.
    pub(crate) fn too_large(&self, head: &[u8], started: Instant) -> Reply {
        self.metrics.frames_received.inc();
        let echo = echo_of(head);
        let e =
            Hl7Error::new(ErrorCode::ApplicationInternalError, Location::NONE, "Message exceeds the frame size limit");
        self.nak(&echo, Outcome::Rejected(e), NakReason::FrameTooLarge, started)
    }

    /// NAK for a frame whose end block was not `<FS><CR>`.
    pub(crate) fn bad_end_block(&self, content: &[u8], started: Instant) -> Reply {
        self.metrics.frames_received.inc();
        let echo = echo_of(content);
        let e = Hl7Error::new(ErrorCode::SegmentSequenceError, Location::NONE, "MLLP end block not followed by CR");
        self.nak(&echo, Outcome::Errored(e), NakReason::BadEndBlock, started)
    }

    fn refuse(&self, echo: &Echo, error: Hl7Error, reason: NakReason, started: Instant) -> Reply {
        let control_id = String::from_utf8_lossy(echo.control_id);
        // The sender (MSH-3/MSH-4) and the code's table 0357 text: what an interface analyst
        // looks up first.
        let sender = format!(
            "{}^{}",
            String::from_utf8_lossy(echo.sending_application),
            String::from_utf8_lossy(echo.sending_facility)
        );
        tracing::info!(listener = %self.listener, %sender, %control_id, code = error.code.code(), code_text = error.code.text(), location = %error.location, "message refused");
        self.nak(echo, refusal_outcome(error, reason), reason, started)
    }

    fn nak(&self, echo: &Echo, outcome: Outcome, reason: NakReason, started: Instant) -> Reply {
        self.metrics.nak(reason);
        self.answer(echo, outcome, started)
    }

    fn answer(&self, echo: &Echo, outcome: Outcome, started: Instant) -> Reply {
        if !ack::ack_wanted(echo.accept_ack, &outcome) {
            return Reply { ack: None, batch: None };
        }
        let id = self.ack_ids.next();
        let now = jiff::Timestamp::now().strftime("%Y%m%d%H%M%S+0000").to_string();
        let built = ack::build(echo, &outcome, &id, &now);
        self.metrics.ack_on(&self.listener, outcome.code(echo.accept_ack.is_some()));
        self.metrics.ack_latency.observe(started.elapsed().as_secs_f64());
        Reply { ack: Some(built), batch: None }
    }
}

/// AR/CR for a rejection code or a frame of several messages (not to be sent again as is),
/// AE/CE otherwise.
pub(super) fn refusal_outcome(error: Hl7Error, reason: NakReason) -> Outcome {
    if reason == NakReason::NoBatchHeader {
        Outcome::Rejected(error)
    } else {
        Outcome::from_error(error)
    }
}

/// Whatever MSH fields can be read from a frame, for its NAK.
fn echo_of(frame: &[u8]) -> Echo<'_> {
    msh::parse(frame).map(|h| h.echo).unwrap_or_else(|e| *e.echo)
}

/// Control IDs for the gateway's own ACKs: unique per process start and counter.
pub(crate) struct AckIds {
    prefix: String,
    next: AtomicU64,
}

impl Default for AckIds {
    fn default() -> Self {
        let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        AckIds { prefix: format!("G{:x}", start.as_secs()), next: AtomicU64::new(1) }
    }
}

impl AckIds {
    pub(crate) fn next(&self) -> String {
        format!("{}{}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed))
    }
}
