//! The service's HTTP side: the RFC 9728 protected resource metadata that Envoy
//! serves unauthenticated for the gateway, beside the shared `/metrics` and `/ready`
//! (`mcp_service_kit::http`).

use crate::check::Authorizer;
use crate::policy::Policy;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use mcp_service_kit::Readiness;
use std::sync::{Arc, Mutex};

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
    /// The document, and the policy it was built for.
    document: Arc<Mutex<Option<Built>>>,
}

/// A metadata document and the policy it lists the scopes of.
type Built = (Arc<Policy>, Bytes);

impl AppState {
    /// The metadata document, built once per policy: it lists every scope of the
    /// policy (for a fleet of 10,000 servers 1.4 MB and 12 ms of CPU to build;
    /// BENCHMARKS.md, "Fleet scale"), too much to rebuild for each request on an
    /// endpoint anyone may call.
    fn document(&self) -> Bytes {
        let policy = self.authorizer.policy();
        let mut cached = self.document.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((built_for, body)) = cached.as_ref() {
            if Arc::ptr_eq(built_for, &policy) {
                return body.clone();
            }
        }
        let body = Bytes::from(
            serde_json::json!({
                "resource": self.metadata.resource,
                "authorization_servers": self.metadata.authorization_servers,
                "scopes_supported": policy.scopes_supported(),
                "bearer_methods_supported": ["header"],
                "resource_name": "MCP gateway",
            })
            .to_string(),
        );
        *cached = Some((policy, body.clone()));
        body
    }
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
        document: Arc::default(),
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
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.document(),
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
