//! HL7 v2: the message header and error reporting used at ingest, and the full parser.
//!
//! - [`msh`], `error`: the header checks and HL7 error codes used at ingest.
//! - [`parser`]: [`parse`] a message into a zero-copy [`Message`] and navigate it.
//! - `escape`: escape sequences and text encodings (`Codec`).
//! - `charset`: MSH-18 character sets (`Charset`) and checking a message reads in one.
//! - `path`: `PID-3[2].4.1` style paths ([`Message::get`]).
//! - [`batch`]: split FHS/BHS batch files into messages.
//! - `field_names`: the v2 names of the common segments' fields, for people reading a message.
//! - [`structure`]: message structures and their segment groups (`group`).

pub mod batch;
pub(crate) mod charset;
pub(crate) mod error;
pub(crate) mod escape;
pub(crate) mod field_names;
pub mod msh;
pub mod parser;
pub(crate) mod path;
pub mod structure;

pub use charset::Charset;
pub use error::{ErrorCode, Hl7Error, Location};
pub use msh::{AckCondition, Delimiters, Header};
pub use parser::{parse, Component, Field, Message, Presence, Rep, Segment, SubComponent};
