//! Support for the benchmark programs (`make bench-*`), kept out of the production crates.

pub mod local;
pub mod procstat;
