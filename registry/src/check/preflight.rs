//! What `mcp-registry preflight` reads from a manifest: the call it may repeat and the
//! protocol versions the server must serve. `gateway.expected_calls` is a rate, checked
//! like the rate limits.

use crate::manifest::RawGateway;
use crate::model::{PreflightCall, Tool};
use crate::problems::FileProblems;

const FIELD: &str = "gateway.preflight_call";

/// The MCP revisions a server can be asked to serve: the published ones (the spec's
/// versioning page). A date the spec never published is a typo, not a claim.
pub const KNOWN_PROTOCOL_VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// `tools` is `None` when the tools have problems of their own (then the call is only
/// checked for shape).
pub(super) fn preflight_call(
    g: &RawGateway,
    tools: Option<&[Tool]>,
    p: &mut FileProblems<'_>,
) -> Option<PreflightCall> {
    let raw = g.preflight_call.as_ref()?;
    let tool = match raw.tool.as_deref() {
        None => {
            p.add(
                format!("{FIELD}.tool"),
                "missing (a registered, read-only tool preflight may call repeatedly)",
            );
            None
        }
        Some(name) => match tools {
            Some(tools) => match tools.iter().find(|t| t.name == name) {
                Some(tool) => Some(tool),
                None => {
                    p.add(
                        format!("{FIELD}.tool"),
                        format!("{name:?} is not a tool of this server"),
                    );
                    None
                }
            },
            None => None,
        },
    };
    let field = format!("{FIELD}.arguments");
    let arguments = match &raw.arguments {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(map)) => map.clone(),
        Some(_) => {
            p.add(&field, "must be a map of the tool's arguments");
            return None;
        }
    };
    let tool = tool?;
    // The same check the authz-service makes on a real call (validation: enforce), so a
    // preflight call the gateway would refuse is caught at validate time.
    let instance = serde_json::Value::Object(arguments.clone());
    match jsonschema::validator_for(&tool.input_schema) {
        Ok(validator) => {
            if let Some(error) = validator.iter_errors(&instance).next() {
                let at = error.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                p.add(
                    &field,
                    format!(
                        "do not validate against {} at {at}: {error}",
                        tool.schema_ref
                    ),
                );
                return None;
            }
        }
        // Already reported on the tool's schema_ref.
        Err(_) => return None,
    }
    Some(PreflightCall {
        tool: tool.name.clone(),
        arguments,
    })
}

pub(super) fn protocol_versions(g: &RawGateway, p: &mut FileProblems<'_>) -> Vec<String> {
    let Some(versions) = &g.protocol_versions else {
        return Vec::new();
    };
    let mut seen = Vec::new();
    for (index, version) in versions.iter().enumerate() {
        let field = format!("gateway.protocol_versions[{index}]");
        if !KNOWN_PROTOCOL_VERSIONS.contains(&version.as_str()) {
            p.add(
                &field,
                format!(
                    "{version:?} is not a published MCP protocol version ({})",
                    KNOWN_PROTOCOL_VERSIONS.join(", ")
                ),
            );
        } else if seen.contains(version) {
            p.add(&field, format!("{version:?} is listed twice"));
        } else {
            seen.push(version.clone());
        }
    }
    if versions.is_empty() {
        p.add(
            "gateway.protocol_versions",
            "must list at least one version when given",
        );
    }
    // Oldest first, whatever the manifest's order (revisions are dates).
    seen.sort();
    seen
}
