//! Durable storage: the SQLite journal, its group-commit writer, encryption at rest and
//! background upkeep.
//! It owns the tables and the states their rows move through ([`state`]); the other stages
//! call its typed methods rather than writing SQL.

pub(crate) mod audit;
pub(crate) mod budget;
pub(crate) mod conversion;
pub(crate) mod crypto;
pub mod db;
pub(crate) mod dead_letters;
pub mod delivery;
pub(crate) mod disk;
pub(crate) mod doorbell;
pub(crate) mod gate;
pub(crate) mod ids;
pub(crate) mod journal;
pub(crate) mod key_guard;
pub(crate) mod maintenance;
pub(crate) mod memory;
pub(crate) mod settings;
pub mod state;
pub(crate) mod status;
pub(crate) mod writer;

/// Wall-clock time as the journal stores it: Unix milliseconds.
pub use crate::clock::now_ms;

pub use crypto::Keys;
pub use db::Synchronous;
pub(crate) use doorbell::Doorbell;
pub(crate) use gate::WriteGate;
pub use writer::{AppendError, Appended, Appender, Health, NewMessage, Writer, WriterOptions};
