//! What one message's conversion needs from earlier messages. An ADT replaces the whole
//! Patient, so the links a merge (A40) made between two records must be written again with
//! every later update of either record. The convert stage keeps them in the journal database
//! (what the server holds, and under which id, is the forwarder's business: `forward::ids`); `gateway convert` and the tests convert without a memory ([`Forgetful`]).

use super::model::Identity;

/// How a record relates to the other record of a merge (`Patient.link.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// The surviving record replaces the other.
    Replaces,
    /// The merged-away record is replaced by the other.
    ReplacedBy,
}

impl Relation {
    pub fn code(self) -> &'static str {
        match self {
            Relation::Replaces => "replaces",
            Relation::ReplacedBy => "replaced-by",
        }
    }

    pub fn from_code(code: &str) -> Option<Relation> {
        match code {
            "replaces" => Some(Relation::Replaces),
            "replaced-by" => Some(Relation::ReplacedBy),
            _ => None,
        }
    }
}

/// A link from one patient record to another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PatientLink {
    pub other: Identity,
    pub relation: Relation,
}

/// What earlier messages left behind.
pub trait Memory {
    /// The links earlier merges made from the record keyed `patient`.
    fn links(&self, patient: &Identity) -> Vec<PatientLink>;
}

/// No memory: every message on its own.
pub struct Forgetful;

impl Memory for Forgetful {
    fn links(&self, _: &Identity) -> Vec<PatientLink> {
        Vec::new()
    }
}
