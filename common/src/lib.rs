//! CRD types, operator configuration and the rules shared by the webhook and the controller.
//!
//! Everything here is pure: no client, no I/O beyond what a caller hands in. The webhook and the
//! controller call the same functions, so a rule is written once and both enforce it the same way.

pub mod config;
pub mod crd;
pub mod database;
pub mod fields;
pub mod labels;
pub mod maintenance;
pub mod naming;
pub mod patterns;
pub mod quantity;
pub mod rules;
