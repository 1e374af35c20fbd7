//! Durable storage: the SQLite journal, its group-commit writer, encryption at rest and
//! background upkeep.
//! It owns the tables and the states their rows move through ([`state`]); the other stages
//! call its typed methods rather than writing SQL.

pub mod audit;
pub mod budget;
pub mod conversion;
pub mod crypto;
pub mod db;
pub mod dead_letters;
pub mod delivery;
pub mod disk;
pub mod doorbell;
pub mod gate;
pub mod journal;
pub mod key_guard;
pub mod maintenance;
pub mod memory;
pub mod settings;
pub mod state;
pub mod writer;

/// Wall-clock time as the journal stores it: Unix milliseconds.
pub use crate::clock::now_ms;

pub use crypto::Keys;
pub use db::Synchronous;
pub use doorbell::Doorbell;
pub use gate::WriteGate;
pub use writer::{AppendError, Appended, Appender, Health, NewMessage, Writer, WriterOptions};
