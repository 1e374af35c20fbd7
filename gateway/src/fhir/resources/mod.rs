//! Per segment: the map from one v2 segment (with its context) to one FHIR resource.
