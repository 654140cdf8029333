//! `--validate` and startup errors as users meet them: exit status and messages with
//! file, field and reason (the `--validate` mechanics are `mcp_service_kit::cli`'s;
//! these pin the authz-service's own messages).

use mcp_service_kit::testing::{invalid, valid, validate};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-authz-service");

#[test]
fn validate_reports_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("policy.yaml");
    std::fs::write(&good, "servers:\n  fd:\n    tools:\n      t: []\n").unwrap();
    assert_eq!(validate(BIN, &good), valid(&good));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "servers:\n  fd:\n    tools:\n      t: [\"two words\"]\n",
    )
    .unwrap();
    assert_eq!(
        validate(BIN, &bad),
        invalid(format!(
            "{}: servers.fd.tools.t: \"two words\" is not a valid OAuth scope token\n",
            bad.display()
        ))
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
        Command::new(BIN)
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

/// The binary refuses to start on a schemas file that does not compile, naming the
/// file, the field and the reason (and every bad tool, not only the first).
#[test]
fn a_bad_schemas_file_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "servers: {}\n").unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "0123456789abcdef0123456789abcdef\n").unwrap();
    let schemas = dir.path().join("schemas.json");
    std::fs::write(
        &schemas,
        r#"{"servers": {"fd": {"validation": "enforce", "tools": {"a": {"type": "nope"}, "b": 7}}}}"#,
    )
    .unwrap();
    let output = Command::new(BIN)
        .arg("--policy")
        .arg(&policy)
        .arg("--session-key-file")
        .arg(&keys)
        .arg("--schemas")
        .arg(&schemas)
        .args([
            "--resource",
            "https://gw.test/mcp",
            "--issuer",
            "https://idp.test",
        ])
        .args(["--jwks-file", "/nonexistent/jwks.json"])
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let file = schemas.display();
    assert!(
        stderr.starts_with(&format!("mcp-authz-service: {file}: servers.fd.tools.a: ")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "\n{file}: servers.fd.tools.b: a JSON Schema is an object or a boolean"
        )),
        "{stderr}"
    );
}
