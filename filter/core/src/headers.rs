//! Header names: the gateway's header contract and the client's MCP transport headers.
//!
//! The gateway headers are what Envoy's later filters (ext_authz, ratelimit, router,
//! access log) act on, so a client must never be able to supply them: every copy that
//! arrives from the client is removed before anything else happens (design brief,
//! "Header contract").

/// JSON-RPC `method` of the request.
pub const X_MCP_METHOD: &str = "x-mcp-method";
/// `params.name` of `tools/call`.
pub const X_MCP_TOOL_NAME: &str = "x-mcp-tool-name";
/// `params.name` of `prompts/get`.
pub const X_MCP_PROMPT_NAME: &str = "x-mcp-prompt-name";
/// `params.uri` of `resources/read`, `resources/subscribe` and `resources/unsubscribe`.
pub const X_MCP_RESOURCE_URI: &str = "x-mcp-resource-uri";
/// The protocol revision the request speaks.
pub const X_MCP_PROTOCOL_VERSION: &str = "x-mcp-protocol-version";
/// The registered id of the upstream MCP server (from the filter configuration).
pub const X_MCP_SERVER_ID: &str = "x-mcp-server-id";
/// The JSON-RPC `id`, JSON-encoded (ASCII only), so that other components can build
/// JSON-RPC error bodies that the client can match to its request.
pub const X_MCP_REQUEST_ID: &str = "x-mcp-request-id";
/// The server version a request is sent to: set by the router from the rendered route
/// (`ClusterWeight.request_headers_to_add`, so it names the cluster finally used); a
/// client's copy is stripped here like every `x-mcp-*` header.
pub const X_MCP_SERVER_VERSION: &str = "x-mcp-server-version";
/// The number Envoy's weighted cluster pick uses (`weighted_clusters.header_name` of a
/// canary route): set by the filter only, to keep a handshake-era session on the
/// release that started it (see `crate::route::Track::pick_value`). A client's copy
/// would let it choose its release, so it is stripped like every `x-mcp-*` header.
pub const X_MCP_VERSION_PICK: &str = "x-mcp-version-pick";
/// The calling agent; set only from a source Envoy verified.
pub const X_AGENT_ID: &str = "x-agent-id";
/// The human the agent acts for (set by the authz-service from a verified token).
pub const X_USER_ID: &str = "x-user-id";

/// Prefix shared by every gateway header except the two identity headers.
const GATEWAY_PREFIX: &str = "x-mcp-";

/// `MCP-Protocol-Version` (MCP transport spec, "Protocol Version Header").
pub const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// `Mcp-Method`: mirror of the body's `method` (2026-07-28).
pub const MCP_METHOD: &str = "mcp-method";
/// `Mcp-Name`: mirror of `params.name` / `params.uri` (2026-07-28).
pub const MCP_NAME: &str = "mcp-name";
/// `Mcp-Session-Id` of the handshake era (2025-03-26 .. 2025-11-25).
pub const MCP_SESSION_ID: &str = "mcp-session-id";

/// Envoy's dynamic metadata namespace of the ext_authz filter: what the authz-service
/// returns in `CheckResponse.dynamic_metadata` lands here.
pub const EXT_AUTHZ_NAMESPACE: &str = "envoy.filters.http.ext_authz";
/// ext_authz metadata key: the session binding key (hex) for an allowed `initialize`,
/// see [`crate::session_ref`].
pub const SESSION_KEY_METADATA: &str = "session_key";

/// True for every header name the client must not be able to set: `x-mcp-*`,
/// `x-agent-id` and `x-user-id`. Comparison ignores ASCII case (HTTP header names are
/// case-insensitive, RFC 9110 section 5.1; Envoy lower-cases them, but the filter must
/// not depend on that).
pub fn is_gateway_header(name: &str) -> bool {
    let starts_with_prefix = name
        .get(..GATEWAY_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(GATEWAY_PREFIX));
    starts_with_prefix
        || name.eq_ignore_ascii_case(X_AGENT_ID)
        || name.eq_ignore_ascii_case(X_USER_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_headers_are_recognised_in_any_case() {
        for name in [
            "x-mcp-tool-name",
            "X-MCP-Tool-Name",
            "x-mcp-anything-new",
            "x-mcp-",
            X_MCP_VERSION_PICK,
            "X-MCP-Version-Pick",
            X_MCP_SERVER_VERSION,
            "X-Mcp-Server-Version",
            "x-agent-id",
            "X-Agent-ID",
            "x-user-id",
        ] {
            assert!(is_gateway_header(name), "{name} must be stripped");
        }
    }

    #[test]
    fn client_mcp_headers_and_others_are_kept() {
        for name in [
            "mcp-method",
            "mcp-name",
            "mcp-protocol-version",
            "mcp-session-id",
            "x-mcp",
            "x-agent",
            "x-agent-idx",
            "authorization",
            "",
            "é",
        ] {
            assert!(!is_gateway_header(name), "{name} must be kept");
        }
    }
}
