//! `schemas.json`: every registered tool's input schema and its server's validation
//! mode, for the authz-service (`--schemas`, hot reloaded beside `--policy`), which
//! validates `tools/call` arguments (enforce, report) and checks `Mcp-Param-*` headers
//! against the `x-mcp-header` annotations (every mode) with the body ext_authz sends it.
//!
//! `{"servers": {"<id>": {"validation": "enforce|report|off", "tools": {"<tool>":
//! <inputSchema>}}}}`: every registered server, `off` ones too (their annotations are
//! still checked), keys sorted (serde_json's map is ordered), so the file is
//! byte-stable for the same manifests and a reload happens only on a real change.

use crate::fleet::Fleet;
use serde_json::{json, Map, Value};

/// The rendered file, relative to the output directory.
pub const FILE: &str = "schemas.json";

pub fn render(fleet: &Fleet) -> String {
    let servers: Map<String, Value> = fleet
        .servers
        .iter()
        .map(|server| {
            let tools: Map<String, Value> = server
                .tools
                .iter()
                .map(|tool| (tool.name.clone(), tool.input_schema.clone()))
                .collect();
            let entry = json!({ "validation": server.validation.as_str(), "tools": tools });
            (server.id().to_owned(), entry)
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&json!({ "servers": servers })).unwrap_or_default();
    text.push('\n');
    text
}
