//! Every token failure mode, and the algorithms the service accepts.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_authz_service::jwks::{JwksError, KeySet};
use mcp_authz_service::token::{verify, TokenCache, TokenError, TokenRules};
use serde_json::json;
use std::sync::Arc;

fn rules() -> TokenRules {
    TokenRules {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        leeway_seconds: 5,
    }
}

fn check(token: &str) -> Result<String, TokenError> {
    verify(token, &standard_keys(), &rules()).map(|(identity, _)| identity.agent)
}

#[test]
fn accepted_algorithms_pinned_by_key() {
    let agent = claims(json!({"azp": "agent-1"}));
    for (pem, alg, kid) in [
        (RSA, Algorithm::RS256, "rsa"),
        (RSA, Algorithm::PS256, "rsa-ps"),
        (EC, Algorithm::ES256, "ec"),
        (ED25519, Algorithm::EdDSA, "ed"),
    ] {
        assert_eq!(
            check(&sign(pem, alg, Some(kid), &agent)),
            Ok("agent-1".into()),
            "{alg:?}"
        );
    }
}

#[test]
fn token_failure_modes() {
    let now = now();
    let good = json!({"azp": "agent-1"});
    // The RSA public key as an HMAC secret: the classic key-confusion forgery.
    let hmac_forgery = jsonwebtoken::encode(
        &{
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("rsa".into());
            h
        },
        &claims(good.clone()),
        &EncodingKey::from_secret(RSA_PUBLIC),
    )
    .unwrap();
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"rsa"}"#),
        URL_SAFE_NO_PAD.encode(claims(good.clone()).to_string())
    );
    let cases: Vec<(&str, String, TokenError)> = vec![
        (
            "bad signature",
            sign(
                RSA_OTHER,
                Algorithm::RS256,
                Some("rsa"),
                &claims(good.clone()),
            ),
            TokenError::BadSignature,
        ),
        ("alg none", unsigned, TokenError::Malformed),
        (
            "HMAC with the public key",
            hmac_forgery,
            TokenError::WrongAlgorithm,
        ),
        (
            "PS256 token for an RS256-pinned key",
            sign(RSA, Algorithm::PS256, Some("rsa"), &claims(good.clone())),
            TokenError::WrongAlgorithm,
        ),
        (
            "expired",
            sign(
                RSA,
                Algorithm::RS256,
                Some("rsa"),
                &claims(json!({"azp": "a", "exp": now - 60})),
            ),
            TokenError::Expired,
        ),
        (
            "not yet valid",
            sign(
                RSA,
                Algorithm::RS256,
                Some("rsa"),
                &claims(json!({"azp": "a", "nbf": now + 600})),
            ),
            TokenError::NotYetValid,
        ),
        (
            "wrong issuer",
            sign(
                RSA,
                Algorithm::RS256,
                Some("rsa"),
                &claims(json!({"azp": "a", "iss": "https://evil.test"})),
            ),
            TokenError::WrongIssuer,
        ),
        (
            "wrong audience",
            sign(
                RSA,
                Algorithm::RS256,
                Some("rsa"),
                &claims(json!({"azp": "a", "aud": "https://other-resource.test"})),
            ),
            TokenError::WrongAudience,
        ),
        (
            "unknown kid",
            sign(
                RSA,
                Algorithm::RS256,
                Some("rotated-away"),
                &claims(good.clone()),
            ),
            TokenError::UnknownKey,
        ),
        (
            "no kid with several keys",
            sign(RSA, Algorithm::RS256, None, &claims(good.clone())),
            TokenError::UnknownKey,
        ),
        (
            "no exp",
            sign(
                RSA,
                Algorithm::RS256,
                Some("rsa"),
                &json!({"iss": ISSUER, "aud": AUDIENCE, "azp": "a"}),
            ),
            TokenError::MissingClaim("exp".into()),
        ),
        (
            "no agent",
            sign(
                RSA,
                Algorithm::RS256,
                Some("rsa"),
                &claims(json!({"scope": "x"})),
            ),
            TokenError::NoAgent,
        ),
        ("not a JWT", "abc.def".into(), TokenError::Malformed),
        ("garbage", "".into(), TokenError::Malformed),
    ];
    for (case, token, expected) in cases {
        assert_eq!(check(&token), Err(expected), "{case}");
    }
}

#[test]
fn leeway_applies_to_exp() {
    let token = sign(
        RSA,
        Algorithm::RS256,
        Some("rsa"),
        &claims(json!({"azp": "a", "exp": now() - 2})),
    );
    assert_eq!(check(&token), Ok("a".into()));
}

#[test]
fn single_key_without_kid() {
    let keys = KeySet::from_json(&jwks_json(vec![{
        let mut jwk = jwk(EC, Algorithm::ES256, "x", true);
        jwk.common.key_id = None;
        jwk
    }]))
    .unwrap();
    let token = sign(EC, Algorithm::ES256, None, &claims(json!({"azp": "a"})));
    assert!(verify(&token, &keys, &rules()).is_ok());
}

#[test]
fn symmetric_and_mismatched_keys_are_never_loaded() {
    let oct = r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#;
    assert_eq!(KeySet::from_json(oct).err(), Some(JwksError::NoUsableKeys));
    // An RSA key that claims to be ES256 is refused rather than guessed at.
    let mut lying = jwk(RSA, Algorithm::RS256, "rsa", true);
    lying.common.key_algorithm = Some(jsonwebtoken::jwk::KeyAlgorithm::ES256);
    assert_eq!(
        KeySet::from_json(&jwks_json(vec![lying])).err(),
        Some(JwksError::NoUsableKeys)
    );
    assert!(matches!(KeySet::from_json("{"), Err(JwksError::Parse(_))));
}

#[test]
fn cache_honours_expiry_and_capacity() {
    let cache = TokenCache::new(2);
    let identity = Arc::new(mcp_authz_service::identity::Identity {
        agent: "a".into(),
        user: None,
        scopes: Default::default(),
    });
    let (k1, k2, k3) = (
        TokenCache::key("t1"),
        TokenCache::key("t2"),
        TokenCache::key("t3"),
    );
    cache.insert(k1, identity.clone(), 100, 50, 0);
    assert!(cache.get(&k1, 99, 0).is_some());
    assert!(
        cache.get(&k1, 100, 0).is_none(),
        "expired entries are not served"
    );
    assert!(cache.is_empty(), "and are dropped");
    cache.insert(k1, identity.clone(), 100, 50, 0);
    cache.insert(k2, identity.clone(), 200, 50, 0);
    cache.insert(k3, identity.clone(), 300, 50, 0);
    assert_eq!(cache.len(), 2, "full: the new entry is not cached");
    cache.insert(k3, identity, 300, 150, 0);
    assert!(
        cache.get(&k3, 150, 0).is_some(),
        "expired entries make room"
    );
    assert!(cache.get(&k1, 150, 0).is_none());
}

/// A cache full of live tokens: new tokens are not cached, and the full scan looking
/// for room runs once per clock second, not once per request.
#[test]
fn a_full_cache_scans_at_most_once_per_second() {
    let cache = TokenCache::new(2);
    let identity = Arc::new(mcp_authz_service::identity::Identity {
        agent: "a".into(),
        user: None,
        scopes: Default::default(),
    });
    cache.insert(TokenCache::key("t1"), identity.clone(), 1000, 50, 0);
    cache.insert(TokenCache::key("t2"), identity.clone(), 1000, 50, 0);
    for i in 0..1000 {
        cache.insert(
            TokenCache::key(&format!("new-{i}")),
            identity.clone(),
            1000,
            60,
            0,
        );
    }
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.sweeps(), 1, "one scan in second 60");
    cache.insert(TokenCache::key("later"), identity, 1000, 61, 0);
    assert_eq!(cache.sweeps(), 2, "and one more in second 61");
}
