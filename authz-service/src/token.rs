//! Bearer token verification (OAuth 2.1 resource server; MCP authorization spec).

use crate::identity::{identify, Claims, Identity};
use crate::jwks::KeySet;
use dashmap::DashMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Validation};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a token must say to be accepted.
#[derive(Debug, Clone)]
pub struct TokenRules {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`: the gateway's resource URI (RFC 8707; MCP authorization spec,
    /// "Token Audience Binding": tokens for other resources MUST be refused).
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
}

/// Why a token is refused. Each maps to 401 `invalid_token`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token is signed with an unknown key")]
    UnknownKey,
    #[error("token algorithm does not match its key")]
    WrongAlgorithm,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not trusted")]
    WrongIssuer,
    #[error("token audience is not this gateway")]
    WrongAudience,
    #[error("token lacks the {0} claim")]
    MissingClaim(String),
    #[error("token names no agent (azp, client_id, sub or act.sub)")]
    NoAgent,
}

/// Verifies `token` with `keys` under `rules`; returns the caller and the expiry.
pub fn verify(
    token: &str,
    keys: &KeySet,
    rules: &TokenRules,
) -> Result<(Identity, u64), TokenError> {
    // An unknown `alg` (including "none") fails here: jsonwebtoken knows no such value.
    let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
    let pinned = keys
        .find(header.kid.as_deref())
        .ok_or(TokenError::UnknownKey)?;
    if header.alg != pinned.algorithm {
        return Err(TokenError::WrongAlgorithm);
    }
    let mut validation = Validation::new(pinned.algorithm);
    validation.set_issuer(&[&rules.issuer]);
    validation.set_audience(&[&rules.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_nbf = true;
    validation.leeway = rules.leeway_seconds;
    let data = decode::<Claims>(token, &pinned.key, &validation).map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
        ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
        _ => TokenError::Malformed,
    })?;
    let exp = data
        .claims
        .exp
        .ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
    let identity = identify(&data.claims).ok_or(TokenError::NoAgent)?;
    Ok((identity, exp))
}

/// Verified tokens, keyed by the SHA-256 of the token (the token itself is never
/// stored), valid until the token expires. Bounded: when full, expired entries are
/// dropped, and if it is still full the new entry is not cached. The sweep scans every
/// entry, so it runs at most once per clock second: a cache full of live tokens would
/// otherwise cost every uncached request a full scan.
pub struct TokenCache {
    entries: DashMap<[u8; 32], (Arc<Identity>, u64)>,
    capacity: usize,
    /// The clock second of the last sweep (expiry is in whole seconds, so a second
    /// sweep in the same second would find nothing new).
    last_sweep: AtomicU64,
    sweeps: AtomicU64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: DashMap::new(),
            capacity,
            last_sweep: AtomicU64::new(u64::MAX),
            sweeps: AtomicU64::new(0),
        }
    }

    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The cached identity if the token is still within `exp` (+ leeway) at `now`.
    pub fn get(&self, key: &[u8; 32], now: u64, leeway: u64) -> Option<Arc<Identity>> {
        let entry = self.entries.get(key)?;
        let (identity, exp) = entry.value();
        if now < exp.saturating_add(leeway) {
            return Some(identity.clone());
        }
        drop(entry);
        self.entries.remove(key);
        None
    }

    pub fn insert(&self, key: [u8; 32], identity: Arc<Identity>, exp: u64, now: u64, leeway: u64) {
        if self.entries.len() >= self.capacity {
            let last = self.last_sweep.load(Ordering::Acquire);
            let sweep = last != now
                && self
                    .last_sweep
                    .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
            if sweep {
                self.sweeps.fetch_add(1, Ordering::Relaxed);
                self.entries
                    .retain(|_, (_, exp)| now < exp.saturating_add(leeway));
            }
            if self.entries.len() >= self.capacity {
                return;
            }
        }
        self.entries.insert(key, (identity, exp));
    }

    /// Full scans made so far (at most one per clock second).
    pub fn sweeps(&self) -> u64 {
        self.sweeps.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
