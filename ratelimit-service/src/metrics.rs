//! Prometheus metrics of the ratelimit-service (served on `/metrics`). The `key`
//! label is the descriptor's key path from the configuration (`tool_call.agent_id`),
//! never a value, so cardinality is bounded by the configuration.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabel {
    pub key: String,
}

/// Labels of [`Metrics::overflow`]: the limit's key path and why the hits were counted
/// on a shared overflow counter (`max_distinct_values` or `store_full`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OverflowLabel {
    pub key: String,
    pub reason: &'static str,
}

pub struct Metrics {
    pub hits: Family<KeyLabel, Counter>,
    pub over_limit: Family<KeyLabel, Counter>,
    pub near_limit: Family<KeyLabel, Counter>,
    pub shadow_mode: Family<KeyLabel, Counter>,
    pub overflow: Family<OverflowLabel, Counter>,
    pub backend_errors: Counter,
    pub config_reload_failures: Counter,
    pub decision_seconds: Histogram,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mcp_ratelimit");
        let metrics = Metrics {
            hits: Family::default(),
            over_limit: Family::default(),
            near_limit: Family::default(),
            shadow_mode: Family::default(),
            overflow: Family::default(),
            backend_errors: Counter::default(),
            config_reload_failures: Counter::default(),
            // 20 µs .. ~160 ms
            decision_seconds: Histogram::new(exponential_buckets(0.00002, 2.0, 14)),
            registry: Registry::default(),
        };
        registry.register(
            "hits",
            "Hits counted, by descriptor key path",
            metrics.hits.clone(),
        );
        registry.register(
            "over_limit",
            "Hits over their limit (refused)",
            metrics.over_limit.clone(),
        );
        registry.register(
            "near_limit",
            "Hits past 80% of their limit",
            metrics.near_limit.clone(),
        );
        registry.register(
            "shadow_mode",
            "Hits over a shadow-mode limit (allowed)",
            metrics.shadow_mode.clone(),
        );
        registry.register(
            "overflow",
            "Hits counted on an overflow counter shared by several values: a key-only \
             value past max_distinct_values, or the memory store full",
            metrics.overflow.clone(),
        );
        registry.register(
            "backend_errors",
            "Decisions that failed on the counter store",
            metrics.backend_errors.clone(),
        );
        registry.register(
            "config_reload_failures",
            "Configuration reloads refused (the last good configuration stays)",
            metrics.config_reload_failures.clone(),
        );
        registry.register(
            "decision_duration_seconds",
            "Time to decide one request",
            metrics.decision_seconds.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        mcp_service_kit::http::render(&self.registry)
    }
}
