//! The decision's three refusals added by the security review: requests the filter did
//! not label (404, -31014), session references of another agent (404, -31013), and
//! their order relative to the token and the policy.

mod common;

use common::*;
use mcp_authz_service::check::{
    Authorizer, CheckInput, Denial, Outcome, NOT_AN_MCP_ENDPOINT_MESSAGE, SESSION_NOT_FOUND_MESSAGE,
};
use mcp_authz_service::policy::Call;
use mcp_filter_core::session_ref;
use serde_json::Value;

const POLICY: &str = "servers:\n  financial-data:\n    tools:\n      get_account_balance: []\n";
const SERVER: &str = "financial-data";
const READ: &str = "mcp.server.financial-data:tools.read";

fn authorizer() -> Authorizer {
    test_authorizer(POLICY, SESSION_KEY)
}

fn bearer(agent: &str) -> String {
    format!("Bearer {}", agent_token(agent, READ))
}

/// A labelled `tools/call` of `get_account_balance`.
fn call<'a>(authorization: Option<&'a str>, session: Option<&'a str>) -> CheckInput<'a> {
    CheckInput {
        authorization,
        call: Call {
            server: Some(SERVER),
            method: Some("tools/call"),
            tool: Some("get_account_balance"),
        },
        request_id: Some("7"),
        session,
        unlabelled_allowed: false,
        ..CheckInput::default()
    }
}

/// What reaches Envoy on a request the filter did not label (no server, no method).
fn unlabelled<'a>(authorization: Option<&'a str>, allowed: bool) -> CheckInput<'a> {
    CheckInput {
        authorization,
        unlabelled_allowed: allowed,
        ..CheckInput::default()
    }
}

/// The reference the filter hands `agent` for the server's session `id`.
fn reference(agent: &str, id: &str) -> String {
    let key = session_ref::binding_key(SESSION_KEY.as_bytes(), SERVER, agent);
    session_ref::wrap(&key, id).unwrap()
}

async fn refuse(authorizer: &Authorizer, input: CheckInput<'_>) -> (Denial, Value) {
    match authorizer.check(&input).await {
        Outcome::Deny(denial) => {
            let body = serde_json::from_str(&denial.body()).unwrap();
            (denial, body)
        }
        Outcome::Allow { identity, .. } => panic!("allowed {identity:?}"),
    }
}

/// (upstream session id, session binding key) of an allowed request.
async fn allow(
    authorizer: &Authorizer,
    input: CheckInput<'_>,
) -> (Option<String>, Option<[u8; 32]>) {
    match authorizer.check(&input).await {
        Outcome::Allow {
            upstream_session,
            session_binding,
            ..
        } => (upstream_session, session_binding),
        Outcome::Deny(denial) => panic!("{denial:?}"),
    }
}

#[tokio::test]
async fn unlabelled_requests_are_404_before_the_token_is_looked_at() {
    let a = authorizer();
    let valid = bearer("agent-a");
    for authorization in [None, Some("Bearer not-a-jwt"), Some(valid.as_str())] {
        let (denial, body) = refuse(&a, unlabelled(authorization, false)).await;
        assert_eq!((denial.status(), denial.reason()), (404, "unlabelled"));
        assert_eq!(denial.challenge(), None);
        assert_eq!(denial.identity(), None);
        assert_eq!(
            body,
            serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": -31014, "message": NOT_AN_MCP_ENDPOINT_MESSAGE}})
        );
    }
    // The token was never verified: nothing in the cache.
    assert_eq!(a.cache.len(), 0);
    // A method label without the server label is unlabelled too.
    let mut input = unlabelled(Some(&valid), false);
    input.call.method = Some("tools/list");
    assert_eq!(refuse(&a, input).await.0.status(), 404);
}

#[tokio::test]
async fn a_route_that_opts_out_lets_unlabelled_requests_through_on_a_valid_token() {
    let a = authorizer();
    let valid = bearer("agent-a");
    assert_eq!(
        allow(&a, unlabelled(Some(&valid), true)).await,
        (None, None)
    );
    let (denial, _) = refuse(&a, unlabelled(None, true)).await;
    assert_eq!((denial.status(), denial.reason()), (401, "no_token"));
    // Without a server there is no binding to check a session against.
    let issued = reference("agent-a", "sid-1");
    let mut input = unlabelled(Some(&valid), true);
    input.session = Some(&issued);
    let (denial, _) = refuse(&a, input).await;
    assert_eq!((denial.status(), denial.reason()), (404, "session"));
}

#[tokio::test]
async fn a_session_opens_only_for_the_agent_it_was_issued_to() {
    let a = authorizer();
    let issued = reference("agent-a", "server-sid-1");
    let (alice, bob) = (bearer("agent-a"), bearer("agent-b"));

    let (upstream, binding) = allow(&a, call(Some(&alice), Some(&issued))).await;
    assert_eq!(upstream.as_deref(), Some("server-sid-1"));
    assert_eq!(binding, None, "only initialize gets a binding key");

    // Another agent, the server's bare id, a tampered tag, Envoy's join of a repeated
    // header, a reference for another server, and an empty value: all the same 404.
    let tampered = format!("{}A", &issued[..issued.len() - 1]);
    let joined = format!("{issued},{issued}");
    let other_server = session_ref::wrap(
        &session_ref::binding_key(SESSION_KEY.as_bytes(), "kb", "agent-a"),
        "server-sid-1",
    )
    .unwrap();
    let cases = [
        (bob.as_str(), issued.as_str(), "agent-b"),
        (alice.as_str(), "server-sid-1", "agent-a"),
        (alice.as_str(), tampered.as_str(), "agent-a"),
        (alice.as_str(), joined.as_str(), "agent-a"),
        (alice.as_str(), other_server.as_str(), "agent-a"),
        (alice.as_str(), "", "agent-a"),
    ];
    for (authorization, session, agent) in cases {
        let (denial, body) = refuse(&a, call(Some(authorization), Some(session))).await;
        assert_eq!(
            (denial.status(), denial.reason()),
            (404, "session"),
            "{session}"
        );
        assert_eq!(denial.challenge(), None);
        // The audit record names the refused agent (dynamic metadata).
        assert_eq!(denial.identity().unwrap().agent, agent);
        assert_eq!(
            body,
            serde_json::json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -31013, "message": SESSION_NOT_FOUND_MESSAGE}})
        );
    }
}

#[tokio::test]
async fn checks_run_unlabelled_then_token_then_session_then_policy() {
    let a = authorizer();
    let stolen = reference("agent-a", "sid");
    let bob = bearer("agent-b");
    // Unlabelled beats a missing token.
    let mut input = unlabelled(None, false);
    input.session = Some(&stolen);
    assert_eq!(refuse(&a, input).await.0.reason(), "unlabelled");
    // The token comes before the session: no token, no word about the session.
    assert_eq!(
        refuse(&a, call(None, Some(&stolen))).await.0.reason(),
        "no_token"
    );
    // The session before the policy: a tool the policy refuses, with a stolen session.
    let mut input = call(Some(&bob), Some(&stolen));
    input.call.tool = Some("drop_tables");
    assert_eq!(refuse(&a, input).await.0.reason(), "session");
    // A GET stream or DELETE (server label, no method) needs a valid token and, with a
    // session, the agent's own.
    let mut input = call(Some(&bob), None);
    input.call.method = None;
    input.call.tool = None;
    assert_eq!(allow(&a, input).await, (None, None));
    input.session = Some(&stolen);
    assert_eq!(refuse(&a, input).await.0.reason(), "session");
}

#[tokio::test]
async fn initialize_gets_the_binding_key_of_the_verified_agent() {
    let a = authorizer();
    let alice = bearer("agent-a");
    let mut input = call(Some(&alice), None);
    input.call.method = Some("initialize");
    input.call.tool = None;
    let (_, binding) = allow(&a, input).await;
    let key = binding.expect("a binding key for initialize");
    assert_eq!(
        key,
        session_ref::binding_key(SESSION_KEY.as_bytes(), SERVER, "agent-a")
    );
    // What the filter wraps with it opens for this agent on later requests.
    let wrapped = session_ref::wrap(&key, "new-session").unwrap();
    let (upstream, _) = allow(&a, call(Some(&alice), Some(&wrapped))).await;
    assert_eq!(upstream.as_deref(), Some("new-session"));
}

#[tokio::test]
async fn rotation_binds_with_the_first_key_and_opens_with_any() {
    const NEW: &str = "rotated-session-key-0123456789abcdef0123456789";
    let a = test_authorizer(POLICY, &format!("{NEW}\n{SESSION_KEY}\n"));
    let alice = bearer("agent-a");
    let before = reference("agent-a", "old-sid");
    let (upstream, _) = allow(&a, call(Some(&alice), Some(&before))).await;
    assert_eq!(upstream.as_deref(), Some("old-sid"));
    let mut input = call(Some(&alice), None);
    input.call.method = Some("initialize");
    let (_, binding) = allow(&a, input).await;
    assert_eq!(
        binding,
        Some(session_ref::binding_key(NEW.as_bytes(), SERVER, "agent-a"))
    );
}
