//! Verification keys: a JWKS from a file or an HTTPS URL, cached and refreshed.
//!
//! Each key's algorithm is pinned when the key is loaded: from its `alg` member, else
//! from its type (RSA: RS256, EC P-256: ES256, OKP Ed25519: EdDSA). A token is then
//! verified only with its key's algorithm, never the one its header asks for, which
//! rules out `alg: none` and the HMAC-with-a-public-key confusion. Symmetric (`oct`)
//! keys are never loaded.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A key and the one algorithm it verifies.
#[derive(Clone)]
pub struct PinnedKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// The usable keys of a JWKS, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    by_kid: HashMap<String, PinnedKey>,
    /// Keys without a `kid`; usable for tokens without one when it is the only key.
    anonymous: Vec<PinnedKey>,
}

impl KeySet {
    /// The key for a token's `kid`. A token without `kid` is accepted only when the
    /// set holds exactly one key, so there is no guessing.
    pub fn find(&self, kid: Option<&str>) -> Option<&PinnedKey> {
        match kid {
            Some(kid) => self.by_kid.get(kid),
            None => match (self.by_kid.len(), self.anonymous.len()) {
                (1, 0) => self.by_kid.values().next(),
                (0, 1) => self.anonymous.first(),
                _ => None,
            },
        }
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + self.anonymous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parses a JWKS document, keeping the keys this service can verify with.
    pub fn from_json(text: &str) -> Result<KeySet, JwksError> {
        let set: JwkSet =
            serde_json::from_str(text).map_err(|e| JwksError::Parse(e.to_string()))?;
        let mut keys = KeySet::default();
        for jwk in &set.keys {
            let Some(pinned) = pin(jwk) else {
                tracing::warn!(kid = ?jwk.common.key_id, "JWKS key skipped: unsupported or symmetric");
                continue;
            };
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), pinned);
                }
                None => keys.anonymous.push(pinned),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys);
        }
        Ok(keys)
    }
}

fn pin(jwk: &Jwk) -> Option<PinnedKey> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let algorithm = match jwk.common.key_algorithm {
        None => by_type,
        Some(KeyAlgorithm::RS256) if by_type == Algorithm::RS256 => Algorithm::RS256,
        Some(KeyAlgorithm::PS256) if by_type == Algorithm::RS256 => Algorithm::PS256,
        Some(KeyAlgorithm::ES256) if by_type == Algorithm::ES256 => Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) if by_type == Algorithm::EdDSA => Algorithm::EdDSA,
        // A declared algorithm that does not fit the key, or one we do not accept.
        Some(_) => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(PinnedKey { algorithm, key })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS is not valid: {0}")]
    Parse(String),
    #[error("JWKS holds no usable key (RS256, PS256, ES256 or EdDSA)")]
    NoUsableKeys,
    #[error("cannot fetch JWKS: {0}")]
    Fetch(String),
    #[error("cannot build the HTTPS client for the JWKS: {0}")]
    Client(String),
}

/// Where the JWKS comes from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(path) => write!(f, "{}", path.display()),
            JwksSource::Url(url) => f.write_str(url),
        }
    }
}

/// Refreshes for unknown `kid`s are spaced at least this far apart, so a flood of
/// tokens with random `kid`s cannot turn into a flood of JWKS fetches.
const UNKNOWN_KID_REFRESH_SPACING: Duration = Duration::from_secs(5);

/// The current key set and how to refresh it.
pub struct Jwks {
    source: JwksSource,
    client: reqwest::Client,
    current: RwLock<Option<Arc<KeySet>>>,
    last_unknown_kid_refresh: Mutex<Option<Instant>>,
}

/// A JWKS fetch that takes longer than this fails (the cached keys stay in use).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

impl Jwks {
    /// The key set of `source`, none loaded yet. Fails if the HTTPS client cannot be
    /// built (its TLS setup), with the reason: a client without the fetch timeout
    /// could hang a refresh, and with it key rotation, for good.
    pub fn try_new(source: JwksSource) -> Result<Jwks, JwksError> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| JwksError::Client(e.to_string()))?;
        Ok(Jwks {
            source,
            client,
            current: RwLock::new(None),
            last_unknown_kid_refresh: Mutex::new(None),
        })
    }

    /// A fixed key set (tests and benchmarks).
    pub fn fixed(keys: KeySet) -> Result<Jwks, JwksError> {
        let jwks = Jwks::try_new(JwksSource::File(PathBuf::new()))?;
        *jwks.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(keys));
        Ok(jwks)
    }

    pub fn source(&self) -> &JwksSource {
        &self.source
    }

    /// The keys now, if any were ever loaded. Cached keys stay in use when a refresh
    /// fails, so an identity provider outage does not stop verification.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Loads the JWKS again; on failure the previous keys stay.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let text = match &self.source {
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| JwksError::Fetch(format!("{}: {e}", path.display())))?,
            JwksSource::Url(url) => {
                let response = self
                    .client
                    .get(url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| JwksError::Fetch(format!("{url}: {e}")))?;
                response
                    .text()
                    .await
                    .map_err(|e| JwksError::Fetch(format!("{url}: {e}")))?
            }
        };
        let keys = KeySet::from_json(&text)?;
        let count = keys.len();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(keys));
        Ok(count)
    }

    /// Refreshes because a token named a `kid` we do not know (key rotation), unless a
    /// refresh for that reason happened moments ago. True if a refresh was made.
    pub async fn refresh_for_unknown_kid(&self) -> Result<bool, JwksError> {
        {
            let mut last = self
                .last_unknown_kid_refresh
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFRESH_SPACING) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        self.refresh().await.map(|_| true)
    }
}
