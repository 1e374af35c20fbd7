//! The stages after the ACK: each reads the store, does its work, and records the result in
//! the same transaction that advances the message's state.

pub mod convert;
pub(crate) mod memory;
