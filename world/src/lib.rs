//! The test world: what runs behind the kwok nodes' pods on this machine.
//!
//! kwok marks pods Running and Ready but runs nothing. The pod runner built from this crate
//! plays the kubelet for the containers it knows how to run: Spilo images become a real Patroni
//! and PostgreSQL, the operator's own images the locally built binaries. Everything stays on
//! loopback (pod IPs are in 127.10.0.0/16 or the checkout's own range).
//!
//! The modules are pure where they can be (environment resolution, volume plans, Patroni's
//! configuration from a Spilo environment) and unit-tested; the supervisor runs processes.

pub mod env;
pub mod majors;
pub mod runner;
pub mod spilo;
pub mod supervisor;
pub mod upgrade;
pub mod volumes;
