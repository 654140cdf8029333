//! The service over real sockets: a tonic client calls Check, health, hot reload, and
//! the HTTP side (metadata, metrics). Issue 16 (list metadata, argument checks):
//! `grpc/arguments.rs`.

mod common;

use common::*;
use envoy_types::pb::envoy::config::core::v3::HeaderValueOption;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use mcp_authz_service::http::ResourceMetadata;
use mcp_authz_service::jwks::JwksSource;
use mcp_authz_service::token::TokenRules;
use mcp_authz_service::{build, serve, Settings};
use mcp_service_kit::testing::RunningService;
use std::path::Path;
use std::time::Duration;

const POLICY: &str = "servers:\n  financial-data:\n    tools:\n      get_account_balance: []\n";

/// The service on loopback, and the files it reads.
struct Running {
    service: RunningService,
    _dir: tempfile::TempDir,
    policy: std::path::PathBuf,
    schemas: Option<std::path::PathBuf>,
    session_keys: std::path::PathBuf,
}

impl std::ops::Deref for Running {
    type Target = RunningService;
    fn deref(&self) -> &RunningService {
        &self.service
    }
}

impl Running {
    async fn stop(self) {
        self.service.stop().await;
    }
}

/// Ready once the keys are loaded.
async fn start() -> Running {
    start_with(POLICY, None).await
}

/// The service with `policy` and, when given, the schemas file text `schemas`.
async fn start_with(policy_text: &str, schemas_text: Option<&str>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, policy_text).unwrap();
    let schemas = schemas_text.map(|text| {
        let path = dir.path().join("schemas.json");
        std::fs::write(&path, text).unwrap();
        path
    });
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, standard_jwks()).unwrap();
    let session_keys = dir.path().join("session-keys");
    std::fs::write(&session_keys, format!("# test key\n{SESSION_KEY}\n")).unwrap();
    let settings = Settings {
        policy: policy.clone(),
        schemas: schemas.clone(),
        session_keys: session_keys.clone(),
        rules: TokenRules {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway_seconds: 0,
        },
        jwks: JwksSource::File(jwks),
        jwks_refresh: Duration::from_secs(60),
        metadata: ResourceMetadata {
            resource: AUDIENCE.into(),
            authorization_servers: vec![ISSUER.into()],
        },
    };
    let authorizer = build(&settings).unwrap();
    let service = RunningService::start(|grpc, http, shutdown| async move {
        serve(authorizer, &settings, grpc, http, shutdown).await
    })
    .await;
    Running {
        service,
        _dir: dir,
        policy,
        schemas,
        session_keys,
    }
}

async fn metrics(service: &Running) -> String {
    service.metrics().await
}

fn header<'a>(options: &'a [HeaderValueOption], name: &str) -> Option<&'a str> {
    options
        .iter()
        .filter_map(|o| o.header.as_ref())
        .find(|h| h.key == name)
        .map(|h| h.value.as_str())
}

async fn check(addr: &str, headers: &[(&str, &str)]) -> CheckResponse {
    send(addr, check_request(headers)).await
}

async fn send(addr: &str, request: CheckRequest) -> CheckResponse {
    let mut client = AuthorizationClient::connect(addr.to_owned()).await.unwrap();
    client.check(request).await.unwrap().into_inner()
}

#[tokio::test]
async fn check_over_grpc() {
    let service = start().await;
    let token = format!(
        "Bearer {}",
        agent_token("agent-prod-001", "mcp.server.financial-data:tools.read")
    );
    let labels = [
        ("x-mcp-server-id", "financial-data"),
        ("x-mcp-method", "tools/call"),
        ("x-mcp-tool-name", "get_account_balance"),
        ("x-mcp-request-id", "\"r-9\""),
    ];

    // Allowed: verified identity set (overwriting), client token and user removed.
    let mut allowed: Vec<(&str, &str)> = labels.to_vec();
    allowed.push(("authorization", &token));
    allowed.push(("x-agent-id", "forged"));
    let response = check(&service.grpc, &allowed).await;
    assert_eq!(response.status.unwrap().code, 0);
    let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
        panic!("not OK")
    };
    assert_eq!(header(&ok.headers, "x-agent-id"), Some("agent-prod-001"));
    assert_eq!(ok.headers[0].append_action, 2, "OVERWRITE_IF_EXISTS_OR_ADD");
    assert_eq!(
        ok.headers_to_remove,
        vec!["x-user-id".to_string(), "authorization".to_string()]
    );

    // Denied without a token: 401 with the challenge and a JSON-RPC body.
    let response = check(&service.grpc, &labels).await;
    assert_eq!(response.status.unwrap().code, 16);
    let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
        panic!("not denied")
    };
    assert_eq!(denied.status.unwrap().code, 401);
    assert_eq!(
        header(&denied.headers, "www-authenticate"),
        Some("Bearer resource_metadata=\"https://gateway.test/.well-known/oauth-protected-resource/mcp\"")
    );
    assert_eq!(
        header(&denied.headers, "content-type"),
        Some("application/json")
    );
    let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
    assert_eq!(body["id"], "r-9");
    assert_eq!(
        response.dynamic_metadata, None,
        "no verified caller to name"
    );

    // Denied by the policy (a tool it does not list) with a valid token: the verified
    // agent is named in the dynamic metadata (for the gateway's audit record), never
    // in a request header.
    let mut write: Vec<(&str, &str)> = labels.to_vec();
    write[2] = ("x-mcp-tool-name", "transfer_funds");
    write.push(("authorization", &token));
    let response = check(&service.grpc, &write).await;
    let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
        panic!("not denied")
    };
    assert_eq!(denied.status.unwrap().code, 403);
    let metadata = response.dynamic_metadata.expect("identity metadata");
    let agent = metadata.fields.get("agent_id").and_then(|v| v.kind.clone());
    assert_eq!(
        agent,
        Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(
            "agent-prod-001".into()
        ))
    );
    assert!(!metadata.fields.contains_key("user_id"));

    // Health: serving.
    let channel = tonic::transport::Endpoint::from_shared(service.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "envoy.service.auth.v3.Authorization".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Metrics count both decisions.
    let metrics = metrics(&service).await;
    assert!(
        metrics.contains(r#"mcp_authz_decisions_total{result="allow",server="financial-data"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"mcp_authz_decisions_total{result="no_token",server="financial-data"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"mcp_authz_decisions_total{result="policy",server="financial-data"} 1"#),
        "{metrics}"
    );
    service.stop().await;
}

#[tokio::test]
async fn protected_resource_metadata() {
    let service = start().await;
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let response = reqwest::get(format!("{}{path}", service.http))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let document: serde_json::Value = response.json().await.unwrap();
        assert_eq!(document["resource"], AUDIENCE);
        assert_eq!(
            document["authorization_servers"],
            serde_json::json!([ISSUER])
        );
        assert_eq!(
            document["bearer_methods_supported"],
            serde_json::json!(["header"])
        );
        assert!(document["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("mcp.server.financial-data:tools.read")));
    }
    // The document is built once per policy, and again for a new one.
    let scopes = || async {
        let (status, body) = service
            .get("/.well-known/oauth-protected-resource/mcp")
            .await;
        assert_eq!(status, 200);
        let document: serde_json::Value = serde_json::from_str(&body).unwrap();
        document["scopes_supported"].clone()
    };
    assert_eq!(scopes().await, scopes().await);
    write(
        &service.policy,
        &format!("{POLICY}  kb:\n    tools:\n      search: [mcp.server.kb:write]\n"),
    );
    let mut reloaded = false;
    for _ in 0..100 {
        let now = scopes().await;
        if now
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("mcp.server.kb:write"))
        {
            assert!(now
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("mcp.server.kb:tools.read")));
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reloaded,
        "the document never showed the new policy's scopes"
    );
    service.stop().await;
}

async fn decision_for(service: &Running, tool: &str) -> u16 {
    let token = format!(
        "Bearer {}",
        agent_token("a", "mcp.server.financial-data:tools.read")
    );
    let response = check(
        &service.grpc,
        &[
            ("authorization", &token),
            ("x-mcp-server-id", "financial-data"),
            ("x-mcp-method", "tools/call"),
            ("x-mcp-tool-name", tool),
        ],
    )
    .await;
    match response.http_response {
        Some(HttpResponse::OkResponse(_)) => 200,
        Some(HttpResponse::DeniedResponse(d)) => d.status.unwrap().code as u16,
        other => panic!("{other:?}"),
    }
}

async fn wait_for(service: &Running, tool: &str, status: u16) {
    for _ in 0..100 {
        if decision_for(service, tool).await == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{tool} never answered {status}");
}

fn write(path: &Path, text: &str) {
    // Replace the file the way editors and ConfigMaps do: write aside, rename over.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn policy_hot_reload_keeps_the_last_good_policy() {
    let service = start().await;
    assert_eq!(decision_for(&service, "query_transactions").await, 403);
    write(
        &service.policy,
        &format!("{POLICY}      query_transactions: []\n"),
    );
    wait_for(&service, "query_transactions", 200).await;

    // A broken policy is refused: the previous one stays in force.
    write(
        &service.policy,
        "servers:\n  financial-data:\n    tools: [oops\n",
    );
    let mut failures = 0;
    for _ in 0..100 {
        let metrics = metrics(&service).await;
        if metrics.contains("mcp_authz_policy_reload_failures_total 1") {
            failures = 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(failures, 1, "the broken reload was not reported");
    assert_eq!(decision_for(&service, "query_transactions").await, 200);
    assert_eq!(decision_for(&service, "get_account_balance").await, 200);
    service.stop().await;
}

fn denied(response: &CheckResponse) -> (i32, u16, serde_json::Value) {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("not denied: {response:?}")
    };
    assert_eq!(
        header(&denied.headers, "content-type"),
        Some("application/json")
    );
    (
        response.status.as_ref().unwrap().code,
        denied.status.as_ref().unwrap().code as u16,
        serde_json::from_str(&denied.body).unwrap(),
    )
}

fn metadata_text(response: &CheckResponse, key: &str) -> Option<String> {
    use envoy_types::pb::google::protobuf::value::Kind;
    match response
        .dynamic_metadata
        .as_ref()?
        .fields
        .get(key)?
        .kind
        .as_ref()?
    {
        Kind::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

const SERVER: &str = "financial-data";

/// Labels of a handshake-era request on the MCP path (`method` None: GET or DELETE).
fn session_request<'a>(
    token: &'a str,
    method: Option<&'a str>,
    session: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![("authorization", token), ("x-mcp-server-id", SERVER)];
    if let Some(method) = method {
        headers.push(("x-mcp-method", method));
    }
    if let Some(session) = session {
        headers.push(("mcp-session-id", session));
    }
    headers
}

async fn initialize(service: &Running, token: &str, method: &str) -> [u8; 32] {
    let response = check(&service.grpc, &session_request(token, Some(method), None)).await;
    assert_eq!(response.status.as_ref().unwrap().code, 0, "{response:?}");
    let key = metadata_text(&response, "session_key").expect("session_key metadata");
    assert_eq!(key, key.to_ascii_lowercase());
    hex::decode(key).unwrap().try_into().unwrap()
}

#[tokio::test]
async fn sessions_are_bound_to_the_agent_over_grpc() {
    let service = start().await;
    let alice = format!(
        "Bearer {}",
        agent_token("agent-a", "mcp.server.financial-data:tools.read")
    );
    let bob = format!(
        "Bearer {}",
        agent_token("agent-b", "mcp.server.financial-data:tools.read")
    );

    // initialize (also in the sentinel form the filter may send) carries the binding
    // key of the verified agent; other calls carry none.
    let key = initialize(&service, &alice, "initialize").await;
    assert_eq!(
        initialize(&service, &alice, "=?base64?aW5pdGlhbGl6ZQ==?=").await,
        key
    );
    let listing = check(
        &service.grpc,
        &session_request(&alice, Some("tools/list"), None),
    )
    .await;
    // (a list call carries what it may show, issue 16, but no binding key)
    assert_eq!(metadata_text(&listing, "session_key"), None);
    assert_eq!(
        metadata_text(&listing, "allowed_tools").as_deref(),
        Some(r#"["get_account_balance"]"#)
    );

    // The filter wraps the server's id with that key; agent A's POST, GET and DELETE
    // reach the server with the server's own id.
    let reference = mcp_filter_core::session_ref::wrap(&key, "server-sid-9").unwrap();
    for method in [Some("tools/list"), None] {
        let response = check(
            &service.grpc,
            &session_request(&alice, method, Some(&reference)),
        )
        .await;
        let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
            panic!("not OK: {response:?}")
        };
        let session = ok
            .headers
            .iter()
            .find(|o| o.header.as_ref().is_some_and(|h| h.key == "mcp-session-id"))
            .expect("mcp-session-id set");
        assert_eq!(session.header.as_ref().unwrap().value, "server-sid-9");
        assert_eq!(session.append_action, 2, "OVERWRITE_IF_EXISTS_OR_ADD");
    }

    // Agent B with A's reference, and A with the header sent twice (Envoy joins the
    // copies with ","): 404, -31013, B named in the metadata for the audit record.
    let joined = format!("{reference},{reference}");
    for (token, session, agent) in [
        (&bob, reference.as_str(), "agent-b"),
        (&alice, joined.as_str(), "agent-a"),
    ] {
        for method in [Some("tools/list"), None] {
            let response = check(
                &service.grpc,
                &session_request(token, method, Some(session)),
            )
            .await;
            let (rpc, status, body) = denied(&response);
            assert_eq!((rpc, status), (5, 404), "gRPC NOT_FOUND, HTTP 404");
            assert_eq!(body["error"]["code"], -31013);
            assert_eq!(
                body["error"]["message"],
                "session not found: this Mcp-Session-Id was not issued to the calling agent by this gateway"
            );
            assert_eq!(metadata_text(&response, "agent_id").as_deref(), Some(agent));
        }
    }
    let metrics = metrics(&service).await;
    assert!(
        metrics
            .contains(r#"mcp_authz_decisions_total{result="session",server="financial-data"} 4"#),
        "{metrics}"
    );
    service.stop().await;
}

#[tokio::test]
async fn unlabelled_requests_are_refused_unless_the_route_opts_out() {
    let service = start().await;
    let token = format!("Bearer {}", agent_token("agent-a", ""));
    let response = check(&service.grpc, &[("authorization", &token)]).await;
    let (rpc, status, body) = denied(&response);
    assert_eq!((rpc, status), (5, 404));
    assert_eq!(body["error"]["code"], -31014);
    assert_eq!(response.dynamic_metadata, None);

    // ext_authz per-route check_settings.context_extensions: {mcp_unlabelled: allow}.
    let mut client = AuthorizationClient::connect(service.grpc.clone())
        .await
        .unwrap();
    let opted_out = |value: &str| {
        let mut request = check_request(&[("authorization", &token)]);
        request
            .attributes
            .as_mut()
            .unwrap()
            .context_extensions
            .insert("mcp_unlabelled".into(), value.into());
        request
    };
    let allowed = client.check(opted_out("allow")).await.unwrap().into_inner();
    assert_eq!(allowed.status.unwrap().code, 0);
    let other = client.check(opted_out("yes")).await.unwrap().into_inner();
    assert_eq!(denied(&other).1, 404, "only \"allow\" opts out");

    let metrics = metrics(&service).await;
    assert!(
        metrics.contains(r#"mcp_authz_decisions_total{result="unlabelled",server="other"} 2"#),
        "{metrics}"
    );
    service.stop().await;
}

/// Identity values that are not plain printable ASCII, or that look like the
/// sentinel themselves, reach the upstream only in the `=?base64?...?=` form.
#[tokio::test]
async fn identity_headers_use_the_sentinel_form() {
    use jsonwebtoken::Algorithm;
    use mcp_filter_core::sentinel;
    let service = start().await;
    let scope = "mcp.server.financial-data:tools.read";
    for (agent, user) in [
        ("agënt-ü\r\nx-agent-id: admin", "alice\u{0}"),
        ("=?base64?YWRtaW4=?=", " bob"),
        ("plain-agent", "plain-user"),
    ] {
        let claims =
            claims(serde_json::json!({"sub": user, "act": {"sub": agent}, "scope": scope}));
        let token = format!(
            "Bearer {}",
            sign(RSA, Algorithm::RS256, Some("rsa"), &claims)
        );
        let response = check(
            &service.grpc,
            &session_request(&token, Some("tools/list"), None),
        )
        .await;
        let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
            panic!("not OK: {response:?}")
        };
        for (name, raw) in [("x-agent-id", agent), ("x-user-id", user)] {
            let wire = header(&ok.headers, name).unwrap();
            assert_eq!(wire, sentinel::encode(raw));
            assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{wire:?}");
            assert_eq!(sentinel::decode(wire).unwrap(), raw);
            assert_eq!(wire == raw, raw.starts_with("plain"), "{wire}");
        }
    }
    service.stop().await;
}

#[tokio::test]
async fn session_key_rotation_and_reload_keep_the_last_good_keys() {
    let service = start().await;
    let alice = format!(
        "Bearer {}",
        agent_token("agent-a", "mcp.server.financial-data:tools.read")
    );
    let old_key = initialize(&service, &alice, "initialize").await;
    let old_reference = mcp_filter_core::session_ref::wrap(&old_key, "sid-old").unwrap();
    let opens = |reference: String| {
        let (grpc, alice) = (service.grpc.clone(), alice.clone());
        async move {
            let response = check(
                &grpc,
                &session_request(&alice, Some("tools/list"), Some(&reference)),
            )
            .await;
            response.status.unwrap().code == 0
        }
    };

    // Rotation: a new key first, the old one kept.
    const NEW: &str = "rotated-session-key-0123456789abcdef0123456789";
    write(&service.session_keys, &format!("{NEW}\n{SESSION_KEY}\n"));
    let mut new_key = old_key;
    for _ in 0..100 {
        new_key = initialize(&service, &alice, "initialize").await;
        if new_key != old_key {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(new_key, old_key, "the rotated key file was not picked up");
    assert!(
        opens(old_reference.clone()).await,
        "old references stay valid"
    );

    // A broken file (a short key) is refused; the rotated keys stay in force.
    write(&service.session_keys, "too-short\n");
    let mut reported = false;
    for _ in 0..100 {
        if metrics(&service)
            .await
            .contains("mcp_authz_session_key_reload_failures_total 1")
        {
            reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reported, "the broken reload was not reported");
    assert_eq!(initialize(&service, &alice, "initialize").await, new_key);
    assert!(opens(old_reference.clone()).await);

    // The old key removed: its references stop opening.
    write(&service.session_keys, NEW);
    let mut closed = false;
    for _ in 0..100 {
        if !opens(old_reference.clone()).await {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "a reference under a removed key still opens");
    service.stop().await;
}

#[path = "grpc/arguments.rs"]
mod arguments;

/// ext_authz sends the picked route's `mcp_gateway` metadata
/// (`route_metadata_context_namespaces`): a request labelled for one server whose route
/// leads to another is refused, whatever its token; the same server, or a route
/// without the metadata, is decided as before.
#[tokio::test]
async fn a_request_routed_to_another_server_than_its_label_is_refused() {
    use envoy_types::pb::envoy::config::core::v3::Metadata;
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
    let service = start().await;
    let token = format!(
        "Bearer {}",
        agent_token("agent-prod-001", "mcp.server.financial-data:tools.read")
    );
    let headers = [
        ("authorization", token.as_str()),
        ("x-mcp-server-id", "financial-data"),
        ("x-mcp-method", "tools/call"),
        ("x-mcp-tool-name", "get_account_balance"),
        ("x-mcp-request-id", "7"),
    ];
    let routed_to = |server: Option<&str>| {
        let mut request = check_request(&headers);
        if let Some(server) = server {
            let fields = [(
                "server_id".to_owned(),
                Value {
                    kind: Some(Kind::StringValue(server.to_owned())),
                },
            )];
            let mut metadata = Metadata::default();
            metadata.filter_metadata.insert(
                "mcp_gateway".into(),
                Struct {
                    fields: fields.into_iter().collect(),
                },
            );
            request.attributes.as_mut().unwrap().route_metadata_context = Some(metadata);
        }
        request
    };
    let misrouted = send(&service.grpc, routed_to(Some("hr-directory"))).await;
    let (rpc, status, body) = denied(&misrouted);
    assert_eq!((rpc, status), (13, 500));
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], -31000);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("labelled for MCP server financial-data, routed to hr-directory"),
        "{body}"
    );
    for same in [Some("financial-data"), None] {
        let response = send(&service.grpc, routed_to(same)).await;
        assert_eq!(response.status.unwrap().code, 0, "{same:?}");
    }
    let metrics = metrics(&service).await;
    assert!(metrics.contains(r#"result="misrouted""#), "{metrics}");
    service.stop().await;
}
