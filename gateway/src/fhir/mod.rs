//! HL7 v2 → FHIR R4: datatype maps, resources, bundles, site configuration.

pub mod json;
pub mod site;
pub mod time;
