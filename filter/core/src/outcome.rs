//! How a request ended: the gateway's decision, the call's `output_status` and the
//! JSON-RPC error code, from what the filter saw of the response.

use crate::envoy_reply::envoy_reply;
use crate::reply_scan::Reply;
use serde::Serialize;

/// What the gateway decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Forwarded to the MCP server.
    Allowed,
    /// Refused by ext_authz (401, 403), or refused because it could not ask (503).
    Denied,
    /// Refused by the rate limit filter (429).
    RateLimited,
    /// Refused by this filter: not a valid MCP request (400, 405, 413, 415).
    Invalid,
    /// Refused because the filter itself failed (500); never forwarded.
    GatewayError,
}

/// `output_status` of the audit record (the seed schema's four values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStatus {
    Success,
    Error,
    Timeout,
    Partial,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::RateLimited => "rate_limited",
            Decision::Invalid => "invalid",
            Decision::GatewayError => "gateway_error",
        }
    }
}

impl OutputStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStatus::Success => "success",
            OutputStatus::Error => "error",
            OutputStatus::Timeout => "timeout",
            OutputStatus::Partial => "partial",
        }
    }
}

/// What the filter observed about one request's end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ending<'a> {
    /// The filter refused the request itself, with this JSON-RPC code and status.
    pub rejected: Option<(i64, u16)>,
    /// The response status; `None` when no response started (client went away).
    pub http_status: Option<u16>,
    /// Envoy's `response.code_details` (`via_upstream`, `ext_authz_denied`, ...).
    pub code_details: Option<&'a str>,
    /// The JSON-RPC response to this request, if one was read.
    pub reply: Option<Reply>,
    /// The whole response reached the client (end of stream seen).
    pub complete: bool,
    /// The request expects a JSON-RPC response (a POSTed request with an id).
    pub expects_reply: bool,
}

/// The classified end of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    pub status: OutputStatus,
    pub error_code: Option<i64>,
}

pub use crate::envoy_reply::TIMEOUT_DETAILS;

pub fn classify(ending: &Ending) -> Outcome {
    let refused = |decision, code| Outcome {
        decision,
        status: OutputStatus::Error,
        error_code: Some(code),
    };
    if let Some((code, status)) = ending.rejected {
        let decision = if status >= 500 {
            Decision::GatewayError
        } else {
            Decision::Invalid
        };
        return refused(decision, code);
    }
    let details = ending.code_details.unwrap_or_default();
    // Envoy's own replies: the same table the filter rewrites them by.
    if let Some(reply) = envoy_reply(details, ending.http_status) {
        return Outcome {
            decision: reply.decision,
            status: reply.output_status,
            error_code: Some(reply.code),
        };
    }
    let allowed = |status, error_code| Outcome {
        decision: Decision::Allowed,
        status,
        error_code,
    };
    if TIMEOUT_DETAILS.contains(&details) || matches!(ending.http_status, Some(408 | 504)) {
        return allowed(OutputStatus::Timeout, None);
    }
    match ending.reply {
        Some(Reply::Result { is_error: false }) => return allowed(OutputStatus::Success, None),
        Some(Reply::Result { is_error: true }) => return allowed(OutputStatus::Error, None),
        Some(Reply::Error { code }) => return allowed(OutputStatus::Error, code),
        None => {}
    }
    match ending.http_status {
        Some(status) if status >= 400 => allowed(OutputStatus::Error, None),
        // Notifications and client responses get 202 without a body; GET streams and
        // DELETE end without a JSON-RPC response.
        Some(_) if ending.complete && !ending.expects_reply => allowed(OutputStatus::Success, None),
        // The body or stream ended before the response, or the client left.
        _ => allowed(OutputStatus::Partial, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{
        AUTHZ_UNAVAILABLE, FORBIDDEN, RATE_LIMITED, SESSION_NOT_FOUND, UNAUTHORIZED,
        UPSTREAM_TIMEOUT, UPSTREAM_UNAVAILABLE,
    };

    fn ending(status: u16, details: &str) -> Ending<'_> {
        Ending {
            http_status: Some(status),
            code_details: Some(details),
            complete: true,
            expects_reply: true,
            ..Ending::default()
        }
    }

    fn outcome(e: &Ending) -> (Decision, OutputStatus, Option<i64>) {
        let o = classify(e);
        (o.decision, o.status, o.error_code)
    }

    #[test]
    fn replies_from_the_server() {
        let mut e = ending(200, "via_upstream");
        e.reply = Some(Reply::Result { is_error: false });
        assert_eq!(
            outcome(&e),
            (Decision::Allowed, OutputStatus::Success, None)
        );
        e.reply = Some(Reply::Result { is_error: true });
        assert_eq!(outcome(&e), (Decision::Allowed, OutputStatus::Error, None));
        e.reply = Some(Reply::Error { code: Some(-32602) });
        assert_eq!(
            outcome(&e),
            (Decision::Allowed, OutputStatus::Error, Some(-32602))
        );
        // A reply counts even if the client left before the stream closed.
        e.complete = false;
        assert_eq!(outcome(&e).1, OutputStatus::Error);
    }

    #[test]
    fn refusals() {
        assert_eq!(
            outcome(&ending(401, "ext_authz_denied")),
            (Decision::Denied, OutputStatus::Error, Some(UNAUTHORIZED))
        );
        assert_eq!(
            outcome(&ending(403, "ext_authz_denied")),
            (Decision::Denied, OutputStatus::Error, Some(FORBIDDEN))
        );
        assert_eq!(
            outcome(&ending(404, "ext_authz_denied")),
            (
                Decision::Denied,
                OutputStatus::Error,
                Some(SESSION_NOT_FOUND)
            )
        );
        assert_eq!(
            outcome(&ending(503, "ext_authz_error")),
            (
                Decision::Denied,
                OutputStatus::Error,
                Some(AUTHZ_UNAVAILABLE)
            )
        );
        assert_eq!(
            outcome(&ending(429, "request_rate_limited")),
            (
                Decision::RateLimited,
                OutputStatus::Error,
                Some(RATE_LIMITED)
            )
        );
        let mut e = ending(413, "wasm");
        e.rejected = Some((-31001, 413));
        assert_eq!(
            outcome(&e),
            (Decision::Invalid, OutputStatus::Error, Some(-31001))
        );
        e.rejected = Some((-31000, 500));
        assert_eq!(outcome(&e).0, Decision::GatewayError);
    }

    #[test]
    fn timeouts_errors_and_partial_ends() {
        // Envoy's own 504 (the filter rewrote it with -31031): the code the client got.
        assert_eq!(
            outcome(&ending(504, "upstream_response_timeout")),
            (
                Decision::Allowed,
                OutputStatus::Timeout,
                Some(UPSTREAM_TIMEOUT)
            )
        );
        // A started stream cut by the route timeout: the client got the server's 200.
        assert_eq!(
            outcome(&ending(200, "upstream_response_timeout")),
            (Decision::Allowed, OutputStatus::Timeout, None)
        );
        assert_eq!(
            outcome(&ending(504, "via_upstream")).1,
            OutputStatus::Timeout
        );
        assert_eq!(
            outcome(&ending(
                503,
                "upstream_reset_before_response_started{connection_termination}"
            )),
            (
                Decision::Allowed,
                OutputStatus::Error,
                Some(UPSTREAM_UNAVAILABLE)
            )
        );
        // 200 whose body ended without the response.
        assert_eq!(
            outcome(&ending(200, "via_upstream")).1,
            OutputStatus::Partial
        );
        // The client disconnected mid-stream.
        let mut e = ending(200, "via_upstream");
        e.complete = false;
        assert_eq!(outcome(&e).1, OutputStatus::Partial);
        // No response at all.
        let gone = Ending {
            expects_reply: true,
            ..Ending::default()
        };
        assert_eq!(outcome(&gone).1, OutputStatus::Partial);
        // A notification answered 202.
        let mut note = ending(202, "via_upstream");
        note.expects_reply = false;
        assert_eq!(outcome(&note).1, OutputStatus::Success);
    }
}
