//! Per segment: the map from one v2 segment (with its context) to one FHIR resource.

pub mod account;
pub mod allergy;
pub mod appointment;
pub mod charge_item;
pub mod condition;
pub mod coverage;
pub mod diagnostic_report;
pub mod document_reference;
pub mod encounter;
pub mod iam;
pub mod immunization;
pub mod medication;
pub mod observation;
pub mod patient;
pub mod practitioner_role;
pub mod problem;
pub mod procedure;
pub mod provenance;
pub mod referral;
pub mod related_person;
pub mod service_request;
pub mod specimen;
pub mod us_core;
