//! State shared by the admission handlers, the admin endpoints and the background tasks.

use crate::metrics::Metrics;
use crate::tls::ReloadingCert;
use arc_swap::ArcSwap;
use common::config::Loaded;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Everything a request handler reads; cheap to share.
pub struct State {
    /// The current configuration, swapped when its source changes.
    pub config: ArcSwap<Loaded>,
    /// Whether a configuration has been loaded from its source.
    pub config_loaded: AtomicBool,
    /// `CONTROLLER_ID` ("" when unset).
    pub controller_id: String,
    /// The serving certificate.
    pub certs: Arc<ReloadingCert>,
    /// Metrics.
    pub metrics: Metrics,
    /// Client for clone-source lookups; absent in tests without an API server.
    pub client: Option<kube::Client>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Time a client gets to send a whole request.
    pub request_timeout: std::time::Duration,
}

impl runtime::http::Admin for State {
    fn not_ready_reason(&self) -> Option<String> {
        if !self.config_loaded.load(Ordering::Acquire) {
            Some("operator configuration not loaded yet".into())
        } else if !self.certs.is_loaded() {
            Some("no valid serving certificate".into())
        } else {
            None
        }
    }

    fn metrics(&self) -> String {
        self.metrics.render()
    }
}
