//! Store-and-forward to the cloud FHIR server: ureq over rustls on blocking threads,
//! per-patient lanes in journal order, retries, dead letters.

pub mod auth;
