use super::*;
use crate::model::Credential;
use std::time::Duration;

const SCHEMA: &str = r#"{"type":"object"}"#;

/// A manifest in a temporary directory with one schema beside it.
fn load(text: &str) -> Result<Server, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.json"), SCHEMA).unwrap();
    let file = dir.path().join("m.yaml");
    manifest(&file, text).map_err(|problems| {
        problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.reason))
            .collect()
    })
}

const MINIMAL: &str = r#"
server_id: svc
version: "1.0"
transport: http_sse
endpoint: https://mcp.internal/v1/mcp/
tools: [{name: a.b-c_D, schema_ref: s.json}]
owner: me@company.com
on_call_runbook: http://wiki/runbook
"#;

#[test]
fn a_minimal_manifest_gets_the_defaults() {
    let server = load(MINIMAL).unwrap();
    assert_eq!(server.id(), "svc");
    assert_eq!(server.transport, Transport::HttpSse);
    assert_eq!(server.path, "/svc/mcp");
    assert_eq!(server.endpoint.scheme, "https");
    assert_eq!(server.endpoint.host, "mcp.internal");
    assert_eq!(server.endpoint.port, 443);
    assert_eq!(server.endpoint.path, "/v1/mcp/");
    assert!(server.endpoint.is_tls());
    assert_eq!(server.tools[0].name, "a.b-c_D");
    assert_eq!(
        server.tools[0].input_schema,
        serde_json::json!({"type": "object"})
    );
    assert!(server.rate_limits.is_empty());
    assert_eq!(server.timeouts, Timeouts::default());
    assert_eq!(server.upstream_credential, None);
}

#[test]
fn the_gateway_section_is_read_into_the_model() {
    let text = format!(
        "{MINIMAL}gateway:\n  path: /x/mcp\n  timeouts: {{request: 0s, idle: 500ms}}\n  upstream_credential: {{secret: s-1, key: k}}\n  rate_limits:\n    default: {{unit: MINUTE, requests_per_unit: 7}}\n    tools:\n      a.b-c_D: {{unit: Hour, requests_per_unit: 1}}\n"
    );
    let server = load(&text).unwrap();
    assert_eq!(server.path, "/x/mcp");
    assert_eq!(server.timeouts.request, Some(Duration::ZERO));
    assert_eq!(server.timeouts.idle, Some(Duration::from_millis(500)));
    assert_eq!(
        server.upstream_credential,
        Some(Credential::Secret {
            name: "s-1".into(),
            key: "k".into()
        })
    );
    // Units in any case, as the ratelimit-service reads them.
    assert_eq!(
        server.rate_limits.default,
        Some(Rate {
            unit: Unit::Minute,
            requests_per_unit: 7
        })
    );
    assert_eq!(server.rate_limits.tools["a.b-c_D"].unit, Unit::Hour);
}

#[test]
fn endpoints_keep_explicit_ports_and_ipv6_hosts() {
    let text = MINIMAL.replace("https://mcp.internal/v1/mcp/", "http://[::1]:9000");
    let server = load(&text).unwrap();
    assert_eq!(server.endpoint.host, "::1");
    assert_eq!(server.endpoint.port, 9000);
    assert_eq!(server.endpoint.path, "/");
}

#[test]
fn a_file_credential_resolves_against_the_manifest_directory() {
    let server = load(&format!(
        "{MINIMAL}gateway:\n  upstream_credential: {{file: creds/svc}}\n"
    ))
    .unwrap();
    match server.upstream_credential {
        Some(Credential::File { path, resolved }) => {
            assert_eq!(path, "creds/svc");
            assert!(resolved.ends_with("creds/svc") && resolved.is_absolute());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tool_names_follow_mcp() {
    assert!(is_tool_name("get_account_balance"));
    assert!(is_tool_name("admin.tools.list-v2"));
    assert!(is_tool_name(&"x".repeat(128)));
    for bad in [
        "",
        "get balance",
        "user/update",
        "naïve",
        "a,b",
        &"x".repeat(129),
    ] {
        assert!(!is_tool_name(bad), "{bad:?} accepted");
    }
}

#[test]
fn scope_tokens_follow_rfc_6750() {
    assert!(is_scope_token("mcp.server.financial-data:tools.write"));
    for bad in ["", "a b", "a\"b", "a\\b", "é"] {
        assert!(!is_scope_token(bad), "{bad:?} accepted");
    }
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let text = "server_id: svc\ntools: []\ngateway:\n  timeouts: {request: x}\n";
    assert_eq!(
        load(text).unwrap_err(),
        [
            "version: missing (a quoted string, e.g. \"1.3.2\")",
            "transport: missing (streamable_http or http_sse)",
            "endpoint: missing",
            "owner: missing",
            "on_call_runbook: missing (an http or https URL)",
            "gateway.timeouts.request: \"x\" is not a duration (a whole number and ms, s, m or h: 500ms, 15s, 5m, 0s)",
        ]
    );
}

#[test]
fn an_empty_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let problems = crate::Fleet::load(dir.path()).unwrap_err();
    assert_eq!(
        problems.to_string(),
        format!(
            "{}: no *.yaml manifest in this directory",
            dir.path().display()
        )
    );
}
