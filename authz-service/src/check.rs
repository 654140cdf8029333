//! The authorization decision for one request, independent of gRPC.

use crate::identity::Identity;
use crate::jwks::Jwks;
use crate::metrics::Metrics;
use crate::policy::{Call, Policy};
use crate::session_keys::SessionKeys;
use crate::token::{verify, TokenCache, TokenError, TokenRules};
use mcp_filter_core::error_body;
use serde_json::value::RawValue;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

// JSON-RPC codes of the gateway's one error table (README), shared with the filter.
pub use mcp_filter_core::error::{FORBIDDEN, NOT_AN_MCP_ENDPOINT, SESSION_NOT_FOUND, UNAUTHORIZED};

/// What a client whose `Mcp-Session-Id` does not open is told: nothing about whose
/// session it is or whether it exists.
pub const SESSION_NOT_FOUND_MESSAGE: &str =
    "session not found: this Mcp-Session-Id was not issued to the calling agent by this gateway";
/// What a request without the filter's labels is told.
pub const NOT_AN_MCP_ENDPOINT_MESSAGE: &str =
    "not an MCP endpoint: the request did not pass the gateway's MCP handling";

/// What the decision reads from the request (the MCP filter's labels and the token).
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckInput<'a> {
    pub authorization: Option<&'a str>,
    pub call: Call<'a>,
    /// `x-mcp-request-id`: the JSON-RPC id as JSON text.
    pub request_id: Option<&'a str>,
    /// `mcp-session-id` as Envoy passed it (repeated headers arrive joined with ",",
    /// which no session reference contains, so they never open a session).
    pub session: Option<&'a str>,
    /// The route lets requests without the filter's labels through on a valid token
    /// (ext_authz per-route context extension `mcp_unlabelled: allow`).
    pub unlabelled_allowed: bool,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Allow {
        identity: Arc<Identity>,
        /// `Authorization` value to send upstream instead of the client's token.
        upstream_credential: Option<String>,
        /// The server's own session id, opened from the client's session reference.
        upstream_session: Option<String>,
        /// For `initialize`: the key that binds the new session to this agent and
        /// server; the filter wraps the server's `Mcp-Session-Id` with it.
        session_binding: Option<[u8; 32]>,
    },
    Deny(Denial),
}

/// A refusal as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    pub www_authenticate: Option<String>,
    /// JSON-RPC error response body.
    pub body: String,
    /// Metric label: why.
    pub reason: &'static str,
    /// The caller, when the token was valid (403, 404 session): Envoy records it as dynamic
    /// metadata so that the gateway's audit record names the refused agent.
    pub identity: Option<Arc<Identity>>,
}

/// Everything a decision needs; shared by all gRPC calls.
pub struct Authorizer {
    pub rules: TokenRules,
    pub jwks: Arc<Jwks>,
    pub policy: RwLock<Arc<Policy>>,
    /// Master keys of session binding (hot-reloaded like the policy).
    pub session_keys: RwLock<Arc<SessionKeys>>,
    pub cache: TokenCache,
    /// RFC 9728 metadata URL, named in every challenge.
    pub resource_metadata: String,
    pub metrics: Arc<Metrics>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Authorizer {
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    pub fn session_keys(&self) -> Arc<SessionKeys> {
        self.session_keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_session_keys(&self, keys: SessionKeys) {
        *self.session_keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// Decides one request. Fails closed: anything unverifiable is a denial.
    ///
    /// Order: unlabelled (404) -> token (401) -> session (404) -> policy and scopes
    /// (403). Each step names the caller only once it is known.
    pub async fn check(&self, input: &CheckInput<'_>) -> Outcome {
        // Only denials need the id, so it is parsed on those paths alone.
        let body = |code: i64, message: &str| {
            error_body(request_id(input.request_id).as_deref(), code, message)
        };
        // The filter labels every request it handles as MCP with the server id. One
        // without it took another route to the server (Istio's inbound route is a
        // catch-all: POST /MCP, /mcp/ or /other reach the same server): refuse it
        // before anything else, unless the route says such requests are expected.
        if input.call.server.is_none() && !input.unlabelled_allowed {
            return Outcome::Deny(Denial {
                status: 404,
                www_authenticate: None,
                body: body(NOT_AN_MCP_ENDPOINT, NOT_AN_MCP_ENDPOINT_MESSAGE),
                reason: "unlabelled",
                identity: None,
            });
        }
        // RFC 6750 section 2.1: `Authorization: Bearer <token>`; the scheme is
        // case-insensitive (RFC 9110 section 11.1).
        let token = input.authorization.and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            let message = "authorization required: send an OAuth bearer token";
            return Outcome::Deny(Denial {
                status: 401,
                // RFC 9728 section 5.1 / MCP authorization spec: point the client at the
                // protected resource metadata; no error code when no token was sent
                // (RFC 6750 section 3.1).
                www_authenticate: Some(format!(
                    "Bearer resource_metadata=\"{}\"",
                    self.resource_metadata
                )),
                body: body(UNAUTHORIZED, message),
                reason: "no_token",
                identity: None,
            });
        };
        let identity = match self.identify(token).await {
            Ok(identity) => identity,
            Err(error) => {
                return Outcome::Deny(Denial {
                    status: 401,
                    www_authenticate: Some(format!(
                        "Bearer error=\"invalid_token\", error_description=\"{error}\", resource_metadata=\"{}\"",
                        self.resource_metadata
                    )),
                    body: body(UNAUTHORIZED, &format!("invalid token: {error}")),
                    reason: "invalid_token",
                    identity: None,
                })
            }
        };
        // A session is opened only by the agent it was issued to, on the server that
        // issued it (MCP: a client that gets 404 for its session starts a new one).
        let upstream_session = match input.session {
            None => None,
            Some(reference) => {
                match self.open_session(input.call.server, &identity.agent, reference) {
                    Some(session) => Some(session),
                    None => {
                        return Outcome::Deny(Denial {
                            status: 404,
                            www_authenticate: None,
                            body: body(SESSION_NOT_FOUND, SESSION_NOT_FOUND_MESSAGE),
                            reason: "session",
                            identity: Some(identity),
                        })
                    }
                }
            }
        };
        let policy = self.policy();
        let required = match policy.required_scopes(&input.call) {
            Ok(required) => required,
            Err(refusal) => {
                return Outcome::Deny(Denial {
                    status: 403,
                    www_authenticate: None,
                    body: body(FORBIDDEN, &format!("forbidden: {refusal}")),
                    reason: "policy",
                    identity: Some(identity),
                })
            }
        };
        let missing: Vec<&String> = required
            .iter()
            .filter(|s| !identity.scopes.contains(*s))
            .collect();
        if !missing.is_empty() {
            let needed = required.join(" ");
            let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Outcome::Deny(Denial {
                status: 403,
                // RFC 6750 section 3.1 and MCP "Scope Challenge Handling": name every
                // scope the call needs, so one step-up suffices.
                www_authenticate: Some(format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{needed}\", resource_metadata=\"{}\"",
                    self.resource_metadata
                )),
                body: body(FORBIDDEN, &format!("insufficient scope: missing {}", missing.join(" "))),
                reason: "insufficient_scope",
                identity: Some(identity),
            });
        }
        let session_binding = match (input.call.method, input.call.server) {
            (Some("initialize"), Some(server)) => {
                Some(self.session_keys().binding_key(server, &identity.agent))
            }
            _ => None,
        };
        Outcome::Allow {
            identity,
            upstream_credential: policy
                .upstream_credential(input.call.server)
                .map(str::to_owned),
            upstream_session,
            session_binding,
        }
    }

    /// The server's own session id behind `reference`, if it was issued to `agent` on
    /// `server`. A request without a server id cannot name a binding, so its session
    /// never opens.
    fn open_session(&self, server: Option<&str>, agent: &str, reference: &str) -> Option<String> {
        let server = server?;
        match self.session_keys().open(server, agent, reference) {
            // MCP: session ids are visible ASCII. Only this gateway can make a valid
            // reference, and the filter wraps nothing else; checked anyway, since the
            // value becomes a request header.
            Ok(session) if session.bytes().all(|b| (0x21..=0x7e).contains(&b)) => Some(session),
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(%error, server, "session reference refused");
                None
            }
        }
    }

    /// Verifies the token, from the cache when it was verified before.
    async fn identify(&self, token: &str) -> Result<Arc<Identity>, TokenError> {
        let now = now();
        let leeway = self.rules.leeway_seconds;
        let key = TokenCache::key(token);
        if let Some(identity) = self.cache.get(&key, now, leeway) {
            self.metrics.cache_hits.inc();
            return Ok(identity);
        }
        self.metrics.cache_misses.inc();
        let keys = self.jwks.keys().ok_or(TokenError::UnknownKey)?;
        let (identity, exp) = match verify(token, &keys, &self.rules) {
            // Key rotation: a new `kid` appears before our next scheduled refresh.
            Err(TokenError::UnknownKey) => match self.jwks.refresh_for_unknown_kid().await {
                Ok(true) => {
                    let keys = self.jwks.keys().ok_or(TokenError::UnknownKey)?;
                    verify(token, &keys, &self.rules)?
                }
                Ok(false) => return Err(TokenError::UnknownKey),
                Err(error) => {
                    self.metrics.jwks_refresh_failures.inc();
                    tracing::warn!(%error, "JWKS refresh for an unknown kid failed");
                    return Err(TokenError::UnknownKey);
                }
            },
            other => other?,
        };
        let identity = Arc::new(identity);
        self.cache.insert(key, identity.clone(), exp, now, leeway);
        Ok(identity)
    }
}

/// The JSON-RPC id from `x-mcp-request-id`, if it is a valid id (string or integer).
/// The filter sets this header after stripping client copies, so it is trusted to be
/// the body's id; it is still checked, as it is pasted into a JSON body.
fn request_id(header: Option<&str>) -> Option<Box<RawValue>> {
    let text = header?;
    let valid = match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text).is_ok(),
        Some(b'-' | b'0'..=b'9') => serde_json::from_str::<serde_json::Number>(text)
            .is_ok_and(|n| n.is_i64() || n.is_u64() || !text.contains(['.', 'e', 'E'])),
        _ => false,
    };
    valid
        .then(|| RawValue::from_string(text.to_owned()).ok())
        .flatten()
}
