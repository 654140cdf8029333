//! MCP gateway rate limit service: an Envoy rate limit v3 gRPC server (RLS) that takes
//! global per-agent, per-tool decisions, with counters in memory (one replica) or in
//! Redis (several replicas sharing them).
//!
//! `main.rs` wires the CLI to [`Settings`], [`build`] and [`serve`]; tests bind port 0
//! and call the same functions.
#![forbid(unsafe_code)]

pub mod config;
pub mod grpc;
pub mod keys;
pub mod limiter;
pub mod metrics;
pub mod store;

use config::{Config, ConfigError};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use grpc::{Limiter, RateLimitGrpc};
use limiter::SystemClock;
use metrics::Metrics;
use notify::{RecursiveMode, Watcher};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use store::{Backend, Memory, Redis, StoreError};
use tokio::net::TcpListener;

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
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
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

/// Reloads the configuration; a bad one is reported and the last good one stays.
pub fn reload(limiter: &Limiter, path: &Path) -> bool {
    match Config::load(path) {
        Ok(config) => {
            limiter.set_config(config);
            tracing::info!(path = %path.display(), "rate limit configuration reloaded");
            true
        }
        Err(error) => {
            limiter.metrics.config_reload_failures.inc();
            tracing::error!(%error, "configuration reload refused; keeping the last good configuration");
            false
        }
    }
}

fn watch(limiter: Arc<Limiter>, path: PathBuf) -> notify::Result<notify::RecommendedWatcher> {
    let (events, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = events.send(());
        }
    })?;
    // A directory is watched itself; a single file through its directory (editors
    // and ConfigMaps replace files rather than write them in place).
    let watched = if path.is_dir() {
        path.clone()
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned()
    };
    watcher.watch(&watched, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            while changes.try_recv().is_ok() {}
            reload(&limiter, &path);
        }
    });
    Ok(watcher)
}

/// Serves gRPC (RLS + health) and HTTP (`/metrics`, `/ready`) until `shutdown`.
pub async fn serve(
    limiter: Arc<Limiter>,
    settings: &Settings,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<RateLimitServiceServer<RateLimitGrpc>>()
        .await;
    let _watcher = watch(limiter.clone(), settings.config.clone())
        .map_err(
            |error| tracing::warn!(%error, "cannot watch the configuration; hot reload is off"),
        )
        .ok();
    let sweeper = {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(5));
            loop {
                interval.tick().await;
                match &limiter.store {
                    Backend::Memory(memory) => memory.sweep(),
                    Backend::Redis(redis) => redis.sweep(limiter.clock.now()),
                }
            }
        })
    };
    let metrics = limiter.metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move { metrics.render() }
            }),
        )
        .route("/ready", axum::routing::get(|| async { "ready\n" }));
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        axum::serve(http_listener, app)
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .await
    });
    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(RateLimitServiceServer::new(RateLimitGrpc { limiter }))
        // TCP_NODELAY: tonic sets it only on listeners it binds itself. Without it, a
        // reply's HTTP/2 frames wait for Envoy's delayed ACK (Nagle): several ms added
        // to every check at low rates (BENCHMARKS.md).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    sweeper.abort();
    let _ = stop_http.send(());
    let _ = http.await;
    result.map_err(StartError::from)
}
