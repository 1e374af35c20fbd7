//! What the converter produces before bundling: resources with a local key (for references
//! between them) and, where the source has one, a business identifier (for idempotent upserts).

use std::collections::HashSet;

use serde_json::{json, Value};

use super::json::Obj;

/// A business identifier: the conditional-update key of a resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    pub system: String,
    pub value: String,
}

/// One converted resource.
#[derive(Debug, Clone)]
pub struct Resource {
    /// `Patient`, `Observation`, …
    pub kind: &'static str,
    /// Unique within one message's conversion (e.g. `Observation/obx-3`); references between
    /// resources use it until the bundle builder rewrites them.
    pub key: String,
    /// The identifier to upsert on; `None` gets a deterministic id derived from the message.
    pub identity: Option<Identity>,
    /// The resource without `resourceType` and `id`.
    pub body: Obj,
}

/// Prefix of references between resources of one conversion, rewritten by the bundle builder.
pub const LOCAL_REF: &str = "local:";

/// A reference to another resource of the same conversion, by its key.
pub fn reference(key: &str) -> Value {
    json!({ "reference": format!("{LOCAL_REF}{key}") })
}

/// What the conversion saw but did not map; printed by `gateway convert` (the daemon does not
/// keep it yet). Holds segment IDs, code systems and codes, never patient data.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// The message structure used (e.g. `ADT_A01`).
    pub structure: String,
    /// Segments no map consumed, as `index:ID` (0-based segment index).
    pub unconsumed: Vec<String>,
    /// Codes without a standard mapping, as `system|code`; kept as the original coding.
    pub unmapped_codes: Vec<String>,
    /// Anything else worth an integration engineer's attention (PHI-free).
    pub warnings: Vec<String>,
    /// The entries of `unmapped_codes`, to keep it free of repeats in O(1) per code.
    #[serde(skip)]
    unmapped_seen: HashSet<String>,
}

impl Report {
    pub fn unmapped(&mut self, system: &str, code: &str) {
        let entry = format!("{system}|{code}");
        if self.unmapped_seen.insert(entry.clone()) {
            self.unmapped_codes.push(entry);
        }
    }
}
