//! Prometheus metrics of the controller.

use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// A failure category.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Short stable name of what failed.
    pub reason: String,
}

/// A cluster status value.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// PostgresClusterStatus.
    pub status: String,
}

/// What an API write changed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// The API resource, as the API server's own metrics name it (`statefulsets`,
    /// `postgresqls/status`, ...).
    pub resource: String,
}

/// Every resource the controller writes: their series exist from the start (at 0), so a
/// dashboard or a test sees "no writes" rather than no data.
const WRITTEN_RESOURCES: [&str; 9] = [
    "statefulsets",
    "services",
    "endpoints",
    "secrets",
    "poddisruptionbudgets",
    "serviceaccounts",
    "rolebindings",
    "postgresqls",
    "postgresqls/status",
];

/// Counters of reconciles and their outcome.
pub struct Metrics {
    registry: Registry,
    /// Reconciles run.
    pub reconciles: Counter,
    /// Failed reconciles by reason.
    pub failures: Family<ReasonLabels, Counter>,
    /// Reconcile duration.
    pub duration: Histogram,
    /// API writes made (creates, applies, deletes, status patches), by resource.
    pub writes: Family<WriteLabels, Counter>,
    /// Clusters by status, recomputed from the cache.
    pub clusters: Family<StatusLabels, Gauge>,
    /// Events dropped because the publishing queue was full.
    pub events_dropped: Counter,
    /// SQL statements planned for clusters (catalog reads excluded): 0 per sync of an
    /// unchanged cluster.
    pub database_statements: Counter,
    /// Database connections held now (busy, being opened or idle), set when rendered.
    pub database_connections: Gauge,
    /// The most database connections held at once since the start, set when rendered.
    pub database_connections_peak: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pg_controller");
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        let failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Failed reconciles by reason",
            failures.clone(),
        );
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            1e-4, 2.0, 16,
        ));
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile",
            duration.clone(),
        );
        let writes = Family::<WriteLabels, Counter>::default();
        for resource in WRITTEN_RESOURCES {
            let _ = writes.get_or_create(&WriteLabels {
                resource: resource.into(),
            });
        }
        registry.register(
            "api_writes",
            "Writes sent to the API server, by resource",
            writes.clone(),
        );
        let clusters = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "clusters",
            "Clusters by PostgresClusterStatus",
            clusters.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Events not published because the queue was full",
            events_dropped.clone(),
        );
        let database_statements = Counter::default();
        registry.register(
            "database_statements",
            "SQL statements planned to change clusters' roles, databases and schemas",
            database_statements.clone(),
        );
        let database_connections = Gauge::default();
        registry.register(
            "database_connections",
            "Connections to clusters' databases held now, idle ones included",
            database_connections.clone(),
        );
        let database_connections_peak = Gauge::default();
        registry.register(
            "database_connections_peak",
            "The most connections to clusters' databases held at once since the start",
            database_connections_peak.clone(),
        );
        Self {
            database_statements,
            database_connections,
            database_connections_peak,
            registry,
            reconciles,
            failures,
            duration,
            writes,
            clusters,
            events_dropped,
        }
    }
}

impl Metrics {
    /// Records a finished reconcile.
    pub fn observe(&self, elapsed: Duration, failure: Option<&str>) {
        self.reconciles.inc();
        self.duration.observe(elapsed.as_secs_f64());
        if let Some(reason) = failure {
            self.failures
                .get_or_create(&ReasonLabels {
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    /// Counts one write to `resource` (see [`WriteLabels`]).
    pub fn wrote(&self, resource: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                resource: resource.to_string(),
            })
            .inc();
    }

    /// Counts the statements of a database plan.
    pub fn database_statements(&self, planned: usize) {
        self.database_statements.inc_by(planned as u64);
    }

    /// Records the database connections held now and at most (see [`Metrics::database_connections`]).
    pub fn database_connections(&self, held: usize, peak: usize) {
        self.database_connections.set(held as i64);
        self.database_connections_peak.set(peak as i64);
    }

    /// The OpenMetrics exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
