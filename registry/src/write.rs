//! Writing rendered files the way file watchers need: Envoy and the two services
//! watch their files and reload on change, so a reader must never see half a file
//! (temporary file in the same directory, then `rename`, which replaces the old file
//! in one step on POSIX), and a file whose content did not change is left alone (no
//! pointless reload, no new inode).

use std::io::Write;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The file was new or its content changed.
    Wrote,
    /// The file already held exactly this content.
    Unchanged,
}

/// Writes `text` to `path` atomically unless the file already holds it.
pub fn write_if_changed(path: &Path, text: &str) -> std::io::Result<Written> {
    match std::fs::read(path) {
        Ok(existing) if existing == text.as_bytes() => return Ok(Written::Unchanged),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Same directory, so the rename stays on one file system; a leading dot and a
    // suffix that no watcher's `*.yaml` pattern matches.
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.map(|()| Written::Wrote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_new_files_replaces_changed_ones_and_leaves_unchanged_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/a.yaml");
        assert_eq!(write_if_changed(&file, "one\n").unwrap(), Written::Wrote);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "one\n");
        let inode = std::fs::metadata(&file).unwrap().ino();
        assert_eq!(
            write_if_changed(&file, "one\n").unwrap(),
            Written::Unchanged
        );
        assert_eq!(std::fs::metadata(&file).unwrap().ino(), inode);
        assert_eq!(write_if_changed(&file, "two\n").unwrap(), Written::Wrote);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "two\n");
        // A rename, not an in-place rewrite: a reader holding the old file keeps it.
        assert_ne!(std::fs::metadata(&file).unwrap().ino(), inode);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(left.len(), 1, "temporary file left behind");
    }
}
