//! MCP gateway authz-service: an Envoy ext_authz v3 gRPC server that verifies the
//! agent's OAuth token and the scopes the called MCP tool needs.
//!
//! `main.rs` wires the CLI to [`Settings`], [`build`] and [`serve`]; tests bind port 0
//! and call the same functions.
#![forbid(unsafe_code)]

pub mod check;
pub mod grpc;
pub mod http;
pub mod identity;
pub mod jwks;
pub mod metrics;
pub mod policy;
pub mod reload;
pub mod schemas;
pub mod session_keys;
pub mod token;

use check::Authorizer;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use http::ResourceMetadata;
use jwks::{Jwks, JwksSource};
use mcp_service_kit::{self as kit, Readiness};
use metrics::Metrics;
use policy::{Policy, PolicyError};
use schemas::{Schemas, SchemasError};
use session_keys::{SessionKeyError, SessionKeys};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use token::{TokenCache, TokenRules};
use tokio::net::TcpListener;

/// Verified tokens kept at most (each entry is a few hundred bytes).
pub const TOKEN_CACHE_CAPACITY: usize = 100_000;

/// Everything the service is started with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: PathBuf,
    /// Registered tool schemas (`schemas.json` from `mcp-registry render`),
    /// hot-reloaded; `None`: no argument checks.
    pub schemas: Option<PathBuf>,
    /// Master keys of session binding, one per line (hot-reloaded).
    pub session_keys: PathBuf,
    pub rules: TokenRules,
    pub jwks: JwksSource,
    pub jwks_refresh: Duration,
    pub metadata: ResourceMetadata,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // Transparent: `main` prints the error chain, and these already name file and
    // reason (with `{0}` and a source, each would be printed twice).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    SessionKeys(#[from] SessionKeyError),
    #[error(transparent)]
    Schemas(#[from] SchemasError),
    /// The JWKS HTTPS client cannot be built (its TLS setup): startup stops rather than
    /// fall back to a client without the fetch timeout.
    #[error(transparent)]
    Jwks(#[from] jwks::JwksError),
    #[error(transparent)]
    Serve(#[from] kit::ServeError),
}

/// Loads the policy, the schemas and the session keys (an invalid file stops startup) and prepares
/// the JWKS. Token keys are loaded by [`serve`]; until they are, every check is
/// refused and readiness is false.
pub fn build(settings: &Settings) -> Result<Arc<Authorizer>, StartError> {
    let policy = Policy::load(&settings.policy)?;
    let schemas = match &settings.schemas {
        Some(path) => Schemas::load(path)?,
        None => Schemas::default(),
    };
    let session_keys = SessionKeys::load(&settings.session_keys)?;
    let authorizer = Authorizer {
        rules: settings.rules.clone(),
        jwks: Arc::new(Jwks::try_new(settings.jwks.clone())?),
        policy: RwLock::new(Arc::new(policy)),
        session_keys: RwLock::new(Arc::new(session_keys)),
        schemas: RwLock::default(),
        cache: TokenCache::new(TOKEN_CACHE_CAPACITY),
        resource_metadata: http::metadata_url(&settings.metadata.resource),
        metrics: Arc::new(Metrics::default()),
    };
    authorizer.set_schemas(schemas);
    Ok(Arc::new(authorizer))
}

/// Serves gRPC (ext_authz + health) and HTTP (metrics, readiness, RFC 9728 metadata)
/// until `shutdown` completes. Keeps the JWKS fresh every `jwks_refresh`.
///
/// Ready (gRPC health and `/ready`) once the token keys are loaded: the policy and
/// the session keys already are ([`build`]), and without keys every check is refused.
pub async fn serve(
    authorizer: Arc<Authorizer>,
    settings: &Settings,
    grpc: TcpListener,
    http_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let readiness =
        Readiness::new::<AuthorizationServer<grpc::AuthzGrpc>>("no verification keys loaded").await;
    // Watching before the first JWKS load: once ready, a change is never missed.
    let _watcher = reload::watch(authorizer.clone(), settings);
    let _refresher = {
        let (authorizer, readiness) = (authorizer.clone(), readiness.clone());
        kit::every(settings.jwks_refresh, move || {
            let (authorizer, readiness) = (authorizer.clone(), readiness.clone());
            async move { refresh_jwks(&authorizer, &readiness).await }
        })
    };
    let app = http::router(
        authorizer.clone(),
        settings.metadata.clone(),
        readiness.clone(),
    );
    let service = AuthorizationServer::new(grpc::AuthzGrpc { authorizer });
    let listeners = kit::Listeners {
        grpc,
        http: http_listener,
    };
    kit::serve(listeners, &readiness, service, app, shutdown).await?;
    Ok(())
}

async fn refresh_jwks(authorizer: &Authorizer, readiness: &Readiness) {
    match authorizer.jwks.refresh().await {
        Ok(count) => tracing::debug!(keys = count, "JWKS refreshed"),
        Err(error) => {
            authorizer.metrics.jwks_refresh_failures.inc();
            tracing::warn!(%error, source = %authorizer.jwks.source(), "JWKS refresh failed; cached keys stay in use");
        }
    }
    // Keys once loaded stay in use when a refresh fails, so readiness never drops
    // back: a JWKS endpoint outage must not take every replica out of service.
    if authorizer.jwks.keys().is_some() && readiness.check().is_err() {
        readiness.set_ready().await;
    }
}
