//! Durable storage: the SQLite journal, its group-commit writer, encryption at rest and
//! background upkeep.

pub mod audit;
pub mod budget;
pub mod crypto;
pub mod db;
pub mod disk;
pub mod doorbell;
pub mod gate;
pub mod key_guard;
pub mod maintenance;
pub mod settings;
pub mod writer;

pub use crypto::Keys;
pub use db::Synchronous;
pub use doorbell::Doorbell;
pub use gate::WriteGate;
pub use writer::{AppendError, Appended, Appender, Health, NewMessage, Writer, WriterOptions};
