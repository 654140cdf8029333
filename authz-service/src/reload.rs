//! Hot reload of the policy and the session key file: a change that loads replaces
//! what is in force; one that does not is logged and counted, and the last good
//! version stays.

use crate::check::Authorizer;
use crate::policy::Policy;
use crate::session_keys::SessionKeys;
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What a watched file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    Policy,
    SessionKeys,
}

/// Reloads `path` into `authorizer`; returns whether the new contents took effect.
pub fn reload(authorizer: &Authorizer, what: Watched, path: &Path) -> bool {
    let file = path.display();
    match what {
        Watched::Policy => match Policy::load(path) {
            Ok(policy) => {
                authorizer.set_policy(policy);
                tracing::info!(%file, "policy reloaded");
                true
            }
            Err(error) => {
                authorizer.metrics.policy_reload_failures.inc();
                tracing::error!(%error, "policy reload refused; keeping the last good policy");
                false
            }
        },
        Watched::SessionKeys => match SessionKeys::load(path) {
            Ok(keys) => {
                let count = keys.len();
                authorizer.set_session_keys(keys);
                tracing::info!(%file, keys = count, "session keys reloaded");
                true
            }
            Err(error) => {
                authorizer.metrics.session_key_reload_failures.inc();
                tracing::error!(%error, "session key reload refused; keeping the last good keys");
                false
            }
        },
    }
}

/// True when a change at `changed` may have replaced `file`: the file itself (an
/// editor's rename over it, an in-place write), or the `..data` / `..<timestamp>`
/// entries through which Kubernetes swaps a mounted ConfigMap or Secret atomically.
/// Other files (logs in the same directory, say) do not count. Names alone are
/// compared: events come from the watched directories only, and how the watcher
/// spells their paths (relative, canonical) does not matter.
fn touches(changed: &Path, file: &Path) -> bool {
    match (changed.file_name(), file.file_name()) {
        (Some(name), Some(target)) => name == target || name.as_encoded_bytes().starts_with(b".."),
        _ => false,
    }
}

/// Watches the directory of each file (editors and Kubernetes replace files rather
/// than write them in place, so the files themselves are not watched) and reloads a
/// file after changes that touch it settle. Runs until the returned watcher is dropped.
pub fn watch(
    authorizer: Arc<Authorizer>,
    files: Vec<(Watched, PathBuf)>,
) -> notify::Result<notify::RecommendedWatcher> {
    // The paths of each event; empty when the watcher lost track (rescan): all files.
    let (events, mut changes) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let _ = events.send(event.paths);
        }
    })?;
    let dirs: BTreeSet<&Path> = files
        .iter()
        .map(|(_, path)| {
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
        })
        .collect();
    for dir in dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(async move {
        while let Some(first) = changes.recv().await {
            // Let a burst of events (write, rename, chmod) settle into one reload.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut batch = vec![first];
            while let Ok(more) = changes.try_recv() {
                batch.push(more);
            }
            for (what, file) in &files {
                let touched = batch
                    .iter()
                    .any(|paths| paths.is_empty() || paths.iter().any(|p| touches(p, file)));
                if touched {
                    reload(&authorizer, *what, file);
                }
            }
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::touches;
    use std::path::Path;

    #[test]
    fn only_changes_that_can_replace_the_file_count() {
        let file = Path::new("/etc/mcp/policy.yaml");
        for (changed, expected) in [
            ("/etc/mcp/policy.yaml", true),
            ("policy.yaml", true),
            ("/etc/mcp/..data", true),
            ("/etc/mcp/..2026_01_01_00_00_00.123", true),
            ("/etc/mcp/authz.log", false),
            ("/etc/mcp/policy.yaml.tmp", false),
            ("/etc/mcp", false),
        ] {
            assert_eq!(touches(Path::new(changed), file), expected, "{changed}");
        }
    }
}
