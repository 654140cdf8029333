//! Issue 16 over a real socket: the list metadata of allowed list calls, and the
//! checks of `tools/call` arguments (a real CheckRequest with `raw_body`).

use super::*;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use serde_json::json;

const FLEET_POLICY: &str = "servers:
  financial-data:
    tools:
      get_account_balance: []
      get_forecast: []
      transfer_funds: [mcp.server.financial-data:tools.write]
  weather:
    tools:
      forecast: []
";

const SCHEMAS: &str = r#"{"servers": {
  "financial-data": {"validation": "enforce", "tools": {
    "get_forecast": {"type": "object", "additionalProperties": false, "required": ["region", "days"],
      "properties": {"region": {"type": "string", "x-mcp-header": "Region"},
                     "days": {"type": "integer", "minimum": 1}}}}},
  "weather": {"validation": "report", "tools": {
    "forecast": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}
}}"#;

const READ: &str = "mcp.server.financial-data:tools.read";
const WRITE: &str = "mcp.server.financial-data:tools.write";

fn bearer(scopes: &str) -> String {
    format!("Bearer {}", agent_token("agent-7", scopes))
}

fn call_body(id: &str, tool: &str, arguments: serde_json::Value) -> Vec<u8> {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
    )
    .into_bytes()
}

/// A `tools/call` Check with the filter's labels, the body and `extra` headers.
async fn call(
    service: &Running,
    token: &str,
    server: &str,
    tool: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> CheckResponse {
    let mut headers = vec![
        ("authorization", token),
        ("x-mcp-server-id", server),
        ("x-mcp-method", "tools/call"),
        ("x-mcp-tool-name", tool),
        ("x-mcp-request-id", "\"c-1\""),
    ];
    headers.extend_from_slice(extra);
    send(&service.grpc, check_request_with_body(&headers, body)).await
}

fn allowed(response: &CheckResponse) {
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        panic!("not allowed: {response:?}")
    };
    // Only the outer dynamic_metadata: the OK response's own (deprecated) would
    // replace it in Envoy.
    #[allow(deprecated)]
    let inner = &ok.dynamic_metadata;
    assert!(inner.is_none());
    assert_eq!(response.status.as_ref().unwrap().code, 0);
}

async fn list(service: &Running, token: &str, server: &str, method: &str) -> CheckResponse {
    check(
        &service.grpc,
        &[
            ("authorization", token),
            ("x-mcp-server-id", server),
            ("x-mcp-method", method),
        ],
    )
    .await
}

#[tokio::test]
async fn allowed_list_calls_name_what_the_caller_may_use() {
    let service = start_with(FLEET_POLICY, Some(SCHEMAS)).await;
    let fd = "financial-data";
    let read = bearer(READ);
    let response = list(&service, &read, fd, "tools/list").await;
    allowed(&response);
    assert_eq!(
        metadata_text(&response, "allowed_tools").as_deref(),
        Some(r#"["get_account_balance","get_forecast"]"#)
    );
    let all = bearer(&format!(
        "{READ} {WRITE} mcp.server.financial-data:prompts.read"
    ));
    let response = list(&service, &all, fd, "tools/list").await;
    assert_eq!(
        metadata_text(&response, "allowed_tools").as_deref(),
        Some(r#"["get_account_balance","get_forecast","transfer_funds"]"#)
    );
    // A token that may list prompts (and so get them) but not resources.
    let response = list(&service, &all, fd, "prompts/list").await;
    allowed(&response);
    assert_eq!(
        metadata_text(&response, "list_entries").as_deref(),
        Some("all")
    );
    assert_eq!(metadata_text(&response, "allowed_tools"), None);
    let response = list(&service, &all, fd, "resources/list").await;
    assert_eq!(denied(&response).1, 403, "resources need resources.read");
    let resources = bearer("mcp.server.financial-data:resources.read");
    for method in ["resources/list", "resources/templates/list"] {
        let response = list(&service, &resources, fd, method).await;
        assert_eq!(
            metadata_text(&response, "list_entries").as_deref(),
            Some("all"),
            "{method}"
        );
    }
    // Only on list methods: a call carries none of it.
    let body = call_body("1", "get_account_balance", json!({}));
    let response = call(&service, &read, fd, "get_account_balance", &body, &[]).await;
    allowed(&response);
    assert!(response.dynamic_metadata.is_none(), "{response:?}");
    service.stop().await;
}

#[tokio::test]
async fn invalid_arguments_are_refused_in_enforce_mode_after_the_scope_check() {
    let service = start_with(FLEET_POLICY, Some(SCHEMAS)).await;
    let (fd, read) = ("financial-data", bearer(READ));
    let valid = call_body(
        "\"c-1\"",
        "get_forecast",
        json!({"region": "FR", "days": 3}),
    );
    allowed(&call(&service, &read, fd, "get_forecast", &valid, &[]).await);

    let cases = [
        (
            json!({"region": "FR", "days": "3"}),
            "/days: \"3\" is not of type \"integer\"",
        ),
        (
            json!({"region": "FR"}),
            "(root): \"days\" is a required property",
        ),
        (
            json!({"region": "FR", "days": 3, "extra": true}),
            "(root): Additional properties are not allowed ('extra' was unexpected)",
        ),
    ];
    for (arguments, detail) in cases {
        let body = call_body("\"c-1\"", "get_forecast", arguments);
        let response = call(&service, &read, fd, "get_forecast", &body, &[]).await;
        let (rpc, status, error) = denied(&response);
        assert_eq!((rpc, status), (3, 400));
        assert_eq!(
            error,
            json!({"jsonrpc": "2.0", "id": "c-1", "error": {"code": -32602,
                   "message": format!("Invalid arguments for tool get_forecast: {detail}")}})
        );
        assert_eq!(
            metadata_text(&response, "error_code").as_deref(),
            Some("-32602")
        );
        assert_eq!(
            metadata_text(&response, "agent_id").as_deref(),
            Some("agent-7")
        );
    }
    // Authorization first: without the scope the caller learns nothing about the schema.
    let body = call_body("\"c-1\"", "get_forecast", json!({"days": "x"}));
    let response = call(&service, &bearer("other"), fd, "get_forecast", &body, &[]).await;
    assert_eq!(denied(&response).1, 403);
    assert_eq!(metadata_text(&response, "error_code"), None);
    // Tools the schemas file does not know are not checked.
    let body = call_body("1", "get_account_balance", json!({"anything": [1]}));
    allowed(&call(&service, &read, fd, "get_account_balance", &body, &[]).await);

    let metrics = metrics(&service).await;
    for line in [
        r#"mcp_authz_argument_checks_total{server="financial-data",tool="get_forecast",mode="enforce",result="valid"} 1"#,
        r#"mcp_authz_argument_checks_total{server="financial-data",tool="get_forecast",mode="enforce",result="invalid"} 3"#,
        r#"mcp_authz_decisions_total{result="invalid_arguments",server="financial-data"} 3"#,
        "mcp_authz_schema_tools 2",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    service.stop().await;
}

#[tokio::test]
async fn report_mode_forwards_and_names_the_violation() {
    let service = start_with(FLEET_POLICY, Some(SCHEMAS)).await;
    let token = bearer("mcp.server.weather:tools.read");
    let body = call_body("7", "forecast", json!({"city": 75001}));
    let response = call(&service, &token, "weather", "forecast", &body, &[]).await;
    allowed(&response);
    // The audit copy names the path, not the value the agent sent.
    assert_eq!(
        metadata_text(&response, "schema_violation").as_deref(),
        Some("/city: value is not of type \"string\"")
    );
    let body = call_body("7", "forecast", json!({"city": "Paris"}));
    let response = call(&service, &token, "weather", "forecast", &body, &[]).await;
    allowed(&response);
    assert_eq!(metadata_text(&response, "schema_violation"), None);
    service.stop().await;
}

#[tokio::test]
async fn mcp_param_headers_must_match_the_body_from_2026_07_28() {
    let service = start_with(FLEET_POLICY, Some(SCHEMAS)).await;
    let (fd, read) = ("financial-data", bearer(READ));
    let body = call_body("5", "get_forecast", json!({"region": "Zürich", "days": 3}));
    let modern = ("x-mcp-protocol-version", "2026-07-28");
    let sentinel = ("mcp-param-region", "=?base64?WsO8cmljaA==?=");
    allowed(
        &call(
            &service,
            &read,
            fd,
            "get_forecast",
            &body,
            &[modern, sentinel],
        )
        .await,
    );

    for (headers, message) in [
        (
            vec![modern, ("mcp-param-region", "Zurich")],
            "Header mismatch: Mcp-Param-Region header does not match the request body's \"region\" argument",
        ),
        (
            vec![modern],
            "Header mismatch: Mcp-Param-Region header is missing but the request body's \"region\" argument is present",
        ),
    ] {
        let response = call(&service, &read, fd, "get_forecast", &body, &headers).await;
        let (rpc, status, error) = denied(&response);
        assert_eq!((rpc, status), (3, 400));
        assert_eq!(
            error,
            json!({"jsonrpc": "2.0", "id": "c-1", "error": {"code": -32020, "message": message}})
        );
        assert_eq!(metadata_text(&response, "error_code").as_deref(), Some("-32020"));
    }
    // Older revisions have no Mcp-Param headers: not compared.
    let old = ("x-mcp-protocol-version", "2025-11-25");
    let stray = ("mcp-param-region", "Zurich");
    allowed(&call(&service, &read, fd, "get_forecast", &body, &[old, stray]).await);
    service.stop().await;
}

#[tokio::test]
async fn schemas_hot_reload_keeps_the_last_good_schemas() {
    let service = start_with(FLEET_POLICY, Some(SCHEMAS)).await;
    let (fd, read) = ("financial-data", bearer(READ));
    let path = service.schemas.clone().unwrap();
    let body = call_body("1", "get_forecast", json!({"region": "FR", "days": 0}));
    let status = |response: CheckResponse| match response.http_response {
        Some(HttpResponse::OkResponse(_)) => 200,
        Some(HttpResponse::DeniedResponse(d)) => d.status.unwrap().code,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        status(call(&service, &read, fd, "get_forecast", &body, &[]).await),
        400
    );

    // A broken file is refused (counted), and enforcement goes on.
    write(
        &path,
        r#"{"servers": {"financial-data": {"validation": "enforce", "tools": {"get_forecast": {"type": "nope"}}}}}"#,
    );
    let mut counted = false;
    for _ in 0..100 {
        if metrics(&service)
            .await
            .contains("mcp_authz_schema_reload_failures_total 1")
        {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(counted, "the broken reload was not reported");
    assert_eq!(
        status(call(&service, &read, fd, "get_forecast", &body, &[]).await),
        400
    );

    // A good one takes effect: validation off lets the same call through.
    write(&path, &SCHEMAS.replace("\"enforce\"", "\"off\""));
    for _ in 0..100 {
        if status(call(&service, &read, fd, "get_forecast", &body, &[]).await) == 200 {
            service.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the new schemas never took effect");
}

#[tokio::test]
async fn a_bad_schemas_file_stops_startup_with_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schemas.json");
    std::fs::write(
        &path,
        r#"{"servers": {"fd": {"tools": {"t": {"minimum": "1"}}}}}"#,
    )
    .unwrap();
    let error = mcp_authz_service::schemas::Schemas::load(&path).unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("{}: servers.fd.tools.t: ", path.display())),
        "{text}"
    );
}
