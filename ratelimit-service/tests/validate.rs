//! `--validate` as users run it: exit status and messages with file, key and reason.

use std::process::Command;

#[test]
fn validate_reports_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: MINUTE, requests_per_unit: 5}\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-ratelimit-service"))
        .arg("--validate")
        .arg(&good)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{}: OK\n", good.display())
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: weekly, requests_per_unit: 5}\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-ratelimit-service"))
        .arg("--validate")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!("{}: descriptors[0].rate_limit.unit: \"weekly\" is not one of second, minute, hour, day\n", bad.display())
    );
}
