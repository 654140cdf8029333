use super::*;

const POLICY: &str = r#"
servers:
  financial-data:
    tools:
      query_transactions: []
      get_account_balance: []
      transfer_funds: [mcp.server.financial-data:tools.write]
    methods:
      completion/complete: [mcp.server.financial-data:prompts.read]
      logging/setLevel: []
"#;

fn policy(text: &str) -> Policy {
    Policy::parse(text, Path::new("policy.yaml")).unwrap()
}

fn call<'a>(server: &'a str, method: &'a str, tool: Option<&'a str>) -> Call<'a> {
    Call {
        server: Some(server),
        method: Some(method),
        tool,
    }
}

#[test]
fn scopes_by_method_and_tool() {
    let p = policy(POLICY);
    let fd = "financial-data";
    let read = |area: &str| format!("mcp.server.financial-data:{area}.read");
    let table: Vec<(Call, Result<Vec<String>, Refusal>)> = vec![
        (call(fd, "initialize", None), Ok(vec![])),
        (call(fd, "ping", None), Ok(vec![])),
        (call(fd, "server/discover", None), Ok(vec![])),
        (call(fd, "notifications/initialized", None), Ok(vec![])),
        (Call::default(), Ok(vec![])),
        (call(fd, "tools/list", None), Ok(vec![read("tools")])),
        (
            call(fd, "tools/call", Some("query_transactions")),
            Ok(vec![read("tools")]),
        ),
        (
            call(fd, "tools/call", Some("transfer_funds")),
            Ok(vec![
                read("tools"),
                "mcp.server.financial-data:tools.write".into(),
            ]),
        ),
        (
            call(fd, "tools/call", Some("drop_tables")),
            Err(Refusal::UnknownTool {
                server: fd.into(),
                tool: "drop_tables".into(),
            }),
        ),
        (
            call(fd, "resources/read", None),
            Ok(vec![read("resources")]),
        ),
        (
            call(fd, "resources/templates/list", None),
            Ok(vec![read("resources")]),
        ),
        (call(fd, "prompts/get", None), Ok(vec![read("prompts")])),
        (
            call(fd, "completion/complete", None),
            Ok(vec![read("prompts")]),
        ),
        (call(fd, "logging/setLevel", None), Ok(vec![])),
        (
            call(fd, "sampling/anything", None),
            Err(Refusal::UnknownMethod {
                server: fd.into(),
                method: "sampling/anything".into(),
            }),
        ),
        (
            call("kb", "tools/list", None),
            Err(Refusal::UnknownServer("kb".into())),
        ),
        (
            Call {
                server: None,
                method: Some("tools/list"),
                tool: None,
            },
            Err(Refusal::NoServer),
        ),
    ];
    for (call, expected) in table {
        assert_eq!(p.required_scopes(&call), expected, "{call:?}");
    }
}

#[test]
fn unknown_servers_and_tools_can_be_allowed() {
    let p = policy("unknown_server: allow\nunknown_tool: allow\nservers: {}\n");
    assert_eq!(
        p.required_scopes(&call("kb", "tools/call", Some("search"))),
        Ok(vec!["mcp.server.kb:tools.read".to_string()])
    );
}

#[test]
fn scopes_supported_lists_everything_the_policy_can_ask_for() {
    let p = policy(POLICY);
    assert_eq!(
        p.scopes_supported(),
        vec![
            "mcp.server.financial-data:prompts.read",
            "mcp.server.financial-data:resources.read",
            "mcp.server.financial-data:tools.read",
            "mcp.server.financial-data:tools.write",
        ]
    );
}

#[test]
fn upstream_credential_is_read_relative_to_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fd.token"), "Bearer upstream-secret\n").unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        "servers:\n  fd:\n    upstream_credential_file: fd.token\n",
    )
    .unwrap();
    let p = Policy::load(&path).unwrap();
    assert_eq!(
        p.upstream_credential(Some("fd")),
        Some("Bearer upstream-secret")
    );
    assert_eq!(p.upstream_credential(Some("other")), None);
}

/// One case per error, with the exact message (file, field, reason).
#[test]
fn policy_errors_name_file_field_and_reason() {
    let table: &[(&str, &str)] = &[
        (
            "servers:\n  fd:\n    tool: {}\n",
            "policy.yaml: servers.fd: unknown field `tool`, expected one of `tools`, `methods`, `upstream_credential_file` at line 3 column 5",
        ),
        (
            "unknown_tool: maybe\n",
            "policy.yaml: unknown_tool: unknown variant `maybe`, expected `deny` or `allow` at line 1 column 15",
        ),
        (
            "servers:\n  fd:\n    tools:\n      t: mcp.server.fd:tools.write\n",
            "policy.yaml: servers.fd.tools.t: invalid type: string \"mcp.server.fd:tools.write\", expected a sequence at line 4 column 10",
        ),
        (
            "servers:\n  fd:\n    tools:\n      t: [\"a b\", \"q\\\"\"]\n",
            "policy.yaml: servers.fd.tools.t: \"a b\" is not a valid OAuth scope token\npolicy.yaml: servers.fd.tools.t: \"q\\\"\" is not a valid OAuth scope token",
        ),
        (
            "servers:\n  \"financial data\": {}\n",
            "policy.yaml: servers.financial data: server id must be 1-128 characters of A-Z a-z 0-9 . _ : -",
        ),
        (
            "servers:\n  fd:\n    methods:\n      \"tools call\": []\n",
            "policy.yaml: servers.fd.methods.tools call: not a JSON-RPC method name",
        ),
        (
            "servers:\n  fd:\n    upstream_credential_file: /nonexistent/fd.token\n",
            "policy.yaml: servers.fd.upstream_credential_file: cannot read /nonexistent/fd.token: No such file or directory (os error 2)",
        ),
    ];
    for (text, message) in table {
        let error = Policy::parse(text, Path::new("policy.yaml")).unwrap_err();
        assert_eq!(error.to_string(), *message, "{text}");
    }
}

fn scopes(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The precomputed set is exactly the `tools/call` rule applied to every tool.
#[test]
fn allowed_tools_follow_the_tools_call_rule() {
    let p = policy(POLICY);
    let fd = "financial-data";
    let read = "mcp.server.financial-data:tools.read";
    let write = "mcp.server.financial-data:tools.write";
    let table: &[(&[&str], &str)] = &[
        (&[], "[]"),
        (&[write], "[]"),
        (&[read], r#"["get_account_balance","query_transactions"]"#),
        (
            &[read, write, "other"],
            r#"["get_account_balance","query_transactions","transfer_funds"]"#,
        ),
    ];
    for (held, expected) in table {
        let held = scopes(held);
        assert_eq!(p.allowed_tools(fd, &held), *expected, "{held:?}");
        // The same answer as asking `required_scopes` tool by tool.
        let naive: Vec<&String> = p
            .server(fd)
            .unwrap()
            .tools()
            .keys()
            .filter(|tool| {
                p.required_scopes(&call(fd, "tools/call", Some(tool)))
                    .unwrap()
                    .iter()
                    .all(|s| held.contains(s))
            })
            .collect();
        assert_eq!(
            serde_json::to_string(&naive).unwrap(),
            *expected,
            "{held:?}"
        );
    }
    assert_eq!(p.allowed_tools("kb", &scopes(&[read, write])), "[]");
}

/// A `methods` override of `tools/call` replaces `tools.read` for every tool, and
/// names that need JSON escaping stay one name each (a comma join would split them).
#[test]
fn allowed_tools_use_the_tools_call_override_and_escape_names() {
    let p = policy(
        "servers:\n  kb:\n    methods:\n      tools/call: [kb.call]\n    tools:\n      'a,b\"c': []\n      données: [kb.fr]\n      plain: []\n",
    );
    assert_eq!(
        p.allowed_tools("kb", &scopes(&["mcp.server.kb:tools.read"])),
        "[]"
    );
    assert_eq!(
        p.allowed_tools("kb", &scopes(&["kb.call"])),
        r#"["a,b\"c","plain"]"#
    );
    let all: Vec<String> =
        serde_json::from_str(&p.allowed_tools("kb", &scopes(&["kb.call", "kb.fr"]))).unwrap();
    assert_eq!(all, vec!["a,b\"c", "données", "plain"]);
}

#[test]
fn list_entries_follow_get_and_read() {
    let p = policy(
        "servers:\n  fd:\n    methods:\n      prompts/get: [mcp.server.fd:prompts.read, fd.prompts.use]\n",
    );
    let prompts = scopes(&["mcp.server.fd:prompts.read"]);
    assert!(p.permits("fd", "prompts/list", &prompts));
    assert!(!p.permits("fd", "prompts/get", &prompts));
    assert!(p.permits(
        "fd",
        "prompts/get",
        &scopes(&["mcp.server.fd:prompts.read", "fd.prompts.use"])
    ));
    assert!(p.permits(
        "fd",
        "resources/read",
        &scopes(&["mcp.server.fd:resources.read"])
    ));
    assert!(!p.permits("fd", "resources/read", &prompts));
    assert!(!p.permits(
        "other",
        "resources/read",
        &scopes(&["mcp.server.other:resources.read"])
    ));
}
