//! One MLLP connection: read bytes, decode frames, hand each to the handler in order,
//! write its ACK. Enforces the idle and frame timeouts; stops between frames on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::codec::{self, Decoded, Decoder, FrameError};
use super::handler::{Handler, Reply};

/// Read buffer per connection; frames themselves are bounded by the decoder's limit.
const READ_BUF: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frame: usize,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
}

/// Why a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    PeerClosed,
    Shutdown,
    IdleTimeout,
    FrameTimeout,
    FrameTooLarge,
    Io,
}

/// Serves one connection until it closes, times out, or shutdown is requested.
pub async fn serve<S>(mut stream: S, handler: Arc<Handler>, limits: Limits, shutdown: CancellationToken) -> Closed
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut decoder = Decoder::new(limits.max_frame);
    let mut buf = vec![0u8; READ_BUF];
    let mut frame_started: Option<Instant> = None;
    loop {
        let deadline = match frame_started {
            Some(t) => t + limits.frame_timeout,
            None => Instant::now() + limits.idle_timeout,
        };
        let read = tokio::select! {
            // Shutdown stops a connection only between frames; a message being committed
            // is finished and acknowledged first (the handler call below is never cut short).
            _ = shutdown.cancelled(), if frame_started.is_none() => return Closed::Shutdown,
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
        let received = std::time::Instant::now();
        let mut input = &buf[..n];
        while !input.is_empty() {
            let (used, found) = decoder.decode(input);
            input = &input[used..];
            let reply = match found {
                Decoded::Incomplete => continue,
                Decoded::Frame(frame) => handler.frame(&frame, received).await,
                Decoded::Error(FrameError::BadEndBlock { content }) => handler.bad_end_block(&content, received),
                Decoded::Error(FrameError::TooLarge { head }) => {
                    let reply = handler.too_large(&head, received);
                    let _ = send(&mut stream, reply).await;
                    return Closed::FrameTooLarge;
                }
            };
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
    }
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, reply: Reply) -> std::io::Result<()> {
    let Some(ack) = reply.ack else { return Ok(()) };
    let mut wire = Vec::with_capacity(ack.len() + 3);
    codec::encode(&ack, &mut wire);
    stream.write_all(&wire).await?;
    stream.flush().await
}
