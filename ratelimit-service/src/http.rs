//! The service's HTTP side: only the shared `/metrics` and `/ready`
//! (`mcp_service_kit::http`); the rate limit service serves nothing of its own.

use crate::grpc::Limiter;
use axum::Router;
use mcp_service_kit::Readiness;
use std::sync::Arc;

pub fn router(limiter: &Arc<Limiter>, readiness: Readiness) -> Router {
    let metrics = limiter.metrics.clone();
    mcp_service_kit::http::router(move || metrics.render(), readiness)
}
