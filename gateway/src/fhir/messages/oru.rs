//! ORU messages: walks the segment groups and calls the resource maps.

use crate::fhir::convert::Ctx;
use crate::hl7::structure::Grouped;

pub fn convert(_ctx: &mut Ctx, _grouped: &Grouped) {}
