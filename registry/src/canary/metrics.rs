//! The watcher's own metrics, served on `--metrics-addr` at `/metrics` for the shipped
//! alerts (envoy/monitoring/mcp-canary.yaml): what it decided, the weights it renders,
//! and when it last evaluated (a watcher that stopped evaluating is itself an alert).

use super::decision::Signal;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub mcp_server: String,
    /// The canary's version.
    pub mcp_server_version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RollbackLabels {
    pub mcp_server: String,
    pub mcp_server_version: String,
    /// `tool_call_error_ratio` or `negotiation_failure_ratio`.
    pub mcp_signal: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub rollbacks: Family<RollbackLabels, Counter>,
    pub promotions: Family<VersionLabels, Counter>,
    /// The canary's rendered weight (percent), the rollout state applied.
    pub weight: Family<VersionLabels, Gauge>,
    /// 1 while a live canary's releases have had no series at all for a whole window
    /// (the watcher cannot judge it), else 0.
    pub no_data: Family<VersionLabels, Gauge>,
    pub last_evaluation: Gauge<f64, AtomicU64>,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let rollbacks = Family::<RollbackLabels, Counter>::default();
        let promotions = Family::<VersionLabels, Counter>::default();
        let weight = Family::<VersionLabels, Gauge>::default();
        let no_data = Family::<VersionLabels, Gauge>::default();
        let last_evaluation = Gauge::<f64, AtomicU64>::default();
        let mut registry = Registry::default();
        // Counters get `_total` appended by the encoder.
        registry.register(
            "mcp_canary_rollbacks",
            "Canary versions the watcher rolled back (weight 0), by the signal that fired",
            rollbacks.clone(),
        );
        registry.register(
            "mcp_canary_promotions",
            "Canary versions the watcher promoted (weight 100) after a clean window",
            promotions.clone(),
        );
        registry.register(
            "mcp_canary_weight",
            "Percent of the server's requests the rendered split gives the canary version",
            weight.clone(),
        );
        registry.register(
            "mcp_canary_no_data",
            "1 while neither release of a live canary has any series in the gateway's metrics for a whole window (nothing can be judged)",
            no_data.clone(),
        );
        registry.register(
            "mcp_canary_last_evaluation_timestamp_seconds",
            "When the watcher last evaluated the canaries (Unix time)",
            last_evaluation.clone(),
        );
        Metrics {
            rollbacks,
            promotions,
            weight,
            no_data,
            last_evaluation,
            registry: Arc::new(registry),
        }
    }

    pub fn evaluated(&self, at: SystemTime) {
        let seconds = at
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_evaluation.set(seconds);
    }

    /// Creates a watched canary's decision counters at 0: Prometheus' `increase()` sees
    /// no increase in a series whose first sample is already 1, so the first rollback
    /// must find its series there.
    pub fn watching(&self, server: &str, version: &str) {
        for signal in [Signal::ToolCallErrorRatio, Signal::NegotiationFailureRatio] {
            let _created = self.rollbacks.get_or_create(&RollbackLabels {
                mcp_server: server.to_owned(),
                mcp_server_version: version.to_owned(),
                mcp_signal: signal.as_str().to_owned(),
            });
        }
        let _created = self.promotions.get_or_create(&VersionLabels {
            mcp_server: server.to_owned(),
            mcp_server_version: version.to_owned(),
        });
    }

    pub fn set_weight(&self, server: &str, version: &str, weight: u8) {
        self.weight
            .get_or_create(&VersionLabels {
                mcp_server: server.to_owned(),
                mcp_server_version: version.to_owned(),
            })
            .set(i64::from(weight));
    }

    pub fn set_no_data(&self, server: &str, version: &str, no_data: bool) {
        self.no_data
            .get_or_create(&VersionLabels {
                mcp_server: server.to_owned(),
                mcp_server_version: version.to_owned(),
            })
            .set(i64::from(no_data));
    }

    /// The Prometheus text exposition. Encoding into a `String` fails only on a
    /// formatter error; an empty answer then shows it rather than a truncated one.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The content type Prometheus expects for the text format 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `/metrics` on `listener` until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Metrics) -> std::io::Result<()> {
    use axum::http::header;
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let text = metrics.text();
            async move { ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text) }
        }),
    );
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn exposes_the_names_the_alerts_query() {
        let metrics = Metrics::new();
        metrics
            .rollbacks
            .get_or_create(&RollbackLabels {
                mcp_server: "fin".into(),
                mcp_server_version: "1.4.0".into(),
                mcp_signal: "tool_call_error_ratio".into(),
            })
            .inc();
        metrics.set_weight("fin", "1.4.0", 0);
        metrics.watching("fin", "1.5.0");
        metrics.set_no_data("fin", "1.5.0", true);
        metrics.evaluated(UNIX_EPOCH + Duration::from_millis(1_500));
        let text = metrics.text();
        for line in [
            r#"mcp_canary_rollbacks_total{mcp_server="fin",mcp_server_version="1.4.0",mcp_signal="tool_call_error_ratio"} 1"#,
            r#"mcp_canary_weight{mcp_server="fin",mcp_server_version="1.4.0"} 0"#,
            "mcp_canary_last_evaluation_timestamp_seconds 1.5",
            r#"mcp_canary_no_data{mcp_server="fin",mcp_server_version="1.5.0"} 1"#,
            // Created at 0 once watched, so the first decision is an increase.
            r#"mcp_canary_promotions_total{mcp_server="fin",mcp_server_version="1.5.0"} 0"#,
            r#"mcp_canary_rollbacks_total{mcp_server="fin",mcp_server_version="1.5.0",mcp_signal="negotiation_failure_ratio"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
