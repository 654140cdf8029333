//! A tool's `schema_ref`: the JSON Schema of its input. MCP (server/tools, "Tool"):
//! `inputSchema` is a JSON Schema object whose root `type` is `"object"`, so a schema
//! must be valid against its draft's meta-schema (the `jsonschema` crate, draft from
//! `$schema`, 2020-12 by default) and have `"type": "object"` at its root.

use serde_json::Value;
use std::path::Path;

/// Reads and checks one schema file; `shown` is how the manifest wrote its path.
pub fn load(file: &Path, shown: &str) -> Result<Value, String> {
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
        Some(Value::String(t)) if t == "object" => Ok(schema),
        Some(other) => Err(format!(
            "{shown}: the root \"type\" is {other}; MCP requires a tool's inputSchema to be \"object\""
        )),
        None => Err(format!(
            "{shown}: no root \"type\"; MCP requires a tool's inputSchema to have \"type\": \"object\""
        )),
    }
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
        assert!(load(&file, "s.json").is_ok());
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
