//! Files a manifest names (a tool's `schema_ref`, a `{file:}` credential): always inside
//! the fleet directory, regular, and small.
//!
//! A manifest is written by a team, and `render` runs with the platform's rights: a
//! reference that could leave the fleet directory would let one team read what the
//! machine running `render` can read (another team's credential, the authz-service's
//! session key) and have it rendered into the gateway's configuration. So the name is
//! a relative path of plain segments (no `..`, no absolute path), the file must be a
//! regular file (not a FIFO that hangs `validate`, not `/dev/zero`), at most
//! [`MAX_FILE_BYTES`], and what it resolves to (symbolic links followed) must still be
//! inside the fleet directory.

use std::path::{Path, PathBuf};

/// Largest file a manifest may name.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// A path segment that means itself wherever it goes: not empty, not `.` or `..`, of
/// ASCII letters, digits, `.`, `_`, `-` and the `extra` bytes.
pub fn plain_segment(segment: &str, extra: &[u8]) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') || extra.contains(&b)
        })
}

/// The file `shown` names, relative to the fleet directory `base`, once it passed every
/// rule above.
pub fn resolve(base: &Path, shown: &str) -> Result<PathBuf, String> {
    if !shown.split('/').all(|segment| plain_segment(segment, b"")) {
        return Err(format!(
            "{shown:?} must be a relative path inside the fleet directory (segments of A-Z a-z 0-9 . _ -, no ..)"
        ));
    }
    let file = base.join(shown);
    let metadata = std::fs::metadata(&file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{shown} does not exist"),
        _ => format!("cannot read {shown}: {e}"),
    })?;
    if !metadata.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{shown} is larger than {} KiB",
            MAX_FILE_BYTES / 1024
        ));
    }
    let inside = match (file.canonicalize(), base.canonicalize()) {
        (Ok(real), Ok(root)) => real.starts_with(root),
        _ => false,
    };
    if !inside {
        return Err(format!(
            "{shown} leads outside the fleet directory (a symbolic link)"
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_files_inside_the_fleet() {
        let fleet = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(fleet.path().join("schemas")).unwrap();
        std::fs::write(fleet.path().join("schemas/ok.json"), "{}").unwrap();
        std::fs::write(outside.path().join("secret"), "Bearer x").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            fleet.path().join("schemas/link.json"),
        )
        .unwrap();
        std::fs::write(
            fleet.path().join("big.json"),
            vec![b' '; MAX_FILE_BYTES as usize + 1],
        )
        .unwrap();
        let base = fleet.path();
        assert!(resolve(base, "schemas/ok.json").is_ok());
        for (shown, reason) in [
            ("../x.json", "relative path inside"),
            ("/etc/passwd", "relative path inside"),
            ("schemas/../schemas/ok.json", "relative path inside"),
            ("schemas//ok.json", "relative path inside"),
            ("schemas/absent.json", "does not exist"),
            ("schemas", "not a regular file"),
            ("big.json", "larger than 1024 KiB"),
            ("schemas/link.json", "outside the fleet directory"),
        ] {
            let error = resolve(base, shown).unwrap_err();
            assert!(error.contains(reason), "{shown}: {error}");
        }
    }
}
