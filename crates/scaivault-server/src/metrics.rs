use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs to about 3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The server's Prometheus registry. One per router, no global state.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    audit_queue: Gauge,
    deliveries: Family<OutcomeLabels, Counter>,
    rotation: Family<StateLabels, Gauge>,
    caches: Gauge,
    syncs: Family<OutcomeLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("scaivault");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests by route and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and status",
            latency.clone(),
        );
        let audit_queue = Gauge::default();
        registry.register(
            "audit_queue_depth",
            "Audit records waiting for their group commit",
            audit_queue.clone(),
        );
        let deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, retried, failed)",
            deliveries.clone(),
        );
        let rotation = Family::<StateLabels, Gauge>::default();
        registry.register("rotation_schedules", "Rotation schedules by state", rotation.clone());
        let caches = Gauge::default();
        registry.register(
            "caches_enabled",
            "1 while in-memory caches are used, 0 while changes by other replicas could go unannounced",
            caches.clone(),
        );
        let syncs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "federation_syncs",
            "Federation syncs this process ran, by outcome (completed, failed)",
            syncs.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            audit_queue,
            deliveries,
            rotation,
            caches,
            syncs,
        }
    }

    pub(crate) fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let labels = RequestLabels { method: method.to_owned(), route: route.to_owned(), status };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Copies the vault's own counters in, just before a scrape.
    pub(crate) async fn sample(&self, vault: &scaivault_core::Vault) {
        // Storage failing is for readiness to report; the scrape keeps the last figures.
        if let Ok(counts) = vault.rotation_state_counts().await {
            for state in ["scheduled", "due", "failed"] {
                let n = counts.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
                self.rotation
                    .get_or_create(&StateLabels { state: state.to_owned() })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.audit_queue.set(i64::try_from(vault.audit_queue_depth()).unwrap_or(i64::MAX));
        self.caches.set(i64::from(vault.caches_enabled()));
        let o = vault.delivery_outcomes();
        for (outcome, n) in [("delivered", &o.delivered), ("retried", &o.retried), ("failed", &o.failed)] {
            self.deliveries.get_or_create(&OutcomeLabels { outcome }).inner().store(n.load(Relaxed), Relaxed);
        }
        let syncs = vault.federation_sync_results();
        for outcome in ["completed", "failed"] {
            let n = syncs.iter().find(|(o, _)| *o == outcome).map_or(0, |(_, n)| *n);
            self.syncs.get_or_create(&OutcomeLabels { outcome }).inner().store(n, Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}
