//! What the webhook and the controller run on, apart from their decisions: the admin HTTP server
//! (`/healthz`, `/readyz`, `/metrics`), logging, graceful shutdown, the allocator, and reading
//! and following the operator configuration through the API.
//!
//! `common` stays pure (no async runtime, no client); everything that does I/O for both
//! binaries lives here.

pub mod alloc;
pub mod config_fetch;
pub mod config_watch;
pub mod http;
