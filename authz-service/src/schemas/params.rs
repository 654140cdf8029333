//! `Mcp-Param-{Name}` headers (MCP 2026-07-28, basic/transports, "Mcp-Param headers"):
//! a tool's schema may annotate a property with `x-mcp-header: <Name>`, and the client
//! then mirrors that argument into `Mcp-Param-<Name>` so intermediaries can route on it.
//! Anything that processes the body MUST refuse a header that disagrees with it (400,
//! -32020). The rules follow the official Python SDK (`mcp.shared.inbound`
//! `validate_mcp_param_headers`), so that the gateway refuses exactly what the server
//! would: present together or absent together (`null` is absent), equal after
//! `=?base64?...?=` decoding, booleans as `true`/`false`, integers compared as numbers.

use mcp_filter_core::sentinel;
use serde_json::{Number, Value};

/// JSON Schema 2020-12 applicators whose value is one subschema (entered, but off the
/// pure `properties` chain, so annotations below them are invalid).
const SUBSCHEMA_SINGLE: [&str; 11] = [
    "items",
    "contains",
    "unevaluatedItems",
    "additionalProperties",
    "propertyNames",
    "unevaluatedProperties",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
];
const SUBSCHEMA_LIST: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];
const SUBSCHEMA_MAP: [&str; 4] = [
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
];
const ANNOTATION: &str = "x-mcp-header";

/// One annotated property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    /// The `properties` keys from the root to the property.
    pub path: Vec<String>,
    /// The annotation as written (`Mcp-Param-<token>` in messages).
    pub token: String,
    /// The request header name as Envoy hands it over: lower case.
    pub header: String,
    /// The property's `type` (`integer` compares numerically).
    pub integer: bool,
}

/// A tool's annotated properties, or why its annotations are invalid (then none is
/// checked, as the SDKs do: conforming clients drop such a tool and send no headers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamHeaders {
    headers: Vec<ParamHeader>,
    invalid: Option<String>,
}

/// A schema position: the `properties` chain to it (`None` once another applicator
/// was crossed) and the schema object.
type Position<'a> = (Option<Vec<String>>, &'a serde_json::Map<String, Value>);

/// Every schema position under `root`, in the SDK's walk order (an explicit stack, so
/// any depth is fine; `$ref` is not followed, data keywords are not entered).
fn positions(root: &Value) -> Vec<Position<'_>> {
    let mut out = Vec::new();
    let mut stack: Vec<(Option<Vec<String>>, &Value)> = vec![(Some(Vec::new()), root)];
    while let Some((path, node)) = stack.pop() {
        let Value::Object(schema) = node else {
            continue;
        };
        for (keyword, value) in schema {
            let keyword = keyword.as_str();
            match value {
                Value::Object(map) if keyword == "properties" => {
                    for (name, sub) in map {
                        let sub_path = path.as_ref().map(|p| {
                            let mut p = p.clone();
                            p.push(name.clone());
                            p
                        });
                        stack.push((sub_path, sub));
                    }
                }
                _ if SUBSCHEMA_SINGLE.contains(&keyword) => stack.push((None, value)),
                Value::Array(list) if SUBSCHEMA_LIST.contains(&keyword) => {
                    stack.extend(list.iter().map(|sub| (None, sub)));
                }
                Value::Object(map) if SUBSCHEMA_MAP.contains(&keyword) => {
                    stack.extend(map.values().map(|sub| (None, sub)));
                }
                _ => {}
            }
        }
        out.push((path, schema));
    }
    out
}

/// RFC 9110 section 5.6.2 token characters.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl ParamHeaders {
    /// Reads the annotations of an input schema (SDK `find_invalid_x_mcp_header` and
    /// `_annotated_positions`).
    pub fn from_schema(schema: &Value) -> ParamHeaders {
        let mut headers: Vec<ParamHeader> = Vec::new();
        for (path, position) in positions(schema) {
            let Some(annotation) = position.get(ANNOTATION) else {
                continue;
            };
            let invalid = |reason: String| ParamHeaders {
                headers: Vec::new(),
                invalid: Some(reason),
            };
            let Some(path) = path.filter(|p| !p.is_empty()) else {
                return invalid(format!(
                    "{ANNOTATION} found at a schema position not reachable via a pure `properties` chain"
                ));
            };
            let at = path.join(".");
            let Some(token) = annotation.as_str() else {
                return invalid(format!("property {at:?}: {ANNOTATION} must be a string"));
            };
            if !is_token(token) {
                return invalid(format!(
                    "property {at:?}: {ANNOTATION} {token:?} is not an RFC 9110 token"
                ));
            }
            let kind = position.get("type").and_then(Value::as_str);
            if !matches!(kind, Some("string" | "integer" | "boolean")) {
                return invalid(format!(
                    "property {at:?}: {ANNOTATION} is only permitted on integer/string/boolean properties"
                ));
            }
            let header = format!("mcp-param-{}", token.to_ascii_lowercase());
            if let Some(other) = headers.iter().find(|h| h.header == header) {
                return invalid(format!(
                    "{ANNOTATION} {token:?} on property {at:?} duplicates property {:?}",
                    other.path.join(".")
                ));
            }
            headers.push(ParamHeader {
                path,
                token: token.to_owned(),
                header,
                integer: kind == Some("integer"),
            });
        }
        ParamHeaders {
            headers,
            invalid: None,
        }
    }

    /// Why the annotations were ignored, if they were.
    pub fn invalid(&self) -> Option<&str> {
        self.invalid.as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ParamHeader> {
        self.headers.iter()
    }

    /// Compares each annotated argument with its header; the first disagreement is
    /// the -32020 message. `header` looks a lower-case request header up. Headers
    /// that no annotation names are not looked at (the spec: forward them untouched).
    /// A repeated header never gets here: the filter refuses it, since ext_authz
    /// would hand over the copies joined with commas.
    pub fn check<'h>(
        &self,
        arguments: &Value,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Result<(), String> {
        for param in &self.headers {
            let name = format!("Mcp-Param-{}", param.token);
            let argument = param.path.join(".");
            let raw = header(&param.header);
            let value = param
                .path
                .iter()
                .try_fold(arguments, |node, key| node.as_object()?.get(key))
                .filter(|value| !value.is_null());
            let Some(value) = value else {
                if raw.is_some() {
                    return Err(format!(
                        "{name} header is present but the request body's {argument:?} argument is absent"
                    ));
                }
                continue;
            };
            let Some(rendered) = render(value) else {
                // Not mirrorable (an object, an array): a conforming client sends no
                // header, so one claiming it can never match.
                if raw.is_some() {
                    return Err(mismatch(&name, &argument));
                }
                continue;
            };
            let Some(raw) = raw else {
                return Err(format!(
                    "{name} header is missing but the request body's {argument:?} argument is present"
                ));
            };
            let Ok(decoded) = sentinel::decode(raw) else {
                return Err(format!(
                    "{name} header carries a malformed base64 sentinel value"
                ));
            };
            let equal = match value {
                Value::Number(number) if param.integer => match integral(number) {
                    Some(whole) => same_integer(&whole, &decoded).unwrap_or(decoded == rendered),
                    None => decoded == rendered,
                },
                _ => decoded == rendered,
            };
            if !equal {
                return Err(mismatch(&name, &argument));
            }
        }
        Ok(())
    }
}

fn mismatch(name: &str, argument: &str) -> String {
    format!("{name} header does not match the request body's {argument:?} argument")
}

/// How a client mirrors a scalar into its header (SDK `_render_header_scalar`).
fn render(value: &Value) -> Option<String> {
    match value {
        Value::Bool(true) => Some("true".to_owned()),
        Value::Bool(false) => Some("false".to_owned()),
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The exact decimal digits of an integral number (`42`, `42.0`, `1e20`), or `None`
/// for a fraction.
fn integral(number: &Number) -> Option<String> {
    if let Some(i) = number.as_i64() {
        return Some(i.to_string());
    }
    if let Some(u) = number.as_u64() {
        return Some(u.to_string());
    }
    let float = number.as_f64()?;
    if !float.is_finite() || float.fract() != 0.0 {
        return None;
    }
    // `{:.0}` prints a whole f64 exactly (no float round trip in the comparison).
    let text = format!("{float:.0}");
    Some(if text == "-0" { "0".to_owned() } else { text })
}

/// Whether a header `-?[0-9]+(\.[0-9]+)?` names the integer `whole` (fraction all
/// zeros); `None` when the header is not that shape (then it must equal the rendering,
/// so `4.2e1` never compares numerically, as in the SDKs).
fn same_integer(whole: &str, header: &str) -> Option<bool> {
    let (negative, digits) = match header.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, header),
    };
    let (int_part, fraction) = match digits.split_once('.') {
        Some((int_part, fraction)) => (int_part, Some(fraction)),
        None => (digits, None),
    };
    let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only(int_part) || !fraction.is_none_or(digits_only) {
        return None;
    }
    if fraction.is_some_and(|f| f.bytes().any(|b| b != b'0')) {
        return Some(false);
    }
    let trimmed = int_part.trim_start_matches('0');
    let magnitude = if trimmed.is_empty() { "0" } else { trimmed };
    let header_value = if negative && magnitude != "0" {
        format!("-{magnitude}")
    } else {
        magnitude.to_owned()
    };
    Some(header_value == whole)
}
