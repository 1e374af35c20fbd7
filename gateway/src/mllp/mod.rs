//! MLLP ingest: framing, listeners (plain TCP or TLS), per-connection loop, ACKs.

pub mod ack;
pub mod batch;
pub mod budget;
pub mod codec;
pub mod connection;
pub mod handler;
pub mod policy;
pub mod server;
pub mod slots;
pub mod tls;
