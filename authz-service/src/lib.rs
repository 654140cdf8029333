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
pub mod session_keys;
pub mod token;

use check::Authorizer;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use http::ResourceMetadata;
use jwks::{Jwks, JwksSource};
use metrics::Metrics;
use policy::{Policy, PolicyError};
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
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// Loads the policy and the session keys (an invalid file stops startup) and prepares
/// the JWKS. Token keys are loaded by [`serve`]; until they are, every check is
/// refused and readiness is false.
pub fn build(settings: &Settings) -> Result<Arc<Authorizer>, StartError> {
    let policy = Policy::load(&settings.policy)?;
    let session_keys = SessionKeys::load(&settings.session_keys)?;
    Ok(Arc::new(Authorizer {
        rules: settings.rules.clone(),
        jwks: Arc::new(Jwks::new(settings.jwks.clone())),
        policy: RwLock::new(Arc::new(policy)),
        session_keys: RwLock::new(Arc::new(session_keys)),
        cache: TokenCache::new(TOKEN_CACHE_CAPACITY),
        resource_metadata: http::metadata_url(&settings.metadata.resource),
        metrics: Arc::new(Metrics::default()),
    }))
}

/// Serves gRPC (ext_authz + health) and HTTP (metrics, readiness, RFC 9728 metadata)
/// until `shutdown` completes. Keeps the JWKS fresh every `jwks_refresh`.
pub async fn serve(
    authorizer: Arc<Authorizer>,
    settings: &Settings,
    grpc: TcpListener,
    http_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_not_serving::<AuthorizationServer<grpc::AuthzGrpc>>()
        .await;

    let refresher = {
        let authorizer = authorizer.clone();
        let every = settings.jwks_refresh;
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            loop {
                interval.tick().await;
                match authorizer.jwks.refresh().await {
                    Ok(count) => tracing::debug!(keys = count, "JWKS refreshed"),
                    Err(error) => {
                        authorizer.metrics.jwks_refresh_failures.inc();
                        tracing::warn!(%error, source = %authorizer.jwks.source(), "JWKS refresh failed; cached keys stay in use");
                    }
                }
                // Readiness: keys and policy loaded (the policy always is).
                if authorizer.jwks.keys().is_some() {
                    health
                        .set_serving::<AuthorizationServer<grpc::AuthzGrpc>>()
                        .await;
                }
            }
        })
    };
    let watched = vec![
        (reload::Watched::Policy, settings.policy.clone()),
        (reload::Watched::SessionKeys, settings.session_keys.clone()),
    ];
    let _watcher = match reload::watch(authorizer.clone(), watched) {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(%error, "cannot watch the policy and session key files; hot reload is off");
            None
        }
    };

    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let app = http::router(authorizer.clone(), settings.metadata.clone());
    let http_server = tokio::spawn(async move {
        axum::serve(http_listener, app)
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .await
    });

    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(AuthorizationServer::new(grpc::AuthzGrpc {
            authorizer: authorizer.clone(),
        }))
        // TCP_NODELAY: tonic sets it only on listeners it binds itself. Without it, a
        // reply's HTTP/2 frames wait for Envoy's delayed ACK (Nagle): several ms added
        // to every check at low rates (BENCHMARKS.md).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    refresher.abort();
    let _ = stop_http.send(());
    let _ = http_server.await;
    result.map_err(StartError::from)
}
