//! One MLLP connection: read bytes, decode frames, hand each to the handler in order,
//! write its ACK. Enforces the idle and frame timeouts and the in-flight frame budget; stops
//! between frames on shutdown or when its slot is needed for a new connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::budget::{FrameBudget, Reservation};
use super::codec::{self, Decoded, Decoder, FrameError};
use super::handler::{Handler, Reply};
use super::slots::Slot;

/// Read buffer per connection; frames themselves are bounded by the decoder's limit.
const READ_BUF: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_frame: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) frame_timeout: Duration,
}

impl Limits {
    /// The limits a `[[listener]]` section sets.
    pub fn from_config(listener: &crate::config::Listener) -> Limits {
        Limits {
            max_frame: listener.max_frame_bytes.get(),
            idle_timeout: Duration::from_secs(listener.idle_timeout_secs),
            frame_timeout: Duration::from_secs(listener.frame_timeout_secs),
        }
    }
}

/// Why a connection ended.
#[derive(Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // `PeerClosed` says who closed; the names are in log lines.
pub(crate) enum Closed {
    PeerClosed,
    Shutdown,
    IdleTimeout,
    FrameTimeout,
    FrameTooLarge,
    /// Closed between frames to admit a new connection to a full listener.
    GaveWay,
    Io,
}

/// Serves one connection until it closes, times out, gives way to a newcomer, or shutdown is
/// requested. The idle timeout runs from the last complete frame (or the start): bytes outside
/// frames do not keep a connection open. Frame bytes are held only as far as `budget` covers.
pub(crate) async fn serve<S>(
    mut stream: S,
    handler: Arc<Handler>,
    limits: Limits,
    budget: Arc<FrameBudget>,
    slot: &Slot,
    shutdown: CancellationToken,
) -> Closed
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut decoder = Decoder::new(limits.max_frame);
    // The budget share of the decoder's buffer.
    let mut held = Reservation::new(budget);
    let mut buf = vec![0u8; READ_BUF];
    let mut frame_started: Option<Instant> = None;
    let mut last_frame = Instant::now();
    loop {
        let deadline = match frame_started {
            Some(t) => t + limits.frame_timeout,
            None => last_frame + limits.idle_timeout,
        };
        let read = tokio::select! {
            // Shutdown stops a connection only between frames; a message being committed
            // is finished and acknowledged first (the handler call below is never cut short).
            _ = shutdown.cancelled(), if frame_started.is_none() => return Closed::Shutdown,
            // Chosen to make room for a new connection: only ever between frames.
            _ = slot.closing(), if frame_started.is_none() => return Closed::GaveWay,
            r = tokio::time::timeout_at(deadline, stream.read(&mut buf)) => r,
        };
        let n = match read {
            Err(_) if frame_started.is_some() => {
                handler.metrics.frame_timeouts.inc();
                return Closed::FrameTimeout;
            }
            Err(_) => {
                handler.metrics.idle_timeouts.inc();
                return Closed::IdleTimeout;
            }
            Ok(Ok(0)) => return Closed::PeerClosed,
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return Closed::Io,
        };
        if !slot.begin() {
            // Chosen to make room just before these bytes arrived; nothing of them was acted on.
            return Closed::GaveWay;
        }
        let received = std::time::Instant::now();
        let mut input = &buf[..n];
        while !input.is_empty() {
            if let Some(capacity) = decoder.room_for(input) {
                // Wait for the budget to cover the larger buffer: meanwhile nothing is read and
                // the sender's TCP window closes. The frame timeout still runs.
                let frame_deadline = frame_started.unwrap_or_else(Instant::now) + limits.frame_timeout;
                tokio::select! {
                    biased;
                    covered = tokio::time::timeout_at(frame_deadline, held.cover(capacity)) => {
                        if covered.is_err() {
                            handler.metrics.frame_timeouts.inc();
                            return Closed::FrameTimeout;
                        }
                    }
                    // Nothing of this frame was acknowledged; the sender sends it again.
                    _ = shutdown.cancelled() => return Closed::Shutdown,
                }
                decoder.reserve(capacity);
            }
            let (used, found) = decoder.decode(input);
            input = &input[used..];
            // A finished frame's buffer leaves the decoder: its budget share goes with it and
            // is given back with it once the frame is answered (its sealed copy is gone by then).
            let reply = match found {
                Decoded::Incomplete => continue,
                Decoded::Frame(frame) => {
                    let _share = held.take();
                    handler.frame(&frame, received).await
                }
                Decoded::Error(FrameError::BadEndBlock { content }) => {
                    let _share = held.take();
                    handler.bad_end_block(&content, received)
                }
                Decoded::Error(FrameError::TooLarge { head }) => {
                    let share = held.take();
                    let reply = handler.too_large(&head, received);
                    drop((head, share));
                    let _ = send(&mut stream, reply).await;
                    return Closed::FrameTooLarge;
                }
            };
            last_frame = Instant::now();
            if send(&mut stream, reply).await.is_err() {
                return Closed::Io;
            }
        }
        handler.metrics.discarded_bytes.add(decoder.take_discarded());
        frame_started = match (decoder.in_frame(), frame_started) {
            (false, _) => None,
            (true, Some(t)) => Some(t),
            (true, None) => Some(Instant::now()),
        };
        if frame_started.is_none() {
            slot.rest(last_frame);
        }
    }
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, reply: Reply) -> std::io::Result<()> {
    let content: &[u8] = match (&reply.ack, &reply.batch) {
        (Some(ack), _) => ack,
        (None, Some(batch)) => batch,
        (None, None) => return Ok(()),
    };
    let mut wire = Vec::with_capacity(content.len() + 3);
    codec::encode(content, &mut wire);
    stream.write_all(&wire).await?;
    stream.flush().await
}
