//! The authorization decision for one request, independent of gRPC.

use crate::identity::Identity;
use crate::jwks::Jwks;
use crate::metrics::Metrics;
use crate::policy::{Call, Policy};
use crate::schemas::{self, Mode, Schemas, Verdict};
use crate::session_keys::SessionKeys;
use crate::token::{verify, TokenCache, TokenError, TokenRules};
use mcp_filter_core::protocol::{Era, ProtocolVersion};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

mod denial;

pub use self::denial::{Denial, NOT_AN_MCP_ENDPOINT_MESSAGE, SESSION_NOT_FOUND_MESSAGE};
// JSON-RPC codes of the gateway's one error table (README), shared with the filter.
pub use mcp_filter_core::error::{FORBIDDEN, NOT_AN_MCP_ENDPOINT, SESSION_NOT_FOUND, UNAUTHORIZED};

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
    /// `x-mcp-protocol-version`: the revision the request speaks (the filter's label).
    pub protocol_version: Option<&'a str>,
    /// The request body (ext_authz `with_request_body`, `raw_body`), for the argument
    /// checks of `tools/call`; `None` when Envoy sent none.
    pub body: Option<&'a [u8]>,
    /// The request headers as Envoy sent them (lower-case names), for `Mcp-Param-*`.
    pub headers: Option<&'a HashMap<String, String>>,
    /// The server of the route Envoy picked after the filter's labels: the route
    /// metadata `mcp_gateway.server_id` (ext_authz `route_metadata_context_namespaces`);
    /// `None` on routes without it.
    pub routed_server: Option<&'a str>,
}

/// What an allowed list call tells the filter (dynamic metadata), so that it shows
/// the caller only what the policy lets it use (issue 16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// `tools/list`: the `allowed_tools` leaf, a sorted JSON array of tool names.
    Tools(String),
    /// `prompts/list`, `resources/list`, `resources/templates/list`: whether every
    /// entry may be used (`list_entries` `all`) or none (`none`).
    Entries(bool),
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
        /// For list calls: what the caller may see.
        listing: Option<Listing>,
        /// `tools/call` in `report` mode with invalid arguments: `<pointer>: <error>`
        /// (argument values masked), for the audit record.
        violation: Option<String>,
    },
    Deny(Denial),
}

/// Everything a decision needs; shared by all gRPC calls.
pub struct Authorizer {
    pub rules: TokenRules,
    pub jwks: Arc<Jwks>,
    pub policy: RwLock<Arc<Policy>>,
    /// Master keys of session binding (hot-reloaded like the policy).
    pub session_keys: RwLock<Arc<SessionKeys>>,
    /// Registered tool schemas (`--schemas`, hot-reloaded; empty without the flag).
    pub schemas: RwLock<Arc<Schemas>>,
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

    pub fn schemas(&self) -> Arc<Schemas> {
        self.schemas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_schemas(&self, schemas: Schemas) {
        self.metrics.schema_tools.set(schemas.tool_count() as i64);
        *self.schemas.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(schemas);
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
    /// (403) -> `tools/call` arguments (400). Each step names the caller only once it
    /// is known, and a caller without the scopes learns nothing about the schema.
    pub async fn check(&self, input: &CheckInput<'_>) -> Outcome {
        // Only denials need the id, so it is parsed on those paths alone.
        let id = || request_id(input.request_id);
        let metadata = self.resource_metadata.as_str();
        // The filter labels every request it handles as MCP with the server id. One
        // without it took another route to the server (Istio's inbound route is a
        // catch-all: POST /MCP, /mcp/ or /other reach the same server): refuse it
        // before anything else, unless the route says such requests are expected.
        if input.call.server.is_none() && !input.unlabelled_allowed {
            return Outcome::Deny(Denial::unlabelled(id()));
        }
        // ext_authz asks for the route after the filter cleared the route cache, so it
        // sees the route Envoy will use; the filter itself cannot (on Envoy 1.40 its
        // read after clearing returns the route picked before its labels). A route on
        // gateway headers that sends one server's labelled request to another server
        // would otherwise run it there under the first server's policy and audit.
        if let (Some(labelled), Some(routed)) = (input.call.server, input.routed_server) {
            if labelled != routed {
                return Outcome::Deny(Denial::misrouted(id(), labelled, routed));
            }
        }
        // RFC 6750 section 2.1: `Authorization: Bearer <token>`; the scheme is
        // case-insensitive (RFC 9110 section 11.1).
        let token = input.authorization.and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Outcome::Deny(Denial::no_token(id(), metadata));
        };
        let identity = match self.identify(token).await {
            Ok(identity) => identity,
            Err(error) => return Outcome::Deny(Denial::invalid_token(id(), metadata, error)),
        };
        // A session is opened only by the agent it was issued to, on the server that
        // issued it (MCP: a client that gets 404 for its session starts a new one).
        let upstream_session = match input.session {
            None => None,
            Some(reference) => {
                match self.open_session(input.call.server, &identity.agent, reference) {
                    Some(session) => Some(session),
                    None => return Outcome::Deny(Denial::session(id(), identity)),
                }
            }
        };
        let policy = self.policy();
        let required = match policy.required_scopes(&input.call) {
            Ok(required) => required,
            Err(refusal) => return Outcome::Deny(Denial::policy(id(), identity, refusal)),
        };
        let missing: Vec<&str> = required
            .iter()
            .filter(|s| !identity.scopes.contains(*s))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Outcome::Deny(Denial::insufficient_scope(
                id(),
                identity,
                metadata,
                &required,
                &missing,
            ));
        }
        let session_binding = match (input.call.method, input.call.server) {
            (Some("initialize"), Some(server)) => {
                Some(self.session_keys().binding_key(server, &identity.agent))
            }
            _ => None,
        };
        let mut violation = None;
        if let (Some("tools/call"), Some(server), Some(tool)) =
            (input.call.method, input.call.server, input.call.tool)
        {
            match self.check_arguments(input, server, tool) {
                Ok(found) => violation = found,
                Err(denial) => return Outcome::Deny(denial.naming(identity).with_id(id())),
            }
        }
        let listing = input
            .call
            .server
            .zip(input.call.method)
            .and_then(|(server, method)| listing(&policy, server, method, &identity));
        Outcome::Allow {
            identity,
            upstream_credential: policy
                .upstream_credential(input.call.server)
                .map(str::to_owned),
            upstream_session,
            session_binding,
            listing,
            violation,
        }
    }

    /// The argument checks of an authorized `tools/call` of a registered tool:
    /// `Ok(Some(violation))` in `report` mode, a denial in `enforce` mode or on a
    /// header mismatch. Counted per registered server and tool (bounded labels).
    fn check_arguments(
        &self,
        input: &CheckInput<'_>,
        server: &str,
        tool: &str,
    ) -> Result<Option<String>, Denial> {
        let schemas = self.schemas();
        let Some((mode, schema)) = schemas.tool(server, tool) else {
            return Ok(None);
        };
        // MCP 2026-07-28 introduced Mcp-Param headers; older revisions never mirror.
        let headers_apply = input
            .protocol_version
            .and_then(ProtocolVersion::parse)
            .is_some_and(|version| version.era() == Era::Stateless);
        let header = |name: &str| {
            input
                .headers
                .and_then(|headers| headers.get(name))
                .map(String::as_str)
        };
        let verdict = schema.check(mode, input.body, headers_apply, header);
        let result = match &verdict {
            Verdict::Skipped => return Ok(None),
            Verdict::Valid => "valid",
            Verdict::HeaderMismatch(_) => "header_mismatch",
            Verdict::Invalid { .. } => "invalid",
        };
        self.metrics
            .count_argument_check(server, tool, mode, result);
        match verdict {
            Verdict::Skipped | Verdict::Valid => Ok(None),
            Verdict::HeaderMismatch(message) => Err(Denial::header_mismatch(&message)),
            Verdict::Invalid { detail, .. } if mode == Mode::Enforce => {
                Err(Denial::invalid_arguments(tool, &detail))
            }
            Verdict::Invalid { masked, .. } => {
                tracing::debug!(server, tool, violation = %masked, "invalid arguments forwarded (report mode)");
                Ok(Some(
                    schemas::truncate(&masked, schemas::VIOLATION_LEAF_BYTES).to_owned(),
                ))
            }
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

/// What a list call may show, for the methods the filter filters.
fn listing(policy: &Policy, server: &str, method: &str, identity: &Identity) -> Option<Listing> {
    let scopes = &identity.scopes;
    match method {
        "tools/list" => Some(Listing::Tools(policy.allowed_tools(server, scopes))),
        "prompts/list" => Some(Listing::Entries(policy.permits(
            server,
            "prompts/get",
            scopes,
        ))),
        "resources/list" | "resources/templates/list" => Some(Listing::Entries(policy.permits(
            server,
            "resources/read",
            scopes,
        ))),
        _ => None,
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
