//! The rules of the specification as pure functions. The webhook enforces them at admission time;
//! the controller re-checks the same functions, so a cluster that reached the API server while the
//! webhook was down or bypassed is treated exactly as the webhook would have treated it.

pub mod admission;
pub mod delete_protection;
pub mod instances;
pub mod manifest;
pub mod ownership;
pub mod source_ranges;
mod verdict;
pub mod versions;
pub mod volume;

pub use verdict::{Verdict, Violation};
