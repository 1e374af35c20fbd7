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

/// System of the keys the gateway derives from a resource's business-key parts when the
/// resource has no identifier of its own (see docs/CONVERSION.md). The value is a name-based
/// UUID of the parts, so it says nothing about them; the identifier is written on the
/// resource, so any later message can find and update it.
pub const SOURCE_KEY_SYSTEM: &str = "urn:hl7v2-gateway:source-key";

/// Namespace of source keys: UUID v5 of the URL `urn:hl7v2-gateway:source-key` in the URL
/// namespace. Never change it: keys already on servers are derived from it.
const SOURCE_KEY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x3c4b_0a5e_9d61_5f2a_8b7e_41d2_6c90_e317);

impl Identity {
    /// The key of a `kind` resource from its business-key parts; `None` when a part is empty
    /// (a key with a missing part would join unrelated resources). Parts are separated by NUL,
    /// which occurs in none of them, so distinct parts never collide by concatenation.
    pub fn source_key(kind: &str, parts: &[&str]) -> Option<Identity> {
        if parts.iter().any(|p| p.trim().is_empty()) {
            return None;
        }
        let mut name = kind.to_string();
        for p in parts {
            name.push('\0');
            name.push_str(p.trim());
        }
        let value = uuid::Uuid::new_v5(&SOURCE_KEY_NAMESPACE, name.as_bytes()).to_string();
        Some(Identity { system: SOURCE_KEY_SYSTEM.into(), value })
    }

    /// `system|value`, the form a key part takes when another resource's key includes it.
    pub fn token(&self) -> String {
        format!("{}|{}", self.system, self.value)
    }
}

/// How a resource is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Write {
    /// The message carries the resource's full current state: create or replace it.
    #[default]
    Upsert,
    /// The message only refers to it: create it when the server has none, never change it
    /// (a lab result must not undo what an ADT set).
    CreateIfAbsent,
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
    /// Set by the converter from the message type (see `fhir::convert`).
    pub write: Write,
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
    /// Assigning authorities not in `[mapping.identifier_systems]` whose identifiers keyed a
    /// resource, with the system `default_identifier_system` gave them.
    pub default_systems: Vec<String>,
    /// Resource types with a resource that has no usable key (written under an id derived
    /// from the message, so a resend is harmless but another message makes another one).
    pub keyless: Vec<String>,
    /// The entries of `unmapped_codes`, to keep it free of repeats in O(1) per code.
    #[serde(skip)]
    unmapped_seen: HashSet<String>,
    /// The entries of `warnings`: the same field read twice (two maps use it) warns once.
    #[serde(skip)]
    warnings_seen: HashSet<String>,
    /// The segment or field being mapped (`3:PID`, `3:PID-7`), which locates warnings raised
    /// below the maps.
    #[serde(skip)]
    at: String,
    /// MSH-7's offset (seconds east of UTC), which offset-less times of the message take
    /// before the site zone. Kept here because every date map already gets the report.
    #[serde(skip)]
    pub(crate) message_offset: Option<i32>,
}

impl Report {
    /// Sets the location of the warnings that follow (`<segment index>:<segment ID>`, with
    /// `-<field>` when known).
    pub fn locate(&mut self, at: String) {
        self.at = at;
    }

    /// A warning at the current location.
    pub fn warn(&mut self, text: &str) {
        let w = if self.at.is_empty() { text.to_string() } else { format!("{}: {text}", self.at) };
        self.push_warning(w);
    }

    /// A warning with its location already in front (`3:PID-7: text`), unless already given.
    pub fn push_warning(&mut self, located: String) {
        if self.warnings_seen.insert(located.clone()) {
            self.warnings.push(located);
        }
    }

    pub fn unmapped(&mut self, system: &str, code: &str) {
        let entry = format!("{system}|{code}");
        if self.unmapped_seen.insert(entry.clone()) {
            self.unmapped_codes.push(entry);
        }
    }
}
