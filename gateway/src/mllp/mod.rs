//! MLLP ingest: framing, listeners (plain TCP or TLS), per-connection loop, ACKs.

pub mod ack;
pub(crate) mod batch;
pub(crate) mod budget;
pub mod codec;
pub(crate) mod connection;
pub(crate) mod handler;
pub mod policy;
pub(crate) mod server;
pub(crate) mod slots;
pub(crate) mod tls;
