//! Hot reload: a change that loads replaces what is in force; one that does not is
//! logged and counted, and the last good version stays.
//!
//! Directories are watched, not files: editors and Kubernetes replace a file (write a
//! new one, rename it over the old; ConfigMaps and Secrets swap a `..data` link)
//! rather than write it in place, and a watch on the old file would see nothing
//! after the first replacement.

use notify::{RecursiveMode, Watcher};
use prometheus_client::metrics::counter::Counter;
use std::collections::BTreeSet;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a burst of events (write, rename, chmod) may take to settle into one
/// reload: reloading on the first event could read a half-written file.
const SETTLE: Duration = Duration::from_millis(200);

type Load = Arc<dyn Fn(&Path) + Send + Sync>;

/// A file, or a directory of files, and what to do when it changes.
pub struct Watched {
    path: PathBuf,
    /// Whether `path` is a directory: then any change in it counts.
    directory: bool,
    load: Load,
}

impl Watched {
    /// `load` reads `path` and puts it in force (see [`reload`]); it runs on a
    /// blocking thread, so it may read files synchronously.
    pub fn new(path: PathBuf, load: impl Fn(&Path) + Send + Sync + 'static) -> Watched {
        Watched {
            directory: path.is_dir(),
            path,
            load: Arc::new(load),
        }
    }

    /// The directory whose events can change this.
    fn directory(&self) -> &Path {
        if self.directory {
            &self.path
        } else {
            self.path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
        }
    }

    /// Whether an event's paths may have changed this; no paths means the watcher
    /// lost track (a rescan), so everything counts. In a directory any entry counts
    /// (the watcher names them by joining the path it was given).
    fn touched_by(&self, paths: &[PathBuf]) -> bool {
        paths.is_empty()
            || paths.iter().any(|p| {
                if self.directory {
                    p.starts_with(&self.path)
                } else {
                    touches(p, &self.path)
                }
            })
    }
}

/// Loads `path` with `load` and hands the result to `apply`; returns whether it took
/// effect. A failure is logged with the loader's message (file, field, reason) and
/// counted on `failures`, so an alert can fire while the last good `what` stays.
pub fn reload<T, E: Display>(
    what: &str,
    path: &Path,
    load: impl FnOnce(&Path) -> Result<T, E>,
    apply: impl FnOnce(T),
    failures: &Counter,
) -> bool {
    match load(path) {
        Ok(value) => {
            apply(value);
            tracing::info!(path = %path.display(), "{what} reloaded");
            true
        }
        Err(error) => {
            failures.inc();
            tracing::error!(%error, "{what} reload refused; keeping the last good {what}");
            false
        }
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

/// Watches the directory of each entry and reloads an entry after changes that touch
/// it settle. Runs until the returned watcher is dropped. `None` when the platform
/// refuses the watch (inotify limits, say): logged, and the service runs on with what
/// it loaded at start, since a restart picks up changes too.
pub fn watch(entries: Vec<Watched>) -> Option<notify::RecommendedWatcher> {
    let paths: Vec<PathBuf> = entries.iter().map(|e| e.path.clone()).collect();
    try_watch(entries)
        .map_err(|error| tracing::warn!(%error, ?paths, "cannot watch; hot reload is off"))
        .ok()
}

fn try_watch(entries: Vec<Watched>) -> notify::Result<notify::RecommendedWatcher> {
    let (events, mut changes) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let _ = events.send(event.paths);
        }
    })?;
    let directories: BTreeSet<&Path> = entries.iter().map(Watched::directory).collect();
    for directory in directories {
        watcher.watch(directory, RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(async move {
        while let Some(first) = changes.recv().await {
            tokio::time::sleep(SETTLE).await;
            let mut batch = vec![first];
            while let Ok(more) = changes.try_recv() {
                batch.push(more);
            }
            for entry in &entries {
                if batch.iter().any(|paths| entry.touched_by(paths)) {
                    // Loading reads files: off the runtime threads, which serve
                    // requests meanwhile. One at a time, in order, so a later change
                    // never lands before an earlier one.
                    let (load, path) = (entry.load.clone(), entry.path.clone());
                    if let Err(error) = tokio::task::spawn_blocking(move || load(&path)).await {
                        tracing::error!(%error, "reload task failed");
                    }
                }
            }
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

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

    #[test]
    fn a_failed_reload_is_counted_and_not_applied() {
        let failures = Counter::default();
        let mut applied = Vec::new();
        let path = Path::new("x.yaml");
        assert!(reload(
            "x",
            path,
            |_| Ok::<_, String>(1),
            |v| applied.push(v),
            &failures
        ));
        assert!(!reload(
            "x",
            path,
            |_| Err::<i32, _>("bad".to_owned()),
            |v| applied.push(v),
            &failures
        ));
        assert_eq!((applied, failures.get()), (vec![1], 1));
    }

    async fn wait_for(count: &AtomicUsize, at_least: usize) -> bool {
        for _ in 0..100 {
            if count.load(Ordering::SeqCst) >= at_least {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// A file is reloaded when it is replaced, not when a neighbour changes; a
    /// directory on any change in it.
    #[tokio::test]
    async fn replaced_files_and_changed_directories_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.yaml");
        std::fs::write(&file, "a").unwrap();
        let sub = dir.path().join("limits");
        std::fs::create_dir(&sub).unwrap();
        let (file_loads, dir_loads) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let counter = |count: &Arc<AtomicUsize>| {
            let count = count.clone();
            move |_: &Path| {
                count.fetch_add(1, Ordering::SeqCst);
            }
        };
        let _watcher = watch(vec![
            Watched::new(file.clone(), counter(&file_loads)),
            Watched::new(sub.clone(), counter(&dir_loads)),
        ])
        .expect("watching a temporary directory");

        std::fs::write(dir.path().join("policy.tmp"), "b").unwrap();
        std::fs::rename(dir.path().join("policy.tmp"), &file).unwrap();
        assert!(
            wait_for(&file_loads, 1).await,
            "the replaced file was not reloaded"
        );

        std::fs::write(sub.join("more.yaml"), "c").unwrap();
        assert!(
            wait_for(&dir_loads, 1).await,
            "the changed directory was not reloaded"
        );

        // A neighbour of the file: its own event settles, and the file stays as is.
        let before = file_loads.load(Ordering::SeqCst);
        std::fs::write(dir.path().join("authz.log"), "d").unwrap();
        std::fs::write(sub.join("marker.yaml"), "e").unwrap();
        assert!(
            wait_for(&dir_loads, 2).await,
            "the marker change was not seen"
        );
        assert_eq!(file_loads.load(Ordering::SeqCst), before);
    }
}
