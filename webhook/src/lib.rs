//! The admission webhook for `postgresql` objects.
//!
//! HTTP, TLS and configuration plumbing live here; every decision is made by
//! `common::rules::admission`, the same functions the controller uses.

pub mod app;
pub mod args;
pub mod config_watch;
pub mod metrics;
pub mod review;
pub mod self_tls;
pub mod server;
pub mod state;
pub mod tls;
pub mod wire;

pub use args::Args;
