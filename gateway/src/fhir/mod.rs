//! HL7 v2 → FHIR R4: datatype maps, resources, bundles, site configuration.
//!
//! - [`convert`]: one message → resources + report, dispatching on the message structure.
//! - [`ctx`]: the state one conversion shares between the maps.
//! - [`messages`]: per structure, the walk over segment groups.
//! - [`resources`]: per segment, the map to one resource.
//! - [`model`]: the converter's output before bundling.
//! - [`budget`]: how large a message the converter takes on, and for how long.
//! - [`site`], [`time`], [`json`]: site maps, v2 timestamps, the empty-free JSON builder.

pub mod budget;
pub mod bundle;
pub mod codes;
pub mod convert;
pub mod ctx;
pub mod datatypes;
pub mod json;
pub mod language;
pub mod memory;
pub mod messages;
pub mod model;
pub mod resources;
pub mod site;
pub mod time;
