//! HL7 v2 edge gateway.
//!
//! # Layout
//! The data path, in the order a message travels it:
//! - [`mllp`]: listeners (TCP or TLS), MLLP framing, the per-connection loop and ACKs.
//! - [`hl7`]: the message header, HL7 error reporting, the full v2 parser and segment groups.
//! - [`store`]: the SQLite journal; a group-commit writer that makes a message durable
//!   before its ACK; encryption at rest; checkpoints and purging.
//! - [`pipeline`]: after the ACK, the convert stage turns journal rows into sealed FHIR
//!   bundles in the outbox ([`fhir`] holds the HL7 v2 → FHIR maps); failures go to dead
//!   letters.
//! - [`forward`]: delivers the outbox to the cloud FHIR server (or the local sink) per
//!   patient lane, with retries, auth and a circuit breaker.
//! - [`sink`]: the embedded default target, a stand-in FHIR server on its own SQLite file.
//! - [`ops`]: the admin endpoint (health, metrics) and logging.
//! - [`board`]: the appliance's status LED and reset button (through `bsp`).
//! - [`provision`]: field provisioning by USB stick (signed, scoped, versioned) and the
//!   WireGuard tunnel it sets up.
//! - [`update`]: signed A/B updates of the appliance's root filesystem (docs/UPDATES.md).
//!
//! Any layer uses [`metrics`] (counters and the stages' liveness), [`clock`],
//! `log_limit` (repeated error lines to one per minute with a count) and [`stage`] (the
//! handle that starts and stops a background stage's thread). Which module may use
//! which is docs/ARCHITECTURE.md's arrow rule, checked by a test.
//!
//! [`daemon`] wires them together for `gateway run`; [`config`] reads the TOML file;
//! [`cli`] and [`deadletter`] are the operators' commands; [`loadgen`] and [`mod@bench`]
//! measure the ingest path.

#[cfg(test)]
mod arrows;
pub mod bench;
pub mod board;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod deadletter;
pub mod fhir;
pub(crate) mod files;
pub mod forward;
pub mod hl7;
pub mod loadgen;
pub(crate) mod log_limit;
pub mod metrics;
pub mod mllp;
pub mod ops;
pub mod pipeline;
pub mod provision;
pub mod sink;
pub mod stage;
pub mod store;
pub mod update;
