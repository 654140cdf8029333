//! The service's HTTP side: the RFC 9728 protected resource metadata that Envoy
//! serves unauthenticated for the gateway, beside the shared `/metrics` and `/ready`
//! (`mcp_service_kit::http`).

use crate::check::Authorizer;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use mcp_service_kit::Readiness;
use std::sync::Arc;

/// Settings of the protected resource metadata document.
#[derive(Debug, Clone)]
pub struct ResourceMetadata {
    /// `resource`: the gateway's MCP URL (also the required token audience).
    pub resource: String,
    /// `authorization_servers`: issuers clients obtain tokens from.
    pub authorization_servers: Vec<String>,
}

#[derive(Clone)]
struct AppState {
    authorizer: Arc<Authorizer>,
    metadata: Arc<ResourceMetadata>,
}

pub fn router(
    authorizer: Arc<Authorizer>,
    metadata: ResourceMetadata,
    readiness: Readiness,
) -> Router {
    let metrics = authorizer.metrics.clone();
    let state = AppState {
        authorizer,
        metadata: Arc::new(metadata),
    };
    Router::new()
        // RFC 9728 section 3.1: the well-known URI, with the resource's path inserted
        // after it (`/.well-known/oauth-protected-resource/mcp`), and the root one.
        .route(
            "/.well-known/oauth-protected-resource",
            get(protected_resource),
        )
        .route(
            "/.well-known/oauth-protected-resource/{*path}",
            get(protected_resource),
        )
        .with_state(state)
        .merge(mcp_service_kit::http::router(
            move || metrics.render(),
            readiness,
        ))
}

async fn protected_resource(State(state): State<AppState>) -> Response {
    let document = serde_json::json!({
        "resource": state.metadata.resource,
        "authorization_servers": state.metadata.authorization_servers,
        "scopes_supported": state.authorizer.policy().scopes_supported(),
        "bearer_methods_supported": ["header"],
        "resource_name": "MCP gateway",
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.to_string(),
    )
        .into_response()
}

/// The metadata URL for a resource URL (RFC 9728 section 3.1): the well-known path
/// inserted between the host and the resource's path.
pub fn metadata_url(resource: &str) -> String {
    let (scheme, rest) = resource.split_once("://").unwrap_or(("https", resource));
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let path = path.trim_end_matches('/');
    format!("{scheme}://{authority}/.well-known/oauth-protected-resource{path}")
}

#[cfg(test)]
mod tests {
    use super::metadata_url;

    #[test]
    fn metadata_urls() {
        assert_eq!(
            metadata_url("https://gw.example.com/mcp"),
            "https://gw.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_url("http://127.0.0.1:10000/mcp/"),
            "http://127.0.0.1:10000/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_url("https://gw.example.com"),
            "https://gw.example.com/.well-known/oauth-protected-resource"
        );
    }
}
