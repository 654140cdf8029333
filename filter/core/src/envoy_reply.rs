//! Envoy's own replies, identified by `response.code_details`: what the client is told
//! and how the audit record describes them. One table, used both where the filter
//! rewrites a reply's body (it knows the JSON-RPC id) and where it classifies how the
//! request ended, so the `error_code` of the record is the code the client got.

use crate::error::{
    AUTHZ_UNAVAILABLE, FORBIDDEN, GATEWAY_INTERNAL, INVALID_PARAMS, RATE_LIMITED,
    SESSION_NOT_FOUND, UNAUTHORIZED, UPSTREAM_TIMEOUT, UPSTREAM_UNAVAILABLE,
};
use crate::outcome::{Decision, OutputStatus};

/// One kind of Envoy reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvoyReply {
    /// The JSON-RPC error code the client gets.
    pub code: i64,
    /// The message of the JSON-RPC error the filter writes, when it rewrites the body.
    pub message: &'static str,
    /// The filter rewrites the body: Envoy's own body is plain text or a JSON-RPC error
    /// without the request's id (`local_reply_config`). The authz-service's denials
    /// already carry a JSON-RPC body with the id and are left alone.
    pub rewrite: bool,
    pub decision: Decision,
    pub output_status: OutputStatus,
}

/// Envoy's response code details for an upstream that did not answer in time
/// (route timeout, per-try timeout, stream idle timeout). Envoy 1.40's router answers
/// a route timeout before any response with `response_timeout` (checked with
/// `%RESPONSE_CODE_DETAILS%`), and cuts a started stream with
/// `upstream_response_timeout`.
pub const TIMEOUT_DETAILS: [&str; 5] = [
    "response_timeout",
    "upstream_response_timeout",
    "upstream_per_try_timeout",
    "stream_idle_timeout",
    "request_overall_timeout",
];

/// The reply Envoy itself sent, given the response's code details and status; `None`
/// for an upstream's answer (`via_upstream`) and for a started response that Envoy cut
/// (no reply of its own reached the client).
pub fn envoy_reply(details: &str, http_status: Option<u16>) -> Option<EnvoyReply> {
    let reply = |code, message, rewrite, decision, output_status| EnvoyReply {
        code,
        message,
        rewrite,
        decision,
        output_status,
    };
    let refused = OutputStatus::Error;
    match details {
        "request_rate_limited" => Some(reply(
            RATE_LIMITED,
            "rate limited: too many calls of this tool by this agent",
            true,
            Decision::RateLimited,
            refused,
        )),
        "ext_authz_error" => Some(reply(
            AUTHZ_UNAVAILABLE,
            "authorization service unavailable: request refused",
            true,
            Decision::Denied,
            refused,
        )),
        // The authz-service's refusal of a tools/call whose arguments do not match the
        // registered schema (-32602) or whose `Mcp-Param-*` headers disagree with them
        // (-32020, told apart by the `error_code` it puts in the metadata): the
        // request was not valid, its body already says why.
        d if d.starts_with("ext_authz") && http_status == Some(400) => Some(reply(
            INVALID_PARAMS,
            "",
            false,
            Decision::Invalid,
            refused,
        )),
        // The authz-service's refusal of a request whose route leads to another server
        // than its label (a gateway misconfiguration): its body says why.
        d if d.starts_with("ext_authz") && http_status == Some(500) => Some(reply(
            GATEWAY_INTERNAL,
            "",
            false,
            Decision::GatewayError,
            refused,
        )),
        d if d.starts_with("ext_authz") => {
            // The authz-service's denials. Its 404s on an MCP path (the only requests
            // with a record) are the session check: every request there carries the
            // server label, so -31014 (unlabelled) never has a record.
            let code = match http_status {
                Some(401) => UNAUTHORIZED,
                Some(403) => FORBIDDEN,
                Some(404) => SESSION_NOT_FOUND,
                _ => AUTHZ_UNAVAILABLE,
            };
            Some(reply(code, "", false, Decision::Denied, refused))
        }
        // The router's own answers when the MCP server fails: it could not connect, or
        // the connection closed or reset before a response started.
        d if d.starts_with("upstream_reset_before_response_started")
            || d == "no_healthy_upstream"
            || d == "cluster_not_found" =>
        {
            Some(reply(
                UPSTREAM_UNAVAILABLE,
                "MCP server unavailable: it could not be reached or closed the connection before answering",
                true,
                Decision::Allowed,
                refused,
            ))
        }
        // A timeout before any response is Envoy's 504; one that cut a started stream
        // sent nothing of Envoy's own (the client got the server's status).
        d if TIMEOUT_DETAILS.contains(&d) && http_status.is_none_or(|s| s == 504) => {
            Some(reply(
                UPSTREAM_TIMEOUT,
                "MCP server did not answer in time",
                true,
                Decision::Allowed,
                OutputStatus::Timeout,
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (details, status, code, rewritten, decision, output status) per Envoy reply.
    type Row = (&'static str, Option<u16>, i64, bool, Decision, OutputStatus);

    #[test]
    fn the_table() {
        use Decision::*;
        use OutputStatus::*;
        let table: &[Row] = &[
            (
                "request_rate_limited",
                Some(429),
                -31020,
                true,
                RateLimited,
                Error,
            ),
            ("ext_authz_error", Some(503), -31012, true, Denied, Error),
            ("ext_authz_denied", Some(401), -31010, false, Denied, Error),
            ("ext_authz_denied", Some(403), -31011, false, Denied, Error),
            ("ext_authz_denied", Some(404), -31013, false, Denied, Error),
            ("ext_authz_denied", Some(400), -32602, false, Invalid, Error),
            (
                "ext_authz_denied",
                Some(500),
                -31000,
                false,
                GatewayError,
                Error,
            ),
            (
                "upstream_reset_before_response_started{connection_failure}",
                Some(503),
                -31030,
                true,
                Allowed,
                Error,
            ),
            (
                "upstream_reset_before_response_started{remote_reset}",
                Some(503),
                -31030,
                true,
                Allowed,
                Error,
            ),
            (
                "no_healthy_upstream",
                Some(503),
                -31030,
                true,
                Allowed,
                Error,
            ),
            ("cluster_not_found", Some(503), -31030, true, Allowed, Error),
            (
                "response_timeout",
                Some(504),
                -31031,
                true,
                Allowed,
                Timeout,
            ),
            (
                "upstream_per_try_timeout",
                Some(504),
                -31031,
                true,
                Allowed,
                Timeout,
            ),
            ("stream_idle_timeout", None, -31031, true, Allowed, Timeout),
        ];
        for &(details, status, code, rewrite, decision, output_status) in table {
            let reply = envoy_reply(details, status).unwrap_or_else(|| panic!("{details}"));
            assert_eq!(
                (
                    reply.code,
                    reply.rewrite,
                    reply.decision,
                    reply.output_status
                ),
                (code, rewrite, decision, output_status),
                "{details}"
            );
            assert_eq!(reply.rewrite, !reply.message.is_empty(), "{details}");
        }
        // Not Envoy's own reply: the server answered, or Envoy cut a started stream.
        for (details, status) in [
            ("via_upstream", Some(503)),
            ("via_upstream", Some(200)),
            ("upstream_response_timeout", Some(200)),
            ("", None),
        ] {
            assert_eq!(envoy_reply(details, status), None, "{details} {status:?}");
        }
    }
}
