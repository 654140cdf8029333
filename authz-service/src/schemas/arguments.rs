//! A `tools/call`'s arguments checked against its tool's schema: the `Mcp-Param-*`
//! headers first, then the schema (issue 16).

use super::{Mode, ToolSchema};
use mcp_filter_core::pick::{pick, Shape};
use serde_json::Value;

/// How much of a violation goes into the `schema_violation` metadata leaf (the audit
/// record carries it; a bound keeps one call's record small).
pub const VIOLATION_LEAF_BYTES: usize = 256;
/// How much of a violation the client's error message carries.
pub const VIOLATION_MESSAGE_BYTES: usize = 1024;

/// The outcome of checking one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing was checked (mode `off`, and no header to compare).
    Skipped,
    Valid,
    /// An `Mcp-Param-*` header disagrees with the body (-32020), in every mode.
    HeaderMismatch(String),
    /// The arguments do not validate: `detail` is `<json pointer>: <error>` for the
    /// client; `masked` the same with argument values replaced by `value`, for the
    /// audit record (which must not copy what agents send).
    Invalid {
        detail: String,
        masked: String,
    },
}

/// `params.arguments` of a JSON-RPC body, parsed; absent (or `null`) arguments are
/// `{}`. The filter has already refused bodies that are not one JSON object, and
/// duplicate or case-folded `params` / `arguments` keys (a server could read another
/// copy than the one checked here); they are refused here too, as unreadable.
pub fn arguments(body: &[u8]) -> Result<Value, String> {
    let envelope = pick(body, &["params"]).map_err(|e| format!("body is not JSON: {e}"))?;
    if envelope.shape != Shape::Object || envelope.duplicate.is_some() || envelope.folded.is_some()
    {
        return Err("body is not one JSON-RPC request with one `params`".to_owned());
    }
    let Some(params) = envelope.values[0] else {
        return Ok(Value::Object(Default::default()));
    };
    let params = pick(params.get().as_bytes(), &["arguments"]).map_err(|e| e.to_string())?;
    if params.shape != Shape::Object || params.duplicate.is_some() || params.folded.is_some() {
        return Err("`params` is not an object with one `arguments`".to_owned());
    }
    match params.values[0] {
        None => Ok(Value::Object(Default::default())),
        Some(raw) => match serde_json::from_str(raw.get()).map_err(|e| e.to_string())? {
            Value::Null => Ok(Value::Object(Default::default())),
            value => Ok(value),
        },
    }
}

impl ToolSchema {
    /// Checks one call. `body`: the request body (ext_authz `raw_body`), `None` when
    /// Envoy sent none; `headers_apply`: the request speaks 2026-07-28 or later (older
    /// revisions have no `Mcp-Param-*` headers); `header`: a lower-case header lookup.
    ///
    /// Headers first, in every mode: a mismatch means an intermediary may already
    /// have routed on a value the server will not see.
    pub fn check<'h>(
        &self,
        mode: Mode,
        body: Option<&[u8]>,
        headers_apply: bool,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Verdict {
        let compare_headers = headers_apply && !self.headers().is_empty();
        if mode == Mode::Off && !compare_headers {
            return Verdict::Skipped;
        }
        // Fail closed: a call whose arguments cannot be read is not one that checked.
        let arguments = match body.filter(|b| !b.is_empty()) {
            None => Err("the request body did not reach the authz-service".to_owned()),
            Some(body) => arguments(body),
        };
        let arguments = match arguments {
            Ok(arguments) => arguments,
            Err(reason) if compare_headers => {
                return Verdict::HeaderMismatch(format!(
                    "cannot compare Mcp-Param headers with the arguments: {reason}"
                ))
            }
            Err(reason) => {
                let detail = format!("(root): arguments cannot be read: {reason}");
                return Verdict::Invalid {
                    masked: detail.clone(),
                    detail,
                };
            }
        };
        if compare_headers {
            if let Err(message) = self.headers().check(&arguments, header) {
                return Verdict::HeaderMismatch(message);
            }
        }
        if mode == Mode::Off {
            return Verdict::Valid;
        }
        // `is_valid` builds no error (5-10x cheaper); only a failure pays for one.
        if self.validator().is_valid(&arguments) {
            return Verdict::Valid;
        }
        match self.validator().validate(&arguments) {
            Ok(()) => Verdict::Valid,
            Err(error) => {
                let pointer = match error.instance_path().as_str() {
                    "" => "(root)",
                    pointer => pointer,
                };
                Verdict::Invalid {
                    detail: format!("{pointer}: {error}"),
                    masked: format!("{pointer}: {}", error.masked()),
                }
            }
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
