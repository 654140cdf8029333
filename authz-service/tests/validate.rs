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

/// The session key file is required, and a bad one stops startup with the file, the
/// line and the reason (before any port is opened).
#[test]
fn a_bad_session_key_file_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "servers: {}\n").unwrap();
    let keys = dir.path().join("session-keys");
    std::fs::write(&keys, "# demo\nshort-key\n").unwrap();
    let start = |extra: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_mcp-authz-service"))
            .arg("--policy")
            .arg(&policy)
            .args([
                "--resource",
                "https://gw.test/mcp",
                "--issuer",
                "https://idp.test",
            ])
            .args(["--jwks-file", "/nonexistent/jwks.json"])
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(extra)
            .output()
            .unwrap()
    };
    let output = start(&["--session-key-file".as_ref(), keys.as_os_str()]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "mcp-authz-service: {}:2: key is 9 bytes; a session key needs at least 32 (e.g. the output of `openssl rand -hex 32`)\n",
            keys.display()
        )
    );
    let output = start(&[]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "clap: a required flag is missing"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--session-key-file <FILE>"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
