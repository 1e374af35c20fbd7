//! HL7 v2: the message header and error reporting used at ingest.

pub mod error;
pub mod msh;

pub use error::{ErrorCode, Hl7Error, Location};
pub use msh::{AckCondition, Delimiters, Header};
