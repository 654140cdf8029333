//! `--validate` as users run it: exit status and messages with file, field and reason.

use std::process::Command;

#[test]
fn validate_reports_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("policy.yaml");
    std::fs::write(&good, "servers:\n  fd:\n    tools:\n      t: []\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-authz-service"))
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
    std::fs::write(
        &bad,
        "servers:\n  fd:\n    tools:\n      t: [\"two words\"]\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-authz-service"))
        .arg("--validate")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "{}: servers.fd.tools.t: \"two words\" is not a valid OAuth scope token\n",
            bad.display()
        )
    );
}
