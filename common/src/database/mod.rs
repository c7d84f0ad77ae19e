//! The cluster's inside: roles, databases, schemas, extensions and default privileges, as
//! Zalando makes them. [`model`] holds the data; the rules that fill [`model::Wanted`] and the
//! plan from wanted and actual to statements live beside it, and [`rotation`] decides when a
//! user's Secret gets new credentials.

pub mod deprecation;
pub mod infrastructure;
pub mod model;
pub mod password;
pub mod plan;
pub mod quote;
pub mod rotation;
pub mod secrets;
pub mod sources;
pub mod teams;
pub mod wanted;
