//! The HTTP side both services share: `/metrics` in the Prometheus text format and
//! `/ready` from [`Readiness`]. A service merges its own routes into this router.

use crate::Readiness;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

/// The content type Prometheus expects for its text exposition format 0.0.4.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus text exposition of `registry`. Encoding into a `String` fails only on a
/// formatter error, never on data; an empty scrape then shows the failure rather than
/// a truncated one that would look like counters reset.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

/// `/metrics` (what `metrics` returns) and `/ready` (200 `ready`, or 503 with what the
/// service waits for: probes and the test harness read both status and body).
pub fn router<M>(metrics: M, readiness: Readiness) -> Router
where
    M: Fn() -> String + Clone + Send + Sync + 'static,
{
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = metrics();
                async move { ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text) }
            }),
        )
        .route(
            "/ready",
            get(move || {
                let state = readiness.check();
                async move { ready(state) }
            }),
        )
}

fn ready(state: Result<(), &'static str>) -> Response {
    match state {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(waiting_for) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{waiting_for}\n")).into_response()
        }
    }
}
