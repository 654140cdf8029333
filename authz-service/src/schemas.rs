//! Registered tool input schemas (`--schemas`, the `schemas.json` that
//! `mcp-registry render` writes beside the policy), compiled once per (re)load, and
//! the checks of a `tools/call`'s arguments against them (issue 16).
//!
//! File format (keys sorted by the renderer; unknown keys refused):
//!
//! ```json
//! {"servers": {"<server id>": {"validation": "enforce|report|off",
//!                              "tools": {"<tool>": <inputSchema>}}}}
//! ```
//!
//! Validation runs here rather than in the filter: measured in the issue 16 spike,
//! compiling in wasm costs ~0.8 ms per schema in every Envoy VM, and a 16 KiB check
//! costs Envoy 110-230 µs of worker CPU; here the body costs Envoy ~50 µs and the
//! check runs on a service that scales out (see BENCHMARKS.md).

use jsonschema::{PatternOptions, Validator};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

mod arguments;
mod params;

pub use arguments::{arguments, truncate, Verdict, VIOLATION_LEAF_BYTES, VIOLATION_MESSAGE_BYTES};
pub use params::{ParamHeader, ParamHeaders};

/// What happens to a `tools/call` whose arguments do not validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Refused with 400 and JSON-RPC -32602 before it reaches the server.
    Enforce,
    /// Forwarded; the violation goes to the audit record (`schema_violation`).
    #[default]
    Report,
    /// Not validated (`x-mcp-header` annotations are still checked).
    Off,
}

impl Mode {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Report => "report",
            Mode::Off => "off",
        }
    }
}

/// One registered tool: its compiled schema and its `Mcp-Param-*` headers.
pub struct ToolSchema {
    validator: Validator,
    headers: ParamHeaders,
}

impl fmt::Debug for ToolSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolSchema")
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl ToolSchema {
    /// Compiles `schema`: the draft comes from `$schema` (2020-12 when absent), and
    /// `pattern` uses the linear-time `regex` engine, so no argument can make a check
    /// backtrack. A pattern that engine cannot compile (look-around, back-references)
    /// falls back to `fancy-regex` with a small backtracking budget: a schema the
    /// registry accepted still loads, and a match that exceeds the budget fails.
    pub fn compile(schema: &Value) -> Result<ToolSchema, String> {
        let linear = jsonschema::options()
            .with_pattern_options(PatternOptions::regex())
            .build(schema);
        let validator = match linear {
            Ok(validator) => validator,
            Err(linear_error) => jsonschema::options()
                .with_pattern_options(PatternOptions::fancy_regex().backtrack_limit(10_000))
                .build(schema)
                .map_err(|_| linear_error.to_string())?,
        };
        Ok(ToolSchema {
            validator,
            headers: ParamHeaders::from_schema(schema),
        })
    }

    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    pub fn headers(&self) -> &ParamHeaders {
        &self.headers
    }
}

/// One server's validation mode and tools.
#[derive(Debug, Default)]
pub struct ServerSchemas {
    pub mode: Mode,
    pub tools: BTreeMap<String, ToolSchema>,
}

/// The loaded schemas file; empty when the service runs without `--schemas`.
#[derive(Debug, Default)]
pub struct Schemas {
    servers: BTreeMap<String, ServerSchemas>,
}

impl Schemas {
    /// The schema and mode of `tool` on `server`, when registered. Tools the file does
    /// not know are not validated (the policy decides them as before).
    pub fn tool(&self, server: &str, tool: &str) -> Option<(Mode, &ToolSchema)> {
        let server = self.servers.get(server)?;
        Some((server.mode, server.tools.get(tool)?))
    }

    pub fn server(&self, id: &str) -> Option<&ServerSchemas> {
        self.servers.get(id)
    }

    /// Tools compiled, over all servers.
    pub fn tool_count(&self) -> usize {
        self.servers.values().map(|s| s.tools.len()).sum()
    }
}

// ---- loading -------------------------------------------------------------------

/// A schemas file error: the file, and each field with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemasError {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl fmt::Display for SchemasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self
            .problems
            .iter()
            .map(|problem| format!("{}: {problem}", self.file.display()))
            .collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for SchemasError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchemas {
    servers: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default)]
    validation: Mode,
    #[serde(default)]
    tools: BTreeMap<String, Value>,
}

impl Schemas {
    /// Reads and compiles a schemas file (synchronously: call it off the runtime
    /// threads, as hot reload does; 500 tools compile in 5-30 ms).
    pub fn load(path: &Path) -> Result<Schemas, SchemasError> {
        let text = std::fs::read_to_string(path).map_err(|e| SchemasError {
            file: path.to_owned(),
            problems: vec![format!("cannot read: {e}")],
        })?;
        Schemas::parse(&text, path)
    }

    /// Parses and compiles schemas text; `path` names the file in errors. Every
    /// problem is reported, not only the first.
    pub fn parse(text: &str, path: &Path) -> Result<Schemas, SchemasError> {
        let fail = |problems: Vec<String>| SchemasError {
            file: path.to_owned(),
            problems,
        };
        let raw: RawSchemas = serde_json::from_str(text).map_err(|e| fail(vec![e.to_string()]))?;
        let mut problems = Vec::new();
        let mut servers = BTreeMap::new();
        for (id, server) in raw.servers {
            // Server by server, so that an error names its field.
            let server = match RawServer::deserialize(server) {
                Ok(server) => server,
                Err(e) => {
                    problems.push(format!("servers.{id}: {e}"));
                    continue;
                }
            };
            let mut tools = BTreeMap::new();
            for (tool, schema) in server.tools {
                let field = format!("servers.{id}.tools.{tool}");
                if !schema.is_object() && !schema.is_boolean() {
                    problems.push(format!("{field}: a JSON Schema is an object or a boolean"));
                    continue;
                }
                match ToolSchema::compile(&schema) {
                    Ok(compiled) => {
                        if let Some(reason) = compiled.headers.invalid() {
                            // As the MCP SDKs do: a tool whose annotations are invalid
                            // gets no header check (conforming clients drop the tool).
                            tracing::warn!(file = %path.display(), field, reason, "x-mcp-header annotations ignored");
                        }
                        tools.insert(tool, compiled);
                    }
                    Err(reason) => problems.push(format!("{field}: {reason}")),
                }
            }
            servers.insert(
                id,
                ServerSchemas {
                    mode: server.validation,
                    tools,
                },
            );
        }
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        Ok(Schemas { servers })
    }
}

#[cfg(test)]
mod tests;
