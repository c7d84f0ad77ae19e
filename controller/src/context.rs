//! What every reconcile shares.

use crate::children::Stores;
use crate::events::Events;
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use common::config::Loaded;
use kube::Client;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared state of the controller.
pub struct Context {
    /// API client.
    pub client: Client,
    /// The current configuration.
    pub config: ArcSwap<Loaded>,
    /// `CONTROLLER_ID` ("" when unset).
    pub controller_id: String,
    /// Child caches.
    pub stores: Stores,
    /// What the members show (pods, Patroni's leader lock).
    pub observed: crate::members::Observed,
    /// Dials the clusters' databases (a shared connection limit).
    pub connector: crate::database::connect::Connector,
    /// The clusters whose database side keeps failing, for the back-off of their retries.
    pub database_failures: crate::database::retry::Streaks,
    /// The per-database catalog reads that found nothing to do, by cluster.
    pub inside_reads: crate::database::inside::Memo,
    /// The role sources beyond the manifest: infrastructure roles, PostgresTeams, Teams API.
    pub roles: crate::roles::RoleSources,
    /// Patroni's REST API of the clusters' members.
    pub patroni: Arc<dyn crate::patroni::Patroni>,
    /// The rolling updates in progress (only when their last step was taken).
    pub rollouts: crate::rollout::Memo,
    /// How far each cluster's Patroni configuration and restarts got ([`crate::dcs`]).
    pub patroni_config: crate::dcs::step::Memo,
    /// Commands in pods' containers (the major version upgrade's script).
    pub exec: Arc<dyn crate::upgrade::exec::Exec>,
    /// What each cluster's major version upgrade last saw ([`crate::upgrade`]).
    pub upgrades: crate::upgrade::Memo,
    /// Event publisher.
    pub events: Events,
    /// Metrics.
    pub metrics: Metrics,
    /// Whether every cache has synced.
    pub caches_ready: AtomicBool,
    /// Whether this replica holds the lease (always true without leader election).
    pub leading: Arc<AtomicBool>,
}

impl runtime::http::Admin for Context {
    fn not_ready_reason(&self) -> Option<String> {
        if !self.caches_ready.load(Ordering::Acquire) {
            Some("caches are not synced yet".into())
        } else {
            None
        }
    }

    fn metrics(&self) -> String {
        let (held, peak) = self.connector.held();
        self.metrics.database_connections(held, peak);
        self.metrics.render()
    }
}
