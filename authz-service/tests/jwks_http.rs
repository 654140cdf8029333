//! JWKS over HTTP: key rotation is picked up without a restart, and cached keys keep
//! working while the endpoint is down.

mod common;

use axum::routing::get;
use common::*;
use jsonwebtoken::Algorithm;
use mcp_authz_service::check::{Authorizer, CheckInput, Outcome};
use mcp_authz_service::jwks::{Jwks, JwksSource};
use mcp_authz_service::metrics::Metrics;
use mcp_authz_service::policy::{Call, Policy};
use mcp_authz_service::token::{TokenCache, TokenRules};
use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

async fn allowed(authorizer: &Authorizer, token: &str) -> bool {
    let bearer = format!("Bearer {token}");
    let input = CheckInput {
        authorization: Some(&bearer),
        call: Call {
            server: Some("fd"),
            method: Some("tools/list"),
            tool: None,
        },
        request_id: None,
        session: None,
        unlabelled_allowed: false,
        ..CheckInput::default()
    };
    matches!(authorizer.check(&input).await, Outcome::Allow { .. })
}

#[tokio::test]
async fn rotation_is_picked_up_on_unknown_kid() {
    let served = Arc::new(Mutex::new(jwks_json(vec![jwk(
        RSA,
        Algorithm::RS256,
        "2026-01",
        true,
    )])));
    let state = served.clone();
    let app = axum::Router::new().route(
        "/jwks.json",
        get(move || {
            let state = state.clone();
            async move { state.lock().unwrap().clone() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });

    let jwks = Arc::new(Jwks::try_new(JwksSource::Url(url)).unwrap());
    assert_eq!(jwks.refresh().await, Ok(1));
    let authorizer = Authorizer {
        rules: TokenRules {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway_seconds: 0,
        },
        jwks: jwks.clone(),
        policy: RwLock::new(Arc::new(
            Policy::parse("servers:\n  fd: {}\n", Path::new("p.yaml")).unwrap(),
        )),
        session_keys: session_keys(SESSION_KEY),
        schemas: Default::default(),
        cache: TokenCache::new(100),
        resource_metadata: "m".into(),
        metrics: Arc::new(Metrics::default()),
    };
    let scope = json!({"azp": "agent", "scope": "mcp.server.fd:tools.read"});
    let old = sign(
        RSA,
        Algorithm::RS256,
        Some("2026-01"),
        &claims(scope.clone()),
    );
    let new = sign(
        EC,
        Algorithm::ES256,
        Some("2026-02"),
        &claims(scope.clone()),
    );
    assert!(allowed(&authorizer, &old).await);
    assert!(
        !allowed(&authorizer, &new).await,
        "the new key is not published yet"
    );

    // The identity provider rotates: publishes the new key, drops the old one.
    *served.lock().unwrap() = jwks_json(vec![jwk(EC, Algorithm::ES256, "2026-02", true)]);
    // The earlier unknown-kid refresh was moments ago, so wait out the spacing.
    tokio::time::sleep(std::time::Duration::from_millis(5100)).await;
    assert!(
        allowed(&authorizer, &new).await,
        "unknown kid triggers a refresh"
    );
    let fresh_old = sign(
        RSA,
        Algorithm::RS256,
        Some("2026-01"),
        &claims(json!({"azp": "other", "scope": "mcp.server.fd:tools.read"})),
    );
    assert!(
        !allowed(&authorizer, &fresh_old).await,
        "the retired key no longer verifies"
    );

    // Endpoint down: refresh fails, cached keys keep verifying.
    let _ = stop.send(());
    server.await.unwrap();
    assert!(jwks.refresh().await.is_err());
    let another = sign(
        EC,
        Algorithm::ES256,
        Some("2026-02"),
        &claims(json!({"azp": "agent-2", "scope": "mcp.server.fd:tools.read"})),
    );
    assert!(allowed(&authorizer, &another).await);
}
