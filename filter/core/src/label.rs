//! The filter's decisions: what to do with a request head, and which labels (gateway
//! headers) a request body earns, or why it is refused.

use crate::config::FilterConfig;
use crate::error::{Rejection, RequestError};
use crate::headers::{
    X_MCP_METHOD, X_MCP_PROMPT_NAME, X_MCP_PROTOCOL_VERSION, X_MCP_REQUEST_ID, X_MCP_RESOURCE_URI,
    X_MCP_SERVER_ID, X_MCP_TOOL_NAME,
};
use crate::message::{self, Kind, LabelLimits, Message, Request, Target};
use crate::protocol::{Era, ProtocolVersion, META_PROTOCOL_VERSION};
use crate::request_head::{ClientHeader, RequestHead};
use crate::sentinel;
use serde_json::value::RawValue;

/// What to do after the request headers.
#[derive(Debug, Clone)]
pub enum HeadAction {
    /// Not on an MCP path: forward as it is, unlabelled (the authz-service refuses
    /// requests without the server label unless their route opts out).
    PassThrough,
    /// GET/DELETE/OPTIONS/HEAD on the MCP path (handshake-era SSE stream, session end,
    /// CORS): no body to read; forwarded with these labels (the server id), which mark
    /// it as handled by the filter.
    Forward(Labels),
    /// An MCP POST: read the whole body before the request may continue.
    ReadBody,
    /// Refuse now.
    Reject(Rejection),
}

/// Decides on the head of a request with a fixed `server_id` (tests and fuzzing; the
/// flow asks [`crate::route`] first and calls [`head_action`]).
pub fn on_request_head(config: &FilterConfig, head: &RequestHead) -> HeadAction {
    match config.fixed_server_for(&head.path) {
        Some(server) => head_action(config, server.as_str(), head),
        None => HeadAction::PassThrough,
    }
}

/// Decides on the head of a request for MCP server `server`. Gateway headers are
/// stripped before this, always.
pub fn head_action(config: &FilterConfig, server: &str, head: &RequestHead) -> HeadAction {
    match head.http_method.as_str() {
        "POST" => {}
        "GET" | "DELETE" | "OPTIONS" | "HEAD" => {
            let mut labels = Labels::default();
            labels.set(X_MCP_SERVER_ID, server.to_owned());
            return HeadAction::Forward(labels);
        }
        other => {
            return HeadAction::Reject(Rejection::new(RequestError::MethodNotAllowed(
                other.to_owned(),
            )))
        }
    }
    if let Some(encoding) = &head.content_encoding {
        if !encoding.trim().eq_ignore_ascii_case("identity") {
            return HeadAction::Reject(Rejection::new(RequestError::UnsupportedEncoding(
                encoding.clone(),
            )));
        }
    }
    match head.content_length {
        Some(length) => match check_body_size(config, length) {
            Some(rejection) => HeadAction::Reject(rejection),
            None => HeadAction::ReadBody,
        },
        None => HeadAction::ReadBody,
    }
}

/// Refuses a body once its size (so far) passes the limit, so that the filter stops
/// buffering early instead of holding the whole oversized body in memory.
pub fn check_body_size(config: &FilterConfig, size: u64) -> Option<Rejection> {
    let limit = config.max_body_bytes.bytes();
    (size > limit).then(|| Rejection::new(RequestError::BodyTooLarge { limit }))
}

/// The gateway headers to set on a request, in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    pub headers: Vec<(&'static str, String)>,
}

impl Labels {
    fn set(&mut self, name: &'static str, value: String) {
        self.headers.push((name, value));
    }

    /// The value set for `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the audit record needs to know about a request body, filled in as far as
/// parsing got (a refused request is recorded with whatever was read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// The JSON-RPC method; `None` for a client's response message or an unreadable body.
    pub method: Option<String>,
    pub target: Option<Target>,
    pub input_hash: Option<String>,
    pub meta_traceparent: Option<String>,
    pub protocol_version: Option<String>,
    /// The JSON-RPC id as ASCII-only JSON text.
    pub jsonrpc_id: Option<String>,
    /// The body is a client's JSON-RPC response to a server request.
    pub is_response: bool,
    /// `params.cursor` is present: a later page of a paginated list.
    pub has_cursor: bool,
}

/// Parses and validates a whole MCP POST body against its head and returns its labels,
/// for the configuration's fixed `server_id` (tests and fuzzing).
pub fn label_request(
    config: &FilterConfig,
    head: &RequestHead,
    body: &[u8],
) -> Result<Labels, Rejection> {
    let Some(server) = &config.server_id else {
        return Err(Rejection::new(RequestError::Internal(
            "label_request needs a fixed server_id".into(),
        )));
    };
    label_request_with_facts(
        config,
        server.as_str(),
        head,
        body,
        &mut RequestFacts::default(),
    )
}

/// Labels a request for MCP server `server`, also filling in `facts` for the audit
/// record.
pub fn label_request_with_facts(
    config: &FilterConfig,
    server: &str,
    head: &RequestHead,
    body: &[u8],
    facts: &mut RequestFacts,
) -> Result<Labels, Rejection> {
    let limits = LabelLimits {
        max_method_bytes: config.max_method_bytes.bytes(),
        max_uri_bytes: config.max_uri_bytes.bytes(),
    };
    let Message { id, kind } = message::parse(body, &limits).inspect_err(|rejection| {
        facts.jsonrpc_id = rejection.id.as_deref().and_then(bounded_id);
    })?;
    facts.jsonrpc_id = match id.as_deref() {
        Some(raw) => Some(bounded_id(raw).ok_or_else(|| {
            Rejection::new(RequestError::InvalidRequest(format!(
                "\"id\" is longer than {MAX_ID_BYTES} bytes"
            )))
        })?),
        None => None,
    };
    let fail = |error: RequestError| Rejection::with_id(error, id.clone());

    let mut labels = Labels::default();
    match &kind {
        Kind::Request(request) => {
            facts.method = Some(request.method.clone());
            facts.target = request.target.clone();
            facts.input_hash = request.input_hash.clone();
            facts.has_cursor = request.has_cursor;
            facts.meta_traceparent = request.meta_traceparent.clone();
            let version = negotiate_version(head, request).map_err(fail)?;
            facts.protocol_version = Some(version.as_str().to_owned());
            if let (Some(Target::Tool(_)), Some((name, problem))) =
                (&request.target, &head.bad_param_header)
            {
                return Err(fail(param_header_error(name, problem)));
            }
            labels.set(X_MCP_METHOD, sentinel::encode(&request.method));
            match &request.target {
                Some(Target::Tool(name)) => labels.set(X_MCP_TOOL_NAME, sentinel::encode(name)),
                Some(Target::Prompt(name)) => labels.set(X_MCP_PROMPT_NAME, sentinel::encode(name)),
                Some(Target::Resource(uri)) => {
                    labels.set(X_MCP_RESOURCE_URI, sentinel::encode(uri))
                }
                None => {}
            }
            labels.set(X_MCP_PROTOCOL_VERSION, version.as_str().to_owned());
        }
        Kind::Response => {
            facts.is_response = true;
            let version = response_version(head).map_err(fail)?;
            facts.protocol_version = Some(version.as_str().to_owned());
            labels.set(X_MCP_PROTOCOL_VERSION, version.as_str().to_owned());
        }
    }
    labels.set(X_MCP_SERVER_ID, server.to_owned());
    if let Some(id) = &facts.jsonrpc_id {
        labels.set(X_MCP_REQUEST_ID, id.clone());
    }
    Ok(labels)
}

/// A repeated or raw non-ASCII `Mcp-Param-*` header on a `tools/call`: the
/// authz-service could not compare it with the arguments as the server will read it.
fn param_header_error(name: &str, problem: &ClientHeader) -> RequestError {
    match problem {
        ClientHeader::Repeated => repeated(name),
        _ => not_text(name),
    }
}

/// Works out the revision a request speaks and, for 2026-07-28 and later, checks the
/// mirrored headers against the body.
///
/// MCP 2026-07-28 (transport, "Standard Request Headers"): clients MUST send
/// `MCP-Protocol-Version`, `Mcp-Method` and, for `tools/call`, `resources/read` and
/// `prompts/get`, `Mcp-Name`; anything that processes the body MUST reject a missing or
/// mismatched header with 400 and -32020. A request that claims that revision anywhere
/// (header or `_meta`) is held to it, so a client cannot dodge the check by naming an
/// older revision in one place only.
fn negotiate_version(
    head: &RequestHead,
    request: &Request,
) -> Result<ProtocolVersion, RequestError> {
    let header = header_version(&head.protocol_version)?;
    let meta = request
        .meta_version
        .as_deref()
        .map(|v| {
            ProtocolVersion::parse(v).ok_or_else(|| {
                RequestError::InvalidParams(format!(
                    "params._meta protocol version {v:?} is not a revision (YYYY-MM-DD)"
                ))
            })
        })
        .transpose()?;

    let stateless = [&header, &meta]
        .into_iter()
        .flatten()
        .any(|v| v.era() == Era::Stateless);

    // Whatever the era, a mirrored header that is present must agree with the body:
    // other components may route on it.
    check_mirror(
        &head.mcp_method,
        "Mcp-Method",
        Some(&request.method),
        stateless,
    )?;
    let name = request.target.as_ref().map(Target::name);
    check_mirror(&head.mcp_name, "Mcp-Name", name, stateless)?;

    match (header, meta) {
        (Some(h), Some(m)) if h != m => Err(RequestError::HeaderMismatch(format!(
            "MCP-Protocol-Version header is {} but params._meta names {}",
            h.as_str(),
            m.as_str()
        ))),
        (None, Some(m)) if stateless => Err(RequestError::HeaderMismatch(format!(
            "missing MCP-Protocol-Version header (required with protocol version {})",
            m.as_str()
        ))),
        // MCP 2026-07-28 "Per-request protocol fields": a missing required `_meta`
        // field is -32602 with HTTP 400.
        (Some(h), None) if stateless => Err(RequestError::InvalidParams(format!(
            "protocol version {} requires params._meta[\"{META_PROTOCOL_VERSION}\"]",
            h.as_str()
        ))),
        (Some(version), _) | (None, Some(version)) => Ok(version),
        (None, None) => Ok(request
            .initialize_version
            .as_deref()
            .and_then(ProtocolVersion::parse)
            .unwrap_or_else(ProtocolVersion::assumed)),
    }
}

/// A client's response to a server request exists only in the handshake era.
fn response_version(head: &RequestHead) -> Result<ProtocolVersion, RequestError> {
    match header_version(&head.protocol_version)? {
        Some(version) if version.era() == Era::Stateless => {
            Err(RequestError::InvalidRequest("missing \"method\"".into()))
        }
        Some(version) => Ok(version),
        None => Ok(ProtocolVersion::assumed()),
    }
}

fn header_version(header: &ClientHeader) -> Result<Option<ProtocolVersion>, RequestError> {
    match header {
        ClientHeader::Absent => Ok(None),
        ClientHeader::Value(value) => ProtocolVersion::parse(value).map(Some).ok_or_else(|| {
            RequestError::HeaderMismatch(format!(
                "MCP-Protocol-Version header {value:?} is not a revision (YYYY-MM-DD)"
            ))
        }),
        ClientHeader::Repeated => Err(repeated("MCP-Protocol-Version")),
        ClientHeader::NotText => Err(not_text("MCP-Protocol-Version")),
    }
}

/// Checks a mirrored header against the body value it mirrors (`expected`; `None`
/// when the method has no such value).
fn check_mirror(
    header: &ClientHeader,
    header_name: &str,
    expected: Option<&str>,
    required: bool,
) -> Result<(), RequestError> {
    let value = match header {
        ClientHeader::Absent => {
            return match expected {
                Some(_) if required => Err(RequestError::HeaderMismatch(format!(
                    "missing {header_name} header"
                ))),
                _ => Ok(()),
            }
        }
        ClientHeader::Value(value) => value,
        ClientHeader::Repeated => return Err(repeated(header_name)),
        ClientHeader::NotText => return Err(not_text(header_name)),
    };
    let decoded = sentinel::decode(value)
        .map_err(|e| RequestError::HeaderMismatch(format!("{header_name} header: {e}")))?;
    match expected {
        Some(expected) if decoded == expected => Ok(()),
        Some(expected) => Err(RequestError::HeaderMismatch(format!(
            "{header_name} header {decoded:?} does not match the body ({expected:?})"
        ))),
        None => Err(RequestError::HeaderMismatch(format!(
            "{header_name} header {decoded:?} sent, but the body has no such value"
        ))),
    }
}

fn repeated(header_name: &str) -> RequestError {
    RequestError::HeaderMismatch(format!("{header_name} header sent more than once"))
}

fn not_text(header_name: &str) -> RequestError {
    RequestError::HeaderMismatch(format!(
        "{header_name} header is not plain ASCII (send non-ASCII values in the =?base64?...?= form)"
    ))
}

/// Longest JSON-RPC id accepted, as the ASCII JSON text sent in `x-mcp-request-id`
/// (SDKs send integers or UUIDs; the id is a header and an audit field).
pub const MAX_ID_BYTES: usize = 256;

/// [`ascii_json`], or `None` past [`MAX_ID_BYTES`].
fn bounded_id(id: &RawValue) -> Option<String> {
    if id.get().len() > MAX_ID_BYTES {
        return None;
    }
    Some(ascii_json(id)).filter(|text| text.len() <= MAX_ID_BYTES)
}

/// The id as ASCII-only JSON, so that it is a safe header value: numbers as they came,
/// strings re-encoded with `\uXXXX` escapes for everything outside printable ASCII.
fn ascii_json(id: &RawValue) -> String {
    let text = id.get();
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return text.to_owned();
    }
    // Only strings can hold non-ASCII text; the parser already checked this one decodes.
    let decoded: String = serde_json::from_str(text).unwrap_or_default();
    let mut out = String::with_capacity(decoded.len() + 2);
    out.push('"');
    for c in decoded.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}
