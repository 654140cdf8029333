//! MCP gateway rate limit service: an Envoy rate limit v3 gRPC server (RLS) that takes
//! global per-agent, per-tool decisions, with counters in memory (one replica) or in
//! Redis (several replicas sharing them).
//!
//! `main.rs` wires the CLI to [`Settings`], [`build`] and [`serve`]; tests bind port 0
//! and call the same functions.
#![forbid(unsafe_code)]

pub mod config;
pub mod grpc;
pub mod http;
pub mod keys;
pub mod limiter;
pub mod metrics;
pub mod reload;
pub mod store;

use config::{Config, ConfigError};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use grpc::{Limiter, RateLimitGrpc};
use limiter::SystemClock;
use mcp_service_kit::{self as kit, Readiness};
use metrics::Metrics;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use store::{Backend, Memory, Redis, StoreError};
use tokio::net::TcpListener;

pub use reload::reload;

/// Default for [`Settings::memory_capacity`].
pub const MEMORY_CAPACITY: usize = 1_000_000;

#[derive(Debug, Clone)]
pub struct Settings {
    /// A configuration file or a directory of them (`*.yaml`, `*.yml`).
    pub config: PathBuf,
    /// `redis://...` to share counters between replicas; in memory otherwise.
    pub redis_url: Option<String>,
    /// Entries (counters plus distinct values seen, about 100 bytes each) the memory
    /// store makes for requests at most; past it new requests share overflow counters
    /// (see [`store::Memory`]). Unused with Redis.
    pub memory_capacity: usize,
}

impl Settings {
    /// In memory, with the default capacity.
    pub fn new(config: impl Into<PathBuf>) -> Settings {
        Settings {
            config: config.into(),
            redis_url: None,
            memory_capacity: MEMORY_CAPACITY,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Serve(#[from] kit::ServeError),
}

/// Loads the configuration (an invalid one stops startup) and sets up the store.
pub fn build(settings: &Settings) -> Result<Arc<Limiter>, StartError> {
    let config = Config::load(&settings.config)?;
    let clock = SystemClock;
    let store = match &settings.redis_url {
        Some(url) => Backend::Redis(Redis::new(url)?),
        None => Backend::Memory(Memory::new(settings.memory_capacity, || {
            limiter::Clock::now(&SystemClock)
        })),
    };
    Ok(Arc::new(Limiter {
        config: RwLock::new(Arc::new(config)),
        store,
        clock: Box::new(clock),
        metrics: Arc::new(Metrics::default()),
    }))
}

/// Serves gRPC (RLS + health) and HTTP (`/metrics`, `/ready`) until `shutdown`.
///
/// Ready (gRPC health and `/ready`) once the configuration is in force: [`build`]
/// loaded it (an invalid one stops startup), so from the start here, through the
/// same readiness the authz-service uses.
pub async fn serve(
    limiter: Arc<Limiter>,
    settings: &Settings,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let readiness =
        Readiness::new::<RateLimitServiceServer<RateLimitGrpc>>("no configuration loaded").await;
    let _watcher = reload::watch(limiter.clone(), settings.config.clone());
    // A `Limiter` always holds a configuration that loaded; ready once reloads are
    // watched too, so a change made after readiness is never missed.
    readiness.set_ready().await;
    let _sweeper = {
        let limiter = limiter.clone();
        kit::every(Duration::from_secs(5), move || {
            match &limiter.store {
                Backend::Memory(memory) => memory.sweep(),
                Backend::Redis(redis) => redis.sweep(limiter.clock.now()),
            }
            std::future::ready(())
        })
    };
    let app = http::router(&limiter, readiness.clone());
    let listeners = kit::Listeners {
        grpc: grpc_listener,
        http: http_listener,
    };
    let service = RateLimitServiceServer::new(RateLimitGrpc { limiter });
    kit::serve(listeners, &readiness, service, app, shutdown).await?;
    Ok(())
}
