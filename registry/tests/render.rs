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
    // The tool schemas ride in the policy's ConfigMap (one volume, swapped together).
    assert_eq!(&data(0, "schemas.json"), text("schemas.json"));
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

fn output<'a>(outputs: &'a [Output], name: &str) -> &'a str {
    &outputs
        .iter()
        .find(|o| o.path == Path::new(name))
        .unwrap_or_else(|| panic!("no {name}"))
        .text
}

/// `schemas.json`: every registered server with its validation mode, and every tool's
/// schema exactly as its `schema_ref` file holds it.
#[test]
fn schemas_json_holds_every_registered_schema_and_mode() {
    let fleet = fleet();
    let outputs = render::render(&fleet, &Options::new("/tmp/out"));
    let schemas: serde_json::Value =
        serde_json::from_str(output(&outputs, "schemas.json")).unwrap();
    let servers = schemas["servers"].as_object().unwrap();
    assert_eq!(
        servers.keys().collect::<Vec<_>>(),
        ["financial-data", "hr-directory", "weather"]
    );
    for server in &fleet.servers {
        let entry = &servers[server.id()];
        assert_eq!(entry["validation"], server.validation.as_str());
        let tools = entry["tools"].as_object().unwrap();
        assert_eq!(tools.len(), server.tools.len(), "{}", server.id());
        for tool in &server.tools {
            let file: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&tool.schema_file).unwrap()).unwrap();
            assert_eq!(tools[&tool.name], file, "{}/{}", server.id(), tool.name);
        }
    }
}

/// The route metadata's `schema_digests` are `input_hash` of the schemas the
/// authz-service gets: what the filter computes from a server's advertised
/// `inputSchema` equals the registered digest whatever the formatting.
#[test]
fn route_digests_are_the_input_hash_of_the_rendered_schemas() {
    let outputs = render::render(&fleet(), &Options::new("/tmp/out"));
    let schemas: serde_json::Value =
        serde_json::from_str(output(&outputs, "schemas.json")).unwrap();
    let routes: serde_json::Value =
        serde_norway::from_str(output(&outputs, "envoy/routes.yaml")).unwrap();
    let list = routes
        .pointer("/resources/0/virtual_hosts/0/matcher/on_no_match/action/typed_config/routes")
        .and_then(serde_json::Value::as_array)
        .unwrap();
    let mut checked = 0;
    for route in list {
        let metadata = &route["metadata"]["filter_metadata"]["mcp_gateway"];
        let Some(id) = metadata["server_id"].as_str() else {
            continue;
        };
        assert_eq!(metadata["unregistered_tools"], "hide", "{id}");
        let digests: std::collections::BTreeMap<String, String> =
            serde_json::from_str(metadata["schema_digests"].as_str().unwrap()).unwrap();
        let tools = schemas["servers"][id]["tools"].as_object().unwrap();
        assert_eq!(
            digests.keys().collect::<Vec<_>>(),
            tools.keys().collect::<Vec<_>>()
        );
        for (tool, schema) in tools {
            // Another formatting of the same schema (pretty, keys sorted) hashes the same.
            let text = serde_json::to_string_pretty(schema).unwrap();
            let raw: &serde_json::value::RawValue = serde_json::from_str(&text).unwrap();
            assert_eq!(
                digests[tool],
                mcp_filter_core::input_hash::input_hash(raw).unwrap(),
                "{id}/{tool}"
            );
            checked += 1;
        }
        // Every example server validates (report, the default), so every route asks
        // ext_authz for the body, up to the filter's own limit.
        let settings = &route["typed_per_filter_config"]["envoy.filters.http.ext_authz"];
        assert_eq!(
            settings["check_settings"]["with_request_body"],
            serde_json::json!({"max_request_bytes": 1048576, "allow_partial_message": false, "pack_as_bytes": true}),
            "{id}"
        );
    }
    assert_eq!(checked, 10);
}

/// A server in mode `off` without `x-mcp-header` parameters costs no body buffering;
/// its route still carries the digests (drift is counted in every mode).
#[test]
fn a_server_without_validation_or_header_parameters_sends_no_body() {
    let fleet_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(fleet_dir.path().join("schemas")).unwrap();
    std::fs::write(
        fleet_dir.path().join("schemas/s.json"),
        r#"{"type":"object"}"#,
    )
    .unwrap();
    std::fs::write(
        fleet_dir.path().join("schemas/h.json"),
        r#"{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}"#,
    )
    .unwrap();
    let manifest = |id: &str, schema: &str, gateway: &str| {
        format!("server_id: {id}\nversion: \"1.0\"\ntransport: streamable_http\nendpoint: http://{id}.internal/mcp\ntools: [{{name: t, schema_ref: schemas/{schema}}}]\nowner: o@x\non_call_runbook: https://wiki/x\ngateway: {gateway}\n")
    };
    for (id, schema, gateway) in [
        (
            "quiet",
            "s.json",
            "{validation: \"off\", unregistered_tools: show}",
        ),
        ("mirrored", "h.json", "{validation: \"off\"}"),
        ("strict", "s.json", "{validation: enforce}"),
    ] {
        std::fs::write(
            fleet_dir.path().join(format!("{id}.yaml")),
            manifest(id, schema, gateway),
        )
        .unwrap();
    }
    let fleet = Fleet::load(fleet_dir.path()).unwrap_or_else(|p| panic!("{p}"));
    let outputs = render::render(&fleet, &Options::new("/tmp/out"));
    let schemas: serde_json::Value =
        serde_json::from_str(output(&outputs, "schemas.json")).unwrap();
    assert_eq!(schemas["servers"]["quiet"]["validation"], "off");
    assert_eq!(schemas["servers"]["mirrored"]["validation"], "off");
    assert_eq!(schemas["servers"]["strict"]["validation"], "enforce");
    for server in &fleet.servers {
        let route = render::envoy::server_route(server);
        let body = route.pointer("/typed_per_filter_config/envoy.filters.http.ext_authz/check_settings/with_request_body");
        assert_eq!(body.is_some(), server.id() != "quiet", "{}", server.id());
        let metadata = &route["metadata"]["filter_metadata"]["mcp_gateway"];
        let expected = if server.id() == "quiet" {
            "show"
        } else {
            "hide"
        };
        assert_eq!(metadata["unregistered_tools"], expected);
        assert!(metadata["schema_digests"]
            .as_str()
            .unwrap()
            .starts_with("{\"t\":\"sha256:"));
    }
    // The Istio gateway merges the same settings into istiod's routes, by route name.
    let istio: Vec<serde_json::Value> =
        serde_norway::Deserializer::from_str(output(&outputs, "istio/gateway-envoyfilter.yaml"))
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
    let patches = istio[0]["spec"]["configPatches"].as_array().unwrap();
    let merged = |route: &str| {
        patches
            .iter()
            .find(|p| p["match"]["routeConfiguration"]["vhost"]["route"]["name"] == route)
            .map(|p| p["patch"]["value"].clone())
            .unwrap()
    };
    assert!(merged("mcp-server-quiet")
        .get("typed_per_filter_config")
        .is_none());
    for route in ["mcp-server-mirrored", "mcp-server-strict"] {
        assert_eq!(
            merged(route)["typed_per_filter_config"]["envoy.filters.http.ext_authz"]
                ["check_settings"]["with_request_body"]["max_request_bytes"],
            1048576
        );
    }
}

/// The authz-service loads the rendered `schemas.json` as it is: every server with its
/// mode, every tool compiled; and it reads each tool's `x-mcp-header` annotations as
/// the registry does (the registry refuses what the service would ignore, so an
/// annotation the gateway accepted is always enforced).
#[test]
fn the_authz_service_loads_the_rendered_schemas_and_reads_the_same_annotations() {
    use mcp_authz_service::schemas::{Mode, ParamHeaders, Schemas};
    let (out, _) = rendered();
    let schemas =
        Schemas::load(&out.path().join("schemas.json")).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(schemas.tool_count(), 10);
    for server in &fleet().servers {
        let loaded = schemas.server(server.id()).unwrap();
        assert_eq!(loaded.mode, Mode::Report, "{}", server.id());
        for tool in &server.tools {
            assert!(
                schemas.tool(server.id(), &tool.name).is_some(),
                "{}/{}",
                server.id(),
                tool.name
            );
        }
    }

    let fleet_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(fleet_dir.path().join("schemas")).unwrap();
    let annotated = [
        r#"{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}"#,
        r#"{"type":"object","properties":{"a":{"type":"object","properties":{"id":{"type":"integer","x-mcp-header":"Shard-Id"}}},"b":{"type":"boolean","x-mcp-header":"Dry_Run"},"c":{"type":"string","default":{"x-mcp-header":"data"}}}}"#,
        r#"{"type":"object","properties":{"q":{"type":"string"}},"$defs":{"d":{"type":"string"}}}"#,
    ];
    let mut tools = String::new();
    for (i, schema) in annotated.iter().enumerate() {
        std::fs::write(fleet_dir.path().join(format!("schemas/s{i}.json")), schema).unwrap();
        tools.push_str(&format!(
            "  - {{name: t{i}, schema_ref: schemas/s{i}.json}}\n"
        ));
    }
    std::fs::write(
        fleet_dir.path().join("svc.yaml"),
        format!("server_id: svc\nversion: \"1\"\ntransport: streamable_http\nendpoint: http://svc.internal/mcp\ntools:\n{tools}owner: o@x\non_call_runbook: https://wiki/x\n"),
    )
    .unwrap();
    let fleet = Fleet::load(fleet_dir.path()).unwrap_or_else(|p| panic!("{p}"));
    for tool in &fleet.servers[0].tools {
        let service = ParamHeaders::from_schema(&tool.input_schema);
        assert_eq!(service.invalid(), None, "{}", tool.name);
        let mut theirs: Vec<&str> = service.iter().map(|h| h.token.as_str()).collect();
        theirs.sort_unstable();
        let mut ours: Vec<&str> = tool.param_headers.iter().map(String::as_str).collect();
        ours.sort_unstable();
        assert_eq!(ours, theirs, "{}", tool.name);
    }
    // Annotations the registry refuses, the service would ignore (not enforce) too.
    for schema in [
        r#"{"type":"object","properties":{"a":{"type":"array","items":{"type":"string","x-mcp-header":"A"}}}}"#,
        r#"{"type":"object","properties":{"a":{"type":"number","x-mcp-header":"A"}}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string","x-mcp-header":"A B"}}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string","x-mcp-header":"T"},"b":{"type":"string","x-mcp-header":"t"}}}"#,
    ] {
        let value: serde_json::Value = serde_json::from_str(schema).unwrap();
        assert!(
            ParamHeaders::from_schema(&value).invalid().is_some(),
            "{schema}"
        );
    }
}
