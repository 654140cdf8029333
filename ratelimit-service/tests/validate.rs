//! `--validate` as users run it: exit status and messages with file, key and reason
//! (the `--validate` mechanics are `mcp_service_kit::cli`'s; this pins the
//! ratelimit-service's own messages).

use mcp_service_kit::testing::{invalid, valid, validate};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-ratelimit-service");

#[test]
fn validate_reports_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: MINUTE, requests_per_unit: 5}\n").unwrap();
    assert_eq!(validate(BIN, &good), valid(&good));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: weekly, requests_per_unit: 5}\n").unwrap();
    assert_eq!(
        validate(BIN, &bad),
        invalid(format!("{}: descriptors[0].rate_limit.unit: \"weekly\" is not one of second, minute, hour, day\n", bad.display()))
    );
}
