//! Prometheus metrics of the authz-service (served on `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `allow`, or the denial reason (`unlabelled`, `no_token`, `invalid_token`,
    /// `session`, `policy`, `insufficient_scope`).
    pub result: String,
    /// A server id the policy names, or `other` (bounded cardinality: a client can
    /// send any server id to an unknown-server deny).
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArgumentLabels {
    /// A server and a tool of the schemas file (bounded: only registered tools are
    /// checked, so a client cannot grow the label set).
    pub server: String,
    pub tool: String,
    /// `enforce`, `report` or `off`.
    pub mode: String,
    /// `valid`, `invalid` or `header_mismatch`.
    pub result: String,
}

pub struct Metrics {
    pub decisions: Family<DecisionLabels, Counter>,
    pub check_seconds: Histogram,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub jwks_refresh_failures: Counter,
    pub policy_reload_failures: Counter,
    pub session_key_reload_failures: Counter,
    pub argument_checks: Family<ArgumentLabels, Counter>,
    pub schema_reload_failures: Counter,
    pub schema_tools: Gauge,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let decisions = Family::<DecisionLabels, Counter>::default();
        // 50 µs .. ~400 ms
        let check_seconds = Histogram::new(exponential_buckets(0.00005, 2.0, 14));
        let cache_hits = Counter::default();
        let cache_misses = Counter::default();
        let jwks_refresh_failures = Counter::default();
        let policy_reload_failures = Counter::default();
        let session_key_reload_failures = Counter::default();
        let argument_checks = Family::<ArgumentLabels, Counter>::default();
        let schema_reload_failures = Counter::default();
        let schema_tools = Gauge::default();
        let mut registry = Registry::with_prefix("mcp_authz");
        registry.register(
            "decisions",
            "Authorization decisions by result and server",
            decisions.clone(),
        );
        registry.register(
            "check_duration_seconds",
            "Time to decide one Check",
            check_seconds.clone(),
        );
        registry.register(
            "token_cache_hits",
            "Checks answered from the verified-token cache",
            cache_hits.clone(),
        );
        registry.register(
            "token_cache_misses",
            "Checks that verified a token signature",
            cache_misses.clone(),
        );
        registry.register(
            "jwks_refresh_failures",
            "Failed JWKS refreshes",
            jwks_refresh_failures.clone(),
        );
        registry.register(
            "policy_reload_failures",
            "Policy reloads refused (the last good policy stays)",
            policy_reload_failures.clone(),
        );
        registry.register(
            "session_key_reload_failures",
            "Session key file reloads refused (the last good keys stay)",
            session_key_reload_failures.clone(),
        );
        registry.register(
            "argument_checks",
            "tools/call argument checks against registered schemas, by server, tool, mode and result",
            argument_checks.clone(),
        );
        registry.register(
            "schema_reload_failures",
            "Schemas file reloads refused (the last good schemas stay)",
            schema_reload_failures.clone(),
        );
        registry.register(
            "schema_tools",
            "Tool schemas compiled from the schemas file in force",
            schema_tools.clone(),
        );
        Metrics {
            decisions,
            argument_checks,
            schema_reload_failures,
            schema_tools,
            check_seconds,
            cache_hits,
            cache_misses,
            jwks_refresh_failures,
            policy_reload_failures,
            session_key_reload_failures,
            registry,
        }
    }
}

impl Metrics {
    /// Counts one argument check of a registered tool.
    pub fn count_argument_check(
        &self,
        server: &str,
        tool: &str,
        mode: crate::schemas::Mode,
        result: &str,
    ) {
        self.argument_checks
            .get_or_create(&ArgumentLabels {
                server: server.to_owned(),
                tool: tool.to_owned(),
                mode: mode.as_str().to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        mcp_service_kit::http::render(&self.registry)
    }
}
