//! Per message structure: which groups and segments become which resources.

pub mod adt;
pub mod mdm;
pub mod order;
pub mod oru;
pub mod siu;
pub mod vxu;
