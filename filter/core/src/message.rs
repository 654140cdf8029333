//! Parses one MCP JSON-RPC message from a request body and checks its structure
//! (JSON-RPC 2.0 section 4; MCP "Base Protocol: Messages").

use crate::error::{Rejection, RequestError};
use crate::input_hash::input_hash;
use crate::pick::{pick, Shape};
use crate::protocol::META_PROTOCOL_VERSION;
use serde_json::error::Category;
use serde_json::value::RawValue;

const ENVELOPE_KEYS: [&str; 6] = ["jsonrpc", "method", "id", "params", "result", "error"];
// `cursor`: a list page after the first (what the drift check may conclude from a page).
const PARAMS_KEYS: [&str; 6] = [
    "name",
    "uri",
    "_meta",
    "protocolVersion",
    "arguments",
    "cursor",
];
/// `traceparent` in `_meta` carries W3C trace context (MCP "General fields: `_meta`").
const META_KEYS: [&str; 2] = [META_PROTOCOL_VERSION, "traceparent"];

/// What the request acts on, by method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `tools/call` `params.name`.
    Tool(String),
    /// `prompts/get` `params.name`.
    Prompt(String),
    /// `resources/read|subscribe|unsubscribe` `params.uri`.
    Resource(String),
}

impl Target {
    /// The value the client mirrors into `Mcp-Name` (MCP 2026-07-28).
    pub fn name(&self) -> &str {
        match self {
            Target::Tool(name) | Target::Prompt(name) | Target::Resource(name) => name,
        }
    }
}

/// MCP 2025-11-25 "Tool names": 1 to 128 characters (prompt names are held to the same
/// bound: both become headers and audit fields).
pub const MAX_NAME_CHARS: usize = 128;

/// How long the values that become labels may be: everything the client controls
/// and the gateway forwards to its side calls is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelLimits {
    pub max_method_bytes: usize,
    pub max_uri_bytes: usize,
}

/// A request or notification from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: Option<Target>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]` (2026-07-28 onward).
    pub meta_version: Option<String>,
    /// `params.protocolVersion` of `initialize` (the revision the client asks for).
    pub initialize_version: Option<String>,
    /// `input_hash` of `params.arguments` (tools/call, prompts/get), see
    /// [`crate::input_hash`]; the arguments themselves are not kept.
    pub input_hash: Option<String>,
    /// `params._meta.traceparent`, when it is a string.
    pub meta_traceparent: Option<String>,
    /// `params.cursor` is present: a later page of a paginated list.
    pub has_cursor: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Request(Request),
    /// A client's JSON-RPC response to a server-initiated request (sampling,
    /// elicitation, roots): handshake era only.
    Response,
}

/// One parsed message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Raw text of the `id` (absent for notifications).
    pub id: Option<Box<RawValue>>,
    pub kind: Kind,
}

/// Parses the body. Every refusal carries the `id` if a valid one could be read.
pub fn parse(body: &[u8], limits: &LabelLimits) -> Result<Message, Rejection> {
    // RFC 8259 section 8.1: JSON text exchanged between systems MUST be UTF-8. Checked
    // for the whole body up front because serde_json does not validate the strings it
    // skips, and the MCP server's parser will refuse them.
    let body = std::str::from_utf8(body)
        .map_err(|e| Rejection::new(RequestError::Parse(format!("body is not UTF-8: {e}"))))?;
    let envelope =
        pick(body.as_bytes(), &ENVELOPE_KEYS).map_err(|e| Rejection::new(json_error(e)))?;
    let [jsonrpc, method, id, params, result, error] = envelope.values;
    match envelope.shape {
        Shape::Object => {}
        Shape::Array => return Err(Rejection::new(RequestError::Batch)),
        Shape::Other => {
            return Err(Rejection::new(RequestError::InvalidRequest(
                "expected a JSON-RPC request object".into(),
            )))
        }
    }

    // Read the id first so that every later refusal can carry it. JSON-RPC allows
    // strings and numbers; MCP forbids null ("Requests": "MUST NOT be null").
    // With two `id` keys there is no telling which one the client will match, so none
    // is echoed.
    let id_is_certain = envelope.duplicate != Some("id") && envelope.folded != Some("id");
    let valid_id = id
        .filter(|raw| is_valid_id(raw) && id_is_certain)
        .map(|raw| raw.to_owned());
    let fail = |error: RequestError| Rejection::with_id(error, valid_id.clone());

    if let Some(key) = envelope.duplicate {
        return Err(fail(RequestError::DuplicateKey(key.into())));
    }
    if let Some(key) = envelope.folded {
        return Err(fail(RequestError::FoldedKey(key.into())));
    }
    // JSON-RPC 2.0 section 4/5: a request has `method` (and maybe `params`), a response
    // has `result` or `error`. Parsers that try one shape and then the other disagree
    // on a message with both, so it is neither.
    if (method.is_some() || params.is_some()) && (result.is_some() || error.is_some()) {
        return Err(fail(RequestError::InvalidRequest(
            "a message is a request (method, params) or a response (result, error), not both"
                .into(),
        )));
    }
    if jsonrpc.map(RawValue::get) != Some(r#""2.0""#) {
        return Err(fail(RequestError::InvalidRequest(
            "\"jsonrpc\" must be exactly \"2.0\"".into(),
        )));
    }
    if id.is_some_and(|raw| !is_valid_id(raw)) {
        return Err(fail(RequestError::InvalidRequest(
            "\"id\" must be a string or an integer".into(),
        )));
    }

    let Some(method) = method else {
        // No method: only a response to a server request is still a valid message.
        if valid_id.is_some() && (result.is_some() != error.is_some()) {
            return Ok(Message {
                id: valid_id,
                kind: Kind::Response,
            });
        }
        return Err(fail(RequestError::InvalidRequest(
            "missing \"method\"".into(),
        )));
    };
    let method = string(method).ok_or_else(|| {
        fail(RequestError::InvalidRequest(
            "\"method\" must be a string".into(),
        ))
    })?;

    if method.len() > limits.max_method_bytes {
        return Err(fail(RequestError::InvalidRequest(format!(
            "\"method\" is {} bytes long; this gateway accepts at most {}",
            method.len(),
            limits.max_method_bytes
        ))));
    }
    let request = parse_params(method, params, limits).map_err(fail)?;
    Ok(Message {
        id: valid_id,
        kind: Kind::Request(request),
    })
}

fn parse_params(
    method: String,
    params: Option<&RawValue>,
    limits: &LabelLimits,
) -> Result<Request, RequestError> {
    let mut request = Request {
        method,
        target: None,
        meta_version: None,
        initialize_version: None,
        input_hash: None,
        meta_traceparent: None,
        has_cursor: false,
    };
    let (name, uri) = match params {
        None => (None, None),
        Some(raw) => {
            let picked = pick(raw.get().as_bytes(), &PARAMS_KEYS).map_err(json_error)?;
            if picked.shape != Shape::Object {
                return Err(RequestError::InvalidRequest(
                    "\"params\" must be an object".into(),
                ));
            }
            if let Some(key) = picked.duplicate {
                return Err(RequestError::DuplicateKey(format!("params.{key}")));
            }
            if let Some(key) = picked.folded {
                return Err(RequestError::FoldedKey(format!("params.{key}")));
            }
            let [name, uri, meta, initialize_version, arguments, cursor] = picked.values;
            request.has_cursor = cursor.is_some();
            if let Some(meta) = meta {
                (request.meta_version, request.meta_traceparent) = meta_fields(meta)?;
            }
            // Every forwarded call gets an input_hash that tells apart what the server
            // can tell apart; arguments the hash cannot represent faithfully are refused
            // rather than recorded without one.
            request.input_hash = arguments
                .map(input_hash)
                .transpose()
                .map_err(|e| RequestError::InvalidParams(format!("params.arguments: {e}")))?;
            if request.method == "initialize" {
                request.initialize_version = initialize_version
                    .map(|raw| {
                        string(raw).ok_or_else(|| {
                            RequestError::InvalidParams(
                                "\"params.protocolVersion\" must be a string".into(),
                            )
                        })
                    })
                    .transpose()?;
            }
            (name, uri)
        }
    };

    let required = |raw: Option<&RawValue>, field: &str| {
        raw.and_then(string).ok_or_else(|| {
            RequestError::InvalidParams(format!(
                "{} needs a string \"params.{field}\"",
                request.method
            ))
        })
    };
    request.target = match request.method.as_str() {
        "tools/call" => Some(Target::Tool(named(required(name, "name")?, "tool")?)),
        "prompts/get" => Some(Target::Prompt(named(required(name, "name")?, "prompt")?)),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let uri = required(uri, "uri")?;
            if uri.len() > limits.max_uri_bytes {
                return Err(RequestError::InvalidParams(format!(
                    "\"params.uri\" is {} bytes long; this gateway accepts at most {}",
                    uri.len(),
                    limits.max_uri_bytes
                )));
            }
            Some(Target::Resource(uri))
        }
        _ => None,
    };
    Ok(request)
}

/// A tool or prompt name within MCP's 1 to 128 characters.
fn named(name: String, what: &str) -> Result<String, RequestError> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(RequestError::InvalidParams(format!(
            "{what} name is {chars} characters long; MCP names are 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(name)
}

/// The protocol version and the traceparent from `params._meta`.
type MetaFields = (Option<String>, Option<String>);

fn meta_fields(meta: &RawValue) -> Result<MetaFields, RequestError> {
    let picked = pick(meta.get().as_bytes(), &META_KEYS).map_err(json_error)?;
    if picked.shape != Shape::Object {
        return Err(RequestError::InvalidParams(
            "\"params._meta\" must be an object".into(),
        ));
    }
    if let Some(key) = picked.duplicate {
        return Err(RequestError::DuplicateKey(format!("params._meta.{key}")));
    }
    if let Some(key) = picked.folded {
        return Err(RequestError::FoldedKey(format!("params._meta.{key}")));
    }
    let [version, traceparent] = picked.values;
    let version = version
        .map(|raw| {
            string(raw).ok_or_else(|| {
                RequestError::InvalidParams(format!(
                    "\"params._meta.{META_PROTOCOL_VERSION}\" must be a string"
                ))
            })
        })
        .transpose()?;
    // Trace context is only carried along: a malformed one is ignored, not refused.
    Ok((version, traceparent.and_then(string)))
}

/// Decodes a JSON string (escapes resolved). `None` for other types and for strings
/// that are not valid Unicode (lone surrogates), which the gateway cannot label.
fn string(raw: &RawValue) -> Option<String> {
    serde_json::from_str(raw.get()).ok()
}

/// JSON-RPC ids: strings or integers. MCP forbids null; fractions and exponents are
/// refused because JSON-RPC says numbers "SHOULD NOT contain fractional parts" and
/// parsers round them differently.
fn is_valid_id(raw: &RawValue) -> bool {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => string(raw).is_some(),
        Some(b'-' | b'0'..=b'9') => !text.contains(['.', 'e', 'E']),
        _ => false,
    }
}

fn json_error(error: serde_json::Error) -> RequestError {
    match error.classify() {
        Category::Data => RequestError::InvalidRequest(error.to_string()),
        Category::Syntax | Category::Eof | Category::Io => RequestError::Parse(error.to_string()),
    }
}
