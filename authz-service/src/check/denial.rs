//! A refusal and its wire form: one constructor per kind, each fixing the HTTP status,
//! the JSON-RPC code (the gateway's error table, shared with the filter), the gRPC
//! code Envoy reads, the challenge, the metric label and whether the caller is named.
//! Like the filter's `Rejection`, the value renders its own answer, so the rules for
//! one kind live in one place.

use crate::identity::Identity;
use mcp_filter_core::error::{
    FORBIDDEN, GATEWAY_INTERNAL, HEADER_MISMATCH, INVALID_PARAMS, NOT_AN_MCP_ENDPOINT,
    SESSION_NOT_FOUND, UNAUTHORIZED,
};
use mcp_filter_core::error_body;
use serde_json::value::RawValue;
use std::fmt;
use std::sync::Arc;

/// What a client whose `Mcp-Session-Id` does not open is told: nothing about whose
/// session it is or whether it exists.
pub const SESSION_NOT_FOUND_MESSAGE: &str =
    "session not found: this Mcp-Session-Id was not issued to the calling agent by this gateway";
/// What a request without the filter's labels is told.
pub const NOT_AN_MCP_ENDPOINT_MESSAGE: &str =
    "not an MCP endpoint: the request did not pass the gateway's MCP handling";

// google.rpc.Code values Envoy reads alongside the HTTP answer (any code but OK is a
// denial; the HTTP status comes from the denied response).
const RPC_INVALID_ARGUMENT: i32 = 3;
const RPC_NOT_FOUND: i32 = 5;
const RPC_PERMISSION_DENIED: i32 = 7;
const RPC_UNAUTHENTICATED: i32 = 16;
const RPC_INTERNAL: i32 = 13;

/// Why a request was refused, with what its answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// No filter labels on a route that expects them.
    Unlabelled,
    /// No bearer token.
    NoToken,
    /// A token that does not verify (the reason, for the challenge and the body).
    InvalidToken(String),
    /// A session reference that does not open for this agent and server.
    Session,
    /// The policy refuses the call (the reason).
    Policy(String),
    /// The token lacks scopes: every scope the call needs, and the missing ones.
    InsufficientScope { needed: String, missing: String },
    /// `tools/call` arguments that do not validate against the registered schema
    /// (`enforce` mode): the whole message.
    InvalidArguments(String),
    /// An `Mcp-Param-*` header that disagrees with the body (every mode).
    HeaderMismatch(String),
    /// The route Envoy picked after the filter's labels leads to another server than
    /// the one the request was labelled (and is authorised) for: a route on gateway
    /// headers sends one server's requests to another. A gateway fault, refused.
    Misrouted { labelled: String, routed: String },
}

/// A refusal as the client will see it.
#[derive(Debug, Clone)]
pub struct Denial {
    kind: Kind,
    /// The JSON-RPC id to echo, when the request had a valid one.
    id: Option<Box<RawValue>>,
    /// RFC 9728 metadata URL, for the kinds that carry a challenge.
    resource_metadata: Option<String>,
    identity: Option<Arc<Identity>>,
}

impl Denial {
    fn new(kind: Kind, id: Option<Box<RawValue>>) -> Denial {
        Denial {
            kind,
            id,
            resource_metadata: None,
            identity: None,
        }
    }

    pub(crate) fn naming(mut self, identity: Arc<Identity>) -> Denial {
        self.identity = Some(identity);
        self
    }

    pub(crate) fn with_id(mut self, id: Option<Box<RawValue>>) -> Denial {
        self.id = id;
        self
    }

    fn challenging(mut self, resource_metadata: &str) -> Denial {
        self.resource_metadata = Some(resource_metadata.to_owned());
        self
    }

    /// 404: the request did not pass the filter (see `Authorizer::check`).
    pub fn unlabelled(id: Option<Box<RawValue>>) -> Denial {
        Denial::new(Kind::Unlabelled, id)
    }

    /// 401 with the metadata challenge: no bearer token.
    pub fn no_token(id: Option<Box<RawValue>>, resource_metadata: &str) -> Denial {
        Denial::new(Kind::NoToken, id).challenging(resource_metadata)
    }

    /// 401 `invalid_token`: the token did not verify, for `reason`.
    pub fn invalid_token(
        id: Option<Box<RawValue>>,
        resource_metadata: &str,
        reason: impl fmt::Display,
    ) -> Denial {
        Denial::new(Kind::InvalidToken(reason.to_string()), id).challenging(resource_metadata)
    }

    /// 404: the session reference does not open for this caller.
    pub fn session(id: Option<Box<RawValue>>, identity: Arc<Identity>) -> Denial {
        Denial::new(Kind::Session, id).naming(identity)
    }

    /// 403: the policy refuses the call, for `reason`.
    pub fn policy(
        id: Option<Box<RawValue>>,
        identity: Arc<Identity>,
        reason: impl fmt::Display,
    ) -> Denial {
        Denial::new(Kind::Policy(reason.to_string()), id).naming(identity)
    }

    /// 403 `insufficient_scope`: `needed` are all the scopes the call needs, `missing`
    /// the ones the token lacks.
    pub fn insufficient_scope(
        id: Option<Box<RawValue>>,
        identity: Arc<Identity>,
        resource_metadata: &str,
        needed: &[String],
        missing: &[&str],
    ) -> Denial {
        let kind = Kind::InsufficientScope {
            needed: needed.join(" "),
            missing: missing.join(" "),
        };
        Denial::new(kind, id)
            .naming(identity)
            .challenging(resource_metadata)
    }

    /// 400, -32602: `tool`'s arguments do not validate; `detail` is
    /// `<json pointer>: <error>` (cut to a bounded length).
    pub fn invalid_arguments(tool: &str, detail: &str) -> Denial {
        let detail = crate::schemas::truncate(detail, crate::schemas::VIOLATION_MESSAGE_BYTES);
        Denial::new(
            Kind::InvalidArguments(format!("Invalid arguments for tool {tool}: {detail}")),
            None,
        )
    }

    /// 500, -31000: the request was labelled for `labelled` but its route leads to
    /// `routed` (see `Kind::Misrouted`).
    pub fn misrouted(id: Option<Box<RawValue>>, labelled: &str, routed: &str) -> Denial {
        Denial::new(
            Kind::Misrouted {
                labelled: labelled.to_owned(),
                routed: routed.to_owned(),
            },
            id,
        )
    }

    /// 400, -32020 (MCP 2026-07-28 HeaderMismatch): an `Mcp-Param-*` header disagrees
    /// with the argument it mirrors.
    pub fn header_mismatch(detail: &str) -> Denial {
        Denial::new(
            Kind::HeaderMismatch(format!("Header mismatch: {detail}")),
            None,
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self.kind {
            Kind::InvalidArguments(_) | Kind::HeaderMismatch(_) => 400,
            Kind::NoToken | Kind::InvalidToken(_) => 401,
            Kind::Policy(_) | Kind::InsufficientScope { .. } => 403,
            Kind::Unlabelled | Kind::Session => 404,
            Kind::Misrouted { .. } => 500,
        }
    }

    /// The `google.rpc.Code` of the ext_authz answer.
    pub fn rpc_code(&self) -> i32 {
        match self.kind {
            Kind::InvalidArguments(_) | Kind::HeaderMismatch(_) => RPC_INVALID_ARGUMENT,
            Kind::NoToken | Kind::InvalidToken(_) => RPC_UNAUTHENTICATED,
            Kind::Policy(_) | Kind::InsufficientScope { .. } => RPC_PERMISSION_DENIED,
            Kind::Unlabelled | Kind::Session => RPC_NOT_FOUND,
            Kind::Misrouted { .. } => RPC_INTERNAL,
        }
    }

    /// The JSON-RPC error code (the gateway's error table).
    pub fn json_rpc_code(&self) -> i64 {
        match self.kind {
            Kind::InvalidArguments(_) => INVALID_PARAMS,
            Kind::HeaderMismatch(_) => HEADER_MISMATCH,
            Kind::NoToken | Kind::InvalidToken(_) => UNAUTHORIZED,
            Kind::Policy(_) | Kind::InsufficientScope { .. } => FORBIDDEN,
            Kind::Unlabelled => NOT_AN_MCP_ENDPOINT,
            Kind::Session => SESSION_NOT_FOUND,
            Kind::Misrouted { .. } => GATEWAY_INTERNAL,
        }
    }

    /// The metric label: why.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            Kind::Unlabelled => "unlabelled",
            Kind::NoToken => "no_token",
            Kind::InvalidToken(_) => "invalid_token",
            Kind::Session => "session",
            Kind::Policy(_) => "policy",
            Kind::InsufficientScope { .. } => "insufficient_scope",
            Kind::InvalidArguments(_) => "invalid_arguments",
            Kind::HeaderMismatch(_) => "header_mismatch",
            Kind::Misrouted { .. } => "misrouted",
        }
    }

    /// The JSON-RPC error message.
    pub fn message(&self) -> String {
        match &self.kind {
            Kind::Unlabelled => NOT_AN_MCP_ENDPOINT_MESSAGE.to_owned(),
            Kind::NoToken => "authorization required: send an OAuth bearer token".to_owned(),
            Kind::InvalidToken(reason) => format!("invalid token: {reason}"),
            Kind::Session => SESSION_NOT_FOUND_MESSAGE.to_owned(),
            Kind::Policy(reason) => format!("forbidden: {reason}"),
            Kind::InsufficientScope { missing, .. } => {
                format!("insufficient scope: missing {missing}")
            }
            Kind::InvalidArguments(message) | Kind::HeaderMismatch(message) => message.clone(),
            Kind::Misrouted { labelled, routed } => format!(
                "gateway misconfiguration: labelled for MCP server {labelled}, routed to {routed}"
            ),
        }
    }

    /// The `WWW-Authenticate` value, for the kinds that have one.
    pub fn challenge(&self) -> Option<String> {
        let metadata = self.resource_metadata.as_deref()?;
        match &self.kind {
            // RFC 9728 section 5.1 / MCP authorization spec: point the client at the
            // protected resource metadata; no error code when no token was sent (RFC
            // 6750 section 3.1).
            Kind::NoToken => Some(format!("Bearer resource_metadata=\"{metadata}\"")),
            Kind::InvalidToken(reason) => Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{reason}\", resource_metadata=\"{metadata}\""
            )),
            // RFC 6750 section 3.1 and MCP "Scope Challenge Handling": name every scope
            // the call needs, so one step-up suffices.
            Kind::InsufficientScope { needed, .. } => Some(format!(
                "Bearer error=\"insufficient_scope\", scope=\"{needed}\", resource_metadata=\"{metadata}\""
            )),
            Kind::Unlabelled
            | Kind::Session
            | Kind::Policy(_)
            | Kind::InvalidArguments(_)
            | Kind::HeaderMismatch(_)
            | Kind::Misrouted { .. } => None,
        }
    }

    /// The JSON-RPC code as the `error_code` metadata leaf, for the 400 refusals: the
    /// filter cannot tell -32602 from -32020 by the status alone, and records it.
    pub fn error_code_leaf(&self) -> Option<i64> {
        matches!(
            self.kind,
            Kind::InvalidArguments(_) | Kind::HeaderMismatch(_)
        )
        .then(|| self.json_rpc_code())
    }

    /// The JSON-RPC error response body.
    pub fn body(&self) -> String {
        error_body(self.id.as_deref(), self.json_rpc_code(), &self.message())
    }

    /// The caller, when the token was valid (403, 404 session): Envoy records it as
    /// dynamic metadata so that the gateway's audit record names the refused agent.
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.identity.as_ref()
    }

    pub fn into_identity(self) -> Option<Arc<Identity>> {
        self.identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind: status, gRPC code, JSON-RPC code, label, challenge and whether the
    /// caller is named, from one table (the old code derived the gRPC code from the
    /// status number).
    #[test]
    fn each_kind_renders_its_own_answer() {
        let metadata = "https://gw/.well-known/oauth-protected-resource";
        let id = || RawValue::from_string("7".to_owned()).ok();
        let who = Arc::new(Identity {
            agent: "a".into(),
            user: None,
            scopes: Default::default(),
        });
        let table = [
            (
                Denial::unlabelled(id()),
                404,
                5,
                NOT_AN_MCP_ENDPOINT,
                "unlabelled",
                false,
                false,
            ),
            (
                Denial::no_token(id(), metadata),
                401,
                16,
                UNAUTHORIZED,
                "no_token",
                true,
                false,
            ),
            (
                Denial::invalid_token(id(), metadata, "expired"),
                401,
                16,
                UNAUTHORIZED,
                "invalid_token",
                true,
                false,
            ),
            (
                Denial::session(id(), who.clone()),
                404,
                5,
                SESSION_NOT_FOUND,
                "session",
                false,
                true,
            ),
            (
                Denial::policy(id(), who.clone(), "tool x"),
                403,
                7,
                FORBIDDEN,
                "policy",
                false,
                true,
            ),
            (
                Denial::insufficient_scope(
                    id(),
                    who.clone(),
                    metadata,
                    &["s1".into(), "s2".into()],
                    &["s2"],
                ),
                403,
                7,
                FORBIDDEN,
                "insufficient_scope",
                true,
                true,
            ),
        ];
        let table = table.into_iter().chain([
            (
                Denial::invalid_arguments("t", "/a: 1 is not of type \"string\"")
                    .naming(who.clone())
                    .with_id(id()),
                400,
                3,
                INVALID_PARAMS,
                "invalid_arguments",
                false,
                true,
            ),
            (
                Denial::header_mismatch("Mcp-Param-A header is missing")
                    .naming(who.clone())
                    .with_id(id()),
                400,
                3,
                HEADER_MISMATCH,
                "header_mismatch",
                false,
                true,
            ),
        ]);
        for (denial, status, rpc, code, label, challenge, named) in table {
            assert_eq!(denial.status(), status, "{label}");
            assert_eq!(denial.rpc_code(), rpc, "{label}");
            assert_eq!(denial.json_rpc_code(), code, "{label}");
            assert_eq!(denial.reason(), label);
            assert_eq!(denial.challenge().is_some(), challenge, "{label}");
            assert_eq!(denial.identity().is_some(), named, "{label}");
            let body: serde_json::Value = serde_json::from_str(&denial.body()).unwrap();
            assert_eq!(body["id"], 7, "{label}");
            assert_eq!(body["error"]["code"], code, "{label}");
            assert_eq!(body["error"]["message"], denial.message(), "{label}");
            assert_eq!(
                denial.error_code_leaf(),
                (status == 400).then_some(code),
                "{label}"
            );
        }
        assert_eq!(
            Denial::invalid_arguments("t", "/a: bad").message(),
            "Invalid arguments for tool t: /a: bad"
        );
        assert_eq!(Denial::header_mismatch("x").message(), "Header mismatch: x");
    }
}
