//! One frame in, one ACK out: validate the header, seal and journal the message, and say
//! AA/CA only once the journal has it durably.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::ack::{self, Ack, Outcome};
use super::policy::{self, Policy};
use crate::hl7::msh::{self, Echo};
use crate::hl7::{ErrorCode, Hl7Error, Location};
use crate::log_limit::{self, Repeats};
use crate::metrics::{Metrics, NakReason};
use crate::store::{AppendError, Appended, Appender, Keys, NewMessage};

/// Refusals for a full or failing journal: one line a minute with a count, not one per message.
static STORAGE_REFUSALS: Repeats = Repeats::new(log_limit::EVERY);

/// Shared by every connection of one listener.
pub(crate) struct Handler {
    pub(crate) listener: Arc<str>,
    pub(crate) policy: Policy,
    pub(crate) keys: Arc<Keys>,
    pub(crate) appender: Appender,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) ack_ids: Arc<AckIds>,
}

/// What to do after a frame.
pub(crate) struct Reply {
    /// The ACK to send, if the sender asked for one.
    pub(crate) ack: Option<Ack>,
}

impl Handler {
    /// Handles a complete frame.
    pub(crate) async fn frame(&self, frame: &[u8], started: Instant) -> Reply {
        self.metrics.frames_received.inc();
        self.metrics.bytes_received.add(frame.len() as u64);
        let header = match msh::parse(frame) {
            Ok(h) => h,
            Err(e) => return self.refuse(&e.echo, e.error, NakReason::Unparseable, started),
        };
        let echo = &header.echo;
        if let Err(e) = self.policy.check(&header) {
            let reason = if e.code.is_rejection() { NakReason::Unsupported } else { NakReason::Unparseable };
            return self.refuse(echo, e, reason, started);
        }
        if let Err(e) = policy::check_segments(msh::trim_start(frame), echo.delimiters.field) {
            return self.refuse(echo, e, NakReason::Unparseable, started);
        }
        let control_id = String::from_utf8_lossy(echo.control_id).into_owned();
        let message_type = header.message_type();
        let lane = msh::patient_identifier(frame, &echo.delimiters).map(|(id, auth)| self.keys.lane(id, auth));
        let message = NewMessage {
            listener: self.listener.clone(),
            sender: format!(
                "{}|{}",
                String::from_utf8_lossy(echo.sending_application),
                String::from_utf8_lossy(echo.sending_facility)
            ),
            control_id,
            message_type,
            lane,
            payload_hash: self.keys.payload_hash(frame),
            sealed: self.keys.seal(frame),
        };
        let (control_id, message_type) = (message.control_id.clone(), message.message_type.clone());
        match self.appender.append(message).await {
            Ok(Appended::Stored(seq)) => {
                tracing::debug!(listener = %self.listener, %control_id, %message_type, seq, "stored");
                self.answer(echo, Outcome::Accepted, started)
            }
            Ok(Appended::Duplicate(seq)) => {
                self.metrics.duplicates.inc();
                tracing::info!(listener = %self.listener, %control_id, %message_type, seq, "duplicate acknowledged, not stored again");
                self.answer(echo, Outcome::Accepted, started)
            }
            Err(AppendError::StorageFull) => {
                if let Some(repeated) = STORAGE_REFUSALS.hit("full") {
                    tracing::warn!(listener = %self.listener, %control_id, "storage full: message refused{repeated}");
                }
                let e = Hl7Error::new(ErrorCode::ApplicationInternalError, Location::NONE, "Storage full");
                self.nak(echo, Outcome::Rejected(e), NakReason::StorageFull, started)
            }
            Err(err) => {
                if let Some(repeated) = STORAGE_REFUSALS.hit("error") {
                    tracing::error!(listener = %self.listener, %control_id, error = %err, "message not stored{repeated}");
                }
                let e = Hl7Error::new(ErrorCode::ApplicationInternalError, Location::NONE, "Storage error");
                self.nak(echo, Outcome::Errored(e), NakReason::StorageError, started)
            }
        }
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
        tracing::info!(listener = %self.listener, %control_id, code = error.code.code(), location = %error.location, "message refused");
        self.nak(echo, Outcome::from_error(error), reason, started)
    }

    fn nak(&self, echo: &Echo, outcome: Outcome, reason: NakReason, started: Instant) -> Reply {
        self.metrics.nak(reason);
        self.answer(echo, outcome, started)
    }

    fn answer(&self, echo: &Echo, outcome: Outcome, started: Instant) -> Reply {
        if !ack::ack_wanted(echo.accept_ack, &outcome) {
            return Reply { ack: None };
        }
        let id = self.ack_ids.next();
        let now = jiff::Timestamp::now().strftime("%Y%m%d%H%M%S+0000").to_string();
        let built = ack::build(echo, &outcome, &id, &now);
        self.metrics.ack(outcome.code(echo.accept_ack.is_some()));
        self.metrics.ack_latency.observe(started.elapsed().as_secs_f64());
        Reply { ack: Some(built) }
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
