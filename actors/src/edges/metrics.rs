//! herdd's Prometheus metrics: recorded by the actors as they work (atomics, whether or not
//! anyone scrapes), served by herdd's opt-in listener (`metrics.listen`) in the text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::OnceLock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// The verb (`workload.start`, `nodes.ping`), or `unknown` for a subject herd does not serve.
    pub verb: String,
    /// `ok`, or the error code of the reply (`bad_request`, `not_found`, …).
    pub outcome: String,
}

pub struct Metrics {
    /// Workloads of this node by state; set from the executor at each scrape.
    pub workloads: Family<StateLabel, Gauge>,
    pub commands: Family<CommandLabels, Counter>,
    pub outbox_events: Gauge,
    pub nats_reconnects: Counter,
    pub collection_seconds: Histogram,
    pub heartbeat_lag_seconds: Histogram,
}

/// Upper bounds of the histograms' buckets, in seconds: 10 µs to 3 s, about ×3 apart.
const BUCKETS: [f64; 12] = [
    1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0,
];

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        workloads: Family::default(),
        commands: Family::default(),
        outbox_events: Gauge::default(),
        nats_reconnects: Counter::default(),
        collection_seconds: Histogram::new(BUCKETS.iter().copied()),
        heartbeat_lag_seconds: Histogram::new(BUCKETS.iter().copied()),
    })
}

impl Metrics {
    /// Counts a handled request.
    pub fn command(&self, verb: &str, outcome: &str) {
        self.commands
            .get_or_create(&CommandLabels {
                verb: verb.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Every metric, in the Prometheus text format (OpenMetrics flavour).
    pub fn encode(&self) -> String {
        let mut registry = Registry::with_prefix("herd");
        registry.register(
            "workloads",
            "Workloads on this node by state (terminal ones are those still remembered)",
            self.workloads.clone(),
        );
        registry.register(
            "commands",
            "Requests answered by this herdd, by verb and outcome (ok or the error code)",
            self.commands.clone(),
        );
        registry.register(
            "outbox_events",
            "Lifecycle events queued for JetStream, not yet acknowledged",
            self.outbox_events.clone(),
        );
        registry.register(
            "nats_reconnects",
            "Times the NATS connection was re-established after a loss",
            self.nats_reconnects.clone(),
        );
        registry.register(
            "telemetry_collection_seconds",
            "Time to sample every workload of one telemetry batch",
            self.collection_seconds.clone(),
        );
        registry.register(
            "heartbeat_publish_lag_seconds",
            "From a heartbeat falling due to its publication",
            self.heartbeat_lag_seconds.clone(),
        );
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}
