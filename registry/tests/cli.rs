//! The `mcp-registry` binary run as a user runs it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

fn registry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcp-registry"))
        .args(args)
        .output()
        .expect("cannot run mcp-registry")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_reports_the_fleet_size() {
    let out = registry(&["validate", "examples"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "examples: 3 servers OK\n");
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn validate_prints_every_problem_and_fails() {
    let dir = "tests/fixtures/invalid/every_problem_in_one_pass";
    let out = registry(&["validate", dir]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let expected = std::fs::read_to_string(Path::new(dir).join("expected.txt")).unwrap();
    assert_eq!(text(&out.stderr), expected);
}

/// The example fleet copied where a test may change it.
fn copy_examples(to: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy(&path, &target);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }
    copy(Path::new("examples"), to);
}

fn render(fleet: &Path, out: &Path) -> Output {
    registry(&[
        "render",
        fleet.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--envoy-dir",
        "/etc/mcp-gateway/envoy",
    ])
}

/// Every rendered file with its inode and modification time.
fn snapshot(out: &Path) -> Vec<(String, u64, i64, i64)> {
    let mut files = Vec::new();
    let mut dirs = vec![out.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let meta = std::fs::metadata(&path).unwrap();
                let name = path.strip_prefix(out).unwrap().display().to_string();
                files.push((name, meta.ino(), meta.mtime(), meta.mtime_nsec()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn render_writes_every_file_then_only_what_changed() {
    let work = tempfile::tempdir().unwrap();
    let fleet = work.path().join("fleet");
    let out = work.path().join("out");
    copy_examples(&fleet);

    let first = render(&fleet, &out);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let wrote = text(&first.stdout);
    for name in [
        "policy.yaml",
        "limits/limits.yaml",
        "kubernetes/configmaps.yaml",
    ] {
        let file = out.join(name);
        assert!(
            wrote.contains(&format!("wrote {}\n", file.display())),
            "{wrote}"
        );
        assert!(file.is_file());
    }
    let before = snapshot(&out);
    assert_eq!(
        wrote.lines().count(),
        before.len(),
        "one line per written file"
    );

    // Nothing changed: nothing written, every file the same inode and mtime.
    let again = render(&fleet, &out);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(text(&again.stdout), "");
    assert_eq!(snapshot(&out), before);

    // A new limit for weather: the limits and the ConfigMaps are replaced (new
    // inode: renamed into place), the policy is left alone.
    let manifest = fleet.join("weather.yaml");
    let changed = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("requests_per_unit: 5}", "requests_per_unit: 6}");
    std::fs::write(&manifest, changed).unwrap();
    let third = render(&fleet, &out);
    assert_eq!(third.status.code(), Some(0), "{}", text(&third.stderr));
    assert_eq!(
        text(&third.stdout),
        format!(
            "wrote {}\nwrote {}\n",
            out.join("limits/limits.yaml").display(),
            out.join("kubernetes/configmaps.yaml").display()
        )
    );
    let after = snapshot(&out);
    let find = |files: &[(String, u64, i64, i64)], name: &str| {
        files.iter().find(|f| f.0 == name).unwrap().clone()
    };
    assert_eq!(find(&after, "policy.yaml"), find(&before, "policy.yaml"));
    assert_ne!(
        find(&after, "limits/limits.yaml").1,
        find(&before, "limits/limits.yaml").1
    );
    assert!(std::fs::read_to_string(out.join("limits/limits.yaml"))
        .unwrap()
        .contains("requests_per_unit: 6}"));
    // No temporary file left next to the outputs.
    assert_eq!(after.len(), before.len());
}

#[test]
fn render_writes_nothing_when_a_manifest_is_invalid() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let result = render(Path::new("tests/fixtures/invalid/missing_owner"), &out);
    assert_eq!(result.status.code(), Some(1));
    assert_eq!(
        text(&result.stderr),
        "tests/fixtures/invalid/missing_owner/svc.yaml: owner: missing\n"
    );
    assert!(!out.exists());
}

/// A short endpoint host works for compose and plain Envoy, but istiod would resolve
/// it in istio-system: render says so, and still renders.
#[test]
fn render_notes_a_short_endpoint_host_for_istio() {
    let work = tempfile::tempdir().unwrap();
    let fleet = work.path().join("fleet");
    let out = work.path().join("out");
    copy_examples(&fleet);
    let manifest = fleet.join("weather.yaml");
    let text_of = std::fs::read_to_string(&manifest).unwrap();
    let endpoint = text_of
        .lines()
        .find(|l| l.starts_with("endpoint:"))
        .unwrap()
        .to_owned();
    std::fs::write(
        &manifest,
        text_of.replace(&endpoint, "endpoint: http://weather-mcp:8000/mcp"),
    )
    .unwrap();
    let done = render(&fleet, &out);
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    assert_eq!(
        text(&done.stderr),
        "note: weather: istio/: the stable endpoint's host \"weather-mcp\" is a short name, which istiod resolves in the VirtualService's namespace (istio-system); for Istio write <service>.<namespace>.svc.cluster.local\n"
    );
    // The examples name full hosts: no note.
    let examples = render(Path::new("examples"), &work.path().join("out2"));
    assert_eq!(text(&examples.stderr), "");
}
