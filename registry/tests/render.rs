//! `render` of the example fleet (`examples/`): byte for byte against
//! `tests/golden/` (`UPDATE_GOLDEN=1 cargo test -p mcp-registry --test render`
//! rewrites them), and each output loaded by the service that reads it.

use mcp_authz_service::policy::{Call, Policy};
use mcp_ratelimit_service::config::{Config, Unit};
use mcp_registry::render::{self, Options, Output};
use mcp_registry::Fleet;
use std::path::{Path, PathBuf};

fn fleet() -> Fleet {
    Fleet::load(Path::new("examples")).unwrap_or_else(|p| panic!("{p}"))
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn files_under(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, base, out);
        } else {
            out.push(path.strip_prefix(base).unwrap().to_owned());
        }
    }
}

#[test]
fn the_example_fleet_renders_as_the_golden_files() {
    let golden = golden_dir();
    // Rendered as if into the golden directory, so relative credential paths are
    // the same wherever the checkout is; Envoy's directory is given, since its
    // default is absolute (the checkout's location would end up in the files).
    let options = Options {
        envoy_dir: Some(PathBuf::from("/etc/mcp-gateway/envoy")),
        ..Options::new(&golden)
    };
    let outputs = render::render(&fleet(), &options);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&golden);
        for Output { path, text } in &outputs {
            let file = golden.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
    }
    let mut stale = Vec::new();
    files_under(&golden, &golden, &mut stale);
    stale.sort();
    let mut rendered: Vec<PathBuf> = outputs.iter().map(|o| o.path.clone()).collect();
    rendered.sort();
    assert_eq!(
        stale, rendered,
        "golden files and rendered outputs differ in names"
    );
    for output in &outputs {
        let expected = std::fs::read_to_string(golden.join(&output.path)).unwrap();
        assert!(
            output.text == expected,
            "{} differs from its golden file (UPDATE_GOLDEN=1 rewrites it):\n{}",
            output.path.display(),
            output.text
        );
    }
}

/// The outputs written into a temporary directory, with the `{secret:}` credential
/// the example fleet references put where the policy expects it.
fn rendered() -> (tempfile::TempDir, Vec<Output>) {
    let out = tempfile::tempdir().unwrap();
    let credentials = out.path().join("credentials");
    std::fs::create_dir_all(credentials.join("hr-directory")).unwrap();
    std::fs::write(
        credentials.join("hr-directory/authorization"),
        "Bearer hr\n",
    )
    .unwrap();
    let options = Options {
        out_dir: out.path().to_owned(),
        credentials_dir: credentials,
        envoy_dir: None,
    };
    let outputs = render::render(&fleet(), &options);
    for output in &outputs {
        let file = out.path().join(&output.path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, &output.text).unwrap();
    }
    (out, outputs)
}

fn call<'a>(server: &'a str, tool: &'a str) -> Call<'a> {
    Call {
        server: Some(server),
        method: Some("tools/call"),
        tool: Some(tool),
    }
}

#[test]
fn the_authz_service_loads_the_rendered_policy() {
    let (out, _) = rendered();
    let policy = Policy::load(&out.path().join("policy.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        policy
            .required_scopes(&call("financial-data", "transfer_funds"))
            .unwrap(),
        [
            "mcp.server.financial-data:tools.read",
            "mcp.server.financial-data:tools.write"
        ]
    );
    assert_eq!(
        policy
            .required_scopes(&call("weather", "get_forecast"))
            .unwrap(),
        ["mcp.server.weather:tools.read"]
    );
    // Registered means reachable; nothing else is.
    assert!(policy
        .required_scopes(&call("weather", "transfer_funds"))
        .is_err());
    assert!(policy
        .required_scopes(&call("payroll", "get_forecast"))
        .is_err());
    // The {file:} credential, found through its path relative to the policy file.
    assert_eq!(
        policy.upstream_credential(Some("financial-data")),
        Some("Bearer demo-upstream-token-not-a-secret")
    );
    assert_eq!(
        policy.upstream_credential(Some("hr-directory")),
        Some("Bearer hr")
    );
    assert_eq!(policy.upstream_credential(Some("weather")), None);
}

#[test]
fn the_ratelimit_service_loads_the_rendered_limits() {
    let (out, _) = rendered();
    let config = Config::load(&out.path().join("limits")).unwrap_or_else(|e| panic!("{e}"));
    let rate = |server: &str, tool: &str, agent: &str| {
        config
            .find(
                "mcp_gateway",
                &[
                    ("server_id", server),
                    ("tool_call", tool),
                    ("agent_id", agent),
                ],
            )
            .and_then(|limit| limit.rate())
            .map(|rate| (rate.unit, rate.requests_per_unit))
    };
    // A tool's own limit wins over the per-agent ones ...
    assert_eq!(
        rate("financial-data", "generate_report", "agent-prod-001"),
        Some((Unit::Minute, 10))
    );
    // ... a listed agent over the default ...
    assert_eq!(
        rate("financial-data", "query_transactions", "agent-prod-001"),
        Some((Unit::Minute, 120))
    );
    assert_eq!(
        rate("financial-data", "query_transactions", "agent-x"),
        Some((Unit::Minute, 600))
    );
    assert_eq!(
        rate("hr-directory", "find_employee", "agent-x"),
        Some((Unit::Minute, 60))
    );
    // ... and a server's limits never apply to another server's calls.
    assert_eq!(
        rate("weather", "get_alerts", "agent-x"),
        Some((Unit::Second, 5))
    );
    assert_eq!(rate("weather", "get_forecast", "agent-x"), None);
}

#[test]
fn the_configmaps_carry_the_same_limits_and_a_policy_for_the_mounted_credentials() {
    let (_, outputs) = rendered();
    let text = |name: &str| {
        &outputs
            .iter()
            .find(|o| o.path == Path::new(name))
            .unwrap()
            .text
    };
    let docs: Vec<serde_norway::Value> =
        serde_norway::Deserializer::from_str(text("kubernetes/configmaps.yaml"))
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
    assert_eq!(docs.len(), 2);
    let data = |index: usize, key: &str| docs[index]["data"][key].as_str().unwrap().to_owned();
    assert_eq!(
        docs[0]["metadata"]["name"].as_str(),
        Some("mcp-authz-policy")
    );
    assert_eq!(
        docs[1]["metadata"]["name"].as_str(),
        Some("mcp-ratelimit-config")
    );
    assert_eq!(
        docs[1]["metadata"]["namespace"].as_str(),
        Some("mcp-gateway")
    );
    assert_eq!(&data(1, "limits.yaml"), text("limits/limits.yaml"));
    // The policy is whole; only the credential files are missing here, since they
    // are mounted in the pod.
    let error = Policy::parse(
        &data(0, "policy.yaml"),
        Path::new("/etc/mcp-authz/policy.yaml"),
    )
    .unwrap_err();
    assert_eq!(
        error.problems,
        [
            "servers.financial-data.upstream_credential_file: cannot read /etc/mcp-gateway/credentials/financial-data/financial-data: No such file or directory (os error 2)",
            "servers.hr-directory.upstream_credential_file: cannot read /etc/mcp-gateway/credentials/hr-directory/authorization: No such file or directory (os error 2)",
        ]
    );
}

/// Manifest text a team controls, at its most awkward but still valid (non-ASCII and
/// control characters where the rules let them through, YAML's special words and
/// characters), renders into files the services read back to exactly what the
/// manifest said: nothing ends a line early or turns into configuration.
#[test]
fn awkward_manifest_text_reads_back_as_written() {
    let fleet_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(fleet_dir.path().join("schemas")).unwrap();
    std::fs::write(
        fleet_dir.path().join("schemas/s.json"),
        r#"{"type":"object"}"#,
    )
    .unwrap();
    let method = "x/\u{7f}del\u{fffe}";
    let manifest = "server_id: \"true\"\nversion: \"1.0\"\ntransport: streamable_http\nendpoint: http://mcp.internal/mcp\ntools: [{name: \"null\", schema_ref: schemas/s.json}]\nowner: \"Zoë # \\\"quoted\\\": {a: b}\"\nsla_tier: \"*tier ! &1\"\non_call_runbook: https://wiki/x\ngateway:\n  scopes:\n    methods: {\"x/\\x7fdel\\ufffe\": [\"a:b\"]}\n  rate_limits:\n    agents: {\"agent:#1\": {unit: minute, requests_per_unit: 1}}\n";
    std::fs::write(fleet_dir.path().join("a.yaml"), manifest).unwrap();
    let fleet = Fleet::load(fleet_dir.path()).unwrap_or_else(|p| panic!("{p}"));
    let out = tempfile::tempdir().unwrap();
    for output in render::render(&fleet, &Options::new(out.path())) {
        let file = out.path().join(&output.path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, &output.text).unwrap();
    }
    let policy = Policy::load(&out.path().join("policy.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let server = policy.server("true").expect("the server, under its id");
    assert_eq!(server.methods().get(method), Some(&vec!["a:b".to_owned()]));
    assert_eq!(server.tools().keys().collect::<Vec<_>>(), ["null"]);
    let limits = Config::load(&out.path().join("limits")).unwrap_or_else(|e| panic!("{e}"));
    assert!(format!("{limits:?}").contains("agent:#1"));
}
