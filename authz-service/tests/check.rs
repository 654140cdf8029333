//! The decision: exact challenges and JSON-RPC bodies for every denial, identities
//! and upstream headers for allows, and the verified-token cache.

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use mcp_authz_service::check::{Authorizer, CheckInput, Outcome};
use mcp_authz_service::policy::Call;
use serde_json::{json, Value};

const METADATA: &str = METADATA_URL;

fn authorizer() -> Authorizer {
    test_authorizer(
        "servers:\n  financial-data:\n    tools:\n      get_account_balance: []\n      transfer_funds: [mcp.server.financial-data:tools.write]\n",
        SESSION_KEY,
    )
}

fn call<'a>(authorization: Option<&'a str>, tool: &'a str) -> CheckInput<'a> {
    CheckInput {
        authorization,
        call: Call {
            server: Some("financial-data"),
            method: Some("tools/call"),
            tool: Some(tool),
        },
        request_id: Some("42"),
        session: None,
        unlabelled_allowed: false,
        ..CheckInput::default()
    }
}

async fn deny(authorizer: &Authorizer, input: CheckInput<'_>) -> (u16, Option<String>, Value) {
    match authorizer.check(&input).await {
        Outcome::Deny(denial) => (
            denial.status(),
            denial.challenge(),
            serde_json::from_str(&denial.body()).unwrap(),
        ),
        Outcome::Allow { identity, .. } => panic!("allowed {identity:?}"),
    }
}

#[tokio::test]
async fn no_token_is_401_with_the_metadata_challenge() {
    let a = authorizer();
    for authorization in [None, Some(""), Some("Bearer "), Some("Basic dXNlcjpwYXNz")] {
        let (status, challenge, body) = deny(&a, call(authorization, "get_account_balance")).await;
        assert_eq!(status, 401);
        assert_eq!(
            challenge.unwrap(),
            format!("Bearer resource_metadata=\"{METADATA}\"")
        );
        assert_eq!(body["id"], 42);
        assert_eq!(body["error"]["code"], -31010);
    }
}

#[tokio::test]
async fn bad_token_is_401_invalid_token() {
    let a = authorizer();
    let expired = sign(
        RSA,
        Algorithm::RS256,
        Some("rsa"),
        &claims(json!({"azp": "a", "exp": now() - 10})),
    );
    let bearer = format!("Bearer {expired}");
    let (status, challenge, body) = deny(&a, call(Some(&bearer), "get_account_balance")).await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge.unwrap(),
        format!("Bearer error=\"invalid_token\", error_description=\"token has expired\", resource_metadata=\"{METADATA}\"")
    );
    assert_eq!(body["error"]["message"], "invalid token: token has expired");
}

#[tokio::test]
async fn missing_scope_is_403_naming_every_scope_the_call_needs() {
    let a = authorizer();
    let bearer = format!(
        "Bearer {}",
        agent_token("agent-ro", "mcp.server.financial-data:tools.read")
    );
    let (status, challenge, body) = deny(&a, call(Some(&bearer), "transfer_funds")).await;
    assert_eq!(status, 403);
    assert_eq!(
        challenge.unwrap(),
        format!("Bearer error=\"insufficient_scope\", scope=\"mcp.server.financial-data:tools.read mcp.server.financial-data:tools.write\", resource_metadata=\"{METADATA}\"")
    );
    assert_eq!(body["id"], 42);
    assert_eq!(body["error"]["code"], -31011);
    assert_eq!(
        body["error"]["message"],
        "insufficient scope: missing mcp.server.financial-data:tools.write"
    );
}

#[tokio::test]
async fn unknown_tool_and_server_are_403_without_a_scope_challenge() {
    let a = authorizer();
    let bearer = format!(
        "Bearer {}",
        agent_token("agent", "mcp.server.financial-data:tools.read")
    );
    let (status, challenge, body) = deny(&a, call(Some(&bearer), "drop_tables")).await;
    assert_eq!((status, challenge), (403, None));
    assert_eq!(
        body["error"]["message"],
        "forbidden: tool \"drop_tables\" is not registered for MCP server \"financial-data\""
    );
    let mut input = call(Some(&bearer), "x");
    input.call.server = Some("shadow-server");
    let (status, _, body) = deny(&a, input).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["error"]["message"],
        "forbidden: MCP server \"shadow-server\" is not registered with the gateway"
    );
}

#[tokio::test]
async fn allow_carries_the_verified_identity() {
    let a = authorizer();
    let token = sign(
        EC,
        Algorithm::ES256,
        Some("ec"),
        &claims(
            json!({"sub": "alice", "act": {"sub": "agent-prod-001"}, "scope": "mcp.server.financial-data:tools.read"}),
        ),
    );
    let bearer = format!("bearer {token}");
    match a.check(&call(Some(&bearer), "get_account_balance")).await {
        Outcome::Allow {
            identity,
            upstream_credential,
            ..
        } => {
            assert_eq!(identity.agent, "agent-prod-001");
            assert_eq!(identity.user.as_deref(), Some("alice"));
            assert_eq!(upstream_credential, None);
        }
        Outcome::Deny(denial) => panic!("{denial:?}"),
    }
}

#[tokio::test]
async fn repeat_checks_come_from_the_cache() {
    let a = authorizer();
    let bearer = format!(
        "Bearer {}",
        agent_token("agent", "mcp.server.financial-data:tools.read")
    );
    for _ in 0..3 {
        assert!(matches!(
            a.check(&call(Some(&bearer), "get_account_balance")).await,
            Outcome::Allow { .. }
        ));
    }
    assert_eq!(a.metrics.cache_misses.get(), 1);
    assert_eq!(a.metrics.cache_hits.get(), 2);
    assert_eq!(a.cache.len(), 1);
}

#[tokio::test]
async fn request_ids_are_echoed_only_when_valid() {
    let a = authorizer();
    for (header, expected) in [
        (Some("\"req-1\""), json!("req-1")),
        (
            Some("123456789012345678901234567890"),
            json!(123456789012345678901234567890u128 as f64),
        ),
        (Some("{\"x\":1}"), Value::Null),
        (Some("1, \"injected\": true"), Value::Null),
        (None, Value::Null),
    ] {
        let mut input = call(None, "get_account_balance");
        input.request_id = header;
        let (_, _, body) = deny(&a, input).await;
        assert_eq!(body["id"], expected, "{header:?}");
    }
}
