//! Prometheus metrics of the webhook: reviews by operation, rule and outcome, and their latency.

use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::{counter::Counter, family::Family, histogram::Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Labels of one review.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// CREATE, UPDATE, DELETE, or "invalid" for unreadable requests.
    pub operation: String,
    /// The rule that decided (first violation), "none" when nothing was refused.
    pub rule: String,
    /// allowed, patched, denied, skipped (not ours) or error (unreadable request).
    pub outcome: String,
}

/// The webhook's metrics.
pub struct Metrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pg_webhook");
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "admission_reviews",
            "Admission reviews answered",
            reviews.clone(),
        );
        // 25 µs .. ~100 ms: the interesting range is well below a millisecond.
        let latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            25e-6, 2.0, 13,
        ));
        registry.register(
            "admission_review_duration_seconds",
            "Time to decide one review",
            latency.clone(),
        );
        Self {
            registry,
            reviews,
            latency,
        }
    }
}

impl Metrics {
    /// Records one answered review.
    pub fn observe(&self, labels: ReviewLabels, elapsed: Duration) {
        self.reviews.get_or_create(&labels).inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
