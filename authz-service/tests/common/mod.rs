//! Keys and tokens for the authz-service tests (fixture keys made with openssl for
//! these tests only).
#![allow(dead_code)]

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use mcp_authz_service::check::Authorizer;
use mcp_authz_service::jwks::{Jwks, KeySet};
use mcp_authz_service::metrics::Metrics;
use mcp_authz_service::policy::Policy;
use mcp_authz_service::session_keys::SessionKeys;
use mcp_authz_service::token::{TokenCache, TokenRules};
use serde_json::{json, Value};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "https://gateway.test/mcp";

pub const RSA: &[u8] = include_bytes!("../fixtures/keys/rsa.pem");
pub const RSA_OTHER: &[u8] = include_bytes!("../fixtures/keys/rsa-other.pem");
pub const RSA_PUBLIC: &[u8] = include_bytes!("../fixtures/keys/rsa.pub.pem");
pub const EC: &[u8] = include_bytes!("../fixtures/keys/ec.pem");
pub const ED25519: &[u8] = include_bytes!("../fixtures/keys/ed25519.pem");

/// The session binding master key of the tests (a key file's one line).
pub const SESSION_KEY: &str = "test-session-key-0123456789abcdef0123456789abcdef";

pub fn session_keys(text: &str) -> RwLock<Arc<SessionKeys>> {
    let keys = SessionKeys::parse(text.as_bytes(), std::path::Path::new("keys")).unwrap();
    RwLock::new(Arc::new(keys))
}

pub const METADATA_URL: &str = "https://gateway.test/.well-known/oauth-protected-resource/mcp";

/// A decision maker with the fixture keys, `policy` and the session key file `keys`.
pub fn test_authorizer(policy: &str, keys: &str) -> Authorizer {
    Authorizer {
        rules: TokenRules {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway_seconds: 0,
        },
        jwks: Arc::new(Jwks::fixed(standard_keys()).expect("the HTTPS client builds")),
        policy: RwLock::new(Arc::new(
            Policy::parse(policy, std::path::Path::new("policy.yaml")).unwrap(),
        )),
        session_keys: session_keys(keys),
        schemas: Default::default(),
        cache: TokenCache::new(1000),
        resource_metadata: METADATA_URL.into(),
        metrics: Arc::new(Metrics::default()),
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn encoding_key(pem: &[u8], alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).unwrap(),
        other => panic!("no fixture for {other:?}"),
    }
}

/// A public JWK for a fixture key, with `kid` and (optionally) `alg`.
pub fn jwk(pem: &[u8], alg: Algorithm, kid: &str, declare_alg: bool) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(pem, alg), alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    if !declare_alg {
        jwk.common.key_algorithm = None;
    }
    jwk
}

pub fn jwks_json(keys: Vec<Jwk>) -> String {
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

/// The test key set: RSA (RS256, alg not declared), RSA declared PS256, EC, Ed25519.
pub fn standard_jwks() -> String {
    jwks_json(vec![
        jwk(RSA, Algorithm::RS256, "rsa", false),
        jwk(RSA, Algorithm::PS256, "rsa-ps", true),
        jwk(EC, Algorithm::ES256, "ec", true),
        jwk(ED25519, Algorithm::EdDSA, "ed", false),
    ])
}

pub fn standard_keys() -> KeySet {
    KeySet::from_json(&standard_jwks()).unwrap()
}

/// Claims valid for five minutes, merged with `extra`.
pub fn claims(extra: Value) -> Value {
    let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 300});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

pub fn sign(pem: &[u8], alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &encoding_key(pem, alg)).unwrap()
}

/// An agent token signed with the fixture RSA key (`kid` "rsa").
pub fn agent_token(agent: &str, scopes: &str) -> String {
    sign(
        RSA,
        Algorithm::RS256,
        Some("rsa"),
        &claims(json!({"sub": agent, "azp": agent, "scope": scopes})),
    )
}

/// [`check_request`] with the body as ext_authz `with_request_body.pack_as_bytes`
/// sends it (`raw_body`).
pub fn check_request_with_body(headers: &[(&str, &str)], body: &[u8]) -> CheckRequest {
    let mut request = check_request(headers);
    if let Some(http) = request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.raw_body = body.to_vec();
        http.size = body.len() as i64;
    }
    request
}

/// An ext_authz CheckRequest for `POST /mcp` with these request headers, as Envoy
/// sends it.
pub fn check_request(headers: &[(&str, &str)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "POST".into(),
                    path: "/mcp".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}
