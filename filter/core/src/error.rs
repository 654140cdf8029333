//! Why a request is refused, and how the refusal looks on the wire.
//!
//! MCP clients act on the HTTP status, and a JSON-RPC error body tells them (and their
//! users) why. A 2026-07-28 client that receives a 400 *without* a JSON-RPC error body
//! falls back to the legacy handshake, so every refusal carries one (design brief,
//! "Errors a client sees").

use serde::Serialize;
use serde_json::value::RawValue;

/// JSON-RPC 2.0 "Parse error": the body is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC 2.0 "Invalid Request": JSON, but not one request/notification object.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC 2.0 "Invalid params": `params` lacks what the method needs.
pub const INVALID_PARAMS: i64 = -32602;
/// MCP 2026-07-28 `HeaderMismatch`: a mirrored header is missing or disagrees with the body.
pub const HEADER_MISMATCH: i64 = -32020;

// Gateway codes lie outside the JSON-RPC reserved range -32768..-32000, as the MCP spec
// asks of implementation-defined errors. The README lists them in one table.
/// The gateway could not read or label the request (host error).
pub const GATEWAY_INTERNAL: i64 = -31000;
/// The request body is larger than the configured limit.
pub const BODY_TOO_LARGE: i64 = -31001;
/// The body is compressed; the gateway cannot inspect it.
pub const UNSUPPORTED_ENCODING: i64 = -31002;
/// An HTTP method the MCP transport does not define.
pub const METHOD_NOT_ALLOWED: i64 = -31003;
/// A request header name with an underscore (400, Envoy's own reply through the
/// `local_reply_config` mapper of the shipped configs): WSGI/CGI/Rack servers read
/// `x_agent_id` as `x-agent-id`, so such headers never pass.
pub const UNDERSCORE_HEADER: i64 = -31004;
/// No valid token (401, from the authz-service).
pub const UNAUTHORIZED: i64 = -31010;
/// The token lacks the scopes the call needs, or the policy refuses it (403).
pub const FORBIDDEN: i64 = -31011;
/// The authz-service cannot be reached (503; requests are refused).
pub const AUTHZ_UNAVAILABLE: i64 = -31012;
/// The `Mcp-Session-Id` is not a session reference this gateway issued to the calling
/// agent (404, from the authz-service; MCP: a client that gets 404 for its session
/// starts a new one).
pub const SESSION_NOT_FOUND: i64 = -31013;
/// The request carries no gateway labels: it did not go through the filter's MCP
/// path handling (404, from the authz-service).
pub const NOT_AN_MCP_ENDPOINT: i64 = -31014;
/// Over the agent's rate limit for the tool (429).
pub const RATE_LIMITED: i64 = -31020;
/// The MCP server cannot be reached, or closed or reset the stream before answering
/// (Envoy's 503).
pub const UPSTREAM_UNAVAILABLE: i64 = -31030;
/// The MCP server did not answer within the route's timeout (Envoy's 504).
pub const UPSTREAM_TIMEOUT: i64 = -31031;

/// Everything that makes the filter refuse a request. The message is what the client
/// reads in `error.message`, so it names the field or header at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("Parse error: request body is not valid JSON ({0})")]
    Parse(String),
    #[error("Invalid Request: JSON-RPC batches are not supported; send one request per HTTP POST")]
    Batch,
    #[error("Invalid Request: {0}")]
    InvalidRequest(String),
    #[error("Invalid Request: duplicate key \"{0}\"")]
    DuplicateKey(String),
    /// A key that differs from one the gateway reads only by case (Unicode simple
    /// case folding): a server that matches keys case-insensitively would read it.
    #[error("Invalid Request: a key spelled like \"{0}\" but in other letter case is not allowed (servers that match keys case-insensitively would read it as \"{0}\")")]
    FoldedKey(String),
    #[error("Invalid params: {0}")]
    InvalidParams(String),
    #[error("Header mismatch: {0}")]
    HeaderMismatch(String),
    #[error("Request body exceeds the gateway limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("Content-Encoding {0:?} is not supported: the gateway must read the body")]
    UnsupportedEncoding(String),
    #[error("HTTP method {0} is not allowed on an MCP endpoint")]
    MethodNotAllowed(String),
    /// A path of the MCP virtual host that no server is registered at.
    #[error("no MCP server is registered at {0}")]
    Unregistered(String),
    #[error("Gateway error: {0}")]
    Internal(String),
}

impl RequestError {
    /// HTTP status the client receives.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Parse(_)
            | RequestError::Batch
            | RequestError::InvalidRequest(_)
            | RequestError::DuplicateKey(_)
            | RequestError::FoldedKey(_)
            | RequestError::InvalidParams(_)
            | RequestError::HeaderMismatch(_) => 400,
            RequestError::MethodNotAllowed(_) => 405,
            RequestError::Unregistered(_) => 404,
            RequestError::BodyTooLarge { .. } => 413,
            RequestError::UnsupportedEncoding(_) => 415,
            RequestError::Internal(_) => 500,
        }
    }

    /// JSON-RPC error code in the body.
    pub fn code(&self) -> i64 {
        match self {
            RequestError::Parse(_) => PARSE_ERROR,
            RequestError::Batch
            | RequestError::InvalidRequest(_)
            | RequestError::DuplicateKey(_)
            | RequestError::FoldedKey(_) => INVALID_REQUEST,
            RequestError::InvalidParams(_) => INVALID_PARAMS,
            RequestError::HeaderMismatch(_) => HEADER_MISMATCH,
            RequestError::BodyTooLarge { .. } => BODY_TOO_LARGE,
            RequestError::UnsupportedEncoding(_) => UNSUPPORTED_ENCODING,
            RequestError::MethodNotAllowed(_) => METHOD_NOT_ALLOWED,
            RequestError::Unregistered(_) => NOT_AN_MCP_ENDPOINT,
            RequestError::Internal(_) => GATEWAY_INTERNAL,
        }
    }
}

/// A refusal: the error plus the request's JSON-RPC `id` when one was readable.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub error: RequestError,
    /// Raw JSON text of a valid `id` (string or number), echoed verbatim so that huge
    /// numbers and escaped strings come back exactly as the client sent them.
    pub id: Option<Box<RawValue>>,
}

impl Rejection {
    pub fn new(error: RequestError) -> Self {
        Rejection { error, id: None }
    }

    pub fn with_id(error: RequestError, id: Option<Box<RawValue>>) -> Self {
        Rejection { error, id }
    }

    pub fn status(&self) -> u16 {
        self.error.status()
    }

    /// Extra response headers the status calls for (RFC 9110: 405 needs `Allow`).
    pub fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self.error {
            RequestError::MethodNotAllowed(_) => &[("allow", "GET, POST, DELETE, OPTIONS")],
            _ => &[],
        }
    }

    /// The JSON-RPC error response body.
    pub fn body(&self) -> String {
        error_body(
            self.id.as_deref(),
            self.error.code(),
            &self.error.to_string(),
        )
    }
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    jsonrpc: &'static str,
    id: Option<&'a RawValue>,
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    code: i64,
    message: &'a str,
}

/// Renders a JSON-RPC 2.0 error response. `id` is raw JSON (`null` when absent).
/// Shared with the services, so every component answers in the same shape.
pub fn error_body(id: Option<&RawValue>, code: i64, message: &str) -> String {
    let response = ErrorResponse {
        jsonrpc: "2.0",
        id,
        error: ErrorObject { code, message },
    };
    // Serialising plain strings, integers and already-valid raw JSON cannot fail; the
    // fallback keeps this function total without a panic path.
    serde_json::to_string(&response).unwrap_or_else(|_| {
        format!(r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":{code},"message":"error"}}}}"#)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn body_carries_id_code_and_message() {
        let id = RawValue::from_string("12345678901234567890123".to_string()).unwrap();
        let rejection = Rejection::with_id(RequestError::Batch, Some(id));
        let body = rejection.body();
        // The huge id survives verbatim (no float rounding).
        assert!(body.contains(r#""id":12345678901234567890123"#), "{body}");
        let value: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["jsonrpc"], "2.0");
        assert_eq!(value["error"]["code"], INVALID_REQUEST);
        assert!(value["error"]["message"]
            .as_str()
            .unwrap()
            .contains("batches are not supported"));
    }

    #[test]
    fn body_without_id_has_null_id() {
        let body = Rejection::new(RequestError::Parse("eof".into())).body();
        let value: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["id"], Value::Null);
        assert_eq!(value["error"]["code"], PARSE_ERROR);
    }

    #[test]
    fn statuses_and_codes_follow_the_error_table() {
        let table: &[(RequestError, u16, i64)] = &[
            (RequestError::Parse("x".into()), 400, -32700),
            (RequestError::Batch, 400, -32600),
            (RequestError::InvalidRequest("x".into()), 400, -32600),
            (RequestError::DuplicateKey("method".into()), 400, -32600),
            (RequestError::FoldedKey("params.name".into()), 400, -32600),
            (RequestError::InvalidParams("x".into()), 400, -32602),
            (RequestError::HeaderMismatch("x".into()), 400, -32020),
            (RequestError::MethodNotAllowed("PUT".into()), 405, -31003),
            (RequestError::BodyTooLarge { limit: 1 }, 413, -31001),
            (
                RequestError::UnsupportedEncoding("gzip".into()),
                415,
                -31002,
            ),
            (RequestError::Internal("x".into()), 500, -31000),
            (RequestError::Unregistered("/x".into()), 404, -31014),
        ];
        for (error, status, code) in table {
            assert_eq!(error.status(), *status, "{error}");
            assert_eq!(error.code(), *code, "{error}");
            // Gateway-specific codes stay out of the JSON-RPC reserved range.
            if ![-32700, -32600, -32602, -32020].contains(code) {
                assert!(!(-32768..=-32000).contains(code), "{code} is reserved");
            }
        }
    }
}
