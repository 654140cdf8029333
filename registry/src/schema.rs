//! A tool's `schema_ref`: the JSON Schema of its input. MCP (server/tools, "Tool"):
//! `inputSchema` is a JSON Schema object whose root `type` is `"object"`, so a schema
//! must be valid against its draft's meta-schema (the `jsonschema` crate, draft from
//! `$schema`, 2020-12 by default) and have `"type": "object"` at its root.
//!
//! Two more rules come from what the gateway does with a schema:
//! - its digest (`mcp_filter_core::input_hash::input_hash`, SHA-256 of the RFC 8785
//!   canonical JSON) is what the filter compares a server's advertised `inputSchema`
//!   with (schema drift), so a schema the canonical form cannot represent faithfully
//!   (an integer beyond +-(2^53 - 1)) is refused rather than digested wrongly;
//! - its `x-mcp-header` annotations (MCP 2026-07-28, Streamable HTTP, "Custom Headers
//!   from Tool Parameters") must follow the transport's constraints, which clients
//!   enforce by dropping the whole tool: an HTTP token as the name, unique
//!   (case-insensitively) in the tool, on a `string`, `integer` or `boolean` property
//!   reachable from the root through `properties` alone.

use mcp_filter_core::input_hash::{input_hash, HashError};
use serde_json::value::RawValue;
use serde_json::Value;
use std::path::Path;

/// The schema annotation that mirrors a tool argument into an `Mcp-Param-{Name}` header.
pub const HEADER_ANNOTATION: &str = "x-mcp-header";

/// A checked schema file.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub schema: Value,
    /// `sha256:<hex>` of its canonical JSON.
    pub digest: String,
    /// The `x-mcp-header` names (properties in key order, parents first).
    pub param_headers: Vec<String>,
}

/// Reads and checks one schema file; `shown` is how the manifest wrote its path.
pub fn load(file: &Path, shown: &str) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{shown} does not exist"),
        _ => format!("cannot read {shown}: {e}"),
    })?;
    let schema: Value =
        serde_json::from_str(&text).map_err(|e| format!("{shown} is not JSON: {e}"))?;
    if !schema.is_object() {
        return Err(format!(
            "{shown} is not a JSON Schema object (MCP requires an object schema)"
        ));
    }
    let digest = digest(&text, shown)?;
    if let Err(error) = jsonschema::meta::validate(&schema) {
        let at = error.instance_path().to_string();
        let at = if at.is_empty() {
            String::new()
        } else {
            format!(" at {at}")
        };
        return Err(format!("{shown} is not a valid JSON Schema{at}: {error}"));
    }
    // Building a validator also resolves `$ref`s and compiles `pattern`s, which the
    // meta-schema cannot check. Remote references are not fetched (no HTTP client).
    if let Err(error) = jsonschema::validator_for(&schema) {
        return Err(format!("{shown} is not a usable JSON Schema: {error}"));
    }
    match schema.get("type") {
        Some(Value::String(t)) if t == "object" => {}
        Some(other) => return Err(format!(
            "{shown}: the root \"type\" is {other}; MCP requires a tool's inputSchema to be \"object\""
        )),
        None => return Err(format!(
            "{shown}: no root \"type\"; MCP requires a tool's inputSchema to have \"type\": \"object\""
        )),
    }
    let param_headers = param_headers(&schema).map_err(|reason| format!("{shown}: {reason}"))?;
    Ok(Loaded {
        schema,
        digest,
        param_headers,
    })
}

/// The digest the filter compares advertised schemas with, of the file's own text.
fn digest(text: &str, shown: &str) -> Result<String, String> {
    let raw: &RawValue =
        serde_json::from_str(text).map_err(|e| format!("{shown} is not JSON: {e}"))?;
    input_hash(raw).map_err(|error| match error {
        HashError::UnsafeInteger(n) => format!(
            "{shown}: the integer {n} is beyond +-(2^53 - 1) (RFC 7493 section 2.2); the schema digest \
             the gateway compares servers' inputSchema with (canonical JSON, RFC 8785) cannot hold \
             it exactly: use a smaller bound"
        ),
        HashError::Unreadable(reason) => {
            format!("{shown} has no canonical JSON form (RFC 8785) for its digest: {reason}")
        }
    })
}

/// RFC 9110 section 5.6.2 `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Keywords whose values are instances, not schemas: an object there holding the
/// annotation's key is data, not an annotation.
const INSTANCE_KEYWORDS: [&str; 4] = ["const", "default", "enum", "examples"];

/// Every `x-mcp-header` annotation of the schema, checked; the names in key order.
fn param_headers(schema: &Value) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    visit(schema, true, "", &mut names)?;
    Ok(names)
}

/// `reachable`: the node is the root or a property of a reachable node (the only
/// places a client looks for annotations). `at`: its JSON pointer.
fn visit(node: &Value, reachable: bool, at: &str, names: &mut Vec<String>) -> Result<(), String> {
    match node {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                visit(item, false, &format!("{at}/{i}"), names)?;
            }
        }
        Value::Object(map) => {
            if let Some(name) = map.get(HEADER_ANNOTATION) {
                let place = if at.is_empty() { "/" } else { at };
                annotation(
                    name,
                    map.get("type"),
                    reachable && !at.is_empty(),
                    place,
                    names,
                )?;
            }
            for (key, value) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                match (key.as_str(), value) {
                    ("properties", Value::Object(properties)) => {
                        for (name, property) in properties {
                            let name = name.replace('~', "~0").replace('/', "~1");
                            visit(
                                property,
                                reachable,
                                &format!("{at}/properties/{name}"),
                                names,
                            )?;
                        }
                    }
                    (key, _) if INSTANCE_KEYWORDS.contains(&key) => {}
                    _ => visit(value, false, &format!("{at}/{escaped}"), names)?,
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn annotation(
    name: &Value,
    kind: Option<&Value>,
    reachable: bool,
    at: &str,
    names: &mut Vec<String>,
) -> Result<(), String> {
    let Some(name) = name
        .as_str()
        .filter(|n| !n.is_empty() && n.chars().all(is_tchar))
    else {
        return Err(format!(
            "{HEADER_ANNOTATION} {name} at {at} is not an HTTP header name token (RFC 9110 section 5.6.2)"
        ));
    };
    if !reachable {
        return Err(format!(
            "{HEADER_ANNOTATION} {name:?} at {at} is not on a property reachable from the root through \"properties\" alone (MCP 2026-07-28: clients drop such a tool)"
        ));
    }
    match kind.and_then(Value::as_str) {
        Some("string" | "integer" | "boolean") => {}
        _ => {
            let kind = kind.map_or("no type".to_owned(), |k| format!("type {k}"));
            return Err(format!(
                "{HEADER_ANNOTATION} {name:?} at {at} is on a property of {kind}; only \"string\", \"integer\" and \"boolean\" ones may be mirrored into a header"
            ));
        }
    }
    if let Some(first) = names.iter().find(|n| n.eq_ignore_ascii_case(name)) {
        return Err(format!(
            "{HEADER_ANNOTATION} {name:?} at {at} repeats {first:?} (header names are case-insensitive)"
        ));
    }
    names.push(name.to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let file = dir.join("s.json");
        std::fs::write(&file, text).unwrap();
        file
    }

    #[test]
    fn accepts_an_object_schema() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        );
        let loaded = load(&file, "s.json").unwrap();
        assert_eq!(loaded.schema["properties"]["a"]["type"], "string");
        assert!(loaded.param_headers.is_empty());
    }

    #[test]
    fn the_digest_is_the_filters_input_hash_whatever_the_formatting() {
        let dir = tempfile::tempdir().unwrap();
        let compact =
            r#"{"type":"object","properties":{"n":{"type":"integer","maximum":9007199254740991}}}"#;
        let spaced = "{\n  \"properties\": { \"n\": {\"maximum\": 9007199254740991, \"type\": \"integer\"} },\n  \"type\": \"object\"\n}\n";
        let a = load(&write(dir.path(), compact), "s.json").unwrap().digest;
        let b = load(&write(dir.path(), spaced), "s.json").unwrap().digest;
        assert_eq!(a, b);
        let raw: &RawValue = serde_json::from_str(compact).unwrap();
        assert_eq!(a, input_hash(raw).unwrap());
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
    }

    #[test]
    fn refuses_a_schema_the_digest_cannot_represent() {
        let dir = tempfile::tempdir().unwrap();
        for (literal, shown) in [
            ("9007199254740992", "9007199254740992"),
            ("-123456789012345678901", "-123456789012345678901"),
        ] {
            let text = format!(
                r#"{{"type":"object","properties":{{"n":{{"type":"integer","maximum":{literal}}}}}}}"#
            );
            let error = load(&write(dir.path(), &text), "s.json").unwrap_err();
            assert_eq!(
                error,
                format!("s.json: the integer {shown} is beyond +-(2^53 - 1) (RFC 7493 section 2.2); the schema digest the gateway compares servers' inputSchema with (canonical JSON, RFC 8785) cannot hold it exactly: use a smaller bound")
            );
        }
        // The largest safe integer, and the same magnitude as a float, are fine.
        let text =
            r#"{"type":"object","properties":{"n":{"maximum":9007199254740991,"minimum":-1e300}}}"#;
        assert!(load(&write(dir.path(), text), "s.json").is_ok());
    }

    #[test]
    fn collects_header_annotations() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "shard":{"type":"object","properties":{"id":{"type":"integer","x-mcp-header":"Shard-Id"}}},
            "dry":{"type":"boolean","x-mcp-header":"Dry_Run"},
            "note":{"type":"string","default":{"x-mcp-header":"data, not an annotation"}}}}"#;
        let loaded = load(&write(dir.path(), text), "s.json").unwrap();
        assert_eq!(loaded.param_headers, ["Dry_Run", "Region", "Shard-Id"]);
    }

    #[test]
    fn refuses_each_kind_of_bad_header_annotation() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                r#"{"type":"object","properties":{"a":{"type":"string","x-mcp-header":"A B"}}}"#,
                r#"s.json: x-mcp-header "A B" at /properties/a is not an HTTP header name token (RFC 9110 section 5.6.2)"#,
            ),
            (
                r#"{"type":"object","properties":{"a":{"type":"string","x-mcp-header":7}}}"#,
                "s.json: x-mcp-header 7 at /properties/a is not an HTTP header name token (RFC 9110 section 5.6.2)",
            ),
            (
                r#"{"type":"object","properties":{"a":{"type":"array","items":{"type":"string","x-mcp-header":"A"}}}}"#,
                r#"s.json: x-mcp-header "A" at /properties/a/items is not on a property reachable from the root through "properties" alone (MCP 2026-07-28: clients drop such a tool)"#,
            ),
            (
                r#"{"type":"object","x-mcp-header":"Root"}"#,
                r#"s.json: x-mcp-header "Root" at / is not on a property reachable from the root through "properties" alone (MCP 2026-07-28: clients drop such a tool)"#,
            ),
            (
                r#"{"type":"object","anyOf":[{"properties":{"a":{"type":"string","x-mcp-header":"A"}}}]}"#,
                r#"s.json: x-mcp-header "A" at /anyOf/0/properties/a is not on a property reachable from the root through "properties" alone (MCP 2026-07-28: clients drop such a tool)"#,
            ),
            (
                r#"{"type":"object","properties":{"a":{"type":"number","x-mcp-header":"A"}}}"#,
                r#"s.json: x-mcp-header "A" at /properties/a is on a property of type "number"; only "string", "integer" and "boolean" ones may be mirrored into a header"#,
            ),
            (
                r#"{"type":"object","properties":{"a":{"x-mcp-header":"A"}}}"#,
                r#"s.json: x-mcp-header "A" at /properties/a is on a property of no type; only "string", "integer" and "boolean" ones may be mirrored into a header"#,
            ),
            (
                r#"{"type":"object","properties":{"a":{"type":"string","x-mcp-header":"Tenant"},"b":{"type":"string","x-mcp-header":"tenant"}}}"#,
                r#"s.json: x-mcp-header "tenant" at /properties/b repeats "Tenant" (header names are case-insensitive)"#,
            ),
        ];
        for (text, expected) in cases {
            let error = load(&write(dir.path(), text), "s.json").unwrap_err();
            assert_eq!(error, expected, "{text}");
        }
    }

    #[test]
    fn refuses_each_kind_of_bad_schema() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("{", "s.json is not JSON: EOF while parsing an object at line 1 column 1"),
            ("[]", "s.json is not a JSON Schema object (MCP requires an object schema)"),
            (
                r#"{"type":"object","properties":{"a":{"type":"strin"}}}"#,
                "s.json is not a valid JSON Schema at /properties/a/type:",
            ),
            (
                r#"{"type":"string"}"#,
                "s.json: the root \"type\" is \"string\"; MCP requires a tool's inputSchema to be \"object\"",
            ),
            (
                r#"{"properties":{}}"#,
                "s.json: no root \"type\"; MCP requires a tool's inputSchema to have \"type\": \"object\"",
            ),
        ];
        for (text, expected) in cases {
            let file = write(dir.path(), text);
            let error = load(&file, "s.json").unwrap_err();
            assert!(error.starts_with(expected), "{text}: {error}");
        }
        assert_eq!(
            load(&dir.path().join("none.json"), "none.json").unwrap_err(),
            "none.json does not exist"
        );
    }
}
