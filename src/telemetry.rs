//! Logs and metrics.
//!
//! Logs are `tracing` events, JSON lines by default. Metrics live in one
//! [`Metrics`] registry per service instance (not the process-global one), so
//! tests that run several services in one process count each on its own.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogFormat, LogSettings};

/// Installs the global `tracing` subscriber. `RUST_LOG` wins over the setting.
/// A second call (as in tests) leaves the first subscriber in place.
pub fn init_logging(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));

    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);

    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.pretty().try_init(),
    };
}

/// Upstream latencies run from a few milliseconds to the request timeout.
const UPSTREAM_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Our own answers are mostly quick; `Prefer: wait` stretches them to 60 s.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0,
];

/// Every series of the contract's metrics table.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub upstream_requests: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub members_removed: IntCounter,
    pub version_conflicts: IntCounter,
    pub rate_limited: IntCounter,
    pub constraint_violations: IntCounterVec,
    pub removals: IntCounterVec,
    pub webhook_deliveries: IntCounterVec,
    pub webhook_pending: IntGauge,
    pub webhook_oldest_pending_age: IntGauge,
    pub queue_depth: IntGauge,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();

        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(counter.clone()))
                .expect("unique metric");
            counter
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(counter.clone()))
                .expect("unique metric");
            counter
        };
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(gauge.clone()))
                .expect("unique metric");
            gauge
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let histogram = HistogramVec::new(opts, labels).expect("valid metric");
            registry
                .register(Box::new(histogram.clone()))
                .expect("unique metric");
            histogram
        };

        let metrics = Metrics {
            upstream_requests: counter_vec(
                "scim_removals_upstream_requests_total",
                "Calls to Genesys Cloud, by operation and HTTP status (or error).",
                &["operation", "status"],
            ),
            upstream_duration: histogram_vec(
                "scim_removals_upstream_request_duration_seconds",
                "Time taken by calls to Genesys Cloud.",
                &["operation"],
                UPSTREAM_BUCKETS,
            ),
            members_removed: counter(
                "scim_removals_members_removed_total",
                "Members removed from groups.",
            ),
            version_conflicts: counter(
                "scim_removals_version_conflicts_total",
                "Group version conflicts met while patching.",
            ),
            rate_limited: counter(
                "scim_removals_rate_limited_total",
                "429 answers from Genesys Cloud.",
            ),
            constraint_violations: counter_vec(
                "scim_removals_constraint_violations_total",
                "Blocked members and rule violations of finished removals, by rule.",
                &["rule"],
            ),
            removals: counter_vec(
                "scim_removals_removals_total",
                "Finished removals by status (dry runs count as planned).",
                &["status"],
            ),
            webhook_deliveries: counter_vec(
                "scim_removals_webhook_deliveries_total",
                "Webhook delivery attempts by outcome.",
                &["outcome"],
            ),
            webhook_pending: gauge(
                "scim_removals_webhook_pending",
                "Webhook deliveries waiting to be delivered.",
            ),
            webhook_oldest_pending_age: gauge(
                "scim_removals_webhook_oldest_pending_age_seconds",
                "Age of the oldest webhook delivery still waiting.",
            ),
            queue_depth: gauge(
                "scim_removals_queue_depth",
                "Queued plus running removals in the store, all replicas.",
            ),
            http_requests: counter_vec(
                "scim_removals_http_requests_total",
                "HTTP requests answered, by method, route template and status.",
                &["method", "route", "status"],
            ),
            http_duration: histogram_vec(
                "scim_removals_http_request_duration_seconds",
                "Time taken to answer HTTP requests, by method and route template.",
                &["method", "route"],
                HTTP_BUCKETS,
            ),
            registry,
        };

        // Series that only move on rare events still show up as 0 from the
        // start, so alerts and dashboards see them before the first event.
        for outcome in ["delivered", "failed_attempt", "dead"] {
            metrics.webhook_deliveries.with_label_values(&[outcome]);
        }
        for status in ["succeeded", "rejected", "failed", "planned", "cancelled"] {
            metrics.removals.with_label_values(&[status]);
        }
        for rule in [
            "protected_role",
            "protected_member",
            "min_members",
            "protected_group",
        ] {
            metrics.constraint_violations.with_label_values(&[rule]);
        }
        for operation in ["token", "get_group", "patch_group", "get_user"] {
            metrics.upstream_duration.with_label_values(&[operation]);
        }
        metrics
    }

    /// One upstream call's outcome and duration.
    pub fn observe_upstream(&self, operation: &str, status: &str, seconds: f64) {
        self.upstream_requests
            .with_label_values(&[operation, status])
            .inc();
        self.upstream_duration
            .with_label_values(&[operation])
            .observe(seconds);
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if encoder
            .encode(&self.registry.gather(), &mut buffer)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
