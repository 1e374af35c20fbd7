//! Durable storage: the SQLite journal, its group-commit writer, encryption at rest and
//! background upkeep.

pub mod audit;
pub mod budget;
pub mod crypto;
pub mod db;
pub mod delivery;
pub mod disk;
pub mod doorbell;
pub mod gate;
pub mod key_guard;
pub mod maintenance;
pub mod settings;
pub mod writer;

/// Wall-clock time as the journal stores it: Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub use crypto::Keys;
pub use db::Synchronous;
pub use doorbell::Doorbell;
pub use gate::WriteGate;
pub use writer::{AppendError, Appended, Appender, Health, NewMessage, Writer, WriterOptions};
