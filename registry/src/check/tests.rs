use super::*;
use crate::model::Credential;
use std::time::Duration;

const SCHEMA: &str = r#"{"type":"object"}"#;

/// A manifest in a temporary directory with one schema beside it.
fn load(text: &str) -> Result<Server, Vec<String>> {
    load_with(text, &Rules::default(), &[])
}

/// The same, with other rules and more files (relative path, content).
fn load_with(text: &str, rules: &Rules, files: &[(&str, &str)]) -> Result<Server, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.json"), SCHEMA).unwrap();
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let file = dir.path().join("m.yaml");
    manifest(&file, text, rules).map_err(|problems| {
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
        "{MINIMAL}gateway:\n  path: /x/mcp\n  timeouts: {{request: 0s, idle: 500ms}}\n  upstream_credential: {{secret: svc-upstream, key: k}}\n  rate_limits:\n    default: {{unit: MINUTE, requests_per_unit: 7}}\n    tools:\n      a.b-c_D: {{unit: Hour, requests_per_unit: 1}}\n"
    );
    let server = load(&text).unwrap();
    assert_eq!(server.path, "/x/mcp");
    assert_eq!(server.timeouts.request, Some(Duration::ZERO));
    assert_eq!(server.timeouts.idle, Some(Duration::from_millis(500)));
    assert_eq!(
        server.upstream_credential,
        Some(Credential::Secret {
            name: "svc-upstream".into(),
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
    let text = MINIMAL.replace("https://mcp.internal/v1/mcp/", "http://[2001:db8::1]:9000");
    let server = load(&text).unwrap();
    assert_eq!(server.endpoint.host, "2001:db8::1");
    assert_eq!(server.endpoint.port, 9000);
    assert_eq!(server.endpoint.path, "/");
}

/// An endpoint on this machine reaches the gateway's own ports (Envoy's admin
/// interface); the metadata service and unspecified addresses are never an MCP server.
#[test]
fn endpoints_on_this_machine_only_when_allowed_and_never_the_metadata_service() {
    let allow = Rules {
        allow_loopback_endpoints: true,
    };
    for url in [
        "http://127.0.0.1:9901/mcp",
        "http://[::1]:9901",
        "http://localhost:9901",
        "http://[::ffff:127.0.0.1]:80",
        "http://a.localhost",
    ] {
        let text = MINIMAL.replace("https://mcp.internal/v1/mcp/", url);
        let refused = load(&text).unwrap_err();
        assert!(
            refused[0].contains("points at this machine"),
            "{url}: {refused:?}"
        );
        assert!(load_with(&text, &allow, &[]).is_ok(), "{url}");
    }
    for url in [
        "http://169.254.169.254/latest",
        "http://[fe80::1]/",
        "http://0.0.0.0:80",
        "http://metadata.google.internal/",
        "http://[fd00:ec2::254]/",
        "http://*.svc.cluster.local/",
    ] {
        let text = MINIMAL.replace("https://mcp.internal/v1/mcp/", url);
        let refused = load_with(&text, &allow, &[]).unwrap_err();
        assert!(refused[0].starts_with("endpoint: "), "{url}: {refused:?}");
    }
}

#[test]
fn a_file_credential_resolves_against_the_manifest_directory() {
    let server = load_with(
        &format!("{MINIMAL}gateway:\n  upstream_credential: {{file: credentials/svc}}\n"),
        &Rules::default(),
        &[("credentials/svc", "Bearer x\n")],
    )
    .unwrap();
    match server.upstream_credential {
        Some(Credential::File { path, resolved }) => {
            assert_eq!(path, "credentials/svc");
            assert!(resolved.ends_with("credentials/svc") && resolved.is_absolute());
        }
        other => panic!("{other:?}"),
    }
}

/// A server's credential is its own: its file below credentials/<id>, its Secret
/// <id>-upstream; never another team's, never the authz-service's session keys.
#[test]
fn credentials_are_a_servers_own() {
    let files = [
        ("credentials/svc", "Bearer x\n"),
        ("credentials/other", "Bearer y\n"),
    ];
    let with = |credential: &str| {
        load_with(
            &format!("{MINIMAL}gateway:\n  upstream_credential: {credential}\n"),
            &Rules::default(),
            &files,
        )
    };
    assert!(with("{file: credentials/svc}").is_ok());
    assert!(with("{secret: svc-upstream, key: authorization}").is_ok());
    for (credential, reason) in [
        ("{file: credentials/other}", "a server's own credential"),
        ("{file: ../credentials/svc}", "a server's own credential"),
        (
            "{file: /etc/mcp-gateway/credentials/other/x}",
            "a server's own credential",
        ),
        (
            "{file: credentials/svc/../other}",
            "relative path inside the fleet",
        ),
        (
            "{secret: mcp-authz-session-keys, key: session-keys}",
            "its own Secret",
        ),
        (
            "{secret: other-upstream, key: authorization}",
            "its own Secret",
        ),
    ] {
        let refused = with(credential).unwrap_err();
        assert!(
            refused.iter().any(|r| r.contains(reason)),
            "{credential}: {refused:?}"
        );
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

/// A credential file the authz-service would refuse (it would then refuse the whole
/// rendered policy, every team's change with it) is refused here first.
#[test]
fn a_credential_file_holds_one_header_value() {
    let refused = load_with(
        &format!("{MINIMAL}gateway:\n  upstream_credential: {{file: credentials/svc}}\n"),
        &Rules::default(),
        &[("credentials/svc", "Bearer x\nX-Other: y\n")],
    )
    .unwrap_err();
    assert_eq!(
        refused,
        ["gateway.upstream_credential.file: credentials/svc must hold one line of printable ASCII (an Authorization header value)"]
    );
}

#[test]
fn an_istio_sidecar_takes_the_endpoint_port_unless_told_the_container_port() {
    let text = MINIMAL.replace(
        "https://mcp.internal/v1/mcp/",
        "http://svc.team:8000/v1/mcp/",
    );
    assert_eq!(load(&text).unwrap().istio_sidecar, None);
    let sidecar = "gateway:\n  istio_sidecar:\n    namespace: team\n    workload_labels: {app.kubernetes.io/name: svc, track: \"\"}\n";
    let server = load(&format!("{text}{sidecar}")).unwrap();
    let found = server.istio_sidecar.unwrap();
    assert_eq!(found.namespace, "team");
    assert_eq!(found.port, 8000);
    assert_eq!(
        found.workload_labels,
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "svc".to_owned()),
            ("track".to_owned(), String::new()),
        ])
    );
    let server = load(&format!("{text}{sidecar}    port: 9000\n")).unwrap();
    assert_eq!(server.istio_sidecar.unwrap().port, 9000);
}

/// The sidecar's filter names the server's tools in its configuration, which the
/// filter refuses past MAX_METRIC_TOOL_NAMES names.
#[test]
fn an_istio_sidecar_lists_at_most_the_tools_the_filter_takes() {
    let tools: Vec<String> = (0..=mcp_filter_core::config::MAX_METRIC_TOOL_NAMES)
        .map(|i| format!("{{name: t{i}, schema_ref: s.json}}"))
        .collect();
    let text = MINIMAL
        .replace("https://mcp.internal/v1/mcp/", "http://svc.team/mcp")
        .replace(
            "[{name: a.b-c_D, schema_ref: s.json}]",
            &format!("[{}]", tools.join(", ")),
        );
    assert!(load(&text).is_ok());
    let sidecar = "gateway:\n  istio_sidecar: {namespace: team, workload_labels: {app: svc}}\n";
    assert_eq!(
        load(&format!("{text}{sidecar}")).unwrap_err(),
        ["gateway.istio_sidecar: the sidecar's filter lists the server's tools for metric labels, at most 1000; this server has 1001"]
    );
}

/// Two servers on one sidecar port: refused only where one selector includes the other
/// (both EnvoyFilters would apply to the same pods); other ports, other namespaces and
/// other label values are other sidecars.
#[test]
fn sidecars_of_two_servers_must_not_select_the_same_pods() {
    let fleet = |b_sidecar: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.json"), SCHEMA).unwrap();
        for (id, sidecar) in [
            (
                "a",
                "{namespace: team, workload_labels: {app: a, tier: web}}",
            ),
            ("b", b_sidecar),
        ] {
            let text = MINIMAL
                .replace("server_id: svc", &format!("server_id: {id}"))
                .replace(
                    "https://mcp.internal/v1/mcp/",
                    &format!("http://{id}.team/mcp"),
                );
            let text = format!("{text}gateway:\n  istio_sidecar: {sidecar}\n");
            std::fs::write(dir.path().join(format!("{id}.yaml")), text).unwrap();
        }
        crate::Fleet::load(dir.path())
            .map(|_| ())
            .map_err(|p| p.lines())
    };
    for other in [
        "{namespace: team, workload_labels: {app: b}}",
        "{namespace: team, workload_labels: {app: a, tier: api}}",
        "{namespace: other, workload_labels: {app: a}}",
        "{namespace: team, workload_labels: {app: a}, port: 9000}",
    ] {
        assert_eq!(fleet(other), Ok(()), "{other}");
    }
    for same in [
        "{namespace: team, workload_labels: {app: a}}",
        "{namespace: team, workload_labels: {tier: web, app: a}}",
        "{namespace: team, workload_labels: {app: a, tier: web, track: x}}",
    ] {
        let refused = fleet(same).unwrap_err();
        assert_eq!(refused.len(), 1, "{same}: {refused:?}");
        assert!(
            refused[0].contains("b.yaml: gateway.istio_sidecar: selects the pods of \"a\""),
            "{refused:?}"
        );
    }
}

#[test]
fn validation_and_unregistered_tools_default_to_report_and_hide() {
    let server = load(MINIMAL).unwrap();
    assert_eq!(server.validation, crate::Validation::Report);
    assert_eq!(server.unregistered_tools, crate::UnregisteredTools::Hide);
    assert!(
        server.needs_body(),
        "report mode validates: the body is needed"
    );
    for (text, validation, unregistered) in [
        (
            "{validation: enforce, unregistered_tools: show}",
            crate::Validation::Enforce,
            crate::UnregisteredTools::Show,
        ),
        (
            "{validation: \"off\", unregistered_tools: hide}",
            crate::Validation::Off,
            crate::UnregisteredTools::Hide,
        ),
    ] {
        let server = load(&format!("{MINIMAL}gateway: {text}\n")).unwrap();
        assert_eq!(server.validation, validation, "{text}");
        assert_eq!(server.unregistered_tools, unregistered, "{text}");
    }
}

#[test]
fn validation_and_unregistered_tools_take_only_their_values() {
    // `off` unquoted is a YAML 1.1 boolean to some readers; serde_norway (1.2) reads it
    // as the string, so both spellings work. A real boolean is refused by serde.
    let refused = load(&format!(
        "{MINIMAL}gateway:\n  validation: strict\n  unregistered_tools: Hide\n"
    ))
    .unwrap_err();
    assert_eq!(
        refused,
        [
            "gateway.validation: \"strict\" is not one of enforce, report, off",
            "gateway.unregistered_tools: \"Hide\" is not one of hide, show",
        ]
    );
    let file = load(&format!("{MINIMAL}gateway:\n  validation: off\n")).unwrap();
    assert_eq!(file.validation, crate::Validation::Off);
}

#[test]
fn a_server_without_validation_needs_the_body_only_for_header_annotations() {
    let off = format!("{MINIMAL}gateway: {{validation: \"off\"}}\n");
    assert!(!load(&off).unwrap().needs_body());
    let annotated =
        r#"{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}"#;
    let server = load_with(
        &off.replace("s.json", "h.json"),
        &Rules::default(),
        &[("h.json", annotated)],
    )
    .unwrap();
    assert_eq!(server.tools[0].param_headers, ["Region"]);
    assert!(server.needs_body());
}

/// A schema the filter's digest cannot represent names the file, the field and why.
#[test]
fn a_schema_with_an_unsafe_integer_is_refused_with_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("big.json"),
        r#"{"type":"object","properties":{"id":{"type":"integer","maximum":18446744073709551615}}}"#,
    )
    .unwrap();
    let file = dir.path().join("m.yaml");
    let problems = manifest(
        &file,
        &MINIMAL.replace("s.json", "big.json"),
        &Rules::default(),
    )
    .unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].to_string(),
        format!(
            "{}: tools[0].schema_ref: big.json: the integer 18446744073709551615 is beyond +-(2^53 - 1) (RFC 7493 section 2.2); the schema digest the gateway compares servers' inputSchema with (canonical JSON, RFC 8785) cannot hold it exactly: use a smaller bound",
            file.display()
        )
    );
}

const CANARY: &str = "gateway:\n  canary:\n    version: \"1.1\"\n    endpoint: https://mcp-canary.internal/v1/mcp/\n    weight: 5\n";

#[test]
fn a_canary_gets_the_watch_defaults() {
    let server = load(&format!("{MINIMAL}{CANARY}")).unwrap();
    let canary = server.canary.unwrap();
    assert_eq!(canary.version, "1.1");
    assert_eq!(canary.endpoint.host, "mcp-canary.internal");
    assert_eq!(canary.endpoint.path, "/v1/mcp/");
    assert_eq!(canary.weight, 5);
    assert_eq!(canary.watch, crate::model::CanaryWatch::default());
    assert_eq!(canary.watch.window, Duration::from_secs(1800));
    assert_eq!(canary.watch.min_calls, 20);
    assert_eq!(canary.watch.promote, crate::model::Promote::Manual);
    assert_eq!(load(MINIMAL).unwrap().canary, None);
}

#[test]
fn a_canary_watch_is_read_as_written() {
    let text = format!(
        "{MINIMAL}{CANARY}    watch: {{window: 10s, min_calls: 5, error_margin: 0.1, negotiation_margin: 0, promote: auto}}\n"
    );
    let watch = load(&text).unwrap().canary.unwrap().watch;
    assert_eq!(watch.window, Duration::from_secs(10));
    assert_eq!(watch.min_calls, 5);
    assert_eq!(watch.error_margin, 0.1);
    assert_eq!(watch.negotiation_margin, 0.0);
    assert_eq!(watch.promote, crate::model::Promote::Auto);
}

#[test]
fn each_canary_problem_is_named() {
    let text = format!(
        "{MINIMAL}gateway:\n  canary:\n    version: \"1.0\"\n    endpoint: https://mcp-canary.internal/v2/mcp\n    weight: 101\n    watch: {{window: 1s, min_calls: 0, error_margin: 1.5, negotiation_margin: -0.1, promote: yes-please, grace: 1m}}\n"
    );
    assert_eq!(
        load(&text).unwrap_err(),
        [
            "gateway.canary.watch.grace: unknown key (not part of the manifest format: the seed's fields and one gateway section)",
            "gateway.canary.version: \"1.0\" is the server's own version; a canary is another version",
            "gateway.canary.endpoint: path \"/v2/mcp\" differs from the endpoint's \"/v1/mcp/\": both versions must serve the same path (the gateway rewrites the path once per route)",
            "gateway.canary.weight: 101 must be between 0 and 100 (percent)",
            "gateway.canary.watch.window: \"1s\" must be between 5s and 24h",
            "gateway.canary.watch.min_calls: 0 must be between 1 and 4294967295",
            "gateway.canary.watch.error_margin: 1.5 must be between 0 and 1 (a difference of two ratios)",
            "gateway.canary.watch.negotiation_margin: -0.1 must be between 0 and 1 (a difference of two ratios)",
            "gateway.canary.watch.promote: \"yes-please\" is not one of manual, auto",
        ]
    );
    let same_place = format!(
        "{MINIMAL}gateway:\n  canary: {{version: \"2\", endpoint: \"https://mcp.internal:443/v1/mcp/\"}}\n"
    );
    assert_eq!(
        load(&same_place).unwrap_err(),
        [
            "gateway.canary.endpoint: \"https://mcp.internal:443/v1/mcp/\" is the server's own endpoint; a canary runs elsewhere (another host or port)",
            "gateway.canary.weight: missing (percent of the server's requests, 0-100)",
        ]
    );
}

/// A version names metrics (`;version=` in Envoy stat names): one with `;` or `=`
/// would write a tag of its own.
#[test]
fn a_canary_version_that_could_forge_a_metric_tag_is_refused() {
    let text = format!("{MINIMAL}{CANARY}").replace("\"1.1\"", "\"1;tool=x\"");
    assert_eq!(
        load(&text).unwrap_err(),
        ["gateway.canary.version: \"1;tool=x\" must be 1-64 of A-Z a-z 0-9 . _ + : - (it names metrics and audit records)"]
    );
}

#[test]
fn a_canary_is_refused_beside_an_istio_sidecar() {
    let text = format!(
        "{MINIMAL}{CANARY}  istio_sidecar:\n    namespace: team\n    workload_labels: {{app: svc}}\n"
    )
    .replace("https://mcp.internal/", "http://mcp.internal/");
    assert_eq!(
        load(&text).unwrap_err(),
        ["gateway.canary: not supported with gateway.istio_sidecar: the server's own sidecar sees one version; split the traffic with the mesh's routing (a VirtualService) instead"]
    );
}

const PREFLIGHT_SCHEMA: &str = r#"{"type":"object","properties":{"account_id":{"type":"string","pattern":"^ACC-"}},"required":["account_id"]}"#;

#[test]
fn preflight_fields_are_read() {
    let text = format!(
        "{}gateway:\n  expected_calls: {{unit: minute, requests_per_unit: 120}}\n  preflight_call: {{tool: a.b-c_D, arguments: {{account_id: ACC-1}}}}\n  protocol_versions: [\"2026-07-28\", \"2025-11-25\"]\n",
        MINIMAL.replace("s.json", "p.json")
    );
    let server = load_with(&text, &Rules::default(), &[("p.json", PREFLIGHT_SCHEMA)]).unwrap();
    assert_eq!(
        server.expected_calls,
        Some(Rate {
            unit: Unit::Minute,
            requests_per_unit: 120
        })
    );
    let call = server.preflight_call.unwrap();
    assert_eq!(call.tool, "a.b-c_D");
    assert_eq!(call.arguments["account_id"], "ACC-1");
    assert_eq!(server.protocol_versions, ["2025-11-25", "2026-07-28"]);
    let bare = load(MINIMAL).unwrap();
    assert_eq!(
        (
            bare.expected_calls,
            bare.preflight_call,
            bare.protocol_versions.len()
        ),
        (None, None, 0)
    );
}

#[test]
fn each_preflight_problem_is_named() {
    let manifest = MINIMAL.replace("s.json", "p.json");
    let files = [("p.json", PREFLIGHT_SCHEMA)];
    let cases = [
        (
            "  expected_calls: {unit: fortnight, requests_per_unit: 0}\n",
            vec![
                "gateway.expected_calls.unit: \"fortnight\" is not one of second, minute, hour, day",
                "gateway.expected_calls.requests_per_unit: 0 must be between 1 and 4294967295",
            ],
        ),
        (
            "  preflight_call: {tool: nope}\n",
            vec!["gateway.preflight_call.tool: \"nope\" is not a tool of this server"],
        ),
        (
            "  preflight_call: {tool: a.b-c_D, arguments: [1]}\n",
            vec!["gateway.preflight_call.arguments: must be a map of the tool's arguments"],
        ),
        (
            "  preflight_call: {tool: a.b-c_D, arguments: {account_id: X-1}}\n",
            vec!["gateway.preflight_call.arguments: do not validate against p.json at /account_id: \"X-1\" does not match \"^ACC-\""],
        ),
        (
            "  preflight_call: {tool: a.b-c_D}\n",
            vec!["gateway.preflight_call.arguments: do not validate against p.json at /: \"account_id\" is a required property"],
        ),
        (
            "  protocol_versions: [\"2026-07-28\", \"2025-13-01\", \"2026-07-28\"]\n",
            vec![
                "gateway.protocol_versions[1]: \"2025-13-01\" is not a published MCP protocol version (2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25, 2026-07-28)",
                "gateway.protocol_versions[2]: \"2026-07-28\" is listed twice",
            ],
        ),
        (
            "  protocol_versions: []\n",
            vec!["gateway.protocol_versions: must list at least one version when given"],
        ),
    ];
    for (gateway, expected) in cases {
        let text = format!("{manifest}gateway:\n{gateway}");
        assert_eq!(
            load_with(&text, &Rules::default(), &files).unwrap_err(),
            expected,
            "{gateway}"
        );
    }
}
