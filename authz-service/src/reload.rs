//! Hot reload of the policy file: a change that parses replaces the policy; one that
//! does not is logged and counted, and the last good policy stays in force.

use crate::check::Authorizer;
use crate::policy::Policy;
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Reloads `path` into `authorizer`; returns whether the new policy took effect.
pub fn reload(authorizer: &Authorizer, path: &Path) -> bool {
    match Policy::load(path) {
        Ok(policy) => {
            authorizer.set_policy(policy);
            tracing::info!(file = %path.display(), "policy reloaded");
            true
        }
        Err(error) => {
            authorizer.metrics.policy_reload_failures.inc();
            tracing::error!(%error, "policy reload refused; keeping the last good policy");
            false
        }
    }
}

/// Watches the policy file's directory (editors and Kubernetes ConfigMaps replace
/// files rather than write them in place, so the file itself is not watched) and
/// reloads after changes settle. Runs until the returned watcher is dropped.
pub fn watch(
    authorizer: Arc<Authorizer>,
    path: PathBuf,
) -> notify::Result<notify::RecommendedWatcher> {
    let (events, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = events.send(());
        }
    })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            // Let a burst of events (write, rename, chmod) settle into one reload.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while changes.try_recv().is_ok() {}
            reload(&authorizer, &path);
        }
    });
    Ok(watcher)
}
