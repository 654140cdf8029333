//! Hot reload of the configuration file or directory (the watching, settling and
//! last-good rule are `mcp_service_kit::reload`'s).

use crate::config::Config;
use crate::grpc::Limiter;
use mcp_service_kit::reload::{self as kit, Watched};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reloads the configuration; a bad one is reported and the last good one stays.
/// Reads files synchronously: call it off the async runtime threads.
pub fn reload(limiter: &Limiter, path: &Path) -> bool {
    kit::reload(
        "rate limit configuration",
        path,
        Config::load,
        |config| limiter.set_config(config),
        &limiter.metrics.config_reload_failures,
    )
}

/// Watches the configuration (a directory itself, a file through its directory);
/// runs until the returned watcher is dropped (`None`: hot reload is off, logged).
pub fn watch(limiter: Arc<Limiter>, path: PathBuf) -> Option<notify::RecommendedWatcher> {
    kit::watch(vec![Watched::new(path, move |path| {
        reload(&limiter, path);
    })])
}
